// Rule-by-rule tests of the Raft core, each named after the Raft paper section or KRaft/KIP rule.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { EntryType, type Entry, type FetchRequest, type FetchResponse, type Message } from '../../src/raft/types.js';
import { config, encoder, Group } from './helpers.js';

function entry(epoch: number, offset: number, count = 1): Entry {
  return { epoch, offset, count, type: EntryType.Data, payload: encoder.encode(`e${epoch}o${offset}`) };
}

function storageWith(epoch: number, entries: Entry[], votedFor: string | null = null): MemoryStorage {
  const storage = new MemoryStorage();
  storage.setHardState({ epoch, votedFor });
  storage.append(entries);
  return storage;
}

function fetchRequest(from: string, to: string, epoch: number, fetchOffset: number, lastFetchedEpoch: number): FetchRequest {
  return { type: 'FetchRequest', from, to, epoch, fetchOffset, lastFetchedEpoch, bytesMax: 1 << 20, requestId: 1 };
}

function only<T extends Message['type']>(messages: Message[], type: T): Extract<Message, { type: T }>[] {
  return messages.filter((message) => message.type === type) as Extract<Message, { type: T }>[];
}

test('§5.2 / KIP-996: a follower without a successful Fetch answer for its election timeout goes prospective and does not bump its epoch', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.tick('b1', 9);
  assert.equal(group.core('b1').role, 'follower');
  group.tick('b1');
  assert.equal(group.core('b1').role, 'prospective');
  assert.equal(group.core('b1').epoch, 0);
  const requests = only(group.take(), 'PreVoteRequest');
  assert.deepEqual(
    requests.map((message) => [message.to, message.epoch]),
    [
      ['b2', 1],
      ['b3', 1],
    ],
  );
  assert.equal(group.node('b1').storage.hardState().epoch, 0, 'a pre-vote persists nothing');
});

test('KIP-996: a prospective replica becomes candidate in epoch+1 only with a pre-vote majority; voters do not change epoch on a pre-vote', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.tick('b1', 10);
  const [toB2] = only(group.take(), 'PreVoteRequest');
  group.deliver(toB2!);
  assert.equal(group.core('b2').epoch, 0, 'pre-vote leaves the voter epoch alone');
  const [answer] = only(group.take(), 'PreVoteResponse');
  assert.equal(answer!.granted, true);
  group.deliver(answer!);
  assert.equal(group.core('b1').role, 'candidate');
  assert.equal(group.core('b1').epoch, 1);
  assert.deepEqual(group.node('b1').storage.hardState(), { epoch: 1, votedFor: 'b1', promisedOffset: 0 }, 'vote for self persisted');
});

test('§5.2: a voter grants at most one vote per epoch', () => {
  const table: Array<{ votedFor: string | null; candidate: string; granted: boolean }> = [
    { votedFor: null, candidate: 'b2', granted: true },
    { votedFor: 'b2', candidate: 'b2', granted: true },
    { votedFor: 'b3', candidate: 'b2', granted: false },
  ];
  for (const row of table) {
    const storage = storageWith(3, [], row.votedFor);
    const core = new RaftCore(config('b1', ['b1', 'b2', 'b3']), storage);
    core.step({ type: 'VoteRequest', from: row.candidate, to: 'b1', epoch: 3, lastEpoch: 0, lastOffset: 0 });
    const ready = core.ready()!;
    const [answer] = only(ready.messages, 'VoteResponse');
    assert.equal(answer!.granted, row.granted, JSON.stringify(row));
    if (row.granted) assert.equal(ready.hardState?.votedFor ?? storage.hardState().votedFor, row.candidate, 'vote persisted before the answer');
  }
});

test('§5.4.1: a vote goes only to a candidate whose log (last epoch, last offset) is at least as up to date', () => {
  // Voter log: epoch 2 ending at offset 5.
  const table: Array<{ lastEpoch: number; lastOffset: number; granted: boolean }> = [
    { lastEpoch: 3, lastOffset: 1, granted: true },
    { lastEpoch: 2, lastOffset: 5, granted: true },
    { lastEpoch: 2, lastOffset: 6, granted: true },
    { lastEpoch: 2, lastOffset: 4, granted: false },
    { lastEpoch: 1, lastOffset: 50, granted: false },
  ];
  for (const row of table) {
    const storage = storageWith(4, [entry(1, 0, 2), entry(2, 2, 3)]);
    const core = new RaftCore(config('b1', ['b1', 'b2', 'b3']), storage);
    core.step({ type: 'VoteRequest', from: 'b2', to: 'b1', epoch: 5, lastEpoch: row.lastEpoch, lastOffset: row.lastOffset });
    const [answer] = only(core.ready()!.messages, 'VoteResponse');
    assert.equal(answer!.granted, row.granted, JSON.stringify(row));
    assert.equal(core.epoch, 5, 'a vote request of a higher epoch is adopted either way');
  }
});

test('KIP-996: a follower that fetched from a live leader within its election timeout refuses pre-votes; the same follower grants after the timeout', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  group.replicate();
  const preVote: Message = { type: 'PreVoteRequest', from: 'b3', to: 'b2', epoch: group.core('b2').epoch + 1, lastEpoch: 9, lastOffset: 100 };
  group.deliver(preVote);
  assert.equal(only(group.take(), 'PreVoteResponse')[0]!.granted, false);
  group.filter = () => false; // b2 hears nothing more from the leader
  group.tick('b2', 10);
  group.core('b2').step(preVote);
  assert.equal(only(group.core('b2').ready()!.messages, 'PreVoteResponse')[0]!.granted, true);
});

test('KRaft: a new leader appends a LeaderChange entry in its epoch and sends BeginQuorumEpoch, re-sending to voters that have not fetched', () => {
  const group = new Group(['b1', 'b2', 'b3'], { fetchRetryTicks: 1 });
  const announced: string[] = [];
  group.filter = (message) => {
    if (message.type === 'BeginQuorumEpoch') announced.push(message.to);
    return message.to !== 'b3'; // b3 hears nothing
  };
  group.elect('b1');
  const leader = group.core('b1');
  const [first] = leader.entries(0, 1 << 20);
  assert.equal(first!.type, EntryType.LeaderChange);
  assert.equal(first!.epoch, leader.epoch);
  assert.deepEqual(announced.sort(), ['b2', 'b3']);
  announced.length = 0;
  group.replicate(4);
  assert.ok(announced.length >= 1);
  assert.deepEqual([...new Set(announced)], ['b3'], 'only the voter that has not fetched is asked again');
});

test('KRaft Fetch: the leader answers divergingEpoch when (fetchOffset, lastFetchedEpoch) does not match, and the follower truncates and fetches again', () => {
  // Leader b1: epoch 1 [0,3), epoch 3 [3,5). Follower b2: epoch 1 [0,3), epoch 2 [3,6).
  const leaderStorage = storageWith(3, [entry(1, 0, 3), entry(3, 3, 2)], 'b1');
  const followerStorage = storageWith(3, [entry(1, 0, 3), entry(2, 3, 3)]);
  const table: Array<{ fetchOffset: number; lastFetchedEpoch: number; diverging: { epoch: number; endOffset: number } | null }> = [
    { fetchOffset: 6, lastFetchedEpoch: 2, diverging: { epoch: 1, endOffset: 3 } },
    { fetchOffset: 3, lastFetchedEpoch: 1, diverging: null },
    { fetchOffset: 5, lastFetchedEpoch: 3, diverging: null },
    { fetchOffset: 6, lastFetchedEpoch: 3, diverging: { epoch: 3, endOffset: 5 } },
    { fetchOffset: 0, lastFetchedEpoch: 0, diverging: null },
  ];
  const group = new Group(['b1', 'b2', 'b3']);
  group.restart('b1', leaderStorage);
  group.restart('b2', followerStorage);
  group.elect('b1');
  const epoch = group.core('b1').epoch;
  group.take();
  for (const row of table) {
    group.deliver(fetchRequest('b2', 'b1', epoch, row.fetchOffset, row.lastFetchedEpoch));
    const [answer] = only(group.take(), 'FetchResponse');
    assert.deepEqual(answer!.divergingEpoch ?? null, row.diverging, JSON.stringify(row));
  }
  group.replicate();
  const follower = group.core('b2');
  assert.deepEqual(
    follower.entries(0, 1 << 20).map((item) => [item.epoch, item.offset]),
    group
      .core('b1')
      .entries(0, 1 << 20)
      .map((item) => [item.epoch, item.offset]),
  );
});

test('KRaft Fetch errors: FENCED_EPOCH for an older epoch, UNKNOWN_EPOCH for a newer one, NOT_LEADER from a non-leader, NOT_VOTER for a non-voter', () => {
  const group = new Group(['b1', 'b2', 'b3'], {}, ['b9']);
  group.elect('b1');
  group.take();
  const epoch = group.core('b1').epoch;
  const table: Array<{ request: FetchRequest; error: FetchResponse['error'] }> = [
    { request: fetchRequest('b2', 'b1', epoch - 1, 0, 0), error: 'FENCED_EPOCH' },
    { request: fetchRequest('b2', 'b1', epoch + 1, 0, 0), error: 'UNKNOWN_EPOCH' },
    { request: fetchRequest('b3', 'b2', epoch, 0, 0), error: 'NOT_LEADER' },
    { request: fetchRequest('b9', 'b1', epoch, 0, 0), error: 'NOT_VOTER' },
  ];
  for (const row of table) {
    group.deliver(row.request);
    const [answer] = only(group.take(), 'FetchResponse');
    assert.equal(answer!.error, row.error, JSON.stringify(row.request));
    assert.deepEqual(answer!.entries, []);
  }
});

test('§5.4.2 Figure 8: the high watermark does not advance over a majority holding only entries of an older epoch', () => {
  // Leader b1 in epoch 5 holds epoch 2 entries [0,4); followers report holding all of them.
  const group = new Group(['b1', 'b2', 'b3']);
  group.restart('b1', storageWith(4, [entry(2, 0, 4)]));
  group.filter = (message) => message.type !== 'FetchRequest' && message.type !== 'BeginQuorumEpoch';
  group.elect('b1');
  const leader = group.core('b1');
  group.filter = null;
  group.deliver(fetchRequest('b2', 'b1', leader.epoch, 4, 2));
  assert.equal(leader.highWatermark, 0, 'a majority holds [0,4) of epoch 2 only: not committed');
  group.deliver(fetchRequest('b2', 'b1', leader.epoch, 5, leader.epoch));
  assert.equal(leader.highWatermark, 5, 'once the current-epoch entry is on a majority, everything below commits');
});

test('KRaft: a follower takes min(leader high watermark, end of the prefix it verified)', () => {
  const group = new Group(['b1', 'b2', 'b3'], { fetchBytesMax: 40 });
  group.elect('b1');
  for (let index = 0; index < 4; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
  group.drain('b1');
  group.replicate(20);
  const leaderWatermark = group.core('b1').highWatermark;
  assert.equal(leaderWatermark, 5);
  for (const id of ['b2', 'b3']) assert.ok(group.core(id).highWatermark <= Math.min(leaderWatermark, group.core(id).logEndOffset));
  assert.equal(group.core('b2').highWatermark, 5);
});

test('KRaft: a follower Fetch carries its durable end offset; the leader counts only durable ends (its own too)', () => {
  const storage = new MemoryStorage();
  const core = new RaftCore(config('b1', ['b1']), storage);
  for (let tick = 0; tick < 10; tick += 1) core.tick();
  assert.equal(core.role, 'leader', 'a single voter elects itself');
  const ready = core.ready()!;
  storage.setHardState(ready.hardState!);
  assert.equal(ready.entries.length, 1);
  storage.append(ready.entries);
  core.advance(ready, 0); // written, not yet durable
  assert.equal(core.highWatermark, 0, 'not durable on the leader: not counted');
  core.markDurable(1);
  assert.equal(core.highWatermark, 1);
});

test('check-quorum: a leader without Fetches from a majority within fetchTimeoutTicks steps down', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  group.replicate(40);
  assert.equal(group.core('b1').role, 'leader', 'followers fetching: the leader stays');
  group.filter = (message) => message.to !== 'b1';
  let ticks = 0;
  while (group.core('b1').role === 'leader' && ticks < 100) {
    group.tick('b1');
    ticks += 1;
  }
  assert.ok(ticks >= 1 && ticks <= 15, `stepped down after ${ticks} ticks without Fetches (fetchTimeoutTicks 15)`);
  assert.equal(group.core('b1').role, 'follower');
  assert.equal(group.core('b1').leaderId, null);
  assert.equal(group.core('b1').propose(encoder.encode('x'), 1).ok, false, 'a deposed leader refuses proposals');
});

test('leadership transfer: TimeoutNow goes to the named replica once it is caught up; it campaigns at once (no pre-vote) and wins', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  group.replicate();
  const leader = group.core('b1');
  const result = leader.transferLeadership('b3');
  assert.equal(result.ok, true);
  assert.deepEqual(leader.propose(encoder.encode('x'), 1), { ok: false, error: 'TRANSFERRING', leaderId: 'b1' });
  group.drain('b1');
  const timeoutNow = only(group.queue, 'TimeoutNow');
  assert.deepEqual(
    timeoutNow.map((message) => message.to),
    ['b3'],
  );
  group.settle();
  assert.equal(group.core('b3').role, 'leader');
  assert.equal(group.core('b1').role, 'follower');
  assert.equal(group.core('b3').epoch, leader.epoch);
});

test('membership: an added voter counts as soon as the entry is appended; one change at a time; the new voter catches up', () => {
  const group = new Group(['b1', 'b2', 'b3'], {}, ['b4']);
  group.elect('b1');
  group.replicate();
  const leader = group.core('b1');
  const added = leader.addVoter('b4');
  assert.equal(added.ok, true);
  assert.deepEqual([...leader.voters].sort(), ['b1', 'b2', 'b3', 'b4'], 'in force when appended');
  assert.equal(leader.removeVoter('b2').ok, false, 'a second change waits for the first to commit');
  group.drain('b1');
  group.replicate(10);
  assert.ok(leader.highWatermark > (added.ok ? added.offset : 0));
  assert.equal(group.core('b4').logEndOffset, leader.logEndOffset);
  assert.deepEqual([...group.core('b4').voters].sort(), ['b1', 'b2', 'b3', 'b4']);
  assert.equal(leader.removeVoter('b2').ok, true, 'the next change is accepted once the first committed');
});

test('membership: a configuration reverts when its entry is truncated (it takes effect on append, not on commit)', () => {
  // b2 holds an uncommitted removal of b3 from an old leader; the new leader b1 does not.
  const removal: Entry = { epoch: 2, offset: 1, count: 1, type: EntryType.Membership, payload: encoder.encode(JSON.stringify({ voters: ['b1', 'b2'] })) };
  const group = new Group(['b1', 'b2', 'b3']);
  group.restart('b2', storageWith(2, [entry(1, 0), removal]));
  group.restart('b1', storageWith(3, [entry(1, 0), entry(3, 1, 2)]));
  group.restart('b3', storageWith(3, [entry(1, 0), entry(3, 1, 2)]));
  assert.deepEqual([...group.core('b2').voters].sort(), ['b1', 'b2']);
  group.elect('b1');
  group.replicate();
  assert.deepEqual([...group.core('b2').voters].sort(), ['b1', 'b2', 'b3']);
});

test('membership (dissertation §4.2.2): a leader that removes itself leads until the removal commits, then steps down and hands over', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  group.replicate();
  const leader = group.core('b1');
  assert.equal(leader.removeVoter('b1').ok, true);
  assert.equal(leader.role, 'leader', 'still leading while the removal is uncommitted');
  assert.equal(leader.propose(encoder.encode('x'), 1).ok, false, 'but no longer accepting proposals');
  group.drain('b1');
  group.replicate(10);
  assert.notEqual(leader.role, 'leader');
  const leaders = ['b2', 'b3'].filter((id) => group.core(id).role === 'leader');
  assert.equal(leaders.length, 1, 'the hand-over elected one of the remaining voters');
});

test('§4.2.3 (dissertation): a replica outside the voter set never campaigns, and while a leader is heard its pre-votes are refused', () => {
  const group = new Group(['b1', 'b2', 'b3'], {}, ['b9']);
  group.tick('b9', 50);
  assert.equal(group.core('b9').role, 'follower');
  assert.equal(group.queue.length, 0, 'no pre-vote from a non-voter');
  group.elect('b1');
  group.replicate();
  group.deliver({ type: 'PreVoteRequest', from: 'b9', to: 'b2', epoch: group.core('b2').epoch + 1, lastEpoch: 9, lastOffset: 99 });
  assert.equal(only(group.take(), 'PreVoteResponse')[0]!.granted, false);
});

test('crash and restart: the epoch and vote persisted through Ready survive; entries a Ready held but the driver never persisted do not', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  group.replicate();
  const epoch = group.core('b1').epoch;
  const persistedEnd = group.node('b2').storage.endOffset();
  for (let index = 0; index < 3; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`late${index}`), 1).ok);
  group.drain('b1');
  // b2 fetches the new entries; its core takes the answer, but the crash comes before the
  // driver executes the Ready that would have written them.
  group.queue = [];
  for (let tick = 0; tick < 50 && !group.queue.some((m) => m.type === 'FetchRequest' && m.from === 'b2'); tick += 1) group.tick('b2');
  const fetches = group.take((message) => message.type === 'FetchRequest' && message.from === 'b2');
  assert.equal(fetches.length, 1, 'b2 fetches once its fetch timer fires');
  group.deliver(fetches[0]!);
  const answers = group.take((message) => message.type === 'FetchResponse' && message.to === 'b2');
  assert.equal(answers.length, 1);
  group.core('b2').step(answers[0]!);
  const pending = group.core('b2').ready();
  assert.ok(pending !== null && pending.entries.length === 3, 'the Ready holds the fetched entries to persist');
  const storage = group.node('b2').storage;
  assert.equal(storage.endOffset(), persistedEnd, 'nothing of the answer reached storage');
  group.restart('b2', storage);
  assert.equal(group.core('b2').epoch, epoch);
  assert.equal(group.core('b2').logEndOffset, persistedEnd, 'the unpersisted entries are gone after the restart');
  assert.equal(group.core('b2').highWatermark, 0, 'the high watermark is learnt again from the leader');
  group.replicate();
  assert.equal(group.core('b2').logEndOffset, group.core('b1').logEndOffset, 'fetched again from the leader');
  assert.equal(group.core('b2').highWatermark, group.core('b1').highWatermark);
});

test('resign: a resigned leader hands over to its most caught-up voter and refuses Fetches', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  group.replicate();
  group.core('b1').resign();
  assert.equal(group.core('b1').role, 'resigned');
  group.drain('b1');
  assert.equal(only(group.queue, 'TimeoutNow').length, 1);
  group.settle();
  assert.equal(['b2', 'b3'].filter((id) => group.core(id).role === 'leader').length, 1);
  group.deliver(fetchRequest('b2', 'b1', group.core('b1').epoch, 0, 0));
  assert.equal(only(group.take(), 'FetchResponse')[0]!.error, 'NOT_LEADER');
});

test('Ready: hard state and a pending truncation come with the entries; advance() must follow before the next ready()', () => {
  const core = new RaftCore(config('b1', ['b1']), new MemoryStorage());
  for (let tick = 0; tick < 10; tick += 1) core.tick();
  const ready = core.ready()!;
  assert.ok(ready.hardState !== undefined);
  assert.ok(ready.roleChange !== undefined);
  assert.throws(() => core.ready(), /advance/);
});

test('KRaft FENCED_LEADER_EPOCH: a replica answers a BeginQuorumEpoch of an older epoch with its own epoch, and that leader steps down', () => {
  // b3 moved to epoch 3 (an election whose vote requests were lost); b1 still leads epoch 2.
  const group = new Group(['b1', 'b2', 'b3']);
  group.restart('b1', storageWith(1, [entry(1, 0, 1)]));
  group.elect('b1');
  const leader = group.core('b1');
  group.restart('b3', storageWith(leader.epoch + 1, [entry(1, 0, 1)]));
  group.take();
  group.deliver({ type: 'BeginQuorumEpoch', from: 'b1', to: 'b3', epoch: leader.epoch });
  const [answer] = only(group.take(), 'BeginQuorumEpochResponse');
  assert.deepEqual([answer!.to, answer!.epoch], ['b1', leader.epoch + 1]);
  group.deliver(answer!);
  assert.deepEqual([leader.role, leader.epoch], ['follower', 3]);
});
