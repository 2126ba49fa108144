// The client side of ProduceStream (src/client/produce-stream.ts) over a fake duplex stream: each
// test names the rule of the file's header it checks. No server (one test dials a closed port).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import { ProduceStreamClient, SequenceGapError, produceErrorFromWire, type RequestProgress } from '../../src/client/produce-stream.js';
import { ConnectionPool } from '../../src/client/connection.js';
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

  test('progress: written at once, answered by its answer (result or refusal); a broken stream leaves it written', async () => {
    const { client: c, streams } = client();
    const progress: RequestProgress[] = [{ stage: 'unsent' }, { stage: 'unsent' }, { stage: 'unsent' }];
    const replies = progress.map((p) => c.produce({ topic: 't' }, p).catch((error: unknown) => error));
    assert.deepEqual(
      progress.map((p) => p.stage),
      ['written', 'written', 'written'],
    );
    streams[0]!.answer({ clientSequence: 1, result });
    streams[0]!.answer({ clientSequence: 2, error: refusal({ code: 9 }) });
    streams[0]!.emit('error', { code: 14, details: 'Connection dropped' });
    await Promise.all(replies);
    assert.deepEqual(
      progress.map((p) => p.stage),
      ['answered', 'answered', 'written'],
    );
  });

  test('progress: a stream that never connected sets its requests back to unsent; a closed client sends nothing', async () => {
    const { client: c, streams } = client();
    const progress: RequestProgress = { stage: 'unsent' };
    const reply = c.produce({ topic: 't' }, progress);
    streams[0]!.emit('error', { code: 14, details: 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1' });
    await assert.rejects(reply, UnavailableError);
    assert.equal(progress.stage, 'unsent');
    c.close();
    const closed: RequestProgress = { stage: 'unsent' };
    await assert.rejects(c.produce({ topic: 't' }, closed), UnavailableError);
    assert.equal(closed.stage, 'unsent');
  });

  test('grpc-js words a refused connection as neverConnected expects (a real channel to a closed port)', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const pool = new ConnectionPool();
    try {
      const c = new ProduceStreamClient(`127.0.0.1:${port}`, () => pool.produceStream(`127.0.0.1:${port}`), 10_000);
      const progress: RequestProgress = { stage: 'unsent' };
      await assert.rejects(c.produce({ topic: 't' }, progress), UnavailableError);
      assert.equal(progress.stage, 'unsent', 'grpc-js changed how it words a refused connection: see notConnectedDetails');
      c.close();
    } finally {
      pool.close();
    }
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
