// Whether a failed produce request may have stored its batch (src/client/produce-outcome.ts): the
// rule that decides whether a round-robin batch may move to another group's queue. One row per
// case: how far the request got, what it failed with, the producer's ack level, the verdict.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { mayBeStored, OutcomeUnknownError } from '../../src/client/produce-outcome.js';
import { produceErrorFromWire, type RequestProgress } from '../../src/client/produce-stream.js';
import { NotLeaderError, ResourceExhaustedError, TimeoutError, UnavailableError } from '../../src/errors.js';
import type { Ack } from '../../src/protocol/messages.js';

/** The broker's answer to one request with `code`, decoded as the stream client decodes it. */
const answer = (code: status, sequenceGap = false) =>
  produceErrorFromWire({ code, details: `answered ${status[code]}`, leaderId: '', leaderAddress: '', sequenceGap });

type Row = [RequestProgress['stage'], string, unknown, Ack, boolean];

const rows: Row[] = [
  // Never left the client: nothing can be stored, whatever the error says.
  ['unsent', 'no route or leader (cannot reach the cluster)', new UnavailableError('cannot reach the cluster'), 'quorum', false],
  ['unsent', 'connection refused (the stream never connected)', new UnavailableError('No connection established'), 'quorum', false],
  ['unsent', 'producer closed', new UnavailableError('producer is closed'), 'leader', false],
  // Written, no answer to it: the stream's status says nothing about this request.
  ['written', 'stream broke (UNAVAILABLE)', new UnavailableError('Connection dropped'), 'quorum', true],
  ['written', 'request timeout', new TimeoutError('no answer within requestTimeoutMs'), 'quorum', true],
  ['written', 'stream ended with RESOURCE_EXHAUSTED (another request too large)', new ResourceExhaustedError('message larger than max'), 'quorum', true],
  ['written', 'stream ended with a NOT_LEADER status', new NotLeaderError('not the leader', null, null), 'quorum', true],
  // Answered: refusals before the append.
  ['answered', 'NOT_LEADER (FAILED_PRECONDITION without the key)', answer(status.FAILED_PRECONDITION), 'quorum', false],
  ['answered', 'RESOURCE_EXHAUSTED, ack quorum', answer(status.RESOURCE_EXHAUSTED), 'quorum', false],
  ['answered', 'RESOURCE_EXHAUSTED, ack none', answer(status.RESOURCE_EXHAUSTED), 'none', false],
  ['answered', 'sequence gap', answer(status.INVALID_ARGUMENT, true), 'quorum', false],
  ['answered', 'INVALID_ARGUMENT', answer(status.INVALID_ARGUMENT), 'quorum', false],
  ['answered', 'NOT_FOUND', answer(status.NOT_FOUND), 'quorum', false],
  ['answered', 'ALREADY_EXISTS', answer(status.ALREADY_EXISTS), 'quorum', false],
  ['answered', 'OUT_OF_RANGE', answer(status.OUT_OF_RANGE), 'quorum', false],
  ['answered', 'PERMISSION_DENIED', answer(status.PERMISSION_DENIED), 'quorum', false],
  ['answered', 'UNAUTHENTICATED', answer(status.UNAUTHENTICATED), 'quorum', false],
  ['answered', 'ABORTED', answer(status.ABORTED), 'quorum', false],
  // Answered: refusals that may follow the append.
  ['answered', 'RESOURCE_EXHAUSTED, ack leader (the flush waits are bounded after the append)', answer(status.RESOURCE_EXHAUSTED), 'leader', true],
  ['answered', 'UNAVAILABLE (leadership lost before commit, truncated, shutting down)', answer(status.UNAVAILABLE), 'quorum', true],
  ['answered', 'DEADLINE_EXCEEDED (no quorum acknowledgement within the wait)', answer(status.DEADLINE_EXCEEDED), 'quorum', true],
  ['answered', 'CANCELLED', answer(status.CANCELLED), 'quorum', true],
  ['answered', 'INTERNAL', answer(status.INTERNAL), 'quorum', true],
  ['answered', 'UNKNOWN', answer(status.UNKNOWN), 'quorum', true],
  ['answered', 'not a MambaError (a bug)', new Error('boom'), 'quorum', true],
];

describe('produce outcome', () => {
  test('mayBeStored: only a request never sent, or refused by the broker before the append, rules a store out', () => {
    for (const [stage, what, error, ack, expected] of rows) {
      assert.equal(mayBeStored(error, stage, ack), expected, `${stage}: ${what}, ack ${ack}`);
    }
  });

  test('the answers above decode to the classes the rows name', () => {
    assert.ok(answer(status.FAILED_PRECONDITION) instanceof NotLeaderError);
    assert.ok(answer(status.RESOURCE_EXHAUSTED) instanceof ResourceExhaustedError);
    assert.ok(answer(status.DEADLINE_EXCEEDED) instanceof TimeoutError);
    assert.ok(answer(status.CANCELLED) instanceof UnavailableError);
  });

  test('OutcomeUnknownError names the queue, says the outcome is unknown, and is not retriable', () => {
    const last = new TimeoutError('no answer within 10000 ms');
    const error = new OutcomeUnknownError('orders', 3, 2, last);
    assert.equal(error.name, 'OutcomeUnknownError');
    assert.equal(error.retriable, false);
    assert.equal(error.kind, 'timeout');
    assert.equal(error.lastError, last);
    assert.match(error.message, /^2 messages for queue 3 of "orders" were not acknowledged and may or may not be stored there .*last error: no answer/);
  });
});
