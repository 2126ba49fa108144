// File names and fixed headers of segment and index files, and small file-system helpers.
//
// Segment file `<baseOffset:20 digits>.log`, preallocated to its full size, 64-byte header:
//   0 magic "MAMBASEG" | 8 u16 version (1) | 10 u16 headerBytes (64) | 12 u32 reserved (0)
//   16 u64 baseOffset (equals the name) | 24 u64 segmentBytes (equals the file size)
//   32 u32 resetCount: resets (SegmentLog.resetTo) the log had gone through when this segment was
//      created; recovery keeps only the segments of the highest count (see resetTo)
//   36 u32 startEpoch: in the segment a reset created, the epoch of the entry just below its base
//      offset (the snapshot's); 0 in every other segment
//   40..60 reserved (0) | 60 u32 CRC32C of bytes [0, 60)
// then batches back to back from byte 64; the first 4 bytes after the last batch are zero (the
// file is preallocated with zeros and truncation zeroes what it drops), which ends the data.
// Segments written before resets existed hold zeros at 32..40: reset count 0, start epoch 0.
//
// Index file `<baseOffset>.index`, sparse and derived (rebuilt from the segment when damaged),
// 64-byte header:
//   0 magic "MAMBAIDX" | 8 u16 version (1) | 10 u16 headerBytes (64) | 12 u16 entryBytes (24)
//   16 u64 baseOffset | 24 u32 capacity (entries) | 60 u32 CRC32C of bytes [0, 60)
// then `capacity` 24-byte entries; an all-zero entry ends the list:
//   0 u32 offset - baseOffset | 4 u32 position of the batch starting there (>= 64)
//   8 u32 epoch of that batch | 12 u32 CRC32C of bytes [0,12) and [16,24) of the entry
//   16 i64 largest batch timestamp in the segment before this batch
// The segment gets an entry at its first batch, at every batch whose epoch differs from the one
// before (so the epoch history can be rebuilt from entries alone), and after every
// indexIntervalBytes of data.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { crc32c } from './native.js';
import { readUint64 } from './codec.js';

export const segmentHeaderBytes = 64;
export const indexHeaderBytes = 64;
export const indexEntryBytes = 24;
const segmentMagic = Buffer.from('MAMBASEG', 'latin1');
const indexMagic = Buffer.from('MAMBAIDX', 'latin1');
const fileVersion = 1;
const headerCrcPosition = 60;
/** Entries beyond the interval-driven ones, for epoch changes; a segment rolls when they run out. */
export const indexEpochEntriesSlack = 256;

const segmentNamePattern = /^(\d{20})\.log$/;
const indexNamePattern = /^(\d{20})\.index$/;
export const creatingSuffix = '.creating';

export function segmentFileName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.log`;
}

export function indexFileName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.index`;
}

export type DirectoryEntryKind = { kind: 'segment' | 'index'; baseOffset: number } | { kind: 'creating' } | { kind: 'foreign' };

export function classifyFileName(name: string): DirectoryEntryKind {
  const segment = segmentNamePattern.exec(name);
  if (segment !== null) return { kind: 'segment', baseOffset: Number(segment[1]) };
  const index = indexNamePattern.exec(name);
  if (index !== null) return { kind: 'index', baseOffset: Number(index[1]) };
  if (name.endsWith(creatingSuffix) && classifyFileName(name.slice(0, -creatingSuffix.length)).kind !== 'foreign') {
    return { kind: 'creating' };
  }
  return { kind: 'foreign' };
}

function writeHeaderCommon(header: Buffer, magic: Buffer, baseOffset: number): void {
  magic.copy(header, 0);
  header.writeUInt16LE(fileVersion, 8);
  header.writeUInt16LE(segmentHeaderBytes, 10);
  header.writeUInt32LE(baseOffset % 0x1_0000_0000, 16);
  header.writeUInt32LE(Math.floor(baseOffset / 0x1_0000_0000), 20);
}

function sealHeader(header: Buffer): Buffer {
  header.writeUInt32LE(crc32c(header.subarray(0, headerCrcPosition)), headerCrcPosition);
  return header;
}

/** Where a segment stands in the history of resets of its log (header bytes 32..40). */
export interface SegmentLineage {
  resetCount: number;
  startEpoch: number;
}

/** Bound of both lineage fields (u32); a reset beyond it is refused by an assertion. */
export const lineageValueMax = 0xffff_ffff;

export function encodeSegmentHeader(baseOffset: number, segmentBytes: number, lineage: SegmentLineage): Buffer {
  const header = Buffer.alloc(segmentHeaderBytes);
  writeHeaderCommon(header, segmentMagic, baseOffset);
  header.writeUInt32LE(segmentBytes, 24);
  header.writeUInt32LE(lineage.resetCount, 32);
  header.writeUInt32LE(lineage.startEpoch, 36);
  return sealHeader(header);
}

export function decodeSegmentLineage(header: Buffer): SegmentLineage {
  return { resetCount: header.readUInt32LE(32), startEpoch: header.readUInt32LE(36) };
}

/**
 * The lineage of the segment file at `baseOffset`, read from its header alone (no mapping), or
 * null when the header is unreadable (short file, wrong magic, CRC, version or base offset): the
 * segment's own recovery then reports it. The file size is not checked: a torn last segment may
 * be short and is extended by its recovery.
 */
export function readSegmentLineage(dir: string, baseOffset: number): SegmentLineage | null {
  const header = Buffer.alloc(segmentHeaderBytes);
  const fd = fs.openSync(join(dir, segmentFileName(baseOffset)), 'r');
  try {
    const readBytes = fs.readSync(fd, header, 0, segmentHeaderBytes, 0);
    if (commonHeaderProblem(header.subarray(0, readBytes), segmentMagic, baseOffset) !== null) return null;
    return decodeSegmentLineage(header);
  } finally {
    fs.closeSync(fd);
  }
}

export function encodeIndexHeader(baseOffset: number, capacity: number): Buffer {
  const header = Buffer.alloc(indexHeaderBytes);
  writeHeaderCommon(header, indexMagic, baseOffset);
  header.writeUInt16LE(indexEntryBytes, 12);
  header.writeUInt32LE(capacity, 24);
  return sealHeader(header);
}

function commonHeaderProblem(header: Buffer, magic: Buffer, baseOffset: number): string | null {
  if (header.byteLength < segmentHeaderBytes) return `file shorter than its ${segmentHeaderBytes}-byte header`;
  if (!header.subarray(0, 8).equals(magic)) return 'wrong magic';
  if (header.readUInt32LE(headerCrcPosition) !== crc32c(header.subarray(0, headerCrcPosition))) return 'header crc mismatch';
  if (header.readUInt16LE(8) !== fileVersion) return `unsupported version ${header.readUInt16LE(8)}`;
  if (header.readUInt16LE(10) !== segmentHeaderBytes) return 'unexpected header size';
  const storedBaseOffset = readUint64(header, 16);
  if (storedBaseOffset !== baseOffset) return `header base offset ${storedBaseOffset} differs from the file name`;
  return null;
}

/** Why a segment header is unacceptable, or null. */
export function segmentHeaderProblem(header: Buffer, baseOffset: number, fileBytes: number): string | null {
  const problem = commonHeaderProblem(header, segmentMagic, baseOffset);
  if (problem !== null) return problem;
  const segmentBytes = readUint64(header, 24);
  if (segmentBytes !== fileBytes) return `header says ${segmentBytes} bytes but the file has ${fileBytes}`;
  return null;
}

export function indexHeaderProblem(header: Buffer, baseOffset: number, capacity: number): string | null {
  const problem = commonHeaderProblem(header, indexMagic, baseOffset);
  if (problem !== null) return problem;
  if (header.readUInt16LE(12) !== indexEntryBytes) return 'unexpected entry size';
  if (header.readUInt32LE(24) !== capacity) return `capacity ${header.readUInt32LE(24)} instead of ${capacity}`;
  return null;
}

export function indexCapacityFor(segmentBytes: number, indexIntervalBytes: number): number {
  return Math.floor((segmentBytes - segmentHeaderBytes) / indexIntervalBytes) + 1 + indexEpochEntriesSlack;
}

export function indexFileBytesFor(capacity: number): number {
  return indexHeaderBytes + capacity * indexEntryBytes;
}

export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Creates `path` with `header` and a zero-filled (sparse) size of `fileBytes`, durably and
 * atomically: written under a temporary name, synced, then renamed, so a crash never leaves a
 * half-made file under a real name.
 */
export function createPreallocatedFile(dir: string, name: string, header: Buffer, fileBytes: number, durable: boolean): void {
  const temporaryPath = join(dir, name + creatingSuffix);
  const fd = fs.openSync(temporaryPath, 'w+');
  try {
    fs.writeSync(fd, header, 0, header.byteLength, 0);
    fs.ftruncateSync(fd, fileBytes);
    if (durable) fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporaryPath, join(dir, name));
  if (durable) fsyncDirectory(dir);
}

/** True when any byte of buffer[from, to) is not zero; compares in chunks against zeros. */
export function hasNonZeroBytes(buffer: Buffer, from: number, to: number): boolean {
  const chunkBytes = 65536;
  const zeros = Buffer.alloc(chunkBytes);
  for (let position = from; position < to; position += chunkBytes) {
    const end = Math.min(position + chunkBytes, to);
    if (buffer.compare(zeros, 0, end - position, position, end) !== 0) return true;
  }
  return false;
}
