// KIP-630 FetchSnapshot, both ends, as the replica runs it (the wire is src/rpc/peer.ts):
//   - the leader answers a chunk request from the snapshot files it holds (answerFetchSnapshot):
//     only as the leader of the request's epoch, at most snapshotChunkBytesMax bytes, each chunk
//     with its CRC32C;
//   - a follower told by its core to fetch a snapshot (Ready.fetchSnapshot) runs SnapshotFetcher:
//     chunks in order into the SnapshotStore, resuming from what it holds (within this process),
//     starting over when the leader no longer holds the snapshot or the bytes fail their checks;
//     once complete and verified, the snapshot goes back to the replica, which hands it to the
//     core (snapshotFetched) and installs it in Ready step 2.
// Bounds: one transfer at a time; each chunk is asked for at most chunkAttemptsMax times in a row
// (backoff doubling from chunkRetryMsMin to chunkRetryMsMax), then the transfer pauses for
// transferPauseMs and resumes from what it holds, for as long as the core wants the snapshot;
// progress is logged at most once per progressIntervalMs.
import type { ReplicaId, SnapshotRequest } from '../raft/types.js';
import type { Logger } from './logger.js';
import { decodeSnapshotPayload, type SnapshotContent } from './snapshot-payload.js';
import { SnapshotError, snapshotChunkBytesMax, type ReceiveProgress, type SnapshotId, type SnapshotStore } from './snapshot-store.js';

export type FetchSnapshotError = 'SNAPSHOT_NOT_FOUND' | 'POSITION_OUT_OF_RANGE' | 'FENCED_LEADER_EPOCH' | 'UNKNOWN_LEADER_EPOCH' | 'NOT_LEADER';

/** A follower asks the leader of `leaderEpoch` for bytes of snapshot `snapshot` from `position`. */
export interface FetchSnapshotRequest {
  from: ReplicaId;
  to: ReplicaId;
  leaderEpoch: number;
  snapshot: SnapshotId;
  /** Byte position in the snapshot file (header included). */
  position: number;
  bytesMax: number;
}

export interface FetchSnapshotResponse {
  from: ReplicaId;
  /** The answering replica's epoch. */
  epoch: number;
  error?: FetchSnapshotError;
  /** The leader the answering replica knows (with NOT_LEADER), or null. */
  leaderId: ReplicaId | null;
  snapshot: SnapshotId;
  /** Size of the whole file; 0 with an error. */
  sizeBytes: number;
  position: number;
  bytes: Uint8Array;
  chunkCrc: number;
}

/** What a leader knows of itself when it answers. */
export interface LeaderView {
  id: ReplicaId;
  epoch: number;
  isLeader: boolean;
  leaderId: ReplicaId | null;
}

export const chunkAttemptsMax = 8;
export const chunkRetryMsMin = 50;
export const chunkRetryMsMax = 2000;
export const transferPauseMs = 5000;
export const progressIntervalMs = 1000;

/** The leader's answer to one chunk request (errors as codes; a failing disk throws). */
export async function answerFetchSnapshot(store: SnapshotStore, self: LeaderView, request: FetchSnapshotRequest): Promise<FetchSnapshotResponse> {
  const refusal = (error: FetchSnapshotError): FetchSnapshotResponse => ({
    from: self.id,
    epoch: self.epoch,
    error,
    leaderId: self.leaderId,
    snapshot: request.snapshot,
    sizeBytes: 0,
    position: request.position,
    bytes: new Uint8Array(0),
    chunkCrc: 0,
  });
  if (request.leaderEpoch < self.epoch) return refusal('FENCED_LEADER_EPOCH');
  if (request.leaderEpoch > self.epoch) return refusal('UNKNOWN_LEADER_EPOCH');
  if (!self.isLeader) return refusal('NOT_LEADER');
  const bytesMax = Math.max(1, Math.min(request.bytesMax, snapshotChunkBytesMax));
  try {
    const chunk = await store.readChunk(request.snapshot, request.position, bytesMax);
    const { endOffset, epoch } = request.snapshot;
    return {
      from: self.id,
      epoch: self.epoch,
      leaderId: self.id,
      snapshot: { endOffset, epoch },
      sizeBytes: chunk.totalBytes,
      position: request.position,
      bytes: chunk.bytes,
      chunkCrc: chunk.chunkCrc,
    };
  } catch (error) {
    if (error instanceof SnapshotError && (error.code === 'snapshot_gone' || error.code === 'bad_id')) return refusal('SNAPSHOT_NOT_FOUND');
    if (error instanceof SnapshotError && error.code === 'bad_position') return refusal('POSITION_OUT_OF_RANGE');
    throw error;
  }
}

export interface SnapshotFetcherHost {
  store: SnapshotStore;
  logger: Logger;
  selfId: ReplicaId;
  /** Sends one chunk request; rejects when the call fails (network, deadline). */
  fetchChunk(request: FetchSnapshotRequest): Promise<FetchSnapshotResponse>;
  /** True while the replica writes a snapshot of its own (finishing a receive waits for it). */
  writingOwnSnapshot(): boolean;
  /** The whole snapshot is stored and verified; `request` is the one it was fetched for. */
  fetched(request: SnapshotRequest, content: SnapshotContent): void;
}

interface Run {
  request: SnapshotRequest;
  stopped: boolean;
}

/** Why a run of SnapshotFetcher ended early: it cannot go on with this snapshot. */
class TransferEnded extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

function sameId(left: SnapshotId, right: SnapshotId): boolean {
  return left.endOffset === right.endOffset && left.epoch === right.epoch;
}

/** A follower's snapshot transfer; see the top of the file. */
export class SnapshotFetcher {
  private run: Run | null = null;
  private lastProgressMs = 0;

  constructor(private readonly host: SnapshotFetcherHost) {}

  /** True while a transfer runs. */
  get active(): boolean {
    return this.run !== null;
  }

  /** The transfer in progress in the store (bytes received of the file), or null. */
  get progress(): ReceiveProgress | null {
    return this.run === null ? null : this.host.store.receiving;
  }

  /**
   * Ready.fetchSnapshot: fetch `request`'s snapshot (replacing any other transfer), or stop when
   * null. A stopped transfer keeps its partial file: the same snapshot asked for again resumes.
   */
  want(request: SnapshotRequest | null): void {
    const current = this.run;
    if (current !== null && request !== null && sameId(current.request.snapshot, request.snapshot) && current.request.leaderId === request.leaderId) {
      current.request = request; // same snapshot from the same leader: the running loop goes on
      return;
    }
    if (current !== null) current.stopped = true;
    this.run = null;
    if (request === null) return;
    const run: Run = { request, stopped: false };
    this.run = run;
    const { endOffset, epoch } = request.snapshot;
    this.host.logger.info('replica.snapshot.fetch_started', { leader: request.leaderId, snapshotEndOffset: endOffset, snapshotEpoch: epoch });
    this.loop(run).then(
      () => this.finished(run),
      (error: unknown) => {
        this.finished(run);
        if (error instanceof TransferEnded) return;
        this.host.logger.error('replica.snapshot.fetch_failed', { snapshotEndOffset: endOffset, snapshotEpoch: epoch, error: String(error) });
      },
    );
  }

  /** Stops any transfer (the replica is closing). */
  stop(): void {
    if (this.run !== null) this.run.stopped = true;
    this.run = null;
  }

  private finished(run: Run): void {
    if (this.run === run) this.run = null;
  }

  private async loop(run: Run): Promise<void> {
    const id = run.request.snapshot;
    // Fetched before and not installed then (the core had stopped wanting it): no transfer needed.
    if (this.host.store.has(id)) return this.handOver(run);
    const receiving = this.host.store.receiving;
    if (receiving !== null && sameId(receiving.id, id) && receiving.done) return this.finish(run);
    let position = receiving !== null && sameId(receiving.id, id) ? receiving.receivedBytes : 0;
    let attempts = 0;
    while (!run.stopped) {
      if (attempts >= chunkAttemptsMax) {
        this.host.logger.warn('replica.snapshot.fetch_paused', {
          snapshotEndOffset: id.endOffset,
          snapshotEpoch: id.epoch,
          position,
          pauseMs: transferPauseMs,
        });
        await sleep(transferPauseMs);
        attempts = 0;
        continue;
      }
      if (attempts > 0) await sleep(Math.min(chunkRetryMsMax, chunkRetryMsMin * 2 ** (attempts - 1)));
      if (run.stopped) return;
      attempts++;
      const next = await this.step(run, position);
      if (next === null) continue; // this attempt failed: ask again
      if (next === 'done') return this.finish(run);
      if (next !== position) attempts = 0;
      position = next;
    }
  }

  /**
   * One chunk request and what it brought: the next position to ask for, 'done' when the whole
   * file is in, or null when the attempt failed (the position to ask again is unchanged, or the
   * store's transfer was reset and `position` is 0 next time through beginReceive).
   */
  private async step(run: Run, position: number): Promise<number | 'done' | null> {
    const { request } = run;
    const id = request.snapshot;
    let answer: FetchSnapshotResponse;
    try {
      answer = await this.host.fetchChunk({
        from: this.host.selfId,
        to: request.leaderId,
        leaderEpoch: request.leaderEpoch,
        snapshot: id,
        position,
        bytesMax: snapshotChunkBytesMax,
      });
    } catch {
      return null; // the call failed: the same chunk again, after the backoff
    }
    if (run.stopped) return null;
    if (answer.error !== undefined) return this.refused(answer.error, id);
    if (!sameId(answer.snapshot, id) || answer.position !== position) return null;
    const begun = this.begin(id, answer.sizeBytes);
    if (begun.receivedBytes !== position) return begun.receivedBytes; // resume where the store is
    try {
      const progress = this.host.store.appendChunk(position, answer.bytes, answer.chunkCrc);
      this.report(progress);
      return progress.done ? 'done' : progress.receivedBytes;
    } catch (error) {
      if (!(error instanceof SnapshotError)) throw error;
      if (error.code === 'chunk_out_of_order') return error.details.position ?? 0;
      if (error.code === 'chunk_corrupt' || error.code === 'bad_chunk') return null;
      if (error.code === 'snapshot_corrupt') return 0; // a bad header: the store dropped the transfer
      throw error;
    }
  }

  /** beginReceive, ending the run when this snapshot cannot be taken at all. */
  private begin(id: SnapshotId, sizeBytes: number): ReceiveProgress {
    try {
      return this.host.store.beginReceive(id, sizeBytes);
    } catch (error) {
      if (error instanceof SnapshotError && ['snapshot_stale', 'snapshot_too_large', 'snapshot_corrupt', 'bad_id'].includes(error.code)) {
        this.host.logger.error('replica.snapshot.refused', {
          snapshotEndOffset: id.endOffset,
          snapshotEpoch: id.epoch,
          code: error.code,
          error: error.message,
        });
        throw new TransferEnded(error.message);
      }
      throw error;
    }
  }

  /** The next position after a refusal: 0 to start over, null to ask again (after the backoff). */
  private refused(error: FetchSnapshotError, id: SnapshotId): number | null {
    if (error === 'SNAPSHOT_NOT_FOUND' || error === 'POSITION_OUT_OF_RANGE') {
      // Start over: the leader's next Fetch answer names the snapshot it holds now (the core
      // then replaces this request); until then the same one is asked for from byte 0.
      this.host.logger.warn('replica.snapshot.restart', { snapshotEndOffset: id.endOffset, snapshotEpoch: id.epoch, reason: error });
      this.host.store.abortReceive();
      return 0;
    }
    return null; // not the leader of that epoch (any more): the core learns the leader and asks again
  }

  private report(progress: ReceiveProgress): void {
    const nowMs = Date.now();
    if (!progress.done && nowMs - this.lastProgressMs < progressIntervalMs) return;
    this.lastProgressMs = nowMs;
    this.host.logger.info('replica.snapshot.fetch_progress', {
      snapshotEndOffset: progress.id.endOffset,
      snapshotEpoch: progress.id.epoch,
      receivedBytes: progress.receivedBytes,
      totalBytes: progress.totalBytes,
      percent: Math.floor((100 * progress.receivedBytes) / Math.max(1, progress.totalBytes)),
    });
  }

  /** All bytes are in: verified, synced, renamed into place, read back, handed to the replica. */
  private async finish(run: Run): Promise<void> {
    const id = run.request.snapshot;
    for (let attempt = 0; this.host.writingOwnSnapshot(); attempt++) {
      if (run.stopped) return;
      await sleep(Math.min(chunkRetryMsMax, chunkRetryMsMin * 2 ** Math.min(attempt, 6)));
    }
    if (run.stopped) return;
    try {
      await this.host.store.finishReceive();
    } catch (error) {
      if (error instanceof SnapshotError && (error.code === 'snapshot_corrupt' || error.code === 'snapshot_busy')) {
        // The file failed a check on the way to disk (the store deleted it), or a write of our own
        // began meanwhile: the core still wants it, and the next Ready (or retry) asks again.
        this.host.logger.warn('replica.snapshot.finish_failed', { snapshotEndOffset: id.endOffset, snapshotEpoch: id.epoch, error: error.message });
        await sleep(chunkRetryMsMax);
        if (!run.stopped) return this.loop(run);
        return;
      }
      throw error;
    }
    return this.handOver(run);
  }

  /** The snapshot is in the store: read back, checked, handed to the replica if still wanted. */
  private async handOver(run: Run): Promise<void> {
    const id = run.request.snapshot;
    const latest = this.host.store.latest();
    if (latest === null || !sameId(latest, id)) {
      // An install makes it the latest snapshot: one held below a newer one cannot be installed.
      this.host.logger.error('replica.snapshot.refused', { snapshotEndOffset: id.endOffset, snapshotEpoch: id.epoch, code: 'snapshot_stale', latest });
      return;
    }
    const content = decodeSnapshotPayload(id, await this.host.store.readPayload(id));
    this.host.logger.info('replica.snapshot.fetched', {
      snapshotEndOffset: id.endOffset,
      snapshotEpoch: id.epoch,
      payloadBytes: content.machinePayload.byteLength,
    });
    if (run.stopped) return;
    this.host.fetched(run.request, content);
  }
}
