// A replica's data directory made from a backup (issue 14), as the replica itself would have left
// it after installing a snapshot and fetching the log after it (replica.ts, installSnapshot):
//   format.json  the directory's identity (format.ts), new or the one the directory had
//   snapshots/   the backup's snapshot, through the store's receive path (header, id, payload CRC
//                checked as received and read back from the synced file)
//   log/         reset to start, empty, where the backup's log starts (L, at or below the
//                snapshot's end S: the retained log before S carries the messages), then the
//                backup's batches as stored (append checks each CRC and that offsets follow on),
//                then the restore's own entries in the last epoch; flushed
//   meta/        epoch = the last entry's epoch, no vote, commit mark = the log's end: every
//                replica of the restored group holds the same log, so all of it is committed
//   promise      the log's end (it is durable)
// The broker's own store (state/) is not written: on its first start it restores the snapshot
// (its applied offset is below the snapshot's end), indexes the log from L and applies it from S.
// The caller writes into a directory that does not exist yet (a temporary sibling it renames into
// place once every directory of the restore is complete).
import { copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { assert } from '../assert.js';
import { crc32c, fsyncDirectory, SegmentLog, type LogLogger } from '../log/index.js';
import type { EntryType, SnapshotId } from '../raft/types.js';
import { formatDataDirectory, formatFileName } from './format.js';
import { batchOfEntry } from './log-storage.js';
import { MetaStore } from './meta-store.js';
import { PromiseFile } from './promise-file.js';
import { logDirName, metaDirName, promiseFileName } from './replica.js';
import { snapshotChunkBytesMax, SnapshotStore, snapshotsDirName } from './snapshot-store.js';

export interface SeedSnapshot {
  id: SnapshotId;
  /** Size of the file as stored, its header included. */
  totalBytes: number;
  /** Bytes of the file from `position`, at most `bytesMax`, at least one while any is left. */
  read(position: number, bytesMax: number): Promise<Buffer>;
}

/** An entry the restore adds after the copied log (a membership change, a topic deletion). */
export interface SeedEntry {
  type: EntryType;
  payload: Uint8Array;
}

export interface SeedSource {
  /** The snapshot of the state at S (L <= S), or null (the log then starts at 0). */
  snapshot: SeedSnapshot | null;
  /** L: where the copied log starts. */
  logStartOffset: number;
  /** The epoch the log is reset in when it starts above 0: of the entry below L, or no higher than the first batch's. */
  logStartEpoch: number;
  /** The log's batches from L, in order, as the leader stored them. */
  batches: AsyncIterable<Buffer>;
  /** The epoch of the last copied entry (the snapshot's when the log part is empty). */
  lastEpoch: number;
  appended: readonly SeedEntry[];
}

export interface SeedOptions {
  dataDir: string;
  identity: { cluster: string; group: string; brokerId: string };
  /** A format record to keep (the path of the one the target directory had), or null for a new one. */
  keptFormatFile: string | null;
  segmentBytes: number;
  logger: LogLogger;
}

export interface SeededDirectory {
  startOffset: number;
  endOffset: number;
  epoch: number;
  appendedOffsets: number[];
}

export async function seedDataDirectory(options: SeedOptions, source: SeedSource): Promise<SeededDirectory> {
  assert(!existsSync(options.dataDir), `seed: ${options.dataDir} exists`);
  assert(Number.isInteger(source.lastEpoch) && source.lastEpoch >= 1, `seed: bad last epoch ${source.lastEpoch}`);
  const snapshotEndOffset = source.snapshot?.id.endOffset ?? 0;
  assert(source.logStartOffset <= snapshotEndOffset, `seed: the log starts at ${source.logStartOffset}, above the snapshot's end ${snapshotEndOffset}`);
  if (options.keptFormatFile === null) formatDataDirectory(options.dataDir, options.identity);
  else keepFormat(options.dataDir, options.keptFormatFile);
  if (source.snapshot !== null) await receiveSnapshot(join(options.dataDir, snapshotsDirName), source.snapshot, options.logger);
  const startOffset = source.logStartOffset;
  const log = await SegmentLog.open({
    dir: join(options.dataDir, logDirName),
    segmentBytes: options.segmentBytes,
    flush: { mode: 'async', intervalMs: 1000 },
    logger: options.logger,
  });
  const appendedOffsets: number[] = [];
  let endOffset: number;
  try {
    if (startOffset > 0) log.resetTo(startOffset, source.logStartEpoch);
    for await (const batch of source.batches) log.append(batch);
    assert(log.endOffset >= snapshotEndOffset, `seed: the copied log ends at ${log.endOffset}, below the snapshot's end ${snapshotEndOffset}`);
    assert(log.lastEpoch === source.lastEpoch, `seed: the copied log ends in epoch ${log.lastEpoch}, not ${source.lastEpoch}`);
    const nowMs = Date.now();
    for (const entry of source.appended) {
      appendedOffsets.push(log.endOffset);
      log.append(batchOfEntry({ epoch: source.lastEpoch, offset: log.endOffset, count: 1, type: entry.type, payload: entry.payload }, nowMs));
    }
    await log.flush();
    endOffset = log.endOffset;
  } finally {
    await log.close();
  }
  const meta = MetaStore.open(join(options.dataDir, metaDirName));
  try {
    meta.saveHardState({ epoch: source.lastEpoch, votedFor: null });
    meta.seedCommitMark(snapshotEndOffset, endOffset);
  } finally {
    await meta.close();
  }
  const promise = PromiseFile.open(join(options.dataDir, promiseFileName), 0);
  promise.storeSync(endOffset);
  promise.close();
  fsyncDirectory(options.dataDir);
  return { startOffset, endOffset, epoch: source.lastEpoch, appendedOffsets };
}

/** The snapshot file through the store's receive path (every check of a follower's install). */
async function receiveSnapshot(dir: string, snapshot: SeedSnapshot, logger: LogLogger): Promise<void> {
  const store = await SnapshotStore.open({ dir, logger });
  try {
    store.beginReceive(snapshot.id, snapshot.totalBytes);
    for (let position = 0; position < snapshot.totalBytes; ) {
      const bytes = await snapshot.read(position, snapshotChunkBytesMax);
      assert(bytes.byteLength > 0, `seed: the snapshot ended at byte ${position} of ${snapshot.totalBytes}`);
      store.appendChunk(position, bytes, crc32c(bytes) >>> 0);
      position += bytes.byteLength;
    }
    await store.finishReceive();
  } finally {
    store.close();
  }
}

function keepFormat(dataDir: string, file: string): void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, formatFileName);
  copyFileSync(file, path);
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  fsyncDirectory(dataDir);
}
