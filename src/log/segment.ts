// One segment: a preallocated, memory-mapped file of batches plus its sparse index file.
// The segment knows positions and offsets inside itself; SegmentLog decides when to roll, flush,
// truncate and delete.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { assert } from '../assert.js';
import { BatchField, batchHeaderBytes, batchProblem, readInt64, readUint64 } from './codec.js';
import { crc32c, mapFile, releaseMapping } from './native.js';
import { LogError } from './errors.js';
import {
  createPreallocatedFile,
  decodeSegmentLineage,
  encodeIndexHeader,
  encodeSegmentHeader,
  hasNonZeroBytes,
  indexCapacityFor,
  indexEntryBytes,
  indexFileBytesFor,
  indexFileName,
  indexHeaderBytes,
  indexHeaderProblem,
  segmentFileName,
  segmentHeaderBytes,
  segmentHeaderProblem,
  type SegmentLineage,
} from './segment-files.js';

/** Facts about one batch that the segment needs while appending or scanning. */
export interface BatchFacts {
  batchLength: number;
  baseOffset: number;
  recordCount: number;
  epoch: number;
  timestampMsMax: number;
}

export function batchFactsAt(buffer: Buffer, position: number): BatchFacts {
  return {
    batchLength: buffer.readUInt32LE(position + BatchField.batchLength),
    baseOffset: readUint64(buffer, position + BatchField.baseOffset),
    recordCount: buffer.readUInt32LE(position + BatchField.recordCount),
    epoch: buffer.readUInt32LE(position + BatchField.epoch),
    timestampMsMax: readInt64(buffer, position + BatchField.timestampMsMax),
  };
}

export interface IndexEntry {
  offset: number;
  position: number;
  epoch: number;
}

/** What a scan found where the valid data stops. */
export interface ScanEnd {
  position: number;
  /** Null when the data ends cleanly (zero length field or end of file). */
  problem: string | null;
}

/** Timestamp of a segment without batches: older than any real one. */
export const noTimestampMs = Number.MIN_SAFE_INTEGER;

export class Segment {
  readonly path: string;
  readonly indexPath: string;
  /** Bytes of the file, header included. */
  readonly fileBytes: number;
  private fd: number;
  private mapping: Buffer;
  private indexMapping: Buffer;
  private readonly indexCapacity: number;
  private indexEntryCount = 0;
  private bytesSinceIndexEntry = 0;
  /** Position after the last batch: where the next batch goes. */
  dataEndPosition = segmentHeaderBytes;
  /** Offset the next batch in this segment would start at. */
  nextOffset: number;
  /** Epoch of the last batch, or -1 while the segment is empty. */
  lastEpoch = -1;
  /** Largest batch timestamp in the segment (noTimestampMs while empty). */
  timestampMsMax = noTimestampMs;
  private closed = false;
  private syncsInFlight = 0;

  private constructor(
    readonly dir: string,
    readonly baseOffset: number,
    fileBytes: number,
    readonly indexIntervalBytes: number,
    /** From the header (see segment-files.ts): the reset count and, in a reset's segment, the epoch below its base. */
    readonly lineage: SegmentLineage,
  ) {
    this.path = join(dir, segmentFileName(baseOffset));
    this.indexPath = join(dir, indexFileName(baseOffset));
    this.fileBytes = fileBytes;
    this.nextOffset = baseOffset;
    this.indexCapacity = indexCapacityFor(fileBytes, indexIntervalBytes);
    this.fd = -1;
    this.mapping = Buffer.alloc(0);
    this.indexMapping = Buffer.alloc(0);
  }

  /**
   * Creates a new empty segment durably (file synced, renamed into place, directory synced).
   * A file of the same name is replaced by the rename, atomically (SegmentLog.resetTo relies on it).
   */
  static create(dir: string, baseOffset: number, segmentBytes: number, indexIntervalBytes: number, lineage: SegmentLineage): Segment {
    const segment = new Segment(dir, baseOffset, segmentBytes, indexIntervalBytes, lineage);
    createPreallocatedFile(dir, segmentFileName(baseOffset), encodeSegmentHeader(baseOffset, segmentBytes, lineage), segmentBytes, true);
    segment.fd = fs.openSync(segment.path, 'r+');
    segment.mapping = mapFile(segment.fd, segmentBytes);
    segment.createIndexFile();
    return segment;
  }

  /**
   * Opens an existing segment, checking its header; the caller then recovers it. With
   * `extendShortFile` (segments that may hold a torn tail) a file cut below its declared size is
   * extended back with zeros, which the recovery scan then treats as the end of the data.
   */
  static open(dir: string, baseOffset: number, indexIntervalBytes: number, extendShortFile: boolean): Segment {
    const path = join(dir, segmentFileName(baseOffset));
    const fd = fs.openSync(path, 'r+');
    try {
      let fileBytes = fs.fstatSync(fd).size;
      const header = Buffer.alloc(segmentHeaderBytes);
      const readBytes = fs.readSync(fd, header, 0, segmentHeaderBytes, 0);
      const declaredBytes = readBytes === segmentHeaderBytes ? readUint64(header, 24) : 0;
      if (extendShortFile && segmentHeaderProblem(header, baseOffset, declaredBytes) === null && fileBytes < declaredBytes) {
        fs.ftruncateSync(fd, declaredBytes);
        fileBytes = declaredBytes;
      }
      const problem = segmentHeaderProblem(header.subarray(0, readBytes), baseOffset, fileBytes);
      if (problem !== null) throw new LogError('bad_segment_header', `segment ${path}: ${problem}`, { file: path });
      const segment = new Segment(dir, baseOffset, fileBytes, indexIntervalBytes, decodeSegmentLineage(header));
      segment.fd = fd;
      segment.mapping = mapFile(fd, fileBytes);
      return segment;
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  get dataBytes(): number {
    return this.dataEndPosition;
  }

  get isEmpty(): boolean {
    return this.nextOffset === this.baseOffset;
  }

  // ---------------------------------------------------------------- index file
  private createIndexFile(): void {
    const header = encodeIndexHeader(this.baseOffset, this.indexCapacity);
    fs.rmSync(this.indexPath, { force: true });
    createPreallocatedFile(this.dir, indexFileName(this.baseOffset), header, indexFileBytesFor(this.indexCapacity), false);
    this.indexMapping = this.mapIndexFile();
  }

  private mapIndexFile(): Buffer {
    const fd = fs.openSync(this.indexPath, 'r+');
    try {
      return mapFile(fd, indexFileBytesFor(this.indexCapacity));
    } finally {
      fs.closeSync(fd); // the mapping keeps the file; the index is never synced (it is rebuilt)
    }
  }

  /** Maps the existing index file when its header is sound; false when it must be rebuilt. */
  private openIndexFile(): string | null {
    let fileBytes: number;
    try {
      fileBytes = fs.statSync(this.indexPath).size;
    } catch {
      return 'index file missing';
    }
    if (fileBytes !== indexFileBytesFor(this.indexCapacity)) return `index file has ${fileBytes} bytes`;
    const mapping = this.mapIndexFile();
    const problem = indexHeaderProblem(mapping.subarray(0, indexHeaderBytes), this.baseOffset, this.indexCapacity);
    if (problem !== null) {
      releaseMapping(mapping);
      return problem;
    }
    this.indexMapping = mapping;
    return null;
  }

  private entryPosition(entryIndex: number): number {
    return indexHeaderBytes + entryIndex * indexEntryBytes;
  }

  private entryCrc(entryPosition: number): number {
    const entry = this.indexMapping.subarray(entryPosition, entryPosition + indexEntryBytes);
    return crc32c(entry.subarray(16, 24), crc32c(entry.subarray(0, 12)));
  }

  private writeIndexEntry(facts: BatchFacts, position: number, priorMaxTimestampMs: number): void {
    assert(this.indexEntryCount < this.indexCapacity, 'index entry beyond capacity');
    const entryPosition = this.entryPosition(this.indexEntryCount);
    const index = this.indexMapping;
    index.writeUInt32LE(facts.baseOffset - this.baseOffset, entryPosition);
    index.writeUInt32LE(position, entryPosition + 4);
    index.writeUInt32LE(facts.epoch, entryPosition + 8);
    const high = Math.floor(priorMaxTimestampMs / 0x1_0000_0000);
    index.writeUInt32LE(priorMaxTimestampMs - high * 0x1_0000_0000, entryPosition + 16);
    index.writeInt32LE(high, entryPosition + 20);
    index.writeUInt32LE(this.entryCrc(entryPosition), entryPosition + 12);
    this.indexEntryCount++;
    this.bytesSinceIndexEntry = 0;
  }

  indexEntry(entryIndex: number): IndexEntry {
    const entryPosition = this.entryPosition(entryIndex);
    return {
      offset: this.baseOffset + this.indexMapping.readUInt32LE(entryPosition),
      position: this.indexMapping.readUInt32LE(entryPosition + 4),
      epoch: this.indexMapping.readUInt32LE(entryPosition + 8),
    };
  }

  get indexEntries(): IndexEntry[] {
    return Array.from({ length: this.indexEntryCount }, (_, entryIndex) => this.indexEntry(entryIndex));
  }

  /** Whether the entry is sound: CRC, order after the previous one, and agreement with the batch it names. */
  private indexEntryProblem(entryIndex: number, previous: IndexEntry | null): string | null {
    const entryPosition = this.entryPosition(entryIndex);
    if (this.indexMapping.readUInt32LE(entryPosition + 4) === 0) return 'end';
    if (this.indexMapping.readUInt32LE(entryPosition + 12) !== this.entryCrc(entryPosition)) return 'entry crc mismatch';
    const entry = this.indexEntry(entryIndex);
    if (previous !== null && (entry.offset <= previous.offset || entry.position <= previous.position)) return 'entries out of order';
    if (entry.position < segmentHeaderBytes || entry.position + batchHeaderBytes > this.fileBytes) return 'position out of range';
    const facts = batchFactsAt(this.mapping, entry.position);
    if (facts.baseOffset !== entry.offset || facts.epoch !== entry.epoch) return 'entry disagrees with its batch';
    return null;
  }

  /** Number of leading index entries that are sound (the rest are dropped and rebuilt by the scan). */
  private countSoundIndexEntries(): number {
    let previous: IndexEntry | null = null;
    for (let entryIndex = 0; entryIndex < this.indexCapacity; entryIndex++) {
      if (this.indexEntryProblem(entryIndex, previous) !== null) return entryIndex;
      previous = this.indexEntry(entryIndex);
    }
    return this.indexCapacity;
  }

  // ---------------------------------------------------------------- appending
  private needsIndexEntry(facts: BatchFacts): 'required' | 'interval' | 'none' {
    if (this.indexEntryCount === 0 || facts.epoch !== this.lastEpoch) return 'required';
    return this.bytesSinceIndexEntry >= this.indexIntervalBytes ? 'interval' : 'none';
  }

  /** Whether the batch fits: its bytes, and an index entry when one is required. */
  canAppend(facts: BatchFacts): boolean {
    if (this.dataEndPosition + facts.batchLength > this.fileBytes) return false;
    return this.needsIndexEntry(facts) !== 'required' || this.indexEntryCount < this.indexCapacity;
  }

  /** Takes a batch already in place at `position` into the segment's state and index. */
  private admit(facts: BatchFacts, position: number, forceIndexEntry: boolean): void {
    const need = forceIndexEntry ? 'required' : this.needsIndexEntry(facts);
    const room = this.indexEntryCount < this.indexCapacity;
    if (need === 'required' && !room) {
      throw new LogError('corrupt', `segment ${this.path}: more epoch changes than index entries`, { file: this.path });
    }
    if (need !== 'none' && room) this.writeIndexEntry(facts, position, this.timestampMsMax);
    this.bytesSinceIndexEntry += facts.batchLength;
    this.dataEndPosition = position + facts.batchLength;
    this.nextOffset = facts.baseOffset + facts.recordCount;
    this.lastEpoch = facts.epoch;
    this.timestampMsMax = Math.max(this.timestampMsMax, facts.timestampMsMax);
  }

  append(batch: Buffer, facts: BatchFacts): void {
    assert(!this.closed, 'append to a closed segment');
    assert(facts.baseOffset === this.nextOffset, `segment expects offset ${this.nextOffset}, got ${facts.baseOffset}`);
    assert(this.canAppend(facts), 'append to a segment without room');
    const position = this.dataEndPosition;
    // Written with pwrite, not through the mapping: a first store into a mapped page of the sparse
    // file takes a page fault and a block allocation per 4 KiB (about 3x slower when measured),
    // while readers still see the bytes through the shared mapping at once (same page cache).
    const writtenBytes = fs.writeSync(this.fd, batch, 0, batch.byteLength, position);
    if (writtenBytes !== batch.byteLength) {
      throw new LogError('write_failed', `segment ${this.path}: short write (${writtenBytes} of ${batch.byteLength} bytes)`, {
        file: this.path,
      });
    }
    this.admit(facts, position, false);
  }

  // ---------------------------------------------------------------- scanning and recovery
  /** Empties the in-memory state, keeping the first `entryCount` index entries. */
  private resetState(entryCount: number): void {
    this.indexEntryCount = entryCount;
    this.bytesSinceIndexEntry = 0;
    this.dataEndPosition = segmentHeaderBytes;
    this.nextOffset = this.baseOffset;
    this.lastEpoch = -1;
    this.timestampMsMax = noTimestampMs;
  }

  /** Zeroes index entries from `entryIndex` on, touching the file only when something is there. */
  private clearIndexFrom(entryIndex: number): boolean {
    const from = this.entryPosition(entryIndex);
    if (!hasNonZeroBytes(this.indexMapping, from, this.indexMapping.byteLength)) return false;
    this.indexMapping.fill(0, from);
    return true;
  }

  /**
   * Walks batches from `position` (expected to start at `offset`), checking each one's length,
   * CRC and offset continuity, and admits every valid batch. Stops at the first zero length field
   * (clean end) or invalid batch (reported).
   */
  private scanFrom(position: number, offset: number, forceFirstEntry: boolean): ScanEnd {
    let force = forceFirstEntry;
    while (position + 4 <= this.fileBytes) {
      if (this.mapping.readUInt32LE(position) === 0) return { position, problem: null };
      const problem = batchProblem(this.mapping, position, this.fileBytes);
      if (problem !== null) return { position, problem };
      const facts = batchFactsAt(this.mapping, position);
      if (facts.baseOffset !== offset) return { position, problem: `offset ${facts.baseOffset} where ${offset} was expected` };
      if (facts.epoch < this.lastEpoch) return { position, problem: `epoch ${facts.epoch} after epoch ${this.lastEpoch}` };
      this.admit(facts, position, force);
      force = false;
      position += facts.batchLength;
      offset += facts.recordCount;
    }
    return { position, problem: null };
  }

  /**
   * Rebuilds the state from the batches: from the start when `entriesToKeep` is 0, else from the
   * batch of index entry `entriesToKeep - 1` (whose stored running maximum timestamp is taken).
   */
  private rescan(entriesToKeep: number): ScanEnd {
    if (entriesToKeep === 0) {
      this.resetState(0);
      return this.scanFrom(segmentHeaderBytes, this.baseOffset, false);
    }
    const resume = this.indexEntry(entriesToKeep - 1);
    const priorMaxTimestampMs = readInt64(this.indexMapping, this.entryPosition(entriesToKeep - 1) + 16);
    this.resetState(entriesToKeep - 1);
    this.timestampMsMax = priorMaxTimestampMs;
    return this.scanFrom(resume.position, resume.offset, true);
  }

  /**
   * Rebuilds the state from disk. `fullScan` checks every batch from the start (the last segment,
   * where a crash can leave damage); otherwise only the batches from the last sound index entry
   * on are read. Returns where the valid data ends and what was wrong with the index, if anything.
   */
  recover(fullScan: boolean): { end: ScanEnd; indexRepair: string | null } {
    let indexRepair = this.openIndexFile();
    if (indexRepair !== null) this.createIndexFile();
    const soundCount = indexRepair === null ? this.countSoundIndexEntries() : 0;
    const end = this.rescan(fullScan ? 0 : soundCount);
    const clearedBeyond = this.clearIndexFrom(this.indexEntryCount);
    if (indexRepair === null && soundCount < this.indexEntryCount) indexRepair = `index entry #${soundCount} unsound`;
    if (indexRepair === null && clearedBeyond) indexRepair = 'index entries beyond the data';
    return { end, indexRepair };
  }

  /** True when bytes after the valid data are not all zero (a torn or corrupt tail to clear). */
  hasBytesAfterData(): boolean {
    return hasNonZeroBytes(this.mapping, this.dataEndPosition, this.fileBytes);
  }

  // ---------------------------------------------------------------- reading
  /** Position of the batch containing `offset` (which must lie in this segment's data). */
  positionOf(offset: number): number {
    assert(offset >= this.baseOffset && offset < this.nextOffset, `offset ${offset} outside segment ${this.baseOffset}`);
    let low = 0;
    let high = this.indexEntryCount - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.indexEntry(middle).offset <= offset) low = middle;
      else high = middle - 1;
    }
    const entry = this.indexEntry(low);
    let position = entry.position;
    let batchOffset = entry.offset;
    for (;;) {
      const facts = this.checkedFactsAt(position, batchOffset);
      if (offset < batchOffset + facts.recordCount) return position;
      position += facts.batchLength;
      batchOffset += facts.recordCount;
    }
  }

  /** baseOffset field of the batch at `position` (unchecked: for batches found by a walk). */
  baseOffsetAt(position: number): number {
    return readUint64(this.mapping, position + BatchField.baseOffset);
  }

  /** Header facts of the batch at `position`, refusing a header inconsistent with the walk. */
  checkedFactsAt(position: number, expectedOffset: number): BatchFacts {
    const facts = batchFactsAt(this.mapping, position);
    const fits = facts.batchLength >= batchHeaderBytes && position + facts.batchLength <= this.dataEndPosition;
    if (!fits || facts.baseOffset !== expectedOffset || facts.recordCount === 0) {
      throw new LogError('corrupt', `segment ${this.path}: damaged batch header at byte ${position}`, {
        file: this.path,
        offset: expectedOffset,
      });
    }
    return facts;
  }

  /** The verified batch at `position` as a view of the mapping (no copy). */
  verifiedBatchAt(position: number, expectedOffset: number): Buffer {
    const facts = this.checkedFactsAt(position, expectedOffset);
    const problem = batchProblem(this.mapping, position, position + facts.batchLength);
    if (problem !== null) {
      throw new LogError('corrupt', `segment ${this.path}: batch at offset ${expectedOffset} is damaged (${problem})`, {
        file: this.path,
        offset: expectedOffset,
      });
    }
    return this.mapping.subarray(position, position + facts.batchLength);
  }

  // ---------------------------------------------------------------- truncation and lifetime
  /**
   * Drops every byte from `position` on: the file is cut and re-extended, which zeroes the tail
   * (so no later scan can find old batches there) without writing 64 MiB of zeros, then synced.
   * Afterwards the state is rebuilt from the surviving index entries.
   */
  truncateAt(position: number): void {
    assert(position >= segmentHeaderBytes && position <= this.dataEndPosition, `truncation position ${position} out of range`);
    const endOffsetBefore = this.nextOffset;
    fs.ftruncateSync(this.fd, position);
    fs.ftruncateSync(this.fd, this.fileBytes);
    fs.fdatasyncSync(this.fd);
    let keep = 0;
    while (keep < this.indexEntryCount && this.indexEntry(keep).position < position) keep++;
    const end = this.rescan(keep);
    this.clearIndexFrom(this.indexEntryCount);
    assert(end.problem === null && this.dataEndPosition === position, `truncation left data end at ${this.dataEndPosition}, not ${position}`);
    assert(this.nextOffset <= endOffsetBefore, 'truncation grew the segment');
  }

  /**
   * fdatasync of the segment file on the thread pool. On Linux this also writes back pages
   * dirtied through the MAP_SHARED mapping (they are the file's page-cache pages), so no msync is
   * needed. The descriptor stays open until the call returns, even if the segment closes first.
   */
  datasync(callback: (error: NodeJS.ErrnoException | null) => void): void {
    assert(!this.closed, 'sync of a closed segment');
    this.syncsInFlight++;
    fs.fdatasync(this.fd, (error) => {
      this.syncsInFlight--;
      if (this.closed && this.syncsInFlight === 0) fs.closeSync(this.fd);
      callback(error);
    });
  }

  /** Blocking fdatasync; nothing to do once the segment is closed (deleted or already synced). */
  datasyncNow(): void {
    if (this.closed) return;
    fs.fdatasyncSync(this.fd);
  }

  /** Unmaps and closes; the files stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    releaseMapping(this.mapping);
    releaseMapping(this.indexMapping);
    if (this.syncsInFlight === 0) fs.closeSync(this.fd);
  }

  /** Closes and removes both files (index first: a segment without index is rebuilt, not lost). */
  delete(): void {
    this.close();
    fs.rmSync(this.indexPath, { force: true });
    fs.rmSync(this.path, { force: true });
  }
}
