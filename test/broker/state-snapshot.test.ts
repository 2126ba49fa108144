// Snapshots of the broker's state (src/broker/state-snapshot.ts, BrokerState's snapshot calls):
// the payload's round trip and its refusals, capture → restore in a fresh store → the same state,
// and the whole start-up mechanism (restore when the store is behind, replay of the retained
// log, indexFromSnapshot) against a state that never stopped and saw retention move the log's
// start. Each test names the rule it checks. A property failure prints fast-check's seed and path;
// pass them in fc.assert's options to replay it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { producerKey, queueKey } from '../../src/broker/names.js';
import type { BrokerState, SnapshotPayload } from '../../src/broker/state.js';
import {
  decodeStateSnapshot,
  encodeStateSnapshot,
  StateSnapshotError,
  stateSnapshotVersion,
  type StateSnapshot,
  type StateSnapshotProblem,
} from '../../src/broker/state-snapshot.js';
import { StateStore } from '../../src/broker/state-store.js';
import type { Entry } from '../../src/raft/types.js';
import { crc32c } from '../../src/log/index.js';
import { commitRange, indexedBatches, LeaderLog, leaderLogOf, leaderStep, openState, quiet, startState, withDir } from './state-fixtures.js';

const sample: StateSnapshot = {
  endOffset: 120,
  topics: [
    { name: 'orders', queues: 3, createdMs: 1_700_000_000_000 },
    { name: 'audit.log-2', queues: 1, createdMs: 5 },
  ],
  consumerOffsets: [
    { consumerGroup: 'billing', topic: 'orders', queue: 2, offset: 17 },
    { consumerGroup: 'old:group', topic: 'gone', queue: 0, offset: 3 }, // committed after its topic was deleted: kept, as in the store
  ],
  queueHeads: [
    { topic: 'orders', queue: 0, endOffset: 40 },
    { topic: 'audit.log-2', queue: 0, endOffset: 2 ** 40 },
  ],
  producers: [
    {
      producerId: 2 ** 47,
      topic: 'orders',
      queue: 1,
      state: {
        batches: [
          { sequence: 9, count: 2, queueOffset: 30, logOffset: 100 },
          { sequence: 11, count: 1, queueOffset: 32, logOffset: 110 },
        ],
        forgotten: { sequence: 5, count: 4, queueOffset: 26, logOffset: 90 },
        runLogOffset: 10,
        runSequence: 0,
        storedBelowSequence: 0,
      },
    },
    { producerId: 1, topic: 'orders', queue: 0, state: { batches: [], forgotten: null, runLogOffset: 50, runSequence: 3, storedBelowSequence: 7 } },
  ],
  metadata: {
    version: 99,
    groups: [
      { id: 'g1', brokers: [{ id: 'b1', host: '127.0.0.1', clientPort: 7101 }] },
      { id: 'g2', brokers: [{ id: 'b4', host: 'broker-4.example', clientPort: 7104 }] },
    ],
    topics: [{ name: 'orders', createdMs: 1_700_000_000_000, placement: ['g1', 'g2', 'g2'] }],
  },
};

function problemOf(work: () => unknown): StateSnapshotProblem {
  try {
    work();
  } catch (error) {
    assert.ok(error instanceof StateSnapshotError, `a StateSnapshotError, not ${String(error)}`);
    return error.problem;
  }
  assert.fail('no error');
}

/** In a fixed order (a store lists by key, a live state in apply order). */
function sorted<T>(values: T[]): T[] {
  return [...values].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/** The snapshot as data: topics, offsets, heads and producers in a fixed order. */
function decoded(snapshot: SnapshotPayload): StateSnapshot {
  const s = decodeStateSnapshot(snapshot.payload, snapshot.endOffset);
  return { ...s, topics: sorted(s.topics), consumerOffsets: sorted(s.consumerOffsets), queueHeads: sorted(s.queueHeads) };
}

describe('state-snapshot: the payload', () => {
  test('encode → decode gives back every field, large offsets and producer ids included', () => {
    const payload = encodeStateSnapshot(sample);
    assert.deepEqual(decodeStateSnapshot(payload, 120), sample);
    assert.deepEqual(decodeStateSnapshot(payload), sample, 'the offset to check is optional');
    assert.equal(payload.subarray(0, 4).toString('latin1'), 'MBSS');
    assert.equal(payload.readUInt16LE(4), stateSnapshotVersion);
  });

  test('an empty state is a valid snapshot', () => {
    const empty: StateSnapshot = { endOffset: 0, topics: [], consumerOffsets: [], queueHeads: [], producers: [], metadata: null };
    assert.deepEqual(decodeStateSnapshot(encodeStateSnapshot(empty)), empty);
  });

  test('a version-1 payload (before the metadata log) is read, without metadata', () => {
    const withoutMetadata: StateSnapshot = { ...sample, metadata: null };
    const payload = encodeStateSnapshot(withoutMetadata);
    // Version 1 is the same body without the trailing metadata flag byte.
    const body = payload.subarray(16, payload.length - 1);
    const header = Buffer.from(payload.subarray(0, 16));
    header.writeUInt16LE(1, 4);
    header.writeUInt32LE(crc32c(body), 8);
    header.writeUInt32LE(body.length, 12);
    assert.deepEqual(decodeStateSnapshot(Buffer.concat([header, body])), withoutMetadata);
  });

  const damaged: Array<{ rule: string; problem: StateSnapshotProblem; damage: (payload: Buffer) => Uint8Array }> = [
    { rule: 'another magic', problem: 'bad_magic', damage: (p) => Buffer.concat([Buffer.from('XBSS'), p.subarray(4)]) },
    { rule: 'shorter than a header', problem: 'bad_magic', damage: (p) => p.subarray(0, 10) },
    {
      rule: 'another version',
      problem: 'bad_version',
      damage: (p) => {
        const copy = Buffer.from(p);
        copy.writeUInt16LE(stateSnapshotVersion + 1, 4);
        return copy;
      },
    },
    {
      rule: 'a flipped body bit',
      problem: 'bad_checksum',
      damage: (p) => {
        const copy = Buffer.from(p);
        copy[40]! ^= 0x10;
        return copy;
      },
    },
    { rule: 'cut short', problem: 'bad_format', damage: (p) => p.subarray(0, p.length - 3) },
    { rule: 'bytes appended', problem: 'bad_format', damage: (p) => Buffer.concat([p, Buffer.alloc(2)]) },
  ];
  for (const { rule, problem, damage } of damaged) {
    test(`a payload with ${rule} is refused as ${problem}`, () => {
      assert.equal(
        problemOf(() => decodeStateSnapshot(damage(encodeStateSnapshot(sample)))),
        problem,
      );
    });
  }

  test('a payload of another offset than its file says is refused as wrong_end_offset', () => {
    assert.equal(
      problemOf(() => decodeStateSnapshot(encodeStateSnapshot(sample), 121)),
      'wrong_end_offset',
    );
  });

  // Well-formed bytes with a sound checksum, but content the state cannot hold: the decoder checks what the state asserts.
  const unsound: Array<{ rule: string; change: (s: StateSnapshot) => StateSnapshot }> = [
    { rule: 'a topic name that is not valid', change: (s) => ({ ...s, topics: [{ name: 'no spaces', queues: 1, createdMs: 1 }] }) },
    { rule: 'a topic twice', change: (s) => ({ ...s, topics: [s.topics[0]!, s.topics[0]!] }) },
    { rule: 'a topic of 0 queues', change: (s) => ({ ...s, topics: [{ name: 'orders', queues: 0, createdMs: 1 }], queueHeads: [] }) },
    { rule: 'a head of a topic it does not hold', change: (s) => ({ ...s, queueHeads: [{ topic: 'other', queue: 0, endOffset: 1 }] }) },
    { rule: 'a head of a queue the topic does not have', change: (s) => ({ ...s, queueHeads: [{ topic: 'orders', queue: 3, endOffset: 1 }] }) },
    { rule: 'a negative offset', change: (s) => ({ ...s, consumerOffsets: [{ consumerGroup: 'g', topic: 'orders', queue: 0, offset: -1 }] }) },
    {
      rule: 'a consumer group name that is not valid',
      change: (s) => ({ ...s, consumerOffsets: [{ consumerGroup: '', topic: 'orders', queue: 0, offset: 1 }] }),
    },
    { rule: 'producer id 0 (not idempotent)', change: (s) => ({ ...s, producers: [{ ...s.producers[1]!, producerId: 0 }] }) },
    {
      rule: 'a producer batch at or past the snapshot end',
      change: (s) => ({ ...s, endOffset: 110, producers: [s.producers[0]!] }),
    },
    {
      rule: 'producer batches out of log order',
      change: (s) => {
        const p = s.producers[0]!;
        return { ...s, producers: [{ ...p, state: { ...p.state, batches: [...p.state.batches].reverse() } }] };
      },
    },
    {
      rule: 'more producer batches than the table keeps',
      change: (s) => {
        const batches = Array.from({ length: 9 }, (_, i) => ({ sequence: i, count: 1, queueOffset: i, logOffset: i }));
        return { ...s, producers: [{ ...s.producers[0]!, state: { ...s.producers[0]!.state, batches, forgotten: null, runLogOffset: 0 } }] };
      },
    },
  ];
  for (const { rule, change } of unsound) {
    test(`${rule} is refused as bad_format`, () => {
      assert.equal(
        problemOf(() => decodeStateSnapshot(encodeStateSnapshot(change(sample)))),
        'bad_format',
      );
    });
  }
});

describe('state-snapshot: capture → restore in a fresh store gives the same state', () => {
  test('(property) for random command logs and any applied offset: topics, consumer offsets, queue ends and producers agree, the store holds them with applied offset S, and a capture of the restored state is the same snapshot', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(leaderStep, { minLength: 1, maxLength: 40 }), fc.nat(), async (steps, cut) => {
        await withDir(async (dir) => {
          const log = leaderLogOf(steps);
          const live = openState(join(dir, 'live'));
          for (const entry of log.entries) live.state.onAppend(entry); // some entries above S are appended, not applied
          commitRange(live.state, log.entries, 0, log.entries[cut % log.entries.length]!.offset + 1);
          const snapshot = live.state.captureSnapshot();
          const fresh = openState(join(dir, 'fresh'));
          fresh.state.restoreSnapshot(snapshot.endOffset, snapshot.payload);
          assert.equal(fresh.state.appliedOffset(), snapshot.endOffset, 'stored with applied offset S');
          fresh.state.indexFromSnapshot(snapshot); // an install: the log is empty from S
          assertSameState(fresh.state, live.state, snapshot.endOffset);
          assert.deepEqual(decoded(fresh.state.captureSnapshot()), decoded(snapshot), 'the restored state captures the same snapshot');
          await fresh.state.close();
          const reopened = StateStore.open(join(dir, 'fresh', 'state'), quiet);
          const stored = reopened.load();
          assert.equal(stored.appliedOffset, snapshot.endOffset);
          assert.deepEqual(
            stored.topics.map((t) => t.name).sort(),
            live.state
              .topicList()
              .map((t) => t.name)
              .sort(),
          );
          await reopened.close();
          await live.state.close();
        });
      }),
      { numRuns: 60 },
    );
  });

  test('restoring replaces what the store held (no topic or offset of the former state survives) and drops the writes queued before it', async () => {
    await withDir(async (dir) => {
      const before = new LeaderLog().leaderChange().create('old', 1).commitOffset('g', 'old', 0, 0);
      const { state, store } = openState(dir);
      startState(state, before.entries, null); // its writes are queued, not settled
      const source = openState(join(dir, 'source'));
      const after = new LeaderLog().leaderChange().create('new', 2).messages('new', 1, 3);
      startState(source.state, after.entries, null);
      const snapshot = source.state.captureSnapshot();
      state.restoreSnapshot(snapshot.endOffset, snapshot.payload);
      await store.settled();
      assert.deepEqual(
        state.topicList().map((t) => t.name),
        ['new'],
      );
      assert.deepEqual([...state.consumerOffsetEntries()], []);
      await state.close();
      const reopened = StateStore.open(join(dir, 'state'), quiet);
      const stored = reopened.load();
      assert.deepEqual(
        stored.topics.map((t) => t.name),
        ['new'],
      );
      assert.deepEqual(stored.consumerOffsets, []);
      assert.equal(stored.appliedOffset, snapshot.endOffset);
      await reopened.close();
      await source.state.close();
    });
  });

  test('a payload that is not a snapshot at the offset given changes nothing (typed error, store and memory as they were)', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('keep', 1).messages('keep', 0, 2);
      const { state, store } = openState(dir);
      startState(state, log.entries, null);
      await store.settled();
      const good = state.captureSnapshot();
      const appliedBefore = state.appliedOffset();
      assert.throws(() => state.restoreSnapshot(good.endOffset + 1, good.payload), StateSnapshotError);
      assert.throws(() => state.restoreSnapshot(good.endOffset, good.payload.subarray(1)), StateSnapshotError);
      assert.deepEqual(
        state.topicList().map((t) => t.name),
        ['keep'],
      );
      assert.equal(state.index.endOffset(queueKey('keep', 0)), 2, 'the index is untouched');
      assert.equal(state.appliedOffset(), appliedBefore);
      await state.close();
    });
  });
});

/** `restored` (from a snapshot at S, with an empty log) agrees with `live` as of S. */
function assertSameState(restored: BrokerState, live: BrokerState, endOffset: number): void {
  assert.deepEqual(sorted(restored.topicList()), sorted(live.topicList()));
  assert.deepEqual(sorted([...restored.consumerOffsetEntries()]), sorted([...live.consumerOffsetEntries()]));
  for (const topic of live.topicList()) {
    for (let queue = 0; queue < topic.queues; queue++) {
      const key = queueKey(topic.name, queue);
      const end = live.index.committedEndOffset(key, endOffset);
      assert.equal(restored.index.endOffset(key), end, `end of ${topic.name}/${queue}`);
      assert.equal(restored.index.startOffset(key), end, `${topic.name}/${queue}: no batch in the (empty) log, so it starts at its end`);
    }
    for (const producerId of [7, 8]) {
      for (let queue = 0; queue < topic.queues; queue++) {
        const key = producerKey(producerId, topic.name, queue);
        const asOfS = [...live.producers.statesBelow(endOffset)].find((e) => e.key === key);
        assert.equal(restored.producers.has(key), asOfS !== undefined, `producer ${producerId} on ${topic.name}/${queue} known as of S`);
        if (asOfS) assert.deepEqual([...restored.producers.statesBelow(endOffset)].find((e) => e.key === key)!.state, asOfS.state);
      }
    }
  }
}

// ------------------------------------------------------------------ the start-up mechanism with retention

/** Entries from `startOffset` on (retention removed the rest). */
function retainedFrom(entries: readonly Entry[], startOffset: number): Entry[] {
  return entries.filter((e) => e.offset >= startOffset);
}

/** `restarted` agrees with `live` (which never stopped) on everything a consumer or producer sees. */
function assertAgrees(restarted: BrokerState, live: BrokerState, label: string): void {
  assert.deepEqual(sorted(restarted.topicList()), sorted(live.topicList()), `${label}: topics`);
  assert.deepEqual(sorted([...restarted.consumerOffsetEntries()]), sorted([...live.consumerOffsetEntries()]), `${label}: consumer offsets`);
  for (const topic of live.topicList()) {
    for (let queue = 0; queue < topic.queues; queue++) {
      const key = queueKey(topic.name, queue);
      const where = `${label}: ${topic.name}/${queue}`;
      assert.equal(restarted.index.endOffset(key), live.index.endOffset(key), `${where} end (the next queue offset a leader gives)`);
      assert.equal(restarted.index.startOffset(key), live.index.startOffset(key), `${where} start`);
      assert.deepEqual(indexedBatches(restarted, topic.name, queue), indexedBatches(live, topic.name, queue), `${where} batches`);
      for (const producerId of [7, 8]) {
        const key = producerKey(producerId, topic.name, queue);
        assert.equal(restarted.producers.nextSequence(key), live.producers.nextSequence(key), `${where} producer ${producerId}`);
      }
    }
  }
}

describe('state-snapshot: a restart takes from the snapshot what retention removed from the log', () => {
  test('(property) random logs, a snapshot at any applied offset S, retention at any entry at or below S: a restart with its store, and one from an empty store (restore, then replay), agree with the state that never stopped', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(leaderStep, { minLength: 1, maxLength: 40 }), fc.nat(), fc.nat(), async (steps, snapshotAt, retainAt) => {
        await withDir(async (dir) => {
          const log = leaderLogOf(steps);
          const entries = log.entries;
          const live = openState(join(dir, 'live'));
          for (const entry of entries) live.state.onAppend(entry);
          commitRange(live.state, entries, 0, entries[snapshotAt % entries.length]!.offset + 1);
          const snapshot = live.state.captureSnapshot();
          commitRange(live.state, entries, live.state.captureSnapshot().endOffset, Number.MAX_SAFE_INTEGER);
          const candidates = entries.filter((e) => e.offset + e.count <= snapshot.endOffset).map((e) => e.offset + e.count);
          const logStart = [0, ...candidates][retainAt % (candidates.length + 1)]!;
          live.state.onLogStartMoved(logStart);
          const retained = retainedFrom(entries, logStart);
          await live.state.close();
          const withStore = openState(join(dir, 'live')); // its store is past S: no restore
          startState(withStore.state, retained, snapshot);
          assertAgrees(withStore.state, live.state, `restarted with its store, S ${snapshot.endOffset}, start ${logStart}`);
          const empty = openState(join(dir, 'empty')); // a new disk: restore, then replay
          startState(empty.state, retained, snapshot);
          assertAgrees(empty.state, live.state, `restored, S ${snapshot.endOffset}, start ${logStart}`);
          await withStore.state.close();
          await empty.state.close();
        });
      }),
      { numRuns: 80 },
    );
  });

  test('a producer whose batches all aged out is known after a restart: its next batch is new, its retry a duplicate, a skip a gap', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('keep', 1).messages('keep', 0, 2, 7).messages('keep', 0, 1, 7);
      log.create('other', 1).messages('other', 0, 1);
      const live = openState(dir);
      startState(live.state, log.entries, null);
      const snapshot = live.state.captureSnapshot();
      const logStart = snapshot.endOffset; // everything before S aged out
      await live.state.close();
      const restarted = openState(dir);
      startState(restarted.state, retainedFrom(log.entries, logStart), snapshot);
      const key = producerKey(7, 'keep', 0);
      assert.equal(restarted.state.producers.nextSequence(key), 3);
      assert.equal(restarted.state.producers.check(key, 3, 1).kind, 'new');
      assert.equal(restarted.state.producers.check(key, 2, 1).kind, 'duplicate');
      assert.equal(restarted.state.producers.check(key, 4, 1).kind, 'gap');
      await restarted.state.close();
    });
  });

  test('no snapshot: indexFromSnapshot(null) leaves the index as the log built it', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('keep', 1).messages('keep', 0, 2);
      const { state } = openState(dir);
      startState(state, log.entries, null);
      assert.equal(state.index.endOffset(queueKey('keep', 0)), 2);
      await state.close();
    });
  });
});

describe('state-snapshot: heads go only to the incarnation the snapshot saw', () => {
  /** Topic 'a' (createdMs 2) with 3 messages; snapshot at the end; then `after` writes more; the log starts at S. */
  async function restartAfter(after: (log: LeaderLog) => void, check: (state: BrokerState, log: LeaderLog) => void): Promise<void> {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('keep', 1).create('a', 1).messages('a', 0, 3);
      const live = openState(dir);
      startState(live.state, log.entries, null);
      const snapshot = live.state.captureSnapshot();
      const logStart = snapshot.endOffset;
      after(log);
      for (const entry of retainedFrom(log.entries, logStart)) live.state.onAppend(entry);
      commitRange(live.state, log.entries, logStart, Number.MAX_SAFE_INTEGER);
      live.state.onLogStartMoved(logStart);
      await live.state.close();
      const restarted = openState(dir);
      startState(restarted.state, retainedFrom(log.entries, logStart), snapshot);
      check(restarted.state, log);
      await restarted.state.close();
      const installed = openState(join(dir, 'installed'));
      startState(installed.state, retainedFrom(log.entries, logStart), snapshot);
      check(installed.state, log);
      await installed.state.close();
    });
  }

  test('the same incarnation: an emptied queue numbers on from its old end', async () => {
    await restartAfter(
      () => {},
      (state) => {
        assert.equal(state.index.endOffset(queueKey('a', 0)), 3);
        assert.equal(state.index.startOffset(queueKey('a', 0)), 3);
      },
    );
  });

  test('deleted after the snapshot: no head (the topic is gone)', async () => {
    await restartAfter(
      (log) => log.delete('a').applyDelete('a'),
      (state) => {
        assert.equal(state.topic('a'), undefined);
        assert.equal(state.index.endOffset(queueKey('a', 0)), 0);
        assert.equal(state.index.hasBatches(queueKey('a', 0)), false);
      },
    );
  });

  test('deleted and created again after the snapshot: the new incarnation starts at 0, with or without a message yet', async () => {
    for (const produce of [false, true]) {
      await restartAfter(
        (log) => {
          log.delete('a').create('a', 1);
          if (produce) log.messages('a', 0, 2);
        },
        (state, log) => {
          assert.equal(state.topic('a')?.createdMs, log.topics.get('a')!.createdMs);
          assert.equal(state.index.startOffset(queueKey('a', 0)), 0, `produced ${produce}`);
          assert.equal(state.index.endOffset(queueKey('a', 0)), produce ? 2 : 0, `produced ${produce}`);
        },
      );
    }
  });

  test('created again but not applied yet when the log is indexed (the create is above the applied offset): no head for the old incarnation', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('a', 1).messages('a', 0, 3);
      const live = openState(dir);
      startState(live.state, log.entries, null);
      const snapshot = live.state.captureSnapshot();
      log.delete('a').create('a', 1).messages('a', 0, 1);
      const restarted = openState(join(dir, 'installed'));
      restarted.state.restoreSnapshot(snapshot.endOffset, snapshot.payload);
      for (const entry of retainedFrom(log.entries, snapshot.endOffset)) restarted.state.onAppend(entry); // appended, none applied
      restarted.state.indexFromSnapshot(snapshot);
      assert.deepEqual(indexedBatches(restarted.state, 'a', 0), [[0, log.entries.at(-1)!.offset, 1]], 'the new incarnation only');
      commitRange(restarted.state, log.entries, snapshot.endOffset, Number.MAX_SAFE_INTEGER);
      assert.deepEqual(indexedBatches(restarted.state, 'a', 0), [[0, log.entries.at(-1)!.offset, 1]]);
      await restarted.state.close();
      await live.state.close();
    });
  });

  test('a queue that still holds batches must end exactly at the snapshot head: a log that disagrees is a bug (InvariantError)', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('a', 1).messages('a', 0, 3);
      const { state } = openState(dir);
      startState(state, log.entries, null);
      const snapshot = state.captureSnapshot();
      const other = new LeaderLog().leaderChange().create('a', 1).messages('a', 0, 2); // another log numbered otherwise
      const wrong = openState(join(dir, 'wrong'));
      wrong.state.restoreSnapshot(snapshot.endOffset, snapshot.payload);
      for (const entry of other.entries) wrong.state.onAppend(entry);
      assert.throws(() => wrong.state.indexFromSnapshot(snapshot), { name: 'InvariantError' });
      await wrong.state.close();
      await state.close();
    });
  });
});
