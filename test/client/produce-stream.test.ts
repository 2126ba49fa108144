// The client side of ProduceStream (src/client/produce-stream.ts) over a fake duplex stream: each
// test names the rule of the file's header it checks. No server.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { ProduceStreamClient, SequenceGapError, produceErrorFromWire } from '../../src/client/produce-stream.js';
import { NotLeaderError, PermissionDeniedError, UnavailableError } from '../../src/errors.js';
import type { ProduceError, ProduceStreamRequest, ProduceStreamResponse } from '../../src/protocol/messages.js';

/** A duplex stream that records what the client writes; the test plays the broker's answers. */
class FakeStream extends EventEmitter {
  readonly written: ProduceStreamRequest[] = [];
  cancelled = false;
  write(request: ProduceStreamRequest): boolean {
    this.written.push(request);
    return true;
  }
  cancel(): void {
    this.cancelled = true;
  }
  answer(response: Partial<ProduceStreamResponse>): void {
    this.emit('data', { clientSequence: 0, result: null, error: null, ...response });
  }
}

function client(): { client: ProduceStreamClient; streams: FakeStream[] } {
  const streams: FakeStream[] = [];
  const open = () => {
    const stream = new FakeStream();
    streams.push(stream);
    return stream as unknown as grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse>;
  };
  return { client: new ProduceStreamClient('a1', open, 60_000), streams };
}

const refusal = (overrides: Partial<ProduceError>): ProduceError => ({
  code: 0,
  details: '',
  leaderId: '',
  leaderAddress: '',
  sequenceGap: false,
  ...overrides,
});
const result = { topic: 't', queue: 0, baseOffset: 5, count: 1, duplicate: false };

describe('produce stream client', () => {
  test('requests are written at once with client sequences 1, 2, …; answers settle them in order', async () => {
    const { client: c, streams } = client();
    const first = c.produce({ topic: 't' });
    const second = c.produce({ topic: 't' });
    assert.deepEqual(
      streams[0]!.written.map((w) => w.clientSequence),
      [1, 2],
    );
    streams[0]!.answer({ clientSequence: 1, result });
    streams[0]!.answer({ clientSequence: 2, result: { ...result, baseOffset: 6 } });
    assert.equal((await first).baseOffset, 5);
    assert.equal((await second).baseOffset, 6);
  });

  test('a refusal is the unary status class; "not the leader" carries the leader for the router', async () => {
    const notLeader = produceErrorFromWire(refusal({ code: 9, details: 'not the leader', leaderId: 'b2', leaderAddress: 'a2' }));
    assert.ok(notLeader instanceof NotLeaderError);
    assert.equal(notLeader.leaderAddress, 'a2');
    assert.ok(produceErrorFromWire(refusal({ code: 7, details: 'no' })) instanceof PermissionDeniedError);
    assert.ok(produceErrorFromWire(refusal({ code: 3, sequenceGap: true })) instanceof SequenceGapError);

    const { client: c, streams } = client();
    const pending = c.produce({ topic: 't' });
    streams[0]!.answer({ clientSequence: 1, error: refusal({ code: 9, leaderAddress: 'a2' }) });
    await assert.rejects(pending, (error) => error instanceof NotLeaderError && error.leaderAddress === 'a2');
  });

  test('an answer out of order, or with neither result nor error, breaks the stream; the next request opens a new one', async () => {
    for (const bad of [{ clientSequence: 2, result }, { clientSequence: 1 }]) {
      const { client: c, streams } = client();
      const pending = c.produce({ topic: 't' });
      streams[0]!.answer(bad);
      await assert.rejects(pending, UnavailableError);
      assert.ok(streams[0]!.cancelled);
      void c.produce({ topic: 't' }).catch(() => undefined);
      assert.equal(streams.length, 2);
      assert.equal(streams[1]!.written[0]!.clientSequence, 1);
      c.close();
    }
  });
});
