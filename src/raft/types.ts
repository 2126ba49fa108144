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

// A membership entry found in the log: the voter set that takes effect at `offset`.
export interface MembershipRecord {
  offset: number;
  voters: ReplicaId[];
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
  // The voters before any membership entry exists in the log.
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
}

export type ProposeError = 'NOT_LEADER' | 'TRANSFERRING' | 'BACKPRESSURE' | 'CHANGE_IN_PROGRESS' | 'INVALID';

export type ProposeResult = { ok: true; offset: number } | { ok: false; error: ProposeError; leaderId: ReplicaId | null };

export interface ReplicaStatus {
  id: ReplicaId;
  matchedOffset: number; // the durable end offset the replica last reported in a Fetch
  recovering: boolean; // its Fetches say it is recovering (counted at its real end only)
  lastFetchTick: number | null;
  ticksSinceFetch: number | null;
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
  replicas: ReplicaStatus[]; // filled on the leader only
}
