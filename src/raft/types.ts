// Types shared by the Raft core, its storage and the driver that runs it.
// Terms are called epochs (as in KRaft). Offsets count records, Kafka-style: an entry (a record
// batch) spans [offset, offset + count). An end offset is the next offset to assign; the high
// watermark is exclusive (everything below it is committed).

export type ReplicaId = string;

export enum EntryType {
  Data = 0,
  LeaderChange = 1,
  Membership = 2,
}

export interface Entry {
  epoch: number;
  offset: number;
  count: number;
  type: EntryType;
  // Never interpreted for Data entries; LeaderChange and Membership payloads are encoded by the
  // core (see membership.ts).
  payload: Uint8Array;
}

// A promise of this value means the replica does not know what it promised: it started on an empty
// data directory in a group with history (a replaced disk, src/replica/replica.ts
// unknownMarkOffset, the same value). It recovers only from a leader all other voters follow now.
export const unknownPromisedOffset = Number.MAX_SAFE_INTEGER;

export interface HardState {
  epoch: number;
  votedFor: ReplicaId | null;
  // The highest offset this replica has reported durable to any leader (a Fetch at N reports N;
  // a leader reports its own copy when it counts it for the high watermark). Synced with the
  // epoch and vote before the report leaves (Ready step 1). Absent in a hard state written before
  // promises existed; the core then falls back on the storage's commit mark (storage.ts).
  promisedOffset?: number;
}

export type Role = 'follower' | 'prospective' | 'candidate' | 'leader' | 'resigned';

// ---- Membership (Raft dissertation §4.1-4.2: single-server changes through the log; etcd and
// KIP-853 learners/observers). A configuration is the voters and the learners. Voters elect and
// are counted (votes, high watermark, check-quorum). Learners fetch like followers, never
// campaign and are never counted; a replica's own configuration may lag the leader's, so a
// learner still answers a vote request from a candidate whose configuration names it a voter
// (election.ts). The configuration in force is the latest membership entry of the log (in force
// when appended, not when committed); before any entry, RaftConfig.voters (the cluster file's
// seed) with no learners.

export type MemberRole = 'voter' | 'learner';

// What the driver needs to reach a member (e.g. host:port strings). The core stores, replicates
// and returns these; it never interprets them. At most endpointBytesMax characters each.
export interface MemberEndpoints {
  clientAddress?: string;
  peerAddress?: string;
}

export interface Member extends MemberEndpoints {
  id: ReplicaId;
}

// A configuration: voters and learners disjoint, each id once; endpoints for members that have
// them (sorted by id). Seed members (RaftConfig.voters) have none unless a change gave them some.
export interface MembershipConfig {
  voters: ReplicaId[];
  learners: ReplicaId[];
  endpoints: Member[];
}

// A membership entry found in the log: the configuration that takes effect at `offset`.
// learners and endpoints are absent in records built by code that predates learners (read as
// none); storage should build records with decodeMembershipRecord (membership.ts) so they survive
// a restart.
export interface MembershipRecord {
  offset: number;
  voters: ReplicaId[];
  learners?: ReplicaId[];
  endpoints?: Member[];
}

export interface EpochStart {
  epoch: number;
  startOffset: number;
}

// ---- Snapshots (KIP-630; etcd's Snapshot metadata). A snapshot at endOffset S is the state
// machine after applying every entry below S; epoch is the epoch of entry S - 1. S >= 1.
export interface SnapshotId {
  endOffset: number;
  epoch: number;
}

// What a snapshot carries besides the state: its id and the membership entry in force at its end
// (the latest one below endOffset; null while the initial voters are in force), so a replica that
// installs it knows the voters without the entries it replaces (etcd's ConfState).
export interface SnapshotMeta extends SnapshotId {
  membership: MembershipRecord | null;
}

// A snapshot the core wants fetched: `snapshot` from `leaderId`, the leader of `leaderEpoch`.
export interface SnapshotRequest {
  leaderId: ReplicaId;
  leaderEpoch: number;
  snapshot: SnapshotId;
}

// ---- Messages. Every message carries the sender's epoch, except PreVoteRequest, whose epoch is
// the one the sender proposes (its own epoch + 1); receivers never adopt a pre-vote's epoch.

interface MessageBase {
  from: ReplicaId;
  to: ReplicaId;
  epoch: number;
}

export interface PreVoteRequest extends MessageBase {
  type: 'PreVoteRequest';
  lastEpoch: number;
  lastOffset: number; // the sender's log end offset
}

export interface PreVoteResponse extends MessageBase {
  type: 'PreVoteResponse';
  granted: boolean;
}

export interface VoteRequest extends MessageBase {
  type: 'VoteRequest';
  lastEpoch: number;
  lastOffset: number; // the sender's log end offset
}

export interface VoteResponse extends MessageBase {
  type: 'VoteResponse';
  granted: boolean;
}

export interface BeginQuorumEpoch extends MessageBase {
  type: 'BeginQuorumEpoch';
}

export interface BeginQuorumEpochResponse extends MessageBase {
  type: 'BeginQuorumEpochResponse';
}

export interface FetchRequest extends MessageBase {
  type: 'FetchRequest';
  fetchOffset: number; // the fetcher's durable end offset: it holds everything below it durably
  lastFetchedEpoch: number; // epoch of the entry that ends at fetchOffset (0 when none)
  bytesMax: number;
  // Set while the fetcher is recovering (it lost entries it had promised): the leader then counts
  // it at exactly fetchOffset, even below what it counted before (progress.ts).
  recovering?: boolean;
  // Correlates the answer: a follower applies only the answer to its latest Fetch, so duplicated
  // or retried requests cannot multiply into parallel fetch chains.
  requestId: number;
}

// NOT_VOTER: the fetcher is neither a voter nor a learner of the leader's configuration (the
// name predates learners; the wire keeps it).
export type FetchError = 'NOT_LEADER' | 'FENCED_EPOCH' | 'UNKNOWN_EPOCH' | 'NOT_VOTER';

export interface FetchResponse extends MessageBase {
  type: 'FetchResponse';
  error?: FetchError;
  leaderId?: ReplicaId | null;
  divergingEpoch?: { epoch: number; endOffset: number };
  // KIP-630 FetchResponse.SnapshotId: the leader's log no longer holds what the Fetch position
  // needs (below its log start, or a divergence below it): install this snapshot, then fetch
  // from its endOffset. Entries are empty; the fetcher's progress is not advanced.
  snapshotNeeded?: SnapshotId;
  // Set only in answers to a recovering fetcher: every other voter of the leader's configuration
  // has fetched from this leader, not recovering, since the fetcher's recovering run began here
  // (so each of them is at this epoch now). A fetcher that does not know what it promised (a
  // replaced disk) finishes recovery only on an answer with it (node.ts, maybeFinishRecovery).
  votersFetchedSinceRecovering?: boolean;
  fetchOffset: number; // echoed from the request
  lastFetchedEpoch: number; // echoed from the request
  requestId: number; // echoed from the request
  entries: Entry[];
  highWatermark: number;
}

// Sent by a leader to the replica it hands leadership to: start an election now, skipping pre-vote.
export interface TimeoutNow extends MessageBase {
  type: 'TimeoutNow';
}

export type Message =
  | PreVoteRequest
  | PreVoteResponse
  | VoteRequest
  | VoteResponse
  | BeginQuorumEpoch
  | BeginQuorumEpochResponse
  | FetchRequest
  | FetchResponse
  | TimeoutNow;

export type MessageType = Message['type'];

// ---- Events: things the driver logs, alerts on and shows in status; they change nothing it must do.
//  - replica.recovering: on start the log ends (endOffset) below what this replica promised or knew
//    committed (markOffset): it grants no vote or pre-vote, never campaigns, and fetches.
//  - replica.recovered: its durable end reached the mark (or it durably holds the whole log of the
//    leader of its epoch, which then lacks only uncommitted entries it had): an ordinary voter again.
//  - CommittedDataDivergence: `leaderId` asked it to truncate to requestedEndOffset, below what it
//    knows committed (committedOffset): refused; it does not follow that leader in that epoch.
//    Critical: a leader lacks committed entries. A snapshotNeeded answer whose snapshot disagrees
//    with the entry below its end that this replica knows committed counts as a request to
//    truncate to its log start (installing would replace its whole log).
export type RaftEvent =
  | { type: 'replica.recovering'; markOffset: number; endOffset: number }
  | { type: 'replica.recovered'; markOffset: number; endOffset: number }
  | { type: 'CommittedDataDivergence'; leaderId: ReplicaId; epoch: number; requestedEndOffset: number; committedOffset: number };

// ---- What the driver must do, in this order:
//  1. hardState: persist with sync BEFORE sending any message of this Ready and before exposing
//     this Ready's highWatermark (promisedOffset covers what messages and the high watermark
//     count on). A driver may write a promise-only change asynchronously if what relies on it
//     waits for it: a FetchRequest at N until a promise >= N is durable, the high watermark a
//     leader counts its own copy for, and the high watermark its Fetch answers carry
//     (src/replica/replica.ts, persistHardState).
//  2. installSnapshot: the snapshot the driver fetched (the one it reported with
//     snapshotFetched(), whose metadata this is) becomes the state: make it the storage's latest
//     snapshot, replace the state machine with its state (applied offset = endOffset), and reset
//     the log to empty at endOffset (every entry discarded; storage.startOffset() = endOffset()
//     = endOffset), all durably, before truncating or appending.
//  3. truncateTo: truncate the log to this end offset (durably) before appending.
//  4. entries: append to the log (flushed per the flush policy).
//  5. call advance(ready, durableEndOffset) with the log's durable end offset.
//  6. messages: send (the core may already count on 1–4 being done when they arrive).
//  fetchSnapshot is work for the driver's snapshot transfer, outside this order: when set, fetch
//  that snapshot from that leader (KIP-630 FetchSnapshot: chunks, resumable, checked) and call
//  snapshotFetched() once all of it is stored and verified; it replaces any earlier request. When
//  null, the core no longer wants the snapshot it asked for: stop (a late snapshotFetched() is
//  ignored). Meanwhile the core keeps sending Fetches now and then (fetchRetryTicks), which the
//  leader answers with snapshotNeeded: they keep both sides' timers alive and bring a newer id.
//  highWatermark and roleChange are information for the apply loop and for clients; events are
//  for logs, alerts and status (see RaftEvent).
export interface Ready {
  hardState?: HardState;
  installSnapshot?: SnapshotMeta;
  truncateTo?: number;
  entries: Entry[];
  messages: Message[];
  highWatermark: number;
  fetchSnapshot?: SnapshotRequest | null;
  roleChange?: RoleState;
  events?: RaftEvent[];
}

export interface RoleState {
  role: Role;
  epoch: number;
  leaderId: ReplicaId | null;
}

export interface RaftConfig {
  id: ReplicaId;
  // The voters before any membership entry exists in the log: the cluster file's seed, the same
  // on every replica. The log is the truth once it holds a membership entry (or a snapshot carries
  // one). A replica that joins a running group gets the same seed, which does not name it; it
  // learns its configuration from the leader's log or snapshot.
  voters: ReplicaId[];
  // Base election timeout: a follower without a successful Fetch answer for this many ticks
  // (plus jitter) goes prospective.
  electionTicks: number;
  // The election timeout is electionTicks + a uniform draw from [0, electionJitterTicks].
  electionJitterTicks?: number;
  // Check-quorum: a leader without Fetches from a majority within this many ticks steps down.
  fetchTimeoutTicks: number;
  // A follower re-sends a Fetch that got no answer after this many ticks (must exceed the
  // driver's long-poll wait).
  fetchRetryTicks?: number;
  // A leader re-sends BeginQuorumEpoch to a voter that has not fetched for this many ticks.
  beginQuorumEpochResendTicks?: number;
  // Upper bound on the bytes of entries in one Fetch answer (at least one entry is sent).
  fetchBytesMax: number;
  // Upper bound on uncommitted offsets on a leader; beyond it propose() refuses (backpressure).
  uncommittedOffsetsMax?: number;
  // Seeded uniform [0, 1) generator; the only source of randomness.
  random: () => number;
  // TEST ONLY: ignore promises on start (never recovering), to show what the rule prevents.
  recoveringRuleDisabled?: boolean;
  // promoteLearner accepts a learner whose matched offset is at least the high watermark minus
  // this many offsets (and that fetched within fetchTimeoutTicks and is not recovering). Default 0:
  // it holds everything committed.
  promotionLagOffsetsMax?: number;
  // TEST ONLY: break one membership rule (and the invariant that mirrors it), so the simulator
  // shows that its own checks catch the consequence (test/sim/main.ts --break).
  ruleBrokenForTest?: BrokenRuleForTest | null;
}

//  - learners-counted: learners count for the high watermark like voters.
//  - concurrent-changes: a membership change is accepted while another one is uncommitted.
//  - recovery-without-voters: a replica that lost its identity (unknown promise) recovers from any
//    leader whose whole log it holds, and leaders count recovering fetchers for check-quorum and
//    the high watermark (the rule before replaced disks were made safe from stale leaders).
export type BrokenRuleForTest = 'learners-counted' | 'concurrent-changes' | 'recovery-without-voters';

export type ProposeError = 'NOT_LEADER' | 'TRANSFERRING' | 'BACKPRESSURE' | 'CHANGE_IN_PROGRESS' | 'INVALID';

export type ProposeResult = { ok: true; offset: number } | { ok: false; error: ProposeError; leaderId: ReplicaId | null };

// ---- Operator membership changes (addLearner, promoteLearner, removeMember). Each is one entry,
// appended by the leader; it takes effect on append and is done once the high watermark passes
// its offset (the driver waits for that before answering the operator). A refusal changes
// nothing. Retriable: NOT_LEADER (ask leaderId), TRANSFERRING, CHANGE_IN_PROGRESS, LEARNER_BEHIND,
// LEARNER_UNREACHABLE, LEARNER_RECOVERING. The others are final for that input.
//  - NOT_LEADER: not the leader, or a leader whose removal is pending (it is stepping down).
//  - TRANSFERRING: a leadership transfer is running.
//  - CHANGE_IN_PROGRESS: the previous change is uncommitted, or this leader has not committed an
//    entry of its epoch yet (dissertation §4.1 and the single-server change fix).
//  - INVALID: an empty or too long id or endpoint.
//  - ALREADY_VOTER, ALREADY_LEARNER: addLearner of a member; promoteLearner of a voter.
//  - NOT_A_MEMBER: promote or remove an id the configuration does not hold.
//  - TOO_MANY_MEMBERS: voters + learners would exceed membersMax (membership.ts).
//  - LEARNER_BEHIND / LEARNER_UNREACHABLE / LEARNER_RECOVERING: promoteLearner of a learner that
//    is not caught up (matched offset below high watermark - promotionLagOffsetsMax), has not
//    fetched within fetchTimeoutTicks, or says it is recovering.
//  - BELOW_MINIMUM_VOTERS: the removal leaves fewer than votersMin (3) voters; allowed with force.
//  - LAST_VOTER: the removal leaves no voter; never allowed.
//  - QUORUM_AT_RISK: the voters left that fetched within fetchTimeoutTicks (the leader counts
//    itself if it stays) are not a majority of the voters left; allowed with force.
export type MembershipRefusal =
  | 'NOT_LEADER'
  | 'TRANSFERRING'
  | 'CHANGE_IN_PROGRESS'
  | 'INVALID'
  | 'ALREADY_VOTER'
  | 'ALREADY_LEARNER'
  | 'NOT_A_MEMBER'
  | 'TOO_MANY_MEMBERS'
  | 'LEARNER_BEHIND'
  | 'LEARNER_UNREACHABLE'
  | 'LEARNER_RECOVERING'
  | 'BELOW_MINIMUM_VOTERS'
  | 'LAST_VOTER'
  | 'QUORUM_AT_RISK';

// ok: the entry is appended at `offset`; `config` is the configuration now in force.
// Refused: `message` names the problem for the operator (ids and offsets), in one sentence.
export type MembershipResult =
  | { ok: true; offset: number; config: MembershipConfig }
  | { ok: false; error: MembershipRefusal; leaderId: ReplicaId | null; message: string };

export interface RemoveOptions {
  // Allow leaving fewer than votersMin voters, or fewer active voters than a majority.
  force?: boolean;
}

// ---- Leadership transfer (dissertation §3.10). transferLeadership checks what it can at once;
// then the leader refuses proposals and waits up to electionTicks for the target to hold its
// whole log, sends TimeoutNow, and the target campaigns at once. The attempt ends with a
// TransferOutcome (status().lastTransfer on the old leader):
//  - LEFT_OFFICE: TimeoutNow went out and this replica stopped leading (a higher epoch began);
//    the driver waits until status().leaderId is the target and leaderServing is true.
//  - TARGET_BEHIND: the target fetched but did not reach our log end within electionTicks.
//  - TARGET_UNREACHABLE: the target stopped fetching (none within fetchTimeoutTicks).
//  - TARGET_DID_NOT_TAKE_OVER: TimeoutNow went out but we still lead after electionTicks (lost
//    message, or the target could not win); proposals resume.
//  - TARGET_REMOVED: a membership change removed the target.
//  - LEADERSHIP_LOST: we stopped leading before TimeoutNow went out (check-quorum, a higher epoch,
//    resign).
// Immediate refusals (nothing starts): NOT_LEADER, TRANSFER_IN_PROGRESS, TARGET_IS_LEADER (the
// target is this leader), TARGET_NOT_MEMBER, TARGET_IS_LEARNER, TARGET_UNREACHABLE (no Fetch
// within fetchTimeoutTicks), TARGET_RECOVERING, NO_ELIGIBLE_TARGET (no target named and no voter
// qualifies).
export type TransferRefusal =
  | 'NOT_LEADER'
  | 'TRANSFER_IN_PROGRESS'
  | 'TARGET_IS_LEADER'
  | 'TARGET_NOT_MEMBER'
  | 'TARGET_IS_LEARNER'
  | 'TARGET_UNREACHABLE'
  | 'TARGET_RECOVERING'
  | 'NO_ELIGIBLE_TARGET';

export type TransferOutcomeKind = 'LEFT_OFFICE' | 'TARGET_BEHIND' | 'TARGET_UNREACHABLE' | 'TARGET_DID_NOT_TAKE_OVER' | 'TARGET_REMOVED' | 'LEADERSHIP_LOST';

// offset: our log end when the transfer started (kept for callers of the ProposeResult shape).
export type TransferResult =
  | { ok: true; target: ReplicaId; offset: number; deadlineTick: number }
  | { ok: false; error: TransferRefusal; leaderId: ReplicaId | null; message: string };

export interface TransferStatus {
  target: ReplicaId;
  epoch: number;
  startedTick: number;
  deadlineTick: number;
  timeoutNowSent: boolean;
  targetMatchedOffset: number;
  leaderEndOffset: number;
}

export interface TransferOutcome {
  target: ReplicaId;
  epoch: number; // the epoch this replica led when it started the transfer
  outcome: TransferOutcomeKind;
  tick: number; // when it ended
  targetMatchedOffset: number; // the target's matched offset then
  leaderEndOffset: number; // our log end then
}

export interface ReplicaStatus {
  id: ReplicaId;
  role: MemberRole;
  matchedOffset: number; // the durable end offset the replica last reported in a Fetch
  recovering: boolean; // its Fetches say it is recovering (counted at its real end only)
  lastFetchTick: number | null;
  ticksSinceFetch: number | null;
  // Fetched within fetchTimeoutTicks, not recovering, and matched at least the high watermark
  // minus promotionLagOffsetsMax: what promoteLearner requires of a learner.
  caughtUp: boolean;
}

export interface MemberStatus extends Member {
  role: MemberRole;
}

export interface RaftStatus {
  id: ReplicaId;
  role: Role;
  epoch: number;
  leaderId: ReplicaId | null;
  votedFor: ReplicaId | null;
  highWatermark: number;
  logStartOffset: number;
  logEndOffset: number;
  durableEndOffset: number;
  snapshot: SnapshotId | null; // the latest snapshot (taken here or installed)
  fetchingSnapshot: SnapshotRequest | null; // the snapshot it waits for, when it does
  voters: ReplicaId[];
  tick: number;
  transferTarget: ReplicaId | null;
  // Recovering: the log ends below recoveryMarkOffset (what it promised); no votes, no candidacy.
  recovering: boolean;
  recoveryMarkOffset: number | null;
  promisedOffset: number;
  replicas: ReplicaStatus[]; // filled on the leader only: every other voter and learner
  // Membership as this replica's log says (the configuration in force, maybe uncommitted).
  learners: ReplicaId[];
  members: MemberStatus[]; // voters, then learners, each with the endpoints the log holds
  // The offset of the latest membership entry while it is above this replica's high watermark (a
  // change in progress, as far as it knows); null when none.
  membershipChangeOffset: number | null;
  // The leader this replica knows has committed an entry of its own epoch (on a leader: itself;
  // on a follower: it holds an entry of its epoch below its high watermark): it serves.
  leaderServing: boolean;
  transfer: TransferStatus | null; // on a leader while a transfer runs
  lastTransfer: TransferOutcome | null; // how the last transfer this replica started ended
}
