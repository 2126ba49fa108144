// The narrow storage interface the core reads (like etcd's Storage), and an in-memory
// implementation for tests and the simulator. The driver writes storage while executing a Ready
// (and when it takes a snapshot or removes old entries); the core only reads it. No method throws
// on valid arguments; asking for offsets outside [startOffset, endOffset) is a bug and fails an
// assertion (InvariantError).
//
// What the storage holds (checked by the core on start and after every input):
//   snapshot:  the state machine after applying every entry below S = snapshot().endOffset;
//   log:       the entries [startOffset, endOffset);
//   startOffset <= S when startOffset > 0 (entries are removed only below the latest snapshot);
//   S <= endOffset (on open, a log that ends below its snapshot, e.g. after a crash lost what was
//   not synced, is reset to empty at S: KRaft's truncateToLatestSnapshot).

import { assert } from '../assert.js';
import { copyMembershipRecord, decodeMembershipRecord } from './membership.js';
import { EntryType, type Entry, type EpochStart, type HardState, type MembershipRecord, type SnapshotMeta } from './types.js';

export const entryOverheadBytes = 32;

export function entryBytes(entry: Entry): number {
  return entry.payload.byteLength + entryOverheadBytes;
}

export function entryEnd(entry: Entry): number {
  return entry.offset + entry.count;
}

export interface RaftStorage {
  hardState(): HardState;
  // Offsets of what is stored: [startOffset, endOffset). startOffset moves up when the driver
  // removes entries a snapshot covers (retention) and when it installs a snapshot.
  startOffset(): number;
  endOffset(): number;
  // Epoch of the last stored entry; when the log is empty, the snapshot's epoch if the log starts
  // at its end, else 0.
  lastEpoch(): number;
  // KRaft leader-epoch cache: each epoch present in the log with the offset of its first entry
  // still stored (an epoch that began below startOffset starts at startOffset), ascending in both.
  epochHistory(): EpochStart[];
  // Whole entries starting with the one that contains fromOffset, up to bytesMax in total but at
  // least one entry when any exists at or after fromOffset. fromOffset in [startOffset, endOffset].
  entries(fromOffset: number, bytesMax: number): Entry[];
  // The membership entries in force from startOffset on, ascending by offset: the latest one below
  // startOffset (when entries were removed, the snapshot's), then those stored in the log (at
  // least the latest two). Build each with decodeMembershipRecord (membership.ts): a record
  // without learners and endpoints makes the core forget them on restart.
  membership(): MembershipRecord[];
  // The highest offset the driver recorded as committed (its stored high watermark or applied
  // offset), 0 when none. It may lie beyond endOffset when the log lost entries. Optional: without
  // it the core knows nothing committed before its leader tells it.
  commitMarkOffset?(): number;
  // The latest durable snapshot, null when there is none. Optional only while the segment-log
  // adapter lacks it: without it the core knows no snapshot, and a follower whose Fetch is below
  // startOffset cannot be served (the leader answers divergingEpoch, as before snapshots).
  snapshot?(): SnapshotMeta | null;
}

// Binary search: index of the entry containing `offset` in a contiguous entry array.
export function indexOfOffset(entries: readonly Entry[], offset: number): number {
  let low = 0;
  let high = entries.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const entry = entries[middle]!;
    if (offset < entry.offset) high = middle - 1;
    else if (offset >= entryEnd(entry)) low = middle + 1;
    else return middle;
  }
  return -1;
}

export function assertEntryValid(entry: Entry): void {
  assert(Number.isInteger(entry.offset) && entry.offset >= 0, 'entry: bad offset');
  assert(Number.isInteger(entry.count) && entry.count >= 1, 'entry: count must be >= 1');
  assert(Number.isInteger(entry.epoch) && entry.epoch >= 1, 'entry: bad epoch');
  assert(entry.payload instanceof Uint8Array, 'entry: payload must be bytes');
}

export function assertSnapshotMetaValid(meta: SnapshotMeta): void {
  assert(Number.isInteger(meta.endOffset) && meta.endOffset >= 1, 'snapshot: endOffset must be an integer >= 1');
  assert(Number.isInteger(meta.epoch) && meta.epoch >= 1, 'snapshot: epoch must be an integer >= 1');
  assert(meta.membership === null || meta.membership.offset < meta.endOffset, 'snapshot: membership entry beyond its end');
}

export class MemoryStorage implements RaftStorage {
  private state: HardState = { epoch: 0, votedFor: null };
  private log: Entry[] = [];
  private history: EpochStart[] = [];
  private records: MembershipRecord[] = [];
  private commitMark = 0;
  // The log's start when it holds no entry (after removing entries or installing a snapshot).
  private start = 0;
  private latestSnapshot: SnapshotMeta | null = null;

  hardState(): HardState {
    return { ...this.state };
  }

  setHardState(state: HardState): void {
    assert(state.epoch >= this.state.epoch, 'storage: epoch went back');
    this.state = { ...state };
  }

  commitMarkOffset(): number {
    return this.commitMark;
  }

  // Driver side: what the driver's metadata says is committed (kept when the log loses entries).
  recordCommitMark(offset: number): void {
    assert(Number.isInteger(offset) && offset >= 0, 'storage: bad commit mark');
    this.commitMark = Math.max(this.commitMark, offset);
  }

  snapshot(): SnapshotMeta | null {
    return this.latestSnapshot === null ? null : copyMeta(this.latestSnapshot);
  }

  startOffset(): number {
    return this.log[0]?.offset ?? this.start;
  }

  endOffset(): number {
    const last = this.log[this.log.length - 1];
    return last === undefined ? this.start : entryEnd(last);
  }

  lastEpoch(): number {
    const last = this.log[this.log.length - 1];
    if (last !== undefined) return last.epoch;
    return this.latestSnapshot !== null && this.latestSnapshot.endOffset === this.start ? this.latestSnapshot.epoch : 0;
  }

  epochHistory(): EpochStart[] {
    return this.history.map((item) => ({ ...item }));
  }

  entries(fromOffset: number, bytesMax: number): Entry[] {
    const end = this.endOffset();
    assert(fromOffset >= this.startOffset() && fromOffset <= end, 'storage.entries: offset out of range');
    if (fromOffset === end) return [];
    const first = indexOfOffset(this.log, fromOffset);
    assert(first >= 0, 'storage.entries: offset not found');
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = first; index < this.log.length; index += 1) {
      const entry = this.log[index]!;
      if (result.length > 0 && bytes + entryBytes(entry) > bytesMax) break;
      result.push(entry);
      bytes += entryBytes(entry);
    }
    return result;
  }

  membership(): MembershipRecord[] {
    return this.records.map(copyMembershipRecord);
  }

  // Driver side: append entries contiguous with the end.
  append(entries: readonly Entry[]): void {
    for (const entry of entries) {
      assertEntryValid(entry);
      assert(entry.offset === this.endOffset(), 'storage.append: offsets not contiguous');
      assert(entry.epoch >= this.lastEpoch(), 'storage.append: epoch went back');
      if (this.log.length === 0 || entry.epoch !== this.lastEpoch()) {
        this.history.push({ epoch: entry.epoch, startOffset: entry.offset });
      }
      if (entry.type === EntryType.Membership) {
        this.records.push(decodeMembershipRecord(entry.offset, entry.payload));
      }
      this.log.push(entry);
    }
  }

  // Driver side: keep only the entries below endOffset (an entry boundary, not below the start).
  truncateTo(endOffset: number): void {
    assert(endOffset >= this.startOffset(), 'storage.truncateTo: below the log start');
    if (endOffset >= this.endOffset()) return;
    const index = indexOfOffset(this.log, endOffset);
    assert(index >= 0 && this.log[index]!.offset === endOffset, 'storage.truncateTo: not an entry boundary');
    if (index === 0) this.start = endOffset;
    this.log.length = index;
    while (this.history.length > 0 && this.history[this.history.length - 1]!.startOffset >= endOffset) this.history.pop();
    while (this.records.length > 0 && this.records[this.records.length - 1]!.offset >= endOffset) this.records.pop();
  }

  // Driver side: a snapshot of the state machine at meta.endOffset is durable (taken here, with
  // the metadata the core gave: RaftCore.snapshotMetaAt). The log is unchanged.
  recordSnapshot(meta: SnapshotMeta): void {
    assertSnapshotMetaValid(meta);
    assert(meta.endOffset >= (this.latestSnapshot?.endOffset ?? 0), 'storage.recordSnapshot: older than the latest');
    assert(meta.endOffset >= this.startOffset() && meta.endOffset <= this.endOffset(), 'storage.recordSnapshot: outside the log');
    this.latestSnapshot = copyMeta(meta);
  }

  // Driver side (retention): remove the entries below upTo, an entry boundary at or below the
  // latest snapshot's end. The membership entry in force at upTo is kept.
  removeBefore(upTo: number): void {
    const snapshot = this.latestSnapshot;
    assert(snapshot !== null && upTo <= snapshot.endOffset, 'storage.removeBefore: not covered by a snapshot');
    assert(upTo >= this.startOffset() && upTo <= this.endOffset(), 'storage.removeBefore: outside the log');
    if (upTo === this.startOffset()) return;
    const index = upTo === this.endOffset() ? this.log.length : indexOfOffset(this.log, upTo);
    assert(index >= 0 && (index === this.log.length || this.log[index]!.offset === upTo), 'storage.removeBefore: not an entry boundary');
    this.log = this.log.slice(index);
    this.start = upTo;
    while (this.history.length > 1 && this.history[1]!.startOffset <= upTo) this.history.shift();
    if (this.log.length === 0) this.history = [];
    else if (this.history[0] !== undefined && this.history[0].startOffset < upTo) this.history[0] = { epoch: this.history[0].epoch, startOffset: upTo };
    while (this.records.length > 1 && this.records[1]!.offset < upTo) this.records.shift();
  }

  // Driver side (Ready step 2, and on open when the log ends below its snapshot): `meta` is the
  // latest snapshot and the log is empty at its end.
  installSnapshot(meta: SnapshotMeta): void {
    assertSnapshotMetaValid(meta);
    this.latestSnapshot = copyMeta(meta);
    this.log = [];
    this.history = [];
    this.records = meta.membership === null ? [] : [copyMembershipRecord(meta.membership)];
    this.start = meta.endOffset;
  }

  // All stored entries (tests and the simulator's checks).
  allEntries(): readonly Entry[] {
    return this.log;
  }
}

function copyMeta(meta: SnapshotMeta): SnapshotMeta {
  const membership = meta.membership === null ? null : copyMembershipRecord(meta.membership);
  return { endOffset: meta.endOffset, epoch: meta.epoch, membership };
}
