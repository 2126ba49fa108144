// The core's view of its log: what storage holds plus a tail of entries that the driver has not
// yet confirmed (handed out in a Ready or not yet handed out), a truncation the driver has not yet
// applied, and a snapshot install the driver has not yet applied. Like etcd's raftLog with its
// unstable part (which also carries a pending snapshot). Pure: reads storage, never writes it.
//
// Below the log start only the latest snapshot is known: its id answers the epoch of the entry
// just below its end (etcd's Term(i) at the snapshot index, KRaft's snapshot id).

import { assert } from '../assert.js';
import { copyMembershipRecord, decodeMembershipRecord } from './membership.js';
import { assertEntryValid, entryBytes, entryEnd, indexOfOffset, type RaftStorage } from './storage.js';
import { EntryType, type Entry, type EpochStart, type MembershipRecord, type SnapshotMeta } from './types.js';

export interface Unpersisted {
  installSnapshot: SnapshotMeta | null;
  truncateTo: number | null;
  entries: Entry[];
}

export class RaftLog {
  private tail: Entry[] = [];
  // The view is storage [startOffset, tailStart) followed by `tail`.
  private tailStart: number;
  // The end of the view (the hottest read of the core: kept, not recomputed).
  private end: number;
  // The end of storage once the driver has applied every Ready handed out so far.
  private handedEnd: number;
  // A truncation not yet handed out to the driver.
  private pendingTruncateTo: number | null = null;
  // A snapshot install not yet handed out to the driver. While it is pending or in flight, storage
  // still holds the replaced log: the view ignores storage and starts, empty, at the snapshot end.
  private pendingInstall: SnapshotMeta | null = null;
  private inflight: { end: number; truncateTo: number | null; install: SnapshotMeta | null } | null = null;
  private historyCache: EpochStart[] | null = null;
  private records: MembershipRecord[];
  // The latest snapshot: the stored one on start, then each one taken (recordSnapshot) or
  // installed (installSnapshot).
  private latestSnapshot: SnapshotMeta | null;
  // False for a storage without snapshot(): the core then keeps the answers it gave before
  // snapshots existed (see RaftStorage.snapshot).
  readonly snapshotsSupported: boolean;

  constructor(private readonly storage: RaftStorage) {
    this.snapshotsSupported = typeof storage.snapshot === 'function';
    this.latestSnapshot = storage.snapshot?.() ?? null;
    this.tailStart = storage.endOffset();
    this.end = this.tailStart;
    this.handedEnd = this.tailStart;
    this.records = storage.membership();
    for (let index = 1; index < this.records.length; index += 1) {
      assert(this.records[index - 1]!.offset < this.records[index]!.offset, 'membership records out of order');
    }
  }

  private installing(): SnapshotMeta | null {
    return this.pendingInstall ?? this.inflight?.install ?? null;
  }

  installPending(): boolean {
    return this.installing() !== null;
  }

  startOffset(): number {
    const install = this.installing();
    return install === null ? this.storage.startOffset() : install.endOffset;
  }

  snapshot(): SnapshotMeta | null {
    return this.latestSnapshot;
  }

  snapshotEndOffset(): number {
    return this.latestSnapshot?.endOffset ?? 0;
  }

  endOffset(): number {
    return this.end;
  }

  private computedEnd(): number {
    const last = this.tail[this.tail.length - 1];
    return last === undefined ? this.tailStart : entryEnd(last);
  }

  // Epoch of the last entry; for an empty log, of the entry below its start (the snapshot's).
  lastEpoch(): number {
    const history = this.history();
    const last = history[history.length - 1];
    if (last !== undefined) return last.epoch;
    return this.knownEpochBefore(this.endOffset()) ?? 0;
  }

  // Epoch history of the whole view, ascending (an epoch that began below the start starts there).
  history(): EpochStart[] {
    if (this.historyCache !== null) return this.historyCache;
    const stored = this.installing() === null ? this.storage.epochHistory() : [];
    const history = stored.filter((item) => item.startOffset < this.tailStart);
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

  // Epoch of the entry that ends at `offset` (contains offset - 1); 0 at offset 0. At the log start
  // above 0 the entry is gone: the snapshot that ends there answers; null when none does (a start
  // below the snapshot's end, where retention cut whole segments).
  knownEpochBefore(offset: number): number | null {
    assert(offset >= this.startOffset() && offset <= this.endOffset(), 'epochBefore: offset out of range');
    if (offset > this.startOffset()) {
      const history = this.history();
      for (let index = history.length - 1; index >= 0; index -= 1) {
        if (history[index]!.startOffset <= offset - 1) return history[index]!.epoch;
      }
      return 0;
    }
    if (offset === 0) return 0;
    const snapshot = this.latestSnapshot;
    if (snapshot !== null && snapshot.endOffset === offset) return snapshot.epoch;
    return this.snapshotsSupported ? null : 0; // without snapshots: 0, as before them
  }

  // knownEpochBefore for an offset whose epoch must be known (above the start, or at a start where
  // the snapshot ends).
  epochBefore(offset: number): number {
    const epoch = this.knownEpochBefore(offset);
    assert(epoch !== null, 'epochBefore: the epoch below the log start is unknown (no snapshot ends there)');
    return epoch;
  }

  // KRaft's OffsetForLeaderEpoch: the largest epoch <= `epoch` in this log and the offset where it
  // ends (the start of the next epoch, or the log end). With no such epoch stored: at offset 0,
  // epoch 0 ending where the first epoch starts; at a start where the snapshot ends, the
  // snapshot's epoch ending there when it is <= `epoch`. Otherwise null: the answer lies below
  // the log start, where only a snapshot can help (KIP-630).
  endOffsetForEpoch(epoch: number): { epoch: number; endOffset: number } | null {
    const history = this.history();
    for (let index = history.length - 1; index >= 0; index -= 1) {
      const item = history[index]!;
      if (item.epoch <= epoch) {
        const next = history[index + 1];
        return { epoch: item.epoch, endOffset: next === undefined ? this.endOffset() : next.startOffset };
      }
    }
    const start = this.startOffset();
    if (start === 0 || !this.snapshotsSupported) {
      const first = history[0];
      return { epoch: 0, endOffset: first === undefined ? this.endOffset() : first.startOffset };
    }
    const snapshot = this.latestSnapshot;
    if (snapshot !== null && snapshot.endOffset === start && snapshot.epoch <= epoch) return { epoch: snapshot.epoch, endOffset: start };
    return null;
  }

  // The metadata of a snapshot ending at endOffset: the epoch below it and the membership entry in
  // force there.
  snapshotMetaAt(endOffset: number): SnapshotMeta {
    const epoch = this.epochBefore(endOffset);
    let membership: MembershipRecord | null = null;
    for (let index = this.records.length - 1; index >= 0 && membership === null; index -= 1) {
      if (this.records[index]!.offset < endOffset) membership = copyMembershipRecord(this.records[index]!);
    }
    return { endOffset, epoch, membership };
  }

  // Whole entries from the one containing fromOffset, within bytesMax but at least one.
  entries(fromOffset: number, bytesMax: number): Entry[] {
    assert(fromOffset >= this.startOffset() && fromOffset <= this.endOffset(), 'log.entries: offset out of range');
    const result: Entry[] = [];
    let bytes = 0;
    let position = fromOffset;
    if (position < this.tailStart) {
      for (const entry of this.storage.entries(position, bytesMax)) {
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
      if (result.length > 0 && bytes + entryBytes(entry) > bytesMax) break;
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
    this.end = entryEnd(entry);
    if (entry.type === EntryType.Membership) {
      this.records.push(decodeMembershipRecord(entry.offset, entry.payload));
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
    this.end = endOffset;
    if (endOffset < this.handedEnd) {
      this.pendingTruncateTo = Math.min(this.pendingTruncateTo ?? endOffset, endOffset);
      this.handedEnd = endOffset;
    }
    while (this.records.length > 0 && this.records[this.records.length - 1]!.offset >= endOffset) this.records.pop();
    this.historyCache = null;
  }

  // A snapshot was taken at meta.endOffset (stored by the driver); the log is unchanged.
  recordSnapshot(meta: SnapshotMeta): void {
    assert(meta.endOffset >= this.snapshotEndOffset(), 'log.recordSnapshot: older than the latest snapshot');
    this.latestSnapshot = meta;
  }

  // The view becomes the snapshot followed by an empty log at its end; the driver is handed the
  // install with the next hand-out (Ready step 2) and discards every stored entry.
  installSnapshot(meta: SnapshotMeta): void {
    assert(this.inflight === null, 'log.installSnapshot: previous hand-out not persisted');
    this.latestSnapshot = meta;
    this.pendingInstall = meta;
    this.tail = [];
    this.tailStart = meta.endOffset;
    this.end = meta.endOffset;
    this.handedEnd = meta.endOffset;
    this.pendingTruncateTo = null;
    this.records = meta.membership === null ? [] : [copyMembershipRecord(meta.membership)];
    this.historyCache = null;
  }

  hasUnpersisted(): boolean {
    return this.pendingInstall !== null || this.pendingTruncateTo !== null || this.endOffset() > this.handedEnd;
  }

  // Hand the driver what it must write; one hand-out at a time until persisted() is called.
  takeUnpersisted(): Unpersisted {
    assert(this.inflight === null, 'log: previous hand-out not persisted');
    assert(this.handedEnd >= this.tailStart, 'log: handed end below tail');
    const first = this.handedEnd === this.endOffset() ? this.tail.length : indexOfOffset(this.tail, this.handedEnd);
    assert(first >= 0, 'log: handed end not in tail');
    const install = this.pendingInstall;
    const result: Unpersisted = { installSnapshot: install, truncateTo: this.pendingTruncateTo, entries: this.tail.slice(first) };
    this.inflight = { end: this.endOffset(), truncateTo: this.pendingTruncateTo, install };
    this.handedEnd = this.endOffset();
    this.pendingTruncateTo = null;
    this.pendingInstall = null;
    return result;
  }

  // The driver applied the last hand-out: storage now ends at its end (and starts at an installed
  // snapshot's end, which it holds as its latest).
  persisted(): void {
    const inflight = this.inflight;
    assert(inflight !== null, 'log.persisted: nothing handed out');
    assert(this.storage.endOffset() === inflight.end, 'log.persisted: storage end differs from the hand-out');
    if (inflight.install !== null) this.checkInstalled(inflight.install);
    const stableEnd = Math.min(inflight.end, this.pendingTruncateTo ?? inflight.end, this.endOffset());
    let dropped = 0;
    while (dropped < this.tail.length && entryEnd(this.tail[dropped]!) <= stableEnd) dropped += 1;
    if (dropped > 0) {
      this.tailStart = entryEnd(this.tail[dropped - 1]!);
      this.tail = this.tail.slice(dropped);
    }
    assert(this.tailStart <= this.storage.endOffset(), 'log.persisted: tail starts beyond storage');
    assert(this.end === this.computedEnd(), 'log.persisted: kept end differs from the tail');
    this.inflight = null;
    this.historyCache = null;
  }

  // Read back what the driver did with an install (the same facts checked on the second path).
  private checkInstalled(install: SnapshotMeta): void {
    assert(this.storage.startOffset() === install.endOffset, 'log.persisted: storage does not start at the installed snapshot');
    const stored = this.storage.snapshot?.();
    assert(stored === undefined || stored?.endOffset === install.endOffset, 'log.persisted: storage does not hold the installed snapshot');
    assert(stored === undefined || stored?.epoch === install.epoch, 'log.persisted: stored snapshot epoch differs from the installed one');
  }

  // The highest durable end offset the driver may report that still describes this view: storage
  // above a truncation the driver has not applied yet holds other entries.
  durableCap(): number {
    let cap = Math.min(this.endOffset(), this.pendingTruncateTo ?? Infinity);
    if (this.inflight !== null && this.inflight.truncateTo !== null) cap = Math.min(cap, this.inflight.truncateTo);
    return cap;
  }
}
