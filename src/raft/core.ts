// RaftCore: the driver's entry point. A pure state machine: tick(), step(), propose(), the
// membership and transfer commands, the snapshot inputs (compact, snapshotFetched), and
// ready()/advance() to hand work to the driver. Same inputs (including the seeded random
// generator), same outputs.

import { assert } from '../assert.js';
import { encodeMembershipConfig, membersMax, validEndpoints, votersMin, withLearner, withoutMember, withPromoted, withVoter } from './membership.js';
import { eventsQueuedMax, resolveConfig, RaftNode } from './node.js';
import { caughtUp, fetchedWithin } from './progress.js';
import { majorityOffset, majoritySize, quorumActive } from './quorum.js';
import {
  activeVoter,
  bestSuccessor,
  durableOffsetOf,
  installFetchedSnapshot,
  maybeAdvanceHighWatermark,
  maybeFetch,
  maybeSendTimeoutNow,
  maybeStepDownAfterRemoval,
  resendBeginQuorumEpoch,
} from './replication.js';
import { messageFlaw } from './message-check.js';
import { step as stepNode, tick as tickNode } from './roles.js';
import { assertSnapshotMetaValid, type RaftStorage } from './storage.js';
import {
  EntryType,
  type Entry,
  type Member,
  type MembershipConfig,
  type MembershipRefusal,
  type MembershipResult,
  type MemberStatus,
  type Message,
  type ProposeError,
  type ProposeResult,
  type RaftConfig,
  type RaftStatus,
  type Ready,
  type RemoveOptions,
  type ReplicaId,
  type ReplicaStatus,
  type Role,
  type RoleState,
  type SnapshotId,
  type SnapshotMeta,
  type SnapshotRequest,
  type TransferRefusal,
  type TransferResult,
  type TransferStatus,
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
  // What checkInvariants saw last: a leader's high watermark that rose since must be held by a
  // majority of its voters (learners never counted).
  private checkedLeaderHighWatermark: { epoch: number; offset: number } | null = null;

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
  get learners(): readonly ReplicaId[] {
    return this.node.learners;
  }
  // The configuration in force (the latest membership entry of the log, else the seed), a copy.
  get membership(): MembershipConfig {
    const node = this.node;
    return { voters: [...node.voters], learners: [...node.learners], endpoints: node.endpoints.map((member) => ({ ...member })) };
  }
  // The leader this replica follows (or itself) has committed an entry of its own epoch, as far as
  // this replica knows: it serves (proposals commit; a transfer is complete once the target's
  // replicas say this). On a leader: its high watermark passed its LeaderChange entry.
  get leaderServing(): boolean {
    const node = this.node;
    const highWatermark = node.highWatermark;
    if (node.leaderId === null || highWatermark === 0 || highWatermark < node.log.startOffset()) return false;
    return node.log.knownEpochBefore(highWatermark) === node.epoch;
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
    this.checkQuorumInvariant();
  }

  /**
   * Steps a peer's message. Returns why it was refused, untouched, when no correct peer could
   * have sent it (message-check.ts); null when it was stepped.
   */
  step(message: Message): string | null {
    const flaw = messageFlaw(this.node, message);
    if (flaw !== null) return flaw;
    stepNode(this.node, message);
    this.checkInvariants();
    return null;
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

  // ---- Membership (dissertation §4.1-4.2: one server at a time through the log; etcd learners,
  // KIP-853 AddVoter/RemoveVoter). Each change is one Membership entry appended here; it takes
  // effect on append and is done when the high watermark passes `offset`. See MembershipRefusal
  // (types.ts) for the refusals; a refusal changes nothing.

  // A new member that fetches like a follower but neither votes in elections that count it nor
  // counts for the high watermark or check-quorum. `member` carries the endpoints the driver needs
  // to reach it; they are replicated in the entry and returned by status().members.
  addLearner(member: Member): MembershipResult {
    const refused = this.changeRefusal();
    if (refused !== null) return refused;
    const node = this.node;
    const id = member.id;
    if (!validEndpoints(member)) return this.refuseChange('INVALID', `member ${JSON.stringify(id)} has an empty or too long id or endpoint`);
    if (node.isVoter(id)) return this.refuseChange('ALREADY_VOTER', `${id} is already a voter of this group`);
    if (node.isLearner(id)) return this.refuseChange('ALREADY_LEARNER', `${id} is already a learner of this group`);
    if (node.members().length + 1 > membersMax) return this.refuseChange('TOO_MANY_MEMBERS', `the group already has ${membersMax} members`);
    return this.pendingRefusal() ?? this.appendMembership(withLearner(this.membership, member));
  }

  // Makes a caught-up learner a voter (the operator's or driver's decision, as in etcd and
  // KIP-853; status().replicas[].caughtUp says when this would be accepted). Caught up: fetched
  // within fetchTimeoutTicks, not recovering, and holding the high watermark minus
  // promotionLagOffsetsMax, and the entry that made it a learner.
  promoteLearner(id: ReplicaId): MembershipResult {
    const refused = this.changeRefusal();
    if (refused !== null) return refused;
    const node = this.node;
    if (node.isVoter(id)) return this.refuseChange('ALREADY_VOTER', `${id} is already a voter of this group`);
    if (!node.isLearner(id)) return this.refuseChange('NOT_A_MEMBER', `${id} is not a learner of this group`);
    const pending = this.pendingRefusal();
    if (pending !== null) return pending;
    const progress = node.progressOf(id);
    const neededOffset = this.promotionNeededOffset();
    if (!fetchedWithin(progress, node.tick, node.config.fetchTimeoutTicks)) {
      return this.refuseChange('LEARNER_UNREACHABLE', `learner ${id} has not fetched for ${node.config.fetchTimeoutTicks} ticks or more`);
    }
    if (progress.recoveringRequestId !== null) return this.refuseChange('LEARNER_RECOVERING', `learner ${id} is recovering lost entries`);
    if (progress.matchedOffset < neededOffset) {
      return this.refuseChange('LEARNER_BEHIND', `learner ${id} holds up to offset ${progress.matchedOffset}; promotion needs ${neededOffset}`);
    }
    return this.appendMembership(withPromoted(this.membership, id));
  }

  // Removes a voter or a learner. A voter's removal may not leave fewer than votersMin voters, nor
  // fewer voters that fetch than a majority of those left, unless forced; never zero voters. The
  // leader may remove itself: it leads until the removal commits (without counting itself), then
  // steps down and sends TimeoutNow to its most caught-up voter (dissertation §4.2.2).
  removeMember(id: ReplicaId, options: RemoveOptions = {}): MembershipResult {
    const refused = this.changeRefusal();
    if (refused !== null) return refused;
    const node = this.node;
    if (!node.isMember(id)) return this.refuseChange('NOT_A_MEMBER', `${id} is not a member of this group`);
    const pending = this.pendingRefusal();
    if (pending !== null) return pending;
    if (node.isLearner(id)) return this.appendMembership(withoutMember(this.membership, id));
    const remaining = node.voters.filter((voter) => voter !== id);
    if (remaining.length === 0) return this.refuseChange('LAST_VOTER', `${id} is the last voter of this group`);
    const force = options.force === true;
    if (remaining.length < votersMin && !force) {
      return this.refuseChange('BELOW_MINIMUM_VOTERS', `removing ${id} leaves ${remaining.length} voters, fewer than ${votersMin} (force to allow)`);
    }
    const active = (voter: ReplicaId): boolean => activeVoter(node, voter);
    if (!force && !quorumActive(remaining, active)) {
      const activeCount = remaining.filter(active).length;
      return this.refuseChange(
        'QUORUM_AT_RISK',
        `removing ${id} leaves ${activeCount} of ${remaining.length} voters fetching, fewer than the ${majoritySize(remaining.length)} a majority needs (force to allow)`,
      );
    }
    return this.appendMembership(withoutMember(this.membership, id));
  }

  // Before learners: adds a voter directly (a learner is promoted, with its catch-up check).
  // New code uses addLearner, then promoteLearner once caught up.
  addVoter(id: ReplicaId): ProposeResult {
    const node = this.node;
    if (node.isLearner(id)) return legacyResult(this.promoteLearner(id));
    const refused = this.changeRefusal();
    if (refused !== null) return legacyResult(refused);
    if (!validEndpoints({ id }) || node.isVoter(id)) return { ok: false, error: 'INVALID', leaderId: node.id };
    if (node.members().length + 1 > membersMax) return { ok: false, error: 'INVALID', leaderId: node.id };
    return legacyResult(this.pendingRefusal() ?? this.appendMembership(withVoter(this.membership, id)));
  }

  // Before learners: removes a voter with no minimum but one voter (removeMember with force).
  removeVoter(id: ReplicaId): ProposeResult {
    if (!this.node.isVoter(id) && this.node.role === 'leader' && this.node.isVoter()) return { ok: false, error: 'INVALID', leaderId: this.node.id };
    return legacyResult(this.removeMember(id, { force: true }));
  }

  // Dissertation §3.10: hand leadership to `to` (or, when null, to the reachable voter holding
  // the most of our log) once it holds our whole log; proposals are refused meanwhile, and the
  // attempt ends after electionTicks. Refusals and outcomes: TransferRefusal, TransferOutcomeKind
  // (types.ts); status().transfer while it runs, status().lastTransfer afterwards.
  transferLeadership(to: ReplicaId | null = null): TransferResult {
    const node = this.node;
    const refuse = (error: TransferRefusal, message: string): TransferResult => ({ ok: false, error, leaderId: node.leaderId, message });
    if (node.role !== 'leader' || !node.isVoter()) return refuse('NOT_LEADER', `${node.id} is not the leader of this group`);
    if (node.transferTarget !== null) return refuse('TRANSFER_IN_PROGRESS', `a transfer to ${node.transferTarget} is in progress`);
    const target = to ?? bestSuccessor(node, true);
    if (target === null) return refuse('NO_ELIGIBLE_TARGET', 'no other voter is fetching and not recovering');
    if (target === node.id) return refuse('TARGET_IS_LEADER', `${target} already leads this group`);
    if (node.isLearner(target)) return refuse('TARGET_IS_LEARNER', `${target} is a learner; promote it first`);
    if (!node.isVoter(target)) return refuse('TARGET_NOT_MEMBER', `${target} is not a voter of this group`);
    const progress = node.progressOf(target);
    if (!fetchedWithin(progress, node.tick, node.config.fetchTimeoutTicks)) {
      return refuse('TARGET_UNREACHABLE', `${target} has not fetched for ${node.config.fetchTimeoutTicks} ticks or more`);
    }
    if (progress.recoveringRequestId !== null) return refuse('TARGET_RECOVERING', `${target} is recovering lost entries`);
    node.transferTarget = target;
    node.transferEpoch = node.epoch;
    node.transferStartedTick = node.tick;
    node.transferDeadlineTick = node.tick + node.config.electionTicks;
    node.timeoutNowSent = false;
    maybeSendTimeoutNow(node);
    this.checkInvariants();
    return { ok: true, target, offset: node.log.endOffset(), deadlineTick: node.transferDeadlineTick };
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
    maybeStepDownAfterRemoval(node);
    maybeFetch(node);
    this.checkInvariants();
  }

  status(): RaftStatus {
    const node = this.node;
    const neededOffset = this.promotionNeededOffset();
    const replicas = [...node.progress.values()].map(
      (progress): ReplicaStatus => ({
        id: progress.id,
        role: node.isLearner(progress.id) ? 'learner' : 'voter',
        matchedOffset: progress.matchedOffset,
        lastFetchTick: progress.lastFetchTick,
        ticksSinceFetch: progress.lastFetchTick === null ? null : node.tick - progress.lastFetchTick,
        recovering: progress.recoveringRequestId !== null,
        caughtUp: caughtUp(progress, node.tick, node.config.fetchTimeoutTicks, neededOffset),
      }),
    );
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
      learners: [...node.learners],
      members: this.memberStatuses(),
      membershipChangeOffset: this.membershipChangeOffset(),
      leaderServing: this.leaderServing,
      transfer: this.transferStatus(),
      lastTransfer: node.lastTransfer === null ? null : { ...node.lastTransfer },
    };
  }

  private memberStatuses(): MemberStatus[] {
    const node = this.node;
    const withEndpoints = (id: ReplicaId, role: MemberStatus['role']): MemberStatus => {
      const known = node.endpoints.find((member) => member.id === id);
      return { ...known, id, role };
    };
    return [...node.voters.map((id) => withEndpoints(id, 'voter')), ...node.learners.map((id) => withEndpoints(id, 'learner'))];
  }

  // The latest membership entry while it lies at or above the high watermark.
  private membershipChangeOffset(): number | null {
    const latest = this.node.log.membershipRecords().at(-1);
    return latest !== undefined && latest.offset >= this.node.highWatermark ? latest.offset : null;
  }

  private transferStatus(): TransferStatus | null {
    const node = this.node;
    const target = node.transferTarget;
    if (target === null) return null;
    return {
      target,
      epoch: node.transferEpoch,
      startedTick: node.transferStartedTick,
      deadlineTick: node.transferDeadlineTick,
      timeoutNowSent: node.timeoutNowSent,
      targetMatchedOffset: node.progressOf(target).matchedOffset,
      leaderEndOffset: node.log.endOffset(),
    };
  }

  // What promoteLearner requires a learner to hold: the high watermark minus the allowed lag, and
  // at least the latest membership entry (the one that names it a learner).
  private promotionNeededOffset(): number {
    const node = this.node;
    const latest = node.log.membershipRecords().at(-1);
    return Math.max(node.highWatermark - node.config.promotionLagOffsetsMax, latest === undefined ? 0 : latest.offset + 1);
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

  // A membership change needs a leader that stays in its configuration and no transfer running.
  private changeRefusal(): MembershipResult | null {
    const node = this.node;
    if (node.role !== 'leader' || !node.isVoter()) return this.refuseChange('NOT_LEADER', `${node.id} is not the leader of this group`);
    if (node.transferTarget !== null) return this.refuseChange('TRANSFERRING', `a leadership transfer to ${node.transferTarget} is in progress`);
    return null;
  }

  private refuseChange(error: MembershipRefusal, message: string): MembershipResult {
    return { ok: false, error, leaderId: this.node.leaderId, message };
  }

  // One change at a time: the previous change must be committed, and the leader must have
  // committed an entry of its own epoch first (the fix to the single-server change bug found
  // after the Raft dissertation: a leader may hold an uncommitted change of an earlier leader).
  private pendingRefusal(): MembershipResult | null {
    const node = this.node;
    if (node.highWatermark <= node.epochStartOffset) {
      return this.refuseChange('CHANGE_IN_PROGRESS', `leader ${node.id} has not committed an entry of epoch ${node.epoch} yet`);
    }
    const latest = node.log.membershipRecords().at(-1);
    if (latest !== undefined && latest.offset >= node.highWatermark && node.config.ruleBrokenForTest !== 'concurrent-changes') {
      return this.refuseChange('CHANGE_IN_PROGRESS', `the membership change at offset ${latest.offset} is not committed yet`);
    }
    return null;
  }

  private appendMembership(config: MembershipConfig): MembershipResult {
    const node = this.node;
    const offset = this.appendAsLeader(EntryType.Membership, encodeMembershipConfig(config), 1);
    node.refreshVoters();
    resendBeginQuorumEpoch(node); // a new member learns where to fetch from
    this.checkInvariants();
    return { ok: true, offset, config: this.membership };
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
    this.checkMembershipInvariants();
    this.checkTransferInvariants();
    this.checkLeaderCommitInvariant();
  }

  // Dissertation §4.1-4.2, etcd learners, KIP-853: the configuration and who may lead and count.
  private checkMembershipInvariants(): void {
    const node = this.node;
    if (node.learners.length > 0) {
      for (const learner of node.learners) assert(!node.voters.includes(learner), 'invariant: a replica is both voter and learner');
      const learner = node.isLearner();
      assert(!learner || node.role === 'follower' || node.role === 'resigned', 'invariant: a learner campaigns or leads');
      assert(!learner || node.votes.size === 0, 'invariant: a learner collects votes');
    }
    if (node.role !== 'leader') return;
    // What a leader tracks changes only with its configuration (RaftNode.refreshVoters and
    // becomeLeader check it there): a count suffices after every input.
    assert(
      node.progress.size === node.voters.length + node.learners.length - (node.isVoter() ? 1 : 0),
      'invariant: a leader tracks other replicas than its voters and learners',
    );
    const records = node.log.membershipRecords();
    const latest = records[records.length - 1];
    // A leader outside its voters is one whose removal is pending; it steps down once it commits.
    assert(
      node.isVoter() || (latest !== undefined && latest.offset >= node.highWatermark),
      'invariant: a leader outside its voters after its removal committed',
    );
    if (node.highWatermark <= node.epochStartOffset || node.config.ruleBrokenForTest === 'concurrent-changes') return;
    const beforeLatest = records[records.length - 2];
    assert(beforeLatest === undefined || beforeLatest.offset < node.highWatermark, 'invariant: more than one uncommitted membership change');
  }

  private checkTransferInvariants(): void {
    const node = this.node;
    const target = node.transferTarget;
    if (target === null) return;
    assert(node.role === 'leader' && node.isVoter(), 'invariant: a transfer without a leader in its voters');
    assert(target !== node.id && node.isVoter(target), 'invariant: a transfer to a replica that is not another voter');
    assert(node.transferEpoch === node.epoch, 'invariant: a transfer from an earlier epoch');
  }

  // Raft §5.3 with learners: a high watermark a leader raised during this input is held by a
  // majority of its voters (learners never counted), recomputed here on its own.
  private checkLeaderCommitInvariant(): void {
    const node = this.node;
    const checked = this.checkedLeaderHighWatermark;
    if (node.role !== 'leader') {
      this.checkedLeaderHighWatermark = null;
      return;
    }
    const rose = checked !== null && checked.epoch === node.epoch && node.highWatermark > checked.offset;
    if (rose && node.config.ruleBrokenForTest !== 'learners-counted') {
      const held = majorityOffset(node.voters, (id) => durableOffsetOf(node, id));
      assert(node.highWatermark <= held, 'invariant: a high watermark not held by a majority of the voters');
    }
    this.checkedLeaderHighWatermark = { epoch: node.epoch, offset: node.highWatermark };
  }

  // Check-quorum counts voters only, and no recovering one: a leader still in office after a tick
  // has heard Fetches from a majority of its voters within fetchTimeoutTicks (once it has led that
  // long), recovering Fetches apart.
  private checkQuorumInvariant(): void {
    const node = this.node;
    if (node.role !== 'leader' || node.tick - node.leaderSinceTick < node.config.fetchTimeoutTicks) return;
    const countsRecovering = node.config.ruleBrokenForTest === 'recovery-without-voters';
    const active = (id: ReplicaId): boolean => {
      if (id === node.id) return true;
      const progress = node.progressOf(id);
      return (countsRecovering || progress.recoveringRequestId === null) && fetchedWithin(progress, node.tick, node.config.fetchTimeoutTicks);
    };
    assert(quorumActive(node.voters, active), 'invariant: a leader in office without a quorum of fetching voters');
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

// The answer addVoter and removeVoter gave before learners.
function legacyResult(result: MembershipResult): ProposeResult {
  if (result.ok) return { ok: true, offset: result.offset };
  const kept: readonly MembershipRefusal[] = ['NOT_LEADER', 'TRANSFERRING', 'CHANGE_IN_PROGRESS'];
  const error: ProposeError = kept.includes(result.error) ? (result.error as ProposeError) : 'INVALID';
  return { ok: false, error, leaderId: result.leaderId };
}

function snapshotIdOf(meta: SnapshotMeta | null): SnapshotId | null {
  return meta === null ? null : { endOffset: meta.endOffset, epoch: meta.epoch };
}
