// A replica drives one Raft core: real timers, the segment log, LMDB for the hard state and the
// applied state, snapshots beside the log, and a transport to the other replicas of its group. It
// is the only owner of I/O around the core (etcd's "node" loop):
//   tick/step/propose → ready() → persist hard state (sync) → install a fetched snapshot
//   → truncate → append → advance(durable) → send messages → apply what the high watermark
//   newly covers.
// Snapshots (DESIGN §12, KIP-630): the state machine is captured when the applied offset moved
// snapshotIntervalEntries entries or snapshotIntervalBytes log bytes past the latest snapshot
// (one at a time: captured synchronously, written in the background, then compact()); retention
// removes only segments below both the newest snapshot and the machine's stored applied offset;
// a follower below the leader's log start fetches the leader's snapshot (snapshot-transfer.ts)
// and installs it (Ready step 2). The file payload is the core's SnapshotMeta and the machine's
// bytes (snapshot-payload.ts).
//
// Start, in this order: the log is opened; a log that ends below the latest snapshot, or whose
// entry below the snapshot's end has another epoch (a crash between an install's restore and
// its log reset, on a follower whose old log diverged), is reset to start, empty, at the
// snapshot; the machine restores the snapshot when its stored applied offset is below the
// snapshot's end; every stored entry is replayed through onAppend; indexFromSnapshot(latest);
// onCommit for committed entries from the applied offset up.
import { join } from 'node:path';
import { assert } from '../assert.js';
import { FailedPreconditionError, NotLeaderError, ResourceExhaustedError, UnavailableError, InvalidArgumentError } from '../errors.js';
import { SegmentLog, batchHeaderBytes, type FlushPolicy, type LogStats } from '../log/index.js';
import { RaftCore } from '../raft/core.js';
import {
  EntryType,
  type Entry,
  type FetchRequest,
  type FetchResponse,
  type HardState,
  type Member,
  type MembershipConfig,
  type MembershipResult,
  type Message,
  type RaftEvent,
  type RemoveOptions,
  type TransferResult,
  type Ready,
  type RaftStatus,
  type ReplicaId,
  type Role,
  type SnapshotId,
  type SnapshotMeta,
  type SnapshotRequest,
} from '../raft/types.js';
import { BackupSource } from './backup-source.js';
import { DataDirLock } from './data-dir-lock.js';
import { MetaStore, type LegacyMachineState } from './meta-store.js';
import { LogRaftStorage, batchOfEntry, entryFromBatch } from './log-storage.js';
import { PromiseFile, readPromiseFile } from './promise-file.js';
import { checkDirectoryFormat, readDirectoryFormat } from './format.js';
import { decodeSnapshotPayload, encodeSnapshotPayload, type SnapshotContent } from './snapshot-payload.js';
import { SnapshotStore, snapshotsDirName } from './snapshot-store.js';
import { answerFetchSnapshot, SnapshotFetcher, type FetchSnapshotRequest, type FetchSnapshotResponse } from './snapshot-transfer.js';
import { Waiters } from './waiters.js';
import type { Logger } from './logger.js';

export type { FetchSnapshotError, FetchSnapshotRequest, FetchSnapshotResponse } from './snapshot-transfer.js';
export type { BackupLogRead, BackupPoint, BackupSource } from './backup-source.js';

export interface Transport {
  send(message: Message): void;
  /**
   * One FetchSnapshot call to `request.to` (KIP-630); rejects when the call fails. Optional: a
   * transport without it cannot bring snapshots, and a follower that needs one keeps fetching.
   */
  fetchSnapshot?(request: FetchSnapshotRequest): Promise<FetchSnapshotResponse>;
  close(): void;
}

/** What the broker hangs on a replica: it sees every appended entry and every committed one. */
export interface StateMachine {
  /** An entry was appended to the local log (leader or follower), committed or not. */
  onAppend(entry: Entry): void;
  /** The local log was truncated to `endOffset` (entries at or above it are gone). */
  onTruncate(endOffset: number): void;
  /** A committed entry, in offset order, exactly once per process lifetime above appliedOffset. */
  onCommit(entry: Entry): void;
  /** Role or leader changed. */
  onRoleChange(role: Role, epoch: number, leaderId: ReplicaId | null): void;
  /**
   * Every committed entry below this is applied and its effect stored durably by the machine
   * (with its state, so never ahead of it): after a restart onCommit resumes here, and retention
   * keeps the log from here. A machine without it keeps nothing across restarts: every committed
   * entry in the log is handed to it again.
   */
  appliedOffset?(): number;
  /** The state as of the machine's in-memory applied offset (every committed entry below it applied): synchronous, bounded. */
  captureSnapshot?(): { endOffset: number; payload: Uint8Array };
  /** Replaces the whole state with a snapshot's, durably (applied offset = endOffset), and clears the in-memory queue index and producer table. Called on install (the log is then reset to empty at endOffset) and on start when the stored applied offset is below the latest snapshot's end. */
  restoreSnapshot?(endOffset: number, payload: Uint8Array): void;
  /** After the log's batches are indexed (start-up replay finished, or right after an install): take from the latest snapshot what the log no longer holds. null when there is no snapshot. */
  indexFromSnapshot?(snapshot: { endOffset: number; payload: Uint8Array } | null): void;
  /** Retention removed the log below startOffset. */
  onLogStartMoved?(startOffset: number): void;
}

/** What a replica reports about its work (metrics); every call is cheap and synchronous. */
export interface ReplicaObserver {
  /** One Ready batch of entries went into the log, taking this long. */
  appended(durationSeconds: number): void;
  roleChanged(role: Role, epoch: number, leaderId: ReplicaId | null): void;
  /** The recovery picture changed (at most once a second, and on every recovery event). */
  recoveryChanged?(state: RecoveryState): void;
  /** Segments recovery moved into quarantine when the log was opened. */
  segmentsQuarantined?(count: number): void;
  /** A peer's message was refused: no correct replica could have sent it. */
  messageRefused?(messageType: string): void;
}

/** A leader that asked this replica to truncate committed entries (refused; critical). */
export interface DivergenceReport {
  leaderId: ReplicaId;
  epoch: number;
  requestedEndOffset: number;
  committedOffset: number;
  atMs: number;
}

/** What status, metrics and alerts show of recovery (DESIGN §12). */
export interface RecoveryState {
  /** The log ends below what this replica promised: no votes, no candidacy, fetching. */
  recovering: boolean;
  /** What it must hold again; null when not recovering, or when it is unknown (markUnknown). */
  recoveryMarkOffset: number | null;
  /**
   * Started on an empty data directory in a group with history (a replaced disk, issue 13.3):
   * what it promised before is unknown, so it recovers until it holds a leader's whole log.
   */
  markUnknown: boolean;
  /** The promise as stored durably (promise file); 0 while the mark is unknown. */
  promisedOffset: number;
  /** On a leader: followers whose Fetches say they are recovering. */
  recoveringFollowers: ReplicaId[];
  /** The last refused truncation below committed data, while in its epoch; null otherwise. */
  divergence: DivergenceReport | null;
}

/** The name of the promise file in a data directory (see promise-file.ts). */
export const promiseFileName = 'promise';
/** The replica's LMDB (epoch, vote, commit mark) and segment log in a data directory. */
export const metaDirName = 'meta';
export const logDirName = 'log';
/** Bound on local high watermarks waiting for the promise they rely on (one per Ready). */
const heldHighWatermarksMax = 100_000;
/**
 * The promise of a replica started on an empty data directory in a group with history: above
 * any offset, so the core holds it recovering (no vote, no pre-vote, no candidacy, counted at
 * its real end) until it holds the whole log of the leader it follows (RaftNode
 * maybeFinishRecovery), which then lowers the promise to its log end.
 */
export const unknownMarkOffset = Number.MAX_SAFE_INTEGER;
export const snapshotIntervalEntriesDefault = 100_000;
export const snapshotIntervalBytesDefault = 64 * 1024 * 1024;
export const retentionIntervalMsDefault = 10_000;
/** Chunk reads a leader serves at once (each up to 1 MiB in memory); more are refused, retriable. */
export const snapshotChunkReadsInflightMax = 4;
/** Backups served at once (each holds retention back and a snapshot file open); more are refused, retriable. */
export const backupsInflightMax = 2;
/** A snapshot that could not be taken (the core not there yet, a failed write) is tried again after this. */
const snapshotRetryMs = 1000;

export interface ReplicaOptions {
  id: ReplicaId;
  voters: ReplicaId[];
  dataDir: string;
  flush: FlushPolicy;
  segmentBytes: number;
  retentionBytesMax: number;
  retentionAgeMsMax: number;
  tickMs: number;
  electionTimeoutMs: number;
  fetchTimeoutMs: number;
  fetchWaitMsMax: number;
  fetchBytesMax: number;
  pendingProposalsMax: number;
  /** Take a snapshot once the applied offset moved this many entries past the latest one. */
  snapshotIntervalEntries?: number;
  /** ... or this many log bytes (batch headers included). */
  snapshotIntervalBytes?: number;
  /** How often retention looks at the log (it also runs after every snapshot taken). */
  retentionIntervalMs?: number;
  logger: Logger;
  observer?: ReplicaObserver;
  random?: () => number;
  /** The cluster and group a formatted data directory must have been formatted for (its broker id is always checked). */
  formatIdentity?: { cluster: string; group: string };
}

/** A snapshot transfer in progress on a follower, for status. */
export interface SnapshotTransferState {
  snapshot: SnapshotId;
  leaderId: ReplicaId;
  receivedBytes: number;
  totalBytes: number;
}

/** A leader's empty Fetch answer held back (long poll) until entries arrive or it expires. */
interface ParkedFetch {
  request: FetchRequest;
  emptyAnswer: FetchResponse;
  resolve: (answer: Message | null) => void;
  /** Answered (empty) when a tick finds this passed; no timer per Fetch. */
  deadlineMs: number;
  /** The stream it came on: its next request supersedes it, its end drops it. */
  channel: object | null;
}

/**
 * An incoming request waiting for the core's answer. Fetch answers are matched by request id
 * (the core echoes it); the other answers by sender and type (one at a time per sender).
 */
interface PendingAnswer {
  from: ReplicaId;
  type: Message['type'];
  requestId: number | null;
  resolve: (answer: Message | null) => void;
  /** For a woken parked Fetch: what it is answered if the core says nothing to it in this pump. */
  fallback?: FetchResponse;
}

/** Bound on wake rounds (each re-steps every parked Fetch) within one pump. */
const wakeRoundsPerPumpMax = 4;

const answerTypeOf: Partial<Record<Message['type'], Message['type']>> = {
  PreVoteRequest: 'PreVoteResponse',
  VoteRequest: 'VoteResponse',
  BeginQuorumEpoch: 'BeginQuorumEpochResponse',
  FetchRequest: 'FetchResponse',
};

export class Replica {
  readonly id: ReplicaId;
  /** Made again once the machine has replayed the stored log (start): the configuration in force. */
  private core: RaftCore;
  private transport: Transport | null = null;
  private machine: StateMachine | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private retentionTimer: NodeJS.Timeout | null = null;
  private pumping = false;
  /** New entries (or a role change) since parked Fetches were last answered: wake them at the end of this pump. */
  private wakePending = false;
  /** Entries were appended since the last tick (the high watermark then rides with the next ones). */
  private appendedSinceTick = false;
  private closed = false;
  private appliedOffset: number;
  private persistedAppliedOffset = -1;
  private persistTimer: NodeJS.Timeout | null = null;
  private highWatermark = 0;
  private role: Role = 'follower';
  private leaderId: ReplicaId | null = null;
  private epoch = 0;
  private readonly pendingAnswers: PendingAnswer[] = [];
  private readonly parkedFetches = new Set<ParkedFetch>();
  /** Follower id → the high watermark of the last Fetch answer it was sent. */
  private readonly highWatermarkSent = new Map<ReplicaId, number>();
  /** Produce waiters: resolved when the high watermark (commit) or durable end passes an offset. */
  readonly commitWaiters = new Waiters();
  readonly durableWaiters = new Waiters();
  /** Follower id → last time (ms) its fetch offset had reached the high watermark. */
  private readonly caughtUpAtMs = new Map<ReplicaId, number>();
  /**
   * Reports waiting for the promise they rely on (DESIGN §12): Fetches at N until N is promised
   * durably, in order; on a leader, high watermarks until its own copy they count is promised.
   */
  private readonly heldFetches: FetchRequest[] = [];
  private readonly heldHighWatermarks: Array<{ highWatermark: number; requiredOffset: number }> = [];
  private divergence: DivergenceReport | null = null;
  /** The newest high watermark the core reported (exposed once its promise is durable). */
  private offeredHighWatermark = 0;
  private recoveryReported = '';
  private recoveryTimer: NodeJS.Timeout | null = null;
  /** The latest snapshot as read on open, for the start-up restore and index; dropped after start. */
  private openedSnapshot: SnapshotContent | null;
  /** A follower's transfer of the leader's snapshot (Ready.fetchSnapshot). */
  private readonly fetcher: SnapshotFetcher;
  /** A fetched snapshot handed to the core, waiting for its install (Ready step 2). */
  private fetchedSnapshot: SnapshotContent | null = null;
  /** The fetch request an install-impossible error was logged for (once per request). */
  private installImpossibleLogged: SnapshotRequest | null = null;
  /** A snapshot of our own is captured and being written (one at a time). */
  private snapshotTaking = false;
  /** Applied since the latest snapshot (the snapshot policy). */
  private appliedEntriesSinceSnapshot = 0;
  private appliedBytesSinceSnapshot = 0;
  private snapshotChunkReadsInflight = 0;
  /** The log start of each backup being served: retention keeps everything from the lowest (backup-source.ts). */
  private readonly retentionHolds = new Set<{ offset: number }>();
  /** After a capture the core could not take yet, the policy waits until then (no capture per apply). */
  private snapshotNotBeforeMs = 0;
  /** start() ran: the state machine is restored and the replica ticks. */
  private hasStarted = false;
  /** When the last FetchResponse without error arrived from the leader this replica follows (performance.now() ms). */
  private leaderFetchAnsweredAtMs: number | null = null;

  private constructor(
    private readonly options: ReplicaOptions,
    /** For tests that look at the log itself; other code reads through the read API (readBatches, logEndOffset, logStats). */
    readonly log: SegmentLog,
    private readonly meta: MetaStore,
    private readonly storage: LogRaftStorage,
    private readonly lock: DataDirLock,
    private readonly promise: PromiseFile,
    private readonly snapshots: SnapshotStore,
    opened: { snapshot: SnapshotContent | null },
  ) {
    this.id = options.id;
    this.appliedOffset = Math.max(meta.appliedOffset(), log.startOffset);
    // A snapshot below the log start (see snapshotView) has nothing to give the machine.
    this.openedSnapshot = storage.latestSnapshotMeta === null ? null : opened.snapshot;
    this.core = this.newCore();
    this.fetcher = new SnapshotFetcher({
      store: snapshots,
      logger: options.logger,
      selfId: options.id,
      fetchChunk: (request) => this.fetchSnapshotChunk(request),
      writingOwnSnapshot: () => this.snapshotTaking,
      fetched: (_request, content) => this.onSnapshotFetched(content),
    });
  }

  private newCore(): RaftCore {
    const options = this.options;
    const electionTicks = Math.max(1, Math.round(options.electionTimeoutMs / options.tickMs));
    return new RaftCore(
      {
        id: options.id,
        voters: options.voters,
        electionTicks,
        electionJitterTicks: electionTicks,
        fetchTimeoutTicks: Math.max(electionTicks + 1, Math.round(options.fetchTimeoutMs / options.tickMs)),
        fetchRetryTicks: Math.min(electionTicks, Math.ceil((options.fetchWaitMsMax + 50) / options.tickMs)),
        fetchBytesMax: options.fetchBytesMax,
        uncommittedOffsetsMax: 1_000_000,
        random: options.random ?? Math.random,
        // TEST ONLY: shows what the recovering rule prevents (chaos and tests set it to see loss).
        ...(process.env.MAMBA_TEST_RECOVERING_RULE_OFF === '1' ? { recoveringRuleDisabled: true } : {}),
      },
      this.storage,
    );
  }

  /**
   * Takes the data directory's lock (one broker per directory; throws DataDirLockedError naming
   * the holder), then opens the metadata, the log (damaged segments are quarantined: the leader
   * holds what they lost) and the promise.
   */
  static async open(options: ReplicaOptions): Promise<Replica> {
    const lock = DataDirLock.acquire(options.dataDir);
    let meta: MetaStore | null = null;
    let log: SegmentLog | null = null;
    let snapshots: SnapshotStore | null = null;
    try {
      meta = MetaStore.open(join(options.dataDir, metaDirName));
      log = await SegmentLog.open({
        dir: join(options.dataDir, logDirName),
        segmentBytes: options.segmentBytes,
        flush: options.flush,
        retention: {
          ...(options.retentionBytesMax ? { bytesMax: options.retentionBytesMax } : {}),
          ...(options.retentionAgeMsMax ? { ageMsMax: options.retentionAgeMsMax } : {}),
        },
        logger: (event) => options.logger.info(event.event, event),
        onDamage: 'quarantine',
      });
      for (const q of log.quarantined)
        options.logger.warn('replica.quarantined', { file: q.file, quarantinedAs: q.quarantinedAs, lastGoodOffset: q.lastGoodOffset, reason: q.reason });
      if (log.quarantined.length > 0) options.observer?.segmentsQuarantined?.(log.quarantined.length);
      snapshots = await SnapshotStore.open({ dir: join(options.dataDir, snapshotsDirName), logger: (event) => options.logger.info(event.event, event) });
      const latest = snapshots.latest();
      const snapshot = latest === null ? null : decodeSnapshotPayload(latest, await snapshots.readPayload(latest));
      if (snapshot !== null) resetLogBelowSnapshot(log, snapshot.meta, options.logger);
      const hard = meta.hardState();
      // The promise file wins; a directory from before it has the promise of the last epoch or
      // vote change in the hard state, or none at all (the core then uses the commit mark).
      const promisePath = join(options.dataDir, promiseFileName);
      let promisedOffset = readPromiseFile(promisePath)?.offset ?? hard.promisedOffset;
      const promise = PromiseFile.open(promisePath, promisedOffset ?? 0);
      const format = readDirectoryFormat(options.dataDir);
      if (format !== null) checkDirectoryFormat(options.dataDir, format, { brokerId: options.id, ...options.formatIdentity });
      const empty =
        hard.epoch === 0 &&
        hard.votedFor === null &&
        (promisedOffset ?? 0) === 0 &&
        log.endOffset === 0 &&
        latest === null &&
        meta.appliedOffset() === 0 &&
        meta.highWatermark() === 0;
      if (empty && format === null && process.env.MAMBA_TEST_RECOVERING_RULE_OFF !== '1') {
        // Issue 13.3, a replaced disk: what this broker promised and voted before is unknown.
        // Stored before the core is made, so that it opens recovering (and stays so across a restart).
        promise.storeSync(unknownMarkOffset);
        promisedOffset = unknownMarkOffset;
        options.logger.warn('replica.joining_as_recovering', {
          reason: 'empty data directory that was never formatted (a replaced disk?): no vote until it holds the leader log',
          hint: 'a new group formats its directories first (mambamq storage format)',
        });
      }
      const stored = meta;
      const storage = new LogRaftStorage(
        log,
        { epoch: hard.epoch, votedFor: hard.votedFor, ...(promisedOffset !== undefined ? { promisedOffset } : {}) },
        () => Math.max(stored.highWatermark(), stored.appliedOffset()),
        snapshotView(log, snapshot?.meta ?? null, options.logger),
      );
      return new Replica(options, log, meta, storage, lock, promise, snapshots, { snapshot });
    } catch (error) {
      snapshots?.close();
      if (log) await log.close().catch(() => undefined);
      if (meta) await meta.close().catch(() => undefined);
      lock.release();
      throw error;
    }
  }

  /**
   * Brings the state machine up to the stored state (see the top of the file: restore, replay,
   * index, apply), then starts ticking.
   */
  start(machine: StateMachine, transport: Transport): void {
    this.machine = machine;
    this.transport = transport;
    const opened = this.openedSnapshot;
    this.openedSnapshot = null; // the payload is not kept once the machine has it
    const machineAppliedOffset = this.restoreOnStart(machine, opened);
    // Retention keeps what the machine has not stored: a gap means its store was lost or replaced.
    if (machine.appliedOffset && machineAppliedOffset < this.log.startOffset)
      this.options.logger.warn('replica.apply.gap', { appliedOffset: machineAppliedOffset, startOffset: this.log.startOffset });
    this.appliedOffset = Math.max(machineAppliedOffset, this.log.startOffset);
    this.replayStoredLog(opened?.meta.endOffset ?? 0);
    // The core read the membership entries from the storage when it was made (on open), before
    // the replay above noted the log's: made again from the same durable state, it starts with
    // the configuration in force (a restart after a membership change).
    this.core = this.newCore();
    machine.indexFromSnapshot?.(opened === null ? null : { endOffset: opened.meta.endOffset, payload: opened.machinePayload });
    // Everything below the snapshot is committed (it holds committed state only).
    this.highWatermark = Math.min(Math.max(this.meta.highWatermark(), opened?.meta.endOffset ?? 0), this.log.endOffset);
    this.applyCommitted();
    if (this.options.flush.mode === 'sync') {
      // Group commit finished: the core may count the newly flushed entries.
      this.log.onDurable((durableOffset) => {
        // During a Ready (a snapshot install resets the log and reports its start durable at
        // once) advance() reports the durable end itself.
        if (this.closed || this.pumping) return;
        this.core.markDurable(durableOffset);
        this.durableWaiters.release(durableOffset);
        this.pump();
      });
    }
    this.promise.onDurable(() => this.releaseHeld());
    this.ticker = setInterval(() => this.onTick(), this.options.tickMs);
    this.recoveryTimer = setInterval(() => this.reportRecovery(), 1000);
    this.recoveryTimer.unref();
    // The snapshot policy is looked at here too, not only when entries are applied: a capture put
    // off (snapshotNotBeforeMs) must come on an idle group as well.
    this.retentionTimer = setInterval(() => {
      this.applyRetention();
      this.maybeTakeSnapshot();
    }, this.options.retentionIntervalMs ?? retentionIntervalMsDefault);
    this.retentionTimer.unref();
    this.persistTimer = setInterval(() => this.persistApplied(), 1000);
    this.persistTimer.unref();
    this.hasStarted = true;
    this.options.logger.info('replica.started', {
      startOffset: this.log.startOffset,
      endOffset: this.log.endOffset,
      appliedOffset: this.appliedOffset,
      snapshotEndOffset: this.core.snapshot?.endOffset ?? null,
      recovering: this.core.recovering,
    });
  }

  /**
   * A machine whose stored applied offset is below the latest snapshot's end restores it (a
   * crash after an install stored the snapshot, or after a snapshot of our own was written
   * before the machine stored its applied offset). Returns the machine's applied offset.
   */
  private restoreOnStart(machine: StateMachine, opened: SnapshotContent | null): number {
    const appliedOffset = machine.appliedOffset?.() ?? 0;
    if (opened === null || appliedOffset >= opened.meta.endOffset) return appliedOffset;
    const { endOffset, epoch } = opened.meta;
    if (!machine.restoreSnapshot) {
      this.options.logger.warn('replica.snapshot.not_restored', {
        snapshotEndOffset: endOffset,
        appliedOffset,
        reason: 'the state machine cannot restore snapshots',
      });
      return appliedOffset;
    }
    const startedMs = Date.now();
    this.options.logger.info('replica.snapshot.restoring', {
      snapshotEndOffset: endOffset,
      snapshotEpoch: epoch,
      appliedOffset,
      payloadBytes: opened.machinePayload.byteLength,
    });
    machine.restoreSnapshot(endOffset, opened.machinePayload);
    assert(
      !machine.appliedOffset || machine.appliedOffset() === endOffset,
      `restoreSnapshot(${endOffset}) left the applied offset at ${machine.appliedOffset?.()}`,
    );
    this.options.logger.info('replica.snapshot.restored', { snapshotEndOffset: endOffset, snapshotEpoch: epoch, durationMs: Date.now() - startedMs });
    return endOffset;
  }

  /**
   * Every stored entry through onAppend (the machine indexes the log); the entries above the
   * latest snapshot that the machine applied already count towards the next snapshot.
   */
  private replayStoredLog(snapshotEndOffset: number): void {
    const total = this.log.endOffset - this.log.startOffset;
    let offset = this.log.startOffset;
    let lastReportMs = Date.now();
    while (offset < this.log.endOffset) {
      for (const batch of this.log.read(offset, 4 * 1024 * 1024)) {
        const entry = entryFromBatch(batch);
        this.storage.noteAppended(entry);
        this.machine!.onAppend(entry);
        offset = entry.offset + entry.count;
        if (entry.offset >= snapshotEndOffset && offset <= this.appliedOffset) this.countApplied(entry);
      }
      if (Date.now() - lastReportMs > 1000) {
        lastReportMs = Date.now();
        this.options.logger.info('replica.replay.progress', {
          offset,
          endOffset: this.log.endOffset,
          percent: Math.round((100 * (offset - this.log.startOffset)) / Math.max(1, total)),
        });
      }
    }
  }

  // ------------------------------------------------------------------ inputs to the core

  private onTick(): void {
    if (this.closed) return;
    this.core.tick();
    this.wakeParkedOnTick(Date.now(), !this.appendedSinceTick);
    this.appendedSinceTick = false;
    this.pump();
  }

  /** A message that needs no answer on its own call (answers to our requests). */
  deliver(message: Message): void {
    if (this.closed) return;
    const refused = this.core.step(message);
    if (refused !== null) return this.noteRefused(message, refused);
    this.pump();
    // After the pump: an answer from a new leader made this replica its follower in that pump.
    if (message.type === 'FetchResponse' && message.error === undefined && this.role === 'follower' && message.from === this.leaderId)
      this.leaderFetchAnsweredAtMs = performance.now();
  }

  /**
   * An incoming peer request: steps it and resolves with the core's answer. An empty Fetch
   * answer from a caught-up follower is parked (long poll) until the next append, the next
   * request on the same `channel`, the end of that channel, or waitMsMax.
   */
  handle(request: Message, waitMsMax: number, channel: object | null = null): Promise<Message | null> {
    if (this.closed) return Promise.resolve(null);
    const answerType = answerTypeOf[request.type];
    if (!answerType) {
      this.deliver(request);
      return Promise.resolve({ ...request, from: this.id, to: request.from });
    }
    if (channel) this.supersedeParked(channel);
    let answer: Message | null = null;
    const pending: PendingAnswer = {
      from: request.from,
      type: answerType,
      requestId: request.type === 'FetchRequest' ? request.requestId : null,
      resolve: (message) => {
        answer = message;
      },
    };
    this.pendingAnswers.push(pending);
    try {
      const refused = this.core.step(request);
      if (refused !== null) {
        this.noteRefused(request, refused);
        throw new FailedPreconditionError(`refused: no correct replica sends this ${request.type} (${refused})`);
      }
      this.pump();
    } catch (error) {
      this.removePending(pending);
      return Promise.reject(error);
    }
    // The core answers within the same pump; none means it had nothing to say (e.g. stale).
    this.removePending(pending);
    const answered = answer as Message | null;
    if (answered?.type === 'FetchResponse' && request.type === 'FetchRequest' && this.parkable(request, answered, waitMsMax)) {
      return new Promise((resolve) => {
        const deadlineMs = Date.now() + Math.min(waitMsMax, this.options.fetchWaitMsMax);
        this.parkedFetches.add({ request, emptyAnswer: answered, resolve: (m) => resolve(this.noteSent(m)), deadlineMs, channel });
      });
    }
    return Promise.resolve(this.noteSent(answered));
  }

  /** A peer's message no correct replica could send (message-check.ts): dropped, and said. */
  private noteRefused(message: Message, reason: string): void {
    this.options.observer?.messageRefused?.(message.type);
    this.options.logger.warn('raft.message_refused', { from: message.from, messageType: message.type, messageEpoch: message.epoch, reason });
  }

  /** Remembers the high watermark each follower was last sent (see wakeParkedOnTick). */
  private noteSent(answer: Message | null): Message | null {
    if (answer?.type === 'FetchResponse') this.highWatermarkSent.set(answer.to, answer.highWatermark);
    return answer;
  }

  /** Long poll: an empty answer to a caught-up follower of this leader waits for new entries. */
  private parkable(request: FetchRequest, answer: FetchResponse, waitMsMax: number): boolean {
    const empty = answer.entries.length === 0 && !answer.error && !answer.divergingEpoch && !answer.snapshotNeeded;
    // The core's high watermark: the answer may carry a lower one while the promise it relies on
    // is being written (offerHighWatermark); the next wake sends the exposed one.
    const caughtUp = request.fetchOffset >= this.log.endOffset && Math.max(answer.highWatermark, this.offeredHighWatermark) >= request.fetchOffset;
    return empty && caughtUp && waitMsMax > 0 && this.role === 'leader';
  }

  private removePending(pending: PendingAnswer): void {
    const index = this.pendingAnswers.indexOf(pending);
    if (index >= 0) this.pendingAnswers.splice(index, 1);
  }

  /** A new request on a stream replaces its parked one (the follower applies only its latest). */
  private supersedeParked(channel: object): void {
    for (const parked of this.parkedFetches) {
      if (parked.channel !== channel) continue;
      this.parkedFetches.delete(parked);
      parked.resolve(parked.emptyAnswer);
    }
  }

  /** The stream `channel` ended: its parked Fetches have nowhere to go. */
  dropChannel(channel: object): void {
    for (const parked of this.parkedFetches) {
      if (parked.channel !== channel) continue;
      this.parkedFetches.delete(parked);
      parked.resolve(null);
    }
  }

  /**
   * Re-steps every parked Fetch into the core (called inside pump, between Readys); their
   * answers come out in the next Ready and are resolved by route().
   */
  private wakeParked(filter: (parked: ParkedFetch) => boolean): void {
    for (const parked of [...this.parkedFetches]) {
      if (!filter(parked)) continue;
      this.parkedFetches.delete(parked);
      this.pendingAnswers.push({
        from: parked.request.from,
        type: 'FetchResponse',
        requestId: parked.request.requestId,
        resolve: parked.resolve,
        fallback: parked.emptyAnswer,
      });
      this.core.step(parked.request);
    }
  }

  /**
   * On a tick: parked Fetches past their deadline get their answer, and, after a tick with no
   * append (`quiet`), so do those whose follower has not been sent the current high watermark.
   * A new high watermark alone only bounds what followers may serve to consumers, so while
   * entries keep coming it rides with the next ones: when producers send one message at a time,
   * waking for it would add one answer and one request per follower per commit.
   */
  private wakeParkedOnTick(nowMs: number, quiet: boolean): void {
    if (this.parkedFetches.size === 0) return;
    const highWatermark = this.highWatermark;
    this.wakeParked((p) => p.deadlineMs <= nowMs || (quiet && highWatermark > (this.highWatermarkSent.get(p.request.from) ?? -1)));
  }

  // ------------------------------------------------------------------ proposals

  /**
   * Appends `payload` (spanning `count` offsets) as a data entry. Returns its group-log offset;
   * the entry is in the log when this returns. Throws NotLeaderError when not the leader.
   */
  propose(payload: Uint8Array, count: number): number {
    if (this.closed) throw new UnavailableError('broker is shutting down');
    if (this.commitWaiters.size >= this.options.pendingProposalsMax) {
      throw new ResourceExhaustedError(`${this.commitWaiters.size} produce requests already wait for replication (limit ${this.options.pendingProposalsMax})`);
    }
    const result = this.core.propose(payload, count);
    if (!result.ok) {
      if (result.error === 'INVALID') throw new InvalidArgumentError('proposal rejected by the replication core');
      if (result.error === 'BACKPRESSURE') throw new ResourceExhaustedError('too many uncommitted entries; retry shortly');
      throw this.notLeader(result.error === 'TRANSFERRING' ? 'leadership is being transferred' : undefined);
    }
    this.pump();
    return result.offset;
  }

  notLeader(detail?: string): NotLeaderError {
    const leader = this.leaderId && this.leaderId !== this.id ? this.leaderId : null;
    return new NotLeaderError(
      `broker ${this.id} is not the leader of its group${leader ? `; the leader is ${leader}` : '; no leader is known yet'}${detail ? ` (${detail})` : ''}`,
      leader,
      null,
    );
  }

  // ------------------------------------------------------------------ membership and leadership (issue 13.4)
  // Thin: each calls the core once and runs the Ready loop so the entry (or TimeoutNow) goes out;
  // the operator's flow (catch-up, promotion, waits) is the broker's (src/broker/membership.ts).

  /** addLearner (core.ts): appends the membership entry that makes `member` a learner, or refuses. */
  addLearner(member: Member): MembershipResult {
    return this.afterChange(this.core.addLearner(member));
  }

  promoteLearner(id: ReplicaId): MembershipResult {
    return this.afterChange(this.core.promoteLearner(id));
  }

  removeMember(id: ReplicaId, options: RemoveOptions = {}): MembershipResult {
    return this.afterChange(this.core.removeMember(id, options));
  }

  /** Dissertation §3.10 through the core: to `to`, or to the best voter when null. */
  transferLeadership(to: ReplicaId | null = null): TransferResult {
    if (this.closed) throw new UnavailableError('broker is shutting down');
    const result = this.core.transferLeadership(to);
    this.pump();
    return result;
  }

  private afterChange(result: MembershipResult): MembershipResult {
    if (this.closed) throw new UnavailableError('broker is shutting down');
    if (result.ok) this.pump();
    return result;
  }

  /** The configuration in force as this replica's log says (maybe uncommitted): voters, learners, endpoints. */
  get membership(): MembershipConfig {
    return this.core.membership;
  }

  /**
   * Resolves once the high watermark passes `offset` (the entry there is committed); rejects with
   * UnavailableError when the entry is truncated or this replica loses leadership first.
   */
  waitCommitted(offset: number): Promise<void> {
    return this.commitWaiters.wait(offset + 1, this.highWatermark);
  }

  // ------------------------------------------------------------------ the Ready loop

  /**
   * Runs Readys until the core has nothing more. When entries were appended (or the role
   * changed), parked Fetches are re-stepped once the core is idle and the loop runs on, so the
   * answers carrying the new entries leave on the same turn of the event loop as the append.
   */
  private pump(): void {
    if (this.pumping || this.closed) return; // re-entrant calls are covered by the running loop
    this.pumping = true;
    try {
      let wakeRounds = 0;
      for (let rounds = 0; rounds < 1000; rounds++) {
        const ready = this.core.ready();
        if (ready) {
          this.execute(ready);
          continue;
        }
        if (!this.wakePending || this.parkedFetches.size === 0 || wakeRounds >= wakeRoundsPerPumpMax) break;
        this.wakePending = false;
        wakeRounds++;
        this.wakeParked(() => true);
      }
    } finally {
      this.pumping = false;
    }
    this.wakePending = false;
    this.answerUnansweredWakes();
  }

  /** A woken Fetch the core did not answer in the pump that woke it gets its old empty answer. */
  private answerUnansweredWakes(): void {
    if (!this.pendingAnswers.some((p) => p.fallback)) return;
    for (const pending of this.pendingAnswers.filter((p) => p.fallback)) {
      this.removePending(pending);
      pending.resolve(pending.fallback!);
    }
  }

  /** One Ready, in the order written on the type (src/raft/types.ts). */
  private execute(ready: Ready): void {
    if (ready.hardState) this.persistHardState(ready.hardState); // 1
    if (ready.installSnapshot) this.installSnapshot(ready.installSnapshot); // 2
    if (ready.truncateTo !== undefined) this.truncate(ready.truncateTo); // 3
    const nowMs = Date.now();
    const appendStartMs = performance.now();
    // 4
    for (const entry of ready.entries) {
      this.log.append(batchOfEntry(entry, nowMs));
      this.storage.noteAppended(entry);
      this.machine!.onAppend(entry);
    }
    if (ready.entries.length) {
      this.options.observer?.appended((performance.now() - appendStartMs) / 1000);
      if (this.role === 'leader') this.prePromise();
    }
    this.core.advance(ready, this.durableEnd()); // 5
    // Outside the order: the snapshot transfer (KIP-630), started or stopped.
    if (ready.fetchSnapshot !== undefined) this.onFetchSnapshot(ready.fetchSnapshot);
    if (ready.roleChange) this.changeRole(ready.roleChange.role, ready.roleChange.epoch, ready.roleChange.leaderId);
    if (ready.events) for (const event of ready.events) this.onEvent(event);
    // After a restart the core starts from 0 until the leader tells it; what this replica
    // applied before (a lower bound of the committed prefix) stays known. Before the messages:
    // Fetch answers carry at most the high watermark this replica has exposed.
    this.offeredHighWatermark = Math.max(this.offeredHighWatermark, ready.highWatermark);
    if (ready.highWatermark > this.highWatermark) this.offerHighWatermark(ready.highWatermark);
    for (const message of ready.messages) this.routeOrHold(message); // 6
    if (ready.entries.length) {
      if (this.options.flush.mode === 'async') this.durableWaiters.release(this.durableEnd());
      this.wakePending = true;
      this.appendedSinceTick = true;
    }
  }

  // ------------------------------------------------------------------ snapshots (DESIGN §12, KIP-630)

  /** Ready.fetchSnapshot: start or stop the transfer; a machine that cannot restore never fetches. */
  private onFetchSnapshot(request: SnapshotRequest | null): void {
    if (request !== null && !this.machine?.restoreSnapshot) {
      if (this.installImpossibleLogged === null || !sameSnapshot(this.installImpossibleLogged.snapshot, request.snapshot)) {
        this.installImpossibleLogged = request;
        this.options.logger.error('replica.snapshot.install_impossible', {
          leader: request.leaderId,
          snapshotEndOffset: request.snapshot.endOffset,
          snapshotEpoch: request.snapshot.epoch,
          reason: 'the leader log starts above this replica and its state machine cannot restore snapshots; it keeps fetching',
        });
      }
      return;
    }
    this.fetcher.want(request);
  }

  /** The follower's end of one FetchSnapshot call. */
  private fetchSnapshotChunk(request: FetchSnapshotRequest): Promise<FetchSnapshotResponse> {
    const transport = this.transport;
    if (this.closed || !transport?.fetchSnapshot) return Promise.reject(new UnavailableError('no transport for FetchSnapshot'));
    return transport.fetchSnapshot(request);
  }

  /** The transfer stored and verified a snapshot: the core installs it if it still wants it. */
  private onSnapshotFetched(content: SnapshotContent): void {
    if (this.closed) return;
    const { endOffset, epoch } = content.meta;
    const wanted = this.core.fetchingSnapshot;
    if (wanted === null || !sameSnapshot(wanted.snapshot, content.meta)) {
      this.options.logger.info('replica.snapshot.not_wanted', { snapshotEndOffset: endOffset, snapshotEpoch: epoch });
      return;
    }
    this.fetchedSnapshot = content;
    if (!this.core.snapshotFetched(content.meta)) {
      this.fetchedSnapshot = null;
      this.options.logger.info('replica.snapshot.not_wanted', { snapshotEndOffset: endOffset, snapshotEpoch: epoch });
      return;
    }
    this.pump(); // the next Ready installs it (step 2)
    assert(this.fetchedSnapshot === null, 'a fetched snapshot the core took was not installed by the next Ready');
  }

  /**
   * Ready step 2: the fetched snapshot (the store's latest, put there by finishReceive) becomes
   * the state: the machine restores it (durably), the log is reset to empty at its end
   * (durably), the storage adapter and the apply loop start there, and the machine takes from
   * the snapshot what the empty log cannot give it.
   */
  private installSnapshot(meta: SnapshotMeta): void {
    const fetched = this.fetchedSnapshot;
    const machine = this.machine!;
    assert(fetched !== null && sameSnapshot(fetched.meta, meta), 'Ready installs a snapshot that was not fetched');
    const latest = this.snapshots.latest();
    assert(latest !== null && sameSnapshot(latest, meta), 'the snapshot installed must be the latest stored');
    assert(machine.restoreSnapshot !== undefined, 'install without restoreSnapshot');
    const endOffset = meta.endOffset;
    const previous = { startOffset: this.log.startOffset, endOffset: this.log.endOffset };
    this.storage.setSnapshot(meta);
    machine.restoreSnapshot(endOffset, fetched.machinePayload);
    this.log.resetTo(endOffset, meta.epoch);
    this.storage.noteReset(endOffset);
    this.fetchedSnapshot = null;
    this.appliedOffset = endOffset;
    this.meta.recordApplied(endOffset, Math.max(this.highWatermark, endOffset));
    this.persistedAppliedOffset = endOffset;
    this.appliedEntriesSinceSnapshot = 0;
    this.appliedBytesSinceSnapshot = 0;
    this.commitWaiters.failAbove(endOffset, () => new UnavailableError('the log was replaced by a snapshot'));
    this.durableWaiters.failAbove(endOffset, () => new UnavailableError('the log was replaced by a snapshot'));
    machine.indexFromSnapshot?.({ endOffset, payload: fetched.machinePayload });
    this.options.logger.info('replica.snapshot.installed', {
      snapshotEndOffset: endOffset,
      snapshotEpoch: meta.epoch,
      previousStartOffset: previous.startOffset,
      previousEndOffset: previous.endOffset,
    });
  }

  /**
   * The leader's end of FetchSnapshot: a chunk of a snapshot it holds, if it leads the
   * request's epoch. Resolves null while shutting down; RESOURCE_EXHAUSTED (retriable) beyond
   * snapshotChunkReadsInflightMax reads at once.
   */
  async serveSnapshotChunk(request: FetchSnapshotRequest): Promise<FetchSnapshotResponse | null> {
    if (this.closed) return null;
    if (this.snapshotChunkReadsInflight >= snapshotChunkReadsInflightMax) {
      throw new ResourceExhaustedError(`${this.snapshotChunkReadsInflight} snapshot chunks are being read (limit ${snapshotChunkReadsInflightMax}); retry`);
    }
    this.snapshotChunkReadsInflight++;
    try {
      const self = { id: this.id, epoch: this.core.epoch, isLeader: this.core.role === 'leader', leaderId: this.core.leaderId };
      return await answerFetchSnapshot(this.snapshots, self, request);
    } finally {
      this.snapshotChunkReadsInflight--;
    }
  }

  // ------------------------------------------------------------------ backups (issue 14; backup-source.ts)

  /**
   * Pins a backup of this group on its leader: the high watermark H, the newest snapshot at or
   * below it (kept open) and the log from its start to H (retention held back there until the
   * source is closed). NotLeaderError on a follower; UnavailableError (retriable) while this
   * leader has not committed an entry of its own epoch (its high watermark may still lie below
   * what an earlier leader acknowledged); ResourceExhaustedError beyond backupsInflightMax.
   */
  openBackup(): BackupSource {
    if (this.closed) throw new UnavailableError('broker is shutting down');
    if (!this.isLeader) throw this.notLeader('a backup reads from the leader');
    const highWatermark = this.highWatermark;
    if (epochBefore(this.log, highWatermark) !== this.epoch)
      throw new UnavailableError(`broker ${this.id} leads epoch ${this.epoch} but has not committed an entry of it yet; retry the backup shortly`);
    if (this.retentionHolds.size >= backupsInflightMax)
      throw new ResourceExhaustedError(`${this.retentionHolds.size} backups are running on broker ${this.id} (limit ${backupsInflightMax}); retry later`);
    // The machine applies (and so snapshots) only below the exposed high watermark.
    const snapshotId =
      this.snapshots
        .list()
        .filter((id) => id.endOffset <= highWatermark)
        .pop() ?? null;
    const logStartOffset = this.log.startOffset;
    if (logStartOffset > (snapshotId?.endOffset ?? 0))
      throw new FailedPreconditionError(
        `broker ${this.id}: the log starts at ${logStartOffset}, above the newest snapshot (${snapshotId?.endOffset ?? 'none'}): a backup needs a snapshot that covers the log start; retry once this replica has taken one`,
      );
    const snapshot = snapshotId === null ? null : this.snapshots.openReader(snapshotId);
    const hold = { offset: logStartOffset };
    this.retentionHolds.add(hold);
    const lastEpoch = epochBefore(this.log, highWatermark);
    assert(lastEpoch !== null, `backup: no epoch known below ${highWatermark}`);
    return new BackupSource(
      {
        leaderId: this.id,
        epoch: this.epoch,
        highWatermark,
        snapshot: snapshot === null || snapshotId === null ? null : { id: snapshotId, totalBytes: snapshot.totalBytes },
        logStartOffset,
        logBytes: this.log.byteSizeBetween(logStartOffset, highWatermark),
        lastEpoch,
        seedVoters: [...this.options.voters],
      },
      {
        readBatches: (offset, bytesMax, endOffsetMax) => this.log.read(offset, bytesMax, endOffsetMax),
        snapshot,
        release: () => this.retentionHolds.delete(hold),
        logger: this.options.logger,
      },
    );
  }

  /** The snapshot policy counts what the apply loop hands over (see maybeTakeSnapshot). */
  private countApplied(entry: Entry): void {
    this.appliedEntriesSinceSnapshot += 1;
    this.appliedBytesSinceSnapshot += batchHeaderBytes + entry.payload.byteLength;
  }

  /**
   * The snapshot policy: once the applied offset moved snapshotIntervalEntries entries or
   * snapshotIntervalBytes log bytes past the latest snapshot, one snapshot, off this turn of the
   * event loop; never while another is written or a fetched one is on its way in. Looked at after
   * every apply, when a snapshot write ends, and on the retention timer (an idle group).
   */
  private maybeTakeSnapshot(): void {
    if (this.snapshotTaking || this.closed || !this.machine?.captureSnapshot || this.fetcher.active || this.fetchedSnapshot !== null) return;
    const entriesDue = this.appliedEntriesSinceSnapshot >= (this.options.snapshotIntervalEntries ?? snapshotIntervalEntriesDefault);
    const bytesDue = this.appliedBytesSinceSnapshot >= (this.options.snapshotIntervalBytes ?? snapshotIntervalBytesDefault);
    if ((!entriesDue && !bytesDue) || Date.now() < this.snapshotNotBeforeMs) return;
    // Nothing committed past the latest snapshot in the core's view (after a restart its high
    // watermark starts at the snapshot until the leader tells it more).
    if (this.core.highWatermark <= (this.core.snapshot?.endOffset ?? 0)) return;
    this.snapshotTaking = true;
    setImmediate(() => {
      this.takeSnapshot()
        .catch((error: unknown) => this.options.logger.error('replica.snapshot.take_failed', { error: String(error) }))
        .finally(() => {
          this.snapshotTaking = false;
          // Entries applied while it was written may have made the next one due already.
          this.maybeTakeSnapshot();
        });
    });
  }

  /**
   * Captures the machine (synchronously), writes the file (in the background: fdatasync, read
   * back, rename), then tells the core (compact) and lets retention remove what it covers. A
   * capture the core cannot take yet (beyond its high watermark after a restart, or not past the
   * latest snapshot) waits for the next round of the policy.
   */
  private async takeSnapshot(): Promise<void> {
    const machine = this.machine;
    if (this.closed || !machine?.captureSnapshot) return;
    const startedMs = Date.now();
    const captured = machine.captureSnapshot();
    const endOffset = captured.endOffset;
    assert(Number.isSafeInteger(endOffset) && endOffset >= 0, `captureSnapshot: bad endOffset ${endOffset}`);
    const usable = endOffset > (this.core.snapshot?.endOffset ?? 0) && endOffset >= this.core.logStartOffset && endOffset <= this.core.highWatermark;
    if (!usable) {
      this.snapshotNotBeforeMs = Date.now() + snapshotRetryMs;
      this.options.logger.debug('replica.snapshot.skipped', {
        endOffset,
        highWatermark: this.core.highWatermark,
        snapshotEndOffset: this.core.snapshot?.endOffset ?? null,
      });
      return;
    }
    this.appliedEntriesSinceSnapshot = 0;
    this.appliedBytesSinceSnapshot = 0;
    const meta = this.core.snapshotMetaAt(endOffset);
    const id = { endOffset, epoch: meta.epoch };
    try {
      await this.snapshots.write(id, encodeSnapshotPayload(meta, captured.payload));
    } catch (error) {
      this.snapshotNotBeforeMs = Date.now() + snapshotRetryMs;
      this.options.logger.warn('replica.snapshot.write_failed', { snapshotEndOffset: endOffset, snapshotEpoch: meta.epoch, error: String(error) });
      return;
    }
    if (this.closed) return;
    if ((this.core.snapshot?.endOffset ?? 0) >= endOffset || endOffset < this.core.logStartOffset) {
      this.options.logger.info('replica.snapshot.superseded', { snapshotEndOffset: endOffset, latestEndOffset: this.core.snapshot?.endOffset ?? null });
      return;
    }
    this.storage.setSnapshot(meta);
    this.core.compact(endOffset);
    this.options.logger.info('replica.snapshot.taken', {
      snapshotEndOffset: endOffset,
      snapshotEpoch: meta.epoch,
      payloadBytes: captured.payload.byteLength,
      durationMs: Date.now() - startedMs,
    });
    this.pump();
    this.applyRetention();
  }

  /** The snapshot transfer in progress on this follower, or null (status). */
  snapshotTransfer(): SnapshotTransferState | null {
    const request = this.core.fetchingSnapshot;
    if (request === null) return null;
    const progress = this.fetcher.progress;
    const same = progress !== null && sameSnapshot(progress.id, request.snapshot);
    return {
      snapshot: { ...request.snapshot },
      leaderId: request.leaderId,
      receivedBytes: same ? progress.receivedBytes : 0,
      totalBytes: same ? progress.totalBytes : 0,
    };
  }

  // ------------------------------------------------------------------ the promise (DESIGN §12)

  /**
   * Ready step 1. Epoch and vote are rare and go to LMDB synchronously (with the promise as it
   * stands). The promise rises with nearly every Ready, so it goes to the promise file by group
   * commit, off the event loop; what relies on it is held until it is durable (routeOrHold,
   * offerHighWatermark), which covers "persist before sending" for the reports it guards.
   */
  private persistHardState(state: HardState): void {
    const stored = this.storage.hardState();
    if (stored.epoch !== state.epoch || stored.votedFor !== state.votedFor) this.meta.saveHardState(state);
    this.storage.setHardState(state);
    if (state.promisedOffset === undefined) return;
    // A leader may already have promised more (prePromise); the core's value rules otherwise,
    // lower too (a legitimate truncation drops what was never committed).
    const wanted = this.role === 'leader' ? Math.max(state.promisedOffset, this.promise.wantedOffset) : state.promisedOffset;
    if (wanted !== this.promise.wantedOffset) this.promise.store(wanted);
  }

  /**
   * A leader promises what it appends at once, so the promise's fdatasync runs beside the log's
   * own flush and the replication round trip instead of after them; by the time the high
   * watermark counts the leader's copy, the promise covering it is usually durable. Over-promising
   * is safe (a restart below it recovers from the others) and only a leader does it: after a
   * power loss of all three, the followers, which promise only what they synced, can still elect.
   */
  private prePromise(): void {
    const endOffset = this.log.endOffset;
    if (endOffset > this.promise.wantedOffset) this.promise.store(endOffset);
  }

  /** A Fetch at N reports N durable: it leaves once N is promised durably, in order. */
  private routeOrHold(message: Message): void {
    if (message.type === 'FetchRequest' && (this.heldFetches.length > 0 || this.promise.durableOffset < message.fetchOffset)) {
      assert(this.heldFetches.length < heldHighWatermarksMax, 'too many Fetches held for the promise');
      this.heldFetches.push(message);
      return;
    }
    if (message.type === 'FetchResponse' && message.highWatermark > this.highWatermark) {
      // A leader's answer carries only the high watermark it has exposed (its promise is durable).
      this.route({ ...message, highWatermark: this.highWatermark });
      return;
    }
    this.route(message);
  }

  /**
   * A leader counts its own copy for the high watermark: the core raised the promise for it in
   * this Ready, and the high watermark is exposed (acks, applies, Fetch answers) once that
   * promise is durable. A follower's high watermark comes from its leader and is exposed at once.
   */
  private offerHighWatermark(highWatermark: number): void {
    const requiredOffset = this.role === 'leader' ? (this.storage.hardState().promisedOffset ?? 0) : 0;
    if (this.heldHighWatermarks.length === 0 && this.promise.durableOffset >= requiredOffset) {
      this.advanceHighWatermark(highWatermark);
      return;
    }
    assert(this.heldHighWatermarks.length < heldHighWatermarksMax, 'too many high watermarks held for the promise');
    this.heldHighWatermarks.push({ highWatermark, requiredOffset });
  }

  /** A promise write finished: what it covers goes out, in order. */
  private releaseHeld(): void {
    if (this.closed) return;
    if (this.promise.error) {
      this.options.logger.error('replica.promise.failed', { error: this.promise.error.message });
      return; // nothing that relies on the promise leaves again
    }
    const durableOffset = this.promise.durableOffset;
    let released = 0;
    while (this.heldHighWatermarks.length > 0 && this.heldHighWatermarks[0]!.requiredOffset <= durableOffset) {
      const { highWatermark } = this.heldHighWatermarks.shift()!;
      if (highWatermark > this.highWatermark) this.advanceHighWatermark(highWatermark);
      released++;
    }
    while (this.heldFetches.length > 0 && this.heldFetches[0]!.fetchOffset <= durableOffset) {
      this.route(this.heldFetches.shift()!);
      released++;
    }
    // A new high watermark rides with the next Fetch answers or a quiet tick (wakeParkedOnTick).
    if (released > 0) this.pump();
  }

  // ------------------------------------------------------------------ events and recovery state

  private onEvent(event: RaftEvent): void {
    switch (event.type) {
      case 'replica.recovering':
      case 'replica.recovered': {
        const markUnknown = event.markOffset === unknownMarkOffset;
        const fields = { markOffset: markUnknown ? null : event.markOffset, markUnknown, endOffset: event.endOffset };
        if (event.type === 'replica.recovering') this.options.logger.warn(event.type, fields);
        else this.options.logger.info(event.type, fields);
        break;
      }
      case 'CommittedDataDivergence':
        this.divergence = {
          leaderId: event.leaderId,
          epoch: event.epoch,
          requestedEndOffset: event.requestedEndOffset,
          committedOffset: event.committedOffset,
          atMs: Date.now(),
        };
        this.options.logger.error('replica.committed_data_divergence', {
          leaderId: event.leaderId,
          divergenceEpoch: event.epoch,
          requestedEndOffset: event.requestedEndOffset,
          committedOffset: event.committedOffset,
        });
        break;
      default: {
        const never: never = event;
        throw new Error(`unknown replica event ${JSON.stringify(never)}`);
      }
    }
    this.reportRecovery();
  }

  /** The recovery picture for status, metrics and alerts. */
  recoveryState(): RecoveryState {
    const status = this.core.status();
    // A refusal stands while this replica stays in that epoch; a later epoch's leader is followed.
    const divergence = this.divergence !== null && this.divergence.epoch === status.epoch ? this.divergence : null;
    const markUnknown = status.recoveryMarkOffset === unknownMarkOffset;
    return {
      recovering: status.recovering,
      recoveryMarkOffset: markUnknown ? null : status.recoveryMarkOffset,
      markUnknown,
      promisedOffset: this.promise.durableOffset === unknownMarkOffset ? 0 : this.promise.durableOffset,
      recoveringFollowers: status.replicas.filter((r) => r.recovering && r.id !== this.id).map((r) => r.id),
      divergence,
    };
  }

  /**
   * The role as `mambamq status` and DescribeCluster show it: `refusing` while it refuses a
   * leader that lacks committed data (CommittedDataDivergence), `recovering` while its log ends
   * below its promise, else the Raft role.
   */
  roleLabel(): string {
    const state = this.recoveryState();
    if (state.divergence) return 'refusing';
    return state.recovering ? 'recovering' : this.role;
  }

  private reportRecovery(): void {
    if (this.closed || !this.options.observer?.recoveryChanged) return;
    const state = this.recoveryState();
    const key = JSON.stringify(state);
    if (key === this.recoveryReported) return;
    this.recoveryReported = key;
    this.options.observer.recoveryChanged(state);
  }

  /** What the core may count as this replica's copy (DESIGN §3: durable under the flush policy). */
  private durableEnd(): number {
    // async: the page cache is the promise (a process crash keeps it; the periodic flush bounds a
    // machine crash); sync: only what fdatasync has covered.
    return this.options.flush.mode === 'async' ? this.log.endOffset : this.log.durableOffset;
  }

  private truncate(endOffset: number): void {
    assert(endOffset >= this.highWatermark, `truncation to ${endOffset} below the high watermark ${this.highWatermark}`);
    this.options.logger.info('replica.truncate', { from: this.log.endOffset, to: endOffset });
    this.log.truncateTo(endOffset);
    this.storage.noteTruncated(endOffset);
    this.machine!.onTruncate(endOffset);
    this.commitWaiters.failAbove(endOffset, () => new UnavailableError('the entry was truncated by a new leader; it was not committed'));
    this.durableWaiters.failAbove(endOffset, () => new UnavailableError('the entry was truncated by a new leader'));
  }

  private route(message: Message): void {
    const requestId = message.type === 'FetchResponse' ? message.requestId : null;
    const index = this.pendingAnswers.findIndex((p) => p.from === message.to && p.type === message.type && p.requestId === requestId);
    if (index >= 0) {
      const [pending] = this.pendingAnswers.splice(index, 1);
      pending!.resolve(message);
      return;
    }
    if (answerTypeOf[message.type] !== undefined || message.type === 'TimeoutNow') this.transport!.send(message);
    // An answer whose call already ended (e.g. timed out) has nowhere to go: the peer retries.
  }

  private changeRole(role: Role, epoch: number, leaderId: ReplicaId | null): void {
    const wasLeader = this.role === 'leader';
    this.role = role;
    this.epoch = epoch;
    this.leaderId = leaderId;
    this.options.logger.setEpoch(epoch);
    this.options.logger.info('replica.role', { role, leader: leaderId });
    this.options.observer?.roleChanged(role, epoch, leaderId);
    if (wasLeader && role !== 'leader') {
      // The outcome of entries above the high watermark is now up to the next leader.
      this.commitWaiters.failAbove(
        this.highWatermark,
        () =>
          new UnavailableError(`broker ${this.id} lost leadership before the entry committed; it may or may not be stored (retry with an idempotent producer)`),
      );
      this.wakePending = true; // parked Fetches are answered now: not the leader any more
    }
    if (role === 'leader') this.caughtUpAtMs.clear();
    this.machine!.onRoleChange(role, epoch, leaderId);
  }

  private advanceHighWatermark(highWatermark: number): void {
    assert(highWatermark >= this.highWatermark, `high watermark went back from ${this.highWatermark} to ${highWatermark}`);
    this.highWatermark = highWatermark;
    this.applyCommitted();
    this.commitWaiters.release(highWatermark);
  }

  /** Hands every entry below the high watermark not applied yet to the state machine. */
  private applyCommitted(): void {
    const end = Math.min(this.highWatermark, this.log.endOffset);
    if (this.appliedOffset >= end) return;
    let offset = Math.max(this.appliedOffset, this.log.startOffset);
    while (offset < end) {
      // Through the storage: the newest entries come from its cache, not from a segment read.
      for (const entry of this.storage.entries(offset, 4 * 1024 * 1024)) {
        if (entry.offset >= end) break;
        if (entry.offset + entry.count <= this.appliedOffset) {
          offset = entry.offset + entry.count;
          continue;
        }
        if (entry.type === EntryType.Data) this.machine!.onCommit(entry);
        offset = entry.offset + entry.count;
        this.countApplied(entry);
      }
    }
    this.appliedOffset = offset;
    this.maybeTakeSnapshot();
  }

  /** Stores the applied offset now and then, not per commit: an LMDB commit costs a sync. */
  private persistApplied(): void {
    if (this.appliedOffset === this.persistedAppliedOffset) return;
    this.meta.recordApplied(this.appliedOffset, this.highWatermark);
    this.persistedAppliedOffset = this.appliedOffset;
  }

  /**
   * Removes head segments over the retention limits, only below the newest snapshot the core
   * knows (a follower below the log start is then sent it) and below what the machine and this
   * replica have applied and recorded (a restart replays from the machine's record).
   */
  private applyRetention(): void {
    if (this.closed) return;
    const recordedOffset = Math.min(this.persistedAppliedOffset, this.machine?.appliedOffset?.() ?? this.persistedAppliedOffset);
    let limitOffset = Math.max(0, Math.min(recordedOffset, this.core.snapshot?.endOffset ?? 0));
    for (const hold of this.retentionHolds) limitOffset = Math.min(limitOffset, hold.offset);
    const removed = this.log.applyRetention(Date.now(), limitOffset);
    if (removed === 0) return;
    assert(this.log.startOffset <= (this.core.snapshot?.endOffset ?? 0), 'retention removed entries no snapshot covers');
    this.options.logger.info('replica.retention', { segmentsRemoved: removed, startOffset: this.log.startOffset, limitOffset });
    this.machine?.onLogStartMoved?.(this.log.startOffset);
  }

  // ------------------------------------------------------------------ views

  get isLeader(): boolean {
    return this.role === 'leader';
  }

  get currentRole(): Role {
    return this.role;
  }

  get currentLeaderId(): ReplicaId | null {
    return this.leaderId;
  }

  get currentEpoch(): number {
    return this.epoch;
  }

  /** True once start() ran (the state machine is restored and the replica ticks) and until close(). */
  get started(): boolean {
    return this.hasStarted && !this.closed;
  }

  /**
   * When this replica last had an answer without error to a Fetch from the leader it follows, on
   * the monotonic clock (performance.now() ms, so a wall-clock step changes nothing), or null if
   * never: how /readyz tells a follower that replicates from one that lost its leader (the core's
   * own election timer counts ticks, not time).
   */
  get lastLeaderFetchAnswerAtMs(): number | null {
    return this.leaderFetchAnsweredAtMs;
  }

  /** The log end this replica counts as its own copy (see durableEnd). */
  get durableOffset(): number {
    return this.durableEnd();
  }

  get committedOffset(): number {
    return this.highWatermark;
  }

  /** The promise as durable in the promise file (see persistHardState). */
  get promisedOffset(): number {
    return this.promise.durableOffset;
  }

  /**
   * The core's status (log start, latest snapshot id, the snapshot it waits for, recovery...);
   * an unknown recovery mark (markUnknown) shows as null. snapshotTransfer() adds the bytes.
   */
  status(): RaftStatus {
    const status = this.core.status();
    return status.recoveryMarkOffset === unknownMarkOffset ? { ...status, recoveryMarkOffset: null } : status;
  }

  // ------------------------------------------------------------------ read API (the log for the broker and metrics)

  /**
   * Whole stored batches from the one holding `offset` (views of the log's mapping, CRC-checked):
   * at least one when any ends at or below `endOffsetMax`, then more while within `bytesMax`.
   * OutOfRangeError when `offset` is outside the log.
   */
  readBatches(offset: number, bytesMax: number, endOffsetMax: number): Buffer[] {
    return this.log.read(offset, bytesMax, endOffsetMax);
  }

  get logEndOffset(): number {
    return this.log.endOffset;
  }

  get logStats(): LogStats {
    return this.log.stats;
  }

  /** What a data directory of the former layout kept here for the state machine, or null. */
  legacyMachineState(): LegacyMachineState | null {
    return this.meta.legacyMachineState();
  }

  /** Drops that, once the state machine stored it itself. */
  forgetLegacyMachineState(): void {
    this.meta.forgetLegacyMachineState();
  }

  /** Lag of a follower in ms: how long ago its fetch offset last reached the high watermark. */
  followerLagMs(id: ReplicaId, matchedOffset: number, nowMs: number): number {
    if (matchedOffset >= this.highWatermark) {
      this.caughtUpAtMs.set(id, nowMs);
      return 0;
    }
    const since = this.caughtUpAtMs.get(id);
    if (since === undefined) {
      this.caughtUpAtMs.set(id, nowMs);
      return 0;
    }
    return nowMs - since;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    if (this.persistTimer) clearInterval(this.persistTimer);
    if (this.recoveryTimer) clearInterval(this.recoveryTimer);
    this.fetcher.stop();
    this.persistApplied();
    for (const parked of this.parkedFetches) parked.resolve(null);
    this.parkedFetches.clear();
    for (const pending of this.pendingAnswers.splice(0)) pending.resolve(null);
    this.commitWaiters.failAll(() => new UnavailableError('broker is shutting down'));
    this.durableWaiters.failAll(() => new UnavailableError('broker is shutting down'));
    this.transport?.close();
    await this.log.close();
    this.snapshots.close();
    this.promise.close();
    await this.meta.close();
    this.lock.release();
  }
}

/** The epoch of the entry holding `offset` - 1, or null when that entry is not in the log. */
function epochBefore(log: SegmentLog, offset: number): number | null {
  if (offset <= log.startOffset || offset > log.endOffset) return null;
  let epoch: number | null = null;
  for (const start of log.epochStartOffsets()) if (start.startOffset <= offset - 1) epoch = start.epoch;
  return epoch;
}

/**
 * On open (storage contract, KRaft's truncateToLatestSnapshot): a log that ends below the latest
 * snapshot, or holds the entry below its end in another epoch (a follower that crashed between
 * an install's restore and its log reset, its old log having diverged there), is reset to
 * start, empty, at the snapshot's end. Entries of the same epoch at the same offset are the same
 * entries (one leader per epoch), so a log that agrees there is kept.
 */
function resetLogBelowSnapshot(log: SegmentLog, meta: SnapshotMeta, logger: Logger): void {
  const endOffset = meta.endOffset;
  const heldEpoch = epochBefore(log, endOffset);
  let reason: string | null = null;
  if (log.endOffset < endOffset) reason = 'the log ends below the snapshot';
  else if (heldEpoch !== null && heldEpoch !== meta.epoch)
    reason = `the log holds offset ${endOffset - 1} in epoch ${heldEpoch}, the snapshot in ${meta.epoch}`;
  if (reason === null) return;
  logger.warn('replica.snapshot.log_reset', {
    snapshotEndOffset: endOffset,
    snapshotEpoch: meta.epoch,
    previousStartOffset: log.startOffset,
    previousEndOffset: log.endOffset,
    reason,
  });
  log.resetTo(endOffset, meta.epoch);
}

/**
 * What the storage adapter says about snapshots: the latest one, unless the log starts above it
 * (snapshots lost, or a directory from before snapshots whose retention cut the head): then the
 * core runs without snapshots until this replica takes one and restarts (LogRaftStorage).
 */
function snapshotView(log: SegmentLog, meta: SnapshotMeta | null, logger: Logger): { enabled: boolean; latest: SnapshotMeta | null } {
  if (log.startOffset === 0 || (meta !== null && meta.endOffset >= log.startOffset)) return { enabled: true, latest: meta };
  logger.warn('replica.snapshot.none_covers_log_start', {
    startOffset: log.startOffset,
    snapshotEndOffset: meta?.endOffset ?? null,
    detail: 'followers below the log start are served once this replica has taken a snapshot',
  });
  return { enabled: false, latest: null };
}

function sameSnapshot(left: SnapshotId, right: SnapshotId): boolean {
  return left.endOffset === right.endOffset && left.epoch === right.epoch;
}
