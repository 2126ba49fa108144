// The records region of a batch, decoded: the one reader of the log's record encoding, a leaf so
// that the log (src/log/codec.ts, which writes the region and documents the whole batch) and the
// SDK (src/client/, which decodes the RecordBlocks of a ConsumeResponse) share it without either
// importing the other.
//
// One record inside the records region (all integers little-endian):
//
//   u32 recordBytes        bytes that follow this field
//   i32 timestampDeltaMs   timestamp minus the batch's firstTimestampMs
//   i32 keyBytes           -1 for no key, then the key bytes
//   u16 headerCount        then per header: u16 nameBytes, UTF-8 name, i32 valueBytes (-1 none), value
//   i32 valueBytes         -1 for no value, then the value bytes
import { MambaError } from './errors.js';

/** Bytes of a records region that do not follow the layout above. */
export class RecordFormatError extends MambaError {
  override readonly name = 'RecordFormatError';
  constructor(message: string) {
    super('invalid_argument', message, false);
  }
}

export interface RecordHeader {
  name: string;
  value: Uint8Array | null;
}

export interface LogRecord {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
  timestampMs: number;
}

/** The bytes of the u32 recordBytes field that starts every record. */
export const recordLengthBytes = 4;

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

class Reader {
  constructor(
    readonly buffer: Buffer,
    public position: number,
    /** Where the current record (or the region) ends; moved in and out around each record. */
    public limitPosition: number,
  ) {}
  need(byteCount: number): void {
    if (byteCount < 0 || this.position + byteCount > this.limitPosition) {
      throw new RecordFormatError(`record runs past its end at byte ${this.position}`);
    }
  }
  uint16(): number {
    this.need(2);
    const value = this.buffer.readUInt16LE(this.position);
    this.position += 2;
    return value;
  }
  uint32(): number {
    this.need(4);
    const value = this.buffer.readUInt32LE(this.position);
    this.position += 4;
    return value;
  }
  int32(): number {
    this.need(4);
    const value = this.buffer.readInt32LE(this.position);
    this.position += 4;
    return value;
  }
  bytes(byteCount: number): Buffer {
    this.need(byteCount);
    this.position += byteCount;
    return this.buffer.subarray(this.position - byteCount, this.position);
  }
  optionalBytes(): Buffer | null {
    const byteCount = this.int32();
    if (byteCount < -1) throw new RecordFormatError(`negative length ${byteCount}`);
    return byteCount === -1 ? null : this.bytes(byteCount);
  }
}

/** The headers of a record that has none: shared, so it must never be changed. */
const noHeaders: readonly RecordHeader[] = Object.freeze([]);

/**
 * Builds the caller's object for one decoded record: the record's `index` in the region, its
 * fields (byte fields are views into the region), `headers` shared and frozen when empty.
 */
export type RecordMaker<T> = (index: number, timestampMs: number, key: Buffer | null, value: Buffer | null, headers: readonly RecordHeader[]) => T;

function decodeRecord<T>(reader: Reader, firstTimestampMs: number, index: number, make: RecordMaker<T>): T {
  const recordBytes = reader.uint32();
  reader.need(recordBytes);
  const regionLimitPosition = reader.limitPosition;
  reader.limitPosition = reader.position + recordBytes;
  const timestampMs = firstTimestampMs + reader.int32();
  const key = reader.optionalBytes();
  const headerCount = reader.uint16();
  let headers = noHeaders;
  if (headerCount > 0) {
    const list: RecordHeader[] = [];
    for (let headerIndex = 0; headerIndex < headerCount; headerIndex++) {
      const name = reader.bytes(reader.uint16()).toString('utf8');
      list.push({ name, value: reader.optionalBytes() });
    }
    headers = list;
  }
  const value = reader.optionalBytes();
  if (reader.position !== reader.limitPosition) throw new RecordFormatError('record has trailing bytes');
  reader.limitPosition = regionLimitPosition;
  return make(index, timestampMs, key, value, headers);
}

/**
 * Decodes a bare records region holding exactly `recordCount` records into the objects `make`
 * builds, in order; byte fields are views into `region`, not copies. Throws RecordFormatError
 * on bytes that do not follow the layout.
 */
export function decodeRecordsRegionWith<T>(region: Uint8Array, firstTimestampMs: number, recordCount: number, make: RecordMaker<T>): T[] {
  const buffer = asBuffer(region);
  const reader = new Reader(buffer, 0, buffer.byteLength);
  const records: T[] = [];
  for (let index = 0; index < recordCount; index++) records.push(decodeRecord(reader, firstTimestampMs, index, make));
  if (reader.position !== reader.limitPosition) throw new RecordFormatError('records region has trailing bytes');
  return records;
}

const makeLogRecord: RecordMaker<LogRecord> = (_index, timestampMs, key, value, headers) => ({
  key,
  value,
  headers: headers.length > 0 ? (headers as RecordHeader[]) : [],
  timestampMs,
});

/** decodeRecordsRegionWith, into LogRecords (each with its own headers array). */
export function decodeRecordsRegion(region: Uint8Array, firstTimestampMs: number, recordCount: number): LogRecord[] {
  return decodeRecordsRegionWith(region, firstTimestampMs, recordCount, makeLogRecord);
}
