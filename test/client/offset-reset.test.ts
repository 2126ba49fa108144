// A consumer whose next offset fell below its queue's start (retention removed those messages):
// with offsetReset 'earliest' (the default, as Kafka's auto.offset.reset) it goes on from the
// start the broker names on its OUT_OF_RANGE refusal and says how many messages it skipped; with
// 'fail' it reports the refusal and reads nothing. The broker's range travels in trailing
// metadata (src/protocol/status.ts), checked here through a real gRPC status round trip.
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceError } from '@grpc/grpc-js';
import { Consumer, type Delivery } from '../../src/client/consumer.js';
import type { Transport } from '../../src/client/connection.js';
import { OutOfRangeError } from '../../src/errors.js';
import { fromServiceError, toStatus } from '../../src/protocol/status.js';
import type { MethodName, RequestOf, ResponseOf } from '../../src/protocol/messages.js';
import { assertHoldsFor, waitFor } from '../../scripts/lib/cluster.js';
import { scriptedGroup } from './scripted-cluster.js';

/** Queue 0 of topic t starts at 100 (retention took 0..99); the group committed 10 long ago. */
const queueStartOffset = 100;
const committedOffset = 10;

class RetainedQueue implements Transport {
  readonly consumedFrom: number[] = [];

  async call<M extends MethodName>(_address: string, method: M, request: RequestOf<M>): Promise<ResponseOf<M>> {
    return this.answer(method, request as Record<string, unknown>) as ResponseOf<M>;
  }

  private answer(method: MethodName, r: Record<string, unknown>): unknown {
    switch (method) {
      case 'DescribeCluster':
        return { groups: [scriptedGroup()] };
      case 'DescribeTopic':
        return {
          topic: { name: r.name, queues: 1, createdMs: 0 },
          queues: [{ queue: 0, group: 'g1', leaderId: 'b1', startOffset: queueStartOffset, highWatermark: 120 }],
        };
      case 'Heartbeat':
        return { generation: 1, assignedQueues: r.topic === 't' ? [0] : [], members: [r.memberId], sessionTimeoutMs: 6000 };
      case 'FetchOffset':
        return r.topic === 't' ? { found: true, offset: committedOffset } : { found: false, offset: 0 };
      case 'CommitOffset':
        return {};
      case 'Consume':
        return this.consume(r.topic as string, r.offset as number);
      default:
        throw new Error(`unexpected ${method}`);
    }
  }

  private consume(topic: string, offset: number): unknown {
    if (topic !== 't') return { topic, queue: 0, records: [], nextOffset: offset, highWatermark: 0, startOffset: 0, advice: null, servedBy: 'b1', blocks: [] };
    this.consumedFrom.push(offset);
    if (offset < queueStartOffset)
      throw new OutOfRangeError(`offset ${offset} is outside queue 0 of "t": valid offsets are ${queueStartOffset}..120`, queueStartOffset, 120);
    const records = offset < 120 ? [{ offset, timestampMs: Date.now(), key: [], headers: [], body: Buffer.from(`m${offset}`) }] : [];
    return {
      topic,
      queue: 0,
      records,
      nextOffset: offset + records.length,
      highWatermark: 120,
      startOffset: queueStartOffset,
      advice: null,
      servedBy: 'b1',
      blocks: [],
    };
  }
}

let consumer: Consumer | null = null;

afterEach(async () => {
  await consumer?.close();
  consumer = null;
});

function start(offsetReset: 'earliest' | 'fail' | undefined, transport: RetainedQueue): { deliveries: number[]; resets: unknown[]; errors: Error[] } {
  consumer = new Consumer({
    brokers: ['a1:1'],
    group: 'cg',
    topic: 't',
    memberId: 'm1',
    heartbeatIntervalMs: 50,
    autoCommitIntervalMs: 0,
    retry: { attemptsMax: 2, backoffMsInitial: 1, backoffMsMax: 20, jitter: 0 },
    ...(offsetReset ? { offsetReset } : {}),
    transport,
  });
  const seen = { deliveries: [] as number[], resets: [] as unknown[], errors: [] as Error[] };
  consumer.on('offset-reset', (event: unknown) => seen.resets.push(event));
  consumer.on('error', (error: Error) => seen.errors.push(error));
  void consumer.start((m: Delivery) => {
    seen.deliveries.push(m.offset);
  });
  return seen;
}

describe('consumer offset reset', () => {
  test('the broker names the queue range on OUT_OF_RANGE, and the client reads it back', () => {
    const status = toStatus(new OutOfRangeError('offset 3 is outside', 100, 120));
    const back = fromServiceError(Object.assign(new Error(status.details), status) as unknown as ServiceError);
    assert.ok(back instanceof OutOfRangeError);
    assert.equal(back.startOffset, 100);
    assert.equal(back.endOffset, 120);
  });

  test("'earliest' (the default): a committed offset below the start goes on from the start, and the skip is reported", async () => {
    const transport = new RetainedQueue();
    const seen = start(undefined, transport);
    await waitFor('messages from the queue start', 5000, () => (seen.deliveries.length >= 20 ? true : undefined), 10);
    assert.deepEqual(
      seen.deliveries.slice(0, 20),
      Array.from({ length: 20 }, (_, i) => queueStartOffset + i),
    );
    assert.deepEqual(seen.resets, [
      { topic: 't', queue: 0, fromOffset: committedOffset, toOffset: queueStartOffset, skippedMessages: queueStartOffset - committedOffset },
    ]);
    assert.deepEqual(
      seen.errors.filter((e) => e instanceof OutOfRangeError),
      [],
    );
  });

  test("'fail': the refusal is reported and nothing below or past the start is read", async () => {
    const transport = new RetainedQueue();
    const seen = start('fail', transport);
    await waitFor('the refusal to be reported', 5000, () => (seen.errors.some((e) => e instanceof OutOfRangeError) ? true : undefined), 10);
    await assertHoldsFor('no delivery', 300, () => seen.deliveries.length === 0 && seen.resets.length === 0);
    assert.ok(transport.consumedFrom.every((offset) => offset === committedOffset));
  });

  test('a bad offsetReset is refused naming the option', () => {
    assert.throws(
      () => new Consumer({ brokers: ['a1:1'], group: 'cg', topic: 't', offsetReset: 'latest' as 'fail' }),
      /offsetReset: must be 'earliest' or 'fail'/,
    );
  });
});
