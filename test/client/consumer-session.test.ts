// The consumer's session rule (src/client/consumer.ts header; the member's half of the hand-off
// safety in src/broker/group-coordinator.ts): a member that has had no heartbeat answer for one
// session timeout stops reading the queues it owns, commits nothing for them, and does not act
// on an answer that comes later than that. Over a scripted transport (a coordinator, two queues
// and their offsets): no server, no sockets. Also: a consumer (and producer) given a client that
// others share works through it and never closes it.
import { test, describe, afterEach } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import { MambaClient } from '../../src/client/client.js';
import { Consumer, sessionExpired, type Delivery, type SessionExpiredEvent } from '../../src/client/consumer.js';
import { Producer } from '../../src/client/producer.js';
import type { Transport } from '../../src/client/connection.js';
import { UnavailableError } from '../../src/errors.js';
import type { MethodName, RequestOf, ResponseOf } from '../../src/protocol/messages.js';
import { assertHoldsFor, waitFor } from '../../scripts/lib/cluster.js';
import { scriptedGroup } from './scripted-cluster.js';

const sessionTimeoutMs = 300;
/** A scripted Consume answers after this long (a long poll with a message ready soon). */
const consumeDelayMs = 5;
/** Timer and clock granularity allowed past a deadline. */
const slackMs = 3;

interface Call {
  method: MethodName;
  request: Record<string, unknown>;
  atMs: number;
}

/** One group g1 (broker b1 at a1:1 leads it) holding topic t (2 queues), t.retry (2) and t.dlq (1). */
class ScriptedCluster implements Transport {
  readonly calls: Call[] = [];
  /** 'answer': heartbeats answered at once; 'refuse': UNAVAILABLE; 'late': answered after 1.5 session timeouts. */
  heartbeats: 'answer' | 'refuse' | 'late' = 'answer';
  /** Arrival time of the last Heartbeat on topic t that was answered in time. */
  lastAnsweredHeartbeatMs = 0;
  readonly committed = new Map<number, number>();

  constructor(readonly sessionTimeoutMs: number) {}

  async call<M extends MethodName>(_address: string, method: M, request: RequestOf<M>): Promise<ResponseOf<M>> {
    const r = request as Record<string, unknown>;
    const atMs = Date.now();
    this.calls.push({ method, request: r, atMs });
    return (await this.answer(method, r, atMs)) as ResponseOf<M>;
  }

  private async answer(method: MethodName, r: Record<string, unknown>, atMs: number): Promise<unknown> {
    switch (method) {
      case 'DescribeCluster':
        return { groups: [scriptedGroup()] };
      case 'DescribeTopic': {
        const queues = r.name === 't.dlq' ? 1 : 2;
        return {
          topic: { name: r.name, queues, createdMs: 0 },
          queues: Array.from({ length: queues }, (_, queue) => ({ queue, group: 'g1', leaderId: 'b1', startOffset: 0, highWatermark: 0 })),
        };
      }
      case 'Heartbeat':
        return this.heartbeat(r, atMs);
      case 'FetchOffset': {
        const offset = this.committed.get(r.queue as number);
        return { found: offset !== undefined, offset: offset ?? 0 };
      }
      case 'CommitOffset':
        this.committed.set(r.queue as number, r.offset as number);
        return {};
      case 'Consume':
        await new Promise((resolve) => setTimeout(resolve, consumeDelayMs));
        return consumeAnswer(r.topic as string, r.queue as number, r.offset as number);
      default:
        throw new Error(`unexpected ${method}`);
    }
  }

  private async heartbeat(r: Record<string, unknown>, atMs: number): Promise<unknown> {
    if (this.heartbeats === 'refuse') throw new UnavailableError('coordinator unreachable');
    const sessionTimeoutMs = this.sessionTimeoutMs;
    const answer = { generation: 1, assignedQueues: r.topic === 't' ? [0, 1] : [], members: [r.memberId], sessionTimeoutMs };
    if (this.heartbeats === 'late') {
      await new Promise((resolve) => setTimeout(resolve, sessionTimeoutMs * 1.5));
      return answer;
    }
    if (r.topic === 't') this.lastAnsweredHeartbeatMs = atMs;
    return answer;
  }

  after(method: MethodName, atMs: number): Call[] {
    return this.calls.filter((c) => c.method === method && c.atMs > atMs);
  }
}

/** Queues of t always have one more message at the offset asked for; the retry topic is empty. */
function consumeAnswer(topic: string, queue: number, offset: number): unknown {
  const records = topic === 't' ? [{ offset, timestampMs: Date.now(), key: [], headers: [], body: Buffer.from(`${queue}:${offset}`) }] : [];
  return { topic, queue, records, nextOffset: offset + records.length, highWatermark: offset + 1, startOffset: 0, advice: null, servedBy: 'b1', blocks: [] };
}

interface Running {
  consumer: Consumer;
  transport: ScriptedCluster;
  deliveries: Array<{ queue: number; offset: number; atMs: number }>;
  expired: Array<SessionExpiredEvent & { atMs: number }>;
}

let running: Running | null = null;

async function startConsumer(sessionMs = sessionTimeoutMs): Promise<Running> {
  const transport = new ScriptedCluster(sessionMs);
  const consumer = new Consumer({
    brokers: ['a1:1'],
    group: 'cg',
    topic: 't',
    memberId: 'm1',
    heartbeatIntervalMs: 50,
    autoCommitIntervalMs: 50,
    retry: { attemptsMax: 3, backoffMsInitial: 1, backoffMsMax: 5, jitter: 0 },
    transport,
  });
  const deliveries: Running['deliveries'] = [];
  const expired: Running['expired'] = [];
  consumer.on('error', () => undefined); // refused heartbeats are reported; the test reads the calls
  consumer.on('session-expired', (event: SessionExpiredEvent) => expired.push({ ...event, atMs: Date.now() }));
  running = { consumer, transport, deliveries, expired };
  await consumer.start((m: Delivery) => {
    deliveries.push({ queue: m.queue, offset: m.offset, atMs: Date.now() });
  });
  return running;
}

async function readingBoth(r: Running, sinceMs: number): Promise<void> {
  await waitFor('the member to read both queues', 5000, () =>
    r.consumer.assignment().topic.join() === '0,1' && [0, 1].every((q) => r.deliveries.some((d) => d.queue === q && d.atMs > sinceMs)) ? true : undefined,
  );
}

afterEach(async () => {
  await running?.consumer.close();
  running = null;
});

describe('consumer session rule', () => {
  test('the rule: expired once one session timeout has passed since the last answered heartbeat was sent; never before an answer', () => {
    assert.equal(sessionExpired(null, 300, 10_000), false);
    assert.equal(sessionExpired(1000, 300, 1299), false);
    assert.equal(sessionExpired(1000, 300, 1300), true);
    assert.equal(sessionExpired(1000, 300, 5000), true);
  });

  test('no heartbeat answer for one session timeout: the member stops reading its queues, commits nothing for them, and reads again once answered', async () => {
    const r = await startConsumer();
    await readingBoth(r, 0);
    // The expiry is noticed by a timer: a loaded machine runs it late by up to the event loop's
    // worst delay meanwhile, which the bound below allows. The safety bounds further down (nothing
    // read, delivered or committed after the deadline) hold whatever the delay: no slack added.
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    r.transport.heartbeats = 'refuse';
    const refusedFromMs = Date.now();
    await waitFor('the member to give its queues up', 5000, () => (r.consumer.assignment().topic.length === 0 ? true : undefined), 5);
    const lastAnsweredMs = r.transport.lastAnsweredHeartbeatMs;
    const deadlineMs = lastAnsweredMs + sessionTimeoutMs;
    assert.ok(lastAnsweredMs > 0 && lastAnsweredMs <= refusedFromMs);

    // It gave up both queues at the deadline, not before: sessions are measured from a send time
    // no later than the coordinator's receipt, so never later than the coordinator's expiry.
    assert.equal(r.expired.length, 1);
    assert.deepEqual(r.expired[0]!.queues, [0, 1]);
    assert.equal(r.expired[0]!.topic, 't');
    assert.ok(r.expired[0]!.answerAgeMs >= sessionTimeoutMs, `answer age ${r.expired[0]!.answerAgeMs} ms`);
    loopDelay.disable();
    const loopDelayMaxMs = loopDelay.max / 1e6;
    assert.ok(
      r.expired[0]!.atMs <= deadlineMs + slackMs + 20 + loopDelayMaxMs,
      `stopped ${r.expired[0]!.atMs - deadlineMs} ms after the deadline (event loop delayed up to ${loopDelayMaxMs.toFixed(1)} ms)`,
    );
    // Nothing read, handed to the handler or committed after the deadline.
    assert.deepEqual(
      r.deliveries.filter((d) => d.atMs > deadlineMs + slackMs),
      [],
    );
    assert.deepEqual(r.transport.after('Consume', deadlineMs + slackMs), []);
    assert.deepEqual(r.transport.after('CommitOffset', deadlineMs + slackMs), []);
    // It stays so while the coordinator does not answer.
    const stoppedMs = Date.now();
    await assertHoldsFor('no reads without a session', 2 * sessionTimeoutMs, () => r.transport.after('Consume', stoppedMs).length === 0);

    // Answered again: the queues come back and reading resumes from the committed offsets.
    const committed = new Map(r.transport.committed);
    const answeredAgainMs = Date.now();
    r.transport.heartbeats = 'answer';
    await readingBoth(r, answeredAgainMs);
    for (const q of [0, 1]) {
      const first = r.deliveries.find((d) => d.queue === q && d.atMs > answeredAgainMs)!;
      assert.equal(first.offset, committed.get(q) ?? 0, `queue ${q} resumes at its committed offset`);
    }
  });

  test('heartbeats answered in time: the member keeps its queues over many session timeouts', async () => {
    // A longer session here: the claim is about answers in time, and a process stalled for most
    // of a 300 ms session on a loaded machine would not have sent its heartbeats in time.
    const sessionMs = 1000;
    const r = await startConsumer(sessionMs);
    await readingBoth(r, 0);
    const fromMs = Date.now();
    await assertHoldsFor('the member keeps both queues', 3 * sessionMs, () => r.consumer.assignment().topic.join() === '0,1' && r.expired.length === 0);
    assert.ok(r.transport.after('Consume', fromMs).length > 10);
  });

  test('an answer that arrives after the session ran out is not acted on', async () => {
    const r = await startConsumer();
    await readingBoth(r, 0);
    r.transport.heartbeats = 'late';
    await waitFor('the member to give its queues up', 5000, () => (r.consumer.assignment().topic.length === 0 ? true : undefined), 5);
    const stoppedMs = Date.now();
    // Late answers keep arriving (each granting both queues): none starts a reader.
    await assertHoldsFor('no reads on late answers', 3 * sessionTimeoutMs, () => r.consumer.assignment().topic.length === 0);
    assert.ok(r.transport.after('Heartbeat', stoppedMs).length >= 1);
    assert.deepEqual(r.transport.after('Consume', stoppedMs + slackMs), []);
    assert.equal(r.expired.length, 1);
  });
});

describe('a consumer closed while it starts', () => {
  test('close() before start() finished: start() starts no reads and no heartbeats, and a later start() is refused', async () => {
    // A STOMP connection that ends during its SUBSCRIBE closes the consumer while start() still
    // waits for routes: a consumer that went on would read for nobody, every delivery failing.
    const transport = new ScriptedCluster(sessionTimeoutMs);
    const consumer = new Consumer({ brokers: ['a1:1'], group: 'cg', topic: 't', memberId: 'm1', heartbeatIntervalMs: 50, transport });
    const delivered: number[] = [];
    const starting = consumer.start((m: Delivery) => {
      delivered.push(m.offset);
    });
    await consumer.close();
    await starting;
    try {
      await assertHoldsFor('no Heartbeat and no Consume', 500, () => transport.calls.every((c) => c.method !== 'Heartbeat' && c.method !== 'Consume'));
      assert.deepEqual(delivered, []);
      await assert.rejects(
        consumer.start(() => undefined),
        /consumer is closed/,
      );
    } finally {
      await consumer.close(); // stops one that went on running despite the first close()
    }
  });
});

describe('a consumer given a client (ConsumerOptions.client)', () => {
  /** The client's close() calls, counted without changing what it does. */
  function countCloses(client: MambaClient): { count: number } {
    const closes = { count: 0 };
    const close = client.close.bind(client);
    client.close = () => {
      closes.count++;
      close();
    };
    return closes;
  }

  test('works through that client (and its retry producer too) and leaves it open on close()', async () => {
    const transport = new ScriptedCluster(sessionTimeoutMs);
    const client = new MambaClient({ brokers: ['a1:1'], transport, retry: { attemptsMax: 3, backoffMsInitial: 1, backoffMsMax: 5, jitter: 0 } });
    const closes = countCloses(client);
    const consumer = new Consumer({ client, brokers: ['a1:1'], group: 'cg', topic: 't', memberId: 'm1', heartbeatIntervalMs: 50, autoCommitIntervalMs: 50 });
    try {
      assert.equal(consumer.client, client);
      const delivered: number[] = [];
      await consumer.start((m: Delivery) => {
        delivered.push(m.offset);
      });
      await waitFor('a delivery through the given client', 5000, () => (delivered.length > 0 ? true : undefined));
      await consumer.close();
      assert.equal(closes.count, 0, 'neither the consumer nor its retry producer closed the given client');
      const callsBefore = transport.calls.length;
      await client.describeTopic('t');
      assert.equal(transport.calls.length, callsBefore + 1, 'the client still answers after the consumer closed');
    } finally {
      await consumer.close();
      client.close();
    }
  });

  test('a producer given a client leaves it open on close()', async () => {
    const client = new MambaClient({ brokers: ['a1:1'], transport: new ScriptedCluster(sessionTimeoutMs) });
    const closes = countCloses(client);
    const producer = new Producer({ client, brokers: ['a1:1'] });
    assert.equal(producer.client, client);
    await producer.close();
    assert.equal(closes.count, 0);
    client.close();
  });

  test('without one, a consumer closes the client it made (the SDK default)', async () => {
    const consumer = new Consumer({ brokers: ['a1:1'], group: 'cg', topic: 't', memberId: 'm1', transport: new ScriptedCluster(sessionTimeoutMs) });
    const closes = countCloses(consumer.client);
    await consumer.start(() => undefined);
    await consumer.close();
    assert.equal(closes.count, 1);
  });
});
