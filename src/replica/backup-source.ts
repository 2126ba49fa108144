// The leader's side of a backup (issue 14): what one backup of this group copies, pinned when it
// begins, and reads of it while the replica goes on serving.
//
// Pinned at the request (Replica.openBackup): the high watermark H (every entry below it is
// committed: nothing acknowledged at quorum before the request lies above it, since this leader
// has committed an entry of its own epoch), the newest snapshot at or below H (its file is kept
// open: a newer snapshot may replace it in the store, never under the reader), and the whole log
// the leader still holds, from its start L to H. The messages are in the log, not in the
// snapshot (it holds the state: topics, queue ends, consumer offsets, producers), so the log part
// starts at L, not at the snapshot's end S: L <= S when there is a snapshot (retention removes
// only what one covers), L = 0 without one. Retention is held back at L until the backup is
// closed, so no segment of [L, H) is deleted under it; those entries are committed, so no
// truncation touches them either, whoever leads meanwhile. A log reset (this replica lost
// leadership and installed a newer snapshot) would remove them: reads then fail with
// OUT_OF_RANGE and the backup of the group starts over. Every batch read is copied out of the
// segment mapping in the same turn of the event loop, so what leaves is what was CRC-checked.
import { assert } from '../assert.js';
import { decodeBatchHeader } from '../log/index.js';
import type { ReplicaId, SnapshotId } from '../raft/types.js';
import type { Logger } from './logger.js';
import type { SnapshotChunk, SnapshotReader } from './snapshot-store.js';

/** What one backup copies, fixed when it begins. */
export interface BackupPoint {
  leaderId: ReplicaId;
  /** The leader's epoch when the backup began. */
  epoch: number;
  /** H: the log is copied up to here (exclusive); every entry below it is committed. */
  highWatermark: number;
  /** The snapshot sent (the newest at or below H), or null when there is none (the log then starts at 0). */
  snapshot: { id: SnapshotId; totalBytes: number } | null;
  /** L: where the copied log starts (the leader's log start; at or below the snapshot's end). */
  logStartOffset: number;
  /** Bytes of the batches of [L, H) as stored (their headers and CRCs included). */
  logBytes: number;
  /** The epoch of the entry at H - 1. */
  lastEpoch: number;
  /** The group's seed voters (the configuration in force while the log holds no membership entry). */
  seedVoters: ReplicaId[];
}

/** A part of the log as stored: whole batches, copied, from `offset` to `nextOffset`. */
export interface BackupLogRead {
  bytes: Buffer;
  offset: number;
  nextOffset: number;
  batchCount: number;
}

/** What a BackupSource needs of its replica: reads of the log and the release of its holds. */
export interface BackupSourceParts {
  readBatches(offset: number, bytesMax: number, endOffsetMax: number): Buffer[];
  snapshot: SnapshotReader | null;
  /** Lets retention go past the backup's start again; called once, on close. */
  release(): void;
  logger: Logger;
}

export class BackupSource {
  private closed = false;
  private sentBytes = 0;
  private readonly startedMs = Date.now();

  constructor(
    readonly point: BackupPoint,
    private readonly parts: BackupSourceParts,
  ) {
    const snapshotEndOffset = point.snapshot?.id.endOffset ?? 0;
    assert(point.logStartOffset < point.highWatermark, 'backup: the log part must hold the entry below the high watermark');
    assert(point.logStartOffset <= snapshotEndOffset && snapshotEndOffset <= point.highWatermark, 'backup: the snapshot must lie within the log part');
    parts.logger.info('backup.started', {
      highWatermark: point.highWatermark,
      snapshotEndOffset: point.snapshot?.id.endOffset ?? null,
      snapshotBytes: point.snapshot?.totalBytes ?? 0,
      logStartOffset: point.logStartOffset,
      logBytes: point.logBytes,
    });
  }

  /** Up to `bytesMax` bytes of the pinned snapshot file from `positionBytes` (header included). */
  async readSnapshot(positionBytes: number, bytesMax: number): Promise<SnapshotChunk> {
    assert(!this.closed, 'backup source used after close');
    const reader = this.parts.snapshot;
    assert(reader !== null, 'backup: no snapshot to read');
    const chunk = await reader.read(positionBytes, bytesMax);
    this.sentBytes += chunk.bytes.byteLength;
    return chunk;
  }

  /**
   * Whole batches from `offset` (a batch boundary in [L, H)), at least one, then more while
   * within `bytesMax`, none ending above H: copies, checked against their CRC when read.
   */
  readLog(offset: number, bytesMax: number): BackupLogRead {
    assert(!this.closed, 'backup source used after close');
    const { logStartOffset, highWatermark } = this.point;
    assert(offset >= logStartOffset && offset < highWatermark, `backup: log read at ${offset} outside [${logStartOffset}, ${highWatermark})`);
    const batches = this.parts.readBatches(offset, bytesMax, highWatermark);
    assert(batches.length > 0, `backup: no batch at ${offset} below ${highWatermark}`);
    const first = decodeBatchHeader(batches[0]!);
    assert(first.baseOffset === offset, `backup: the batch read at ${offset} starts at ${first.baseOffset}`);
    const last = decodeBatchHeader(batches[batches.length - 1]!);
    const bytes = Buffer.concat(batches); // a copy: a segment deleted later cannot change it
    this.sentBytes += bytes.byteLength;
    return { bytes, offset, nextOffset: last.baseOffset + last.recordCount, batchCount: batches.length };
  }

  /** Releases the retention hold and the snapshot file; `completed` says whether everything was sent. */
  close(completed: boolean, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    this.parts.snapshot?.close();
    this.parts.release();
    const fields = { highWatermark: this.point.highWatermark, sentBytes: this.sentBytes, durationMs: Date.now() - this.startedMs };
    if (completed) this.parts.logger.info('backup.finished', fields);
    else this.parts.logger.warn('backup.abandoned', { ...fields, reason });
  }
}
