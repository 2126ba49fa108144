// SegmentLog: an append-only log of record batches in memory-mapped segment files.
//
// Offsets are per record (a batch of N records spans [baseOffset, baseOffset + N)). Three offsets
// describe the log, all exclusive ends except startOffset:
//   startOffset    first offset still held (moves with retention)
//   endOffset      next offset to assign; everything below is written to the page cache
//                  (also exposed as writtenOffset) and readable
//   durableOffset  everything below has been flushed with fdatasync (or, after resetTo, is
//                  covered by the snapshot the reset started from):
//                    sync mode:  an append becomes durable after the next group flush, which
//                                starts as soon as the current one ends (group commit);
//                    async mode: after the next periodic flush (every flush.intervalMs).
//                  A replica should report durableOffset when its copy must survive a power loss.
//
// The log validates every batch it is given (length, magic, CRC) and requires baseOffset ==
// endOffset and an epoch not below the last one: the leader stamps batches with stampBatch()
// before append(); followers append the leader's bytes unchanged.
//
// A follower that installed a snapshot at offset S discards its whole log with resetTo(S, epoch)
// and fetches from S; the log may then start (and, empty, end) above 0 across restarts.
import * as fs from 'node:fs';
import { assert } from '../assert.js';
import { OutOfRangeError, ResourceExhaustedError } from '../errors.js';
import { asBuffer, batchProblem } from './codec.js';
import { LogError } from './errors.js';
import { resolveOptions, type ResolvedOptions, type SegmentLogOptions } from './options.js';
import { batchFactsAt, noTimestampMs, Segment, type BatchFacts } from './segment.js';
import { dirname, join } from 'node:path';
import { classifyFileName, fsyncDirectory, indexFileName, lineageValueMax, readSegmentLineage, segmentFileName, segmentHeaderBytes } from './segment-files.js';
import { EpochHistory, type EpochEntry, type EpochEnd } from './epoch-history.js';
import { noteSynced } from './sync-record.js';

export interface AppendResult {
  baseOffset: number;
  /** Offset after the batch's last record (the new endOffset). */
  nextOffset: number;
}

export interface LogStats {
  appendedBatchCount: number;
  flushCount: number;
  segmentCount: number;
  sizeBytes: number;
}

interface DurableWaiter {
  offset: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Bound on callers waiting for durability at once; beyond it waitDurable refuses. */
export const durableWaitersMax = 65_536;
const recoveryProgressIntervalMs = 1000;

/** The file steps of resetTo, in order; each is announced to the test observer before it runs. */
export type ResetStep = 'create_segment' | 'delete_segment' | 'sync_directory';
let resetStepObserver: ((step: ResetStep) => void) | null = null;

/**
 * TEST ONLY: hears each file step of resetTo just before it runs, so a crash test can kill the
 * process between any two steps (test/log/reset-crash-child.ts). Null (off) by default.
 */
export function setResetStepObserverForTests(listener: ((step: ResetStep) => void) | null): void {
  resetStepObserver = listener;
}

export class SegmentLog {
  private readonly segments: Segment[];
  private readonly epochs: EpochHistory;
  private durable: number;
  private readonly waiters: DurableWaiter[] = [];
  private readonly listeners = new Set<(durableOffset: number) => void>();
  private flushInFlight = false;
  private flushQueued = false;
  private flushRequested = false;
  private flushIdle: (() => void) | null = null;
  /** The fdatasync of the segment sealed by the last roll, while it runs (see roll()). */
  private sealedSync: { segment: Segment; done: Promise<void> } | null = null;
  /** Bumped by truncation and reset, so a flush that started before either cannot report offsets after it. */
  private generation = 0;
  private failure: LogError | null = null;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private appendedBatchCount = 0;
  /** What recovery moved into quarantine when this log was opened (quarantine mode only). */
  quarantined: readonly QuarantinedFile[] = [];
  private flushCount = 0;

  private constructor(
    private readonly options: ResolvedOptions,
    segments: Segment[],
  ) {
    this.segments = segments;
    this.epochs = EpochHistory.fromSegments(segments);
    this.durable = this.endOffset;
    // Recovery synced what it kept: the test-only record starts there.
    noteSynced({ dir: options.dir, baseOffset: this.active.baseOffset, position: this.active.dataEndPosition, offset: this.durable, syncCount: 0 });
    if (options.flush.mode === 'async') {
      this.timer = setInterval(() => this.startFlush(), options.flush.intervalMs);
      this.timer.unref();
    }
  }

  /** Opens (creating when absent) the log in options.dir, recovering it; see recoverSegments. */
  static async open(options: SegmentLogOptions): Promise<SegmentLog> {
    const resolved = resolveOptions(options);
    fs.mkdirSync(resolved.dir, { recursive: true });
    const startedMs = Date.now();
    const quarantined: QuarantinedFile[] = [];
    const segments = recoverSegments(resolved, quarantined);
    const log = new SegmentLog(resolved, segments);
    log.quarantined = quarantined;
    resolved.logger({
      event: 'log.opened',
      dir: resolved.dir,
      segmentCount: segments.length,
      startOffset: log.startOffset,
      endOffset: log.endOffset,
      recoveryMs: Date.now() - startedMs,
    });
    return log;
  }

  // ---------------------------------------------------------------- offsets
  get startOffset(): number {
    return this.segments[0]!.baseOffset;
  }

  get endOffset(): number {
    return this.active.nextOffset;
  }

  /** Same as endOffset: written to the page cache (and readable), not necessarily durable. */
  get writtenOffset(): number {
    return this.endOffset;
  }

  get durableOffset(): number {
    return this.durable;
  }

  /**
   * Epoch of the last batch. When the log holds none: the epoch given to the resetTo that started
   * it, while its first segment is the reset's (the snapshot's epoch, as KRaft's lastFetchedEpoch
   * on an empty log), else 0. Appends need an epoch at or above it.
   */
  get lastEpoch(): number {
    return this.epochs.isEmpty ? this.segments[0]!.lineage.startEpoch : this.epochs.lastEpoch;
  }

  /** For each epoch present in the log, in order, the offset of its first batch still held. */
  epochStartOffsets(): EpochEntry[] {
    return this.epochs.entries();
  }

  /**
   * KRaft's divergence lookup: the largest epoch <= `epoch` in the log and the offset where it
   * ends (start of the next epoch, or endOffset). Null when `epoch` is older than the log holds.
   */
  endOffsetForEpoch(epoch: number): EpochEnd | null {
    return this.epochs.endOffsetFor(epoch, this.endOffset);
  }

  get stats(): LogStats {
    return {
      appendedBatchCount: this.appendedBatchCount,
      flushCount: this.flushCount,
      segmentCount: this.segments.length,
      sizeBytes: this.sizeBytes,
    };
  }

  /** Bytes held (segment headers and batches; not the preallocated remainder of each file). */
  get sizeBytes(): number {
    return this.segments.reduce((total, segment) => total + segment.dataBytes, 0);
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private checkOpen(): void {
    if (this.closed) throw new LogError('closed', `log ${this.options.dir} is closed`);
    if (this.failure !== null) throw this.failure;
  }

  // ---------------------------------------------------------------- append
  /** Appends one stamped batch (see the file comment); the bytes are stored exactly as given. */
  append(batch: Uint8Array): AppendResult {
    this.checkOpen();
    const buffer = asBuffer(batch);
    const facts = this.checkBatch(buffer);
    if (!this.active.canAppend(facts)) this.roll();
    this.active.append(buffer, facts);
    this.epochs.observe(facts.epoch, facts.baseOffset);
    this.appendedBatchCount++;
    if (this.options.flush.mode === 'sync') this.requestFlush();
    return { baseOffset: facts.baseOffset, nextOffset: this.endOffset };
  }

  private checkBatch(buffer: Buffer): BatchFacts {
    const problem = batchProblem(buffer, 0, buffer.byteLength);
    if (problem !== null) throw new LogError('bad_batch', `append refused: ${problem}`);
    const facts = batchFactsAt(buffer, 0);
    if (facts.batchLength !== buffer.byteLength) {
      throw new LogError('bad_batch', `append refused: length field ${facts.batchLength} but ${buffer.byteLength} bytes given`);
    }
    if (facts.baseOffset !== this.endOffset) {
      throw new LogError('offset_mismatch', `batch starts at offset ${facts.baseOffset}, log end is ${this.endOffset}`, {
        offset: facts.baseOffset,
      });
    }
    if (facts.epoch < this.lastEpoch) {
      throw new LogError('epoch_regression', `batch epoch ${facts.epoch} is below the last epoch ${this.lastEpoch}`);
    }
    if (facts.batchLength > this.options.segmentBytes - segmentHeaderBytes) {
      throw new LogError('batch_too_large', `batch of ${facts.batchLength} bytes exceeds a ${this.options.segmentBytes}-byte segment`);
    }
    return facts;
  }

  /**
   * Starts a new segment at endOffset. The segment being sealed is synced on the thread pool;
   * the one sealed before it must be synced by now (waited for here in the rare case it is not).
   * So a segment file exists only when every segment two or more before it is complete on disk:
   * after a crash only the last two segments can have a torn tail, and recovery scans both.
   */
  private roll(): void {
    if (this.sealedSync !== null) this.sealedSync.segment.datasyncNow();
    const old = this.active;
    const done = this.syncSegment(old);
    const sealedSync = { segment: old, done };
    this.sealedSync = sealedSync;
    done.then(
      () => {
        if (this.sealedSync === sealedSync) this.sealedSync = null;
      },
      (error: NodeJS.ErrnoException) => this.fail(error),
    );
    const lineage = { resetCount: this.active.lineage.resetCount, startEpoch: 0 };
    const next = Segment.create(this.options.dir, this.endOffset, this.options.segmentBytes, this.options.indexIntervalBytes, lineage);
    this.segments.push(next);
    this.options.logger({ event: 'log.segment.rolled', dir: this.options.dir, baseOffset: next.baseOffset });
  }

  // ---------------------------------------------------------------- read
  /**
   * Whole batches from the one containing `offset`, as views of the mapped files (no copy), each
   * verified against its CRC. At least one batch when any is below `limitOffset` (default
   * endOffset), then more while the total stays within `bytesMax`; only batches ending at or
   * below `limitOffset` (e.g. a high watermark). Empty at the end of the log.
   * A view of a segment later deleted by retention or truncation reads as zeros.
   */
  read(offset: number, bytesMax: number, limitOffset: number = this.endOffset): Buffer[] {
    this.checkOpen();
    if (!Number.isSafeInteger(offset) || offset < this.startOffset || offset > this.endOffset) {
      throw new OutOfRangeError(`offset ${offset} outside [${this.startOffset}, ${this.endOffset}]`, this.startOffset, this.endOffset);
    }
    const limit = Math.min(limitOffset, this.endOffset);
    if (offset >= limit) return [];
    let segmentIndex = this.segmentIndexOf(offset);
    let segment = this.segments[segmentIndex]!;
    let position = segment.positionOf(offset);
    let batchOffset = segment.baseOffsetAt(position);
    const batches: Buffer[] = [];
    let totalBytes = 0;
    while (batchOffset < limit) {
      if (batchOffset >= segment.nextOffset) {
        segment = this.segments[++segmentIndex]!;
        position = segmentHeaderBytes;
        continue;
      }
      const facts = segment.checkedFactsAt(position, batchOffset);
      if (facts.baseOffset + facts.recordCount > limit) break;
      if (batches.length > 0 && totalBytes + facts.batchLength > bytesMax) break;
      batches.push(segment.verifiedBatchAt(position, batchOffset));
      totalBytes += facts.batchLength;
      position += facts.batchLength;
      batchOffset += facts.recordCount;
    }
    return batches;
  }

  /**
   * Bytes the batches of [fromOffset, toOffset) take in the segments (headers of the batches
   * included, segment headers not): what read() returns for that range, summed. Both offsets
   * must be batch boundaries within [startOffset, endOffset] (a backup sizes what it is about to
   * send with it). Walks from the nearest index entry in the first and last segments only.
   */
  byteSizeBetween(fromOffset: number, toOffset: number): number {
    this.checkOpen();
    assert(
      Number.isSafeInteger(fromOffset) &&
        Number.isSafeInteger(toOffset) &&
        this.startOffset <= fromOffset &&
        fromOffset <= toOffset &&
        toOffset <= this.endOffset,
      `byteSizeBetween(${fromOffset}, ${toOffset}) outside [${this.startOffset}, ${this.endOffset}]`,
    );
    let totalBytes = 0;
    for (const segment of this.segments) {
      const low = Math.max(fromOffset, segment.baseOffset);
      const high = Math.min(toOffset, segment.nextOffset);
      if (low >= high) continue;
      const startPosition = segment.positionOf(low);
      assert(segment.baseOffsetAt(startPosition) === low, `byteSizeBetween: ${low} is not a batch boundary`);
      const endPosition = high === segment.nextOffset ? segment.dataEndPosition : segment.positionOf(high);
      assert(high === segment.nextOffset || segment.baseOffsetAt(endPosition) === high, `byteSizeBetween: ${high} is not a batch boundary`);
      totalBytes += endPosition - startPosition;
    }
    return totalBytes;
  }

  /** Index of the segment holding `offset` (the last whose base is <= offset). */
  private segmentIndexOf(offset: number): number {
    let low = 0;
    let high = this.segments.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.segments[middle]!.baseOffset <= offset) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  // ---------------------------------------------------------------- durability
  private requestFlush(): void {
    if (this.flushInFlight) {
      this.flushRequested = true;
      return;
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Start after the current synchronous run, so appends made together share one flush.
    queueMicrotask(() => {
      this.flushQueued = false;
      this.startFlush();
    });
  }

  private syncSegment(segment: Segment): Promise<void> {
    return new Promise((resolve, reject) => segment.datasync((error) => (error === null ? resolve() : reject(error))));
  }

  /** One flush: the active segment, and the segment sealed last if its own sync still runs. */
  private startFlush(): void {
    if (this.flushInFlight || this.failure !== null) return;
    if (this.endOffset <= this.durable) return;
    const targetOffset = this.endOffset;
    const generation = this.generation;
    const covered = { baseOffset: this.active.baseOffset, position: this.active.dataEndPosition };
    this.flushInFlight = true;
    const syncs = [this.syncSegment(this.active)];
    if (this.sealedSync !== null) syncs.push(this.sealedSync.done);
    Promise.all(syncs).then(
      () => this.finishFlush(null, targetOffset, generation, covered),
      (error: NodeJS.ErrnoException) => this.finishFlush(error, targetOffset, generation, covered),
    );
  }

  private finishFlush(error: NodeJS.ErrnoException | null, targetOffset: number, generation: number, covered: { baseOffset: number; position: number }): void {
    this.flushInFlight = false;
    this.flushCount++;
    if (error !== null) {
      this.fail(error);
    } else if (generation === this.generation) {
      noteSynced({ dir: this.options.dir, ...covered, offset: targetOffset, syncCount: this.flushCount }); // test only (off by default)
      this.advanceDurable(Math.min(targetOffset, this.endOffset));
    }
    if (this.flushIdle !== null) {
      const idle = this.flushIdle;
      this.flushIdle = null;
      idle();
      return;
    }
    if (this.flushRequested && !this.closed) {
      this.flushRequested = false;
      this.startFlush();
    }
  }

  private advanceDurable(offset: number): void {
    if (offset <= this.durable) return;
    this.durable = offset;
    this.settleWaiters((waiter) => waiter.offset <= offset, null);
    for (const listener of [...this.listeners]) listener(offset);
  }

  /** Resolves (error null) or rejects the waiters matching `match`, keeping the others. */
  private settleWaiters(match: (waiter: DurableWaiter) => boolean, error: Error | null): void {
    let kept = 0;
    for (const waiter of this.waiters) {
      if (!match(waiter)) this.waiters[kept++] = waiter;
      else if (error === null) waiter.resolve();
      else waiter.reject(error);
    }
    this.waiters.length = kept;
    if (kept === 0) this.timer?.unref();
  }

  private fail(error: NodeJS.ErrnoException): void {
    if (this.failure !== null) return;
    this.failure = new LogError('flush_failed', `fdatasync failed in ${this.options.dir}: ${error.message}`);
    this.options.logger({ event: 'log.flush.failed', dir: this.options.dir, error: error.message });
    this.settleWaiters(() => true, this.failure);
  }

  /** Calls `listener(durableOffset)` whenever durableOffset advances; returns the unsubscribe. */
  onDurable(listener: (durableOffset: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once durableOffset >= offset; rejects if the log fails, closes or drops that offset. */
  waitDurable(offset: number): Promise<void> {
    if (offset <= this.durable) return Promise.resolve();
    try {
      this.checkOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    if (offset > this.endOffset) {
      return Promise.reject(new OutOfRangeError(`offset ${offset} is beyond the log end ${this.endOffset}`, this.startOffset, this.endOffset));
    }
    if (this.waiters.length >= durableWaitersMax) {
      return Promise.reject(new ResourceExhaustedError(`more than ${durableWaitersMax} waiters for durability`));
    }
    // The async flush timer does not hold the process open by itself, only while someone waits.
    this.timer?.ref();
    return new Promise((resolve, reject) => this.waiters.push({ offset, resolve, reject }));
  }

  /** Flushes now (in either mode) and resolves when everything written so far is durable. */
  flush(): Promise<void> {
    const offset = this.endOffset;
    if (this.flushInFlight) this.flushRequested = true;
    else this.startFlush();
    return this.waitDurable(offset);
  }

  // ---------------------------------------------------------------- truncation and retention
  /**
   * Drops every batch at or above `offset`, which must be a batch boundary in
   * [startOffset, endOffset]. Durable when it returns (files cut and synced, directory synced).
   * Waiters for offsets above `offset` are rejected with code "truncated".
   */
  truncateTo(offset: number): void {
    this.checkOpen();
    assert(
      Number.isSafeInteger(offset) && offset >= this.startOffset && offset <= this.endOffset,
      `truncateTo(${offset}) outside [${this.startOffset}, ${this.endOffset}]`,
    );
    if (offset === this.endOffset) return;
    this.generation++;
    let removedCount = 0;
    while (this.segments.length > 1 && this.active.baseOffset >= offset) {
      this.segments.pop()!.delete();
      removedCount++;
    }
    if (removedCount > 0) fsyncDirectory(this.options.dir);
    const segment = this.active;
    const position = offset === segment.nextOffset ? segment.dataEndPosition : segment.positionOf(offset);
    assert(offset === segment.nextOffset || segment.baseOffsetAt(position) === offset, `truncateTo(${offset}) is not at a batch boundary`);
    segment.truncateAt(position);
    assert(this.endOffset === offset, `truncation ended at ${this.endOffset}, not ${offset}`);
    this.epochs.truncateFrom(offset);
    if (this.durable > offset) {
      this.durable = offset;
      noteSynced({ dir: this.options.dir, baseOffset: segment.baseOffset, position, offset, syncCount: this.flushCount }); // test only
    }
    const error = new LogError('truncated', `offsets from ${offset} were truncated`, { offset });
    this.settleWaiters((waiter) => waiter.offset > offset, error);
    this.options.logger({ event: 'log.truncated', file: segment.path, offset, reason: 'truncateTo', segmentsRemoved: removedCount });
  }

  /**
   * Deletes whole segments from the head (never the active one, never one reaching above
   * `offsetLimit`) while the log is over retention.bytesMax (it stays at or above it) or the
   * segment's newest batch timestamp is older than retention.ageMsMax. Returns the count deleted.
   */
  applyRetention(nowMs: number = Date.now(), offsetLimit: number = this.endOffset): number {
    this.checkOpen();
    const { bytesMax, ageMsMax } = this.options.retention;
    let deletedCount = 0;
    let sizeBytes = this.sizeBytes;
    while (this.segments.length > 1) {
      const head = this.segments[0]!;
      if (head.nextOffset > offsetLimit) break;
      const overSize = bytesMax !== null && sizeBytes - head.dataBytes >= bytesMax;
      const overAge = ageMsMax !== null && head.timestampMsMax !== noTimestampMs && nowMs - head.timestampMsMax > ageMsMax;
      if (!overSize && !overAge) break;
      sizeBytes -= head.dataBytes;
      this.segments.shift()!.delete();
      deletedCount++;
      this.options.logger({ event: 'log.retention.deleted', file: head.path, startOffset: this.startOffset, reason: overSize ? 'size' : 'age' });
    }
    if (deletedCount > 0) {
      fsyncDirectory(this.options.dir);
      this.epochs.trimBefore(this.startOffset);
    }
    return deletedCount;
  }

  // ---------------------------------------------------------------- reset (snapshot installed)
  /**
   * Discards every segment and starts an empty log at `startOffset`, everything below it being
   * covered by a snapshot whose last entry has epoch `startEpoch` (a follower that installed
   * snapshot S: its old log lies below S or diverges). Afterwards startOffset = endOffset =
   * durableOffset = S, the epoch history is empty and lastEpoch is `startEpoch` until a batch is
   * appended. Waiters for offsets at or below S resolve (nothing below S is missing: the snapshot
   * holds it); waiters above S are rejected with code "truncated", as truncateTo does. Durable
   * when it returns.
   *
   * Crash safety: the new segment carries a reset count above every segment's (header, see
   * segment-files.ts) and is made durable (written as `.creating`, fdatasync, renamed into place,
   * directory fsync) BEFORE any old file is deleted; recovery deletes every segment of a lower
   * count (finishInterruptedReset). So the rename is the switch: a crash before it leaves the old
   * log (the `.creating` file is removed on open), a crash after it the new empty log, whatever
   * subset of old files is left. The directory fsync keeps a power loss from persisting a
   * deletion without the rename. A new segment at the base of an old one replaces that file in
   * the same rename. test/log/reset.test.ts kills a child at every step and opens what is left.
   */
  resetTo(startOffset: number, startEpoch: number): void {
    this.checkOpen();
    assert(Number.isSafeInteger(startOffset) && startOffset >= 0, `resetTo(${startOffset}): not an offset`);
    assert(Number.isInteger(startEpoch) && startEpoch >= 0 && startEpoch <= lineageValueMax, `resetTo: epoch ${startEpoch} out of range`);
    const resetCount = this.segments.reduce((highest, segment) => Math.max(highest, segment.lineage.resetCount), 0) + 1;
    assert(resetCount <= lineageValueMax, 'resetTo: reset count overflows its header field');
    const previous = { startOffset: this.startOffset, endOffset: this.endOffset, durableOffset: this.durable };
    resetStepObserver?.('create_segment');
    const next = this.createResetSegment(startOffset, { resetCount, startEpoch });
    this.generation++;
    const old = this.segments.splice(0, this.segments.length, next);
    this.sealedSync = null; // its segment is deleted below; the sync itself finishes on its own
    this.epochs.clear();
    this.durable = startOffset;
    noteSynced({ dir: this.options.dir, baseOffset: startOffset, position: segmentHeaderBytes, offset: startOffset, syncCount: this.flushCount }); // test only
    this.settleWaiters(
      (waiter) => waiter.offset > startOffset,
      new LogError('truncated', `offsets from ${startOffset} were discarded by a reset`, { offset: startOffset }),
    );
    this.settleWaiters(() => true, null);
    const removedCount = this.deleteSegmentsAfterReset(old, startOffset);
    this.options.logger({
      event: 'log.reset',
      dir: this.options.dir,
      startOffset,
      startEpoch,
      resetCount,
      previousStartOffset: previous.startOffset,
      previousEndOffset: previous.endOffset,
      segmentsRemoved: removedCount,
    });
    if (startOffset > previous.durableOffset) for (const listener of [...this.listeners]) listener(startOffset);
  }

  /** The reset's segment, durable when this returns; a failure fails the log (see reset_failed). */
  private createResetSegment(startOffset: number, lineage: { resetCount: number; startEpoch: number }): Segment {
    try {
      return Segment.create(this.options.dir, startOffset, this.options.segmentBytes, this.options.indexIntervalBytes, lineage);
    } catch (error) {
      // Whether the rename (the switch) happened is unknown here; only recovery can tell, so the
      // log refuses everything until it is reopened rather than guess which log is on disk.
      const message = error instanceof Error ? error.message : String(error);
      this.failure = new LogError('reset_failed', `reset of ${this.options.dir} to offset ${startOffset} failed (${message}): reopen the log`);
      this.options.logger({ event: 'log.reset.failed', dir: this.options.dir, startOffset, error: message });
      this.settleWaiters(() => true, this.failure);
      throw this.failure;
    }
  }

  /**
   * Deletes the segments a reset replaced, then syncs the directory. A segment at the reset's
   * own base offset is only closed: the new segment's rename already replaced its file (and its
   * index). A failure here is logged, not thrown: the reset is already durable and the next open
   * deletes whatever old file is left (its reset count is lower).
   */
  private deleteSegmentsAfterReset(old: Segment[], startOffset: number): number {
    let removedCount = 0;
    try {
      for (const segment of old) {
        resetStepObserver?.('delete_segment');
        if (segment.baseOffset === startOffset) segment.close();
        else segment.delete();
        removedCount++;
      }
      resetStepObserver?.('sync_directory');
      fsyncDirectory(this.options.dir);
    } catch (error) {
      for (const segment of old) segment.close();
      const message = error instanceof Error ? error.message : String(error);
      this.options.logger({ event: 'log.reset.cleanup_failed', dir: this.options.dir, error: message });
    }
    return removedCount;
  }

  // ---------------------------------------------------------------- close
  /** Waits for a running flush, syncs what is left, unmaps and closes every segment. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    if (this.flushInFlight) await new Promise<void>((resolve) => (this.flushIdle = resolve));
    if (this.sealedSync !== null) await this.sealedSync.done.catch(() => undefined);
    if (this.failure === null) {
      this.active.datasyncNow();
      this.advanceDurable(this.endOffset);
    }
    this.settleWaiters(() => true, new LogError('closed', `log ${this.options.dir} closed`));
    for (const segment of this.segments) segment.close();
    this.listeners.clear();
  }
}

// ---------------------------------------------------------------- recovery
/**
 * Lists the directory (refusing foreign files), opens every segment in offset order and checks
 * it: the last one completely (length, CRC, offset continuity of every batch, torn tail cut and
 * zeroed), older ones from their last sound index entry, since they were synced before the next
 * one was created. Index files are rebuilt when missing or damaged.
 */
function recoverSegments(options: ResolvedOptions, quarantined: QuarantinedFile[]): Segment[] {
  const { baseOffsets, resetCount } = finishInterruptedReset(options, listSegments(options));
  const segments: Segment[] = [];
  const quarantine = options.onDamage === 'quarantine';
  let reportedMs = Date.now();
  try {
    for (const [position, baseOffset] of baseOffsets.entries()) {
      const nextBaseOffset = position === baseOffsets.length - 1 ? null : baseOffsets[position + 1]!;
      const fullScan = quarantine || position >= baseOffsets.length - 2;
      const segment = quarantine
        ? openOrQuarantine(options, baseOffset, segments[segments.length - 1]?.nextOffset ?? baseOffset, quarantined)
        : recoverSegment(options, baseOffset, nextBaseOffset, fullScan, quarantined);
      if (segment === null) {
        moveLaterSegments(options, baseOffsets.slice(position + 1), baseOffset, quarantined);
        break;
      }
      segments.push(segment);
      if (nextBaseOffset !== null && segment.nextOffset !== nextBaseOffset) {
        // The segment ends early: a tail torn before the next segment was synced, or damage
        // (quarantine mode) cut at the last good batch.
        if (quarantine) moveLaterSegments(options, baseOffsets.slice(position + 1), segment.nextOffset, quarantined);
        else dropLaterSegments(options, baseOffsets.slice(position + 1), segment);
        break;
      }
      if (Date.now() - reportedMs >= recoveryProgressIntervalMs) {
        reportedMs = Date.now();
        options.logger({ event: 'log.recovery.progress', dir: options.dir, segmentsDone: position + 1, segmentsTotal: baseOffsets.length });
      }
    }
    if (segments.length === 0) {
      // Nothing sound is left: an empty log where the first (quarantined) segment began.
      const baseOffset = baseOffsets[0] ?? 0;
      segments.push(Segment.create(options.dir, baseOffset, options.segmentBytes, options.indexIntervalBytes, { resetCount, startEpoch: 0 }));
    }
  } catch (error) {
    for (const segment of segments) segment.close();
    throw error;
  }
  return segments;
}

/** A file recovery moved aside (quarantine mode): where it went and what it held. */
export interface QuarantinedFile {
  file: string;
  quarantinedAs: string;
  /** The log now ends here: the damaged data (and anything after it) starts at or after it. */
  lastGoodOffset: number;
  reason: string;
}

/** Quarantine mode: a segment whose header is bad is moved aside (null); otherwise it is recovered. */
function openOrQuarantine(options: ResolvedOptions, baseOffset: number, lastGoodOffset: number, quarantined: QuarantinedFile[]): Segment | null {
  try {
    return recoverSegment(options, baseOffset, null, true, quarantined);
  } catch (error) {
    if (!(error instanceof LogError) || (error.code !== 'bad_segment_header' && error.code !== 'corrupt')) throw error;
    moveToQuarantine(options, baseOffset, lastGoodOffset, error.message, quarantined);
    return null;
  }
}

/** The folder damaged segments go to: `quarantine/` beside the log directory. */
export function quarantineDirOf(logDir: string): string {
  return join(dirname(logDir), 'quarantine');
}

function quarantinePathOf(options: ResolvedOptions, name: string): string {
  const dir = quarantineDirOf(options.dir);
  fs.mkdirSync(dir, { recursive: true });
  return join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${name}`);
}

/** Moves a segment file (and its index) into quarantine, with a log line naming both. */
function moveToQuarantine(options: ResolvedOptions, baseOffset: number, lastGoodOffset: number, reason: string, quarantined: QuarantinedFile[]): void {
  const file = join(options.dir, segmentFileName(baseOffset));
  const quarantinedAs = quarantinePathOf(options, segmentFileName(baseOffset));
  fs.renameSync(file, quarantinedAs);
  fs.rmSync(join(options.dir, indexFileName(baseOffset)), { force: true }); // derived from the segment
  fsyncDirectory(options.dir);
  fsyncDirectory(dirname(quarantinedAs));
  const record = { file, quarantinedAs, lastGoodOffset, reason };
  quarantined.push(record);
  options.logger({ event: 'log.quarantined', dir: options.dir, baseOffset, ...record });
}

/** Quarantine mode: the segments after a damaged one are moved aside too (newest first). */
function moveLaterSegments(options: ResolvedOptions, laterBaseOffsets: number[], lastGoodOffset: number, quarantined: QuarantinedFile[]): void {
  for (const baseOffset of [...laterBaseOffsets].reverse()) {
    moveToQuarantine(options, baseOffset, lastGoodOffset, `follows damaged data ending the log at offset ${lastGoodOffset}`, quarantined);
  }
}

/** Quarantine mode: a copy of a segment whose damaged part recovery is about to cut. */
function copyToQuarantine(options: ResolvedOptions, segment: Segment, reason: string, quarantined: QuarantinedFile[]): void {
  const quarantinedAs = quarantinePathOf(options, segmentFileName(segment.baseOffset));
  fs.copyFileSync(segment.path, quarantinedAs);
  fsyncDirectory(dirname(quarantinedAs));
  const record = { file: segment.path, quarantinedAs, lastGoodOffset: segment.nextOffset, reason };
  quarantined.push(record);
  options.logger({ event: 'log.quarantined', dir: options.dir, baseOffset: segment.baseOffset, copy: true, ...record });
}

function listSegments(options: ResolvedOptions): number[] {
  const segmentBaseOffsets: number[] = [];
  for (const name of fs.readdirSync(options.dir).sort()) {
    const kind = classifyFileName(name);
    const path = join(options.dir, name);
    if (kind.kind === 'foreign') {
      throw new LogError('foreign_file', `log directory holds a file the log did not write: ${path}`, { file: path });
    }
    if (kind.kind === 'creating') {
      // A segment or index whose creation did not finish (it is renamed into place only when complete).
      fs.rmSync(path, { force: true });
      options.logger({ event: 'log.recovery.removed_incomplete', file: path });
    }
    if (kind.kind === 'segment') segmentBaseOffsets.push(kind.baseOffset);
  }
  return segmentBaseOffsets.sort((left, right) => left - right);
}

/**
 * Finishes a reset a crash interrupted (see SegmentLog.resetTo): the reset's segment has the
 * highest reset count in the directory, and every segment of a lower count is from before the
 * reset, so it is deleted (index first). Segments of one count, the usual case, are left as they
 * are. A segment whose header cannot be read is left to its own recovery, which refuses or
 * quarantines it. Returns the base offsets left, in order, and the highest reset count.
 */
function finishInterruptedReset(options: ResolvedOptions, baseOffsets: number[]): { baseOffsets: number[]; resetCount: number } {
  const resetCounts = baseOffsets.map((baseOffset) => readSegmentLineage(options.dir, baseOffset)?.resetCount ?? null);
  const resetCount = resetCounts.reduce<number>((highest, count) => Math.max(highest, count ?? 0), 0);
  const stale = baseOffsets.filter((_, position) => resetCounts[position] !== null && resetCounts[position]! < resetCount);
  if (stale.length === 0) return { baseOffsets, resetCount };
  for (const baseOffset of stale) {
    fs.rmSync(join(options.dir, indexFileName(baseOffset)), { force: true });
    fs.rmSync(join(options.dir, segmentFileName(baseOffset)), { force: true });
  }
  fsyncDirectory(options.dir);
  const kept = baseOffsets.filter((_, position) => !(resetCounts[position] !== null && resetCounts[position]! < resetCount));
  options.logger({ event: 'log.recovery.reset_finished', dir: options.dir, resetCount, startOffset: kept[0] ?? null, segmentsRemoved: stale.length });
  return { baseOffsets: kept, resetCount };
}

/**
 * Opens and checks one segment. `mayBeTorn` marks the last two segments: they are scanned
 * completely and a damaged tail is cut; an older segment was synced before the newer ones were
 * created, so damage there is reported, never repaired by deleting data.
 */
function recoverSegment(
  options: ResolvedOptions,
  baseOffset: number,
  nextBaseOffset: number | null,
  mayBeTorn: boolean,
  quarantined: QuarantinedFile[],
): Segment {
  const segment = Segment.open(options.dir, baseOffset, options.indexIntervalBytes, mayBeTorn);
  try {
    const { end, indexRepair } = segment.recover(mayBeTorn);
    if (indexRepair !== null) options.logger({ event: 'log.index.rebuilt', file: segment.indexPath, reason: indexRepair });
    if (mayBeTorn) {
      const cutting = end.problem !== null || segment.hasBytesAfterData();
      if (cutting && options.onDamage === 'quarantine') copyToQuarantine(options, segment, end.problem ?? 'non-zero bytes after the last batch', quarantined);
      cutTornTail(options, segment, end.problem);
      segment.datasyncNow(); // pages a killed process left dirty are on disk before anyone calls them durable
    } else if (segment.nextOffset !== nextBaseOffset) {
      const reason = end.problem ?? `data ends at offset ${segment.nextOffset}, next segment starts at ${nextBaseOffset}`;
      throw new LogError('corrupt', `segment ${segment.path} is damaged before the log end (${reason}); refusing to drop later segments`, {
        file: segment.path,
        offset: segment.nextOffset,
      });
    }
    return segment;
  } catch (error) {
    segment.close();
    throw error;
  }
}

function cutTornTail(options: ResolvedOptions, segment: Segment, problem: string | null): void {
  if (problem === null && !segment.hasBytesAfterData()) return;
  options.logger({
    event: 'log.truncated',
    file: segment.path,
    offset: segment.nextOffset,
    position: segment.dataEndPosition,
    reason: problem ?? 'non-zero bytes after the last batch',
  });
  segment.truncateAt(segment.dataEndPosition);
}

/** Removes the segments after a torn one (newest first), their data lying beyond the tear. */
function dropLaterSegments(options: ResolvedOptions, laterBaseOffsets: number[], torn: Segment): void {
  for (const baseOffset of [...laterBaseOffsets].reverse()) {
    const path = join(options.dir, segmentFileName(baseOffset));
    options.logger({ event: 'log.truncated', file: path, offset: torn.nextOffset, reason: `follows the torn tail of ${torn.path}` });
    fs.rmSync(join(options.dir, indexFileName(baseOffset)), { force: true });
    fs.rmSync(path, { force: true });
  }
  fsyncDirectory(options.dir);
}
