// A replica's metadata in LMDB: the Raft hard state (epoch, vote), and the high watermark and
// applied offset (how far it handed committed entries to its state machine) it last recorded:
// both are lower bounds of the committed prefix, its commit mark. The state machine keeps its
// own state with its own applied offset (the broker: src/broker/state-store.ts).
//
// overlappingSync is off so that a synchronous write returns only once it is flushed: the hard
// state must be on disk before any message that depends on it leaves (a vote granted twice in
// one epoch after a crash would break election safety). The commit mark goes through
// asynchronous, batched transactions: one behind the truth only makes a restart more careful.
//
// Data directories from before the broker's own store kept its topics and consumer offsets here,
// in named sub-databases, described by the applied offset here: legacyMachineState() reads them
// for the broker's one migration, forgetLegacyMachineState() drops them afterwards.
import { mkdirSync } from 'node:fs';
import { open, type RootDatabase, type Database } from 'lmdb';

export interface StoredHardState {
  epoch: number;
  votedFor: string | null;
  /**
   * The promise as of the last epoch/vote change (absent in data directories from before
   * promises). Every rise in between goes to the promise file (promise-file.ts), which wins
   * when it holds a valid slot.
   */
  promisedOffset?: number;
}

/** The broker's state as a data directory of the former layout kept it here (see the top). */
export interface LegacyMachineState {
  topics: Array<{ name: string; queues: number; createdMs: number }>;
  consumerOffsets: Array<{ key: string; offset: number }>;
  /** The applied offset stored with them: they hold at least every change below it. */
  appliedOffset: number;
}

/** The former layout's sub-databases ('producers' was never written). */
const legacyTopicsDb = 'topics';
const legacyDbNames = [legacyTopicsDb, 'consumer-offsets', 'producers'];

export class MetaStore {
  private constructor(private readonly env: RootDatabase) {}

  static open(dir: string): MetaStore {
    mkdirSync(dir, { recursive: true });
    return new MetaStore(open({ path: dir, overlappingSync: false, maxDbs: 8 }) as RootDatabase);
  }

  hardState(): StoredHardState {
    return (this.env.get('raft.hardState') as StoredHardState | undefined) ?? { epoch: 0, votedFor: null };
  }

  /** Durable when it returns (see the note at the top of the file). */
  saveHardState(state: StoredHardState): void {
    const stored: StoredHardState = { epoch: state.epoch, votedFor: state.votedFor };
    if (state.promisedOffset !== undefined) stored.promisedOffset = state.promisedOffset;
    this.env.putSync('raft.hardState', stored);
  }

  highWatermark(): number {
    return (this.env.get('raft.highWatermark') as number | undefined) ?? 0;
  }

  appliedOffset(): number {
    return (this.env.get('apply.offset') as number | undefined) ?? 0;
  }

  /** Records the commit mark: how far committed entries were handed to the state machine, and the high watermark. */
  recordApplied(appliedOffset: number, highWatermark: number): void {
    void this.env.put('apply.offset', appliedOffset);
    void this.env.put('raft.highWatermark', highWatermark);
  }

  /**
   * A restored data directory's commit mark (issue 14: every entry below `highWatermark` is held
   * by every replica of the restored group), durable when it returns, before any replica opens it.
   */
  seedCommitMark(appliedOffset: number, highWatermark: number): void {
    this.env.transactionSync(() => {
      this.env.putSync('apply.offset', appliedOffset);
      this.env.putSync('raft.highWatermark', highWatermark);
    });
  }

  /** The broker's state in a data directory of the former layout, or null (see the top). */
  legacyMachineState(): LegacyMachineState | null {
    const topics = this.legacyDb<{ name: string; queues: number; createdMs: number }>(legacyTopicsDb);
    if (!topics) return null;
    const offsets = this.legacyDb<number>('consumer-offsets');
    return {
      topics: [...topics.getRange()].map(({ value }) => value),
      consumerOffsets: offsets ? [...offsets.getRange()].map(({ key, value }) => ({ key, offset: value })) : [],
      appliedOffset: this.appliedOffset(),
    };
  }

  /** Drops the former layout's sub-databases (once their content is stored elsewhere). */
  forgetLegacyMachineState(): void {
    for (const name of legacyDbNames) this.legacyDb(name)?.dropSync();
  }

  /** The named sub-database, or null when there is none (not created: lmdb-js reads `create`, its types omit it). */
  private legacyDb<V>(name: string): Database<V, string> | null {
    const options = { name, create: false };
    try {
      return this.env.openDB<V, string>(options);
    } catch (error) {
      if (error instanceof Error && error.message === 'Database not found') return null;
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.env.close();
  }
}
