// Snapshots in the core (Raft §7 "Log compaction"; KIP-630 "Kafka Raft Snapshot": FetchResponse
// SnapshotId, FetchSnapshot done by the driver). Each test names the rule it checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvariantError } from '../../src/assert.js';
import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage, type RaftStorage } from '../../src/raft/storage.js';
import { EntryType, type Entry, type FetchRequest, type FetchResponse, type Message, type Ready, type SnapshotMeta } from '../../src/raft/types.js';
import { config, encoder, Group } from './helpers.js';

const voters = ['b1', 'b2', 'b3'];

function entry(epoch: number, offset: number, count = 1): Entry {
  return { epoch, offset, count, type: EntryType.Data, payload: encoder.encode(`e${epoch}o${offset}`) };
}

function only<T extends Message['type']>(messages: Message[], type: T): Extract<Message, { type: T }>[] {
  return messages.filter((message) => message.type === type) as Extract<Message, { type: T }>[];
}

function fetchRequest(from: string, epoch: number, fetchOffset: number, lastFetchedEpoch: number, recovering = false): FetchRequest {
  return { type: 'FetchRequest', from, to: 'b1', epoch, fetchOffset, lastFetchedEpoch, bytesMax: 1 << 20, requestId: 1, ...(recovering ? { recovering } : {}) };
}

// Epoch 1 [0,3), epoch 3 [3,5), epoch 4 [5,8); a snapshot at 5 (epoch 3); entries below
// `removeBefore` removed (retention cuts whole segments, so it may stay below the snapshot).
function compactedStorage(removeBefore: number, hardEpoch = 4): MemoryStorage {
  const storage = new MemoryStorage();
  storage.setHardState({ epoch: hardEpoch, votedFor: null });
  storage.append([entry(1, 0, 3), entry(3, 3, 2), entry(4, 5, 3)]);
  storage.recordSnapshot({ endOffset: 5, epoch: 3, membership: null });
  storage.removeBefore(removeBefore);
  return storage;
}

// Executes one Ready the way the driver must (steps 1-5) and returns it.
function runReady(core: RaftCore, storage: MemoryStorage): Ready {
  const ready = core.ready();
  assert.ok(ready !== null, 'expected a Ready');
  if (ready.hardState !== undefined) storage.setHardState(ready.hardState);
  if (ready.installSnapshot !== undefined) storage.installSnapshot(ready.installSnapshot);
  if (ready.truncateTo !== undefined) storage.truncateTo(ready.truncateTo);
  storage.append(ready.entries);
  core.advance(ready, storage.endOffset());
  return ready;
}

type Answer = { snapshot: { endOffset: number; epoch: number } } | { diverging: { epoch: number; endOffset: number } } | { firstEntryOffset: number | null };

function answerOf(response: FetchResponse): Answer {
  if (response.snapshotNeeded !== undefined) return { snapshot: response.snapshotNeeded };
  if (response.divergingEpoch !== undefined) return { diverging: response.divergingEpoch };
  return { firstEntryOffset: response.entries[0]?.offset ?? null };
}

test('KIP-630 leader: a Fetch below the log start, or whose divergence lies below it, is answered snapshotNeeded {endOffset, epoch}; the follower is not counted further', () => {
  const snapshot = { snapshot: { endOffset: 5, epoch: 3 } };
  const tables: Array<{ name: string; removeBefore: number; rows: Array<{ fetchOffset: number; lastFetchedEpoch: number; answer: Answer }> }> = [
    {
      name: 'log starts at the snapshot (5)',
      removeBefore: 5,
      rows: [
        { fetchOffset: 0, lastFetchedEpoch: 0, answer: snapshot }, // below the start
        { fetchOffset: 3, lastFetchedEpoch: 1, answer: snapshot }, // below the start
        { fetchOffset: 5, lastFetchedEpoch: 3, answer: { firstEntryOffset: 5 } }, // at the start, the snapshot's epoch: matches
        { fetchOffset: 5, lastFetchedEpoch: 2, answer: snapshot }, // at the start, another epoch (KRaft rule 2)
        { fetchOffset: 6, lastFetchedEpoch: 2, answer: snapshot }, // an epoch below the snapshot's (KRaft rule 3)
        { fetchOffset: 6, lastFetchedEpoch: 3, answer: { diverging: { epoch: 3, endOffset: 5 } } }, // epoch 3 ends at the snapshot
        { fetchOffset: 8, lastFetchedEpoch: 4, answer: { firstEntryOffset: 8 } },
        { fetchOffset: 9, lastFetchedEpoch: 4, answer: { diverging: { epoch: 4, endOffset: 8 } } },
      ],
    },
    {
      name: 'log starts below the snapshot (3): whole segments removed',
      removeBefore: 3,
      rows: [
        { fetchOffset: 0, lastFetchedEpoch: 0, answer: snapshot },
        { fetchOffset: 3, lastFetchedEpoch: 1, answer: snapshot }, // the epoch below 3 is gone: only the snapshot helps
        { fetchOffset: 5, lastFetchedEpoch: 3, answer: { firstEntryOffset: 5 } }, // below the snapshot, still in the log
        { fetchOffset: 6, lastFetchedEpoch: 3, answer: { diverging: { epoch: 3, endOffset: 5 } } }, // found in the log
        { fetchOffset: 6, lastFetchedEpoch: 2, answer: snapshot },
      ],
    },
  ];
  for (const table of tables) {
    const group = new Group(voters);
    group.snapshotTransfer = false;
    group.restart('b1', compactedStorage(table.removeBefore));
    group.elect('b1');
    const leader = group.core('b1');
    const epoch = leader.epoch;
    group.deliver(fetchRequest('b2', epoch, 9, epoch));
    group.take();
    const matchedOf = (): number => leader.status().replicas.find((replica) => replica.id === 'b2')!.matchedOffset;
    assert.equal(matchedOf(), 9, table.name);
    for (const row of table.rows) {
      group.deliver(fetchRequest('b2', epoch, row.fetchOffset, row.lastFetchedEpoch));
      const [response] = only(group.take(), 'FetchResponse');
      assert.deepEqual(answerOf(response!), row.answer, `${table.name}: ${JSON.stringify(row)}`);
      assert.equal(matchedOf(), 9, `${table.name}: ${JSON.stringify(row)}: progress unchanged`);
    }
    // A recovering follower answered with a snapshot matched nothing: counted at 0.
    group.deliver(fetchRequest('b2', epoch, 0, 0, true));
    assert.deepEqual(answerOf(only(group.take(), 'FetchResponse')[0]!), snapshot, table.name);
    assert.equal(matchedOf(), 0, `${table.name}: a recovering follower answered with a snapshot counts 0`);
  }
});

test('Raft §7 / KIP-630: epoch lookups at the log start answer from the snapshot id: Fetch and pre-vote positions, the high watermark on start', () => {
  const emptyAtEight = (): MemoryStorage => {
    const storage = compactedStorage(5);
    storage.recordSnapshot({ endOffset: 8, epoch: 4, membership: null });
    storage.removeBefore(8);
    return storage;
  };
  const installedAtFive = (): MemoryStorage => {
    const storage = new MemoryStorage();
    storage.setHardState({ epoch: 4, votedFor: null });
    storage.installSnapshot({ endOffset: 5, epoch: 3, membership: null });
    return storage;
  };
  const table: Array<{ name: string; storage: () => MemoryStorage; start: number; fetch: [number, number]; last: [number, number] }> = [
    { name: 'empty log at a snapshot (8, epoch 4)', storage: emptyAtEight, start: 8, fetch: [8, 4], last: [4, 8] },
    { name: 'empty log at an installed snapshot (5, epoch 3)', storage: installedAtFive, start: 5, fetch: [5, 3], last: [3, 5] },
    { name: 'log [5,8) after the snapshot at 5', storage: () => compactedStorage(5), start: 5, fetch: [8, 4], last: [4, 8] },
    { name: 'log [3,8), snapshot at 5', storage: () => compactedStorage(3), start: 3, fetch: [8, 4], last: [4, 8] },
  ];
  for (const row of table) {
    const storage = row.storage();
    const follower = new RaftCore(config('b2', voters), storage);
    assert.equal(follower.logStartOffset, row.start, row.name);
    assert.equal(follower.highWatermark, storage.snapshot()!.endOffset, `${row.name}: a snapshot holds committed state only`);
    follower.step({ type: 'BeginQuorumEpoch', from: 'b1', to: 'b2', epoch: 4 });
    const fetch = only(follower.ready()!.messages, 'FetchRequest')[0]!;
    assert.deepEqual([fetch.fetchOffset, fetch.lastFetchedEpoch], row.fetch, `${row.name}: Fetch position`);
    const candidate = new RaftCore(config('b2', voters), row.storage());
    for (let tick = 0; tick < 10; tick += 1) candidate.tick();
    const preVote = only(candidate.ready()!.messages, 'PreVoteRequest')[0]!;
    assert.deepEqual([preVote.lastEpoch, preVote.lastOffset], row.last, `${row.name}: last epoch and offset (§5.4.1)`);
  }
});

test('KIP-630 follower: snapshotNeeded → Ready.fetchSnapshot; Fetches only every fetchRetryTicks meanwhile; snapshotFetched → Ready step 2 installs it, the log starts at S, the high watermark is S, and fetching resumes from S', () => {
  const storage = new MemoryStorage();
  const core = new RaftCore(config('b2', voters), storage);
  core.step({ type: 'BeginQuorumEpoch', from: 'b1', to: 'b2', epoch: 6 });
  const first = only(runReady(core, storage).messages, 'FetchRequest')[0]!;
  assert.deepEqual([first.fetchOffset, first.lastFetchedEpoch], [0, 0]);
  const answer = (request: FetchRequest): FetchResponse => ({
    type: 'FetchResponse',
    from: 'b1',
    to: 'b2',
    epoch: 6,
    leaderId: 'b1',
    fetchOffset: request.fetchOffset,
    lastFetchedEpoch: request.lastFetchedEpoch,
    requestId: request.requestId,
    entries: [],
    highWatermark: 12,
    snapshotNeeded: { endOffset: 10, epoch: 5 },
  });
  core.step(answer(first));
  const asked = runReady(core, storage);
  assert.deepEqual(asked.fetchSnapshot, { leaderId: 'b1', leaderEpoch: 6, snapshot: { endOffset: 10, epoch: 5 } });
  assert.deepEqual(only(asked.messages, 'FetchRequest'), [], 'no Fetch right after a snapshotNeeded answer');
  assert.equal(core.highWatermark, 0, 'the leader high watermark is not taken from a snapshotNeeded answer');
  // Heartbeat Fetches: one per fetchRetryTicks (3 in the test config), from the same position.
  const heartbeats: FetchRequest[] = [];
  for (let tick = 0; tick < 6; tick += 1) {
    core.tick();
    const ready = core.ready();
    if (ready === null) continue;
    core.advance(ready, storage.endOffset());
    heartbeats.push(...only(ready.messages, 'FetchRequest'));
    assert.equal(ready.fetchSnapshot, undefined, 'the request is not repeated');
  }
  assert.deepEqual(
    heartbeats.map((request) => request.fetchOffset),
    [0, 0],
  );
  assert.equal(core.role, 'follower');
  core.step(answer(heartbeats[1]!)); // the same id again: nothing new for the driver
  assert.equal(core.ready(), null);
  const meta: SnapshotMeta = { endOffset: 10, epoch: 5, membership: null };
  assert.equal(core.snapshotFetched({ ...meta, endOffset: 9 }), false, 'a snapshot not asked for is not installed');
  assert.equal(core.snapshotFetched(meta), true);
  const install = runReady(core, storage);
  assert.deepEqual(install.installSnapshot, meta);
  assert.equal(install.fetchSnapshot, null, 'the request is withdrawn once installed');
  assert.equal(install.highWatermark, 10);
  const resumed = only(install.messages, 'FetchRequest')[0]!;
  assert.deepEqual([resumed.fetchOffset, resumed.lastFetchedEpoch], [10, 5], 'fetching resumes from S with the snapshot epoch');
  assert.deepEqual([core.logStartOffset, core.logEndOffset, core.highWatermark], [10, 10, 10]);
  assert.deepEqual(core.snapshot, meta);
  assert.ok((storage.hardState().promisedOffset ?? 0) >= 10, 'the Fetch at 10 is promised before it leaves');
  // The leader serves from S: entries are appended after the snapshot.
  core.step({ ...answer(resumed), snapshotNeeded: undefined, entries: [entry(5, 10, 2)], highWatermark: 12 });
  runReady(core, storage);
  assert.deepEqual([core.logStartOffset, core.logEndOffset, core.highWatermark], [10, 12, 12]);
  assert.deepEqual(
    storage.allEntries().map((item) => item.offset),
    [10],
  );
});

test('KIP-630 follower: a replica that moves to another leader or epoch withdraws its snapshot request, and a late snapshotFetched is ignored', () => {
  const storage = new MemoryStorage();
  const core = new RaftCore(config('b2', voters), storage);
  core.step({ type: 'BeginQuorumEpoch', from: 'b1', to: 'b2', epoch: 6 });
  const request = only(runReady(core, storage).messages, 'FetchRequest')[0]!;
  core.step({
    type: 'FetchResponse',
    from: 'b1',
    to: 'b2',
    epoch: 6,
    leaderId: 'b1',
    fetchOffset: 0,
    lastFetchedEpoch: 0,
    requestId: request.requestId,
    entries: [],
    highWatermark: 12,
    snapshotNeeded: { endOffset: 10, epoch: 5 },
  });
  assert.ok(runReady(core, storage).fetchSnapshot);
  core.step({ type: 'BeginQuorumEpoch', from: 'b3', to: 'b2', epoch: 7 });
  assert.equal(runReady(core, storage).fetchSnapshot, null);
  assert.equal(core.snapshotFetched({ endOffset: 10, epoch: 5, membership: null }), false);
  assert.equal(core.logStartOffset, 0);
});

test('Raft §7 compaction: compact(S) needs S committed (<= high watermark), in the log, not older than the latest snapshot, and stored by the driver', () => {
  const group = new Group(voters);
  group.elect('b1');
  for (let index = 0; index < 4; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
  group.drain('b1');
  group.replicate(10);
  const { core, storage } = group.node('b1');
  assert.equal(core.highWatermark, 5);
  const table: Array<{ name: string; endOffset: number; store: boolean; error: RegExp | null }> = [
    { name: 'beyond the high watermark', endOffset: 6, store: false, error: /beyond the high watermark/ },
    { name: 'offset 0', endOffset: 0, store: false, error: /integer >= 1/ },
    { name: 'not stored by the driver', endOffset: 3, store: false, error: /storage does not hold this snapshot/ },
    { name: 'committed and stored', endOffset: 3, store: true, error: null },
    { name: 'older than the latest', endOffset: 2, store: false, error: /older than the latest snapshot/ },
    { name: 'at the high watermark', endOffset: 5, store: true, error: null },
  ];
  for (const row of table) {
    if (row.store) storage.recordSnapshot(core.snapshotMetaAt(row.endOffset));
    if (row.error === null) {
      core.compact(row.endOffset);
      assert.equal(core.snapshot?.endOffset, row.endOffset, row.name);
    } else {
      assert.throws(
        () => core.compact(row.endOffset),
        (error: Error) => error instanceof InvariantError && row.error!.test(error.message),
        row.name,
      );
    }
  }
  storage.removeBefore(5);
  assert.equal(core.logStartOffset, 5);
  assert.throws(() => core.snapshotMetaAt(4), /below the log start/);
  assert.deepEqual(core.snapshotMetaAt(5), { endOffset: 5, epoch: core.epoch, membership: null });
});

test("Raft §7 / KIP-630: a follower that fell behind the leader's log start catches up by snapshot, then by Fetch from S; the state machines agree", () => {
  const group = new Group(voters);
  group.elect('b1');
  group.filter = (message) => message.to !== 'b3' && message.from !== 'b3'; // b3 is cut off
  for (let index = 0; index < 6; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
  group.drain('b1');
  group.replicate(10);
  const endOffset = group.compact('b1');
  assert.equal(endOffset, 7);
  group.filter = null;
  group.replicate(10);
  assert.deepEqual(
    group.snapshotLog.filter((item) => item.id === 'b3'),
    [
      { id: 'b3', what: 'request', endOffset: 7, epoch: group.core('b1').epoch },
      { id: 'b3', what: 'install', endOffset: 7, epoch: group.core('b1').epoch },
    ],
  );
  const follower = group.core('b3');
  assert.deepEqual([follower.logStartOffset, follower.logEndOffset, follower.highWatermark], [7, 7, 7]);
  assert.ok(group.core('b1').propose(encoder.encode('after'), 1).ok);
  group.drain('b1');
  group.replicate(10);
  assert.deepEqual(
    follower.entries(7, 1 << 20).map((item) => item.offset),
    [7],
  );
  assert.equal(follower.highWatermark, 8);
});

test('recovering (DESIGN §12) + KIP-630: a replica whose disk was wiped (log and snapshot gone, promise kept) recovers by snapshot; one wiped with no promise (end 0) catches up the same way', () => {
  for (const keepPromise of [true, false]) {
    const group = new Group(voters);
    group.elect('b1');
    for (let index = 0; index < 6; index += 1) assert.ok(group.core('b1').propose(encoder.encode(`v${index}`), 1).ok);
    group.drain('b1');
    group.replicate(10);
    const snapshotEnd = group.compact('b1');
    assert.equal(group.node('b2').storage.hardState().promisedOffset, 7);
    const wiped = new MemoryStorage();
    if (keepPromise) wiped.setHardState(group.node('b2').storage.hardState());
    group.restart('b2', wiped);
    assert.equal(group.core('b2').recovering, keepPromise);
    group.replicate(10);
    const core = group.core('b2');
    assert.equal(core.recovering, false, `keepPromise=${keepPromise}`);
    assert.deepEqual([core.logStartOffset, core.logEndOffset], [snapshotEnd, group.core('b1').logEndOffset], `keepPromise=${keepPromise}`);
    assert.deepEqual(
      group.snapshotLog.filter((item) => item.id === 'b2').map((item) => item.what),
      ['request', 'install'],
    );
    const events = group.events.filter((item) => item.id === 'b2').map((item) => item.event.type);
    assert.deepEqual(events, keepPromise ? ['replica.recovering', 'replica.recovered'] : []);
  }
});

test('KIP-630 follower: a snapshotNeeded answer whose snapshot differs from an entry below its end that the follower knows committed is refused (CommittedDataDivergence)', () => {
  // b2 knows [0,5) committed with epoch 2 at offset 4; the leader offers a snapshot at 5 of epoch 3.
  const storage = new MemoryStorage();
  storage.setHardState({ epoch: 4, votedFor: null, promisedOffset: 5 });
  storage.append([entry(1, 0, 3), entry(2, 3, 2)]);
  storage.recordCommitMark(5);
  const core = new RaftCore(config('b2', voters), storage);
  core.step({ type: 'BeginQuorumEpoch', from: 'b1', to: 'b2', epoch: 4 });
  const request = only(runReady(core, storage).messages, 'FetchRequest')[0]!;
  assert.equal(request.fetchOffset, 5);
  core.step({
    type: 'FetchResponse',
    from: 'b1',
    to: 'b2',
    epoch: 4,
    leaderId: 'b1',
    fetchOffset: 5,
    lastFetchedEpoch: 2,
    requestId: request.requestId,
    entries: [],
    highWatermark: 5,
    snapshotNeeded: { endOffset: 5, epoch: 3 },
  });
  const ready = runReady(core, storage);
  assert.equal(ready.fetchSnapshot, undefined);
  assert.deepEqual(ready.events, [{ type: 'CommittedDataDivergence', leaderId: 'b1', epoch: 4, requestedEndOffset: 0, committedOffset: 5 }]);
  assert.equal(core.leaderId, null);
});

test('storage contract (storage.ts): entries are removed only below a snapshot; an empty log at the snapshot reports its epoch; the membership in force survives removal; a log ending below its snapshot is refused on start', () => {
  const storage = new MemoryStorage();
  storage.setHardState({ epoch: 3, votedFor: null });
  const membership = { type: EntryType.Membership, payload: encoder.encode(JSON.stringify({ voters: ['b1', 'b2'] })) };
  storage.append([entry(1, 0, 2), { epoch: 2, offset: 2, count: 1, ...membership }, entry(3, 3, 2)]);
  assert.throws(() => storage.removeBefore(2), /not covered by a snapshot/);
  storage.recordSnapshot({ endOffset: 5, epoch: 3, membership: { offset: 2, voters: ['b1', 'b2'] } });
  storage.removeBefore(5);
  assert.deepEqual([storage.startOffset(), storage.endOffset(), storage.lastEpoch()], [5, 5, 3]);
  assert.deepEqual(storage.membership(), [{ offset: 2, voters: ['b1', 'b2'] }]);
  const core = new RaftCore(config('b1', voters), storage);
  assert.deepEqual(core.voters, ['b1', 'b2'], 'the voters come from the membership in force at the snapshot');
  const short = compactedStorage(3);
  short.truncateTo(3); // a log that lost its entries up to below its snapshot, not reset on open
  assert.throws(() => new RaftCore(config('b1', voters), short), /log ends below its snapshot/);
});

test('compatibility: a storage without snapshot() (the segment-log adapter today) keeps the pre-snapshot answers', () => {
  // A log that retention cut at 3, seen through an adapter that knows no snapshot.
  const inner = compactedStorage(3);
  const legacy: RaftStorage = {
    hardState: () => inner.hardState(),
    startOffset: () => inner.startOffset(),
    endOffset: () => inner.endOffset(),
    lastEpoch: () => inner.lastEpoch(),
    epochHistory: () => inner.epochHistory(),
    entries: (fromOffset, bytesMax) => inner.entries(fromOffset, bytesMax),
    membership: () => inner.membership(),
  };
  const group = new Group(voters);
  group.nodes.set('b1', { id: 'b1', storage: inner, core: new RaftCore(config('b1', voters), legacy) });
  group.elect('b1');
  const leader = group.core('b1');
  assert.equal(leader.snapshot, null);
  group.take();
  group.deliver(fetchRequest('b2', leader.epoch, 0, 0));
  const [response] = only(group.take(), 'FetchResponse');
  assert.equal(response!.snapshotNeeded, undefined);
  assert.deepEqual(response!.divergingEpoch, { epoch: 0, endOffset: 3 }, 'the divergingEpoch answer given before snapshots');
});
