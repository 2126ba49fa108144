// A consumer given a fixed assignment (ConsumerOptions.assignment, as Kafka's assign()): it never
// calls the coordinator, reads exactly the queues given from the group's committed offsets (the
// queue's start when nothing is committed), reads the matching retry queue but takes only retries
// of its own queues, and commits what it processed to the group. Over a scripted transport: topic
// t has 3 queues, its retry topic 2 (so retry queue 0 holds retries of queues 0 and 2).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Consumer, retryHeaders, type Delivery } from '../../src/client/consumer.js';
import type { Transport } from '../../src/client/connection.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { MethodName, RequestOf, ResponseOf } from '../../src/protocol/messages.js';
import { waitFor } from '../../scripts/lib/cluster.js';
import { scriptedGroup } from './scripted-cluster.js';

/** Messages 0..7 in every queue of t; queue 2 of group cg committed at 5. */
const queueEndOffset = 8;
const committedQueue2 = 5;
/** Every scripted Consume answers after this long. */
const consumeDelayMs = 5;

class ScriptedQueues implements Transport {
  readonly calls: Array<{ method: MethodName; request: Record<string, unknown> }> = [];
  readonly committed = new Map<string, number>([[`t/2`, committedQueue2]]);

  async call<M extends MethodName>(_address: string, method: M, request: RequestOf<M>): Promise<ResponseOf<M>> {
    const r = request as Record<string, unknown>;
    this.calls.push({ method, request: r });
    return (await this.answer(method, r)) as ResponseOf<M>;
  }

  private async answer(method: MethodName, r: Record<string, unknown>): Promise<unknown> {
    switch (method) {
      case 'DescribeCluster':
        return { groups: [scriptedGroup()] };
      case 'DescribeTopic': {
        const queues = r.name === 't' ? 3 : r.name === 't.retry' ? 2 : 1;
        return {
          topic: { name: r.name, queues, createdMs: 0 },
          queues: Array.from({ length: queues }, (_, queue) => ({ queue, group: 'g1', leaderId: 'b1', startOffset: 0, highWatermark: 0 })),
        };
      }
      case 'FetchOffset': {
        const offset = this.committed.get(`${r.topic}/${r.queue}`);
        return { found: offset !== undefined, offset: offset ?? 0 };
      }
      case 'CommitOffset':
        this.committed.set(`${r.topic}/${r.queue}`, r.offset as number);
        return {};
      case 'Consume':
        // A long poll that finds nothing waits, as a broker's does: the read loop must not spin.
        await new Promise((resolve) => setTimeout(resolve, consumeDelayMs));
        return consumeAnswer(r.topic as string, r.queue as number, r.offset as number);
      default:
        throw new Error(`unexpected ${method}`);
    }
  }

  consumed(): string[] {
    return [...new Set(this.calls.filter((c) => c.method === 'Consume').map((c) => `${c.request.topic}/${c.request.queue}`))].sort();
  }
}

/**
 * Retry queue 0 holds a retry of queue 0 (offset 0), one of queue 2 (offset 1) and one of queue
 * 2 that another consumer group failed (offset 2: the retry topic is shared by every group);
 * retry queue 1 is empty.
 */
function retryRecords(queue: number): Array<{ origin: number; group: string; body: string }> {
  return queue === 0
    ? [
        { origin: 0, group: 'cg', body: 'retry of 0' },
        { origin: 2, group: 'cg', body: 'retry of 2' },
        { origin: 2, group: 'other', body: "another group's retry of 2" },
      ]
    : [];
}

function consumeAnswer(topic: string, queue: number, offset: number): unknown {
  const header = (key: string, value: string) => ({ key, value: Buffer.from(value) });
  const records =
    topic === 't'
      ? offset < queueEndOffset
        ? [{ offset, timestampMs: 0, key: [], headers: [], body: Buffer.from(`${queue}:${offset}`) }]
        : []
      : retryRecords(queue)
          .slice(offset, offset + 1)
          .map((r) => ({
            offset,
            timestampMs: 0,
            key: [],
            headers: [
              header(retryHeaders.attempt, '2'),
              header(retryHeaders.originTopic, 't'),
              header(retryHeaders.originQueue, String(r.origin)),
              header(retryHeaders.originGroup, r.group),
            ],
            body: Buffer.from(r.body),
          }));
  return { topic, queue, records, nextOffset: offset + records.length, highWatermark: 0, startOffset: 0, advice: null, servedBy: 'b1', blocks: [] };
}

function consumerOn(transport: ScriptedQueues, assignment: number[]): Consumer {
  return new Consumer({
    brokers: ['a1:1'],
    group: 'cg',
    topic: 't',
    assignment,
    autoCommitIntervalMs: 0,
    waitMsMax: 0,
    retry: { attemptsMax: 3, backoffMsInitial: 1, backoffMsMax: 5, jitter: 0 },
    transport,
  });
}

describe('consumer with a fixed assignment', () => {
  test('reads only the queues given, from the committed offset, takes only their retries, never calls the coordinator, commits on close', async () => {
    const transport = new ScriptedQueues();
    const consumer = consumerOn(transport, [2]);
    const got: Delivery[] = [];
    try {
      await consumer.start((m) => {
        got.push(m);
      });
      // Read past every retry record (a Consume of retry queue 0 at offset 3), taken or passed over.
      const retriesRead = (): boolean =>
        transport.calls.some((c) => c.method === 'Consume' && c.request.topic === 't.retry' && c.request.queue === 0 && c.request.offset === 3);
      await waitFor('queue 2 read to its end and the retries', 5000, () => (got.length >= 4 && retriesRead() ? true : undefined));
      assert.deepEqual(consumer.assignment(), { topic: [2], retry: [0] });
    } finally {
      await consumer.close();
    }
    assert.deepEqual(
      got.filter((m) => m.attempt === 1).map((m) => m.body.toString()),
      ['2:5', '2:6', '2:7'],
      'queue 2 from its committed offset, in order',
    );
    assert.deepEqual(
      got.filter((m) => m.attempt > 1).map((m) => m.body.toString()),
      ['retry of 2'],
      "neither queue 0's retry nor another consumer group's is taken",
    );
    assert.equal(got.length, 4);
    assert.deepEqual(transport.consumed(), ['t.retry/0', 't/2']);
    assert.equal(transport.calls.filter((c) => c.method === 'Heartbeat').length, 0, 'no group membership');
    assert.equal(transport.committed.get('t/2'), queueEndOffset);
    assert.equal(transport.committed.get('t.retry/0'), 3, 'the retry queue is committed past what was passed over too');
  });

  test('a queue without a committed offset starts at its start, as a new member would', async () => {
    const transport = new ScriptedQueues();
    const consumer = consumerOn(transport, [1]);
    const got: string[] = [];
    try {
      await consumer.start((m) => {
        if (m.attempt === 1) got.push(m.body.toString());
      });
      await waitFor('queue 1 read', 5000, () => (got.length >= queueEndOffset ? true : undefined));
    } finally {
      await consumer.close();
    }
    assert.deepEqual(got, ['1:0', '1:1', '1:2', '1:3', '1:4', '1:5', '1:6', '1:7']);
  });

  test('a queue the topic does not have, an empty or repeated assignment: refused, naming the queue count', async () => {
    const transport = new ScriptedQueues();
    const consumer = consumerOn(transport, [3]);
    await assert.rejects(
      consumer.start(() => undefined),
      (error: Error) => error instanceof InvalidArgumentError && /topic "t" has 3 queues \(0\.\.2\), not queue 3/.test(error.message),
    );
    await consumer.close();
    assert.equal(transport.calls.filter((c) => c.method === 'Consume').length, 0);
    assert.throws(() => consumerOn(transport, []), /assignment: give at least one queue/);
    assert.throws(() => consumerOn(transport, [1, 1]), /assignment: queue numbers repeat/);
    assert.throws(() => consumerOn(transport, [-1]), /assignment: -1 is not a queue number/);
  });
});
