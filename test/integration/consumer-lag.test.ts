// Consumer-group lag (issue 13.5) on a real cluster of two groups: a topic of four queues (0 and
// 2 in g1, 1 and 3 in g2), a consumer group of two members that read and commit part of it, and
// then: DescribeConsumerGroup from every broker (each answers cluster-wide, asking the leaders of
// the groups it does not lead), ListConsumerGroups, the CLI's text and JSON, the lag metric on
// the leaders' /metrics, bad input, and a group that does not answer.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { TestCluster, waitFor } from './cluster-harness.js';
import { cli } from './workload.js';
import { MambaClient, type ConsumerGroupDescription } from '../../src/client/client.js';
import { Consumer, type Delivery } from '../../src/client/consumer.js';
import { consumerGroupListingsMax, mergeConsumerGroupLists } from '../../src/broker/admin.js';
import { InvalidArgumentError, NotFoundError } from '../../src/errors.js';
import { parsePromText, sampleValue } from '../observe/prom-text.js';
import { SecureCluster } from '../security/secure-cluster.js';
import { createKey } from '../../src/auth/keys.js';

/** Messages per queue before the commit, and after it. */
const before1 = [6, 9, 4, 0];
const after2 = [5, 7, 3, 8];
const queueGroups = ['g1', 'g2', 'g1', 'g2'];
const fastRetry = { attemptsMax: 20, backoffMsInitial: 10, backoffMsMax: 200 };

// The CLI runs in an empty directory with no MAMBA_* variables (as in cli.test.ts).

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return cli(args, { timeoutMs: 30_000 });
}

async function scrape(cluster: TestCluster, brokerId: string): Promise<ReturnType<typeof parsePromText>> {
  const b = cluster.broker(brokerId);
  const response = await fetch(`http://${b.host}:${b.metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  return parsePromText(await response.text());
}

function grpcCode(error: unknown): string {
  return grpc.status[(error as grpc.ServiceError).code] ?? String(error);
}

describe('consumer-group lag across two groups', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let admin: MambaClient;
  let brokers: string;
  const topic = `lag-${randomBytes(4).toString('hex')}`;
  const consumerGroup = `cg-${randomBytes(4).toString('hex')}`;
  const members: Consumer[] = [];
  const delivered = new Map<number, number[]>();

  before(async () => {
    cluster = await TestCluster.start({ groups: 2 });
    brokers = cluster.brokers.map((b) => b.clientAddress).join(',');
    admin = new MambaClient({ brokers: cluster.brokers.map((b) => b.clientAddress), retry: fastRetry });
    await admin.createTopic(topic, 4);
  });

  after(async () => {
    for (const m of members) await m.close();
    admin?.close();
    await cluster?.stop();
  });

  async function produce(counts: number[], tag: string): Promise<void> {
    for (const [queue, count] of counts.entries()) {
      if (count === 0) continue;
      const messages = Array.from({ length: count }, (_, i) => ({ body: `${tag}-${queue}-${i}` }));
      const sent = await admin.send(topic, messages, { queue });
      assert.equal(sent.count, count);
    }
  }

  async function allDelivered(counts: number[], what: string): Promise<void> {
    await waitFor(what, 30_000, () => (counts.every((n, q) => (delivered.get(q)?.length ?? 0) === n) ? true : undefined));
    for (const [q, offsets] of delivered) assert.deepEqual(offsets, [...offsets.keys()], `queue ${q}: each offset once, in order`);
  }

  /** What the two members read now, queue → member id. */
  function ownersNow(): Map<number, string> {
    const owners = new Map<number, string>();
    for (const m of members) for (const q of m.assignment().topic) owners.set(q, m.memberId);
    return owners;
  }

  test('two members read and commit part; describe gives the exact committed, end and lag per queue and the total, from every broker', async () => {
    await produce(before1, 'first');
    for (const memberId of ['a', 'b']) {
      const member = new Consumer({
        brokers: cluster.brokers.map((b) => b.clientAddress),
        group: consumerGroup,
        topic,
        memberId,
        autoCommitIntervalMs: 0,
        heartbeatIntervalMs: 200,
        retry: fastRetry,
      });
      member.on('error', () => undefined); // leaders are found again on their own; the test reads results
      members.push(member);
      await member.start((m: Delivery) => {
        const list = delivered.get(m.queue) ?? [];
        list.push(m.offset);
        delivered.set(m.queue, list);
      });
    }
    // The coordinator deals nothing for one session timeout after it first hears of the group.
    await waitFor('both members to read two queues each', 30_000, () => {
      const [a, b] = members.map((m) => m.assignment().topic.length);
      return a === 2 && b === 2 ? true : undefined;
    });
    await allDelivered(before1, 'the first messages to be read');
    for (const m of members) await m.commit();
    await produce(after2, 'second');
    await allDelivered(
      before1.map((n, q) => n + after2[q]!),
      'the second messages to be read (not committed)',
    );

    const owners = ownersNow();
    const expectedQueues = before1.map((committed, queue) => ({
      queue,
      group: queueGroups[queue],
      memberId: owners.get(queue),
      committedOffset: committed === 0 ? null : committed, // nothing read on queue 3 before the commit: nothing committed
      startOffset: 0,
      endOffset: committed + after2[queue]!,
      lagMessages: after2[queue],
    }));
    const lagTotal = after2.reduce((sum, n) => sum + n, 0);
    // Every broker answers the same, whichever group it is in and whether it leads it.
    for (const b of cluster.brokers) {
      const reply = await waitFor(`${b.id} to describe the members as they read`, 10_000, async () => {
        const r = await cluster.client(b.id).call('DescribeConsumerGroup', { consumerGroup, topic });
        const assigned = (r.members as Array<{ memberId: string; assignedQueues: number[] }>).map((m) => [m.memberId, m.assignedQueues.join()]);
        return JSON.stringify(assigned) === JSON.stringify(members.map((m) => [m.memberId, m.assignment().topic.join()])) ? r : undefined;
      });
      const queues = (reply.queues as Array<Record<string, unknown>>).map((q) => ({
        queue: q.queue,
        group: q.group,
        memberId: q.memberId,
        committedOffset: q.committed ? q.committedOffset : null,
        startOffset: q.startOffset,
        endOffset: q.endOffset,
        lagMessages: q.lagMessages,
      }));
      assert.deepEqual(queues, expectedQueues, `queues as ${b.id} describes them`);
      assert.equal(reply.lagMessages, lagTotal, `total from ${b.id}`);
      assert.deepEqual(reply.groupsUnreachable, []);
      assert.ok(reply.generation >= 1);
      for (const m of reply.members as Array<{ lastHeartbeatAgeMs: number }>) assert.ok(m.lastHeartbeatAgeMs < reply.sessionTimeoutMs);
    }

    // The SDK's Admin call: the same, a missing commit as null.
    const described: ConsumerGroupDescription = await admin.describeConsumerGroup(consumerGroup, topic);
    assert.deepEqual(
      described.queues.map((q) => [q.queue, q.committedOffset, q.endOffset, q.lagMessages, q.memberId]),
      expectedQueues.map((q) => [q.queue, q.committedOffset, q.endOffset, q.lagMessages, q.memberId]),
    );
    assert.equal(described.lagMessages, lagTotal);
    assert.deepEqual(
      described.members.map((m) => m.memberId),
      ['a', 'b'],
    );

    // ListConsumerGroups: the topic with both members and three committed queues; its retry topic
    // with both members and nothing committed.
    const list = await admin.listConsumerGroups();
    assert.equal(list.truncated, false);
    assert.deepEqual(list.groupsUnreachable, []);
    const mine = list.consumerGroups.filter((l) => l.consumerGroup === consumerGroup);
    assert.deepEqual(mine, [
      { consumerGroup, topic, memberCount: 2, committedQueueCount: 3 },
      { consumerGroup, topic: `${topic}.retry`, memberCount: 2, committedQueueCount: 0 },
    ]);

    // The CLI: JSON as the API gives it; the table names each queue's numbers and the total.
    const json = await runCli(['--brokers', brokers, '--json', 'consumer-group', 'describe', consumerGroup, '--topic', topic]);
    assert.equal(json.code, 0, json.stderr);
    const printed = JSON.parse(json.stdout) as { lagMessages: number; queues: Array<Record<string, unknown>>; members: Array<{ memberId: string }> };
    assert.deepEqual(Object.keys(printed), [
      'consumerGroup',
      'topic',
      'generation',
      'sessionTimeoutMs',
      'members',
      'queues',
      'lagMessages',
      'groupsUnreachable',
    ]);
    assert.deepEqual(printed.queues, expectedQueues);
    assert.equal(printed.lagMessages, lagTotal);
    const text = await runCli(['--brokers', brokers, 'consumer-group', 'describe', consumerGroup, '--topic', topic]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^consumer group ${consumerGroup} {2}topic ${topic} {2}2 members {2}generation \\d+ {2}lag ${lagTotal}\\n`));
    for (const q of expectedQueues) {
      const row = [q.queue, q.group, q.memberId, q.committedOffset ?? '-', q.startOffset, q.endOffset, q.lagMessages].join(' +');
      assert.match(text.stdout, new RegExp(`\\n {2}${row}\\n`), `row of queue ${q.queue} in:\n${text.stdout}`);
    }
    for (const m of members)
      assert.match(text.stdout, new RegExp(`\\n {2}${m.memberId} +${m.assignment().topic.join(',')} +${m.assignment().topic.join(',')} +\\d+ ms ago\\n`));
    assert.match(text.stdout, new RegExp(`\\n {2}total lag ${lagTotal}\\n$`));
    const listed = await runCli(['--brokers', brokers, 'consumer-group', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^consumer group +topic +members +committed queues\n/);
    assert.match(listed.stdout, new RegExp(`\\n${consumerGroup} +${topic} +2 +3\\n`));

    // The metric on each group's leader: one series per queue it holds, the same lag; the
    // backlog (committed queues only) has no series for queue 3.
    for (const group of ['g1', 'g2']) {
      const leader = (await cluster.waitForLeader(group, 10_000)).leaderId;
      const families = await scrape(cluster, leader);
      for (const q of expectedQueues.filter((e) => e.group === group)) {
        const labels = { consumer_group: consumerGroup, topic, queue: String(q.queue) };
        assert.equal(sampleValue(families, 'mamba_consumer_group_lag_messages', labels), q.lagMessages, `lag of queue ${q.queue} on ${leader}`);
        assert.equal(sampleValue(families, 'mamba_consumer_backlog_messages', labels), q.committedOffset === null ? undefined : q.lagMessages);
      }
      for (const q of expectedQueues.filter((e) => e.group !== group))
        assert.equal(sampleValue(families, 'mamba_consumer_group_lag_messages', { consumer_group: consumerGroup, topic, queue: String(q.queue) }), undefined);
    }
  });

  test('bad input: unknown consumer group or topic is NOT_FOUND naming it; an invalid name is INVALID_ARGUMENT naming the field', async () => {
    const raw = cluster.client(cluster.brokers[0]!.id);
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [
        { consumerGroup: 'nobody-here', topic },
        'NOT_FOUND',
        new RegExp(`consumer group "nobody-here" has no committed offset and no live member on topic "${topic}"`),
      ],
      [{ consumerGroup, topic: 'no-such-topic' }, 'NOT_FOUND', /topic "no-such-topic" does not exist/],
      [{ consumerGroup: 'bad group', topic }, 'INVALID_ARGUMENT', /consumer_group "bad group" is not valid/],
      [{ consumerGroup, topic: 'bad/topic' }, 'INVALID_ARGUMENT', /topic name "bad\/topic" is not valid/],
      [{ consumerGroup: '', topic }, 'INVALID_ARGUMENT', /consumer_group is required/],
      [{ consumerGroup }, 'INVALID_ARGUMENT', /topic is required/],
    ];
    for (const [request, code, details] of cases) {
      await assert.rejects(raw.call('DescribeConsumerGroup', request), (error: grpc.ServiceError) => {
        assert.equal(grpcCode(error), code, JSON.stringify(request));
        assert.match(error.details, details);
        return true;
      });
    }
    await assert.rejects(admin.describeConsumerGroup('nobody-here', topic), NotFoundError);
    await assert.rejects(admin.describeConsumerGroup('bad group', topic), InvalidArgumentError);
    const cli = await runCli(['--brokers', brokers, 'consumer-group', 'describe', 'nobody-here', '--topic', topic]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /^mambamq: consumer group "nobody-here" has no committed offset and no live member on topic "lag-[0-9a-f]+"\n$/);
    const usage = await runCli(['--brokers', brokers, 'consumer-group', 'describe', consumerGroup]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /required option '--topic <name>' not specified/);
  });

  test('members gone: the committed offsets stay described (lag 0 after their last commit); a group that does not answer is named, its queues missing', async () => {
    for (const m of members.splice(0)) await m.close(); // each commits what it read, then leaves
    const ends = before1.map((n, q) => n + after2[q]!);
    const described = await waitFor('the members to leave', 10_000, async () => {
      const d = await admin.describeConsumerGroup(consumerGroup, topic);
      return d.members.length === 0 ? d : undefined;
    });
    assert.deepEqual(
      described.queues.map((q) => [q.queue, q.committedOffset, q.endOffset, q.lagMessages, q.memberId]),
      ends.map((end, queue) => [queue, end, end, 0, null]),
    );
    assert.equal(described.lagMessages, 0);

    for (const b of cluster.groupBrokers('g2')) await cluster.kill(b.id);
    const g1Leader = (await cluster.waitForLeader('g1', 10_000)).leaderId;
    const partial = await cluster.client(g1Leader).call('DescribeConsumerGroup', { consumerGroup, topic }, 20_000);
    assert.deepEqual(partial.groupsUnreachable, ['g2']);
    assert.deepEqual(
      (partial.queues as Array<{ queue: number }>).map((q) => q.queue),
      [0, 2],
    );
    assert.equal(partial.lagMessages, 0);
    const list = await cluster.client(g1Leader).call('ListConsumerGroups', {}, 20_000);
    assert.deepEqual(list.groupsUnreachable, ['g2']);
    const text = await runCli([
      '--brokers',
      cluster
        .groupBrokers('g1')
        .map((b) => b.clientAddress)
        .join(','),
      'consumer-group',
      'describe',
      consumerGroup,
      '--topic',
      topic,
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /\nwarning: group g2 did not answer: what they hold is missing\n$/);
  });
});

describe('consumer-group lag under access keys', { timeout: 120_000 }, () => {
  let cluster: SecureCluster;
  before(async () => {
    cluster = await SecureCluster.start({ groups: 2, tls: false });
  });
  after(async () => cluster?.stop());

  test("describe needs consume or admin on the topic; list needs a valid key; joining a consumer group needs consume; forwarding stays the brokers'", async () => {
    const ops = createKey(cluster.keysFile, 'ops');
    const reader = createKey(cluster.keysFile, 'reader');
    cluster.writePermissions([
      { key: 'admin', topics: ['*'], actions: ['produce', 'consume', 'admin'] },
      { key: cluster.keys.app.id, topics: ['orders.*'], actions: ['produce'] },
      { key: 'ops', topics: ['orders.*'], actions: ['admin'] },
      { key: 'reader', topics: ['orders.*'], actions: ['consume'] },
    ]);
    const [admin, app, opsKey, readerKey] = [cluster.keys.admin, cluster.keys.app, ops, reader].map((k) => cluster.signer(k)) as [
      ReturnType<SecureCluster['signer']>,
      ReturnType<SecureCluster['signer']>,
      ReturnType<SecureCluster['signer']>,
      ReturnType<SecureCluster['signer']>,
    ];
    const leader = await cluster.leaderOf('g1');
    const client = cluster.rawClient(leader.clientAddress);
    await cluster.call(client, 'CreateTopic', { name: 'orders.lag', queues: 2 }, admin);
    await cluster.call(client, 'Produce', { topic: 'orders.lag', queue: 0, messages: [1, 2, 3].map((i) => ({ body: Buffer.from(String(i)) })) }, admin);
    await cluster.call(client, 'CommitOffset', { consumerGroup: 'cg', topic: 'orders.lag', queue: 0, offset: 1 }, admin);
    const request = { consumerGroup: 'cg', topic: 'orders.lag' };

    // Each broker reloads the files on its own: ask a follower of g2 too, which forwards to both leaders.
    const g2Leader = await cluster.leaderOf('g2');
    const follower = cluster.brokers.find((b) => b.group === 'g2' && b.id !== g2Leader.id)!;
    for (const address of [leader.clientAddress, follower.clientAddress]) {
      const c = cluster.rawClient(address);
      for (const key of [opsKey, readerKey]) {
        const described = await waitFor('the new keys and grants', 10_000, async () => cluster.call(c, 'DescribeConsumerGroup', request, key));
        assert.deepEqual(
          (described.queues as Array<Record<string, unknown>>).map((q) => [q.queue, q.committed, q.committedOffset, q.endOffset, q.lagMessages]),
          [
            [0, true, 1, 3, 2],
            [1, false, 0, 0, 0],
          ],
        );
      }
    }
    await assert.rejects(cluster.call(client, 'DescribeConsumerGroup', request, app), (error: grpc.ServiceError) => {
      assert.equal(grpcCode(error), 'PERMISSION_DENIED');
      assert.match(error.details, /may not consume or administer topic "orders.lag" \(consume or admin not granted\)/);
      return true;
    });
    const listed = await cluster.call(client, 'ListConsumerGroups', {}, app);
    assert.deepEqual(
      (listed.consumerGroups as Array<Record<string, unknown>>).map((l) => [l.consumerGroup, l.topic, l.memberCount, l.committedQueueCount]),
      [['cg', 'orders.lag', 0, 1]],
    );
    await assert.rejects(cluster.call(client, 'Heartbeat', { consumerGroup: 'cg', topic: 'orders.lag', memberId: 'm' }, app), (error: grpc.ServiceError) => {
      assert.equal(grpcCode(error), 'PERMISSION_DENIED');
      assert.match(error.details, /may not consume topic "orders.lag"/);
      return true;
    });
    // Only brokers may ask for one group's part: a client's "forwarded" mark is dropped, and the
    // answer still covers both groups.
    const marked = new grpc.Metadata();
    marked.set('mamba-forwarded', '1');
    const whole = await cluster.call(client, 'DescribeConsumerGroup', request, readerKey, marked);
    assert.deepEqual(
      (whole.queues as Array<{ group: string }>).map((q) => q.group),
      ['g1', 'g2'],
    );
  });
});

describe('consumer-group lists merged from the groups', () => {
  const listing = (consumerGroup: string, topic = 't', committedQueueCount = 1) => ({ consumerGroup, topic, memberCount: 0, committedQueueCount });

  test('counts of one (consumer group, topic) add up over the groups; unreachable groups are named', () => {
    const merged = mergeConsumerGroupLists([
      { group: 'g1', answer: { consumerGroups: [listing('a'), { ...listing('b'), memberCount: 2 }], groupsUnreachable: [], truncated: false } },
      { group: 'g2', answer: { consumerGroups: [listing('b', 't', 3)], groupsUnreachable: [], truncated: false } },
      { group: 'g3', answer: null },
    ]);
    assert.deepEqual(merged, {
      consumerGroups: [listing('a'), { ...listing('b', 't', 4), memberCount: 2 }],
      groupsUnreachable: ['g3'],
      truncated: false,
    });
  });

  test('a cut part: nothing after its last entry is given, so every count given is complete', () => {
    const names = Array.from({ length: consumerGroupListingsMax + 1 }, (_, i) => `c${String(i).padStart(5, '0')}`);
    const cut = names.slice(0, consumerGroupListingsMax).map((n) => listing(n));
    const merged = mergeConsumerGroupLists([
      { group: 'g1', answer: { consumerGroups: cut, groupsUnreachable: [], truncated: true } },
      // g2 knows one before the cut (its count adds up) and one after it (left out: g1 may hold more of it)
      { group: 'g2', answer: { consumerGroups: [listing(names[0]!), listing(names.at(-1)!)], groupsUnreachable: [], truncated: false } },
    ]);
    assert.equal(merged.truncated, true);
    assert.equal(merged.consumerGroups.length, consumerGroupListingsMax);
    assert.equal(merged.consumerGroups[0]!.committedQueueCount, 2);
    assert.equal(merged.consumerGroups.at(-1)!.consumerGroup, names.at(-2));
  });
});
