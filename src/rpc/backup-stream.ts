// The Backup server stream (issue 14; its contract is written on the rpc in proto/mamba.proto):
// start (what is pinned), the snapshot file, the log's batches from the leader's log start to the
// high watermark, end (the totals). The broker pins the backup (Broker.openBackup → Replica.openBackup)
// and this sends it, one piece of about a MiB at a time, each with the CRC32C of its bytes.
//
// Bounds: one piece in memory per stream, written only when the connection takes it (HTTP/2 flow
// control: write() false → wait for drain); a caller that stops reading for backupStallMsMax, or
// cancels, ends the stream, and whatever ends it releases the pinned snapshot and the retention
// hold (BackupSource.close), so a dead caller cannot hold retention back for long.
import type * as grpc from '@grpc/grpc-js';
import { assert } from '../assert.js';
import { InvalidArgumentError, UnavailableError } from '../errors.js';
import type { Broker } from '../broker/broker.js';
import { crc32c } from '../log/index.js';
import type { BackupSource } from '../replica/replica.js';
import { snapshotChunkBytesMax } from '../replica/snapshot-store.js';
import { BackupPart } from '../protocol/messages.js';
import { toStatus } from '../protocol/status.js';

type Wire = Record<string, unknown>;

/** Bytes per data message (a batch larger than this goes whole). */
export const backupPieceBytes = snapshotChunkBytesMax;
/** A caller whose connection takes nothing for this long is given up (the backup is released). */
export const backupStallMsMax = 60_000;

/** What the stream needs beyond the broker: the cluster's name, for the start message. */
export interface BackupStreamIdentity {
  cluster: string;
}

/** Serves one Backup call to its end; never throws (a failure ends the call with its status). */
export async function serveBackup(broker: Broker, identity: BackupStreamIdentity, call: grpc.ServerWritableStream<Wire, Wire>): Promise<void> {
  let source: BackupSource | null = null;
  let completed = false;
  let reason = 'cancelled by the caller';
  try {
    const group = call.request.group;
    if (typeof group !== 'string' || group.length === 0) throw new InvalidArgumentError('group is required');
    source = broker.openBackup(group);
    await send(call, { start: startWire(source, broker, identity) });
    const snapshotBytes = await sendSnapshot(call, source);
    const log = await sendLog(call, source);
    if (call.cancelled) return;
    assert(log.bytes === source.point.logBytes, `backup: sent ${log.bytes} log bytes of ${source.point.logBytes} announced`);
    await send(call, { end: { snapshotBytes, logBytes: log.bytes, batchCount: log.batchCount } });
    completed = !call.cancelled;
    call.end();
  } catch (error) {
    reason = error instanceof Error ? error.message : String(error);
    const s = toStatus(error);
    call.destroy(Object.assign(new Error(s.details), { code: s.code, details: s.details, metadata: s.metadata }));
  } finally {
    source?.close(completed, completed ? '' : reason);
  }
}

function startWire(source: BackupSource, broker: Broker, identity: BackupStreamIdentity): Wire {
  const p = source.point;
  return {
    cluster: identity.cluster,
    group: broker.group.id,
    leaderId: p.leaderId,
    epoch: p.epoch,
    highWatermark: p.highWatermark,
    logStartOffset: p.logStartOffset,
    logBytes: p.logBytes,
    lastEpoch: p.lastEpoch,
    hasSnapshot: p.snapshot !== null,
    snapshotEndOffset: p.snapshot?.id.endOffset ?? 0,
    snapshotEpoch: p.snapshot?.id.epoch ?? 0,
    snapshotBytes: p.snapshot?.totalBytes ?? 0,
    seedVoters: p.seedVoters,
    clusterGroups: broker.groups().map((g) => g.id),
  };
}

/** The pinned snapshot file, piece by piece; returns its size (0 without one). */
async function sendSnapshot(call: grpc.ServerWritableStream<Wire, Wire>, source: BackupSource): Promise<number> {
  const snapshot = source.point.snapshot;
  if (snapshot === null) return 0;
  let position = 0;
  while (position < snapshot.totalBytes && !call.cancelled) {
    const chunk = await source.readSnapshot(position, backupPieceBytes);
    await send(call, { data: { part: BackupPart.snapshot, position, bytes: chunk.bytes, crc32c: chunk.chunkCrc } });
    position += chunk.bytes.byteLength;
  }
  return position;
}

/** The log's batches from L to H as stored; returns the bytes and batches sent. */
async function sendLog(call: grpc.ServerWritableStream<Wire, Wire>, source: BackupSource): Promise<{ bytes: number; batchCount: number }> {
  const { logStartOffset, highWatermark } = source.point;
  let offset = logStartOffset;
  let position = 0;
  let batchCount = 0;
  while (offset < highWatermark && !call.cancelled) {
    const read = source.readLog(offset, backupPieceBytes);
    await send(call, { data: { part: BackupPart.log, position, bytes: read.bytes, crc32c: crc32c(read.bytes) >>> 0 } });
    position += read.bytes.byteLength;
    batchCount += read.batchCount;
    offset = read.nextOffset;
  }
  return { bytes: position, batchCount };
}

/** Writes one message, then waits while the connection holds what was written (flow control). */
async function send(call: grpc.ServerWritableStream<Wire, Wire>, message: Wire): Promise<void> {
  if (call.cancelled) return;
  if (call.write(message)) return;
  const drained = await new Promise<boolean>((resolve) => {
    const finish = (value: boolean): void => {
      clearTimeout(timer);
      call.off('drain', onDrain);
      call.off('cancelled', onEnd);
      call.off('close', onEnd);
      resolve(value);
    };
    const onDrain = (): void => finish(true);
    const onEnd = (): void => finish(true);
    const timer = setTimeout(() => finish(false), backupStallMsMax);
    call.on('drain', onDrain);
    call.on('cancelled', onEnd);
    call.on('close', onEnd);
  });
  if (!drained) throw new UnavailableError(`the caller took nothing for ${backupStallMsMax} ms; the backup was given up`);
}
