// TEST ONLY (issue 11): a record of what fdatasync has covered, so tests can see a missing sync.
//   - In process: setSyncObserverForTests(fn) hears every completed flush.
//   - Across processes: with MAMBA_TEST_SYNC_RECORD=1 in the environment, each log keeps
//     `synced-length.test` beside its directory: the segment, byte position and offset its last
//     completed flush covered. The page cache survives kill -9, so a chaos script that kills a
//     broker can read it and cut the log back to what a power loss would have left.
// Off by default: no file is written and the observer is null.
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface SyncRecord {
  /** The log directory. */
  dir: string;
  /** The segment the flush covered up to `position` (every earlier segment is covered whole). */
  baseOffset: number;
  position: number;
  /** Every offset below this was covered by a completed fdatasync. */
  offset: number;
  /** Completed flushes of this log since it was opened. */
  syncCount: number;
}

const recordFileName = 'synced-length.test';
const recordBytes = 256;
let observer: ((record: SyncRecord) => void) | null = null;
const fileEnabled = process.env.MAMBA_TEST_SYNC_RECORD === '1';

export function setSyncObserverForTests(listener: ((record: SyncRecord) => void) | null): void {
  observer = listener;
}

export function syncRecordPath(logDir: string): string {
  return join(dirname(logDir), recordFileName);
}

/** Called by the log after each completed flush (and on open, after recovery synced the tail). */
export function noteSynced(record: SyncRecord): void {
  observer?.(record);
  if (!fileEnabled) return;
  const text = JSON.stringify(record);
  const buffer = Buffer.alloc(recordBytes, 0x20);
  buffer.write(text, 0, 'utf8');
  buffer[recordBytes - 1] = 0x0a;
  // One positional write of the whole record, never a truncation: a kill -9 at any point leaves
  // the previous record or this one.
  const fd = openSync(syncRecordPath(record.dir), constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    writeSync(fd, buffer, 0, recordBytes, 0);
  } finally {
    closeSync(fd);
  }
}

/** The last record written for `logDir`, or null when there is none. */
export function readSyncRecord(logDir: string): SyncRecord | null {
  try {
    return JSON.parse(readFileSync(syncRecordPath(logDir), 'utf8').trim()) as SyncRecord;
  } catch {
    return null;
  }
}
