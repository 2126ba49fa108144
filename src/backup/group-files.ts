// A group's files in a backup directory (issue 14), read and checked: by the backup right after
// writing them (the same facts on a second path: as the bytes arrived, and as read back from the
// synced files) and by a restore before it writes anything.
//   snapshot  the snapshot file as the leader stored it: header, id, size and payload CRC (the
//             store's own checks), then the replica's payload (id, membership) and the broker's
//             state snapshot (version, checksum, end offset) decoded
//   log       the record batches of [L, H) back to back (L: the leader's log start, at or below
//             the snapshot's end S; the messages are in the log): each whole, its CRC right,
//             offsets following on from L to exactly H, epochs never going down, the entry below
//             S in the snapshot's epoch, the last one in the epoch said
// What they hold at H comes out of the same pass: the topics (TopicCatalog: the snapshot's, then
// the topic commands from S on) and the membership in force (the newest membership entry from S
// on, else the snapshot's, else the group's seed voters).
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TopicCatalog } from '../broker/topic-catalog.js';
import type { StoredTopic } from '../broker/state-store.js';
import { batchHeaderBytes, decodeBatchHeader, verifyBatch, LogError } from '../log/index.js';
import { configOfRecord, decodeMembershipRecord } from '../raft/membership.js';
import { EntryType, type MembershipConfig, type MembershipRecord } from '../raft/types.js';
import { entryFromBatch } from '../replica/log-storage.js';
import { decodeSnapshotPayload, type SnapshotContent } from '../replica/snapshot-payload.js';
import { snapshotFileProblem, snapshotHeaderBytes } from '../replica/snapshot-store.js';
import { BackupError } from './errors.js';

/** Bytes read from a file at a time. */
const readPieceBytes = 1024 * 1024;
/** A batch longer than this in a backup's log file is damage (a produce request is at most 16 MiB by default, 1 GiB by the bound). */
export const backupBatchBytesMax = 1024 * 1024 * 1024;

/** What a group's files must hold (from the manifest, or from the leader's start message). */
export interface GroupExpectation {
  id: string;
  snapshot: { endOffset: number; epoch: number; name: string } | null;
  log: { name: string; startOffset: number; endOffset: number };
  lastEpoch: number;
  seedVoters: readonly string[];
}

/** What a group's files hold, checked. */
export interface GroupContent {
  snapshot: SnapshotContent | null;
  batchCount: number;
  /** The epoch of the first batch (the log is reset in it when it starts above 0 and below S). */
  firstEpoch: number;
  /** Topics the group's state holds at H. */
  topics: StoredTopic[];
  /** The configuration in force at H. */
  membership: MembershipConfig;
}

/** Size and SHA-256 of a file (BackupError naming it when it cannot be read). */
export async function hashFile(path: string, name: string): Promise<{ bytes: number; sha256: string }> {
  const handle = await openFile(path, name);
  try {
    const hash = createHash('sha256');
    const piece = Buffer.alloc(readPieceBytes);
    let bytes = 0;
    for (;;) {
      const { bytesRead } = await handle.read(piece, 0, piece.byteLength, bytes);
      if (bytesRead === 0) break;
      hash.update(piece.subarray(0, bytesRead));
      bytes += bytesRead;
    }
    return { bytes, sha256: hash.digest('hex') };
  } finally {
    await handle.close();
  }
}

async function openFile(path: string, name: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BackupError(`backup file ${name} is missing (${path})`);
    throw new BackupError(`backup file ${name} cannot be read (${path}): ${code ?? (error as Error).message}`);
  }
}

/**
 * The batches of a backup's log file in order, each a copy checked whole (length, magic, CRC);
 * BackupError naming the file and the byte where it is damaged.
 */
export async function* batchesOfFile(path: string, name: string): AsyncGenerator<Buffer> {
  const handle = await openFile(path, name);
  try {
    let pending = Buffer.alloc(0);
    let filePosition = 0;
    let batchPosition = 0;
    for (;;) {
      const piece = Buffer.alloc(readPieceBytes);
      const { bytesRead } = await handle.read(piece, 0, piece.byteLength, filePosition);
      filePosition += bytesRead;
      pending = pending.byteLength === 0 ? piece.subarray(0, bytesRead) : Buffer.concat([pending, piece.subarray(0, bytesRead)]);
      while (pending.byteLength >= batchHeaderBytes) {
        const length = decodeBatchHeader(pending).batchLength;
        if (length < batchHeaderBytes || length > backupBatchBytesMax)
          throw new BackupError(`backup file ${name} is damaged at byte ${batchPosition}: a batch length of ${length}`);
        if (pending.byteLength < length) break;
        const batch = Buffer.from(pending.subarray(0, length));
        try {
          verifyBatch(batch);
        } catch (error) {
          if (!(error instanceof LogError)) throw error;
          throw new BackupError(`backup file ${name} is damaged at byte ${batchPosition}: ${error.message}`);
        }
        yield batch;
        pending = pending.subarray(length);
        batchPosition += length;
      }
      if (bytesRead === 0) break;
    }
    if (pending.byteLength > 0)
      throw new BackupError(`backup file ${name} ends inside a batch at byte ${batchPosition} (${pending.byteLength} bytes left): it is cut short`);
  } finally {
    await handle.close();
  }
}

/** Reads and checks a group's files in `dir` against `expected`; BackupError naming the file and the problem. */
export async function readGroupContent(dir: string, expected: GroupExpectation): Promise<GroupContent> {
  const snapshot = await readSnapshot(dir, expected);
  let catalog: TopicCatalog;
  try {
    catalog = TopicCatalog.fromSnapshot(snapshot === null ? null : { endOffset: snapshot.meta.endOffset, payload: snapshot.machinePayload });
  } catch (error) {
    throw new BackupError(`backup file ${expected.snapshot?.name}: ${(error as Error).message}`);
  }
  let membership: MembershipRecord | null = snapshot?.meta.membership ?? null;
  const { name, startOffset, endOffset } = expected.log;
  const snapshotEndOffset = snapshot?.meta.endOffset ?? 0;
  if (startOffset > snapshotEndOffset || snapshotEndOffset > endOffset)
    throw new BackupError(`group ${expected.id}: the log part ${startOffset}..${endOffset} does not hold the snapshot's end ${snapshotEndOffset}`);
  let offset = startOffset;
  let epoch = 0;
  let firstEpoch = 0;
  let batchCount = 0;
  for await (const batch of batchesOfFile(join(dir, name), name)) {
    const entry = entryFromBatch(batch);
    if (entry.offset !== offset) throw new BackupError(`backup file ${name}: batch ${batchCount} starts at offset ${entry.offset}, expected ${offset}`);
    if (entry.epoch < epoch) throw new BackupError(`backup file ${name}: the batch at offset ${offset} has epoch ${entry.epoch}, below ${epoch} before it`);
    if (entry.offset + entry.count > endOffset)
      throw new BackupError(`backup file ${name}: the batch at offset ${offset} ends above the high watermark ${endOffset}`);
    if (entry.offset + entry.count === snapshotEndOffset && entry.epoch !== snapshot?.meta.epoch)
      throw new BackupError(
        `backup file ${name}: the entry below the snapshot's end ${snapshotEndOffset} is in epoch ${entry.epoch}, the snapshot in ${snapshot?.meta.epoch}`,
      );
    if (entry.offset >= snapshotEndOffset) {
      try {
        if (entry.type === EntryType.Membership) membership = decodeMembershipRecord(entry.offset, entry.payload);
        else if (entry.type === EntryType.Data) catalog.apply(entry);
      } catch (error) {
        // The batch's CRC held: the writer of this entry, not the disk, got it wrong.
        throw new BackupError(`backup file ${name}: the entry at offset ${offset} does not decode: ${(error as Error).message}`);
      }
    }
    if (batchCount === 0) firstEpoch = entry.epoch;
    epoch = entry.epoch;
    offset = entry.offset + entry.count;
    batchCount++;
  }
  if (offset !== endOffset) throw new BackupError(`backup file ${name} ends at offset ${offset}, not at the high watermark ${endOffset}: it is incomplete`);
  if (epoch !== expected.lastEpoch) throw new BackupError(`backup file ${name} ends in epoch ${epoch}, not ${expected.lastEpoch} as recorded`);
  return {
    snapshot,
    batchCount,
    firstEpoch,
    topics: catalog.list(),
    membership: membership === null ? { voters: [...expected.seedVoters], learners: [], endpoints: [] } : configOfRecord(membership),
  };
}

async function readSnapshot(dir: string, expected: GroupExpectation): Promise<SnapshotContent | null> {
  const wanted = expected.snapshot;
  if (wanted === null) {
    if (expected.log.startOffset !== 0)
      throw new BackupError(`group ${expected.id}: the log part starts at ${expected.log.startOffset}, above 0, without a snapshot`);
    return null;
  }
  const path = join(dir, wanted.name);
  const id = { endOffset: wanted.endOffset, epoch: wanted.epoch };
  await (await openFile(path, wanted.name)).close(); // missing or unreadable: named as such
  const problem = await snapshotFileProblem(path, id);
  if (problem !== null) throw new BackupError(`backup file ${wanted.name} is not a whole snapshot ${id.endOffset}-${id.epoch}: ${problem}`);
  const handle = await openFile(path, wanted.name);
  let file: Buffer;
  try {
    file = await handle.readFile();
  } finally {
    await handle.close();
  }
  try {
    return decodeSnapshotPayload(id, file.subarray(snapshotHeaderBytes));
  } catch (error) {
    throw new BackupError(`backup file ${wanted.name}: ${(error as Error).message}`);
  }
}
