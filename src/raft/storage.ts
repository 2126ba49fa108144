// The narrow storage interface the core reads (like etcd's Storage), and an in-memory
// implementation for tests and the simulator. The driver writes storage while executing a Ready;
// the core only reads it. No method throws on valid arguments; asking for offsets outside
// [startOffset, endOffset) is a bug and fails an assertion.

import { assert } from '../assert.js';
import { decodeMembership } from './membership.js';
import { EntryType, type Entry, type EpochStart, type HardState, type MembershipRecord } from './types.js';

export const entryOverheadBytes = 32;

export function entryBytes(entry: Entry): number {
  return entry.payload.byteLength + entryOverheadBytes;
}

export function entryEnd(entry: Entry): number {
  return entry.offset + entry.count;
}

export interface RaftStorage {
  hardState(): HardState;
  // Offsets of what is stored: [startOffset, endOffset).
  startOffset(): number;
  endOffset(): number;
  // Epoch of the last stored entry, 0 when the log is empty.
  lastEpoch(): number;
  // KRaft leader-epoch cache: each epoch present in the log with the offset of its first entry,
  // ascending in both.
  epochHistory(): EpochStart[];
  // Whole entries starting with the one that contains fromOffset, up to maxBytes in total but at
  // least one entry when any exists at or after fromOffset. fromOffset in [startOffset, endOffset].
  entries(fromOffset: number, maxBytes: number): Entry[];
  // Membership entries stored in the log, ascending by offset (at least the latest two).
  membership(): MembershipRecord[];
  // The highest offset the driver recorded as committed (its stored high watermark or applied
  // offset), 0 when none. It may lie beyond endOffset when the log lost entries. Optional: without
  // it the core knows nothing committed before its leader tells it.
  commitMarkOffset?(): number;
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

export class MemoryStorage implements RaftStorage {
  private state: HardState = { epoch: 0, votedFor: null };
  private readonly log: Entry[] = [];
  private readonly history: EpochStart[] = [];
  private readonly records: MembershipRecord[] = [];
  private commitMark = 0;

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

  startOffset(): number {
    return 0;
  }

  endOffset(): number {
    const last = this.log[this.log.length - 1];
    return last === undefined ? 0 : entryEnd(last);
  }

  lastEpoch(): number {
    return this.log[this.log.length - 1]?.epoch ?? 0;
  }

  epochHistory(): EpochStart[] {
    return this.history.map((item) => ({ ...item }));
  }

  entries(fromOffset: number, maxBytes: number): Entry[] {
    const end = this.endOffset();
    assert(fromOffset >= 0 && fromOffset <= end, 'storage.entries: offset out of range');
    if (fromOffset === end) return [];
    const first = indexOfOffset(this.log, fromOffset);
    assert(first >= 0, 'storage.entries: offset not found');
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = first; index < this.log.length; index += 1) {
      const entry = this.log[index]!;
      if (result.length > 0 && bytes + entryBytes(entry) > maxBytes) break;
      result.push(entry);
      bytes += entryBytes(entry);
    }
    return result;
  }

  membership(): MembershipRecord[] {
    return this.records.map((record) => ({ offset: record.offset, voters: [...record.voters] }));
  }

  // Driver side: append entries contiguous with the end.
  append(entries: readonly Entry[]): void {
    for (const entry of entries) {
      assertEntryValid(entry);
      assert(entry.offset === this.endOffset(), 'storage.append: offsets not contiguous');
      assert(entry.epoch >= this.lastEpoch(), 'storage.append: epoch went back');
      if (entry.epoch !== this.lastEpoch() || this.log.length === 0) {
        this.history.push({ epoch: entry.epoch, startOffset: entry.offset });
      }
      if (entry.type === EntryType.Membership) {
        this.records.push({ offset: entry.offset, voters: decodeMembership(entry.payload) });
      }
      this.log.push(entry);
    }
  }

  // Driver side: keep only the entries below endOffset (an entry boundary).
  truncateTo(endOffset: number): void {
    if (endOffset >= this.endOffset()) return;
    const index = indexOfOffset(this.log, endOffset);
    assert(index >= 0 && this.log[index]!.offset === endOffset, 'storage.truncateTo: not an entry boundary');
    this.log.length = index;
    while (this.history.length > 0 && this.history[this.history.length - 1]!.startOffset >= endOffset) this.history.pop();
    while (this.records.length > 0 && this.records[this.records.length - 1]!.offset >= endOffset) this.records.pop();
  }

  // All stored entries (tests and the simulator's checks).
  allEntries(): readonly Entry[] {
    return this.log;
  }
}
