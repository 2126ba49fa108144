// Membership and leadership for operators (issue 13.4) against real brokers: leader transfer
// under a producer load (Raft dissertation §3.10: nothing acknowledged is lost, the new leader
// serves), refusals that name the problem and change nothing, and a group that loses a broker,
// gets a new one by `replica add` (learner, then voter: dissertation §4.2.1 catch-up), drops the
// dead one by `replica remove`, loses another and still serves everything acknowledged.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, waitFor } from './cluster-harness.js';
import { assertNothingLost, cli, readQueue, sdk, startLoad } from './workload.js';
import type { MambaClient } from '../../src/client/client.js';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError } from '../../src/errors.js';

async function leaderOf(client: MambaClient, group: string): Promise<string> {
  return waitFor(`a leader of ${group}`, 15_000, async () => {
    const g = (await client.describeCluster()).find((x) => x.id === group);
    return g?.leaderId ? g.leaderId : undefined;
  });
}

describe('leader transfer and refusals', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let client: MambaClient;
  before(async () => {
    cluster = await TestCluster.start();
    client = sdk(cluster);
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('transfer to a named voter and to the best one under load: nothing acknowledged lost, the new leader serves', async () => {
    const topic = `transfer-${process.pid}`;
    await client.createTopic(topic, 1);
    const load = startLoad(client, topic);
    await waitFor('some acknowledged messages', 10_000, () => (load.acknowledged.size >= 50 ? true : undefined));
    const first = await leaderOf(client, 'g1');
    const target = ['b1', 'b2', 'b3'].find((id) => id !== first)!;
    const named = await client.transferLeader('g1', { to: target, waitMs: 10_000 });
    assert.equal(named.leaderId, target);
    assert.equal(named.previousLeaderId, first);
    const sizeAfterNamed = load.acknowledged.size;
    await waitFor('acknowledgements from the new leader', 10_000, () => (load.acknowledged.size > sizeAfterNamed + 20 ? true : undefined));
    const best = await client.transferLeader('g1', { waitMs: 10_000 });
    assert.notEqual(best.leaderId, target);
    assert.ok(best.epoch > named.epoch, `epoch ${best.epoch} after ${named.epoch}`);
    const sizeAfterBest = load.acknowledged.size;
    await waitFor('acknowledgements after the second transfer', 10_000, () => (load.acknowledged.size > sizeAfterBest + 20 ? true : undefined));
    await load.stop();
    assertNothingLost(load.acknowledged, await readQueue(client, topic));
  });

  test('bad input: an existing member, an unknown one, below three voters without --force; nothing changes', async () => {
    await assert.rejects(
      client.addReplica('g1', 'b2', { clientAddress: cluster.broker('b2').clientAddress, peerAddress: cluster.broker('b2').peerAddress }),
      (error: Error) => error instanceof AlreadyExistsError && /b2 is already a voter/.test(error.message),
    );
    await assert.rejects(client.removeReplica('g1', 'b9'), (error: Error) => error instanceof NotFoundError && /b9 is not a member/.test(error.message));
    await assert.rejects(
      client.removeReplica('g1', 'b2'),
      (error: Error) => error instanceof FailedPreconditionError && /leaves 2 voters/.test(error.message) && /--force/.test(error.message),
    );
    await assert.rejects(client.addReplica('g1', 'b5', { clientAddress: 'nohost', peerAddress: '127.0.0.1:1' }), /client_address "nohost" is not HOST:PORT/);
    const g = (await client.describeCluster()).find((x) => x.id === 'g1')!;
    assert.deepEqual(g.replicas.map((r) => r.id).sort(), ['b1', 'b2', 'b3']);
  });

  test('transfer to a stopped broker is refused naming it; the old leader leads on', async () => {
    const leader = await leaderOf(client, 'g1');
    const stopped = ['b1', 'b2', 'b3'].find((id) => id !== leader)!;
    await cluster.kill(stopped);
    await assert.rejects(
      client.transferLeader('g1', { to: stopped, waitMs: 10_000 }),
      (error: Error) => (error instanceof UnavailableError || error instanceof FailedPreconditionError) && error.message.includes(stopped),
    );
    assert.equal(await leaderOf(client, 'g1'), leader);
    const topic = `after-refusal-${process.pid}`;
    await client.createTopic(topic, 1);
    await client.send(topic, [{ body: 'still serving' }], { queue: 0 });
  });
});

describe('replace brokers: replica add, replica remove, leader transfer (CLI)', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let client: MambaClient;
  before(async () => {
    cluster = await TestCluster.start();
    client = sdk(cluster);
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  test('a group loses a broker, gets b4 while the lost one is still a voter, drops the lost one, loses another and still serves every acknowledged message', async () => {
    const topic = `replace-${process.pid}`;
    await client.createTopic(topic, 1);
    const load = startLoad(client, topic);
    await waitFor('acknowledged messages', 10_000, () => (load.acknowledged.size >= 100 ? true : undefined));

    // Lose a follower.
    const leader = await leaderOf(client, 'g1');
    const [lost, other] = ['b1', 'b2', 'b3'].filter((id) => id !== leader) as [string, string];
    await cluster.kill(lost);

    // A new broker (its directory formatted: a new identity) joins as a learner and is promoted
    // while the lost one is still a voter and down: four voters, three of them up.
    const seeds = () => cluster.brokers.map((b) => b.clientAddress).join(',');
    const b4 = await cluster.addBroker('g1', 'b4');
    cluster.launch('b4');
    const added = await cli(['--brokers', seeds(), 'replica', 'add', '--group', 'g1', '--id', 'b4', '--address', b4.clientAddress, '--peer', b4.peerAddress]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /adding b4 to group g1 as a learner/);
    assert.match(added.stdout, /promoted b4 to voter of group g1/);
    assert.match(added.stdout, /members: .*b4 \(voter\)/);

    // Then drop the dead broker: three voters are left, no --force needed.
    const removed = await cli(['--brokers', seeds(), '--json', 'replica', 'remove', '--group', 'g1', '--id', lost]);
    assert.equal(removed.code, 0, removed.stderr);
    const removedJson = JSON.parse(removed.stdout) as { removed: string; members: Array<{ id: string; role: string }> };
    assert.equal(removedJson.removed, lost);
    assert.deepEqual(removedJson.members.map((m) => m.id).sort(), [leader, other, 'b4'].sort());

    const status = await cli(['--brokers', seeds(), 'status']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /b4 +follower/);
    assert.doesNotMatch(status.stdout, new RegExp(`\\n  ${lost} `));

    // Leadership to b4 by the CLI, then lose another of the first three: b4 and one more are a majority.
    const moved = await cli(['--brokers', seeds(), 'leader', 'transfer', '--group', 'g1', '--to', 'b4']);
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(moved.stdout, /group g1: leader b4 \(was \w+\), epoch \d+/);
    await cluster.kill(other);
    const sizeBefore = load.acknowledged.size;
    await waitFor('acknowledgements with two of three voters', 20_000, () => (load.acknowledged.size > sizeBefore + 50 ? true : undefined));
    await load.stop();
    assertNothingLost(load.acknowledged, await readQueue(client, topic));
  });
});
