// RaftCore: the driver's entry point. A pure state machine: tick(), step(), propose(), the
// membership and transfer commands, the snapshot inputs (compact, snapshotFetched), and
// ready()/advance() to hand work to the driver. Same inputs (including the seeded random
// generator), same outputs.

import { assert } from '../assert.js';
import { encodeMembership } from './membership.js';
import { eventsQueuedMax, resolveConfig, RaftNode } from './node.js';
import { bestSuccessor, installFetchedSnapshot, maybeAdvanceHighWatermark, maybeFetch, maybeSendTimeoutNow, resendBeginQuorumEpoch } from './replication.js';
import { step as stepNode, tick as tickNode } from './roles.js';
import { assertSnapshotMetaValid, type RaftStorage } from './storage.js';
import {
  EntryType,
  type Entry,
  type Message,
  type ProposeResult,
  type RaftConfig,
  type RaftStatus,
  type Ready,
  type ReplicaId,
  type Role,
  type RoleState,
  type SnapshotId,
  type SnapshotMeta,
  type SnapshotRequest,
} from './types.js';

function sameRequest(a: SnapshotRequest | null, b: SnapshotRequest | null): boolean {
  if (a === null || b === null) return a === b;
  const sameSnapshot = a.snapshot.endOffset === b.snapshot.endOffset && a.snapshot.epoch === b.snapshot.epoch;
  return sameSnapshot && a.leaderId === b.leaderId && a.leaderEpoch === b.leaderEpoch;
}

export class RaftCore {
  private readonly node: RaftNode;
  private inflight: Ready | null = null;
  private reportedRole: RoleState;
  private reportedHighWatermark: number;
  private reportedSnapshotRequest: SnapshotRequest | null = null;

  constructor(config: RaftConfig, storage: RaftStorage) {
    this.node = new RaftNode(resolveConfig(config), storage);
    this.reportedRole = this.node.roleState();
    this.reportedHighWatermark = this.node.highWatermark;
    this.checkInvariants();
  }

  get id(): ReplicaId {
    return this.node.id;
  }
  get role(): Role {
    return this.node.role;
  }
  get epoch(): number {
    return this.node.epoch;
  }
  get leaderId(): ReplicaId | null {
    return this.node.leaderId;
  }
  get highWatermark(): number {
    return this.node.highWatermark;
  }
  get logStartOffset(): number {
    return this.node.log.startOffset();
  }
  get logEndOffset(): number {
    return this.node.log.endOffset();
  }
  // The latest snapshot, taken here (compact) or installed; null when none.
  get snapshot(): SnapshotMeta | null {
    return this.node.log.snapshot();
  }
  // The snapshot this follower waits for (Ready.fetchSnapshot), null when none.
  get fetchingSnapshot(): SnapshotRequest | null {
    return this.node.snapshotRequest;
  }
  get durableEndOffset(): number {
    return this.node.durableEndOffset;
  }
  get voters(): readonly ReplicaId[] {
    return this.node.voters;
  }
  // Recovering (DESIGN §12): the log lost entries this replica had promised; it fetches until it
  // holds them again and meanwhile grants no vote or pre-vote and never campaigns.
  get recovering(): boolean {
    return this.node.recovering;
  }
  get recoveryMarkOffset(): number | null {
    return this.node.recoveryMarkOffset;
  }
  get promisedOffset(): number {
    return this.node.promisedOffset;
  }

  tick(): void {
    tickNode(this.node);
    this.checkInvariants();
  }

  step(message: Message): void {
    stepNode(this.node, message);
    this.checkInvariants();
  }

  // Leader only: stamps epoch and offset on a Data entry of `count` records.
  propose(payload: Uint8Array, count: number): ProposeResult {
    assert(payload instanceof Uint8Array, 'propose: payload must be bytes');
    assert(Number.isInteger(count) && count >= 1, 'propose: count must be an integer >= 1');
    const refused = this.refusal();
    if (refused !== null) return refused;
    const node = this.node;
    if (node.log.endOffset() + count - node.highWatermark > node.config.uncommittedOffsetsMax) {
      return { ok: false, error: 'BACKPRESSURE', leaderId: node.id };
    }
    return { ok: true, offset: this.appendAsLeader(EntryType.Data, payload, count) };
  }

  addVoter(id: ReplicaId): ProposeResult {
    return this.changeMembership(id, 'add');
  }

  removeVoter(id: ReplicaId): ProposeResult {
    return this.changeMembership(id, 'remove');
  }

  // Hand leadership to `to` once it holds our whole log; proposals are refused meanwhile, and the
  // attempt is abandoned after electionTicks.
  transferLeadership(to: ReplicaId): ProposeResult {
    const refused = this.refusal();
    if (refused !== null) return refused;
    const node = this.node;
    if (to === node.id || !node.isVoter(to)) return { ok: false, error: 'INVALID', leaderId: node.id };
    node.transferTarget = to;
    node.transferDeadlineTick = node.tick + node.config.electionTicks;
    node.timeoutNowSent = false;
    maybeSendTimeoutNow(node);
    return { ok: true, offset: node.log.endOffset() };
  }

  // Shutdown: stop leading or campaigning; a leader asks its most caught-up voter to take over.
  resign(): void {
    const node = this.node;
    if (node.role === 'resigned') return;
    if (node.role === 'leader') {
      const successor = bestSuccessor(node);
      if (successor !== null) node.send({ type: 'TimeoutNow', to: successor });
    }
    node.resign();
    this.checkInvariants();
  }

  // The metadata a snapshot of the state machine at endOffset must carry (read only): its epoch
  // and the membership in force there. endOffset must be committed and still in the log.
  snapshotMetaAt(endOffset: number): SnapshotMeta {
    const node = this.node;
    assert(Number.isInteger(endOffset) && endOffset >= 1, 'snapshotMetaAt: endOffset must be an integer >= 1');
    assert(endOffset <= node.highWatermark, 'snapshotMetaAt: beyond the high watermark (only committed state may be snapshotted)');
    assert(endOffset >= node.log.startOffset(), 'snapshotMetaAt: below the log start');
    return node.log.snapshotMetaAt(endOffset);
  }

  // Compaction input (etcd's Storage.CreateSnapshot + Compact; KRaft's snapshot then
  // deleteBeforeSnapshot). The driver applied every entry below endOffset (<= high watermark),
  // stored that state with snapshotMetaAt(endOffset) durably, and storage.snapshot() now returns
  // it. From now on a leader answers Fetches below its log start with it, and the driver may
  // remove log entries below endOffset whenever it likes (storage.startOffset() <= endOffset).
  compact(endOffset: number): void {
    const node = this.node;
    assert(!node.log.installPending(), 'compact: a snapshot install is not applied yet');
    const meta = this.snapshotMetaAt(endOffset);
    assert(endOffset >= node.log.snapshotEndOffset(), 'compact: older than the latest snapshot');
    const stored = node.storage.snapshot?.();
    assert(stored === undefined || stored?.endOffset === endOffset, 'compact: storage does not hold this snapshot');
    assert(stored === undefined || stored?.epoch === meta.epoch, 'compact: stored snapshot epoch differs from the log');
    node.log.recordSnapshot(meta);
    node.durableEndOffset = Math.max(node.durableEndOffset, endOffset); // durable in the snapshot
    node.maybeFinishRecovery(false);
    this.checkInvariants();
  }

  // KIP-630, follower side: the driver fetched (all chunks, verified, stored) the snapshot that a
  // Ready's fetchSnapshot asked for; `meta` is read from it. When it is still wanted, the next
  // Ready carries installSnapshot (step 2) and a Fetch from its end; otherwise nothing happens and
  // the driver may drop it. Returns whether it will be installed. Call between Readys.
  snapshotFetched(meta: SnapshotMeta): boolean {
    assert(this.inflight === null, 'snapshotFetched: advance() the previous Ready first');
    assertSnapshotMetaValid(meta);
    const installed = installFetchedSnapshot(this.node, meta);
    this.checkInvariants();
    return installed;
  }

  // Work for the driver, or null when there is none. Call advance() before the next ready().
  ready(): Ready | null {
    assert(this.inflight === null, 'ready: advance() the previous Ready first');
    const node = this.node;
    const roleState = node.roleState();
    const roleChanged =
      roleState.role !== this.reportedRole.role || roleState.epoch !== this.reportedRole.epoch || roleState.leaderId !== this.reportedRole.leaderId;
    const hardStateChanged = node.hardStateDirty;
    const hasLogWork = node.log.hasUnpersisted();
    const highWatermarkChanged = node.highWatermark !== this.reportedHighWatermark;
    const hasEvents = node.events.length > 0;
    const snapshotRequestChanged = !sameRequest(node.snapshotRequest, this.reportedSnapshotRequest);
    const quiet = !roleChanged && !hardStateChanged && !hasLogWork && !highWatermarkChanged && !snapshotRequestChanged;
    if (quiet && node.messages.length === 0 && !hasEvents) return null;
    const unpersisted = node.log.takeUnpersisted();
    const ready: Ready = { entries: unpersisted.entries, messages: node.messages, highWatermark: node.highWatermark };
    if (hardStateChanged) ready.hardState = { epoch: node.epoch, votedFor: node.votedFor, promisedOffset: node.promisedOffset };
    if (unpersisted.installSnapshot !== null) ready.installSnapshot = unpersisted.installSnapshot;
    if (unpersisted.truncateTo !== null) ready.truncateTo = unpersisted.truncateTo;
    if (snapshotRequestChanged) ready.fetchSnapshot = node.snapshotRequest;
    if (roleChanged) ready.roleChange = roleState;
    if (hasEvents) ready.events = node.events;
    node.events = [];
    node.messages = [];
    node.hardStateDirty = false;
    this.reportedRole = roleState;
    this.reportedHighWatermark = node.highWatermark;
    this.reportedSnapshotRequest = node.snapshotRequest;
    this.inflight = ready;
    return ready;
  }

  // The driver persisted ready.hardState, installed ready.installSnapshot, applied
  // ready.truncateTo, appended ready.entries, and reports the durable end offset of its log.
  advance(ready: Ready, durableEndOffset: number): void {
    assert(ready === this.inflight, 'advance: not the Ready last returned');
    this.inflight = null;
    this.node.log.persisted();
    this.markDurable(durableEndOffset);
  }

  // The log's durable end moved without a Ready (asynchronous flush). Everything below the
  // snapshot is durable in it, whatever the log's flush reached.
  markDurable(durableEndOffset: number): void {
    assert(Number.isInteger(durableEndOffset) && durableEndOffset >= 0, 'markDurable: bad offset');
    const node = this.node;
    node.durableEndOffset = Math.max(Math.min(durableEndOffset, node.log.durableCap()), node.log.snapshotEndOffset());
    node.maybeFinishRecovery(false);
    maybeAdvanceHighWatermark(node);
    maybeFetch(node);
    this.checkInvariants();
  }

  status(): RaftStatus {
    const node = this.node;
    const replicas = [...node.progress.values()].map((progress) => ({
      id: progress.id,
      matchedOffset: progress.matchedOffset,
      lastFetchTick: progress.lastFetchTick,
      ticksSinceFetch: progress.lastFetchTick === null ? null : node.tick - progress.lastFetchTick,
      recovering: progress.recoveringRequestId !== null,
    }));
    return {
      id: node.id,
      role: node.role,
      epoch: node.epoch,
      leaderId: node.leaderId,
      votedFor: node.votedFor,
      highWatermark: node.highWatermark,
      logStartOffset: node.log.startOffset(),
      logEndOffset: node.log.endOffset(),
      durableEndOffset: node.durableEndOffset,
      snapshot: snapshotIdOf(node.log.snapshot()),
      fetchingSnapshot: node.snapshotRequest,
      voters: [...node.voters],
      tick: node.tick,
      transferTarget: node.transferTarget,
      recovering: node.recovering,
      recoveryMarkOffset: node.recoveryMarkOffset,
      promisedOffset: node.promisedOffset,
      replicas,
    };
  }

  // Entries of the core's log view (stored plus not yet persisted): for the apply loop and tests.
  entries(fromOffset: number, bytesMax: number): Entry[] {
    return this.node.log.entries(fromOffset, bytesMax);
  }

  private refusal(): ProposeResult | null {
    const node = this.node;
    if (node.role !== 'leader' || !node.isVoter()) return { ok: false, error: 'NOT_LEADER', leaderId: node.leaderId };
    if (node.transferTarget !== null) return { ok: false, error: 'TRANSFERRING', leaderId: node.id };
    return null;
  }

  // Single-voter changes, one at a time: the previous change must be committed, and the leader
  // must have committed an entry of its own epoch first (the fix to the single-server change bug
  // found after the Raft dissertation).
  private changeMembership(id: ReplicaId, change: 'add' | 'remove'): ProposeResult {
    const refused = this.refusal();
    if (refused !== null) return refused;
    const node = this.node;
    const records = node.log.membershipRecords();
    const latest = records[records.length - 1];
    const pending = (latest !== undefined && latest.offset >= node.highWatermark) || node.highWatermark <= node.epochStartOffset;
    if (pending) return { ok: false, error: 'CHANGE_IN_PROGRESS', leaderId: node.id };
    const present = node.isVoter(id);
    if (typeof id !== 'string' || id.length === 0 || present === (change === 'add')) {
      return { ok: false, error: 'INVALID', leaderId: node.id };
    }
    const voters = change === 'add' ? [...node.voters, id] : node.voters.filter((voter) => voter !== id);
    if (voters.length === 0) return { ok: false, error: 'INVALID', leaderId: node.id };
    const offset = this.appendAsLeader(EntryType.Membership, encodeMembership(voters), 1);
    node.refreshVoters();
    resendBeginQuorumEpoch(node); // a new voter learns where to fetch from
    return { ok: true, offset };
  }

  private appendAsLeader(type: EntryType, payload: Uint8Array, count: number): number {
    const node = this.node;
    const offset = node.log.endOffset();
    node.log.append({ epoch: node.epoch, offset, count, type, payload });
    this.checkInvariants();
    return offset;
  }

  private checkInvariants(): void {
    const node = this.node;
    assert(node.highWatermark <= node.log.endOffset(), 'invariant: high watermark beyond log end');
    assert(node.durableEndOffset <= node.log.endOffset(), 'invariant: durable end beyond log end');
    assert(node.log.lastEpoch() <= node.epoch, 'invariant: log holds an epoch above ours');
    assert(node.role !== 'leader' || node.leaderId === node.id, 'invariant: leader must lead itself');
    assert(node.role !== 'leader' || node.votedFor === node.id, 'invariant: a leader voted for itself');
    assert(node.role !== 'candidate' || node.votedFor === node.id, 'invariant: a candidate voted for itself');
    this.checkRecoveryInvariants();
    this.checkSnapshotInvariants();
    this.checkSnapshotRequestInvariants();
  }

  // KIP-630 / Raft §7: the log start, the latest snapshot and the high watermark.
  private checkSnapshotInvariants(): void {
    const node = this.node;
    const log = node.log;
    const start = log.startOffset();
    const end = log.endOffset();
    const snapshot = log.snapshot();
    assert(start <= end, 'invariant: log start beyond log end');
    assert(start === 0 || snapshot !== null || !log.snapshotsSupported, 'invariant: entries removed without a snapshot');
    if (snapshot === null) return;
    assert(snapshot.endOffset >= 1 && snapshot.epoch >= 1, 'invariant: bad snapshot id');
    assert(start <= snapshot.endOffset, 'invariant: log starts beyond its snapshot');
    assert(snapshot.endOffset <= end, 'invariant: log ends below its snapshot');
    assert(snapshot.endOffset <= node.highWatermark, 'invariant: snapshot beyond the high watermark (uncommitted state)');
    assert(snapshot.epoch <= node.epoch, 'invariant: snapshot of a future epoch');
    assert(log.knownEpochBefore(snapshot.endOffset) === snapshot.epoch, 'invariant: snapshot epoch differs from the epoch history below its end');
    assert(snapshot.membership === null || snapshot.membership.offset < snapshot.endOffset, 'invariant: snapshot membership beyond its end');
    assert(node.durableEndOffset >= snapshot.endOffset, 'invariant: durable end below the snapshot');
  }

  // The snapshot a follower waits for comes from the leader it follows, in this epoch, and lies
  // beyond its log start.
  private checkSnapshotRequestInvariants(): void {
    const node = this.node;
    const request = node.snapshotRequest;
    if (request === null) return;
    assert(node.role === 'follower', 'invariant: only a follower fetches a snapshot');
    assert(request.leaderId === node.leaderId, 'invariant: snapshot requested from another leader');
    assert(request.leaderEpoch === node.epoch, 'invariant: snapshot requested in another epoch');
    assert(request.snapshot.endOffset > node.log.startOffset(), 'invariant: requested snapshot not beyond the log start');
    assert(request.snapshot.epoch <= node.epoch, 'invariant: requested snapshot of a future epoch');
  }

  // DESIGN §12: promises, recovery and refused leaders.
  private checkRecoveryInvariants(): void {
    const node = this.node;
    const mark = node.recoveryMarkOffset;
    assert(Number.isInteger(node.promisedOffset) && node.promisedOffset >= 0, 'invariant: bad promised offset');
    assert(mark === null || !node.config.recoveringRuleDisabled, 'invariant: recovering with the rule off');
    assert(mark === null || node.durableEndOffset < mark, 'invariant: recovering past its mark');
    assert(mark === null || node.promisedOffset >= mark, 'invariant: a recovering replica keeps its promise');
    assert(mark === null || node.role === 'follower' || node.role === 'resigned', 'invariant: a recovering replica never campaigns or leads');
    assert(mark === null || node.votes.size === 0, 'invariant: a recovering replica collects no votes');
    const promiseKept = mark !== null || node.config.recoveringRuleDisabled || node.promisedOffset <= node.log.endOffset();
    assert(promiseKept, 'invariant: an ordinary replica promised beyond its log');
    const leaderPromiseKept = node.role !== 'leader' || node.config.recoveringRuleDisabled || node.promisedOffset <= node.durableEndOffset;
    assert(leaderPromiseKept, 'invariant: a leader promised beyond its durable end');
    const refused = node.refusedLeader;
    assert(refused === null || refused.epoch !== node.epoch || node.leaderId !== refused.id, 'invariant: following a refused leader');
    assert(node.events.length <= eventsQueuedMax, 'invariant: too many queued events');
  }
}

function snapshotIdOf(meta: SnapshotMeta | null): SnapshotId | null {
  return meta === null ? null : { endOffset: meta.endOffset, epoch: meta.epoch };
}
