// Integration: real broker processes on 127.0.0.1, driven through the raw gRPC client API.
import { test, describe, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { serviceDefinition } from '../../src/protocol/protos.js';
import { TestCluster, waitFor } from './cluster-harness.js';
import { readAll, type MambaClient, type Wire } from './grpc-client.js';

const bodies = (prefix: string, from: number, count: number): Buffer[] => Array.from({ length: count }, (_, i) => Buffer.from(`${prefix}${from + i}`));

async function createTopic(cluster: TestCluster, leader: string, name: string, queues: number): Promise<void> {
  await cluster.client(leader).call('CreateTopic', { name, queues });
}

describe('one group of three brokers', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let leader: string;

  before(async () => {
    cluster = await TestCluster.start();
    leader = (await cluster.waitForLeader('g1', 10_000)).leaderId;
    await createTopic(cluster, leader, 'orders', 2);
  });
  // On a loaded machine (the suite runs two files at once) leadership may move between tests:
  // each test starts from the leader the group has now.
  beforeEach(async () => {
    leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
  });
  after(async () => cluster?.stop());

  test('10,000 quorum-acked messages are consumed back in order from the leader and from a follower', async () => {
    for (let batch = 0; batch < 100; batch++) {
      const reply = await cluster.client(leader).produce('orders', 0, bodies('m', batch * 100, 100));
      assert.equal(Number(reply.baseOffset), batch * 100);
      assert.equal(Number(reply.count), 100);
    }
    const expected = bodies('m', 0, 10_000).map(String);
    assert.deepEqual(await readAll(cluster.client(leader), 'orders', 0, 0, 10_000), expected);
    const follower = cluster.groupBrokers('g1').find((b) => b.id !== leader)!.id;
    await waitFor('the follower to know the high watermark', 5000, async () => {
      const reply = await cluster.client(follower).consume('orders', 0, 0, 1);
      return Number(reply.highWatermark) >= 10_000 ? true : undefined;
    });
    const fromFollower = await readAll(cluster.client(follower), 'orders', 0, 0, 10_000);
    assert.deepEqual(fromFollower, expected);
    const reply = await cluster.client(follower).consume('orders', 0, 0, 1);
    assert.equal(reply.servedBy, follower);
  });

  test('server reflection lists both services and serves the descriptor of the client API (what grpcurl uses)', async () => {
    const reflectionProto = join(
      dirname(createRequire(import.meta.url).resolve('@grpc/reflection')),
      '..',
      'proto',
      'grpc',
      'reflection',
      'v1alpha',
      'reflection.proto',
    );
    const definition = protoLoader.loadSync(reflectionProto, { keepCase: false });
    // biome-ignore lint/suspicious/noExplicitAny: the reflection service's generated shape has no types here
    const Reflection = (grpc.loadPackageDefinition(definition) as any).grpc.reflection.v1alpha.ServerReflection;
    const client = new Reflection(cluster.broker(leader).clientAddress, grpc.credentials.createInsecure());
    const ask = (request: Wire): Promise<Wire> =>
      new Promise((resolve, reject) => {
        const stream = client.serverReflectionInfo();
        stream.on('data', (reply: Wire) => {
          resolve(reply);
          stream.end();
        });
        stream.on('error', reject);
        stream.write(request);
      });
    const listed = await ask({ listServices: '*' });
    const names = (listed.listServicesResponse.service as Wire[]).map((s) => s.name);
    assert.ok(names.includes('mamba.v1.Mamba'), names.join(','));
    const file = await ask({ fileContainingSymbol: 'mamba.v1.Mamba' });
    const descriptors = file.fileDescriptorResponse.fileDescriptorProto as Buffer[];
    assert.ok(descriptors.length > 0 && descriptors.some((d) => d.includes(Buffer.from('ProduceRequest'))));
    client.close();
  });

  test('Subscribe streams a queue from an offset and then what arrives later, until cancelled', async () => {
    const client = cluster.client(leader).raw as unknown as { Subscribe(request: Wire): grpc.ClientReadableStream<Wire> };
    const stream = client.Subscribe({ topic: 'orders', queue: 0, offset: 9990, messagesMax: 100 });
    const seen: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (reply: Wire) => {
        for (const r of reply.records as Wire[]) seen.push(`${r.offset}:${Buffer.from(r.body).toString()}`);
        if (seen.length >= 12) resolve();
      });
      stream.on('error', (error: grpc.ServiceError) => (error.code === grpc.status.CANCELLED ? resolve() : reject(error)));
    });
    await waitFor('the first ten records', 5000, () => (seen.length >= 10 ? true : undefined));
    await cluster.client(leader).produce('orders', 0, bodies('m', 10_000, 2));
    await done;
    stream.cancel();
    assert.deepEqual(
      seen.slice(0, 12),
      Array.from({ length: 12 }, (_, i) => `${9990 + i}:m${9990 + i}`),
    );
  });

  test('a follower refuses a write with FAILED_PRECONDITION and names the leader in trailing metadata', async () => {
    const follower = cluster.groupBrokers('g1').find((b) => b.id !== leader)!;
    const error = await cluster
      .client(follower.id)
      .produce('orders', 1, bodies('x', 0, 1))
      .then(
        () => null,
        (e: grpc.ServiceError) => e,
      );
    assert.ok(error, 'the follower accepted a write');
    assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
    assert.match(error.details, /not the leader/);
    assert.equal(String(error.metadata.get('mamba-leader-id')[0]), leader);
    assert.equal(String(error.metadata.get('mamba-leader-address')[0]), cluster.broker(leader).clientAddress);
  });

  test('a broker restarted after the others moved on catches up', async () => {
    const follower = cluster.groupBrokers('g1').find((b) => b.id !== leader)!.id;
    await cluster.kill(follower);
    const start = Number((await cluster.client(leader).consume('orders', 1, 0, 1)).highWatermark);
    for (let batch = 0; batch < 20; batch++) await cluster.client(leader).produce('orders', 1, bodies('c', start + batch * 100, 100));
    cluster.launch(follower);
    const caughtUp = await waitFor('the restarted follower to catch up', 15_000, async () => {
      const view = await cluster.client(leader).describeGroup('g1');
      const replica = view?.replicas.find((r) => r.id === follower);
      return replica && view && replica.endOffset >= view.highWatermark && replica.reachable ? view : undefined;
    });
    assert.equal(caughtUp.leaderId, leader);
    await waitFor('the restarted follower to serve the new messages', 5000, async () => {
      const reply = await cluster.client(follower).consume('orders', 1, 0, 1);
      return Number(reply.highWatermark) >= start + 2000 ? true : undefined;
    });
    const read = await readAll(cluster.client(follower), 'orders', 1, start, start + 2000);
    assert.deepEqual(read, bodies('c', start, 2000).map(String));
  });

  test('bad input gets a clear status, the broker stays up and nothing stored changes', async () => {
    const before = await readAll(cluster.client(leader), 'orders', 0, 0, 10_002);
    // A call is made on the group's leader. On a loaded machine an election may move leadership
    // during the test: a call the old leader refused as "not the leader" is made again on the new
    // one (a few times at most), since the refusal of its bad input is what is checked.
    const expectError = async (work: Promise<unknown> | ((client: MambaClient) => Promise<unknown>), code: grpc.status, pattern: RegExp): Promise<void> => {
      let error: grpc.ServiceError | null = null;
      for (let attempt = 1; attempt <= 3; attempt++) {
        error = await (typeof work === 'function' ? work(cluster.client(leader)) : work).then(
          () => null,
          (e: grpc.ServiceError) => e,
        );
        const moved = error?.code === grpc.status.FAILED_PRECONDITION && /is not the leader/.test(error.details);
        if (!moved || typeof work !== 'function' || code === grpc.status.FAILED_PRECONDITION) break;
        leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
      }
      assert.ok(error, `expected ${grpc.status[code]}, the call succeeded`);
      assert.equal(error.code, code, `expected ${grpc.status[code]}, got ${grpc.status[error.code]}: ${error.details}`);
      assert.match(error.details, pattern);
    };
    await expectError((client) => client.produce('nope', 0, bodies('x', 0, 1)), grpc.status.NOT_FOUND, /topic "nope" does not exist/);
    await expectError((client) => client.produce('orders', 7, bodies('x', 0, 1)), grpc.status.NOT_FOUND, /no queue 7.*0\.\.1/);
    await expectError((client) => client.consume('orders', 0, 20_000), grpc.status.OUT_OF_RANGE, /valid offsets are 0\.\.10002/);
    await expectError(
      (client) => client.produce('orders', 0, [Buffer.alloc(4 * 1024 * 1024 + 1)]),
      grpc.status.INVALID_ARGUMENT,
      /over the limit of 4194304 \(messageBytesMax\)/,
    );
    await expectError(
      (client) => client.call('Produce', { topic: '', queue: 0, messages: [{ body: Buffer.from('x') }] }),
      grpc.status.INVALID_ARGUMENT,
      /topic is required/,
    );
    await expectError((client) => client.call('Produce', { topic: 'orders', queue: 0, messages: [] }), grpc.status.INVALID_ARGUMENT, /messages is empty/);
    await expectError(
      (client) => client.call('Produce', { topic: 'orders', queue: 0, ack: 9, messages: [{ body: Buffer.from('x') }] }),
      grpc.status.INVALID_ARGUMENT,
      /ack 9/,
    );
    await expectError(
      (client) =>
        client.call('Produce', { topic: 'orders', queue: 0, messages: [{ body: Buffer.from('x'), headers: [{ key: '', value: Buffer.from('v') }] }] }),
      grpc.status.INVALID_ARGUMENT,
      /headers\[0\]\.key is required/,
    );
    await expectError(
      (client) => client.call('CreateTopic', { name: 'bad name!', queues: 1 }),
      grpc.status.INVALID_ARGUMENT,
      /topic name "bad name!" is not valid/,
    );
    await expectError((client) => client.call('CreateTopic', { name: 'orders', queues: 5 }), grpc.status.ALREADY_EXISTS, /already exists with 2 queues/);
    await expectError(
      (client) => client.call('CommitOffset', { consumerGroup: 'g', topic: 'orders', queue: 0, offset: 99_999 }),
      grpc.status.OUT_OF_RANGE,
      /valid offsets are 0\.\.10002/,
    );

    // A peer message from a broker that is not in the group.
    const Peer = grpc.makeGenericClientConstructor(serviceDefinition('mamba.raft.v1.RaftPeer'), 'RaftPeer');
    const peer = new Peer(cluster.broker(leader).peerAddress, grpc.credentials.createInsecure());
    const clusterName = /cluster: (\S+)/.exec(readFileSync(cluster.file, 'utf8'))![1];
    const fetch = (sender: Wire): Promise<unknown> =>
      new Promise((resolve, reject) =>
        (peer as unknown as Record<string, (r: Wire, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>).Fetch!.call(
          peer,
          { sender, epoch: 1, fetchOffset: 0 },
          { deadline: Date.now() + 5000 },
          (e, w) => (e ? reject(e) : resolve(w)),
        ),
      );
    await expectError(fetch({ cluster: clusterName, group: 'g1', replicaId: 'b99' }), grpc.status.PERMISSION_DENIED, /"b99".*not a member/);
    await expectError(fetch({ cluster: 'other', group: 'g1', replicaId: 'b2' }), grpc.status.PERMISSION_DENIED, /not a member/);
    peer.close();

    // Every broker still runs (the harness fails any wait once one exits) and nothing stored changed.
    leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
    assert.deepEqual(await readAll(cluster.client(leader), 'orders', 0, 0, 10_002), before);
    for (const b of cluster.groupBrokers('g1')) assert.ok(cluster.isRunning(b.id), `${b.id} exited`);
  });

  test('topics and committed consumer offsets survive kill -9 of every broker: each restores them from its store and the log', async () => {
    await cluster.client(leader).call('CommitOffset', { consumerGroup: 'survivors', topic: 'orders', queue: 0, offset: 500 });
    const brokers = cluster.groupBrokers('g1');
    for (const b of brokers) await cluster.kill(b.id);
    for (const b of brokers) assert.ok(existsSync(join(b.dataDir, 'state')), `${b.id} has its state store`);
    for (const b of brokers) cluster.launch(b.id);
    leader = (await cluster.waitForLeader('g1', 30_000)).leaderId;
    for (const b of brokers) {
      const fetched = await waitFor(`${b.id} to know the committed offset`, 10_000, async () => {
        const reply = await cluster
          .client(b.id)
          .call('FetchOffset', { consumerGroup: 'survivors', topic: 'orders', queue: 0 })
          .catch(() => undefined);
        return reply?.found ? reply : undefined;
      });
      assert.equal(Number(fetched.offset), 500);
      const listed = await cluster.client(b.id).call('ListTopics', {});
      assert.deepEqual(
        (listed.topics as Wire[]).map((t) => [t.name, t.queues]),
        [['orders', 2]],
      );
    }
  });
});

describe('failover', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  const acked: string[] = [];
  before(async () => {
    cluster = await TestCluster.start();
  });
  after(async () => cluster?.stop());

  test('kill -9 of the leader during production: a new leader within 2 s, nothing acknowledged lost', async () => {
    const first = (await cluster.waitForLeader('g1', 10_000)).leaderId;
    await createTopic(cluster, first, 'pay', 1);
    let leader = first;
    let killedAt = 0;
    // Produce one message at a time; on a refusal, ask the group for its leader and retry. The
    // producer id and sequence make a retry after an unknown outcome (a timeout while the entry
    // committed) come back as a duplicate with its offset instead of storing the message twice.
    const producerId = 4242;
    for (let next = 0, attempts = 0; next < 600 && attempts < 5000; attempts++) {
      if (next === 300 && killedAt === 0) {
        await cluster.kill(leader);
        killedAt = Date.now();
      }
      const ok = await cluster
        .client(leader)
        .produce('pay', 0, [Buffer.from(`p${next}`)], 3, 1000, { producerId, sequence: next })
        .then(
          () => true,
          () => false,
        );
      if (ok) {
        acked.push(`p${next}`);
        next++;
        continue;
      }
      leader = (await cluster.waitForLeader('g1', 5000, [first])).leaderId;
    }
    assert.equal(acked.length, 600);
    // The election's time from the brokers' own records (the first leader line after the kill),
    // not from this loop's polling, which a loaded machine stretches.
    const leaderSinceMs = cluster
      .groupBrokers('g1')
      .filter((b) => b.id !== first)
      .flatMap((b) => readFileSync(b.logFile, 'utf8').split('\n'))
      .filter((line) => line.includes('"event":"replica.role"') && line.includes('"role":"leader"'))
      .map((line) => Date.parse((JSON.parse(line) as { ts: string }).ts))
      .filter((ms) => ms >= killedAt);
    const electionMs = Math.min(...leaderSinceMs) - killedAt;
    assert.ok(electionMs <= 2000, `a new leader ${electionMs} ms after the kill (limit 2000)`);
    assert.deepEqual(await readAll(cluster.client(leader), 'pay', 0, 0, 600), acked.slice(0, 600));
    cluster.launch(first);
    await waitForCaughtUp(cluster, leader, first);
  });

  test("a leader's unacknowledged tail is truncated when it comes back, and every acknowledged message is readable in order", async () => {
    let leader = '';
    let followers: string[] = [];
    // Give the leader a tail no quorum has: kill both followers, then write to it. On a loaded
    // machine check-quorum may depose the leader before the write arrives (refused, not appended):
    // then the followers come back and the step is made again.
    for (let attempt = 1; ; attempt++) {
      leader = (await cluster.waitForLeader('g1', 30_000)).leaderId;
      const current = leader;
      followers = cluster
        .groupBrokers('g1')
        .map((b) => b.id)
        .filter((id) => id !== current);
      for (const id of followers) await cluster.kill(id);
      const unacked = await cluster
        .client(leader)
        .produce('pay', 0, [Buffer.from('never-acked')], 3, 300)
        .then(
          () => 'acked',
          () => 'refused',
        );
      assert.equal(unacked, 'refused', 'a write was acknowledged without a quorum');
      const view = await cluster.client(leader).describeGroup('g1');
      const own = view?.replicas.find((r) => r.id === current);
      if (view && own && own.endOffset > view.highWatermark) break;
      assert.ok(attempt < 3, `the leader did not append the write in ${attempt} attempts (deposed before it arrived)`);
      for (const id of followers) cluster.launch(id);
      await waitForCaughtUp(cluster, (await cluster.waitForLeader('g1', 30_000)).leaderId, followers[0]!);
    }
    await cluster.kill(leader);
    for (const id of followers) cluster.launch(id);
    const second = (await cluster.waitForLeader('g1', 30_000, [leader])).leaderId;
    for (let i = 0; i < 100; i++) {
      await cluster.client(second).produce('pay', 0, [Buffer.from(`q${i}`)]);
      acked.push(`q${i}`);
    }
    cluster.launch(leader);
    await waitForCaughtUp(cluster, second, leader);
    assert.deepEqual(await readAll(cluster.client(second), 'pay', 0, 0, acked.length), acked);
    await waitFor('the old leader to know the high watermark', 5000, async () => {
      const reply = await cluster.client(leader).consume('pay', 0, 0, 1);
      return Number(reply.highWatermark) >= acked.length ? true : undefined;
    });
    assert.deepEqual(await readAll(cluster.client(leader), 'pay', 0, 0, acked.length), acked);
    const log = readFileSync(cluster.broker(leader).logFile, 'utf8');
    assert.match(log, /"event":"replica.truncate"/, 'the old leader never truncated its unacknowledged tail');
  });
});

async function waitForCaughtUp(cluster: TestCluster, leader: string, follower: string): Promise<void> {
  await waitFor(`${follower} to catch up with ${leader}`, 15_000, async () => {
    const v = await cluster.client(leader).describeGroup('g1');
    const r = v?.replicas.find((x) => x.id === follower);
    return r && v && v.leaderId === leader && r.endOffset >= v.highWatermark && r.reachable ? true : undefined;
  });
}

describe('two groups', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start({ groups: 2 });
  });
  after(async () => cluster?.stop());

  test('one topic spread over both groups: each queue lives in one group, all queues readable', async () => {
    const leaders = [(await cluster.waitForLeader('g1', 10_000)).leaderId, (await cluster.waitForLeader('g2', 10_000)).leaderId];
    await cluster.client(leaders[0]!).call('CreateTopic', { name: 'spread', queues: 4 });
    const listed = await cluster.client(leaders[1]!).call('ListTopics', {});
    assert.deepEqual(
      (listed.topics as Wire[]).map((t) => [t.name, t.queues]),
      [['spread', 4]],
    );
    for (let queue = 0; queue < 4; queue++) {
      const leader = leaders[queue % 2]!;
      await cluster.client(leader).produce('spread', queue, bodies(`q${queue}-`, 0, 50));
    }
    for (let queue = 0; queue < 4; queue++) {
      assert.deepEqual(await readAll(cluster.client(leaders[queue % 2]!), 'spread', queue, 0, 50), bodies(`q${queue}-`, 0, 50).map(String));
    }
    const wrong = await cluster
      .client(leaders[0]!)
      .produce('spread', 1, bodies('x', 0, 1))
      .then(
        () => null,
        (e: grpc.ServiceError) => e,
      );
    assert.equal(wrong?.code, grpc.status.FAILED_PRECONDITION);
    assert.match(wrong!.details, /lives in group g2/);
    const described = await cluster.client(leaders[1]!).call('DescribeTopic', { name: 'spread' });
    assert.deepEqual(
      (described.queues as Wire[]).map((q) => q.group),
      ['g1', 'g2', 'g1', 'g2'],
    );
    assert.deepEqual(
      (described.queues as Wire[]).map((q) => q.leaderId),
      [leaders[0], leaders[1], leaders[0], leaders[1]],
    );
  });
});

describe('read advice', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start({ settings: { advice: { leaderInflightMax: 0, followerLagOffsetsMax: 1000, followerLagMsMax: 5000 } } });
  });
  after(async () => cluster?.stop());

  test('switches to a caught-up follower when the leader is above its load threshold', async () => {
    const leader = (await cluster.waitForLeader('g1', 10_000)).leaderId;
    await createTopic(cluster, leader, 'adv', 1);
    await cluster.client(leader).produce('adv', 0, bodies('a', 0, 10));
    const advice = await waitFor('advice naming a follower', 5000, async () => {
      const reply = await cluster.client(leader).consume('adv', 0, 0, 10);
      return reply.advice.replicaId !== leader ? reply.advice : undefined;
    });
    assert.match(advice.reason, /requests in flight \(limit 0\)/);
    const follower = cluster.broker(advice.replicaId);
    assert.equal(advice.address, follower.clientAddress);
    // The follower learns the high watermark with its next Fetch answer: a moment at most.
    const fromFollower = await waitFor('the follower to serve the advised read', 5000, async () => {
      const reply = await cluster.client(follower.id).consume('adv', 0, 0, 10);
      return (reply.records as Wire[]).length === 10 ? reply : undefined;
    });
    assert.deepEqual(
      (fromFollower.records as Wire[]).map((r) => Buffer.from(r.body).toString()),
      bodies('a', 0, 10).map(String),
    );
    assert.equal(fromFollower.servedBy, follower.id);
    assert.equal(fromFollower.advice.replicaId, follower.id, 'a caught-up follower should keep the consumer');
  });
});
