// Disks that lie (issue 11): what a stopped broker's files look like after
//   - lose-tail: the newest ~128 KiB of its last segment zeroed (writes it had confirmed, lost);
//   - corrupt:   bit flips in the data of an older segment, or its header zeroed;
//   - powerloss: each segment cut back to what fdatasync had covered, read from the test-only
//                sync record the log keeps with MAMBA_TEST_SYNC_RECORD=1 (src/log/sync-record.ts);
//                the page cache survives kill -9, so without the record nothing would be lost.
// Every function works on a log directory whose broker is not running.
import { closeSync, fstatSync, openSync, readdirSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readSyncRecord } from '../../src/log/index.js';
import { segmentHeaderBytes } from '../../src/log/segment-files.js';
import type { Prng } from '../../test/sim/prng.js';
import { lastBatchLayout } from './torn-tail.js';

export const lostTailBytes = 128 * 1024;
const bitFlipsMax = 8;

function segmentNames(logDir: string): string[] {
  return readdirSync(logDir)
    .filter((name) => /^\d{20}\.log$/.test(name))
    .sort();
}

function readWhole(file: string): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(fstatSync(fd).size);
    readSync(fd, buffer, 0, buffer.length, 0);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

function writeAt(file: string, bytes: Buffer, position: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, position);
  } finally {
    closeSync(fd);
  }
}

/** lose-tail: zeroes the newest `lostTailBytes` of data of the last segment holding any. */
export function loseTail(logDir: string): string {
  const names = segmentNames(logDir).reverse();
  for (const name of names) {
    const file = join(logDir, name);
    const layout = lastBatchLayout(readWhole(file));
    if (layout === null) continue;
    const from = Math.max(segmentHeaderBytes, layout.dataEndPosition - lostTailBytes);
    writeAt(file, Buffer.alloc(layout.dataEndPosition - from), from);
    return `${name}: bytes ${from}..${layout.dataEndPosition} zeroed`;
  }
  return 'no data to lose';
}

/**
 * corrupt: an older segment (not the last) when there is one, else the last one well before its
 * tail; half the time its header is zeroed, else a few bits of its data are flipped.
 */
export function corruptOlderSegment(logDir: string, prng: Prng): string {
  const names = segmentNames(logDir);
  if (names.length === 0) return 'no segment';
  const older = names.length > 1 ? names.slice(0, -1) : names;
  const name = prng.pick(older);
  const file = join(logDir, name);
  if (prng.chance(0.5)) {
    writeAt(file, Buffer.alloc(segmentHeaderBytes), 0);
    return `${name}: header zeroed`;
  }
  const layout = lastBatchLayout(readWhole(file));
  if (layout === null) {
    writeAt(file, Buffer.alloc(segmentHeaderBytes), 0);
    return `${name}: no batch; header zeroed`;
  }
  // Before the tail: in the only segment, within the first half of its data (not a torn tail).
  const end = names.length > 1 ? layout.dataEndPosition : Math.max(segmentHeaderBytes + 1, Math.floor(layout.dataEndPosition / 2));
  const flips = prng.int(1, bitFlipsMax);
  const positions: number[] = [];
  for (let i = 0; i < flips; i++) {
    const position = prng.int(segmentHeaderBytes, end - 1);
    const byte = readWhole(file).subarray(position, position + 1);
    writeAt(file, Buffer.from([byte[0]! ^ (1 << prng.int(0, 7))]), position);
    positions.push(position);
  }
  return `${name}: ${flips} bit(s) flipped at bytes ${positions.join(',')}`;
}

/** powerloss: every segment cut back to what the last completed fdatasync covered. */
export function cutToSynced(logDir: string): string {
  const record = readSyncRecord(logDir);
  if (record === null) return 'no sync record (MAMBA_TEST_SYNC_RECORD not set?): nothing cut';
  const cuts: string[] = [];
  for (const name of segmentNames(logDir)) {
    const baseOffset = Number(name.slice(0, 20));
    if (baseOffset < record.baseOffset) continue;
    const file = join(logDir, name);
    const size = fstatSizeOf(file);
    const from = baseOffset === record.baseOffset ? record.position : segmentHeaderBytes;
    if (from >= size) continue;
    const data = readWhole(file).subarray(from);
    const nonZeroEnd = lastNonZero(data);
    if (nonZeroEnd === 0) continue;
    writeAt(file, Buffer.alloc(nonZeroEnd), from);
    cuts.push(`${name} from byte ${from} (${nonZeroEnd} bytes)`);
  }
  return `synced to offset ${record.offset}; ${cuts.length ? `zeroed ${cuts.join(', ')}` : 'nothing unsynced'}`;
}

function fstatSizeOf(file: string): number {
  const fd = openSync(file, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** Length of `data` up to and including its last non-zero byte. */
function lastNonZero(data: Buffer): number {
  for (let index = data.length - 1; index >= 0; index--) if (data[index] !== 0) return index + 1;
  return 0;
}
