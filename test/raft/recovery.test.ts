// Recovering replicas (DESIGN §12; Alagappan et al., "Protocol-Aware Recovery for Consensus-Based
// Storage", FAST 2018): a replica remembers what it promised and does not act as if it never had
// it; and a leader lacking committed entries is refused, not crashed on.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { EntryType, type Entry, type HardState, type Message } from '../../src/raft/types.js';
import { config, encoder, Group } from './helpers.js';

function entry(epoch: number, offset: number, count = 1): Entry {
  return { epoch, offset, count, type: EntryType.Data, payload: encoder.encode(`e${epoch}o${offset}`) };
}

function storageWith(state: HardState, entries: Entry[], commitMarkOffset = 0): MemoryStorage {
  const storage = new MemoryStorage();
  storage.setHardState(state);
  storage.append(entries);
  storage.recordCommitMark(commitMarkOffset);
  return storage;
}

function only<T extends Message['type']>(messages: Message[], type: T): Extract<Message, { type: T }>[] {
  return messages.filter((message) => message.type === type) as Extract<Message, { type: T }>[];
}

// A group where b1 leads and every replica holds `count` proposals durably.
function groupWithEntries(count: number): Group {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  for (let index = 0; index < count; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
  group.drain('b1');
  group.replicate(10);
  return group;
}

test('promise: a Fetch at N leaves in a Ready whose hard state already says promisedOffset >= N (synced before the report)', () => {
  const group = new Group(['b1', 'b2', 'b3']);
  group.elect('b1');
  for (let index = 0; index < 3; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
  group.drain('b1');
  let checked = 0;
  for (let round = 0; round < 10; round += 1) {
    for (const id of ['b1', 'b2', 'b3']) {
      const core = group.core(id);
      core.tick();
      for (let ready = core.ready(); ready !== null; ready = core.ready()) {
        const storage = group.node(id).storage;
        if (ready.hardState !== undefined) storage.setHardState(ready.hardState);
        if (ready.truncateTo !== undefined) storage.truncateTo(ready.truncateTo);
        storage.append(ready.entries);
        core.advance(ready, storage.endOffset());
        for (const fetch of only(ready.messages, 'FetchRequest')) {
          assert.ok((storage.hardState().promisedOffset ?? -1) >= fetch.fetchOffset, `fetch at ${fetch.fetchOffset} before its promise`);
          checked += 1;
        }
        group.queue.push(...ready.messages);
      }
    }
    group.settle();
  }
  assert.ok(checked > 0);
  assert.equal(group.node('b2').storage.hardState().promisedOffset, group.core('b1').logEndOffset);
});

test('promise: a leader promises the part of its own copy a new high watermark counts on, in the Ready that carries it', () => {
  const group = groupWithEntries(4);
  const leader = group.node('b1');
  assert.equal(leader.core.highWatermark, 5);
  assert.equal(leader.storage.hardState().promisedOffset, 5);
});

test('recovering: a log that ends below the promise on start grants no vote and no pre-vote, never campaigns, and says so', () => {
  const storage = storageWith({ epoch: 3, votedFor: null, promisedOffset: 6 }, [entry(1, 0, 2), entry(2, 2, 2)]);
  const core = new RaftCore(config('b1', ['b1', 'b2', 'b3']), storage);
  assert.equal(core.recovering, true);
  assert.equal(core.status().recovering, true);
  assert.equal(core.status().recoveryMarkOffset, 6);
  const first = core.ready()!;
  assert.deepEqual(first.events, [{ type: 'replica.recovering', markOffset: 6, endOffset: 4 }]);
  core.advance(first, 4);
  // A candidate with a log as up to date as ours (our log is now shorter than when we promised).
  core.step({ type: 'PreVoteRequest', from: 'b2', to: 'b1', epoch: 4, lastEpoch: 2, lastOffset: 4 });
  core.step({ type: 'VoteRequest', from: 'b2', to: 'b1', epoch: 4, lastEpoch: 2, lastOffset: 4 });
  const ready = core.ready()!;
  assert.deepEqual(
    only(ready.messages, 'PreVoteResponse').map((message) => message.granted),
    [false],
  );
  assert.deepEqual(
    only(ready.messages, 'VoteResponse').map((message) => message.granted),
    [false],
  );
  assert.equal(ready.hardState?.votedFor ?? null, null, 'no vote recorded');
  core.advance(ready, 4);
  core.step({ type: 'BeginQuorumEpoch', from: 'b2', to: 'b1', epoch: 4 });
  core.step({ type: 'TimeoutNow', from: 'b2', to: 'b1', epoch: 4 });
  assert.equal(core.role, 'follower', 'a transfer cannot make it campaign either');
  const following = core.ready()!;
  const fetch = only(following.messages, 'FetchRequest')[0]!;
  assert.deepEqual([fetch.fetchOffset, fetch.recovering], [4, true], 'it fetches from its real end and says it is recovering');
  core.advance(following, 4);
  for (let tick = 0; tick < 200; tick += 1) {
    core.tick();
    const next = core.ready();
    if (next !== null) core.advance(next, 4);
    assert.equal(core.role, 'follower', 'a recovering replica never goes prospective');
  }
});

test('recovering: it fetches with its real end and the flag; the leader forgets the offset it counted before, then it recovers and votes again', () => {
  const group = groupWithEntries(4); // log [0,5) everywhere, committed
  const leader = group.core('b1');
  assert.equal(leader.status().replicas.find((replica) => replica.id === 'b2')!.matchedOffset, 5);
  // b2's disk loses its synced suffix (metadata intact): promised 5, holds 2.
  const damaged = group.node('b2').storage;
  damaged.truncateTo(2);
  group.restart('b2', damaged);
  assert.equal(group.core('b2').recovering, true);
  group.drain('b2');
  assert.deepEqual(
    group.events.filter((item) => item.id === 'b2').map((item) => item.event.type),
    ['replica.recovering'],
  );
  // Its Fetch says recovering and carries its real end; the leader counts it at 2.
  group.queue = [];
  for (let tick = 0; tick < 10 && !group.queue.some((message) => message.from === 'b2'); tick += 1) {
    group.tick('b1');
    for (const message of group.take((item) => item.to === 'b2' && item.type === 'BeginQuorumEpoch')) group.deliver(message);
  }
  const fetch = only(
    group.take((message) => message.from === 'b2'),
    'FetchRequest',
  )[0]!;
  assert.equal(fetch.fetchOffset, 2);
  assert.equal(fetch.recovering, true);
  group.queue = [];
  group.filter = (message) => !(message.type === 'FetchResponse' && message.to === 'b2'); // b2 does not hear back yet
  group.deliver(fetch);
  const replica = leader.status().replicas.find((item) => item.id === 'b2')!;
  assert.equal(replica.matchedOffset, 2, 'the leader no longer counts the 5 it saw before');
  assert.equal(replica.recovering, true);
  group.filter = null;
  group.replicate(10);
  assert.equal(group.core('b2').recovering, false);
  assert.deepEqual(
    group.events.filter((item) => item.id === 'b2').map((item) => item.event.type),
    ['replica.recovering', 'replica.recovered'],
  );
  assert.equal(leader.status().replicas.find((item) => item.id === 'b2')!.recovering, false);
  const core = group.core('b2');
  core.step({ type: 'VoteRequest', from: 'b3', to: 'b2', epoch: core.epoch + 1, lastEpoch: core.epoch, lastOffset: core.logEndOffset });
  assert.equal(only(core.ready()!.messages, 'VoteResponse')[0]!.granted, true, 'an ordinary voter again');
});

test('recovering (issue 11 scenario): with the old leader down, the lagging B and A that lost acknowledged entries cannot elect; with the rule off they elect a leader lacking them', () => {
  for (const recoveringRuleDisabled of [false, true]) {
    const group = new Group(['b1', 'b2', 'b3'], { recoveringRuleDisabled });
    group.elect('b1');
    group.replicate(5);
    group.filter = (message) => message.to !== 'b3' && message.from !== 'b3'; // B = b3 is paused
    for (let index = 0; index < 4; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
    group.drain('b1');
    group.replicate(10);
    const committed = group.core('b1').highWatermark;
    assert.equal(committed, 5, 'committed by b1 and A = b2');
    group.node('b2').storage.truncateTo(1); // A's disk loses what it acknowledged
    group.restart('b2', group.node('b2').storage);
    group.nodes.delete('b1'); // the old leader is down
    group.filter = (message) => message.to !== 'b1';
    group.queue = [];
    for (let round = 0; round < 10; round += 1) {
      group.tick('b3', 5); // b3 times out first (b2 too, in later rounds: it may not campaign)
      group.settle();
      group.tick('b2', 2);
      group.settle();
    }
    const leaders = ['b2', 'b3'].filter((id) => group.core(id).role === 'leader');
    if (!recoveringRuleDisabled) {
      assert.deepEqual(leaders, [], 'no leader without the entries: the group waits for b1');
    } else {
      assert.equal(leaders.length, 1, 'rule off: a leader is elected');
      assert.ok(
        group
          .core(leaders[0]!)
          .entries(0, 1 << 20)
          .every((item) => item.epoch !== 1 || item.offset < 1),
        'and it lacks the acknowledged entries',
      );
    }
  }
});

test('recovering: a hard state from before promises falls back on the commit mark the driver recorded', () => {
  const storage = storageWith({ epoch: 2, votedFor: null }, [entry(1, 0, 3)], 7);
  const core = new RaftCore(config('b1', ['b1', 'b2', 'b3']), storage);
  assert.equal(core.recovering, true);
  assert.equal(core.recoveryMarkOffset, 7);
  const ready = core.ready()!;
  assert.equal(ready.hardState?.promisedOffset, 7, 'the mark is persisted as a promise: a second restart still recovers');
  const clean = new RaftCore(config('b1', ['b1', 'b2', 'b3']), storageWith({ epoch: 2, votedFor: null, promisedOffset: 3 }, [entry(1, 0, 3)], 7));
  assert.equal(clean.recovering, false, 'beside a promise the commit mark is not used (a follower may know commits it never synced)');
});

test('recovering rule off (test only): the same start is an ordinary voter', () => {
  const storage = storageWith({ epoch: 3, votedFor: null, promisedOffset: 6 }, [entry(1, 0, 2)]);
  const core = new RaftCore(config('b1', ['b1', 'b2', 'b3'], { recoveringRuleDisabled: true }), storage);
  assert.equal(core.recovering, false);
});

test('promise: a legitimate truncation lowers it, so a clean restart afterwards is not taken for a loss', () => {
  // b2 holds an uncommitted epoch-2 tail [3,6) that the epoch-3 leader b1 does not have.
  const group = new Group(['b1', 'b2', 'b3']);
  group.restart('b1', storageWith({ epoch: 3, votedFor: 'b1' }, [entry(1, 0, 3), entry(3, 3, 1)]));
  group.restart('b2', storageWith({ epoch: 3, votedFor: null, promisedOffset: 6 }, [entry(1, 0, 3), entry(2, 3, 3)]));
  group.restart('b3', storageWith({ epoch: 3, votedFor: null }, [entry(1, 0, 3), entry(3, 3, 1)]));
  assert.equal(group.core('b2').recovering, false);
  group.elect('b1');
  group.replicate(10);
  assert.equal(group.core('b2').logEndOffset, group.core('b1').logEndOffset);
  const promised = group.node('b2').storage.hardState().promisedOffset!;
  assert.ok(promised <= group.core('b2').logEndOffset, `promise ${promised} beyond the log after truncation`);
  group.restart('b2', group.node('b2').storage);
  assert.equal(group.core('b2').recovering, false);
});

test('CommittedDataDivergence: a leader asking to truncate below what this replica knows committed is refused, reported, and not followed; the replica stays up', () => {
  // b2 knows [0,4) committed (driver record) and holds epoch-2 entries; b1 leads epoch 3 without them.
  const group = new Group(['b1', 'b2', 'b3']);
  group.restart('b1', storageWith({ epoch: 3, votedFor: 'b1' }, [entry(1, 0, 1)]));
  group.restart('b2', storageWith({ epoch: 3, votedFor: null, promisedOffset: 4 }, [entry(1, 0, 1), entry(2, 1, 3)], 4));
  group.restart('b3', storageWith({ epoch: 3, votedFor: null }, [entry(1, 0, 1)]));
  group.elect('b1');
  assert.doesNotThrow(() => group.replicate(10));
  const follower = group.core('b2');
  assert.equal(follower.logEndOffset, 4, 'committed entries kept');
  const divergences = group.events.filter((item) => item.event.type === 'CommittedDataDivergence');
  assert.equal(divergences.length, 1, 'reported once for that leader and epoch');
  assert.deepEqual(divergences[0]!.event, {
    type: 'CommittedDataDivergence',
    leaderId: 'b1',
    epoch: follower.epoch,
    requestedEndOffset: 1,
    committedOffset: 4,
  });
  assert.equal(follower.leaderId, null, 'does not follow that leader');
  assert.ok(!group.queue.some((message) => message.type === 'FetchRequest' && message.from === 'b2'));
});
