// A replica's metadata in LMDB: the Raft hard state (epoch, vote), the high watermark and the
// applied offset, plus the state the broker materialises from committed commands (topics and
// consumer offsets) in named sub-databases.
//
// overlappingSync is off so that a synchronous write returns only once it is flushed: the hard
// state must be on disk before any message that depends on it leaves (a vote granted twice in
// one epoch after a crash would break election safety). Applied state goes through
// asynchronous, batched transactions; it is re-derivable from the log above `appliedOffset`.
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

export class MetaStore {
  private constructor(
    private readonly env: RootDatabase,
    readonly topics: Database<StoredTopic, string>,
    readonly offsets: Database<number, string>,
    readonly producers: Database<StoredProducer, string>,
  ) {}

  static open(dir: string): MetaStore {
    mkdirSync(dir, { recursive: true });
    const env = open({ path: dir, overlappingSync: false, maxDbs: 8 }) as RootDatabase;
    return new MetaStore(
      env,
      env.openDB<StoredTopic, string>({ name: 'topics' }),
      env.openDB<number, string>({ name: 'consumer-offsets' }),
      env.openDB<StoredProducer, string>({ name: 'producers' }),
    );
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

  /**
   * Records how far the state machine has applied. The broker's own writes for those entries may
   * land earlier: applying a command twice leaves the same state (topics and offsets are set,
   * not added to), so a stored offset behind the state only costs a replay after a restart.
   */
  recordApplied(appliedOffset: number, highWatermark: number): void {
    void this.env.put('apply.offset', appliedOffset);
    void this.env.put('raft.highWatermark', highWatermark);
  }

  async close(): Promise<void> {
    await this.env.close();
  }
}

export interface StoredTopic {
  name: string;
  queues: number;
  createdMs: number;
}

/** Idempotent-producer state of one (producer, queue): the next expected sequence. */
export interface StoredProducer {
  nextSequence: number;
  lastQueueOffset: number;
  lastCount: number;
}
