// Shared by the broker state tests: a group log written the way a leader writes it (queue offsets
// stamped from its own index, which a DeleteTopic empties only when the leader applies it), a
// BrokerState on a real store in a temporary directory, and the replica's start order
// (restoreSnapshot when the store is behind the snapshot, replay, indexFromSnapshot, commit).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { CommandKind, encodeCommand } from '../../src/broker/commands.js';
import { producerKey, queueKey } from '../../src/broker/names.js';
import { encodeMessagesCommand } from '../../src/broker/produce-encoding.js';
import { BrokerState, type SnapshotPayload, type StateOptions } from '../../src/broker/state.js';
import { StateStore } from '../../src/broker/state-store.js';
import { EntryType, type Entry } from '../../src/raft/types.js';
import { Logger } from '../../src/replica/logger.js';

export const quiet = new Logger('b1', 'g1', () => {});

export async function withDir(work: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-state-'));
  try {
    await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function openState(dir: string, options: StateOptions = {}): { store: StateStore; state: BrokerState } {
  const store = StateStore.open(join(dir, 'state'), quiet);
  return { store, state: new BrokerState(store, quiet, { messagesCommitted: () => {} }, options) };
}

interface LeaderTopic {
  queues: number;
  createdMs: number;
  /** A DeleteTopic of it is in the log, not applied by the leader yet: it still takes messages. */
  deleting: boolean;
  /** Log offset of the CreateTopic that started this incarnation. */
  createdAtOffset: number;
}

/** A batch the leader appended: where and what. */
export interface WrittenBatch {
  topic: string;
  queue: number;
  queueOffset: number;
  logOffset: number;
  count: number;
  producerId: number;
  sequence: number;
}

/** Writes a group log as a leader does. */
export class LeaderLog {
  readonly entries: Entry[] = [];
  /** The leader's view: its topics and each queue's next queue offset. */
  readonly topics = new Map<string, LeaderTopic>();
  readonly queueEnds = new Map<string, number>();
  readonly batches: WrittenBatch[] = [];
  private readonly sequences = new Map<string, number>();
  private nextCreatedMs = 1;

  get endOffset(): number {
    const last = this.entries[this.entries.length - 1];
    return last ? last.offset + last.count : 0;
  }

  leaderChange(): this {
    this.entries.push({ epoch: 1, offset: this.endOffset, count: 1, type: EntryType.LeaderChange, payload: new Uint8Array([0]) });
    return this;
  }

  /** A CreateTopic; when the topic exists, a retried create (a no-op, first wins). */
  create(name: string, queues: number): this {
    const existing = this.topics.get(name);
    if (existing?.deleting) this.applyDelete(name); // a leader proposes a create only once it applied the delete
    const createdMs = this.nextCreatedMs++;
    const createdAtOffset = this.endOffset;
    this.push(encodeCommand({ kind: CommandKind.CreateTopic, name, queues, createdMs }));
    if (!this.topics.has(name)) this.topics.set(name, { queues, createdMs, deleting: false, createdAtOffset });
    return this;
  }

  /** A DeleteTopic; the leader goes on taking messages for the topic until applyDelete. */
  delete(name: string): this {
    const topic = this.topics.get(name);
    if (!topic) return this; // refused: not found
    this.push(encodeCommand({ kind: CommandKind.DeleteTopic, name }));
    topic.deleting = true;
    return this;
  }

  /** The leader applies a pending delete: the topic and its numbering go. */
  applyDelete(name: string): this {
    if (!this.topics.get(name)?.deleting) return this;
    this.topics.delete(name);
    for (const key of [...this.queueEnds.keys()]) if (key.startsWith(`${name}\u0000`)) this.queueEnds.delete(key);
    for (const key of [...this.sequences.keys()]) if (key.split('\u0000')[1] === name) this.sequences.delete(key);
    return this;
  }

  commitOffset(consumerGroup: string, topic: string, queue: number, offset: number): this {
    this.push(encodeCommand({ kind: CommandKind.CommitOffset, consumerGroup, topic, queue, offset }));
    return this;
  }

  /** A batch of `count` messages (refused, nothing written, when the leader has no such queue). */
  messages(topic: string, queue: number, count: number, producerId = 0): this {
    const info = this.topics.get(topic);
    if (!info || queue >= info.queues) return this;
    const key = queueKey(topic, queue);
    const queueOffset = this.queueEnds.get(key) ?? 0;
    const pk = producerKey(producerId, topic, queue);
    const sequence = producerId === 0 ? 0 : (this.sequences.get(pk) ?? 0);
    const messages = Array.from({ length: count }, (_, i) => ({
      key: null,
      headers: [],
      body: Buffer.from(`${topic}/${queue}/${queueOffset + i}`),
      timestampMs: 1,
    }));
    const prefix = { topic, queue, queueOffset, producerId, sequence };
    const { payload } = encodeMessagesCommand(prefix, messages, 1, { messagesMax: 100, messageBytesMax: 1024 });
    this.batches.push({ topic, queue, queueOffset, logOffset: this.endOffset, count, producerId, sequence });
    this.push(payload, count);
    this.queueEnds.set(key, queueOffset + count);
    if (producerId !== 0) this.sequences.set(pk, sequence + count);
    return this;
  }

  /** The batches of the incarnation of `topic` the leader has now, for one queue. */
  liveBatches(topic: string, queue: number): WrittenBatch[] {
    const info = this.topics.get(topic);
    if (!info) return [];
    return this.batches.filter((b) => b.topic === topic && b.queue === queue && b.logOffset > info.createdAtOffset);
  }

  private push(payload: Uint8Array, count = 1): void {
    this.entries.push({ epoch: 1, offset: this.endOffset, count, type: EntryType.Data, payload });
  }
}

/** Steps of a random leader: topic churn, messages (some idempotent), consumer offsets. */
export type LeaderStep =
  | { kind: 'create'; topic: string; queues: number }
  | { kind: 'delete'; topic: string }
  | { kind: 'applyDelete'; topic: string }
  | { kind: 'messages'; topic: string; queue: number; count: number; producerId: number }
  | { kind: 'commitOffset'; group: string; topic: string; queue: number; offset: number };

const churned = fc.constantFrom('a', 'b');
export const leaderStep: fc.Arbitrary<LeaderStep> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('create' as const), topic: churned, queues: fc.integer({ min: 1, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), topic: churned }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('applyDelete' as const), topic: churned }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('messages' as const),
      topic: fc.constantFrom('a', 'b', 'keep'),
      queue: fc.integer({ min: 0, max: 1 }),
      count: fc.integer({ min: 1, max: 3 }),
      producerId: fc.constantFrom(0, 7, 8),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('commitOffset' as const),
      group: fc.constantFrom('g1', 'g2'),
      topic: fc.constantFrom('a', 'b', 'keep'),
      queue: fc.integer({ min: 0, max: 1 }),
      offset: fc.nat(20),
    }),
  },
);

/** A leader change, topic 'keep' (2 queues, never deleted), then the steps. */
export function leaderLogOf(steps: readonly LeaderStep[]): LeaderLog {
  const log = new LeaderLog().leaderChange().create('keep', 2);
  for (const s of steps) {
    if (s.kind === 'create') log.create(s.topic, s.queues);
    else if (s.kind === 'delete') log.delete(s.topic);
    else if (s.kind === 'applyDelete') log.applyDelete(s.topic);
    else if (s.kind === 'messages') log.messages(s.topic, s.queue, s.count, s.producerId);
    else log.commitOffset(s.group, s.topic, s.queue, s.offset);
  }
  return log;
}

/**
 * The replica's start (see StateMachine): restoreSnapshot when the store is behind `snapshot`,
 * every retained entry appended, indexFromSnapshot, then the data entries from the applied offset
 * up to `commitEnd` committed.
 */
export function startState(state: BrokerState, retained: readonly Entry[], snapshot: SnapshotPayload | null, commitEnd = Number.MAX_SAFE_INTEGER): void {
  if (snapshot && state.appliedOffset() < snapshot.endOffset) state.restoreSnapshot(snapshot.endOffset, snapshot.payload);
  const from = state.appliedOffset();
  for (const entry of retained) state.onAppend(entry);
  state.indexFromSnapshot(snapshot);
  commitRange(state, retained, from, commitEnd);
}

export function commitRange(state: BrokerState, entries: readonly Entry[], from: number, end: number): void {
  for (const entry of entries) if (entry.offset >= from && entry.offset + entry.count <= end && entry.type === EntryType.Data) state.onCommit(entry);
}

/** The index's batches of a queue, as (queue offset, log offset, count). */
export function indexedBatches(state: BrokerState, topic: string, queue: number): Array<[number, number, number]> {
  return state.index.batchesFrom(queueKey(topic, queue), 0, Number.MAX_SAFE_INTEGER, 1_000_000).map((b) => [b.queueOffset, b.logOffset, b.count]);
}
