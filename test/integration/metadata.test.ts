// The cluster metadata against real brokers (issue 14.1, 14.2):
//   - a topic's creation is one entry of the metadata group's log: with a whole group down it
//     succeeds at once, and the group creates it when it comes back (a topic created and deleted
//     meanwhile never appears there); with the metadata group down it fails and nothing is made;
//   - a group added live under a producer load: `group add` registers it, `topic add-queues` and
//     new topics place queues on it by load, existing queues stay where they are, and nothing
//     acknowledged is lost; bad input is refused naming the problem.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse as fromYaml, stringify as toYaml } from 'yaml';
import { TestCluster, freePort, waitFor } from './cluster-harness.js';
import { assertNothingLost, cli, fastRetry, readQueue, sdk, startLoad } from './workload.js';
import { MambaClient } from '../../src/client/client.js';
import { FailedPreconditionError, InvalidArgumentError, MambaError } from '../../src/errors.js';

function clientOf(addresses: string[]): MambaClient {
  return new MambaClient({ brokers: addresses, requestTimeoutMs: 5000, retry: fastRetry });
}

describe('a topic is one metadata entry: atomic whatever group is down', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let client: MambaClient;
  before(async () => {
    cluster = await TestCluster.start({ groups: 2 });
    client = sdk(cluster);
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('with group g2 down a topic is created (and another created and deleted); g2 follows when it is back', async () => {
    await client.createTopic('warmup', 1); // the metadata group has bootstrapped
    for (const id of ['b4', 'b5', 'b6']) await cluster.kill(id);
    const started = Date.now();
    const created = await client.createTopic('atomic', 4);
    assert.equal(created.queues, 4);
    assert.ok(Date.now() - started < 30_000, 'answered without g2');
    await client.createTopic('gone', 2);
    await client.deleteTopic('gone');
    const metadata = await client.getMetadata();
    const placement = metadata.topics.find((t) => t.name === 'atomic')?.placement ?? [];
    assert.deepEqual([...placement].sort(), ['g1', 'g1', 'g2', 'g2'], 'placed by load over both groups, the one that is down too');
    assert.equal(
      metadata.topics.some((t) => t.name === 'gone'),
      false,
    );
    const [onG1, onG2] = [placement.indexOf('g1'), placement.indexOf('g2')];
    await client.send('atomic', [{ body: 'on-g1' }], { queue: onG1 });

    for (const id of ['b4', 'b5', 'b6']) cluster.launch(id);
    await cluster.waitForLeader('g2', 30_000);
    const g2Only = clientOf(cluster.groupBrokers('g2').map((b) => b.clientAddress));
    try {
      await waitFor('g2 holds "atomic" and not "gone"', 30_000, async () => {
        const names = (await g2Only.listTopics().catch(() => [])).map((t) => t.name);
        return names.includes('atomic') && !names.includes('gone') ? true : undefined;
      });
      await waitFor('a send to a queue on g2 acknowledged', 30_000, () =>
        client.send('atomic', [{ body: 'on-g2' }], { queue: onG2 }).then(
          () => true,
          () => undefined,
        ),
      );
      assert.ok((await readQueue(client, 'atomic', onG2)).has('on-g2'));
      assert.ok((await readQueue(client, 'atomic', onG1)).has('on-g1'));
    } finally {
      g2Only.close();
    }
  });

  test('with the metadata group down a creation fails with a retriable status, and no group makes the topic', async () => {
    for (const id of ['b1', 'b2', 'b3']) await cluster.kill(id);
    const g2Only = clientOf(cluster.groupBrokers('g2').map((b) => b.clientAddress));
    try {
      await assert.rejects(g2Only.createTopic('never', 2), (error: Error) => error instanceof MambaError && error.retriable);
      const names = (await g2Only.listTopics()).map((t) => t.name);
      assert.equal(names.includes('never'), false);
    } finally {
      g2Only.close();
      for (const id of ['b1', 'b2', 'b3']) cluster.launch(id);
      await cluster.waitForLeader('g1', 30_000);
    }
  });
});

describe('a group added live, under load (group add, topic add-queues)', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let client: MambaClient;
  let fullFile: string;
  before(async () => {
    // Three groups in the cluster file; the first two start with a file that names only them,
    // as a cluster that exists before g3 is thought of.
    cluster = await TestCluster.create({ groups: 3, name: 'mamba-grow' });
    fullFile = readFileSync(cluster.file, 'utf8');
    const initial = fromYaml(fullFile) as { groups: Array<{ id: string }> };
    initial.groups = initial.groups.filter((g) => g.id !== 'g3');
    writeFileSync(cluster.file, toYaml(initial));
    for (const b of cluster.brokers.filter((x) => x.group !== 'g3')) cluster.launch(b.id);
    await cluster.waitForLeader('g1', 30_000);
    await cluster.waitForLeader('g2', 30_000);
    client = clientOf(cluster.brokers.filter((b) => b.group !== 'g3').map((b) => b.clientAddress));
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('g3 joins under load; new queues go to it; nothing acknowledged is lost', async () => {
    await client.createTopic('orders', 4);
    assert.deepEqual(
      (await client.getMetadata()).groups.map((g) => g.id),
      ['g1', 'g2'],
    );
    const onG1 = startLoad(client, 'orders', 0, 'q0-');
    const onG2 = startLoad(client, 'orders', 1, 'q1-');
    await waitFor('acknowledged messages on both groups', 20_000, () => (onG1.acknowledged.size >= 50 && onG2.acknowledged.size >= 50 ? true : undefined));

    writeFileSync(cluster.file, fullFile);
    for (const b of cluster.groupBrokers('g3')) cluster.launch(b.id);
    await cluster.waitForLeader('g3', 30_000);
    const added = await cli(['--cluster', cluster.file, 'group', 'add', '--group', 'g3']);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /registered group g3 \(b7, b8, b9\): metadata version \d+; groups: g1, g2, g3/);
    const again = await cli(['--cluster', cluster.file, 'group', 'add', '--group', 'g3']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /group g3 already exists/);

    const grown = await cli(['--cluster', cluster.file, '--json', 'topic', 'add-queues', 'orders', '--count', '2']);
    assert.equal(grown.code, 0, grown.stderr);
    const grownJson = JSON.parse(grown.stdout) as { queues: number; placement: string[] };
    assert.deepEqual(grownJson.placement, ['g1', 'g2', 'g1', 'g2', 'g3', 'g3'], 'existing queues stay; the new ones go to the least loaded group');

    const everywhere = clientOf(cluster.brokers.map((b) => b.clientAddress));
    try {
      await waitFor('a send to queue 4 (on g3) acknowledged', 30_000, () =>
        everywhere.send('orders', [{ body: 'on-g3' }], { queue: 4 }).then(
          () => true,
          () => undefined,
        ),
      );
      const fresh = await everywhere.createTopic('fresh', 3);
      assert.equal(fresh.queues, 3);
      const placement = (await everywhere.getMetadata()).topics.find((t) => t.name === 'fresh')?.placement ?? [];
      assert.deepEqual([...placement].sort(), ['g1', 'g2', 'g3']);
      const description = await cli(['--cluster', cluster.file, '--json', 'metadata']);
      assert.equal(description.code, 0, description.stderr);
      assert.deepEqual(
        (JSON.parse(description.stdout) as { groups: Array<{ id: string }> }).groups.map((g) => g.id),
        ['g1', 'g2', 'g3'],
      );

      await onG1.stop();
      await onG2.stop();
      assertNothingLost(onG1.acknowledged, await readQueue(everywhere, 'orders', 0));
      assertNothingLost(onG2.acknowledged, await readQueue(everywhere, 'orders', 1));
      assert.ok((await readQueue(everywhere, 'orders', 4)).has('on-g3'));
    } finally {
      everywhere.close();
    }
  });

  test('bad input: an address in use, a group that does not answer, more queues than the limit; nothing changes', async () => {
    const before = await client.getMetadata();
    const b1 = cluster.broker('b1');
    await assert.rejects(
      client.addGroup({ id: 'g4', brokers: [{ id: 'b10', host: b1.host, clientPort: b1.clientPort }] }),
      (error: Error) => error instanceof InvalidArgumentError && /already used by b1 of group g1/.test(error.message),
    );
    await assert.rejects(
      client.addGroup({ id: 'g4', brokers: [{ id: 'b1', host: '127.0.0.1', clientPort: await freePort() }] }),
      (error: Error) => error instanceof InvalidArgumentError && /broker id b1 is already used in group g1/.test(error.message),
    );
    await assert.rejects(
      client.addGroup({ id: 'g5', brokers: [{ id: 'b11', host: '127.0.0.1', clientPort: await freePort() }] }),
      (error: Error) => error instanceof FailedPreconditionError && /group g5 does not answer/.test(error.message),
    );
    const tooMany = await cli(['--cluster', cluster.file, 'topic', 'add-queues', 'orders', '--count', '100000']);
    assert.equal(tooMany.code, 1);
    assert.match(tooMany.stderr, /over the limit of \d+/);
    const after = await client.getMetadata();
    assert.deepEqual(after, before, 'the metadata did not change');
  });
});
