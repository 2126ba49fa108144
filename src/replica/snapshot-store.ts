// Snapshots of the broker's state machine (issue 13 point 1; DESIGN §12 "Snapshots and
// retention"), kept in `snapshots/` of the replica's data directory, beside the log.
//
// A snapshot is the state with every entry below `endOffset` applied; its id is
// {endOffset, epoch}, the epoch being that of the entry at endOffset - 1 (as KRaft's snapshot id,
// KIP-630). File `<endOffset:20 digits>-<epoch:10 digits>.snapshot` (zero-padded: name order is id
// order), 64-byte header, little-endian:
//   0 magic "MAMBASNP" | 8 u16 version (1) | 10 u16 headerBytes (64) | 12 u32 reserved (0)
//   16 u64 endOffset | 24 u32 epoch | 28 u32 reserved (0) | 32 u64 payloadBytes
//   40 u32 CRC32C of the payload | 44..60 reserved (0) | 60 u32 CRC32C of bytes [0, 60)
// then the payload, opaque here (the broker serialises its state). The header has its own CRC so
// a receiver checks it as soon as its first 64 bytes arrive, before taking the rest.
//
// Every snapshot is written as `<name>.partial`, synced, renamed into place and the directory
// synced: a name without `.partial` is always complete. After each new one only the newest
// keepCount stay (default 2: a follower still fetching the previous snapshot when a new one is
// taken finishes instead of starting over; it gets snapshot_gone only after two newer ones).
//
// Transfer: the leader serves byte ranges of the file as stored, header included (readChunk);
// the follower appends them in order (beginReceive, appendChunk, finishReceive), which checks
// the header, the id and the payload CRC both as received and as read back from the synced file
// before renaming it into place. Each chunk carries its own CRC, so damage in transit costs one
// chunk, not the transfer.
//
// Resuming: inside one process a transfer continues from receivedBytes (after a lost connection,
// or from a new leader holding the same snapshot): beginReceive with the same id and size keeps
// the partial file. Across a restart it starts over: open() deletes every partial, as KRaft does
// at start-up. Resuming there would mean trusting a partial file's length, which a power loss can
// leave covering bytes that never reached the disk (nothing syncs a partial before it is
// complete): it would need a sync per chunk, or it would find the damage only at the final CRC
// and start over anyway, after a re-read of the partial to rebuild the CRC. What it would save is
// small: the state this holds (topics, queue heads, consumer offsets, producers) is small next to
// the log, and 64 MiB went through this store (1 MiB chunks read, appended, synced, read back,
// renamed; no network) in 0.2-0.3 s on this machine's virtual disk, about 0.5 s more on a 1 Gbit/s
// link: less than the restart and the election timeout (300-600 ms) that come before a retry.
import * as fs from 'node:fs';
import { dirname, join } from 'node:path';
import { assert } from '../assert.js';
import { MambaError, type ErrorKind } from '../errors.js';
import { crc32c, type LogEvent, type LogLogger } from '../log/index.js';

export interface SnapshotId {
  /** Every entry below this offset is in the snapshot. */
  endOffset: number;
  /** Epoch of the entry at endOffset - 1. */
  epoch: number;
}

/** A byte range of a snapshot file, for the leader to send. */
export interface SnapshotChunk {
  bytes: Buffer;
  /** Size of the whole file (header included): what the follower announces to beginReceive. */
  totalBytes: number;
  /** True when the range reaches the end of the file. */
  done: boolean;
  /** CRC32C of `bytes`, checked by appendChunk. */
  chunkCrc: number;
}

export interface ReceiveProgress {
  id: SnapshotId;
  receivedBytes: number;
  totalBytes: number;
  done: boolean;
}

export interface SnapshotStoreOptions {
  /** The snapshots directory (`snapshots/` of the data directory, see snapshotsDirName). */
  dir: string;
  /** Snapshots kept after each new one, newest first. Default 2. */
  keepCount?: number;
  /** Largest payload written, served or received. Default 256 MiB. */
  payloadBytesMax?: number;
  logger?: LogLogger;
}

export const snapshotsDirName = 'snapshots';
export const snapshotHeaderBytes = 64;
/** Largest chunk served or taken: well under gRPC's default 4 MiB message limit. */
export const snapshotChunkBytesMax = 1024 * 1024;
export const snapshotKeepCountDefault = 2;
export const snapshotKeepCountMax = 16;
export const snapshotPayloadBytesMaxDefault = 256 * 1024 * 1024;
/** The payload is held in memory by write and readPayload: 1 GiB is the most this allows. */
export const snapshotPayloadBytesMaxLimit = 1024 * 1024 * 1024;
const epochMax = 0xffff_ffff;
const magic = Buffer.from('MAMBASNP', 'latin1');
const fileVersion = 1;
const headerCrcPosition = 60;
/** Piece size when a whole file's CRC is checked (open, finishing a write or a receive). */
const verifyPieceBytes = 1024 * 1024;
const namePattern = /^(\d{20})-(\d{10})\.snapshot$/;
const partialSuffix = '.partial';

// ---------------------------------------------------------------- errors
export type SnapshotErrorCode =
  | 'bad_config' // an option is missing or out of bounds; `key` names it
  | 'bad_id' // an id that is not {endOffset: offset, epoch: u32}
  | 'snapshot_gone' // the snapshot is no longer held (a newer one replaced it): start over with the newest
  | 'snapshot_corrupt' // stored or received bytes fail a check (magic, version, id, size, CRC); `file` names it
  | 'snapshot_too_large' // a payload above payloadBytesMax
  | 'snapshot_stale' // the id is not newer than the newest snapshot held
  | 'snapshot_busy' // a write or an install already runs (one at a time), or the id is being received
  | 'bad_position' // readChunk at a position beyond the end of the file
  | 'bad_chunk' // a chunk that is empty, above snapshotChunkBytesMax or beyond the announced size
  | 'chunk_out_of_order' // a chunk not at receivedBytes: resume from `position`
  | 'chunk_corrupt' // a chunk's bytes do not match its CRC: ask for the same position again
  | 'no_transfer' // appendChunk or finishReceive without a transfer begun
  | 'transfer_incomplete' // finishReceive before totalBytes arrived
  | 'write_failed'; // the file took fewer bytes than given (disk full)

const kindByCode: Record<SnapshotErrorCode, { kind: ErrorKind; retriable: boolean }> = {
  bad_config: { kind: 'invalid_argument', retriable: false },
  bad_id: { kind: 'invalid_argument', retriable: false },
  snapshot_gone: { kind: 'not_found', retriable: true },
  snapshot_corrupt: { kind: 'internal', retriable: false },
  snapshot_too_large: { kind: 'resource_exhausted', retriable: false },
  snapshot_stale: { kind: 'already_exists', retriable: false },
  snapshot_busy: { kind: 'unavailable', retriable: true },
  bad_position: { kind: 'out_of_range', retriable: false },
  bad_chunk: { kind: 'invalid_argument', retriable: false },
  chunk_out_of_order: { kind: 'out_of_range', retriable: true },
  chunk_corrupt: { kind: 'internal', retriable: true },
  no_transfer: { kind: 'invalid_argument', retriable: false },
  transfer_incomplete: { kind: 'invalid_argument', retriable: false },
  write_failed: { kind: 'unavailable', retriable: true },
};

export class SnapshotError extends MambaError {
  override readonly name = 'SnapshotError';
  constructor(
    readonly code: SnapshotErrorCode,
    message: string,
    readonly details: { file?: string; key?: string; position?: number } = {},
  ) {
    super(kindByCode[code].kind, message, kindByCode[code].retriable);
  }
}

// ---------------------------------------------------------------- names and header
export function snapshotFileName(id: SnapshotId): string {
  return `${String(id.endOffset).padStart(20, '0')}-${String(id.epoch).padStart(10, '0')}.snapshot`;
}

function parseFileName(name: string): SnapshotId | null {
  const match = namePattern.exec(name);
  if (match === null) return null;
  const id = { endOffset: Number(match[1]), epoch: Number(match[2]) };
  return Number.isSafeInteger(id.endOffset) && id.epoch <= epochMax ? id : null;
}

/** Orders ids by endOffset, then epoch (negative: `left` is older). */
export function compareSnapshotIds(left: SnapshotId, right: SnapshotId): number {
  return left.endOffset - right.endOffset || left.epoch - right.epoch;
}

function sameId(left: SnapshotId, right: SnapshotId): boolean {
  return left.endOffset === right.endOffset && left.epoch === right.epoch;
}

function checkId(id: SnapshotId): void {
  const sound = Number.isSafeInteger(id?.endOffset) && id.endOffset >= 0 && Number.isInteger(id.epoch) && id.epoch >= 0 && id.epoch <= epochMax;
  if (!sound) throw new SnapshotError('bad_id', `not a snapshot id: ${JSON.stringify(id)}`);
}

function encodeHeader(id: SnapshotId, payloadBytes: number, payloadCrc: number): Buffer {
  const header = Buffer.alloc(snapshotHeaderBytes);
  magic.copy(header, 0);
  header.writeUInt16LE(fileVersion, 8);
  header.writeUInt16LE(snapshotHeaderBytes, 10);
  header.writeBigUInt64LE(BigInt(id.endOffset), 16);
  header.writeUInt32LE(id.epoch, 24);
  header.writeBigUInt64LE(BigInt(payloadBytes), 32);
  header.writeUInt32LE(payloadCrc >>> 0, 40);
  header.writeUInt32LE(crc32c(header.subarray(0, headerCrcPosition)) >>> 0, headerCrcPosition);
  return header;
}

interface Header {
  id: SnapshotId;
  payloadBytes: number;
  payloadCrc: number;
}

/** The header's facts, or why it is unacceptable (a string). */
function decodeHeader(header: Buffer): Header | string {
  if (header.byteLength < snapshotHeaderBytes) return `shorter than its ${snapshotHeaderBytes}-byte header`;
  if (!header.subarray(0, 8).equals(magic)) return 'wrong magic';
  if (header.readUInt32LE(headerCrcPosition) !== crc32c(header.subarray(0, headerCrcPosition)) >>> 0) return 'header crc mismatch';
  if (header.readUInt16LE(8) !== fileVersion) return `unsupported version ${header.readUInt16LE(8)}`;
  if (header.readUInt16LE(10) !== snapshotHeaderBytes) return 'unexpected header size';
  const endOffset = Number(header.readBigUInt64LE(16));
  const payloadBytes = Number(header.readBigUInt64LE(32));
  if (!Number.isSafeInteger(endOffset) || !Number.isSafeInteger(payloadBytes)) return 'offset or size out of range';
  return { id: { endOffset, epoch: header.readUInt32LE(24) }, payloadBytes, payloadCrc: header.readUInt32LE(40) };
}

/** Why a decoded header does not describe snapshot `id` of `totalBytes` bytes, or null. */
function headerMismatch(header: Header, id: SnapshotId, totalBytes: number, payloadBytesMax: number): string | null {
  if (!sameId(header.id, id)) return `header names snapshot ${header.id.endOffset}-${header.id.epoch}, not ${id.endOffset}-${id.epoch}`;
  if (header.payloadBytes > payloadBytesMax) return `payload of ${header.payloadBytes} bytes exceeds payloadBytesMax ${payloadBytesMax}`;
  if (snapshotHeaderBytes + header.payloadBytes !== totalBytes)
    return `header says ${snapshotHeaderBytes + header.payloadBytes} bytes, the file has ${totalBytes}`;
  return null;
}

// ---------------------------------------------------------------- small file helpers
async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error === null ? resolve() : reject(error))));
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}

/**
 * Why the complete snapshot file at `path` is unacceptable for `id`, or null: header, size and
 * payload CRC, the payload read in pieces (memory stays bounded by verifyPieceBytes).
 */
async function fileProblem(path: string, id: SnapshotId, payloadBytesMax: number): Promise<string | null> {
  const handle = await fs.promises.open(path, 'r');
  try {
    const totalBytes = (await handle.stat()).size;
    const headerBuffer = Buffer.alloc(snapshotHeaderBytes);
    const { bytesRead } = await handle.read(headerBuffer, 0, snapshotHeaderBytes, 0);
    const header = decodeHeader(headerBuffer.subarray(0, bytesRead));
    if (typeof header === 'string') return header;
    const mismatch = headerMismatch(header, id, totalBytes, payloadBytesMax);
    if (mismatch !== null) return mismatch;
    const piece = Buffer.alloc(Math.min(verifyPieceBytes, Math.max(1, header.payloadBytes)));
    let crc = 0;
    for (let position = snapshotHeaderBytes; position < totalBytes; ) {
      const read = await handle.read(piece, 0, Math.min(piece.byteLength, totalBytes - position), position);
      if (read.bytesRead === 0) return `file ended at byte ${position}`;
      crc = crc32c(piece.subarray(0, read.bytesRead), crc);
      position += read.bytesRead;
    }
    return crc >>> 0 === header.payloadCrc ? null : 'payload crc mismatch';
  } finally {
    await handle.close();
  }
}

/**
 * Why the file at `path` is not a whole snapshot `id` (header, size, payload CRC), or null: the
 * checks the store makes of its own files, for copies kept elsewhere (a backup's).
 */
export function snapshotFileProblem(path: string, id: SnapshotId, payloadBytesMax = snapshotPayloadBytesMaxDefault): Promise<string | null> {
  checkId(id);
  return fileProblem(path, id, payloadBytesMax);
}

// ---------------------------------------------------------------- store
/** A follower's transfer in progress: the partial file and what the chunks so far held. */
interface Transfer {
  id: SnapshotId;
  totalBytes: number;
  receivedBytes: number;
  path: string;
  fd: number;
  /** The first snapshotHeaderBytes bytes, filled as they arrive; checked once complete. */
  header: Buffer;
  /** CRC32C of the payload bytes received so far (those after the header). */
  payloadCrc: number;
}

interface ResolvedOptions {
  dir: string;
  keepCount: number;
  payloadBytesMax: number;
  logger: LogLogger;
}

function integerIn(value: unknown, minimum: number, maximum: number, key: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < minimum || value > maximum) {
    throw new SnapshotError('bad_config', `${key} must be an integer in [${minimum}, ${maximum}], got ${String(value)}`, { key });
  }
  return value;
}

function resolveOptions(options: SnapshotStoreOptions): ResolvedOptions {
  if (typeof options.dir !== 'string' || options.dir.length === 0) throw new SnapshotError('bad_config', 'dir must be a non-empty path', { key: 'dir' });
  return {
    dir: options.dir,
    keepCount: integerIn(options.keepCount ?? snapshotKeepCountDefault, 1, snapshotKeepCountMax, 'keepCount'),
    payloadBytesMax: integerIn(options.payloadBytesMax ?? snapshotPayloadBytesMaxDefault, 0, snapshotPayloadBytesMaxLimit, 'payloadBytesMax'),
    logger: options.logger ?? ((event: LogEvent) => process.stderr.write(`${JSON.stringify(event)}\n`)),
  };
}

export class SnapshotStore {
  /** Snapshots held, oldest first; a file is deleted only after its id left this list. */
  private readonly ids: SnapshotId[];
  private transfer: Transfer | null = null;
  /** The snapshot a write or an install (finishReceive) is syncing and renaming: one at a time. */
  private installingId: SnapshotId | null = null;
  private closed = false;

  private constructor(
    private readonly options: ResolvedOptions,
    ids: SnapshotId[],
  ) {
    this.ids = ids;
  }

  /**
   * Opens (creating) the directory and recovers it: deletes every `.partial` (a write or transfer
   * a crash interrupted; see the file comment on resuming) and every snapshot that fails its
   * checks, each with a log line, then keeps the newest keepCount. Other files are left alone
   * and logged.
   */
  static async open(options: SnapshotStoreOptions): Promise<SnapshotStore> {
    const resolved = resolveOptions(options);
    const created = fs.mkdirSync(resolved.dir, { recursive: true });
    if (created !== undefined) await syncDirectory(dirname(resolved.dir));
    const ids: SnapshotId[] = [];
    let removedCount = 0;
    for (const name of fs.readdirSync(resolved.dir).sort()) {
      const path = join(resolved.dir, name);
      const id = parseFileName(name);
      if (id !== null) {
        const problem = await fileProblem(path, id, resolved.payloadBytesMax);
        if (problem === null) ids.push(id);
        else {
          fs.rmSync(path, { force: true });
          removedCount++;
          resolved.logger({ event: 'snapshot.removed_corrupt', file: path, reason: problem });
        }
      } else if (name.endsWith(partialSuffix) && parseFileName(name.slice(0, -partialSuffix.length)) !== null) {
        fs.rmSync(path, { force: true });
        removedCount++;
        resolved.logger({ event: 'snapshot.removed_partial', file: path });
      } else {
        resolved.logger({ event: 'snapshot.foreign_file', file: path });
      }
    }
    if (removedCount > 0) await syncDirectory(resolved.dir);
    const store = new SnapshotStore(resolved, ids.sort(compareSnapshotIds));
    await store.prune();
    const latest = store.latest();
    resolved.logger({
      event: 'snapshot.opened',
      dir: resolved.dir,
      count: store.ids.length,
      endOffset: latest?.endOffset ?? null,
      epoch: latest?.epoch ?? null,
    });
    return store;
  }

  get dir(): string {
    return this.options.dir;
  }

  /** The newest snapshot held, or null. */
  latest(): SnapshotId | null {
    const newest = this.ids[this.ids.length - 1];
    return newest === undefined ? null : { ...newest };
  }

  /** Every snapshot held, oldest first. */
  list(): SnapshotId[] {
    return this.ids.map((id) => ({ ...id }));
  }

  has(id: SnapshotId): boolean {
    return this.ids.some((held) => sameId(held, id));
  }

  private pathOf(id: SnapshotId): string {
    return join(this.options.dir, snapshotFileName(id));
  }

  private checkOpen(): void {
    assert(!this.closed, 'snapshot store used after close');
  }

  /** Refuses an id that is not newer than the newest held (KRaft refuses the same). */
  private checkNewer(id: SnapshotId): void {
    const latest = this.latest();
    if (latest !== null && compareSnapshotIds(id, latest) <= 0) {
      throw new SnapshotError('snapshot_stale', `snapshot ${id.endOffset}-${id.epoch} is not newer than ${latest.endOffset}-${latest.epoch}`);
    }
  }

  private checkPayloadBytes(payloadBytes: number): void {
    if (payloadBytes > this.options.payloadBytesMax) {
      throw new SnapshotError('snapshot_too_large', `snapshot payload of ${payloadBytes} bytes exceeds payloadBytesMax ${this.options.payloadBytesMax}`);
    }
  }

  // ---------------------------------------------------------------- writing (own state)
  /**
   * Stores the state machine's `payload` as snapshot `id` (newer than latest()): `.partial`,
   * fdatasync, read back and checked, renamed into place, directory synced; then older ones
   * beyond keepCount are deleted. Durable when the promise resolves.
   */
  async write(id: SnapshotId, payload: Uint8Array): Promise<void> {
    this.checkOpen();
    checkId(id);
    this.checkPayloadBytes(payload.byteLength);
    this.checkNewer(id);
    this.checkNotInstalling();
    if (this.transfer !== null && sameId(this.transfer.id, id))
      throw new SnapshotError('snapshot_busy', `snapshot ${id.endOffset}-${id.epoch} is being received`);
    this.installingId = { ...id };
    const partialPath = this.pathOf(id) + partialSuffix;
    try {
      const header = encodeHeader(id, payload.byteLength, crc32c(payload));
      const handle = await fs.promises.open(partialPath, 'w');
      try {
        const { bytesWritten } = await handle.writev([header, payload], 0);
        if (bytesWritten !== header.byteLength + payload.byteLength) {
          throw new SnapshotError('write_failed', `snapshot ${partialPath}: short write (${bytesWritten} bytes)`, { file: partialPath });
        }
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await this.install(id, partialPath);
      this.options.logger({ event: 'snapshot.written', file: this.pathOf(id), endOffset: id.endOffset, epoch: id.epoch, payloadBytes: payload.byteLength });
    } catch (error) {
      fs.rmSync(partialPath, { force: true });
      throw error;
    } finally {
      this.installingId = null;
    }
  }

  private checkNotInstalling(): void {
    const installing = this.installingId;
    if (installing !== null) throw new SnapshotError('snapshot_busy', `snapshot ${installing.endOffset}-${installing.epoch} is being written or installed`);
  }

  /**
   * The last steps of a write or a receive, the partial file being synced: read back and
   * checked (the second check of the same bytes), renamed into place, directory synced, listed,
   * older ones pruned. A failed check deletes the partial and throws snapshot_corrupt.
   */
  private async install(id: SnapshotId, partialPath: string): Promise<void> {
    const problem = await fileProblem(partialPath, id, this.options.payloadBytesMax);
    if (problem !== null) throw new SnapshotError('snapshot_corrupt', `snapshot ${partialPath} read back: ${problem}`, { file: partialPath });
    this.checkNewer(id); // a newer one may have been installed while this one was synced
    fs.renameSync(partialPath, this.pathOf(id));
    await syncDirectory(this.options.dir);
    this.ids.push({ ...id });
    assert(
      this.ids.every((held, index) => index === 0 || compareSnapshotIds(this.ids[index - 1]!, held) < 0),
      'snapshot ids out of order',
    );
    await this.prune();
  }

  /** Keeps the newest keepCount: each id leaves the list before its file is deleted. */
  private async prune(): Promise<void> {
    let removedCount = 0;
    while (this.ids.length > this.options.keepCount) {
      const oldest = this.ids.shift()!;
      fs.rmSync(this.pathOf(oldest), { force: true });
      removedCount++;
      this.options.logger({ event: 'snapshot.removed', file: this.pathOf(oldest), reason: `older than the newest ${this.options.keepCount}` });
    }
    if (removedCount > 0) await syncDirectory(this.options.dir);
  }

  // ---------------------------------------------------------------- reading
  /**
   * Up to `bytesMax` bytes (at most snapshotChunkBytesMax, at least 1 unless at the end) of the
   * file of snapshot `id` from `positionBytes`, for the leader to send. snapshot_gone when the
   * snapshot is no longer held (a newer one replaced it while the follower fetched).
   */
  async readChunk(id: SnapshotId, positionBytes: number, bytesMax: number): Promise<SnapshotChunk> {
    this.checkOpen();
    checkId(id);
    if (!Number.isSafeInteger(positionBytes) || positionBytes < 0) throw new SnapshotError('bad_position', `chunk position ${positionBytes} is not a position`);
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 1) throw new SnapshotError('bad_chunk', `chunk bytesMax ${bytesMax} must be at least 1`);
    const gone = () =>
      new SnapshotError('snapshot_gone', `snapshot ${id.endOffset}-${id.epoch} is no longer held; the newest is ${JSON.stringify(this.latest())}`);
    if (!this.has(id)) throw gone();
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(this.pathOf(id), 'r');
    } catch (error) {
      if (isMissing(error)) throw gone();
      throw error;
    }
    try {
      // The open descriptor keeps the file readable even if a newer snapshot deletes it now.
      const totalBytes = (await handle.stat()).size;
      if (positionBytes > totalBytes) throw new SnapshotError('bad_position', `chunk position ${positionBytes} beyond the ${totalBytes}-byte snapshot`);
      const bytes = Buffer.alloc(Math.min(bytesMax, snapshotChunkBytesMax, totalBytes - positionBytes));
      const { bytesRead } = await handle.read(bytes, 0, bytes.byteLength, positionBytes);
      if (bytesRead !== bytes.byteLength)
        throw new SnapshotError('snapshot_corrupt', `snapshot ${this.pathOf(id)} shrank while read`, { file: this.pathOf(id) });
      return { bytes, totalBytes, done: positionBytes + bytesRead === totalBytes, chunkCrc: crc32c(bytes) >>> 0 };
    } finally {
      await handle.close();
    }
  }

  /**
   * A reader of snapshot `id` that keeps the file open: it reads to the end even when a newer
   * snapshot deletes the file meanwhile (a backup pins the snapshot it sends while the replica
   * goes on taking new ones). snapshot_gone when the snapshot is not held. Close it when done.
   */
  openReader(id: SnapshotId): SnapshotReader {
    this.checkOpen();
    checkId(id);
    const path = this.pathOf(id);
    const gone = () =>
      new SnapshotError('snapshot_gone', `snapshot ${id.endOffset}-${id.epoch} is no longer held; the newest is ${JSON.stringify(this.latest())}`);
    if (!this.has(id)) throw gone();
    let fd: number;
    try {
      // Synchronously, in the turn that found it held: no prune can come between.
      fd = fs.openSync(path, 'r');
    } catch (error) {
      if (isMissing(error)) throw gone();
      throw error;
    }
    return new SnapshotReader(id, path, fd, fs.fstatSync(fd).size);
  }

  /** The payload of snapshot `id`, checked (header, id, size, CRC), for the state machine to load. */
  async readPayload(id: SnapshotId): Promise<Buffer> {
    this.checkOpen();
    checkId(id);
    const path = this.pathOf(id);
    if (!this.has(id)) throw new SnapshotError('snapshot_gone', `snapshot ${id.endOffset}-${id.epoch} is not held`);
    let bytes: Buffer;
    try {
      const totalBytes = (await fs.promises.stat(path)).size;
      if (totalBytes > snapshotHeaderBytes + this.options.payloadBytesMax) {
        throw new SnapshotError('snapshot_corrupt', `snapshot ${path} has ${totalBytes} bytes, above payloadBytesMax`, { file: path });
      }
      bytes = await fs.promises.readFile(path);
    } catch (error) {
      if (isMissing(error)) throw new SnapshotError('snapshot_gone', `snapshot ${path} was deleted`);
      throw error;
    }
    const header = decodeHeader(bytes);
    const problem =
      typeof header === 'string'
        ? header
        : (headerMismatch(header, id, bytes.byteLength, this.options.payloadBytesMax) ??
          (crc32c(bytes.subarray(snapshotHeaderBytes)) >>> 0 === header.payloadCrc ? null : 'payload crc mismatch'));
    if (problem !== null) throw new SnapshotError('snapshot_corrupt', `snapshot ${path}: ${problem}`, { file: path });
    return bytes.subarray(snapshotHeaderBytes);
  }

  // ---------------------------------------------------------------- receiving (follower)
  /** The transfer in progress, or null. */
  get receiving(): ReceiveProgress | null {
    return this.transfer === null ? null : this.progressOf(this.transfer);
  }

  private progressOf(transfer: Transfer): ReceiveProgress {
    return {
      id: { ...transfer.id },
      receivedBytes: transfer.receivedBytes,
      totalBytes: transfer.totalBytes,
      done: transfer.receivedBytes === transfer.totalBytes,
    };
  }

  /**
   * Starts receiving snapshot `id` of `totalBytes` (the leader's SnapshotChunk.totalBytes), or
   * continues the transfer of the same id and size from its receivedBytes (the resume point to
   * ask the leader for). Any other transfer in progress is abandoned (its partial deleted).
   */
  beginReceive(id: SnapshotId, totalBytes: number): ReceiveProgress {
    this.checkOpen();
    checkId(id);
    if (!Number.isSafeInteger(totalBytes) || totalBytes < snapshotHeaderBytes) {
      throw new SnapshotError('snapshot_corrupt', `a snapshot of ${totalBytes} bytes cannot hold its ${snapshotHeaderBytes}-byte header`);
    }
    this.checkPayloadBytes(totalBytes - snapshotHeaderBytes);
    this.checkNewer(id);
    if (this.installingId !== null && sameId(this.installingId, id)) this.checkNotInstalling(); // its partial file is in use
    const current = this.transfer;
    if (current !== null && sameId(current.id, id) && current.totalBytes === totalBytes) return this.progressOf(current);
    if (current !== null) this.abortReceive();
    const path = this.pathOf(id) + partialSuffix;
    const fd = fs.openSync(path, 'w');
    this.transfer = { id: { ...id }, totalBytes, receivedBytes: 0, path, fd, header: Buffer.alloc(snapshotHeaderBytes), payloadCrc: 0 };
    this.options.logger({ event: 'snapshot.receiving', file: path, endOffset: id.endOffset, epoch: id.epoch, totalBytes });
    return this.progressOf(this.transfer);
  }

  /**
   * Appends the chunk that starts at `positionBytes`, which must be receivedBytes (else
   * chunk_out_of_order, nothing written: resume from there). `chunkCrc` is the leader's
   * SnapshotChunk.chunkCrc (else chunk_corrupt, nothing written: ask again). Once the first
   * 64 bytes are in, the header is checked against the id and size: a bad one abandons the
   * transfer (snapshot_corrupt). Written to the page cache; synced by finishReceive.
   */
  appendChunk(positionBytes: number, bytes: Uint8Array, chunkCrc: number): ReceiveProgress {
    this.checkOpen();
    const transfer = this.transfer;
    if (transfer === null) throw new SnapshotError('no_transfer', 'appendChunk without beginReceive');
    if (positionBytes !== transfer.receivedBytes) {
      throw new SnapshotError('chunk_out_of_order', `chunk at byte ${positionBytes}, expected ${transfer.receivedBytes}`, { position: transfer.receivedBytes });
    }
    if (bytes.byteLength === 0 || bytes.byteLength > snapshotChunkBytesMax || positionBytes + bytes.byteLength > transfer.totalBytes) {
      throw new SnapshotError(
        'bad_chunk',
        `chunk of ${bytes.byteLength} bytes at ${positionBytes}: empty, above ${snapshotChunkBytesMax} or beyond ${transfer.totalBytes}`,
      );
    }
    if (crc32c(bytes) >>> 0 !== chunkCrc >>> 0)
      throw new SnapshotError('chunk_corrupt', `chunk at byte ${positionBytes} fails its CRC`, { position: positionBytes });
    const headerPart = Math.max(0, Math.min(bytes.byteLength, snapshotHeaderBytes - positionBytes));
    if (headerPart > 0) transfer.header.set(bytes.subarray(0, headerPart), positionBytes);
    if (headerPart > 0 && positionBytes + headerPart === snapshotHeaderBytes) this.checkReceivedHeader(transfer);
    const writtenBytes = fs.writeSync(transfer.fd, bytes, 0, bytes.byteLength, positionBytes);
    if (writtenBytes !== bytes.byteLength) {
      throw new SnapshotError('write_failed', `snapshot ${transfer.path}: short write (${writtenBytes} of ${bytes.byteLength} bytes)`, { file: transfer.path });
    }
    transfer.payloadCrc = crc32c(bytes.subarray(headerPart), transfer.payloadCrc);
    transfer.receivedBytes += bytes.byteLength;
    return this.progressOf(transfer);
  }

  private checkReceivedHeader(transfer: Transfer): void {
    const header = decodeHeader(transfer.header);
    const problem = typeof header === 'string' ? header : headerMismatch(header, transfer.id, transfer.totalBytes, this.options.payloadBytesMax);
    if (problem === null) return;
    this.abortReceive();
    throw new SnapshotError('snapshot_corrupt', `received snapshot header: ${problem}`, { file: transfer.path });
  }

  /**
   * Completes the transfer: the payload CRC as received, then fdatasync, then the file read back
   * and checked, renamed into place, directory synced, older snapshots pruned. Any failed check
   * deletes the partial and throws snapshot_corrupt (or snapshot_stale when a newer snapshot
   * arrived meanwhile): nothing is installed. Returns the id now latest().
   */
  async finishReceive(): Promise<SnapshotId> {
    this.checkOpen();
    const transfer = this.transfer;
    if (transfer === null) throw new SnapshotError('no_transfer', 'finishReceive without beginReceive');
    if (transfer.receivedBytes !== transfer.totalBytes) {
      throw new SnapshotError('transfer_incomplete', `received ${transfer.receivedBytes} of ${transfer.totalBytes} bytes`, {
        position: transfer.receivedBytes,
      });
    }
    this.checkNotInstalling();
    this.transfer = null;
    this.installingId = { ...transfer.id };
    try {
      const header = decodeHeader(transfer.header);
      assert(typeof header !== 'string', 'a complete transfer has a checked header');
      if (transfer.payloadCrc >>> 0 !== header.payloadCrc) {
        throw new SnapshotError('snapshot_corrupt', `received snapshot ${transfer.path}: payload crc mismatch`, { file: transfer.path });
      }
      await datasync(transfer.fd);
      fs.closeSync(transfer.fd);
      transfer.fd = -1;
      await this.install(transfer.id, transfer.path);
      this.options.logger({
        event: 'snapshot.received',
        file: this.pathOf(transfer.id),
        endOffset: transfer.id.endOffset,
        epoch: transfer.id.epoch,
        totalBytes: transfer.totalBytes,
      });
      return { ...transfer.id };
    } catch (error) {
      if (transfer.fd !== -1) fs.closeSync(transfer.fd);
      fs.rmSync(transfer.path, { force: true });
      this.options.logger({ event: 'snapshot.receive_failed', file: transfer.path, error: error instanceof Error ? error.message : String(error) });
      throw error;
    } finally {
      this.installingId = null;
    }
  }

  /** Abandons the transfer in progress, if any, deleting its partial file. */
  abortReceive(): void {
    const transfer = this.transfer;
    if (transfer === null) return;
    this.transfer = null;
    fs.closeSync(transfer.fd);
    fs.rmSync(transfer.path, { force: true });
    this.options.logger({ event: 'snapshot.receive_aborted', file: transfer.path, receivedBytes: transfer.receivedBytes });
  }

  /** Abandons a transfer in progress (no resume across restarts) and refuses further use. */
  close(): void {
    if (this.closed) return;
    this.abortReceive();
    this.closed = true;
  }
}

/** An open snapshot file (SnapshotStore.openReader): chunks as readChunk gives them, from one descriptor. */
export class SnapshotReader {
  private closed = false;

  constructor(
    readonly id: SnapshotId,
    readonly path: string,
    private readonly fd: number,
    /** Size of the whole file, header included. */
    readonly totalBytes: number,
  ) {}

  /** Up to `bytesMax` bytes (at most snapshotChunkBytesMax) from `positionBytes`, with their CRC32C. */
  async read(positionBytes: number, bytesMax: number): Promise<SnapshotChunk> {
    assert(!this.closed, 'snapshot reader used after close');
    if (!Number.isSafeInteger(positionBytes) || positionBytes < 0 || positionBytes > this.totalBytes) {
      throw new SnapshotError('bad_position', `chunk position ${positionBytes} outside the ${this.totalBytes}-byte snapshot`);
    }
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 1) throw new SnapshotError('bad_chunk', `chunk bytesMax ${bytesMax} must be at least 1`);
    const bytes = Buffer.alloc(Math.min(bytesMax, snapshotChunkBytesMax, this.totalBytes - positionBytes));
    const bytesRead = await new Promise<number>((resolve, reject) =>
      fs.read(this.fd, bytes, 0, bytes.byteLength, positionBytes, (error, count) => (error === null ? resolve(count) : reject(error))),
    );
    if (bytesRead !== bytes.byteLength) throw new SnapshotError('snapshot_corrupt', `snapshot ${this.path} shrank while read`, { file: this.path });
    return { bytes, totalBytes: this.totalBytes, done: positionBytes + bytesRead === this.totalBytes, chunkCrc: crc32c(bytes) >>> 0 };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}
