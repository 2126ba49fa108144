// The SDK's request path (src/client/cluster.ts) with the retrier (retry.ts) over a scripted
// transport: no server, no sockets. Each test names the step of cluster.ts's header it checks.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MambaClient } from '../../src/client/client.js';
import { Cluster } from '../../src/client/cluster.js';
import type { Transport } from '../../src/client/connection.js';
import { retry, type RetryClock, type RetryPolicy } from '../../src/client/retry.js';
import { InvalidArgumentError, NotFoundError, NotLeaderError, UnavailableError } from '../../src/errors.js';
import type { GroupInfo, MethodName, RequestOf, ResponseOf } from '../../src/protocol/messages.js';
import { waitFor } from '../../scripts/lib/cluster.js';

type Handler = (method: MethodName, request: unknown) => unknown;

/** Brokers by address, each a function of (method, request) that answers or throws. */
class ScriptedTransport implements Transport {
  readonly calls: Array<{ address: string; method: MethodName; request: unknown }> = [];
  onMetadataVersion: ((version: number) => void) | undefined = undefined;
  constructor(readonly brokers: Map<string, Handler>) {}

  async call<M extends MethodName>(address: string, method: M, request: RequestOf<M>): Promise<ResponseOf<M>> {
    this.calls.push({ address, method, request });
    const broker = this.brokers.get(address);
    if (!broker) throw new UnavailableError(`${address}: connection refused`);
    return broker(method, request) as ResponseOf<M>;
  }

  methods(method: MethodName): string[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.address);
  }
}

/** One group g1 of brokers b1..b3 at a1..a3; `leader` is the leader the description names ('' for none). */
function group(leader: string, epoch = 1, id = 'g1', brokers = ['b1', 'b2', 'b3']): GroupInfo {
  return {
    id,
    leaderId: leader,
    epoch,
    highWatermark: 0,
    advice: null,
    replicas: brokers.map((b) => ({
      id: b,
      address: `a${b.slice(1)}`,
      role: b === leader ? 'leader' : 'follower',
      endOffset: 0,
      lagOffsets: 0,
      lagMs: 0,
      lastFetchAgeMs: -1,
      reachable: true,
    })),
  };
}

const topicAnswer = (name: string, groups: string[]) => ({
  topic: { name, queues: groups.length, createdMs: 0 },
  queues: groups.map((g, queue) => ({ queue, group: g, leaderId: '', startOffset: 0, highWatermark: 0 })),
});

const produced = (queue: number) => ({ topic: 't', queue, baseOffset: 7, count: 1, duplicate: false });

/** A broker that describes the cluster and topic "t" (one queue in g1), and answers Produce with `produce`. */
function broker(describe: () => GroupInfo[], produce: Handler = (_m, r) => produced((r as { queue: number }).queue)): Handler {
  return (method, request) => {
    if (method === 'DescribeCluster') return { groups: describe() };
    if (method === 'DescribeTopic') return topicAnswer('t', ['g1']);
    return produce(method, request);
  };
}

const instant: RetryClock = { now: () => 0, sleep: async () => undefined, random: () => 0.5 };
const fast: RetryPolicy = { attemptsMax: 5, backoffMsInitial: 1, backoffMsMax: 4, multiplier: 2, jitter: 0, elapsedMsMax: 60_000 };

function produce(cluster: Cluster, queue = 0): Promise<ResponseOf<'Produce'>> {
  return retry(fast, () => cluster.callQueueLeader('t', queue, 'Produce', { topic: 't', queue }), { clock: instant });
}

describe('request path', () => {
  test('leader: the first call describes the cluster and the topic, then goes to the leader named', async () => {
    const transport = new ScriptedTransport(new Map([['a1', broker(() => [group('b2')])]]));
    transport.brokers.set('a2', transport.brokers.get('a1')!);
    const cluster = new Cluster(transport, ['a1'], 1000);
    assert.equal((await produce(cluster)).baseOffset, 7);
    assert.deepEqual(transport.methods('Produce'), ['a2']);
    assert.equal(transport.methods('DescribeCluster').length, 1);
    await produce(cluster);
    assert.equal(transport.methods('DescribeCluster').length, 1, 'the leader hint and the route are cached');
    assert.equal(transport.methods('DescribeTopic').length, 1);
  });

  test('on failure: a redirect with the leader hint sends the retry there, without describing the cluster again', async () => {
    const describe = () => [group('b1')];
    const notLeader: Handler = (method, request) => {
      if (method === 'Produce') throw new NotLeaderError('not the leader', 'b3', 'a3');
      return broker(describe)(method, request);
    };
    const transport = new ScriptedTransport(
      new Map([
        ['a1', notLeader],
        ['a3', broker(describe)],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    await produce(cluster);
    assert.deepEqual(transport.methods('Produce'), ['a1', 'a3']);
    assert.equal(transport.methods('DescribeCluster').length, 1);
    assert.equal(cluster.router.leaderHint('g1'), 'a3', 'the hint stays on the new leader');
  });

  test('on failure: "not the leader" without a hint forgets the leader, and the retry describes the cluster again', async () => {
    let leader = 'b1';
    const describe = () => [group(leader, leader === 'b1' ? 1 : 2)];
    const transport = new ScriptedTransport(
      new Map<string, Handler>([
        [
          'a1',
          broker(describe, () => {
            leader = 'b2'; // the election happens as b1 refuses
            throw new NotLeaderError('not the leader', null, null);
          }),
        ],
        ['a2', broker(describe)],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    await produce(cluster);
    assert.deepEqual(transport.methods('Produce'), ['a1', 'a2']);
    assert.equal(transport.methods('DescribeCluster').length, 2);
  });

  test('on failure: an unreachable leader is forgotten too; the refreshed description leads elsewhere', async () => {
    let described = 0;
    const describe = () => [group(described++ === 0 ? 'b1' : 'b3', described)];
    const transport = new ScriptedTransport(new Map([['a2', broker(describe)]])); // a1 (the old leader) is down
    transport.brokers.set('a3', transport.brokers.get('a2')!);
    const cluster = new Cluster(transport, ['a1', 'a2'], 1000);
    await produce(cluster);
    assert.deepEqual(transport.methods('Produce'), ['a1', 'a3']);
  });

  test('on failure: a refusal is not retried and keeps the leader hint', async () => {
    const refusal = new InvalidArgumentError('message too large');
    const transport = new ScriptedTransport(
      new Map([
        [
          'a1',
          broker(
            () => [group('b1')],
            () => {
              throw refusal;
            },
          ),
        ],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    await assert.rejects(produce(cluster), (error) => error === refusal);
    assert.equal(transport.methods('Produce').length, 1);
    assert.equal(cluster.router.leaderHint('g1'), 'a1');
  });

  test('an advised broker is tried first; its failure teaches the router nothing, and the retry goes to the leader', async () => {
    const transport = new ScriptedTransport(
      new Map([
        [
          'a1',
          broker(
            () => [group('b1')],
            () => ({ ...produced(0), nextOffset: 0 }),
          ),
        ],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    await cluster.refresh();
    await retry(fast, (attempt) => cluster.callQueueLeader('t', 0, 'Consume', { topic: 't' }, { address: attempt.index === 0 ? 'a2' : undefined }), {
      clock: instant,
    });
    assert.deepEqual(transport.methods('Consume'), ['a2', 'a1']);
    assert.equal(cluster.router.leaderHint('g1'), 'a1');
  });

  test('order: with the route and the leader known, send runs synchronously inside the call', async () => {
    const transport = new ScriptedTransport(new Map([['a1', broker(() => [group('b1')])]]));
    const cluster = new Cluster(transport, ['a1'], 1000);
    await cluster.topic('t');
    await cluster.refresh();
    const order: string[] = [];
    const first = cluster.onQueueLeader('t', 0, async (address) => {
      order.push(`first ${address}`);
    });
    const second = cluster.onQueueLeader('t', 0, async (address) => {
      order.push(`second ${address}`);
    });
    order.push('returned');
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first a1', 'second a1', 'returned']);
  });

  test('a queue outside the topic is refused before any call to a leader', async () => {
    const transport = new ScriptedTransport(new Map([['a1', broker(() => [group('b1')])]]));
    const cluster = new Cluster(transport, ['a1'], 1000);
    for (const queue of [1, -1, 0.5]) {
      await assert.rejects(produce(cluster, queue), (error: Error) => error instanceof InvalidArgumentError && /has queues 0\.\.0/.test(error.message));
    }
    assert.deepEqual(transport.methods('Produce'), []);
  });

  test('refresh: an answer without a leader asks the other brokers and keeps the leader of the highest epoch', async () => {
    const transport = new ScriptedTransport(
      new Map<string, Handler>([
        ['a1', broker(() => [group('')])], // cut off: knows no leader
        ['a2', broker(() => [group('b1', 3)])], // stale
        ['a3', broker(() => [group('b3', 4)])],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    const groups = await cluster.refresh();
    assert.equal(groups[0]!.leaderId, 'b3');
    assert.equal(cluster.router.leaderHint('g1'), 'a3');
  });

  test('any broker: a retriable failure moves on to the next seed; a refusal ends at once', async () => {
    const transport = new ScriptedTransport(new Map([['a2', broker(() => [group('b1')])]]));
    const cluster = new Cluster(transport, ['a1', 'a2'], 1000);
    assert.equal((await cluster.callAny('DescribeCluster', {})).groups.length, 1);
    assert.deepEqual(transport.methods('DescribeCluster'), ['a1', 'a2']);

    const refusing = new ScriptedTransport(
      new Map<string, Handler>([
        [
          'a1',
          () => {
            throw new NotFoundError('no topic');
          },
        ],
        ['a2', broker(() => [group('b1')])],
      ]),
    );
    await assert.rejects(new Cluster(refusing, ['a1', 'a2'], 1000).callAny('ListTopics', {}), NotFoundError);
    assert.deepEqual(refusing.methods('ListTopics'), ['a1']);
  });

  test('any broker: when none answers, one UnavailableError names every address tried', async () => {
    const cluster = new Cluster(new ScriptedTransport(new Map()), ['a1', 'a2'], 1000);
    await assert.rejects(cluster.callAny('ListTopics', {}), (error: Error) => error instanceof UnavailableError && /tried a1, a2/.test(error.message));
  });

  test('route: a topic a follower does not know yet is asked of a group leader', async () => {
    const follower: Handler = (method) => {
      if (method === 'DescribeCluster') return { groups: [group('b2')] };
      throw new NotFoundError('topic "t" does not exist');
    };
    const transport = new ScriptedTransport(
      new Map([
        ['a1', follower],
        ['a2', broker(() => [group('b2')])],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    const route = await cluster.topic('t');
    assert.deepEqual(route.queueGroups, ['g1']);
    assert.deepEqual(transport.methods('DescribeTopic'), ['a1', 'a2']);
  });

  test('route: an answer carrying a newer cluster metadata version makes cached topic routes stale (issue 14.1): asked again once', async () => {
    let groups = ['g1'];
    let version = 3;
    const transport = new ScriptedTransport(
      new Map([
        [
          'a1',
          (method) => {
            if (method === 'DescribeCluster') return { groups: [group('b1')], metadataVersion: version };
            if (method === 'DescribeTopic') return { ...topicAnswer('t', groups), metadataVersion: version };
            throw new Error(`unexpected ${method}`);
          },
        ],
      ]),
    );
    const cluster = new Cluster(transport, ['a1'], 1000);
    assert.deepEqual((await cluster.topic('t')).queueGroups, ['g1']);
    assert.equal(cluster.cachedTopic('t')?.queues, 1);
    await cluster.topic('t');
    assert.equal(transport.methods('DescribeTopic').length, 1, 'cached while no newer version is seen');
    groups = ['g1', 'g2'];
    version = 4;
    transport.onMetadataVersion?.(4); // any answer's trailing metadata
    assert.equal(cluster.cachedTopic('t'), undefined, 'stale');
    assert.deepEqual((await cluster.topic('t')).queueGroups, ['g1', 'g2']);
    await cluster.topic('t');
    assert.equal(transport.methods('DescribeTopic').length, 2);
  });
});

test('close() ends the calls still retrying, at their next wait, with their last error', async () => {
  // Every broker unreachable, and a policy that would go on retrying for minutes.
  const transport = new ScriptedTransport(new Map());
  const client = new MambaClient({
    brokers: ['a1:1'],
    transport,
    retry: { attemptsMax: 1000, backoffMsInitial: 100, backoffMsMax: 100, elapsedMsMax: 600_000 },
  });
  let settled: unknown = null;
  const reading = client.read('t', 0, 0).then(
    () => 'resolved',
    (error: unknown) => error,
  );
  void reading.then((outcome) => {
    settled = outcome;
  });
  await waitFor('a few attempts', 5000, () => (transport.calls.length >= 3 ? true : undefined));
  assert.equal(settled, null, 'still retrying');
  client.close();
  const outcome = await waitFor('the read to end after close', 1000, () => settled ?? undefined);
  assert.ok(outcome instanceof UnavailableError, `rejected with the last error (${String(outcome)})`);
});
