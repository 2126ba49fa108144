// Membership and leadership transfer in the core, rule by rule: Raft dissertation §4.1 (one server
// at a time, through the log, in force on append), §4.2.2 (a leader that removes itself),
// §3.10 (leadership transfer); etcd learners (a learner fetches, never campaigns and is never
// counted; it votes when asked, etcd #10998); KIP-853 (AddVoter after catch-up, RemoveVoter,
// endpoints in the log).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvariantError } from '../../src/assert.js';
import { decodeMembershipConfig, decodeMembershipRecord, encodeMembership, encodeMembershipConfig } from '../../src/raft/membership.js';
import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { EntryType, type FetchResponse, type MembershipRefusal, type MembershipResult, type Message, type ReplicaId } from '../../src/raft/types.js';
import { config, encoder, Group } from './helpers.js';

const decoder = new TextDecoder();

function only<T extends Message['type']>(messages: Message[], type: T): Extract<Message, { type: T }>[] {
  return messages.filter((message) => message.type === type) as Extract<Message, { type: T }>[];
}

// A group whose leader b1 has committed an entry of its epoch (membership changes are allowed).
function ledGroup(voters: ReplicaId[], extra: ReplicaId[] = [], overrides = {}): Group {
  const group = new Group(voters, overrides, extra);
  group.elect('b1');
  group.replicate();
  assert.ok(group.core('b1').highWatermark > 0);
  return group;
}

function member(id: ReplicaId): { id: ReplicaId; clientAddress: string; peerAddress: string } {
  return { id, clientAddress: `${id}.example:9092`, peerAddress: `${id}.example:9093` };
}

function offsetOf(result: MembershipResult): number {
  assert.ok(result.ok, `refused: ${result.ok ? '' : `${result.error} ${result.message}`}`);
  return result.offset;
}

// Adds `id` as a learner through b1 and lets it catch up.
function addCaughtUpLearner(group: Group, id: ReplicaId): void {
  const offset = offsetOf(group.core('b1').addLearner(member(id)));
  group.drain('b1');
  group.replicate(10);
  assert.ok(group.core('b1').highWatermark > offset, 'the addition committed');
  assert.equal(group.core(id).logEndOffset, group.core('b1').logEndOffset, `${id} caught up`);
}

test('membership record: {"voters","learners","endpoints"} round-trips sorted; an old {"voters":[...]} record still decodes (no learners); an overlap or a repeat is refused', () => {
  const config = { voters: ['b3', 'b1', 'b2'], learners: ['b4'], endpoints: [member('b4')] };
  const payload = encodeMembershipConfig(config);
  assert.deepEqual(JSON.parse(decoder.decode(payload)), { voters: ['b1', 'b2', 'b3'], learners: ['b4'], endpoints: [member('b4')] });
  assert.deepEqual(decodeMembershipConfig(payload), { voters: ['b1', 'b2', 'b3'], learners: ['b4'], endpoints: [member('b4')] });
  assert.deepEqual(decodeMembershipRecord(7, encoder.encode('{"voters":["b1","b2"]}')), { offset: 7, voters: ['b1', 'b2'] });
  assert.equal(decoder.decode(encodeMembership(['b2', 'b1'])), '{"voters":["b1","b2"]}', 'a voters-only configuration encodes as before learners');
  const bad = [
    '{"voters":["b1","b2"],"learners":["b2"]}', // both voter and learner
    '{"voters":["b1","b1"]}',
    '{"voters":[],"learners":["b1"]}', // no voter
    '{"voters":["b1"],"endpoints":[{"id":"b9","peerAddress":"x:1"}]}', // endpoints of a stranger
  ];
  for (const text of bad) assert.throws(() => decodeMembershipConfig(encoder.encode(text)), InvariantError, text);
});

test('etcd learners / KIP-853 observers: an added learner is told where to fetch, fetches and is served like a follower, catches up, and holds the configuration with its endpoints', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4']);
  const leader = group.core('b1');
  const result = leader.addLearner(member('b4'));
  assert.ok(result.ok);
  assert.deepEqual(result.config, { voters: ['b1', 'b2', 'b3'], learners: ['b4'], endpoints: [member('b4')] });
  assert.deepEqual(leader.voters, ['b1', 'b2', 'b3'], 'the voters are unchanged');
  group.drain('b1');
  assert.deepEqual(
    only(group.queue, 'BeginQuorumEpoch').map((message) => message.to),
    ['b4'],
    'the new learner learns the leader',
  );
  group.replicate(10);
  const learner = group.core('b4');
  assert.equal(learner.logEndOffset, leader.logEndOffset);
  assert.equal(learner.highWatermark, leader.highWatermark);
  assert.deepEqual([learner.role, learner.leaderId], ['follower', 'b1']);
  assert.deepEqual(learner.learners, ['b4'], 'the learner knows it is one');
  const status = leader.status();
  assert.deepEqual(
    status.members.map((item) => [item.id, item.role, item.peerAddress ?? null]),
    [
      ['b1', 'voter', null],
      ['b2', 'voter', null],
      ['b3', 'voter', null],
      ['b4', 'learner', 'b4.example:9093'],
    ],
  );
  const progress = status.replicas.find((replica) => replica.id === 'b4')!;
  assert.deepEqual([progress.role, progress.matchedOffset, progress.caughtUp], ['learner', leader.logEndOffset, true]);
  assert.equal(status.membershipChangeOffset, null, 'the change committed');
});

test('etcd learners: a learner is not counted for the high watermark (two learners holding an entry with the leader do not commit it) and never campaigns', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4', 'b5']);
  addCaughtUpLearner(group, 'b4');
  addCaughtUpLearner(group, 'b5');
  const leader = group.core('b1');
  const committed = leader.highWatermark;
  group.filter = (message) => message.from !== 'b2' && message.from !== 'b3'; // the followers fall silent
  assert.ok(leader.propose(encoder.encode('x'), 1).ok);
  group.drain('b1');
  group.replicate(3);
  for (const id of ['b4', 'b5']) assert.equal(group.core(id).logEndOffset, leader.logEndOffset, `${id} holds the entry`);
  assert.equal(leader.highWatermark, committed, 'leader + two learners are not a majority of the voters');
  // Learners left without a leader wait; they never go prospective.
  group.filter = () => false;
  group.tick('b4', 60);
  assert.equal(group.core('b4').role, 'follower');
  assert.equal(only(group.take(), 'PreVoteRequest').length, 0);
});

test('TEST ONLY rule broken (learners-counted): the same two learners do commit the entry, which is what the simulator must catch', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4', 'b5'], { ruleBrokenForTest: 'learners-counted' });
  addCaughtUpLearner(group, 'b4');
  addCaughtUpLearner(group, 'b5');
  const leader = group.core('b1');
  const committed = leader.highWatermark;
  group.filter = (message) => message.from !== 'b2' && message.from !== 'b3';
  assert.ok(leader.propose(encoder.encode('x'), 1).ok);
  group.drain('b1');
  group.replicate(3);
  assert.ok(leader.highWatermark > committed, 'committed on leader + learners only');
});

test('check-quorum counts voters only: a leader that hears only its learners steps down after fetchTimeoutTicks', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4', 'b5']);
  addCaughtUpLearner(group, 'b4');
  addCaughtUpLearner(group, 'b5');
  group.filter = (message) => message.from !== 'b2' && message.from !== 'b3';
  for (let round = 0; round < 20 && group.core('b1').role === 'leader'; round += 1) group.replicate(1);
  assert.equal(group.core('b1').role, 'follower');
});

test('etcd learners: candidates ask only their voters; a learner asked by a candidate whose configuration names it a voter grants (etcd #10998), else a promoted learner that missed its promotion could leave the group without a leader', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4']);
  addCaughtUpLearner(group, 'b4');
  // b4 is promoted; the entry commits on b1, b2, b3 while b4 hears nothing of it.
  group.filter = (message) => message.to !== 'b4' && message.from !== 'b4';
  const promoted = offsetOf(group.core('b1').promoteLearner('b4'));
  group.drain('b1');
  group.replicate(5);
  assert.ok(group.core('b1').highWatermark > promoted, 'committed by 3 of 4 voters');
  assert.deepEqual(group.core('b4').learners, ['b4'], 'b4 still thinks it is a learner');
  // b1 fails. b2 needs 3 of 4 votes: b2, b3 and b4.
  group.filter = (message) => message.from !== 'b1' && message.to !== 'b1';
  group.take();
  // b3's clock runs at half speed, so b2 and b3 do not split every election (no jitter here).
  let round = 0;
  const tickOthers = (): void => {
    group.tick('b4');
    if (round++ % 2 === 0) group.tick('b3');
  };
  while (group.core('b2').role !== 'prospective') {
    tickOthers();
    group.tick('b2');
  }
  const requests = group.take((message) => message.type === 'PreVoteRequest' && message.from === 'b2');
  assert.deepEqual(requests.map((message) => message.to).sort(), ['b3', 'b4'], 'b2 asks its voters (b1 is unreachable), b4 among them');
  let learnerGrants = 0;
  group.filter = (message) => {
    if (message.type === 'VoteResponse' && message.from === 'b4' && message.granted && group.core('b4').learners.includes('b4')) learnerGrants += 1;
    return message.from !== 'b1' && message.to !== 'b1';
  };
  for (const request of requests) group.deliver(request);
  group.settle();
  for (let tick = 0; tick < 60 && group.core('b2').role !== 'leader' && group.core('b3').role !== 'leader'; tick += 1) {
    tickOthers();
    group.tick('b2');
    group.settle();
  }
  const leaderId = ['b2', 'b3'].find((id) => group.core(id).role === 'leader');
  assert.ok(leaderId !== undefined, 'a leader was elected');
  assert.ok(learnerGrants >= 1, 'with the vote of b4 while it saw itself a learner');
  group.replicate(5);
  assert.deepEqual([...group.core('b4').voters].sort(), ['b1', 'b2', 'b3', 'b4'], 'b4 learnt its promotion from the new leader');
});

test('KIP-853 AddVoter after catch-up: promoteLearner refuses a learner that is behind or not fetching, accepts it once caught up, and the promoted voter counts', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4']);
  const leader = group.core('b1');
  offsetOf(leader.addLearner(member('b4')));
  group.filter = (message) => message.to !== 'b4' && message.from !== 'b4';
  group.drain('b1');
  group.replicate(3);
  const table: Array<{ setup: () => void; error: MembershipRefusal | null }> = [
    { setup: () => {}, error: 'LEARNER_UNREACHABLE' }, // never fetched
    {
      // learns the leader and fetches, but the answers are lost: it matches offset 0 only
      setup: () => {
        group.filter = (message) => !(message.type === 'FetchResponse' && message.to === 'b4');
        group.replicate(3);
      },
      error: 'LEARNER_BEHIND',
    },
    {
      setup: () => {
        group.filter = null;
        group.replicate(10);
      },
      error: null,
    },
  ];
  for (const row of table) {
    row.setup();
    const caughtUp = leader.status().replicas.find((replica) => replica.id === 'b4')!.caughtUp;
    const result = leader.promoteLearner('b4');
    assert.equal(result.ok ? null : result.error, row.error, result.ok ? 'accepted' : result.message);
    assert.equal(caughtUp, row.error === null, 'status().caughtUp said so before');
  }
  assert.deepEqual([...leader.voters].sort(), ['b1', 'b2', 'b3', 'b4']);
  assert.deepEqual(leader.learners, []);
  group.drain('b1');
  group.replicate(10);
  // b4 now counts: with b2 and b3 silent, b1 + b4 are 2 of 4, not enough; with b3 back, 3 of 4.
  const committed = leader.highWatermark;
  group.filter = (message) => message.from !== 'b2' && message.from !== 'b3';
  assert.ok(leader.propose(encoder.encode('y'), 1).ok);
  group.drain('b1');
  group.replicate(2);
  assert.equal(leader.highWatermark, committed);
  group.filter = (message) => message.from !== 'b2';
  group.replicate(3);
  assert.ok(leader.highWatermark > committed);
});

test('dissertation §4.1: one change at a time; duplicates and strangers are refused by name; a refusal appends nothing', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4', 'b5']);
  const leader = group.core('b1');
  offsetOf(leader.addLearner(member('b4')));
  const table: Array<{ name: string; run: () => MembershipResult; error: MembershipRefusal }> = [
    { name: 'second change while the first is uncommitted', run: () => leader.addLearner(member('b5')), error: 'CHANGE_IN_PROGRESS' },
    { name: 'add a learner again', run: () => leader.addLearner(member('b4')), error: 'ALREADY_LEARNER' },
    { name: 'add a voter as learner', run: () => leader.addLearner(member('b2')), error: 'ALREADY_VOTER' },
    { name: 'promote a voter', run: () => leader.promoteLearner('b2'), error: 'ALREADY_VOTER' },
    { name: 'promote a stranger', run: () => leader.promoteLearner('b9'), error: 'NOT_A_MEMBER' },
    { name: 'remove a stranger', run: () => leader.removeMember('b9'), error: 'NOT_A_MEMBER' },
    { name: 'an empty id', run: () => leader.addLearner({ id: '' }), error: 'INVALID' },
    { name: 'a too long endpoint', run: () => leader.addLearner({ id: 'b6', peerAddress: 'x'.repeat(256) }), error: 'INVALID' },
    { name: 'on a follower', run: () => group.core('b2').addLearner(member('b5')), error: 'NOT_LEADER' },
  ];
  for (const row of table) {
    const end = leader.logEndOffset;
    const result = row.run();
    assert.ok(!result.ok, row.name);
    assert.equal(result.error, row.error, row.name);
    assert.ok(result.message.length > 0, row.name);
    assert.equal(leader.logEndOffset, end, `${row.name}: nothing appended`);
  }
  const refused = group.core('b2').addLearner(member('b5'));
  assert.ok(!refused.ok && refused.leaderId === 'b1', 'a follower names the leader');
  group.drain('b1');
  group.replicate(5);
  assert.ok(leader.addLearner(member('b5')).ok, 'the next change once the first committed');
});

test('dissertation §4.1 (single-server change fix): a new leader makes no change before it commits an entry of its own epoch', () => {
  const group = new Group(['b1', 'b2', 'b3'], {}, ['b4']);
  group.filter = (message) => message.type !== 'FetchRequest';
  group.elect('b1');
  const result = group.core('b1').addLearner(member('b4'));
  assert.ok(!result.ok);
  assert.equal(result.error, 'CHANGE_IN_PROGRESS');
  assert.match(result.message, /not committed an entry of epoch/);
});

test('removal: below three voters only with force, never the last voter, not when the voters left that fetch are no majority; learners leave freely', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4']);
  const leader = group.core('b1');
  addCaughtUpLearner(group, 'b4');
  const table: Array<{ name: string; id: ReplicaId; force: boolean; error: MembershipRefusal | null }> = [
    { name: 'a voter of three, without force', id: 'b2', force: false, error: 'BELOW_MINIMUM_VOTERS' },
    { name: 'the leader of three, without force', id: 'b1', force: false, error: 'BELOW_MINIMUM_VOTERS' },
    { name: 'a learner', id: 'b4', force: false, error: null },
    { name: 'a voter of three, forced', id: 'b3', force: true, error: null },
    { name: 'a voter of two, without force', id: 'b2', force: false, error: 'BELOW_MINIMUM_VOTERS' },
  ];
  for (const row of table) {
    const result = leader.removeMember(row.id, { force: row.force });
    assert.equal(result.ok ? null : result.error, row.error, row.name);
    group.drain('b1');
    group.replicate(5);
  }
  assert.deepEqual([...leader.voters].sort(), ['b1', 'b2']);
  const single = new Group(['b1'], {}, []);
  for (let tick = 0; tick < 10; tick += 1) single.tick('b1');
  single.drainAll();
  const alone = single.core('b1').removeMember('b1', { force: true });
  assert.ok(!alone.ok && alone.error === 'LAST_VOTER', 'the last voter stays, even forced');
});

test('removal: QUORUM_AT_RISK when the voters left that fetch are not a majority of them (etcd StrictReconfigCheck); force overrides', () => {
  const group = ledGroup(['b1', 'b2', 'b3', 'b4', 'b5']);
  const leader = group.core('b1');
  group.filter = (message) => message.from !== 'b4' && message.from !== 'b5'; // b4, b5 silent
  group.replicate(16);
  assert.equal(leader.role, 'leader', 'b1, b2, b3 fetching: 3 of 5');
  const refused = leader.removeMember('b2');
  assert.ok(!refused.ok);
  assert.equal(refused.error, 'QUORUM_AT_RISK');
  assert.match(refused.message, /leaves 2 of 4 voters fetching/);
  assert.ok(leader.removeMember('b2', { force: true }).ok);
});

test('dissertation §4.2.2: a leader that removes itself leads (without counting itself) until the removal commits, then steps down and hands over; it is no member afterwards', () => {
  const group = ledGroup(['b1', 'b2', 'b3', 'b4']);
  const leader = group.core('b1');
  const removal = offsetOf(leader.removeMember('b1'));
  assert.equal(leader.role, 'leader');
  assert.deepEqual(leader.propose(encoder.encode('x'), 1), { ok: false, error: 'NOT_LEADER', leaderId: 'b1' });
  assert.equal(leader.transferLeadership('b2').ok, false, 'no transfer either: it is stepping down');
  assert.equal(leader.status().membershipChangeOffset, removal);
  group.drain('b1');
  group.replicate(10);
  assert.notEqual(leader.role, 'leader');
  assert.deepEqual([...leader.voters].sort(), ['b2', 'b3', 'b4']);
  const leaders = ['b2', 'b3', 'b4'].filter((id) => group.core(id).role === 'leader');
  assert.equal(leaders.length, 1);
  group.replicate(5);
  assert.equal(leader.role, 'follower');
  assert.ok(group.core(leaders[0]!).highWatermark > removal);
});

test('§3.10 leadership transfer: refusals are typed and change nothing (self, stranger, learner, unreachable, already running)', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4']);
  addCaughtUpLearner(group, 'b4');
  const leader = group.core('b1');
  group.filter = (message) => message.from !== 'b3';
  group.replicate(16); // b3 silent past fetchTimeoutTicks
  group.filter = null;
  assert.equal(leader.role, 'leader');
  const table: Array<{ to: ReplicaId | null; error: string }> = [
    { to: 'b1', error: 'TARGET_IS_LEADER' },
    { to: 'b9', error: 'TARGET_NOT_MEMBER' },
    { to: 'b4', error: 'TARGET_IS_LEARNER' },
    { to: 'b3', error: 'TARGET_UNREACHABLE' },
  ];
  for (const row of table) {
    const result = leader.transferLeadership(row.to);
    assert.equal(result.ok ? null : result.error, row.error, String(row.to));
    assert.equal(leader.status().transfer, null);
  }
  const started = leader.transferLeadership(null);
  assert.ok(started.ok && started.target === 'b2', 'no target named: the reachable voter holding the most');
  const again = leader.transferLeadership('b2');
  assert.equal(again.ok ? null : again.error, 'TRANSFER_IN_PROGRESS');
  assert.equal(group.core('b2').transferLeadership('b3').ok ? null : 'NOT_LEADER', 'NOT_LEADER');
  const membership = leader.addLearner(member('b5'));
  assert.equal(membership.ok ? null : membership.error, 'TRANSFERRING', 'no membership change during a transfer');
});

test('§3.10 leadership transfer: a target that stays behind ends the attempt after electionTicks with TARGET_BEHIND, and proposals resume', () => {
  const group = ledGroup(['b1', 'b2', 'b3']);
  const leader = group.core('b1');
  assert.ok(leader.propose(encoder.encode('x'), 1).ok);
  group.filter = (message) => !(message.type === 'FetchResponse' && message.to === 'b3'); // b3 fetches, learns nothing
  group.drain('b1');
  group.replicate(2);
  const started = leader.transferLeadership('b3');
  assert.ok(started.ok);
  const running = leader.status().transfer!;
  assert.deepEqual([running.target, running.timeoutNowSent, running.deadlineTick - running.startedTick], ['b3', false, 10]);
  assert.deepEqual(leader.propose(encoder.encode('y'), 1), { ok: false, error: 'TRANSFERRING', leaderId: 'b1' });
  group.replicate(11);
  const outcome = leader.status().lastTransfer!;
  assert.deepEqual([outcome.target, outcome.outcome], ['b3', 'TARGET_BEHIND']);
  assert.ok(outcome.targetMatchedOffset < outcome.leaderEndOffset);
  assert.equal(leader.role, 'leader');
  assert.ok(leader.propose(encoder.encode('z'), 1).ok, 'proposals resume');
});

test('§3.10 leadership transfer: once the target holds the log it gets TimeoutNow; the old leader leaves office (LEFT_OFFICE), follows the target and sees it serve', () => {
  const group = ledGroup(['b1', 'b2', 'b3']);
  const leader = group.core('b1');
  assert.equal(leader.leaderServing, true);
  const started = leader.transferLeadership('b3');
  assert.ok(started.ok);
  group.drain('b1');
  group.settle();
  assert.equal(group.core('b3').role, 'leader');
  assert.equal(leader.status().lastTransfer?.outcome, 'LEFT_OFFICE');
  group.replicate(5);
  const status = leader.status();
  assert.deepEqual([status.role, status.leaderId, status.leaderServing], ['follower', 'b3', true], 'what the driver waits for');
});

test('learners across a restart and a snapshot: the log and the snapshot carry learners and endpoints; an empty learner catches up by snapshot when the leader compacted', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4', 'b5']);
  addCaughtUpLearner(group, 'b4');
  const leader = group.core('b1');
  for (let index = 0; index < 5; index += 1) assert.ok(leader.propose(encoder.encode(`v${index}`), 1).ok);
  group.drain('b1');
  group.replicate(5);
  const snapshotEnd = group.compact('b1');
  const meta = group.node('b1').storage.snapshot()!;
  assert.deepEqual(meta.membership?.learners, ['b4']);
  assert.deepEqual(meta.membership?.endpoints, [member('b4')]);
  group.restart('b1', group.node('b1').storage);
  assert.deepEqual(group.core('b1').learners, ['b4'], 'learners survive a restart');
  assert.equal(
    group
      .core('b1')
      .status()
      .members.find((item) => item.id === 'b4')?.clientAddress,
    'b4.example:9092',
  );
  // b5 joins on an empty disk; the entries below the snapshot are gone from b2, the new leader.
  group.elect('b2');
  group.replicate(5);
  group.compact('b2');
  const added = group.core('b2').addLearner(member('b5'));
  assert.ok(added.ok, added.ok ? '' : added.message);
  group.drain('b2');
  group.replicate(15);
  assert.ok(
    group.snapshotLog.some((item) => item.id === 'b5' && item.what === 'install'),
    'b5 installed a snapshot',
  );
  assert.equal(group.core('b5').logEndOffset, group.core('b2').logEndOffset);
  assert.ok(group.core('b5').logStartOffset >= snapshotEnd);
  assert.deepEqual(group.core('b5').learners, ['b4', 'b5']);
});

test('compatibility: addVoter and removeVoter keep their answers (a stranger becomes a voter at once, a learner is promoted, a duplicate is INVALID)', () => {
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4', 'b5']);
  const leader = group.core('b1');
  addCaughtUpLearner(group, 'b4');
  assert.ok(leader.addVoter('b4').ok, 'a caught-up learner is promoted');
  assert.deepEqual(leader.addVoter('b5'), { ok: false, error: 'CHANGE_IN_PROGRESS', leaderId: 'b1' });
  group.drain('b1');
  group.replicate(5);
  assert.deepEqual(leader.addVoter('b2'), { ok: false, error: 'INVALID', leaderId: 'b1' });
  assert.ok(leader.addVoter('b5').ok);
  group.drain('b1');
  group.replicate(5);
  assert.deepEqual([...leader.voters].sort(), ['b1', 'b2', 'b3', 'b4', 'b5']);
  assert.deepEqual(leader.removeVoter('b9'), { ok: false, error: 'INVALID', leaderId: 'b1' });
  assert.ok(leader.removeVoter('b5').ok);
});

test('a replica joining with an empty log and the seed voters (which do not name it) never campaigns; its Fetch is refused NOT_VOTER until the entry that adds it', () => {
  const storage = new MemoryStorage();
  const joiner = new RaftCore(config('b4', ['b1', 'b2', 'b3']), storage);
  for (let tick = 0; tick < 100; tick += 1) joiner.tick();
  assert.equal(joiner.role, 'follower');
  assert.equal(joiner.ready(), null, 'nothing to send');
  const group = ledGroup(['b1', 'b2', 'b3'], ['b4']);
  group.deliver({
    type: 'FetchRequest',
    from: 'b4',
    to: 'b1',
    epoch: group.core('b1').epoch,
    fetchOffset: 0,
    lastFetchedEpoch: 0,
    bytesMax: 1 << 20,
    requestId: 1,
  });
  const [answer] = only(group.take(), 'FetchResponse') as FetchResponse[];
  assert.equal(answer!.error, 'NOT_VOTER');
});

test('invariants: an entry that makes a replica both voter and learner is refused when appended', () => {
  const core = new RaftCore(config('b1', ['b1']), new MemoryStorage());
  for (let tick = 0; tick < 10; tick += 1) core.tick();
  const bad = { epoch: core.epoch, offset: 0, count: 1, type: EntryType.Membership, payload: encoder.encode('{"voters":["b1"],"learners":["b1"]}') };
  assert.throws(() => new MemoryStorage().append([bad]), InvariantError);
});
