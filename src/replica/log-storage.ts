// The Raft core's view of a replica's segment log (the RaftStorage interface), and the one place
// that maps a core Entry to a stored record batch and back.
//
// An entry is stored as one batch: baseOffset = entry.offset, recordCount = entry.count, epoch,
// batch type = entry type, records region = entry.payload. Entries read back carry their payload
// as a view into the mapped segment (no copy), and the batch they came from is remembered, so a
// Fetch answer ships the stored bytes with their CRC and followers store the leader's bytes.
import { assert } from '../assert.js';
import { type SegmentLog, encodeBatchRaw, decodeBatchHeader, verifyBatch, batchHeaderBytes, type BatchType } from '../log/index.js';
import { copyMembershipRecord, decodeMembershipRecord } from '../raft/membership.js';
import type { RaftStorage } from '../raft/storage.js';
import { EntryType, type Entry, type EpochStart, type HardState, type MembershipRecord, type SnapshotMeta } from '../raft/types.js';

/** The stored batch an entry was read from or received as (keyed by its payload view). */
const batchOfPayload = new WeakMap<Uint8Array, Buffer>();

export function entryFromBatch(batch: Buffer): Entry {
  const header = decodeBatchHeader(batch);
  const payload = batch.subarray(batchHeaderBytes, header.batchLength);
  batchOfPayload.set(payload, batch);
  return { epoch: header.epoch, offset: header.baseOffset, count: header.recordCount, type: header.batchType as EntryType, payload };
}

/** The batch to store or ship for `entry`: the received bytes when there are any, else new ones. */
export function batchOfEntry(entry: Entry, nowMs: number): Buffer {
  const known = batchOfPayload.get(entry.payload);
  if (known) {
    const header = decodeBatchHeader(known);
    assert(header.baseOffset === entry.offset && header.epoch === entry.epoch && header.recordCount === entry.count, 'stored batch does not match its entry');
    return known;
  }
  const batch = encodeBatchRaw({
    baseOffset: entry.offset,
    epoch: entry.epoch,
    batchType: entry.type as unknown as BatchType,
    recordCount: entry.count,
    firstTimestampMs: nowMs,
    timestampMsMax: nowMs,
    recordsRegion: entry.payload,
  });
  batchOfPayload.set(entry.payload, batch);
  return batch;
}

/** Verifies every batch of a Fetch answer (length, CRC, contiguity) and turns them into entries. */
export function entriesFromFetchedBatches(batches: Buffer[]): Entry[] {
  const entries: Entry[] = [];
  for (const batch of batches) {
    verifyBatch(batch);
    const entry = entryFromBatch(batch);
    const previous = entries[entries.length - 1];
    if (previous && previous.offset + previous.count !== entry.offset) {
      throw new Error(`fetched batches are not contiguous at offset ${entry.offset}`);
    }
    entries.push(entry);
  }
  return entries;
}

/**
 * Bounds of the recent-entries cache: the newest entries stay in memory, so a Fetch answer for
 * the tail of the log and the apply loop after a commit cost no segment read (index lookup, scan
 * from the index point, CRC check of each batch): with one message per entry, those reads were
 * three per message on a leader (two Fetch answers and the apply).
 */
export const recentEntriesCountMax = 1024;
export const recentEntriesBytesMax = 4 * 1024 * 1024;

/**
 * How the adapter answers for snapshots. `enabled`: it offers snapshot() (the core then answers
 * Fetches below its log start with snapshotNeeded and checks the log start against it). Off only
 * for a log that starts above 0 with no snapshot covering its start (a data directory from before
 * snapshots, whose retention removed entries without one): the core then keeps its answers from
 * before snapshots until this replica takes its first snapshot and restarts.
 */
export interface SnapshotView {
  enabled: boolean;
  latest: SnapshotMeta | null;
}

function copyMeta(meta: SnapshotMeta): SnapshotMeta {
  return { endOffset: meta.endOffset, epoch: meta.epoch, membership: meta.membership === null ? null : copyMembershipRecord(meta.membership) };
}

export class LogRaftStorage implements RaftStorage {
  private memberships: MembershipRecord[] = [];
  /** The latest durable snapshot (stored by the replica's SnapshotStore), null when none. */
  private latestSnapshot: SnapshotMeta | null;
  /** RaftStorage.snapshot, present only when the view is enabled (see SnapshotView). */
  readonly snapshot?: () => SnapshotMeta | null;
  /** The newest appended entries, contiguous, from index `recentHead` on; see recentEntriesCountMax. */
  private recent: Entry[] = [];
  private recentHead = 0;
  private recentBytes = 0;

  /**
   * `state.promisedOffset` is undefined only for data directories from before promises;
   * `commitMark` reads what the driver recorded as committed (its stored high watermark and
   * applied offset), which may lie beyond the log end when the log lost entries.
   */
  constructor(
    private readonly log: SegmentLog,
    private state: HardState,
    private readonly commitMark: () => number = () => 0,
    snapshots: SnapshotView = { enabled: true, latest: null },
  ) {
    this.latestSnapshot = snapshots.latest === null ? null : copyMeta(snapshots.latest);
    if (snapshots.enabled) this.snapshot = () => (this.latestSnapshot === null ? null : copyMeta(this.latestSnapshot));
    assert(!snapshots.enabled || log.startOffset === 0 || (this.latestSnapshot?.endOffset ?? -1) >= log.startOffset, 'log starts above its snapshot');
  }

  /** The snapshot the replica made durable last (taken, before compact; or installed). */
  setSnapshot(meta: SnapshotMeta): void {
    assert(meta.endOffset >= (this.latestSnapshot?.endOffset ?? 0), 'setSnapshot: older than the latest');
    this.latestSnapshot = copyMeta(meta);
  }

  get latestSnapshotMeta(): SnapshotMeta | null {
    return this.latestSnapshot;
  }

  hardState(): HardState {
    return this.state;
  }

  setHardState(state: HardState): void {
    this.state = { epoch: state.epoch, votedFor: state.votedFor, ...(state.promisedOffset !== undefined ? { promisedOffset: state.promisedOffset } : {}) };
  }

  commitMarkOffset(): number {
    return this.commitMark();
  }

  startOffset(): number {
    return this.log.startOffset;
  }

  endOffset(): number {
    return this.log.endOffset;
  }

  /** The last entry's epoch; for an empty log starting at the snapshot's end, the snapshot's. */
  lastEpoch(): number {
    const history = this.log.epochStartOffsets();
    if (history.length) return history[history.length - 1]!.epoch;
    const snapshot = this.latestSnapshot;
    return snapshot !== null && snapshot.endOffset === this.log.startOffset ? snapshot.epoch : 0;
  }

  epochHistory(): EpochStart[] {
    return this.log.epochStartOffsets().map((e) => ({ epoch: e.epoch, startOffset: e.startOffset }));
  }

  /** Whole entries from the one holding `fromOffset`, within bytesMax but at least one (as SegmentLog.read). */
  entries(fromOffset: number, bytesMax: number): Entry[] {
    if (fromOffset >= this.log.endOffset) return [];
    return this.recentEntries(fromOffset, bytesMax) ?? this.log.read(fromOffset, bytesMax).map(entryFromBatch);
  }

  /** The answer from the cache, or null when `fromOffset` lies before it. */
  private recentEntries(fromOffset: number, bytesMax: number): Entry[] | null {
    const recent = this.recent;
    const first = recent[this.recentHead];
    const last = recent[recent.length - 1];
    // Below the log start the payload views may point into a removed segment: never served. A
    // cache that does not end where the log ends (only during start-up replay) is not used.
    if (first === undefined || last === undefined || fromOffset < first.offset || fromOffset < this.log.startOffset) return null;
    if (last.offset + last.count !== this.log.endOffset) return null;
    let low = this.recentHead;
    let high = recent.length - 1;
    while (low < high) {
      // the last entry whose offset <= fromOffset
      const middle = (low + high + 1) >> 1;
      if (recent[middle]!.offset <= fromOffset) low = middle;
      else high = middle - 1;
    }
    assert(fromOffset < recent[low]!.offset + recent[low]!.count, 'recent entries: offset past the cached end');
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = low; index < recent.length; index++) {
      const entry = recent[index]!;
      const size = batchHeaderBytes + entry.payload.byteLength;
      if (result.length > 0 && bytes + size > bytesMax) break;
      result.push(entry);
      bytes += size;
    }
    return result;
  }

  /**
   * The snapshot's membership entry (in force below the log start), then the log's, ascending.
   * A copy: the core keeps and extends what it is given.
   */
  membership(): MembershipRecord[] {
    const records = this.memberships.map(copyMembershipRecord);
    const below = this.latestSnapshot?.membership ?? null;
    if (below === null || (records[0] !== undefined && records[0].offset <= below.offset)) return records;
    return [copyMembershipRecord(below), ...records];
  }

  /** Called for every batch appended (and for every stored batch once at start-up). */
  noteAppended(entry: Entry): void {
    // The whole record (learners and endpoints too), so that the configuration survives a restart.
    if (entry.type === EntryType.Membership) this.memberships.push(decodeMembershipRecord(entry.offset, entry.payload));
    const last = this.recent[this.recent.length - 1];
    if (last !== undefined && last.offset + last.count !== entry.offset) this.clearRecent();
    this.recent.push(entry);
    this.recentBytes += batchHeaderBytes + entry.payload.byteLength;
    while (this.recent.length - this.recentHead > recentEntriesCountMax || this.recentBytes > recentEntriesBytesMax) {
      this.recentBytes -= batchHeaderBytes + this.recent[this.recentHead]!.payload.byteLength;
      this.recentHead++;
    }
    if (this.recentHead >= recentEntriesCountMax) {
      this.recent = this.recent.slice(this.recentHead);
      this.recentHead = 0;
    }
  }

  noteTruncated(endOffset: number): void {
    this.memberships = this.memberships.filter((m) => m.offset < endOffset);
    while (this.recent.length > this.recentHead && this.recent[this.recent.length - 1]!.offset >= endOffset) {
      this.recentBytes -= batchHeaderBytes + this.recent.pop()!.payload.byteLength;
    }
    const last = this.recent[this.recent.length - 1];
    if (last !== undefined && last.offset + last.count !== endOffset) this.clearRecent();
  }

  /** The log was reset to start, empty, at `startOffset` (a snapshot install): nothing of it is left. */
  noteReset(startOffset: number): void {
    assert(this.log.startOffset === startOffset && this.log.endOffset === startOffset, 'noteReset: the log was not reset there');
    this.memberships = [];
    this.clearRecent();
  }

  private clearRecent(): void {
    this.recent = [];
    this.recentHead = 0;
    this.recentBytes = 0;
  }
}
