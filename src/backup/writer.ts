// One group's part of a backup, written as the leader's Backup stream arrives (issue 14; the
// stream's contract is on the rpc in proto/mamba.proto): `<dir>/<group>/snapshot` (the snapshot
// file as stored) and `<dir>/<group>/log` (the batches of [L, H) as stored).
//
// Every piece is checked as it arrives (it comes in order, inside what the start announced, and
// its CRC32C holds; damage in transit is retriable: the group starts over) and hashed (SHA-256)
// as it is written. finish() syncs the files, then reads them back: the hash again, and every
// check a restore makes (group-files.ts), so a backup that reports success is one that restores.
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { UnavailableError } from '../errors.js';
import { crc32c } from '../log/index.js';
import { BackupPart, bytesOf, type BackupChunk, type BackupData, type BackupEnd, type BackupStart } from '../protocol/messages.js';
import { BackupError } from './errors.js';
import { hashFile, readGroupContent, type GroupContent } from './group-files.js';
import { groupFileNames, type BackupFile, type GroupBackup } from './manifest.js';

interface PartFile {
  name: string;
  handle: FileHandle;
  hash: Hash;
  receivedBytes: number;
  totalBytes: number;
}

export interface WrittenGroup {
  entry: GroupBackup;
  content: GroupContent;
  start: BackupStart;
}

export class GroupBackupWriter {
  private start: BackupStart | null = null;
  private end: BackupEnd | null = null;
  private snapshot: PartFile | null = null;
  private log: PartFile | null = null;
  private pinnedAtMs = 0;
  private created = false;

  constructor(
    /** The backup directory. */
    private readonly dir: string,
    readonly group: string,
  ) {}

  /** Bytes written so far and the total the leader announced (0 before its start message). */
  get progress(): { bytes: number; totalBytes: number } {
    const bytes = (this.snapshot?.receivedBytes ?? 0) + (this.log?.receivedBytes ?? 0);
    return { bytes, totalBytes: this.start === null ? 0 : this.start.snapshotBytes + this.start.logBytes };
  }

  get pinned(): BackupStart | null {
    return this.start;
  }

  /** One message of the stream, in order. */
  async take(chunk: BackupChunk): Promise<void> {
    if (chunk.start !== null) return this.takeStart(chunk.start);
    if (this.start === null) throw this.broken('the first message is not the start');
    if (this.end !== null) throw this.broken('a message after the end');
    if (chunk.data !== null) return this.takeData(chunk.data);
    if (chunk.end !== null) return this.takeEnd(chunk.end);
    throw this.broken('a message with neither start, data nor end');
  }

  private broken(problem: string): UnavailableError {
    return new UnavailableError(`backup of group ${this.group}: the leader's stream is broken: ${problem}; the group starts over`);
  }

  private async takeStart(start: BackupStart): Promise<void> {
    if (this.start !== null) throw this.broken('a second start');
    if (start.group !== this.group) throw this.broken(`the start names group ${start.group}`);
    const snapshotEnd = start.hasSnapshot ? start.snapshotEndOffset : 0;
    if (start.logStartOffset > snapshotEnd || snapshotEnd > start.highWatermark || start.logStartOffset >= start.highWatermark)
      throw this.broken(`the start's offsets do not hold (log ${start.logStartOffset}..${start.highWatermark}, snapshot end ${snapshotEnd})`);
    if (start.lastEpoch < 1 || start.seedVoters.length === 0) throw this.broken('the start names no epoch or no seed voters');
    this.start = start;
    this.pinnedAtMs = Date.now();
    const names = groupFileNames(this.group);
    await mkdir(join(this.dir, this.group), { recursive: false });
    this.created = true;
    if (start.hasSnapshot) this.snapshot = await this.openPart(names.snapshot, start.snapshotBytes);
    this.log = await this.openPart(names.log, start.logBytes);
  }

  private async openPart(name: string, totalBytes: number): Promise<PartFile> {
    return { name, handle: await open(join(this.dir, name), 'wx'), hash: createHash('sha256'), receivedBytes: 0, totalBytes };
  }

  private async takeData(data: BackupData): Promise<void> {
    const bytes = bytesOf(data.bytes);
    const snapshotDone = this.snapshot === null || this.snapshot.receivedBytes === this.snapshot.totalBytes;
    let part: PartFile | null;
    if (data.part === BackupPart.snapshot) part = this.snapshot;
    else if (data.part === BackupPart.log) part = snapshotDone ? this.log : null;
    else throw this.broken(`a piece of unknown part ${data.part}`);
    if (part === null) throw this.broken(data.part === BackupPart.log ? 'log bytes before the snapshot is complete' : 'snapshot bytes without a snapshot');
    if (data.position !== part.receivedBytes) throw this.broken(`${part.name}: a piece at byte ${data.position}, expected ${part.receivedBytes}`);
    if (bytes.byteLength === 0 || part.receivedBytes + bytes.byteLength > part.totalBytes)
      throw this.broken(`${part.name}: a piece of ${bytes.byteLength} bytes at ${data.position} of ${part.totalBytes}`);
    if (crc32c(bytes) >>> 0 !== data.crc32c >>> 0) throw this.broken(`${part.name}: the piece at byte ${data.position} fails its CRC32C (damaged in transit)`);
    const { bytesWritten } = await part.handle.write(bytes, 0, bytes.byteLength, data.position);
    if (bytesWritten !== bytes.byteLength)
      throw new BackupError(`${join(this.dir, part.name)}: short write (${bytesWritten} of ${bytes.byteLength} bytes): is the disk full?`);
    part.hash.update(bytes);
    part.receivedBytes += bytes.byteLength;
  }

  private async takeEnd(end: BackupEnd): Promise<void> {
    const start = this.start!;
    const snapshotBytes = this.snapshot?.receivedBytes ?? 0;
    const logBytes = this.log?.receivedBytes ?? 0;
    if (end.snapshotBytes !== start.snapshotBytes || snapshotBytes !== start.snapshotBytes || end.logBytes !== start.logBytes || logBytes !== start.logBytes)
      throw this.broken(
        `the end says ${end.snapshotBytes} + ${end.logBytes} bytes; announced ${start.snapshotBytes} + ${start.logBytes}, received ${snapshotBytes} + ${logBytes}`,
      );
    this.end = end;
  }

  /** After the end: syncs, reads the files back and checks them; the group's manifest entry. */
  async finish(): Promise<WrittenGroup> {
    const start = this.start;
    const end = this.end;
    if (start === null || end === null) throw this.broken('the stream ended before its end message');
    const files = await Promise.all([this.snapshot, this.log].map((part) => (part === null ? null : this.closePart(part))));
    const [snapshotFile, logFile] = files as [BackupFile | null, BackupFile];
    const content = await readGroupContent(this.dir, {
      id: this.group,
      snapshot: start.hasSnapshot ? { endOffset: start.snapshotEndOffset, epoch: start.snapshotEpoch, name: snapshotFile!.name } : null,
      log: { name: logFile.name, startOffset: start.logStartOffset, endOffset: start.highWatermark },
      lastEpoch: start.lastEpoch,
      seedVoters: start.seedVoters,
    });
    if (content.batchCount !== end.batchCount) throw new BackupError(`${logFile.name} holds ${content.batchCount} batches; the leader sent ${end.batchCount}`);
    const entry: GroupBackup = {
      id: this.group,
      leader: start.leaderId,
      epoch: start.epoch,
      highWatermark: start.highWatermark,
      lastEpoch: start.lastEpoch,
      seedVoters: [...start.seedVoters],
      voters: [...content.membership.voters],
      pinnedAtMs: this.pinnedAtMs,
      snapshot: snapshotFile === null ? null : { endOffset: start.snapshotEndOffset, epoch: start.snapshotEpoch, file: snapshotFile },
      log: { startOffset: start.logStartOffset, endOffset: start.highWatermark, batchCount: content.batchCount, file: logFile },
      topics: content.topics.map((t) => t.name),
    };
    return { entry, content, start };
  }

  /** Syncs and closes a part, then reads it back: the SHA-256 must be the one computed as it arrived. */
  private async closePart(part: PartFile): Promise<BackupFile> {
    await part.handle.datasync();
    await part.handle.close();
    const sha256 = part.hash.digest('hex');
    const readBack = await hashFile(join(this.dir, part.name), part.name);
    if (readBack.sha256 !== sha256 || readBack.bytes !== part.receivedBytes)
      throw new BackupError(
        `${join(this.dir, part.name)} reads back differently from what was written (${readBack.bytes} bytes, sha256 ${readBack.sha256}; wrote ${part.receivedBytes}, ${sha256})`,
      );
    return { name: part.name, bytes: part.receivedBytes, sha256 };
  }

  /** Removes what this writer wrote (a failed attempt, or a backup given up). */
  async discard(): Promise<void> {
    for (const part of [this.snapshot, this.log]) await part?.handle.close().catch(() => undefined);
    if (this.created) await rm(join(this.dir, this.group), { recursive: true, force: true });
    this.created = false;
  }
}
