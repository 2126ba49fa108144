// The core's state and the role transitions shared by the step functions. Internal: the driver
// uses RaftCore (core.ts), which wraps this.

import { assert } from '../assert.js';
import { currentConfig, encodeLeaderChange } from './membership.js';
import { fetchedWithin, newProgress, syncProgress, type Progress } from './progress.js';
import { voteOutcome } from './quorum.js';
import { RaftLog } from './raft-log.js';
import { assertSnapshotMetaValid, type RaftStorage } from './storage.js';
import {
  EntryType,
  type Member,
  type Message,
  type RaftConfig,
  type RaftEvent,
  type ReplicaId,
  type Role,
  type RoleState,
  type SnapshotRequest,
  type TransferOutcome,
  type TransferOutcomeKind,
  unknownPromisedOffset,
} from './types.js';

// Upper bound on messages queued between two Readys; beyond it the caller is not draining Ready.
export const messagesQueuedMax = 100_000;
// Upper bound on events queued between two Readys (a few per recovery or refused leader).
export const eventsQueuedMax = 1_000;

type Outgoing = Message extends infer M ? (M extends Message ? Omit<M, 'from' | 'epoch'> : never) : never;

export interface ResolvedConfig extends Required<Omit<RaftConfig, 'voters'>> {
  voters: readonly ReplicaId[];
}

export function resolveConfig(config: RaftConfig): ResolvedConfig {
  assert(typeof config.id === 'string' && config.id.length > 0, 'config: id is required');
  assert(Number.isInteger(config.electionTicks) && config.electionTicks >= 1, 'config: electionTicks >= 1');
  assert(Number.isInteger(config.fetchTimeoutTicks) && config.fetchTimeoutTicks >= 1, 'config: fetchTimeoutTicks >= 1');
  assert(Number.isInteger(config.fetchBytesMax) && config.fetchBytesMax >= 1, 'config: fetchBytesMax >= 1');
  assert(typeof config.random === 'function', 'config: random is required');
  const resolved: ResolvedConfig = {
    id: config.id,
    voters: [...config.voters],
    electionTicks: config.electionTicks,
    electionJitterTicks: config.electionJitterTicks ?? config.electionTicks,
    fetchTimeoutTicks: config.fetchTimeoutTicks,
    fetchRetryTicks: config.fetchRetryTicks ?? Math.max(1, Math.floor(config.electionTicks / 4)),
    beginQuorumEpochResendTicks: config.beginQuorumEpochResendTicks ?? Math.max(1, Math.floor(config.electionTicks / 2)),
    fetchBytesMax: config.fetchBytesMax,
    uncommittedOffsetsMax: config.uncommittedOffsetsMax ?? 1_000_000,
    random: config.random,
    recoveringRuleDisabled: config.recoveringRuleDisabled ?? false,
    promotionLagOffsetsMax: config.promotionLagOffsetsMax ?? 0,
    ruleBrokenForTest: config.ruleBrokenForTest ?? null,
  };
  assert(resolved.electionJitterTicks >= 0 && resolved.fetchRetryTicks >= 1, 'config: bad tick values');
  assert(Number.isInteger(resolved.promotionLagOffsetsMax) && resolved.promotionLagOffsetsMax >= 0, 'config: promotionLagOffsetsMax >= 0');
  // The seed may be empty: a replica that joins a running group learns its configuration from
  // the leader's log (it never campaigns until an entry names it a voter).
  assert(new Set(resolved.voters).size === resolved.voters.length, 'config: voters must be distinct');
  assert(resolved.fetchRetryTicks < resolved.electionTicks + 1 || resolved.electionTicks === 1, 'config: fetchRetryTicks too large');
  return resolved;
}

export class RaftNode {
  readonly id: ReplicaId;
  readonly log: RaftLog;
  tick = 0;
  epoch: number;
  votedFor: ReplicaId | null;
  role: Role = 'follower';
  leaderId: ReplicaId | null = null;
  // The configuration in force (the latest membership entry, else the seed).
  voters: ReplicaId[];
  learners: ReplicaId[];
  endpoints: Member[];
  highWatermark = 0;
  durableEndOffset: number;
  hardStateDirty = false;
  messages: Message[] = [];
  events: RaftEvent[] = [];
  // The highest offset reported durable to any leader (persisted in the hard state).
  promisedOffset: number;
  // Recovering (DESIGN §12): the log ended below this mark on start; null once it is an ordinary
  // voter. While set: no votes, no pre-votes, no candidacy, Fetches say so.
  recoveryMarkOffset: number | null = null;
  // What the driver's metadata recorded as committed before this start (may exceed the log end).
  storedCommitMarkOffset: number;
  // A leader that asked us to truncate committed entries: not followed in its epoch.
  refusedLeader: { id: ReplicaId; epoch: number } | null = null;
  // Election timing.
  electionElapsedTicks = 0;
  electionTimeoutTicks: number;
  lastLeaderContactTick: number | null = null;
  votes = new Map<ReplicaId, boolean>();
  // Follower fetching.
  fetchInFlight = false;
  fetchSentTick = 0;
  fetchRequestId: number;
  // KIP-630: the snapshot this follower waits for, asked of the driver through Ready. While set,
  // Fetches go out only every fetchRetryTicks (their snapshotNeeded answers are the heartbeat).
  snapshotRequest: SnapshotRequest | null = null;
  // Leader state.
  progress = new Map<ReplicaId, Progress>();
  leaderSinceTick = 0;
  epochStartOffset = 0;
  transferTarget: ReplicaId | null = null;
  transferEpoch = 0;
  transferStartedTick = 0;
  transferDeadlineTick = 0;
  timeoutNowSent = false;
  // How the last transfer started here ended (kept across role changes, for the driver).
  lastTransfer: TransferOutcome | null = null;

  constructor(
    readonly config: ResolvedConfig,
    readonly storage: RaftStorage,
  ) {
    this.id = config.id;
    this.log = new RaftLog(storage);
    const hardState = storage.hardState();
    assert(Number.isInteger(hardState.epoch) && hardState.epoch >= 0, 'storage: bad epoch');
    assert(hardState.epoch >= this.log.lastEpoch(), 'storage: log epoch above hard state epoch');
    this.epoch = hardState.epoch;
    this.votedFor = hardState.votedFor;
    const membership = currentConfig(this.log.membershipRecords(), config.voters);
    this.voters = membership.voters;
    this.learners = membership.learners;
    this.endpoints = membership.endpoints;
    this.durableEndOffset = this.log.endOffset();
    this.highWatermark = this.checkStoredSnapshot(hardState.epoch);
    this.promisedOffset = hardState.promisedOffset ?? 0;
    assert(Number.isInteger(this.promisedOffset) && this.promisedOffset >= 0, 'storage: bad promised offset');
    this.storedCommitMarkOffset = storage.commitMarkOffset?.() ?? 0;
    assert(Number.isInteger(this.storedCommitMarkOffset) && this.storedCommitMarkOffset >= 0, 'storage: bad commit mark');
    this.startRecoveringIfShort(hardState.promisedOffset);
    this.electionTimeoutTicks = this.randomElectionTimeout();
    // A random start keeps answers to a previous incarnation's Fetches from matching ours.
    this.fetchRequestId = Math.floor(config.random() * 2 ** 30);
  }

  // The storage contract around the snapshot (storage.ts). A snapshot holds committed state only,
  // so the high watermark starts at its end.
  private checkStoredSnapshot(epoch: number): number {
    const snapshot = this.log.snapshot();
    const start = this.log.startOffset();
    assert(start === 0 || snapshot !== null || !this.log.snapshotsSupported, 'storage: entries removed without a snapshot');
    if (snapshot === null) return 0;
    assertSnapshotMetaValid(snapshot);
    assert(snapshot.endOffset >= start, 'storage: entries removed beyond the snapshot');
    assert(snapshot.endOffset <= this.log.endOffset(), 'storage: log ends below its snapshot (reset it to the snapshot on open)');
    assert(snapshot.epoch <= epoch, 'storage: snapshot epoch above hard state epoch');
    return snapshot.endOffset;
  }

  isVoter(id: ReplicaId = this.id): boolean {
    return this.voters.includes(id);
  }

  isLearner(id: ReplicaId = this.id): boolean {
    return this.learners.includes(id);
  }

  isMember(id: ReplicaId = this.id): boolean {
    return this.isVoter(id) || this.isLearner(id);
  }

  // Everyone a leader tracks and serves: voters and learners.
  members(): ReplicaId[] {
    return [...this.voters, ...this.learners];
  }

  // Dissertation §4.2.2: a replica removed by a configuration entry that is not yet known to be
  // committed may still be needed to elect a leader, so it still campaigns (its own vote is not
  // counted, since votes are counted over the latest configuration). A learner never campaigns
  // (etcd learners, KIP-853 observers).
  canCampaign(): boolean {
    if (this.recoveryMarkOffset !== null) return false;
    if (this.isLearner()) return false;
    if (this.isVoter()) return true;
    const records = this.log.membershipRecords();
    const latest = records[records.length - 1];
    if (latest === undefined || latest.offset < this.highWatermark) return false;
    const previous = records[records.length - 2]?.voters ?? this.config.voters;
    return previous.includes(this.id);
  }

  // The mark is what we promised. A hard state from before promises existed has none: then the
  // commit mark the driver recorded stands in (it is not used beside a promise: a follower's
  // commit mark may exceed what it synced, and after a power loss of every replica all of them
  // would wait for each other forever).
  private startRecoveringIfShort(storedPromisedOffset: number | undefined): void {
    const markOffset = storedPromisedOffset ?? this.storedCommitMarkOffset;
    const endOffset = this.log.endOffset();
    if (this.config.recoveringRuleDisabled || markOffset <= endOffset) return;
    this.recoveryMarkOffset = markOffset;
    this.raisePromise(markOffset); // a second restart while recovering must still recover
    this.emit({ type: 'replica.recovering', markOffset, endOffset });
  }

  get recovering(): boolean {
    return this.recoveryMarkOffset !== null;
  }

  // Whether this replica may grant a vote or pre-vote at all (the log comparison comes after):
  // not while recovering (DESIGN §12). Membership does not matter (dissertation §4.2.2): a
  // learner votes when asked (etcd #10998). Only a candidate whose configuration names it a voter
  // asks, and that configuration may be newer than its own (a promotion committed without it);
  // refusing could leave the group without a leader while a majority of its voters is up. Its vote
  // counts only where it is a voter, since votes are counted over the candidate's voters.
  mayVote(): boolean {
    return !this.recovering;
  }

  // Recovered once the durable log reaches the mark, or once the leader of this epoch shows that
  // we durably hold its whole log (`holdsLeaderLog`): entries we promised beyond a legitimate
  // leader's log were never committed (Leader Completeness; it was elected without our vote).
  // With an unknown promise (a replaced disk) the leader must also say every other voter follows
  // it now (`votersFollowLeader`), and our vote in this epoch is pinned on it: see
  // votersFetchedSince in replication.ts for why.
  maybeFinishRecovery(holdsLeaderLog: boolean, votersFollowLeader = false): void {
    const markOffset = this.recoveryMarkOffset;
    if (markOffset === null) return;
    const unknown = markOffset === unknownPromisedOffset && this.config.ruleBrokenForTest !== 'recovery-without-voters';
    if (unknown && !(holdsLeaderLog && votersFollowLeader)) return;
    if (this.durableEndOffset < markOffset && !holdsLeaderLog) return;
    this.recoveryMarkOffset = null;
    this.lowerPromiseTo(this.log.endOffset());
    if (unknown && this.votedFor === null) {
      assert(this.role === 'follower' && this.leaderId !== null, 'maybeFinishRecovery: an unknown promise recovers only from a leader');
      this.votedFor = this.leaderId;
      this.hardStateDirty = true;
    }
    this.emit({ type: 'replica.recovered', markOffset, endOffset: this.durableEndOffset });
  }

  raisePromise(offset: number): void {
    if (offset <= this.promisedOffset) return;
    this.promisedOffset = offset;
    this.hardStateDirty = true;
  }

  // A legitimate truncation: what we promised above it was never committed (the leader asking
  // holds every committed entry), so the promise drops with the log and a clean restart is not
  // taken for a loss. While recovering the mark stands until the log reaches it.
  lowerPromiseTo(endOffset: number): void {
    if (this.recovering || this.promisedOffset <= endOffset) return;
    this.promisedOffset = endOffset;
    this.hardStateDirty = true;
  }

  emit(event: RaftEvent): void {
    assert(this.events.length < eventsQueuedMax, 'emit: too many queued events; drain ready()');
    this.events.push(event);
  }

  // True when `leaderId` is the leader of our epoch that we refused to follow.
  refuses(leaderId: ReplicaId): boolean {
    return this.refusedLeader !== null && this.refusedLeader.id === leaderId && this.refusedLeader.epoch === this.epoch;
  }

  roleState(): RoleState {
    return { role: this.role, epoch: this.epoch, leaderId: this.leaderId };
  }

  send(message: Outgoing): void {
    assert(message.to !== this.id, 'send: message to self');
    assert(this.messages.length < messagesQueuedMax, 'send: too many queued messages; drain ready()');
    this.messages.push({ ...message, from: this.id, epoch: this.epoch } as Message);
  }

  // Sends with an explicit epoch (pre-vote requests and responses).
  sendWithEpoch(message: Outgoing, epoch: number): void {
    this.send(message);
    this.messages[this.messages.length - 1]!.epoch = epoch;
  }

  randomElectionTimeout(): number {
    const draw = this.config.random();
    assert(draw >= 0 && draw < 1, 'random() must return a value in [0, 1)');
    return this.config.electionTicks + Math.floor(draw * (this.config.electionJitterTicks + 1));
  }

  resetElectionTimer(): void {
    this.electionElapsedTicks = 0;
    this.electionTimeoutTicks = this.randomElectionTimeout();
  }

  setEpoch(epoch: number): void {
    assert(epoch >= this.epoch, 'epoch must not go back');
    if (epoch === this.epoch) return;
    this.epoch = epoch;
    this.votedFor = null;
    this.hardStateDirty = true;
  }

  setHighWatermark(offset: number): void {
    assert(offset >= this.highWatermark, 'high watermark must not go back');
    assert(offset <= this.log.endOffset(), 'high watermark beyond log end');
    this.highWatermark = offset;
  }

  // The configuration follows the latest membership entry of the log (appended, not committed).
  // A leader tracks every voter and learner.
  refreshVoters(): void {
    const membership = currentConfig(this.log.membershipRecords(), this.config.voters);
    this.voters = membership.voters;
    this.learners = membership.learners;
    this.endpoints = membership.endpoints;
    if (this.role !== 'leader') return;
    this.progress = syncProgress(this.progress, this.members(), this.id);
    this.assertTracksMembers();
    if (this.transferTarget !== null && !this.isVoter(this.transferTarget)) this.endTransfer('TARGET_REMOVED');
  }

  // A leader tracks exactly the other voters and learners (progress.ts, syncProgress).
  assertTracksMembers(): void {
    for (const id of this.members()) assert(id === this.id || this.progress.has(id), 'a leader does not track a member');
    for (const id of this.progress.keys()) assert(id !== this.id && this.isMember(id), 'a leader tracks a replica outside its configuration');
  }

  // The running transfer ends with `outcome` (recorded for the driver).
  endTransfer(outcome: TransferOutcomeKind): void {
    const target = this.transferTarget;
    assert(target !== null, 'endTransfer: no transfer');
    this.lastTransfer = {
      target,
      epoch: this.transferEpoch,
      outcome,
      tick: this.tick,
      targetMatchedOffset: this.progress.get(target)?.matchedOffset ?? 0,
      leaderEndOffset: this.log.endOffset(),
    };
    this.transferTarget = null;
    this.timeoutNowSent = false;
  }

  // The outcome of a transfer whose time ran out while we still lead.
  transferTimedOut(): TransferOutcomeKind {
    const target = this.transferTarget;
    assert(target !== null, 'transferTimedOut: no transfer');
    if (this.timeoutNowSent) return 'TARGET_DID_NOT_TAKE_OVER';
    const progress = this.progress.get(target);
    const reachable = progress !== undefined && fetchedWithin(progress, this.tick, this.config.fetchTimeoutTicks);
    return reachable ? 'TARGET_BEHIND' : 'TARGET_UNREACHABLE';
  }

  clearRoleState(): void {
    if (this.transferTarget !== null) this.endTransfer(this.timeoutNowSent ? 'LEFT_OFFICE' : 'LEADERSHIP_LOST');
    this.votes.clear();
    this.progress.clear();
    this.fetchInFlight = false;
    this.snapshotRequest = null;
  }

  becomeFollower(epoch: number, leaderId: ReplicaId | null): void {
    assert(this.role !== 'resigned', 'a resigned replica stays resigned');
    assert(leaderId !== this.id, 'becomeFollower: self as leader');
    this.setEpoch(epoch);
    this.clearRoleState();
    this.role = 'follower';
    this.leaderId = leaderId;
    this.resetElectionTimer();
    if (leaderId !== null) {
      this.lastLeaderContactTick = this.tick;
      sendFetch(this);
    }
  }

  // KIP-996: ask the voters whether they would vote for us in epoch + 1, without bumping it.
  becomeProspective(): void {
    assert(this.role !== 'leader' && this.role !== 'resigned', 'becomeProspective: bad role');
    assert(this.canCampaign(), 'becomeProspective: may not campaign');
    this.clearRoleState();
    this.role = 'prospective';
    this.leaderId = null;
    this.resetElectionTimer();
    this.votes.set(this.id, true);
    for (const voter of this.voters) {
      if (voter === this.id) continue;
      const request = { type: 'PreVoteRequest' as const, to: voter, lastEpoch: this.log.lastEpoch(), lastOffset: this.log.endOffset() };
      this.sendWithEpoch(request, this.epoch + 1);
    }
    if (voteOutcome(this.voters, this.votes) === 'won') this.becomeCandidate();
  }

  becomeCandidate(): void {
    assert(this.role !== 'leader' && this.role !== 'resigned', 'becomeCandidate: bad role');
    assert(this.canCampaign(), 'becomeCandidate: may not campaign');
    this.setEpoch(this.epoch + 1);
    this.votedFor = this.id;
    this.hardStateDirty = true;
    this.clearRoleState();
    this.role = 'candidate';
    this.leaderId = null;
    this.resetElectionTimer();
    this.votes.set(this.id, true);
    for (const voter of this.voters) {
      if (voter === this.id) continue;
      this.send({ type: 'VoteRequest', to: voter, lastEpoch: this.log.lastEpoch(), lastOffset: this.log.endOffset() });
    }
    if (voteOutcome(this.voters, this.votes) === 'won') this.becomeLeader();
  }

  // A new leader appends a LeaderChange entry in its epoch and announces itself.
  becomeLeader(): void {
    assert(this.role === 'candidate' && this.votedFor === this.id, 'becomeLeader: not an elected candidate');
    this.clearRoleState();
    this.role = 'leader';
    this.leaderId = this.id;
    this.leaderSinceTick = this.tick;
    this.progress = syncProgress(new Map(), this.members(), this.id);
    this.assertTracksMembers();
    this.epochStartOffset = this.log.endOffset();
    this.log.append({
      epoch: this.epoch,
      offset: this.epochStartOffset,
      count: 1,
      type: EntryType.LeaderChange,
      payload: encodeLeaderChange(this.id),
    });
    for (const progress of this.progress.values()) sendBeginQuorumEpoch(this, progress);
  }

  // A LeaderChange entry again, at the log end: a mark that other voters' Fetches must show they
  // hold (a recovering run's start: replication.ts, votersFetchedSince). State machines skip it.
  appendLeaderMark(): void {
    assert(this.role === 'leader', 'appendLeaderMark: not the leader');
    this.log.append({ epoch: this.epoch, offset: this.log.endOffset(), count: 1, type: EntryType.LeaderChange, payload: encodeLeaderChange(this.id) });
  }

  resign(): void {
    this.clearRoleState();
    this.role = 'resigned';
    this.leaderId = null;
  }

  progressOf(id: ReplicaId): Progress {
    const progress = this.progress.get(id);
    assert(progress !== undefined || this.role !== 'leader' || !this.isMember(id), 'progressOf: member without progress');
    return progress ?? newProgress(id);
  }
}

export function sendBeginQuorumEpoch(node: RaftNode, progress: Progress): void {
  node.send({ type: 'BeginQuorumEpoch', to: progress.id });
  progress.beginEpochSentTick = node.tick;
}

// A follower's Fetch carries its durable end offset and the epoch of the entry that ends there.
// The Fetch at N reports N: the promise rises to N in the hard state of the same Ready, which the
// driver syncs before the Fetch leaves.
export function sendFetch(node: RaftNode): void {
  assert(node.role === 'follower' && node.leaderId !== null, 'sendFetch: no leader to fetch from');
  assert(!node.refuses(node.leaderId), 'sendFetch: fetching from a refused leader');
  const fetchOffset = node.durableEndOffset;
  node.raisePromise(fetchOffset);
  node.send({
    type: 'FetchRequest',
    to: node.leaderId,
    fetchOffset,
    lastFetchedEpoch: node.log.epochBefore(fetchOffset),
    bytesMax: node.config.fetchBytesMax,
    requestId: node.fetchRequestId + 1,
    ...(node.recovering ? { recovering: true } : {}),
  });
  node.fetchRequestId += 1;
  node.fetchInFlight = true;
  node.fetchSentTick = node.tick;
}
