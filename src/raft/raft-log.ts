// The core's view of its log: what storage holds plus a tail of entries that the driver has not
// yet confirmed (handed out in a Ready or not yet handed out), and a truncation the driver has not
// yet applied. Like etcd's raftLog with its unstable part. Pure: reads storage, never writes it.

import { assert } from '../assert.js';
import { decodeMembership } from './membership.js';
import { assertEntryValid, entryBytes, entryEnd, indexOfOffset, type RaftStorage } from './storage.js';
import { EntryType, type Entry, type EpochStart, type MembershipRecord } from './types.js';

export interface Unpersisted {
  truncateTo: number | null;
  entries: Entry[];
}

export class RaftLog {
  private tail: Entry[] = [];
  // The view is storage [startOffset, tailStart) followed by `tail`.
  private tailStart: number;
  // The end of storage once the driver has applied every Ready handed out so far.
  private handedEnd: number;
  // A truncation not yet handed out to the driver.
  private pendingTruncateTo: number | null = null;
  private inflight: { end: number; truncateTo: number | null } | null = null;
  private historyCache: EpochStart[] | null = null;
  private records: MembershipRecord[];

  constructor(private readonly storage: RaftStorage) {
    this.tailStart = storage.endOffset();
    this.handedEnd = this.tailStart;
    this.records = storage.membership();
    for (let index = 1; index < this.records.length; index += 1) {
      assert(this.records[index - 1]!.offset < this.records[index]!.offset, 'membership records out of order');
    }
  }

  startOffset(): number {
    return this.storage.startOffset();
  }

  endOffset(): number {
    const last = this.tail[this.tail.length - 1];
    return last === undefined ? this.tailStart : entryEnd(last);
  }

  lastEpoch(): number {
    const history = this.history();
    const last = history[history.length - 1];
    if (last !== undefined) return last.epoch;
    return this.endOffset() === this.storage.endOffset() ? this.storage.lastEpoch() : 0;
  }

  // Epoch history of the whole view, ascending.
  history(): EpochStart[] {
    if (this.historyCache !== null) return this.historyCache;
    const history = this.storage.epochHistory().filter((item) => item.startOffset < this.tailStart);
    for (const entry of this.tail) {
      const last = history[history.length - 1];
      if (last === undefined || last.epoch !== entry.epoch) {
        assert(last === undefined || last.epoch < entry.epoch, 'log: epochs must not decrease');
        history.push({ epoch: entry.epoch, startOffset: entry.offset });
      }
    }
    this.historyCache = history;
    return history;
  }

  // Epoch of the entry that ends at `offset` (contains offset - 1); 0 at the start of the log.
  epochBefore(offset: number): number {
    assert(offset >= this.startOffset() && offset <= this.endOffset(), 'epochBefore: offset out of range');
    if (offset === this.startOffset()) return 0;
    const history = this.history();
    for (let index = history.length - 1; index >= 0; index -= 1) {
      if (history[index]!.startOffset <= offset - 1) return history[index]!.epoch;
    }
    return 0;
  }

  // KRaft's OffsetForLeaderEpoch: the largest epoch <= `epoch` in this log and the offset where it
  // ends (the start of the next epoch, or the log end). With no such epoch: epoch 0 ending where
  // the first epoch starts.
  endOffsetForEpoch(epoch: number): { epoch: number; endOffset: number } {
    const history = this.history();
    for (let index = history.length - 1; index >= 0; index -= 1) {
      const item = history[index]!;
      if (item.epoch <= epoch) {
        const next = history[index + 1];
        return { epoch: item.epoch, endOffset: next === undefined ? this.endOffset() : next.startOffset };
      }
    }
    const first = history[0];
    return { epoch: 0, endOffset: first === undefined ? this.endOffset() : first.startOffset };
  }

  // Whole entries from the one containing fromOffset, within maxBytes but at least one.
  entries(fromOffset: number, maxBytes: number): Entry[] {
    assert(fromOffset >= this.startOffset() && fromOffset <= this.endOffset(), 'log.entries: offset out of range');
    const result: Entry[] = [];
    let bytes = 0;
    let position = fromOffset;
    if (position < this.tailStart) {
      for (const entry of this.storage.entries(position, maxBytes)) {
        if (entry.offset >= this.tailStart) break;
        result.push(entry);
        bytes += entryBytes(entry);
        position = entryEnd(entry);
      }
      assert(result.length > 0, 'log.entries: storage returned nothing');
      if (position < this.tailStart) return result;
    }
    const first = indexOfOffset(this.tail, position);
    if (first < 0) return result;
    for (let index = first; index < this.tail.length; index += 1) {
      const entry = this.tail[index]!;
      if (result.length > 0 && bytes + entryBytes(entry) > maxBytes) break;
      result.push(entry);
      bytes += entryBytes(entry);
    }
    return result;
  }

  // The entry containing `offset`.
  entryAt(offset: number): Entry {
    assert(offset >= this.startOffset() && offset < this.endOffset(), 'entryAt: offset out of range');
    if (offset >= this.tailStart) return this.tail[indexOfOffset(this.tail, offset)]!;
    const entry = this.storage.entries(offset, 0)[0];
    assert(entry !== undefined && entry.offset <= offset && offset < entryEnd(entry), 'entryAt: storage mismatch');
    return entry;
  }

  membershipRecords(): readonly MembershipRecord[] {
    return this.records;
  }

  append(entry: Entry): void {
    assertEntryValid(entry);
    assert(entry.offset === this.endOffset(), 'log.append: offsets must be contiguous');
    assert(entry.epoch >= this.lastEpoch(), 'log.append: epochs must not decrease');
    this.tail.push(entry);
    if (entry.type === EntryType.Membership) {
      this.records.push({ offset: entry.offset, voters: decodeMembership(entry.payload) });
    }
    this.historyCache = null;
  }

  // Keep the entries below endOffset, an entry boundary.
  truncateTo(endOffset: number): void {
    assert(endOffset >= this.startOffset() && endOffset <= this.endOffset(), 'log.truncateTo: out of range');
    if (endOffset === this.endOffset()) return;
    assert(this.entryAt(endOffset).offset === endOffset, 'log.truncateTo: not an entry boundary');
    if (endOffset < this.tailStart) {
      this.tail = [];
      this.tailStart = endOffset;
    } else {
      this.tail.length = indexOfOffset(this.tail, endOffset);
    }
    if (endOffset < this.handedEnd) {
      this.pendingTruncateTo = Math.min(this.pendingTruncateTo ?? endOffset, endOffset);
      this.handedEnd = endOffset;
    }
    while (this.records.length > 0 && this.records[this.records.length - 1]!.offset >= endOffset) this.records.pop();
    this.historyCache = null;
  }

  hasUnpersisted(): boolean {
    return this.pendingTruncateTo !== null || this.endOffset() > this.handedEnd;
  }

  // Hand the driver what it must write; one hand-out at a time until persisted() is called.
  takeUnpersisted(): Unpersisted {
    assert(this.inflight === null, 'log: previous hand-out not persisted');
    assert(this.handedEnd >= this.tailStart, 'log: handed end below tail');
    const first = this.handedEnd === this.endOffset() ? this.tail.length : indexOfOffset(this.tail, this.handedEnd);
    assert(first >= 0, 'log: handed end not in tail');
    const result: Unpersisted = { truncateTo: this.pendingTruncateTo, entries: this.tail.slice(first) };
    this.inflight = { end: this.endOffset(), truncateTo: this.pendingTruncateTo };
    this.handedEnd = this.endOffset();
    this.pendingTruncateTo = null;
    return result;
  }

  // The driver applied the last hand-out: storage now ends at its end.
  persisted(): void {
    const inflight = this.inflight;
    assert(inflight !== null, 'log.persisted: nothing handed out');
    assert(this.storage.endOffset() === inflight.end, 'log.persisted: storage end differs from the hand-out');
    const stableEnd = Math.min(inflight.end, this.pendingTruncateTo ?? inflight.end, this.endOffset());
    let dropped = 0;
    while (dropped < this.tail.length && entryEnd(this.tail[dropped]!) <= stableEnd) dropped += 1;
    if (dropped > 0) {
      this.tailStart = entryEnd(this.tail[dropped - 1]!);
      this.tail = this.tail.slice(dropped);
    }
    assert(this.tailStart <= this.storage.endOffset(), 'log.persisted: tail starts beyond storage');
    this.inflight = null;
    this.historyCache = null;
  }

  // The highest durable end offset the driver may report that still describes this view: storage
  // above a truncation the driver has not applied yet holds other entries.
  durableCap(): number {
    let cap = Math.min(this.endOffset(), this.pendingTruncateTo ?? Infinity);
    if (this.inflight !== null && this.inflight.truncateTo !== null) cap = Math.min(cap, this.inflight.truncateTo);
    return cap;
  }
}
