// The SDK against real three-broker clusters: idempotent production through leader kills,
// consumer groups, buffer and drop modes, rebalancing, and the retry / dead-letter path.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Registry, register } from 'prom-client';
import { TestCluster, waitFor, assertHoldsFor } from './cluster-harness.js';
import { Producer, DroppedError } from '../../src/client/producer.js';
import { OutcomeUnknownError } from '../../src/client/produce-outcome.js';
import { Consumer, deadLetterTopicOf, retryHeaders, type Delivery } from '../../src/client/consumer.js';
import { MambaClient } from '../../src/client/client.js';
import { AlreadyExistsError, InvalidArgumentError } from '../../src/errors.js';

const addresses = (cluster: TestCluster): string[] => cluster.brokers.map((b) => b.clientAddress);
const fastRetry = { attemptsMax: 50, backoffMsInitial: 10, backoffMsMax: 200, multiplier: 2, jitter: 0.2 };

async function restartAll(cluster: TestCluster): Promise<void> {
  for (const b of cluster.brokers) if (!cluster.isRunning(b.id)) cluster.launch(b.id);
  // Every broker replays its log first: on a loaded machine that takes a while.
  await cluster.waitForLeader('g1', 45_000);
}

describe('SDK options', () => {
  test('options out of range are rejected at construction, naming the option', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => new Producer({ brokers: [] }), /^brokers:/],
      [() => new Producer({ brokers: ['nohost'] }), /brokers: "nohost" is not host:port/],
      [() => new Producer({ brokers: ['127.0.0.1:1'], lingerMs: -1 }), /lingerMs: -1 is out of range/],
      [() => new Producer({ brokers: ['127.0.0.1:1'], batchBytesMax: 10 }), /batchBytesMax: 10 is out of range/],
      [() => new Producer({ brokers: ['127.0.0.1:1'], retry: { attemptsMax: 0 } }), /retry.attemptsMax: 0 is out of range/],
      [() => new Producer({ brokers: ['127.0.0.1:1'], retry: { jitter: 2 } }), /retry.jitter: 2 is out of range/],
      [() => new Producer({ brokers: ['127.0.0.1:1'], whenUnavailable: 'later' as 'drop' }), /whenUnavailable: "later"/],
      [() => new Consumer({ brokers: ['127.0.0.1:1'], group: 'bad group', topic: 't' }), /group: "bad group"/],
      [() => new Consumer({ brokers: ['127.0.0.1:1'], group: 'g', topic: 't', nack: { attemptsMax: 0 } }), /nack.attemptsMax: 0/],
      [() => new Consumer({ brokers: ['127.0.0.1:1'], group: 'g', topic: 't', heartbeatIntervalMs: 1 }), /heartbeatIntervalMs: 1/],
    ];
    for (const [make, pattern] of cases) {
      assert.throws(make, (error: Error) => error instanceof InvalidArgumentError && pattern.test(error.message), String(pattern));
    }
  });
});

describe('idempotent producer and consumer group', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start();
  });
  after(async () => cluster?.stop());

  test('20,000 messages sent while the leader is killed twice are read back exactly once, each queue in order', async () => {
    const admin = new MambaClient({ brokers: addresses(cluster) });
    await admin.createTopic('idem', 4);
    admin.close();
    const producer = new Producer({ brokers: addresses(cluster), lingerMs: 2, retry: fastRetry, requestTimeoutMs: 1500 });
    const total = 20_000;
    const killAt = new Set([5000, 12_000]);
    for (let start = 0; start < total; start += 1000) {
      let chunkAcked = 0;
      const sends = Promise.all(
        Array.from({ length: 1000 }, (_, i) =>
          producer.send('idem', { body: String(start + i) }).then(() => {
            chunkAcked++;
          }),
        ),
      );
      if (killAt.has(start)) {
        // Kill the leader while this chunk is in flight (some of it acked, most not yet); bring
        // it back once the chunk is acked.
        const leader = (await cluster.waitForLeader('g1', 10_000)).leaderId;
        await waitFor('the first acks of the chunk', 10_000, () => (chunkAcked > 0 ? true : undefined), 1);
        await cluster.kill(leader);
        await sends;
        cluster.launch(leader);
      }
      await sends;
    }
    await producer.close();
    await restartAll(cluster);

    const received = new Map<number, number[]>();
    const members = [0, 1].map(
      (i) =>
        new Consumer({
          brokers: addresses(cluster),
          group: 'readers',
          topic: 'idem',
          memberId: `reader-${i}`,
          heartbeatIntervalMs: 200,
          autoCommitIntervalMs: 200,
        }),
    );
    let count = 0;
    const handler = (m: Delivery): void => {
      const list = received.get(m.queue) ?? [];
      list.push(Number(m.body.toString()));
      received.set(m.queue, list);
      count++;
    };
    for (const member of members) await member.start(handler);
    await waitFor('20,000 messages consumed', 60_000, () => (count >= total ? true : undefined), 100);
    await assertHoldsFor('no delivery beyond 20,000 (it would be a duplicate)', 500, () => count === total);
    for (const member of members) await member.close();

    const all = [...received.values()].flat();
    assert.equal(all.length, total, `consumed ${all.length} messages`);
    assert.equal(new Set(all).size, total, 'duplicates were consumed');
    assert.deepEqual(
      [...new Set(all)].sort((a, b) => a - b),
      Array.from({ length: total }, (_, i) => i),
    );
    for (const [queue, bodies] of received) {
      for (let i = 1; i < bodies.length; i++) assert.ok(bodies[i]! > bodies[i - 1]!, `queue ${queue} out of order at ${i}: ${bodies[i - 1]} then ${bodies[i]}`);
    }
  });

  test('a rebalance moves the queues of a consumer that leaves to the one that stays', async () => {
    const admin = new MambaClient({ brokers: addresses(cluster) });
    await admin.createTopic('rebal', 4);
    admin.close();
    const seen: string[] = [];
    const a = new Consumer({ brokers: addresses(cluster), group: 'rg', topic: 'rebal', memberId: 'a', heartbeatIntervalMs: 100 });
    const b = new Consumer({ brokers: addresses(cluster), group: 'rg', topic: 'rebal', memberId: 'b', heartbeatIntervalMs: 100 });
    await a.start((m) => {
      seen.push(`a:${m.body.toString()}`);
    });
    await b.start((m) => {
      seen.push(`b:${m.body.toString()}`);
    });
    await waitFor('two queues each', 10_000, () => (a.assignment().topic.length === 2 && b.assignment().topic.length === 2 ? true : undefined));
    assert.deepEqual(a.assignment().topic, [0, 2]);
    assert.deepEqual(b.assignment().topic, [1, 3]);
    await b.close();
    await waitFor('the remaining consumer to own all four queues', 10_000, () => (a.assignment().topic.length === 4 ? true : undefined));
    const producer = new Producer({ brokers: addresses(cluster), lingerMs: 0 });
    for (let q = 0; q < 4; q++) await producer.send('rebal', { body: `after-${q}` }, { queue: q });
    await producer.close();
    await waitFor('every message after the rebalance at the remaining consumer', 10_000, () =>
      seen.filter((s) => s.startsWith('a:after-')).length === 4 ? true : undefined,
    );
    assert.equal(seen.filter((s) => s.startsWith('b:after-')).length, 0);
    await a.close();
  });

  test('a message nacked N times lands in the dead-letter queue', async () => {
    const admin = new MambaClient({ brokers: addresses(cluster) });
    await admin.createTopic('jobs', 1);
    const attempts: number[] = [];
    const consumer = new Consumer({
      brokers: addresses(cluster),
      group: 'workers',
      topic: 'jobs',
      heartbeatIntervalMs: 100,
      nack: { attemptsMax: 3, delayMsInitial: 100, delayMsMax: 400 },
    });
    await consumer.start((m) => {
      if (m.body.toString() === 'poison') {
        attempts.push(m.attempt);
        throw new Error('cannot process poison');
      }
    });
    const producer = new Producer({ brokers: addresses(cluster), lingerMs: 0 });
    await producer.send('jobs', { body: 'poison' });
    await producer.close();
    const dead = await waitFor(
      'the poison message in the dead-letter queue',
      20_000,
      async () => {
        const r = await admin.read(deadLetterTopicOf('jobs'), 0, 0).catch(() => null);
        return r?.messages.length ? r.messages : undefined;
      },
      200,
    );
    await consumer.close();
    admin.close();
    assert.deepEqual(attempts, [1, 2, 3]);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.body.toString(), 'poison');
    assert.equal(dead[0]!.headers[retryHeaders.attempt]?.toString(), '4');
    assert.equal(dead[0]!.headers[retryHeaders.originTopic]?.toString(), 'jobs');
    assert.match(dead[0]!.headers[retryHeaders.error]?.toString() ?? '', /cannot process poison/);
  });
});

/**
 * After a group's brokers were killed: a request written on a produce stream opened before the
 * kill, before the client has seen that stream break, may have reached the broker as far as the
 * client can tell, so it fails with OutcomeUnknownError (and stays on its queue), never as a drop
 * or a move to another group. Probes pinned to one of the dead group's queues settle such streams
 * (one per broker the producer wrote to) until a probe is dropped: it never left the client, so
 * the streams opened from then on never connect.
 */
async function settleStaleStreams(producer: Producer, topic: string, queue: number): Promise<void> {
  const seen: string[] = [];
  for (let probe = 1; probe <= 4; probe++) {
    const error = await producer.send(topic, { body: `probe-${probe}` }, { queue }).then(
      () => assert.fail(`probe ${probe} to ${topic}/${queue} was acknowledged with its group down`),
      (e: unknown) => e,
    );
    if (error instanceof DroppedError) return;
    assert.ok(error instanceof OutcomeUnknownError, `probe ${probe} failed with ${String(error)}`);
    seen.push(String(error));
  }
  assert.fail(`no probe to ${topic}/${queue} was dropped: ${seen.join('; ')}`);
}

describe('when no group accepts', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start();
  });
  after(async () => cluster?.stop());

  test('buffer mode holds messages while every broker is down and delivers them when the group returns', async () => {
    const admin = new MambaClient({ brokers: addresses(cluster) });
    await admin.createTopic('held', 2);
    const producer = new Producer({
      brokers: addresses(cluster),
      whenUnavailable: 'buffer',
      lingerMs: 0,
      requestTimeoutMs: 500,
      retry: { attemptsMax: 2, backoffMsInitial: 20, backoffMsMax: 200 },
    });
    await producer.send('held', { body: 'warm-up' }, { queue: 0 }); // routes are known before the outage
    for (const b of cluster.brokers) await cluster.kill(b.id);
    let acked = 0;
    const sends = Array.from({ length: 50 }, (_, i) =>
      producer.send('held', { body: `held-${i}` }, { queue: i % 2 }).then(() => {
        acked++;
      }),
    );
    await assertHoldsFor('no message acknowledged while every broker is down', 2000, () => acked === 0);
    await restartAll(cluster);
    await Promise.all(sends);
    assert.equal(acked, 50);
    await producer.close();
    // The read may land on a follower, which learns the high watermark a moment after the ack.
    const expected = Array.from({ length: 50 }, (_, i) => `held-${i}`).sort();
    const bodies = await waitFor('the held messages to be readable', 5000, async () => {
      const read = [...(await admin.read('held', 0, 0)).messages, ...(await admin.read('held', 1, 0)).messages]
        .map((m) => m.body.toString())
        .filter((b) => b.startsWith('held-'));
      return read.length === 50 ? read : undefined;
    });
    admin.close();
    assert.deepEqual(bodies.sort(), expected);
  });

  test('drop mode reports exactly the dropped count through the promise, the event, stats() and the metric on the registry given', async () => {
    // The brokers were all restarted by the test before: the topic is made and written through
    // a client with the default retries, so the group is serving before the short-timeout producer.
    const admin = new MambaClient({ brokers: addresses(cluster) });
    await admin.createTopic('lossy', 1).catch((error: unknown) => {
      if (!(error instanceof AlreadyExistsError)) throw error; // a retry of a create that was stored
    });
    await admin.send('lossy', [{ body: 'ready' }]);
    admin.close();
    const registry = new Registry();
    const producer = new Producer({
      brokers: addresses(cluster),
      whenUnavailable: 'drop',
      lingerMs: 0,
      requestTimeoutMs: 300,
      retry: { attemptsMax: 2, backoffMsInitial: 10, backoffMsMax: 50 },
      metrics: { registry },
    });
    const droppedOf = async (from: Registry): Promise<number> =>
      (await from.getSingleMetric('mamba_client_dropped_messages_total')?.get())?.values.find((v) => v.labels.topic === 'lossy')?.value ?? 0;
    await producer.send('lossy', { body: 'warm-up' });
    assert.equal(await droppedOf(registry), 0);
    for (const b of cluster.brokers) await cluster.kill(b.id);
    await settleStaleStreams(producer, 'lossy', 0);
    const droppedBefore = producer.stats().droppedMessages;
    assert.equal(await droppedOf(registry), droppedBefore);
    let evented = 0;
    producer.on('drop', (e: { count: number }) => {
      evented += e.count;
    });
    const outcomes = await Promise.allSettled(Array.from({ length: 37 }, (_, i) => producer.send('lossy', { body: `x${i}` })));
    const dropped = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof DroppedError).length;
    assert.equal(dropped, 37, `outcomes: ${outcomes.map((o) => (o.status === 'rejected' ? String(o.reason) : 'acknowledged')).join('; ')}`);
    assert.equal(producer.stats().droppedMessages - droppedBefore, 37);
    assert.equal(evented, 37);
    assert.equal((await droppedOf(registry)) - droppedBefore, 37);
    assert.equal(register.getSingleMetric('mamba_client_dropped_messages_total'), undefined, 'nothing on the global registry');
    await producer.close(1000);
    await restartAll(cluster);
  });
});

describe('round-robin over two groups', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start({ groups: 2 });
  });
  after(async () => cluster?.stop());

  test('sends alternate over both groups, and move to the other group while one is down', async () => {
    const admin = new MambaClient({ brokers: addresses(cluster) });
    await admin.createTopic('spread-rr', 4);
    const producer = new Producer({
      brokers: addresses(cluster),
      lingerMs: 0,
      requestTimeoutMs: 500,
      groupFailuresMax: 2,
      // Drop: the pinned probes below end (round-robin sends move to g1 long before 20 attempts).
      whenUnavailable: 'drop',
      retry: { attemptsMax: 20, backoffMsInitial: 10, backoffMsMax: 100 },
    });
    const first = await Promise.all(Array.from({ length: 8 }, (_, i) => producer.send('spread-rr', { body: `a${i}` })));
    assert.deepEqual(first.map((s) => s.queue).sort(), [0, 0, 1, 1, 2, 2, 3, 3], 'round-robin over every queue of both groups');
    for (const b of cluster.groupBrokers('g2')) await cluster.kill(b.id);
    // A batch that may be stored on g2 would stay there (never moved, OutcomeUnknownError).
    await settleStaleStreams(producer, 'spread-rr', 1);
    const during = await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send('spread-rr', { body: `b${i}` })));
    assert.ok(
      during.every((s) => s.queue % 2 === 0),
      `with g2 down every message must land in g1's queues: ${during.map((s) => s.queue).join(',')}`,
    );
    await producer.close();
    const stored: string[] = [];
    for (const queue of [0, 2]) stored.push(...(await admin.read('spread-rr', queue, 0)).messages.map((m) => m.body.toString()));
    admin.close();
    for (let i = 0; i < 20; i++) assert.ok(stored.includes(`b${i}`), `b${i} missing from g1`);
  });
});
