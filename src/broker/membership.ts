// Membership and leadership for operators (issue 13.4): add a replica (a learner first, promoted to
// voter once caught up), remove one, hand leadership to another voter. Every change is one
// single-server membership entry through the log (src/raft/core.ts), made on the group's leader;
// each call answers only once its entry is committed (or the new leader serves), and a refusal
// changes nothing. The core's refusals become the product's error classes in one table here
// (refusalErrors); src/protocol/status.ts maps those to gRPC codes.
import {
  AbortedError,
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  type MambaError,
  NotFoundError,
  ResourceExhaustedError,
  TimeoutError,
  UnavailableError,
} from '../errors.js';
import type { MembershipRefusal, MembershipResult, RaftStatus, ReplicaId, TransferOutcomeKind, TransferRefusal } from '../raft/types.js';
import type { Replica } from '../replica/replica.js';
import type { Placement } from './placement.js';

/** How long an operation waits when the request names no wait (wait_ms_max = 0). */
export const membershipWaitMsDefault = 30_000;
/** The longest wait a request may ask for. */
export const membershipWaitMsMax = 600_000;
/** How often a running operation looks at the core's status (learner catch-up, transfer end). */
const pollIntervalMs = 50;
/** Undoing a learner that did not catch up waits at most this long for the removal to commit. */
const undoWaitMs = 5000;

const replicaIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const hostPortPattern = /^[^\s:]+:\d{1,5}$/;

export interface MemberInfo {
  id: string;
  /** 'voter' or 'learner'. */
  role: string;
  clientAddress: string;
  peerAddress: string;
}

/** The configuration after a change: where its entry is and who is in it. */
export interface MembershipChange {
  group: string;
  /** The offset of the last membership entry the operation appended (committed when answered). */
  offset: number;
  members: MemberInfo[];
}

export interface AddReplicaRequest {
  group: string;
  id: string;
  clientAddress: string;
  peerAddress: string;
  /** 0: membershipWaitMsDefault. */
  waitMsMax: number;
}

export interface AddReplicaResult extends MembershipChange {
  /** The entry that made it a learner (-1 when it was one already and the call resumed). */
  learnerOffset: number;
  /** The entry that made it a voter. */
  promotedOffset: number;
}

export interface RemoveReplicaRequest {
  group: string;
  id: string;
  force: boolean;
  waitMsMax: number;
}

export interface TransferLeaderRequest {
  group: string;
  /** '' = the best voter (the reachable one holding most of the log). */
  to: string;
  waitMsMax: number;
}

export interface TransferLeaderResult {
  group: string;
  previousLeaderId: string;
  leaderId: string;
  epoch: number;
}

type Refusal = MembershipRefusal | TransferRefusal | TransferOutcomeKind;

/**
 * The one table from the core's refusals and transfer outcomes to error classes. NOT_LEADER is not
 * here: it becomes the placement's NotLeaderError with the leader's address.
 */
const refusalErrors: Readonly<Record<Exclude<Refusal, 'NOT_LEADER' | 'LEFT_OFFICE'>, (message: string) => MambaError>> = {
  TRANSFERRING: (m) => new AbortedError(m),
  CHANGE_IN_PROGRESS: (m) => new AbortedError(m),
  TRANSFER_IN_PROGRESS: (m) => new AbortedError(m),
  TARGET_DID_NOT_TAKE_OVER: (m) => new AbortedError(m),
  INVALID: (m) => new InvalidArgumentError(m),
  ALREADY_VOTER: (m) => new AlreadyExistsError(m),
  ALREADY_LEARNER: (m) => new AlreadyExistsError(m),
  NOT_A_MEMBER: (m) => new NotFoundError(m),
  TOO_MANY_MEMBERS: (m) => new ResourceExhaustedError(m),
  LEARNER_BEHIND: (m) => new FailedPreconditionError(m),
  LEARNER_UNREACHABLE: (m) => new FailedPreconditionError(m),
  LEARNER_RECOVERING: (m) => new FailedPreconditionError(m),
  BELOW_MINIMUM_VOTERS: (m) => new FailedPreconditionError(withForce(m)),
  QUORUM_AT_RISK: (m) => new FailedPreconditionError(withForce(m)),
  LAST_VOTER: (m) => new FailedPreconditionError(m),
  TARGET_IS_LEADER: (m) => new FailedPreconditionError(m),
  TARGET_IS_LEARNER: (m) => new FailedPreconditionError(m),
  TARGET_NOT_MEMBER: (m) => new FailedPreconditionError(m),
  TARGET_BEHIND: (m) => new FailedPreconditionError(m),
  TARGET_RECOVERING: (m) => new FailedPreconditionError(m),
  TARGET_REMOVED: (m) => new FailedPreconditionError(m),
  NO_ELIGIBLE_TARGET: (m) => new FailedPreconditionError(m),
  TARGET_UNREACHABLE: (m) => new UnavailableError(m),
  LEADERSHIP_LOST: (m) => new UnavailableError(m),
};

/** The core says "(force to allow)"; operators type --force (the SDK's option is `force`). */
function withForce(message: string): string {
  return message.replace('(force to allow)', '(use --force to allow)');
}

export class MembershipAdmin {
  constructor(
    private readonly replica: Replica,
    private readonly placement: Placement,
  ) {}

  /** Learner, wait until it holds the log, voter; on the deadline the learner is removed again. */
  async addReplica(request: AddReplicaRequest): Promise<AddReplicaResult> {
    checkReplicaId(request.id);
    checkHostPort(request.clientAddress, 'client_address');
    checkHostPort(request.peerAddress, 'peer_address');
    const deadlineMs = Date.now() + waitMsOf(request.waitMsMax);
    const member = { id: request.id, clientAddress: request.clientAddress, peerAddress: request.peerAddress };
    let learnerOffset = -1;
    const added = await this.retryWhileChanging(() => this.replica.addLearner(member), deadlineMs, `adding ${request.id}`);
    if (added.ok) {
      learnerOffset = added.offset;
      await this.committed(added.offset, deadlineMs, `the entry that makes ${request.id} a learner`);
    } else if (added.error !== 'ALREADY_LEARNER') {
      throw this.refusal(added.error, added.message);
    } // else it is a learner already (an earlier call that ended early): resume at the promotion
    const promoted = await this.promoteWhenCaughtUp(request.id, deadlineMs);
    await this.committed(promoted.offset, deadlineMs, `the entry that makes ${request.id} a voter`);
    return { ...this.change(promoted.offset), learnerOffset, promotedOffset: promoted.offset };
  }

  async removeReplica(request: RemoveReplicaRequest): Promise<MembershipChange> {
    checkReplicaId(request.id);
    const deadlineMs = Date.now() + waitMsOf(request.waitMsMax);
    const removed = this.replica.removeMember(request.id, { force: request.force });
    if (!removed.ok) throw this.refusal(removed.error, removed.message);
    await this.committed(removed.offset, deadlineMs, `the entry that removes ${request.id}`);
    return this.change(removed.offset);
  }

  /** Hands leadership over and answers once the new leader serves (as this replica sees it). */
  async transferLeader(request: TransferLeaderRequest): Promise<TransferLeaderResult> {
    if (request.to !== '') checkReplicaId(request.to);
    const deadlineMs = Date.now() + waitMsOf(request.waitMsMax);
    const previousLeaderId = this.replica.id;
    const started = this.replica.transferLeadership(request.to === '' ? null : request.to);
    if (!started.ok) throw this.refusal(started.error, started.message);
    const target = started.target;
    await this.until(deadlineMs, `the transfer to ${target} to end`, (s) => s.transfer === null);
    const last = this.replica.status().lastTransfer;
    if (last === null || last.target !== target) throw new UnavailableError(`the transfer to ${target} ended without an outcome; see status`);
    if (last.outcome !== 'LEFT_OFFICE') {
      throw this.refusal(last.outcome, transferOutcomeMessage(last.outcome, target, last.targetMatchedOffset, last.leaderEndOffset));
    }
    const serving = await this.until(deadlineMs, `${target} to lead and serve`, (s) => s.leaderId === target && s.leaderServing);
    return { group: this.placement.group.id, previousLeaderId, leaderId: target, epoch: serving.epoch };
  }

  // ------------------------------------------------------------------ steps

  /** Promotes `id` once the core says it is caught up; LEARNER_* and CHANGE_IN_PROGRESS mean wait. */
  private async promoteWhenCaughtUp(id: ReplicaId, deadlineMs: number): Promise<{ offset: number }> {
    let last = '';
    for (;;) {
      const status = this.leaderStatus();
      const progress = status.replicas.find((r) => r.id === id);
      if (progress?.caughtUp) {
        const promoted = this.replica.promoteLearner(id);
        if (promoted.ok) return promoted;
        if (!isCatchUpRefusal(promoted.error)) throw this.refusal(promoted.error, promoted.message);
        last = promoted.message;
      }
      if (Date.now() >= deadlineMs) {
        const holds = progress ? progress.matchedOffset : 0;
        const why = progress?.recovering
          ? ' (it is recovering: a broker on an empty data directory finishes only once every voter follows the leader; remove a voter that is down first)'
          : last !== ''
            ? ` (${last})`
            : '';
        await this.undoLearner(id);
        throw new TimeoutError(
          `${id} did not catch up in time: it holds ${holds} of ${status.highWatermark} committed offsets${why}; it was removed again, nothing changed`,
        );
      }
      await sleep(pollIntervalMs);
    }
  }

  /** Nothing half-applied: a learner that did not catch up is removed (best effort, bounded). */
  private async undoLearner(id: ReplicaId): Promise<void> {
    const undoDeadlineMs = Date.now() + undoWaitMs;
    const removed = await this.retryWhileChanging(() => this.replica.removeMember(id), undoDeadlineMs, `removing learner ${id}`).catch(() => null);
    if (removed?.ok) await this.committed(removed.offset, undoDeadlineMs, `the removal of learner ${id}`).catch(() => undefined);
  }

  /** Calls `change` again while the core says another change is uncommitted, until the deadline. */
  private async retryWhileChanging(change: () => MembershipResult, deadlineMs: number, what: string): Promise<MembershipResult> {
    for (;;) {
      this.leaderStatus();
      const result = change();
      if (result.ok || result.error !== 'CHANGE_IN_PROGRESS') return result;
      if (Date.now() >= deadlineMs) throw new AbortedError(`${what}: ${result.message}; retry shortly`);
      await sleep(pollIntervalMs);
    }
  }

  private async committed(offset: number, deadlineMs: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`${what} (offset ${offset}) was not committed in time`)), Math.max(0, deadlineMs - Date.now()));
    });
    try {
      await Promise.race([this.replica.waitCommitted(offset), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Polls the replica's status until `done` holds; TimeoutError naming `what` on the deadline. */
  private async until(deadlineMs: number, what: string, done: (status: RaftStatus) => boolean): Promise<RaftStatus> {
    for (;;) {
      const status = this.replica.status();
      if (done(status)) return status;
      if (Date.now() >= deadlineMs) throw new TimeoutError(`timed out waiting for ${what}`);
      await sleep(pollIntervalMs);
    }
  }

  /** The status, on the leader only (NotLeaderError with the leader's address otherwise). */
  private leaderStatus(): RaftStatus {
    this.placement.requireLeader();
    return this.replica.status();
  }

  private refusal(error: Refusal, message: string): MambaError {
    if (error === 'NOT_LEADER') {
      try {
        this.placement.requireLeader();
      } catch (notLeader) {
        return notLeader as MambaError;
      }
      return new UnavailableError(message); // led again meanwhile: the caller retries
    }
    if (error === 'LEFT_OFFICE') return new UnavailableError(message);
    return refusalErrors[error](`group ${this.placement.group.id}: ${message}`);
  }

  private change(offset: number): MembershipChange {
    return { group: this.placement.group.id, offset, members: membersOf(this.replica) };
  }
}

/** The configuration in force with each member's endpoints (the log's, else the cluster file's). */
export function membersOf(replica: Replica, fileAddresses: ReadonlyMap<string, string> = new Map()): MemberInfo[] {
  const membership = replica.membership;
  const endpoint = (id: string): { clientAddress: string; peerAddress: string } => {
    const own = membership.endpoints.find((m) => m.id === id);
    return { clientAddress: own?.clientAddress ?? fileAddresses.get(id) ?? '', peerAddress: own?.peerAddress ?? '' };
  };
  return [
    ...membership.voters.map((id) => ({ id, role: 'voter', ...endpoint(id) })),
    ...membership.learners.map((id) => ({ id, role: 'learner', ...endpoint(id) })),
  ];
}

function isCatchUpRefusal(error: MembershipRefusal): boolean {
  return error === 'LEARNER_BEHIND' || error === 'LEARNER_UNREACHABLE' || error === 'LEARNER_RECOVERING' || error === 'CHANGE_IN_PROGRESS';
}

function transferOutcomeMessage(outcome: TransferOutcomeKind, target: string, targetOffset: number, leaderEndOffset: number): string {
  switch (outcome) {
    case 'TARGET_BEHIND':
      return `${target} is behind: it held up to offset ${targetOffset} of ${leaderEndOffset} when the transfer gave up; the old leader leads on`;
    case 'TARGET_UNREACHABLE':
      return `${target} stopped fetching (down or cut off); the old leader leads on`;
    case 'TARGET_DID_NOT_TAKE_OVER':
      return `${target} was asked to take over but did not; the old leader leads on (retry)`;
    case 'TARGET_REMOVED':
      return `${target} was removed from the group during the transfer`;
    case 'LEADERSHIP_LOST':
      return `the leader lost leadership before ${target} was asked to take over; see status for the new leader`;
    default:
      return `the transfer to ${target} ended: ${outcome}`;
  }
}

function waitMsOf(waitMsMax: number): number {
  if (!Number.isSafeInteger(waitMsMax) || waitMsMax < 0 || waitMsMax > membershipWaitMsMax) {
    throw new InvalidArgumentError(`wait_ms_max ${waitMsMax} is out of range 0..${membershipWaitMsMax}`);
  }
  return waitMsMax === 0 ? membershipWaitMsDefault : waitMsMax;
}

export function checkReplicaId(id: string): void {
  if (!replicaIdPattern.test(id)) throw new InvalidArgumentError(`replica id "${id.slice(0, 80)}" must match ${replicaIdPattern.source}`);
}

function checkHostPort(address: string, field: string): void {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  if (!hostPortPattern.test(address) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`${field} "${address.slice(0, 80)}" is not HOST:PORT`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
