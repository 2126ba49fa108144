// Record-batch codec: the only place that knows the byte layout of a batch.
//
// A batch (all integers little-endian):
//
//   offset size field
//        0    4 batchLength       u32  bytes of the whole batch, this header included
//        4    4 crc               u32  CRC32C of bytes [8, batchLength): everything after this field
//        8    1 magic             u8   format version, currently 1
//        9    1 reserved          u8   0
//       10    2 attributes        u16  bits 0-3 batch type (0 data, 1 leader change, 2 membership);
//                                      bits 4-15 flags, not interpreted by the log, kept as written
//       12    4 epoch             u32  leader epoch (Raft term) that wrote the batch
//       16    8 baseOffset        u64  offset of the first record (a safe integer)
//       24    4 recordCount       u32  >= 1; the batch spans [baseOffset, baseOffset + recordCount)
//       28    4 producerSequence  i32  sequence of the first record, -1 when not idempotent
//       32    8 firstTimestampMs  i64  timestamp of the first record
//       40    8 timestampMsMax    i64  largest record timestamp
//       48    8 producerId        i64  -1 when not idempotent
//       56      records region    the records back to back, stored exactly as they arrived
//
// One record inside the records region (decoded by src/record-region.ts, shared with the SDK):
//
//   u32 recordBytes        bytes that follow this field
//   i32 timestampDeltaMs   timestamp minus the batch's firstTimestampMs
//   i32 keyBytes           -1 for no key, then the key bytes
//   u16 headerCount        then per header: u16 nameBytes, UTF-8 name, i32 valueBytes (-1 none), value
//   i32 valueBytes         -1 for no value, then the value bytes
//
// The leader assigns baseOffset and epoch with stampBatch(), which rewrites the two fields and the
// CRC in place; followers store the leader's bytes unchanged, so every replica holds the same bytes.
import { crc32c } from './native.js';
import { LogError } from './errors.js';
import { RecordFormatError, decodeRecordsRegion as decodeSharedRecordsRegion, type LogRecord } from '../record-region.js';

export const batchHeaderBytes = 56;
export const batchMagic = 1;
export const batchTypeMask = 0x000f;
export const batchFlagsMask = 0xfff0;

export const BatchType = { data: 0, leaderChange: 1, membership: 2 } as const;
export type BatchType = (typeof BatchType)[keyof typeof BatchType];
const knownBatchTypes: ReadonlySet<number> = new Set(Object.values(BatchType));

/** Field positions, for code that reads headers straight out of a mapping. */
export const BatchField = {
  batchLength: 0,
  crc: 4,
  magic: 8,
  attributes: 10,
  epoch: 12,
  baseOffset: 16,
  recordCount: 24,
  producerSequence: 28,
  firstTimestampMs: 32,
  timestampMsMax: 40,
  producerId: 48,
} as const;
const crcStart = 8;

export interface BatchHeader {
  batchLength: number;
  crc: number;
  magic: number;
  attributes: number;
  batchType: number;
  epoch: number;
  baseOffset: number;
  recordCount: number;
  producerSequence: number;
  firstTimestampMs: number;
  timestampMsMax: number;
  producerId: number;
}

export type { RecordHeader, LogRecord } from '../record-region.js';

export interface BatchFields {
  baseOffset?: number;
  epoch?: number;
  batchType?: BatchType;
  /** Bits 4-15 of attributes; must have the low four bits clear. */
  flags?: number;
  producerId?: number;
  producerSequence?: number;
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ------------------------------------------------------------------ 64-bit fields as safe integers
const twoPower32 = 0x1_0000_0000;

export function readUint64(buffer: Buffer, position: number): number {
  return buffer.readUInt32LE(position + 4) * twoPower32 + buffer.readUInt32LE(position);
}

export function readInt64(buffer: Buffer, position: number): number {
  return buffer.readInt32LE(position + 4) * twoPower32 + buffer.readUInt32LE(position);
}

function writeInt64(buffer: Buffer, position: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value)) throw new LogError('bad_batch', `${field} ${value} is not a safe integer`);
  const high = Math.floor(value / twoPower32);
  buffer.writeUInt32LE(value - high * twoPower32, position);
  buffer.writeInt32LE(high, position + 4);
}

function writeUint64(buffer: Buffer, position: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new LogError('bad_batch', `${field} ${value} is not a non-negative safe integer`);
  }
  writeInt64(buffer, position, value, field);
}

function checkRange(value: number, minimum: number, maximum: number, field: string): void {
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new LogError('bad_batch', `${field} ${value} is outside [${minimum}, ${maximum}]`);
  }
}

// ------------------------------------------------------------------ headers
export function decodeBatchHeader(bytes: Uint8Array): BatchHeader {
  if (bytes.byteLength < batchHeaderBytes) {
    throw new LogError('bad_batch', `batch of ${bytes.byteLength} bytes is shorter than its ${batchHeaderBytes}-byte header`);
  }
  const buffer = asBuffer(bytes);
  const attributes = buffer.readUInt16LE(BatchField.attributes);
  return {
    batchLength: buffer.readUInt32LE(BatchField.batchLength),
    crc: buffer.readUInt32LE(BatchField.crc),
    magic: buffer.readUInt8(BatchField.magic),
    attributes,
    batchType: attributes & batchTypeMask,
    epoch: buffer.readUInt32LE(BatchField.epoch),
    baseOffset: readUint64(buffer, BatchField.baseOffset),
    recordCount: buffer.readUInt32LE(BatchField.recordCount),
    producerSequence: buffer.readInt32LE(BatchField.producerSequence),
    firstTimestampMs: readInt64(buffer, BatchField.firstTimestampMs),
    timestampMsMax: readInt64(buffer, BatchField.timestampMsMax),
    producerId: readInt64(buffer, BatchField.producerId),
  };
}

/**
 * Why the batch starting at `position` in `buffer` is not valid, or null when it is: the length
 * fits before `limitPosition`, magic, batch type, record count, offset range and CRC all check.
 */
export function batchProblem(buffer: Buffer, position: number, limitPosition: number): string | null {
  if (limitPosition - position < batchHeaderBytes) return 'truncated header';
  const batchLength = buffer.readUInt32LE(position + BatchField.batchLength);
  if (batchLength < batchHeaderBytes) return `length ${batchLength} below header size`;
  if (batchLength > limitPosition - position) return `length ${batchLength} runs past the end`;
  if (buffer[position + BatchField.magic] !== batchMagic) return `unknown magic ${buffer[position + BatchField.magic]}`;
  if (buffer[position + 9] !== 0) return 'reserved byte set';
  const batchType = buffer.readUInt16LE(position + BatchField.attributes) & batchTypeMask;
  if (!knownBatchTypes.has(batchType)) return `unknown batch type ${batchType}`;
  if (buffer.readUInt32LE(position + BatchField.recordCount) === 0) return 'zero records';
  const baseOffset = readUint64(buffer, position + BatchField.baseOffset);
  const lastOffset = baseOffset + buffer.readUInt32LE(position + BatchField.recordCount) - 1;
  if (!Number.isSafeInteger(lastOffset)) return 'offset beyond the safe integer range';
  const region = buffer.subarray(position + crcStart, position + batchLength);
  if (crc32c(region) !== buffer.readUInt32LE(position + BatchField.crc)) return 'crc mismatch';
  return null;
}

/** Checks a whole batch (exact length, magic, type, count, CRC) and returns its header. */
export function verifyBatch(bytes: Uint8Array): BatchHeader {
  const buffer = asBuffer(bytes);
  const problem = batchProblem(buffer, 0, buffer.byteLength);
  if (problem !== null) throw new LogError('bad_batch', `invalid batch: ${problem}`);
  const header = decodeBatchHeader(buffer);
  if (header.batchLength !== buffer.byteLength) {
    throw new LogError('bad_batch', `batch length field ${header.batchLength} differs from its ${buffer.byteLength} bytes`);
  }
  return header;
}

/** Sets baseOffset and epoch in place and recomputes the CRC (how the leader assigns offsets). */
export function stampBatch(bytes: Uint8Array, baseOffset: number, epoch: number): void {
  const buffer = asBuffer(bytes);
  if (buffer.byteLength < batchHeaderBytes) throw new LogError('bad_batch', 'batch shorter than its header');
  checkRange(epoch, 0, 0xffff_ffff, 'epoch');
  writeUint64(buffer, BatchField.baseOffset, baseOffset, 'baseOffset');
  buffer.writeUInt32LE(epoch, BatchField.epoch);
  buffer.writeUInt32LE(crc32c(buffer.subarray(crcStart, buffer.readUInt32LE(BatchField.batchLength))), BatchField.crc);
}

// ------------------------------------------------------------------ whole batches
export interface RawBatchInput extends BatchFields {
  recordCount: number;
  firstTimestampMs: number;
  timestampMsMax: number;
  /** Records region exactly as it arrived; copied once into the batch, never re-encoded. */
  recordsRegion: Uint8Array;
}

/** Wraps an already-encoded records region in a batch header (the broker's produce path). */
export function encodeBatchRaw(input: RawBatchInput): Buffer {
  const batchLength = batchHeaderBytes + input.recordsRegion.byteLength;
  checkRange(batchLength, batchHeaderBytes, 0xffff_ffff, 'batchLength');
  checkRange(input.recordCount, 1, 0xffff_ffff, 'recordCount');
  const batchType = input.batchType ?? BatchType.data;
  const flags = input.flags ?? 0;
  if (!knownBatchTypes.has(batchType)) throw new LogError('bad_batch', `unknown batch type ${batchType}`);
  if ((flags & ~batchFlagsMask) !== 0) throw new LogError('bad_batch', `flags ${flags} use the batch-type bits`);
  checkRange(input.producerSequence ?? -1, -1, 0x7fff_ffff, 'producerSequence');
  const buffer = Buffer.alloc(batchLength);
  buffer.writeUInt32LE(batchLength, BatchField.batchLength);
  buffer[BatchField.magic] = batchMagic;
  buffer.writeUInt16LE(batchType | flags, BatchField.attributes);
  buffer.writeUInt32LE(input.recordCount, BatchField.recordCount);
  buffer.writeInt32LE(input.producerSequence ?? -1, BatchField.producerSequence);
  writeInt64(buffer, BatchField.firstTimestampMs, input.firstTimestampMs, 'firstTimestampMs');
  writeInt64(buffer, BatchField.timestampMsMax, input.timestampMsMax, 'timestampMsMax');
  writeInt64(buffer, BatchField.producerId, input.producerId ?? -1, 'producerId');
  buffer.set(input.recordsRegion, batchHeaderBytes);
  stampBatch(buffer, input.baseOffset ?? 0, input.epoch ?? 0);
  return buffer;
}

export interface BatchInput extends BatchFields {
  records: LogRecord[];
}

/** Encodes records into a new batch; timestamps come from the records. */
export function encodeBatch(input: BatchInput): Buffer {
  if (input.records.length === 0) throw new LogError('bad_batch', 'a batch needs at least one record');
  const firstTimestampMs = input.records[0]!.timestampMs;
  const timestampMsMax = input.records.reduce((maximum, record) => Math.max(maximum, record.timestampMs), firstTimestampMs);
  return encodeBatchRaw({
    ...input,
    recordCount: input.records.length,
    firstTimestampMs,
    timestampMsMax,
    recordsRegion: encodeRecords(input.records, firstTimestampMs),
  });
}

// ------------------------------------------------------------------ records
function optionalBytesLength(bytes: Uint8Array | null): number {
  return bytes === null ? 0 : bytes.byteLength;
}

function recordBodyBytes(record: LogRecord, headerNames: Buffer[]): number {
  let total = 4 + 4 + optionalBytesLength(record.key) + 2 + 4 + optionalBytesLength(record.value);
  record.headers.forEach((header, index) => {
    total += 2 + headerNames[index]!.byteLength + 4 + optionalBytesLength(header.value);
  });
  return total;
}

class Writer {
  position = 0;
  constructor(readonly buffer: Buffer) {}
  uint16(value: number): void {
    this.position = this.buffer.writeUInt16LE(value, this.position);
  }
  uint32(value: number): void {
    this.position = this.buffer.writeUInt32LE(value, this.position);
  }
  int32(value: number): void {
    this.position = this.buffer.writeInt32LE(value, this.position);
  }
  bytes(value: Uint8Array): void {
    this.buffer.set(value, this.position);
    this.position += value.byteLength;
  }
  optionalBytes(value: Uint8Array | null): void {
    this.int32(value === null ? -1 : value.byteLength);
    if (value !== null) this.bytes(value);
  }
}

/** The records region for `records`, timestamps stored as deltas from `firstTimestampMs`. */
export function encodeRecords(records: LogRecord[], firstTimestampMs: number): Buffer {
  const names = records.map((record) => record.headers.map((header) => Buffer.from(header.name, 'utf8')));
  const sizes = records.map((record, index) => recordBodyBytes(record, names[index]!));
  const writer = new Writer(Buffer.alloc(sizes.reduce((sum, size) => sum + 4 + size, 0)));
  records.forEach((record, index) => {
    const timestampDeltaMs = record.timestampMs - firstTimestampMs;
    checkRange(timestampDeltaMs, -0x8000_0000, 0x7fff_ffff, 'timestampDeltaMs');
    checkRange(record.headers.length, 0, 0xffff, 'headerCount');
    writer.uint32(sizes[index]!);
    writer.int32(timestampDeltaMs);
    writer.optionalBytes(record.key);
    writer.uint16(record.headers.length);
    record.headers.forEach((header, headerIndex) => {
      const name = names[index]![headerIndex]!;
      checkRange(name.byteLength, 0, 0xffff, 'headerNameBytes');
      writer.uint16(name.byteLength);
      writer.bytes(name);
      writer.optionalBytes(header.value);
    });
    writer.optionalBytes(record.value);
  });
  return writer.buffer;
}

/** The shared reader's format errors (src/record-region.ts) as the log's own. */
function asLogError(error: unknown): unknown {
  return error instanceof RecordFormatError ? new LogError('bad_batch', error.message) : error;
}

/** Decodes the records of a verified batch; the byte fields are views into `batch`, not copies. */
export function decodeRecords(batch: Uint8Array): LogRecord[] {
  const buffer = asBuffer(batch);
  const header = decodeBatchHeader(buffer);
  const region = buffer.subarray(batchHeaderBytes, Math.min(header.batchLength, buffer.byteLength));
  return decodeRecordsRegion(region, header.firstTimestampMs, header.recordCount);
}

/**
 * Decodes a bare records region (no batch header), for callers that keep a region inside a
 * payload of their own; byte fields are views into `region`, not copies. The decoding itself is
 * src/record-region.ts, shared with the SDK.
 */
export function decodeRecordsRegion(region: Uint8Array, firstTimestampMs: number, recordCount: number): LogRecord[] {
  try {
    return decodeSharedRecordsRegion(region, firstTimestampMs, recordCount);
  } catch (error) {
    throw asLogError(error);
  }
}
