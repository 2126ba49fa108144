// RaftCore: the driver's entry point. A pure state machine: tick(), step(), propose(), the
// membership and transfer commands, and ready()/advance() to hand work to the driver.
// Same inputs (including the seeded random generator), same outputs.

import { assert } from '../assert.js';
import { encodeMembership } from './membership.js';
import { eventsQueuedMax, resolveConfig, RaftNode } from './node.js';
import { bestSuccessor, maybeAdvanceHighWatermark, maybeFetch, maybeSendTimeoutNow, resendBeginQuorumEpoch } from './replication.js';
import { step as stepNode, tick as tickNode } from './roles.js';
import type { RaftStorage } from './storage.js';
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
} from './types.js';

export class RaftCore {
  private readonly node: RaftNode;
  private inflight: Ready | null = null;
  private reportedRole: RoleState;
  private reportedHighWatermark: number;

  constructor(config: RaftConfig, storage: RaftStorage) {
    this.node = new RaftNode(resolveConfig(config), storage);
    this.reportedRole = this.node.roleState();
    this.reportedHighWatermark = this.node.highWatermark;
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
  get logEndOffset(): number {
    return this.node.log.endOffset();
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
    if (!roleChanged && !hardStateChanged && !hasLogWork && !highWatermarkChanged && node.messages.length === 0 && !hasEvents) {
      return null;
    }
    const unpersisted = node.log.takeUnpersisted();
    const ready: Ready = { entries: unpersisted.entries, messages: node.messages, highWatermark: node.highWatermark };
    if (hardStateChanged) ready.hardState = { epoch: node.epoch, votedFor: node.votedFor, promisedOffset: node.promisedOffset };
    if (unpersisted.truncateTo !== null) ready.truncateTo = unpersisted.truncateTo;
    if (roleChanged) ready.roleChange = roleState;
    if (hasEvents) ready.events = node.events;
    node.events = [];
    node.messages = [];
    node.hardStateDirty = false;
    this.reportedRole = roleState;
    this.reportedHighWatermark = node.highWatermark;
    this.inflight = ready;
    return ready;
  }

  // The driver persisted ready.hardState, applied ready.truncateTo, appended ready.entries, and
  // reports the durable end offset of its log.
  advance(ready: Ready, durableEndOffset: number): void {
    assert(ready === this.inflight, 'advance: not the Ready last returned');
    this.inflight = null;
    this.node.log.persisted();
    this.markDurable(durableEndOffset);
  }

  // The log's durable end moved without a Ready (asynchronous flush).
  markDurable(durableEndOffset: number): void {
    assert(Number.isInteger(durableEndOffset) && durableEndOffset >= 0, 'markDurable: bad offset');
    const node = this.node;
    node.durableEndOffset = Math.min(durableEndOffset, node.log.durableCap());
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
      logEndOffset: node.log.endOffset(),
      durableEndOffset: node.durableEndOffset,
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
  entries(fromOffset: number, maxBytes: number): Entry[] {
    return this.node.log.entries(fromOffset, maxBytes);
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
