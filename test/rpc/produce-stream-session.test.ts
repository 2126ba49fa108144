// The broker's side of ProduceStream (src/rpc/produce-stream.ts) with a scripted call and broker:
// answers in request order, refusals in place, and flow control — the session stops reading at
// its bounds (requests, bytes, answers the transport has not taken) and reads again below them.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { ProduceStreamSession, RefusedRequest, type ProduceStreamLimits } from '../../src/rpc/produce-stream.js';
import { NotFoundError } from '../../src/errors.js';
import type { Broker, ProduceRequest, ProduceResult } from '../../src/broker/broker.js';

type Wire = Record<string, unknown>;

/** A server duplex call: records what is written and whether reading is paused. */
class ScriptedCall extends EventEmitter {
  readonly written: Wire[] = [];
  paused = false;
  ended = false;
  status: { code: number; details: string } | null = null;
  writeAccepts = true;
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  write(answer: Wire): boolean {
    this.written.push(answer);
    return this.writeAccepts;
  }
  end(): void {
    this.ended = true;
  }
  constructor() {
    super();
    this.on('error', (e: { code: number; details: string }) => {
      this.status = { code: e.code, details: e.details };
    });
  }
}

/** A broker whose produce calls wait until the test settles them. */
class ScriptedBroker {
  readonly calls: Array<{ request: ProduceRequest; resolve: (r: ProduceResult) => void; reject: (e: Error) => void }> = [];
  track<T>(work: () => Promise<T>): Promise<T> {
    return work();
  }
  produce(request: ProduceRequest): Promise<ProduceResult> {
    return new Promise((resolve, reject) => this.calls.push({ request, resolve, reject }));
  }
  ok(index: number): void {
    const c = this.calls[index]!;
    c.resolve({ topic: c.request.topic, queue: c.request.queue, baseOffset: index, count: 1, duplicate: false });
  }
}

const decode = (w: Wire): ProduceRequest => ({
  topic: String(w.topic),
  queue: Number(w.queue ?? 0),
  messages: (w.messages ?? []) as ProduceRequest['messages'],
  ack: 'quorum',
  producerId: 0,
  sequence: 0,
});
const message = (clientSequence: number, bodyBytes = 10): Wire => ({
  clientSequence,
  request: { topic: 't', queue: 0, messages: [{ body: Buffer.alloc(bodyBytes) }] },
});
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function open(limits: ProduceStreamLimits): { call: ScriptedCall; broker: ScriptedBroker } {
  const call = new ScriptedCall();
  const broker = new ScriptedBroker();
  new ProduceStreamSession(call as unknown as grpc.ServerDuplexStream<Wire, Wire>, broker as unknown as Broker, decode, limits);
  return { call, broker };
}

describe('ProduceStream session', () => {
  test('step 4: answers leave in request order even when later requests finish first', async () => {
    const { call, broker } = open({ inflightMax: 10, inflightBytesMax: 1 << 20 });
    for (let i = 1; i <= 3; i++) call.emit('data', message(i));
    broker.ok(2);
    broker.ok(1);
    await turn();
    assert.equal(call.written.length, 0, 'request 1 is not answered yet');
    broker.ok(0);
    await turn();
    assert.deepEqual(
      call.written.map((w) => w.clientSequence),
      [1, 2, 3],
    );
  });

  test('step 2: refused and failing requests are answered in place; the stream goes on', async () => {
    const { call, broker } = open({ inflightMax: 10, inflightBytesMax: 1 << 20 });
    call.emit('data', message(1));
    call.emit('data', new RefusedRequest(2, grpc.status.PERMISSION_DENIED, 'access key "k" may not produce topic "t"'));
    call.emit('data', message(3));
    broker.calls[1]!.reject(new NotFoundError('topic "t" does not exist'));
    broker.ok(0);
    await turn();
    assert.deepEqual(
      call.written.map((w) => (w.error ? (w.error as Wire).code : 'ok')),
      ['ok', grpc.status.PERMISSION_DENIED, grpc.status.NOT_FOUND],
    );
    call.emit('end');
    assert.ok(call.ended, 'half-close with nothing pending ends the stream OK');
  });

  test('step 1: a client_sequence out of order ends the stream with INVALID_ARGUMENT', () => {
    const { call } = open({ inflightMax: 10, inflightBytesMax: 1 << 20 });
    call.emit('data', message(1));
    call.emit('data', message(5));
    assert.equal(call.status?.code, grpc.status.INVALID_ARGUMENT);
  });

  test('step 5: at inflightMax requests the session stops reading, and reads again once answers leave', async () => {
    const { call, broker } = open({ inflightMax: 3, inflightBytesMax: 1 << 20 });
    for (let i = 1; i <= 3; i++) call.emit('data', message(i));
    assert.ok(call.paused);
    broker.ok(1); // answered out of order: still pending behind request 1
    await turn();
    assert.ok(call.paused, 'request 2 waits behind request 1: still three pending');
    broker.ok(0);
    await turn();
    assert.ok(!call.paused);
  });

  test('step 5: at inflightBytesMax the session stops reading', async () => {
    const { call, broker } = open({ inflightMax: 100, inflightBytesMax: 5000 });
    call.emit('data', message(1, 3000));
    assert.ok(!call.paused);
    call.emit('data', message(2, 3000));
    assert.ok(call.paused);
    broker.ok(0);
    broker.ok(1);
    await turn();
    assert.ok(!call.paused);
  });

  test('step 5: while the transport does not take answers (write() false) the session stays paused, until drain', async () => {
    const { call, broker } = open({ inflightMax: 100, inflightBytesMax: 1 << 20 });
    call.writeAccepts = false;
    call.emit('data', message(1));
    broker.ok(0);
    await turn();
    assert.ok(call.paused, 'an answer is stuck in the transport');
    call.emit('drain');
    assert.ok(!call.paused);
  });

  test('step 6: a cancelled stream writes nothing more; the work handed to the broker still finishes', async () => {
    const { call, broker } = open({ inflightMax: 10, inflightBytesMax: 1 << 20 });
    call.emit('data', message(1));
    call.emit('cancelled');
    call.emit('data', message(2));
    broker.ok(0);
    await turn();
    assert.equal(call.written.length, 0);
    assert.equal(broker.calls.length, 1, 'nothing read after the cancel reaches the broker');
  });
});
