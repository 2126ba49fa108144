// The broker's state and its store (src/broker/state.ts, state-store.ts), driven the way the
// replica drives a state machine: onAppend for every entry of the log, onCommit in log order from
// the applied offset. Each test names the rule it checks; the property tests run random logs of
// topic, consumer-offset and message commands against a model of the state.
// A property failure prints fast-check's seed and path; pass them in fc.assert's options to replay it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { open, type RootDatabase } from 'lmdb';
import { CommandKind, decodeEntry, encodeCommand, type Command } from '../../src/broker/commands.js';
import { offsetKey, producerKey, queueKey } from '../../src/broker/names.js';
import { encodeMessagesCommand } from '../../src/broker/produce-encoding.js';
import { BrokerState } from '../../src/broker/state.js';
import { StateStore, type LegacyStateSource, type StoredState } from '../../src/broker/state-store.js';
import { EntryType, type Entry } from '../../src/raft/types.js';
import { Logger } from '../../src/replica/logger.js';
import { MetaStore } from '../../src/replica/meta-store.js';
import { commitRange, indexedBatches, LeaderLog, leaderLogOf, leaderStep, openState as openStateIn, startState } from './state-fixtures.js';

const quiet = new Logger('b1', 'g1', () => {});

// ------------------------------------------------------------------ logs

/** A step of a generated log; topic 'keep' gets the messages and is never deleted. */
type Step =
  | { kind: 'create'; topic: string; queues: number; createdMs: number }
  | { kind: 'delete'; topic: string }
  | { kind: 'commit'; group: string; topic: string; queue: number; offset: number }
  | { kind: 'messages'; queue: number; count: number };

const churnTopic = fc.constantFrom('a', 'b');
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('create' as const), topic: churnTopic, queues: fc.integer({ min: 1, max: 3 }), createdMs: fc.nat(1000) }),
  fc.record({ kind: fc.constant('delete' as const), topic: churnTopic }),
  fc.record({
    kind: fc.constant('commit' as const),
    group: fc.constantFrom('g1', 'g2'),
    topic: fc.constantFrom('a', 'b', 'keep'),
    queue: fc.integer({ min: 0, max: 2 }),
    offset: fc.integer({ min: 0, max: 100 }),
  }),
  fc.record({ kind: fc.constant('messages' as const), queue: fc.integer({ min: 0, max: 1 }), count: fc.integer({ min: 1, max: 3 }) }),
);
const steps = fc.array(step, { minLength: 1, maxLength: 30 });

function dataEntry(offset: number, payload: Uint8Array, count = 1): Entry {
  return { epoch: 1, offset, count, type: EntryType.Data, payload };
}

/** The log of `plan`: a leader-change entry at 0, topic 'keep' (2 queues), then one entry per step. */
function logOf(plan: readonly Step[]): Entry[] {
  const log: Entry[] = [{ epoch: 1, offset: 0, count: 1, type: EntryType.LeaderChange, payload: new Uint8Array([0]) }];
  let offset = 1;
  const push = (payload: Uint8Array, count = 1): void => {
    log.push(dataEntry(offset, payload, count));
    offset += count;
  };
  push(encodeCommand({ kind: CommandKind.CreateTopic, name: 'keep', queues: 2, createdMs: 1 }));
  const queueEnd = [0, 0];
  for (const s of plan) push(...encodeStep(s, queueEnd));
  return log;
}

/** The payload of a step's entry and the offsets it spans; `queueEnd` is each queue's end so far. */
function encodeStep(s: Step, queueEnd: number[]): [Uint8Array, number] {
  switch (s.kind) {
    case 'create':
      return [encodeCommand({ kind: CommandKind.CreateTopic, name: s.topic, queues: s.queues, createdMs: s.createdMs }), 1];
    case 'delete':
      return [encodeCommand({ kind: CommandKind.DeleteTopic, name: s.topic }), 1];
    case 'commit':
      return [encodeCommand({ kind: CommandKind.CommitOffset, consumerGroup: s.group, topic: s.topic, queue: s.queue, offset: s.offset }), 1];
    case 'messages': {
      const messages = Array.from({ length: s.count }, (_, i) => ({ key: null, headers: [], body: Buffer.from(`m${i}`), timestampMs: 1 }));
      const prefix = { topic: 'keep', queue: s.queue, queueOffset: queueEnd[s.queue]!, producerId: 0, sequence: 0 };
      const { payload, count } = encodeMessagesCommand(prefix, messages, 1, { messagesMax: 10, messageBytesMax: 1024 });
      queueEnd[s.queue]! += count;
      return [payload, count];
    }
  }
}

/** Drives `state` as the replica does: every entry appended, data entries from `from` on committed. */
function replay(state: BrokerState, log: readonly Entry[], from: number): void {
  for (const entry of log) state.onAppend(entry);
  for (const entry of log) if (entry.offset >= from && entry.type === EntryType.Data) state.onCommit(entry);
}

// ------------------------------------------------------------------ state as data

interface View {
  topics: Array<[string, number, number]>;
  offsets: Array<[string, number]>;
}

function viewOf(state: BrokerState): View {
  return {
    topics: state
      .topicList()
      .map((t): [string, number, number] => [t.name, t.queues, t.createdMs])
      .sort(),
    offsets: [...state.consumerOffsetEntries()].map((o): [string, number] => [offsetKey(o.consumerGroup, o.topic, o.queue), o.offset]).sort(),
  };
}

function viewOfStored(stored: StoredState): View {
  return {
    topics: stored.topics.map((t): [string, number, number] => [t.name, t.queues, t.createdMs]).sort(),
    offsets: stored.consumerOffsets.map((o): [string, number] => [o.key, o.offset]).sort(),
  };
}

/** The model: what the committed data entries below `endOffset` leave. */
function modelView(log: readonly Entry[], endOffset = Number.MAX_SAFE_INTEGER): View {
  const topics = new Map<string, [string, number, number]>();
  const offsets = new Map<string, number>();
  for (const entry of log) {
    if (entry.offset + entry.count > endOffset) break;
    const command = decodeEntry(entry);
    if (command?.kind === CommandKind.CreateTopic && !topics.has(command.name)) topics.set(command.name, [command.name, command.queues, command.createdMs]);
    if (command?.kind === CommandKind.CommitOffset) offsets.set(offsetKey(command.consumerGroup, command.topic, command.queue), command.offset);
    if (command?.kind === CommandKind.DeleteTopic && topics.delete(command.name)) {
      for (const key of [...offsets.keys()]) if (key.split('\u0000')[1] === command.name) offsets.delete(key);
    }
  }
  return { topics: [...topics.values()].sort(), offsets: [...offsets.entries()].sort() };
}

function endOf(log: readonly Entry[]): number {
  const last = log[log.length - 1]!;
  return last.offset + last.count;
}

// ------------------------------------------------------------------ fixtures

async function withDir(work: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-state-'));
  try {
    await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function openState(dir: string, legacy: LegacyStateSource | null = null): { store: StateStore; state: BrokerState; woken: string[] } {
  const store = StateStore.open(join(dir, 'state'), quiet, legacy);
  const woken: string[] = [];
  return { store, state: new BrokerState(store, quiet, { messagesCommitted: (key) => woken.push(key) }), woken };
}

const runs = { numRuns: 25 };

// ------------------------------------------------------------------ tests

describe('state: entries', () => {
  test('decodeEntry: a data entry is its command; leader change and membership entries are nothing for the broker', () => {
    const command: Command = { kind: CommandKind.DeleteTopic, name: 'orders' };
    assert.deepEqual(decodeEntry(dataEntry(5, encodeCommand(command))), command);
    for (const type of [EntryType.LeaderChange, EntryType.Membership]) {
      assert.equal(decodeEntry({ epoch: 1, offset: 5, count: 1, type, payload: new Uint8Array([CommandKind.DeleteTopic]) }), null);
    }
  });

  test('a committed Messages entry wakes its queue; the index and the producer table see it on append', async () => {
    await withDir(async (dir) => {
      const { state, woken } = openState(dir);
      const log = logOf([{ kind: 'messages', queue: 1, count: 3 }]);
      for (const entry of log) state.onAppend(entry);
      assert.equal(state.index.endOffset(queueKey('keep', 1)), 3, 'indexed on append, before the commit');
      assert.deepEqual(woken, []);
      for (const entry of log) if (entry.type === EntryType.Data) state.onCommit(entry);
      assert.deepEqual(woken, [queueKey('keep', 1)]);
      await state.close();
    });
  });

  test('entries are applied in log order: one below the applied offset is a bug (InvariantError)', async () => {
    await withDir(async (dir) => {
      const { state } = openState(dir);
      const log = logOf([{ kind: 'create', topic: 'a', queues: 1, createdMs: 1 }]);
      replay(state, log, 0);
      assert.throws(() => state.onCommit(log[1]!), { name: 'InvariantError' });
      await state.close();
    });
  });
});

describe('state: apply', () => {
  test('applying a command twice in a row leaves the state applying it once does (and the model)', async () => {
    await fc.assert(
      fc.asyncProperty(steps, async (plan) => {
        const twice = plan.flatMap((s): Step[] => (s.kind === 'messages' ? [s] : [s, s]));
        await withDir(async (dir) => {
          const once = openState(join(dir, 'once'));
          const doubled = openState(join(dir, 'twice'));
          const log = logOf(plan);
          replay(once.state, log, 0);
          replay(doubled.state, logOf(twice), 0);
          assert.deepEqual(viewOf(doubled.state), viewOf(once.state));
          assert.deepEqual(viewOf(once.state), modelView(log));
          await once.state.close();
          await doubled.state.close();
        });
      }),
      runs,
    );
  });

  test('restart: reopened from its store and replayed from the stored applied offset, the state is the one that never stopped', async () => {
    await fc.assert(
      fc.asyncProperty(steps, fc.nat(), async (plan, cut) => {
        await withDir(async (dir) => {
          const log = logOf(plan);
          const stopAt = 2 + (cut % (log.length - 1)); // entries before it (at least one data entry) are applied before the stop
          const stopOffset = log[stopAt - 1]!.offset + log[stopAt - 1]!.count;
          const whole = openState(join(dir, 'whole'));
          replay(whole.state, log, 0);
          const first = openState(join(dir, 'restarted'));
          replay(first.state, log.slice(0, stopAt), 0);
          await first.state.close();
          const second = openState(join(dir, 'restarted'));
          assert.equal(second.state.appliedOffset(), stopOffset, 'close stores the applied offset');
          replay(second.state, log, second.state.appliedOffset());
          assert.deepEqual(viewOf(second.state), viewOf(whole.state));
          for (const queue of [0, 1]) assert.equal(second.state.index.endOffset(queueKey('keep', queue)), whole.state.index.endOffset(queueKey('keep', queue)));
          await whole.state.close();
          await second.state.close();
        });
      }),
      runs,
    );
  });
});

describe('state: store', () => {
  test('the stored applied offset is never ahead of the stored state: at every settled point the store holds exactly the state below it', async () => {
    await fc.assert(
      fc.asyncProperty(steps, fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }), async (plan, settleAfter) => {
        await withDir(async (dir) => {
          const { store, state } = openState(dir);
          const log = logOf(plan);
          for (const entry of log) state.onAppend(entry);
          let durableBefore = state.appliedOffset();
          for (const [i, entry] of log.entries()) {
            if (entry.type !== EntryType.Data) continue;
            state.onCommit(entry);
            assert.equal(state.appliedOffset(), durableBefore, 'the durable applied offset waits for the store');
            if (!settleAfter[i % settleAfter.length]) continue;
            await store.settled();
            const stored = store.load();
            assert.ok(stored.appliedOffset <= entry.offset + entry.count);
            assert.deepEqual(viewOfStored(stored), modelView(log, stored.appliedOffset));
            durableBefore = stored.appliedOffset;
          }
          await state.close();
          const reopened = StateStore.open(join(dir, 'state'), quiet);
          const stored = reopened.load();
          assert.equal(stored.appliedOffset, endOf(log));
          assert.deepEqual(viewOfStored(stored), modelView(log));
          await reopened.close();
        });
      }),
      runs,
    );
  });

  test('writes after close are dropped with their applied offset: the store stays at its last state', async () => {
    await withDir(async (dir) => {
      const { state } = openState(dir);
      const log = logOf([
        { kind: 'create', topic: 'a', queues: 1, createdMs: 1 },
        { kind: 'create', topic: 'b', queues: 1, createdMs: 2 },
      ]);
      replay(state, log.slice(0, 3), 0);
      await state.close();
      state.onAppend(log[3]!);
      state.onCommit(log[3]!);
      const reopened = openState(dir);
      assert.equal(reopened.state.appliedOffset(), log[3]!.offset);
      assert.deepEqual(viewOf(reopened.state), modelView(log, log[3]!.offset));
      await reopened.state.close();
    });
  });
});

describe('state: data directories of the former layout', () => {
  const legacyState: StoredState = {
    topics: [{ name: 'orders', queues: 2, createdMs: 7 }],
    consumerOffsets: [{ key: offsetKey('billing', 'orders', 1), offset: 12 }],
    appliedOffset: 40,
  };

  test('the first open takes over the former state once, with its applied offset, then has it forgotten', async () => {
    await withDir(async (dir) => {
      const calls: string[] = [];
      const legacy: LegacyStateSource = {
        legacyMachineState: () => {
          calls.push('read');
          return legacyState;
        },
        forgetLegacyMachineState: () => calls.push('forget'),
      };
      const first = openState(dir, legacy);
      assert.deepEqual(calls, ['read', 'forget']);
      assert.equal(first.state.appliedOffset(), 40);
      assert.equal(first.state.consumerOffset('billing', 'orders', 1), 12);
      await first.state.close();
      const second = openState(dir, legacy);
      assert.deepEqual(calls, ['read', 'forget', 'forget'], 'read once; forgotten again in case a crash came before');
      assert.deepEqual(second.state.topic('orders'), legacyState.topics[0]);
      await second.state.close();
    });
  });

  test("the replica's metadata of the former layout gives its topics, offsets and applied offset, and none once forgotten", async () => {
    await withDir(async (dir) => {
      const env = open({ path: join(dir, 'meta'), overlappingSync: false, maxDbs: 8 }) as RootDatabase;
      env.openDB({ name: 'topics' }).putSync('orders', legacyState.topics[0]);
      env.openDB<number, string>({ name: 'consumer-offsets' }).putSync(legacyState.consumerOffsets[0]!.key, 12);
      env.putSync('apply.offset', 40);
      await env.close();
      const meta = MetaStore.open(join(dir, 'meta'));
      assert.deepEqual(meta.legacyMachineState(), legacyState);
      const { state } = openState(dir, meta);
      assert.deepEqual(viewOf(state), viewOfStored(legacyState));
      assert.equal(meta.legacyMachineState(), null);
      assert.equal(meta.appliedOffset(), 40, 'the commit mark stays');
      await state.close();
      await meta.close();
    });
  });
});

// ------------------------------------------------------------------ a topic deleted and created again

/** The state holds exactly the leader's live incarnations: topics, each queue's batches, idempotent producers' next sequences. */
function assertLikeLeader(state: BrokerState, leader: LeaderLog, label: string): void {
  for (const name of ['a', 'b', 'keep']) {
    const live = leader.topics.get(name);
    assert.equal(state.topic(name)?.createdMs, live?.createdMs, `${label}: topic ${name}`);
    for (const queue of [0, 1]) {
      const expected = leader.liveBatches(name, queue).map((b): [number, number, number] => [b.queueOffset, b.logOffset, b.count]);
      assert.deepEqual(indexedBatches(state, name, queue), expected, `${label}: batches of ${name}/${queue}`);
      assert.equal(state.index.endOffset(queueKey(name, queue)), leader.queueEnds.get(queueKey(name, queue)) ?? 0, `${label}: end of ${name}/${queue}`);
      for (const producerId of [7, 8]) {
        const batches = leader.liveBatches(name, queue).filter((b) => b.producerId === producerId);
        const last = batches[batches.length - 1];
        assert.equal(
          state.producers.nextSequence(producerKey(producerId, name, queue)),
          last ? last.sequence + last.count : 0,
          `${label}: producer ${producerId} on ${name}/${queue}`,
        );
      }
    }
  }
}

/** Every pending delete applied: the leader's view once the whole log is applied. */
function settled(leader: LeaderLog): LeaderLog {
  for (const name of [...leader.topics.keys()]) leader.applyDelete(name);
  return leader;
}

describe('state: a topic deleted and created again numbers its queues from 0; the old incarnation is gone on every path', () => {
  /** Create, 3 messages, delete, [a batch the leader appended before it applied the delete], create again, 2 messages at queue offset 0. */
  function recreated(lateBatch: boolean): LeaderLog {
    const log = new LeaderLog().leaderChange().create('a', 1).messages('a', 0, 3, 7).delete('a');
    if (lateBatch) log.messages('a', 0, 1, 7);
    return log.create('a', 1).messages('a', 0, 2, 7);
  }

  test('restart after delete → re-create → produce: the replay of committed entries drops the old incarnation in log order (the reported crash: "queue offset 0 is not contiguous")', async () => {
    for (const lateBatch of [false, true]) {
      await withDir(async (dir) => {
        const leader = recreated(lateBatch);
        const first = openStateIn(dir);
        startState(first.state, leader.entries, null);
        await first.state.close();
        const second = openStateIn(dir);
        assert.equal(second.state.appliedOffset(), leader.endOffset, 'everything was applied and stored');
        startState(second.state, leader.entries, null); // replays every entry, all below the applied offset
        assertLikeLeader(second.state, settled(leader), `late batch ${lateBatch}`);
        assert.deepEqual(indexedBatches(second.state, 'a', 0)[0]?.[0], 0, 'the new incarnation starts at queue offset 0');
        await second.state.close();
      });
    }
  });

  test('a follower that appends the delete, the create and the new batch before it learns the delete committed indexes the new incarnation only; applying the delete then drops nothing', async () => {
    for (const lateBatch of [false, true]) {
      await withDir(async (dir) => {
        const leader = recreated(lateBatch);
        const { state } = openStateIn(dir);
        const deleteOffset = leader.entries.findIndex((e, i) => i > 0 && e.payload[0] === CommandKind.DeleteTopic);
        for (const entry of leader.entries.slice(0, deleteOffset)) state.onAppend(entry);
        commitRange(state, leader.entries, 0, leader.entries[deleteOffset]!.offset);
        for (const entry of leader.entries.slice(deleteOffset)) state.onAppend(entry); // one Fetch answer: delete … new batch
        assert.deepEqual(indexedBatches(state, 'a', 0), [[0, leader.entries.at(-1)!.offset, 2]], 'only the new incarnation');
        commitRange(state, leader.entries, leader.entries[deleteOffset]!.offset, leader.endOffset);
        assertLikeLeader(state, settled(leader), `late batch ${lateBatch}`);
        await state.close();
      });
    }
  });

  test('a follower that applied the delete before a batch the leader appended ahead of its own apply arrives does not index that batch', async () => {
    await withDir(async (dir) => {
      const leader = recreated(true);
      const { state } = openStateIn(dir);
      const late = leader.entries.findIndex((_, i) => i > 0 && leader.entries[i - 1]!.payload[0] === CommandKind.DeleteTopic);
      for (const entry of leader.entries.slice(0, late)) state.onAppend(entry);
      commitRange(state, leader.entries, 0, leader.entries[late]!.offset); // the delete is applied
      state.onAppend(leader.entries[late]!); // the old incarnation's late batch
      assert.deepEqual(indexedBatches(state, 'a', 0), [], 'not indexed: its topic is gone');
      for (const entry of leader.entries.slice(late + 1)) state.onAppend(entry);
      commitRange(state, leader.entries, leader.entries[late]!.offset, leader.endOffset);
      assertLikeLeader(state, settled(leader), 'late batch after the apply');
      await state.close();
    });
  });

  test('a retried create (a no-op: the first one wins) drops nothing, also when batches of the topic come between, live and after a restart', async () => {
    await withDir(async (dir) => {
      const leader = new LeaderLog().leaderChange().create('a', 1).messages('a', 0, 2).create('a', 1).messages('a', 0, 1);
      const live = openStateIn(join(dir, 'live'));
      for (const entry of leader.entries) live.state.onAppend(entry); // both creates appended before either is applied
      commitRange(live.state, leader.entries, 0, leader.endOffset);
      assertLikeLeader(live.state, leader, 'live');
      await live.state.close();
      const restarted = openStateIn(join(dir, 'live'));
      startState(restarted.state, leader.entries, null);
      assertLikeLeader(restarted.state, leader, 'restarted');
      await restarted.state.close();
    });
  });

  test('(property) with any commit lag on a follower, and after a restart at any applied offset, the state holds exactly the live incarnations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(leaderStep, { minLength: 1, maxLength: 40 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 60 }),
        fc.nat(),
        async (steps, lag, cut) => {
          await withDir(async (dir) => {
            const leader = leaderLogOf(steps);
            const entries = leader.entries;
            // A follower: appends in order, commits in order, each as the schedule says.
            const live = openStateIn(join(dir, 'live'));
            let appended = 0;
            let committed = 0;
            for (let i = 0; appended < entries.length || committed < entries.length; i++) {
              if (appended < entries.length && (committed === appended || lag[i % lag.length])) live.state.onAppend(entries[appended++]!);
              else {
                const entry = entries[committed++]!;
                if (entry.type === EntryType.Data) live.state.onCommit(entry);
              }
            }
            assertLikeLeader(live.state, settled(leaderLogOf(steps)), 'live');
            // A restart: applied up to a cut, then every entry replayed and the rest committed.
            const stopAt = entries[cut % entries.length]!.offset;
            const first = openStateIn(join(dir, 'restarted'));
            for (const entry of entries) first.state.onAppend(entry);
            commitRange(first.state, entries, 0, stopAt);
            await first.state.close();
            const second = openStateIn(join(dir, 'restarted'));
            startState(second.state, entries, null);
            assertLikeLeader(second.state, settled(leaderLogOf(steps)), `restarted at ${stopAt}`);
            await live.state.close();
            await second.state.close();
          });
        },
      ),
      { numRuns: 60 },
    );
  });
});
