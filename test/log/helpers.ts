// Shared helpers for the log tests: temporary directories and deterministic batches.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { SegmentLog, encodeBatch, stampBatch, type LogEvent, type SegmentLogOptions } from '../../src/log/index.js';

export function temporaryDirectory(prefix: string): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(join(os.tmpdir(), `mamba-${prefix}-`));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A batch whose contents follow from (seed, recordCount, valueBytes); stamped later. */
export function makeBatch(seed: number, recordCount: number, valueBytes: number, timestampMs = 1_700_000_000_000): Buffer {
  const records = Array.from({ length: recordCount }, (_, index) => {
    const value = Buffer.alloc(valueBytes);
    for (let position = 0; position < valueBytes; position++) value[position] = (seed * 31 + index * 7 + position) & 0xff;
    return { key: Buffer.from(`k${seed}-${index}`), value, headers: [{ name: 'seed', value: Buffer.from(String(seed)) }], timestampMs: timestampMs + index };
  });
  return encodeBatch({ records });
}

export interface Captured {
  events: LogEvent[];
  logger: (event: LogEvent) => void;
}

export function captureEvents(): Captured {
  const events: LogEvent[] = [];
  return { events, logger: (event) => events.push(event) };
}

export async function openLog(dir: string, extra: Partial<SegmentLogOptions> = {}): Promise<SegmentLog> {
  return SegmentLog.open({ dir, segmentBytes: 8192, indexIntervalBytes: 512, flush: { mode: 'sync' }, logger: () => {}, ...extra });
}

/** Appends a batch stamped at the log end; returns the exact bytes stored. */
export function appendBatch(log: SegmentLog, batch: Buffer, epoch: number): Buffer {
  stampBatch(batch, log.endOffset, epoch);
  log.append(batch);
  return Buffer.from(batch);
}

/** Every batch from startOffset to the end, as copies. */
export function readAll(log: SegmentLog): Buffer[] {
  const batches: Buffer[] = [];
  let offset = log.startOffset;
  for (let round = 0; offset < log.endOffset && round < 100_000; round++) {
    for (const batch of log.read(offset, 65536)) {
      batches.push(Buffer.from(batch));
      offset = batchBaseOffset(batch) + batch.readUInt32LE(24);
    }
  }
  return batches;
}

export function batchBaseOffset(batch: Buffer): number {
  return batch.readUInt32LE(16) + batch.readUInt32LE(20) * 2 ** 32;
}
