// The broker's own store: the topics and consumer offsets that committed commands left, and the
// group-log offset they were applied up to, in one LMDB environment (`state/` in the broker's
// data directory). Every change is written in one transaction together with the applied offset
// it reaches, so whatever a crash keeps, the stored applied offset describes exactly the stored
// state; a restart replays the log from there (etcd keeps its applied index in its backend the
// same way). The queue index and the producer table are not stored: every start rebuilds them
// from the log and the latest snapshot. Installing a snapshot replaces everything stored in one
// synchronous transaction (replaceAll); writes queued before it belong to the state it replaced
// and are dropped.
//
// Writes are asynchronous: lmdb-js runs them off the event loop and commits them in the order
// they were made. overlappingSync is off, so a write that resolved is on disk, and
// `durableAppliedOffset` counts only those (the log is kept from there: see Replica retention).
import { mkdirSync } from 'node:fs';
import { open, type Database, type RootDatabase } from 'lmdb';
import { assert } from '../assert.js';
import type { Logger } from '../replica/logger.js';
import { checkMetadata, type ClusterMetadata } from './metadata.js';

export interface StoredTopic {
  name: string;
  queues: number;
  createdMs: number;
}

export interface StoredConsumerOffset {
  key: string;
  offset: number;
}

/** The whole stored state, as read when the broker starts. */
export interface StoredState {
  topics: StoredTopic[];
  consumerOffsets: StoredConsumerOffset[];
  appliedOffset: number;
  /** The cluster metadata the state applied (metadata group), or null when none. */
  metadata?: ClusterMetadata | null;
}

/**
 * Where data directories from before this store kept the broker's state (the replica's metadata;
 * Replica satisfies this). Read once, on the first open of this store, then forgotten there.
 */
export interface LegacyStateSource {
  legacyMachineState(): StoredState | null;
  forgetLegacyMachineState(): void;
}

/** The store's directory in a broker's data directory. */
export const stateDirName = 'state';

const appliedOffsetKey = 'state.appliedOffset';
/** The metadata group's applied cluster metadata (JSON), written with the applied offset it reaches. */
const metadataKey = 'state.metadata';
/** Another group's copy of the cluster metadata (metadata-sync.ts): a cache, outside the applied state. */
const metadataCacheKey = 'cache.metadata';

export class StateStore {
  /** Applied offset of the newest transaction known to be on disk. */
  private durableApplied: number;
  /** Applied offset of the newest transaction queued: the next one must find it stored. */
  private queuedApplied: number;
  private lastWrite: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;
  private closed = false;
  /** Counts replaceAll calls: a write queued under an older one is dropped. */
  private generation = 0;

  private constructor(
    private readonly env: RootDatabase,
    private readonly topics: Database<StoredTopic, string>,
    private readonly consumerOffsets: Database<number, string>,
    private readonly logger: Logger,
  ) {
    const applied = env.get(appliedOffsetKey) as number | undefined;
    assert(applied !== undefined && Number.isSafeInteger(applied) && applied >= 0, `state store: applied offset ${String(applied)} is not valid`);
    this.durableApplied = applied;
    this.queuedApplied = applied;
  }

  /**
   * Opens the store in `dir`. On its first open it starts at applied offset 0, or with what
   * `legacy` holds (a data directory written before this store existed), copied once.
   */
  static open(dir: string, logger: Logger, legacy: LegacyStateSource | null = null): StateStore {
    mkdirSync(dir, { recursive: true });
    const env = open({ path: dir, overlappingSync: false, maxDbs: 4 }) as RootDatabase;
    try {
      const topics = env.openDB<StoredTopic, string>({ name: 'topics' });
      const consumerOffsets = env.openDB<number, string>({ name: 'consumer-offsets' });
      if (env.get(appliedOffsetKey) === undefined) initialize(env, topics, consumerOffsets, logger, legacy?.legacyMachineState() ?? null);
      // Once it is stored here (also when a crash came between the copy and this).
      legacy?.forgetLegacyMachineState();
      return new StateStore(env, topics, consumerOffsets, logger);
    } catch (error) {
      void env.close().catch(() => undefined);
      throw error;
    }
  }

  load(): StoredState {
    return {
      topics: [...this.topics.getRange()].map(({ value }) => value),
      consumerOffsets: [...this.consumerOffsets.getRange()].map(({ key, value }) => ({ key, offset: value })),
      appliedOffset: this.durableApplied,
      metadata: readMetadata(this.env.get(metadataKey)),
    };
  }

  putMetadata(metadata: ClusterMetadata, appliedOffset: number): void {
    this.write(appliedOffset, () => this.env.putSync(metadataKey, JSON.stringify(metadata)));
  }

  /** The copy of the cluster metadata kept by a broker outside the metadata group. */
  metadataCache(): ClusterMetadata | null {
    return readMetadata(this.env.get(metadataCacheKey));
  }

  saveMetadataCache(metadata: ClusterMetadata): void {
    if (this.closed) return;
    void this.env.put(metadataCacheKey, JSON.stringify(metadata));
  }

  /** Every committed entry below this is applied and its effect is on disk. */
  get durableAppliedOffset(): number {
    return this.durableApplied;
  }

  putTopic(topic: StoredTopic, appliedOffset: number): void {
    this.write(appliedOffset, () => this.topics.putSync(topic.name, topic));
  }

  /** The topic and the consumer offsets on it (`offsetKeys`) go. */
  deleteTopic(name: string, offsetKeys: readonly string[], appliedOffset: number): void {
    this.write(appliedOffset, () => {
      this.topics.removeSync(name);
      for (const key of offsetKeys) this.consumerOffsets.removeSync(key);
    });
  }

  putConsumerOffset(key: string, offset: number, appliedOffset: number): void {
    this.write(appliedOffset, () => this.consumerOffsets.putSync(key, offset));
  }

  /**
   * Replaces everything stored with `state`, applied up to `appliedOffset`, in one synchronous
   * transaction (a snapshot's install): on return it is on disk. Writes queued before it are
   * dropped, whether they ran already or not (this overwrites what they wrote).
   */
  replaceAll(
    state: { topics: readonly StoredTopic[]; consumerOffsets: readonly StoredConsumerOffset[]; metadata: ClusterMetadata | null },
    appliedOffset: number,
  ): void {
    assert(!this.closed, 'state store: replaceAll after close');
    assert(Number.isSafeInteger(appliedOffset) && appliedOffset >= 0, `state store: applied offset ${appliedOffset} is not valid`);
    this.generation++;
    this.env.transactionSync(() => {
      for (const name of [...this.topics.getKeys()]) this.topics.removeSync(name);
      for (const key of [...this.consumerOffsets.getKeys()]) this.consumerOffsets.removeSync(key);
      for (const topic of state.topics) this.topics.putSync(topic.name, { name: topic.name, queues: topic.queues, createdMs: topic.createdMs });
      for (const { key, offset } of state.consumerOffsets) this.consumerOffsets.putSync(key, offset);
      if (state.metadata === null) this.env.removeSync(metadataKey);
      else this.env.putSync(metadataKey, JSON.stringify(state.metadata));
      this.env.putSync(appliedOffsetKey, appliedOffset);
    });
    // What is stored is whole again, whatever failed before.
    this.failure = null;
    this.durableApplied = appliedOffset;
    this.queuedApplied = appliedOffset;
  }

  /** Entries that change nothing stored were applied up to `appliedOffset`. */
  recordApplied(appliedOffset: number): void {
    if (appliedOffset !== this.queuedApplied) this.write(appliedOffset, null);
  }

  /** Resolves when every write made so far is settled (tests; close). */
  settled(): Promise<void> {
    return this.lastWrite.then(() => undefined);
  }

  /** Waits for the writes made so far; later ones are dropped (they are replayed after a restart). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.settled();
    await this.env.close();
  }

  private write(appliedOffset: number, change: (() => void) | null): void {
    // After a failed write nothing more is stored, so what is stored stays consistent.
    if (this.closed || this.failure) return;
    assert(appliedOffset >= this.queuedApplied, `state store: applied offset ${appliedOffset} goes back from ${this.queuedApplied}`);
    const follows = this.queuedApplied;
    const generation = this.generation;
    this.queuedApplied = appliedOffset;
    // A child transaction: a change that throws is rolled back with its applied offset.
    const written = this.env.childTransaction((): boolean | 'replaced' => {
      if (this.generation !== generation) return 'replaced';
      // A write that failed left its applied offset unwritten: none after it may commit.
      if (this.env.get(appliedOffsetKey) !== follows) return false;
      change?.();
      this.env.putSync(appliedOffsetKey, appliedOffset);
      return true;
    });
    this.lastWrite = written.then(
      (stored) => {
        if (stored === 'replaced' || this.generation !== generation) return;
        if (stored) this.durableApplied = Math.max(this.durableApplied, appliedOffset);
        else this.fail(new Error(`a write before the one to applied offset ${appliedOffset} was not stored`));
      },
      (error: Error) => {
        if (this.generation === generation) this.fail(error);
      },
    );
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    // Operating error (disk): the broker goes on from memory; a restart replays from what is stored.
    this.logger.error('broker.state.write_failed', { error: error.message, durableAppliedOffset: this.durableApplied });
  }
}

/** The first open: applied offset 0, or a legacy directory's state, in one synchronous transaction. */
function initialize(
  env: RootDatabase,
  topics: Database<StoredTopic, string>,
  consumerOffsets: Database<number, string>,
  logger: Logger,
  legacy: StoredState | null,
): void {
  env.transactionSync(() => {
    for (const topic of legacy?.topics ?? []) topics.putSync(topic.name, { name: topic.name, queues: topic.queues, createdMs: topic.createdMs });
    for (const { key, offset } of legacy?.consumerOffsets ?? []) consumerOffsets.putSync(key, offset);
    env.putSync(appliedOffsetKey, legacy?.appliedOffset ?? 0);
  });
  if (legacy) {
    logger.info('broker.state.migrated', {
      topics: legacy.topics.length,
      consumerOffsets: legacy.consumerOffsets.length,
      appliedOffset: legacy.appliedOffset,
    });
  }
}

function readMetadata(stored: unknown): ClusterMetadata | null {
  if (typeof stored !== 'string') return null;
  return checkMetadata(JSON.parse(stored));
}
