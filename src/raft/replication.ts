// Pull replication (KRaft Fetch), snapshots for followers below the leader's log start
// (KIP-630), the high watermark, check-quorum and leadership hand-over.

import { assert } from '../assert.js';
import { sendFetch, type RaftNode } from './node.js';
import { beginEpochDue, fetchedWithin, holdsEntryAt, recordDivergingFetch, recordMatchedFetch, type Progress } from './progress.js';
import { majorityOffset, quorumActive } from './quorum.js';
import { assertSnapshotMetaValid, entryEnd } from './storage.js';
import type { Entry, FetchRequest, FetchResponse, ReplicaId, SnapshotId, SnapshotMeta } from './types.js';

type FetchAnswer = Omit<FetchResponse, 'from' | 'epoch' | 'type' | 'to'>;

function answerFetch(node: RaftNode, request: FetchRequest, answer: FetchAnswer): void {
  node.send({ type: 'FetchResponse', to: request.from, ...answer });
}

// Any replica answers a Fetch it cannot serve, so the fetcher learns the epoch and leader.
export function refuseFetch(node: RaftNode, request: FetchRequest): void {
  let error: FetchResponse['error'] = 'NOT_LEADER';
  if (request.epoch < node.epoch) error = 'FENCED_EPOCH';
  if (request.epoch > node.epoch) error = 'UNKNOWN_EPOCH';
  const leaderId = node.role === 'resigned' ? null : node.leaderId;
  const echo = { fetchOffset: request.fetchOffset, lastFetchedEpoch: request.lastFetchedEpoch, requestId: request.requestId };
  answerFetch(node, request, { error, leaderId, ...echo, entries: [], highWatermark: node.highWatermark });
}

type FetchVerdict = { kind: 'valid' } | { kind: 'diverging'; diverging: { epoch: number; endOffset: number } } | { kind: 'snapshot'; snapshot: SnapshotId };

// KRaft validateOffsetAndEpoch: a Fetch (fetchOffset, lastFetchedEpoch) matches when our log has
// that epoch as the largest epoch <= lastFetchedEpoch and it ends at or after fetchOffset;
// otherwise it diverges and the answer says where our epoch ends, so the follower truncates.
// KIP-630: when the position lies below our log start, or the divergence can only be found below
// it (our stored epochs and our snapshot's are all above lastFetchedEpoch), the entries are gone:
// the answer is our latest snapshot's id.
export function fetchVerdict(node: RaftNode, fetchOffset: number, lastFetchedEpoch: number): FetchVerdict {
  const log = node.log;
  const belowStart = fetchOffset < log.startOffset();
  const found = belowStart ? null : log.endOffsetForEpoch(lastFetchedEpoch);
  if (found === null) {
    const snapshot = log.snapshot();
    if (snapshot !== null) return { kind: 'snapshot', snapshot: { endOffset: snapshot.endOffset, epoch: snapshot.epoch } };
    // A storage without snapshots (RaftStorage.snapshot absent): the answer given before them.
    assert(!log.snapshotsSupported, 'fetchVerdict: a log starting above 0 without a snapshot');
    const legacy = log.endOffsetForEpoch(lastFetchedEpoch);
    assert(legacy !== null, 'fetchVerdict: no epoch answer without snapshots');
    return { kind: 'diverging', diverging: legacy };
  }
  if (found.epoch !== lastFetchedEpoch || found.endOffset < fetchOffset) return { kind: 'diverging', diverging: found };
  return { kind: 'valid' };
}

// A matching Fetch at N acknowledges N. A diverging one, or one answered with a snapshot, matched
// nothing: the follower's progress does not move (a recovering follower's drops to 0).
export function leaderHandleFetch(node: RaftNode, request: FetchRequest): void {
  assert(node.role === 'leader' && request.epoch === node.epoch, 'leaderHandleFetch: not the leader of this epoch');
  const base = {
    leaderId: node.id,
    fetchOffset: request.fetchOffset,
    lastFetchedEpoch: request.lastFetchedEpoch,
    requestId: request.requestId,
    entries: [] as Entry[],
  };
  // Voters and learners fetch; anyone else is told NOT_VOTER (not a member of our configuration).
  if (!node.isMember(request.from)) {
    answerFetch(node, request, { ...base, error: 'NOT_VOTER', highWatermark: node.highWatermark });
    return;
  }
  const progress = node.progressOf(request.from);
  const recovering = request.recovering === true;
  const verdict = fetchVerdict(node, request.fetchOffset, request.lastFetchedEpoch);
  if (verdict.kind !== 'valid') {
    if (recordDivergingFetch(progress, request.requestId, recovering, node.tick, node.log.endOffset())) node.appendLeaderMark();
    const answer = verdict.kind === 'snapshot' ? { snapshotNeeded: verdict.snapshot } : { divergingEpoch: verdict.diverging };
    answerFetch(node, request, { ...base, ...answer, highWatermark: node.highWatermark });
    return;
  }
  if (recordMatchedFetch(progress, request.fetchOffset, request.requestId, recovering, node.tick, node.log.endOffset())) node.appendLeaderMark();
  maybeAdvanceHighWatermark(node);
  const bytesMax = Math.max(1, Math.min(request.bytesMax, node.config.fetchBytesMax));
  const entries = node.log.entries(request.fetchOffset, bytesMax);
  const confirmed = recovering && votersFetchedSince(node, progress) ? { votersFetchedSinceRecovering: true } : {};
  answerFetch(node, request, { ...base, entries, highWatermark: node.highWatermark, ...confirmed });
  maybeSendTimeoutNow(node);
  maybeStepDownAfterRemoval(node);
}

// The high watermark is the largest offset a majority of voters hold durably (the leader counts
// its own durable end; learners are never counted), and moves only when the entry below it is of
// the leader's epoch (Raft §5.4.2, Figure 8). Counting its own copy is the leader's report to
// itself: its promise rises to the part of its copy the new high watermark relies on, in the hard
// state of the Ready that carries the high watermark (persisted before it is exposed). A leader
// outside its configuration (its removal pending) does not count itself (dissertation §4.2.2).
export function maybeAdvanceHighWatermark(node: RaftNode): void {
  if (node.role !== 'leader') return;
  const counted = node.config.ruleBrokenForTest === 'learners-counted' ? node.members() : node.voters;
  const candidate = majorityOffset(counted, (id) => durableOffsetOf(node, id));
  if (candidate <= node.highWatermark) return;
  if (node.log.epochBefore(candidate) !== node.epoch) return;
  node.setHighWatermark(candidate);
  node.raisePromise(Math.min(node.durableEndOffset, candidate));
}

// A leader's view of how far a replica holds its log durably (itself: its own durable end). A
// recovering replica counts for nothing (see votersFetchedSince: it may follow a stale leader).
export function durableOffsetOf(node: RaftNode, id: ReplicaId): number {
  if (id === node.id) return node.durableEndOffset;
  const progress = node.progress.get(id);
  if (progress === undefined || !countsForQuorum(node, progress)) return 0;
  return progress.matchedOffset;
}

// Recovering replicas take part in no quorum: no votes (election.ts), no high watermark, no
// check-quorum. The last two are the leader's side of the replaced-disk rule below.
export function countsForQuorum(node: RaftNode, progress: Progress): boolean {
  return progress.recoveringRequestId === null || node.config.ruleBrokenForTest === 'recovery-without-voters';
}

// ---- Replaced disks (DESIGN §12; the gap of a stale leader). A replica on an empty data
// directory in a group with history lost its identity: its epoch, its vote and its promise. Its
// old identity may have voted in any epoch up to the largest one it had stored, V. It must grant
// no vote in an epoch <= V: its new vote could elect a second leader there. It recovers (votes
// again) on an answer of leader L of epoch e that (1) shows it holds L's whole log and (2) says
// every other voter of L's configuration fetched from L, not recovering, after L saw the first
// Fetch of its recovering run (votersFetchedSinceRecovering); it then pins its vote in e on L
// (RaftNode.maybeFinishRecovery).
// Why this is enough, for any group size: let X be a candidate the old identity voted for in V.
// X asked in V before the disk was replaced, so X's epoch was >= V then (epochs never go back).
// If X is another voter, (2) says X fetched from L in epoch e after the replaced replica was
// running: e >= V. If X is L, L is in e now: e >= V. If X was the old identity itself (its own
// vote), any voter that granted it that vote had epoch V before and fetched in e since: e >= V
// (and if none did, nobody won V with it). So every epoch the old identity voted in is <= e; the
// new one never votes below e, and in e only for L, who already leads e. Its votes from e + 1 on
// are its first in those epochs. "Fetched after" is causal: when the run begins L appends an
// entry at its log end (appendLeaderMark), and a voter counts once a Fetch shows it holds that
// entry, which it can only have asked for after L appended it (a Fetch delayed in the network
// from before the replacement shows an offset at or below the mark).
// Why every other voter and not a majority: with five voters, X may hold the old vote in V
// while partitioned, having asked before the replacement; a majority that fetched from L in
// e < V says nothing about X, and V is then open to a second winner that the new identity votes
// for (X wins V with the old vote plus two whose answers were still in flight). With three
// voters the two are the same. The cost is liveness only: a replaced disk recovers once every
// voter is up. Meanwhile it is no part of any quorum: a stale leader of e (partitioned from the
// group, which elected someone in e + 1 with the old identity's vote) that the replaced replica
// follows must neither keep office through it (check-quorum) nor commit with it: the leader of
// e + 1 would lack that entry. The leader cannot tell an unknown promise from a known one on the
// wire, so no recovering fetcher counts.
function votersFetchedSince(node: RaftNode, progress: Progress): boolean {
  const mark = progress.recoveringSinceOffset;
  if (mark === null) return false;
  for (const voter of node.voters) {
    if (voter === node.id || voter === progress.id) continue;
    if (!holdsEntryAt(node.progressOf(voter), mark)) return false;
  }
  return true;
}

// What this replica knows committed: its high watermark, or the driver's record from before this
// start (entries below it in our log are committed even when the leader has not said so yet).
// A snapshot holds committed state only; the high watermark starts at its end.
export function committedFloorOffset(node: RaftNode): number {
  return Math.max(node.highWatermark, node.storedCommitMarkOffset, node.log.snapshotEndOffset());
}

// Refuses to follow the current leader in this epoch: it asked us to give up entries we know
// committed (requestedEndOffset: where it would have our log end). Reported, never crashed on.
function refuseLeader(node: RaftNode, requestedEndOffset: number, committedOffset: number): void {
  const leaderId = node.leaderId;
  assert(leaderId !== null, 'refuseLeader: no leader');
  node.emit({ type: 'CommittedDataDivergence', leaderId, epoch: node.epoch, requestedEndOffset, committedOffset });
  node.refusedLeader = { id: leaderId, epoch: node.epoch };
  node.leaderId = null;
  node.fetchInFlight = false;
  node.snapshotRequest = null;
}

// Truncates to endOffset, unless that removes entries we know committed: a leader whose log lacks
// committed entries (divergence on committed data, an operating fault such as a disk that lost
// acknowledged writes elsewhere, not a bug of ours). Then we refuse to follow it in this epoch,
// report CommittedDataDivergence and stay up. Returns false when refused.
function truncateFollower(node: RaftNode, endOffset: number): boolean {
  const committedOffset = committedFloorOffset(node);
  if (endOffset < committedOffset && endOffset < node.log.endOffset()) {
    refuseLeader(node, endOffset, committedOffset);
    return false;
  }
  node.log.truncateTo(endOffset);
  node.durableEndOffset = Math.min(node.durableEndOffset, endOffset);
  node.lowerPromiseTo(endOffset);
  node.refreshVoters();
  return true;
}

export function followerHandleFetchResponse(node: RaftNode, response: FetchResponse): void {
  assert(node.role === 'follower' && response.from === node.leaderId, 'fetch answer from a non-leader');
  if (!node.fetchInFlight || response.requestId !== node.fetchRequestId) return;
  node.fetchInFlight = false;
  if (response.error !== undefined) {
    if (response.error === 'NOT_LEADER') {
      node.leaderId = null;
      node.snapshotRequest = null;
    }
    return;
  }
  node.lastLeaderContactTick = node.tick;
  node.electionElapsedTicks = 0;
  if (response.snapshotNeeded !== undefined) return onSnapshotNeeded(node, response.snapshotNeeded);
  node.snapshotRequest = null; // the leader serves our log again
  if (!answersCurrentLog(node, response)) return maybeFetch(node);
  if (response.divergingEpoch !== undefined) {
    if (!truncateFollower(node, divergenceTruncation(node, response.divergingEpoch))) return;
  } else {
    // An empty matching answer: the leader's log ends where our durable log does.
    const holdsLeaderLog = response.entries.length === 0 && node.durableEndOffset >= response.fetchOffset;
    node.maybeFinishRecovery(holdsLeaderLog, response.votersFetchedSinceRecovering === true);
    const verifiedEnd = appendFromLeader(node, response);
    if (node.leaderId === null) return; // refused: it lacks committed entries
    if (verifiedEnd !== null) {
      const offset = Math.min(response.highWatermark, verifiedEnd);
      if (offset > node.highWatermark) node.setHighWatermark(offset);
    }
  }
  maybeFetch(node);
}

// KRaft: where the leader's epoch E ends at `endOffset`. When we hold epoch E too, keep the
// shorter of the two E ranges; otherwise cut where our own largest epoch below E ends (an entry
// boundary of ours), and the next Fetch narrows it further. When our own answer lies below our
// log start, cut to the start (refused if that is below what we know committed).
function divergenceTruncation(node: RaftNode, diverging: { epoch: number; endOffset: number }): number {
  const own = node.log.endOffsetForEpoch(diverging.epoch);
  if (own === null) return node.log.startOffset();
  if (own.epoch === diverging.epoch) return Math.min(own.endOffset, diverging.endOffset, node.log.endOffset());
  return Math.min(own.endOffset, node.log.endOffset());
}

// An answer (possibly late or duplicated) is applied only while our log still has the position
// the Fetch was made from: the leader checked that position, not whatever our log holds now.
function answersCurrentLog(node: RaftNode, response: FetchResponse): boolean {
  if (response.fetchOffset > node.log.endOffset() || response.fetchOffset < node.log.startOffset()) return false;
  return node.log.knownEpochBefore(response.fetchOffset) === response.lastFetchedEpoch;
}

function validSnapshotId(id: SnapshotId): boolean {
  return Number.isInteger(id.endOffset) && id.endOffset >= 1 && Number.isInteger(id.epoch) && id.epoch >= 1;
}

// KIP-630, follower side: the leader cannot serve our position and offers snapshot `id`. We ask
// the driver to fetch it (Ready.fetchSnapshot) unless our log already holds the prefix it
// replaces (then our durable end only has to catch up with our log), or holds a different entry
// below its end that we know committed (a leader lacking committed data: refused).
function onSnapshotNeeded(node: RaftNode, id: SnapshotId): void {
  const leaderId = node.leaderId;
  assert(leaderId !== null, 'onSnapshotNeeded: no leader');
  if (!validSnapshotId(id) || id.epoch > node.epoch || id.endOffset <= node.log.startOffset()) return; // nothing to gain; Fetch later
  const held = id.endOffset <= node.log.endOffset() ? node.log.knownEpochBefore(id.endOffset) : null;
  if (held === id.epoch) {
    node.snapshotRequest = null;
    return maybeFetch(node);
  }
  const committedOffset = committedFloorOffset(node);
  if (held !== null && committedOffset >= id.endOffset) return refuseLeader(node, node.log.startOffset(), committedOffset);
  const current = node.snapshotRequest;
  if (current !== null && current.snapshot.endOffset === id.endOffset && current.snapshot.epoch === id.epoch) return;
  node.snapshotRequest = { leaderId, leaderEpoch: node.epoch, snapshot: { endOffset: id.endOffset, epoch: id.epoch } };
}

// The driver fetched the snapshot `meta` describes. If it is the one we wait for, it replaces our
// log: the log starts, empty, at its end S; the high watermark is at least S; our durable end is
// S (the snapshot is durable once Ready step 2 is done); and we fetch from S. A promise above S
// drops to S: what we promised there diverged from the leader below S (it could not find the
// divergence in its log), so it was never committed. Returns false for a snapshot not wanted.
export function installFetchedSnapshot(node: RaftNode, meta: SnapshotMeta): boolean {
  const request = node.snapshotRequest;
  if (request === null || request.snapshot.endOffset !== meta.endOffset || request.snapshot.epoch !== meta.epoch) return false;
  assert(node.role === 'follower' && node.leaderId === request.leaderId && node.epoch === request.leaderEpoch, 'installFetchedSnapshot: stale request');
  assertSnapshotMetaValid(meta);
  node.snapshotRequest = null;
  node.log.installSnapshot(meta);
  node.durableEndOffset = meta.endOffset;
  if (node.highWatermark < meta.endOffset) node.setHighWatermark(meta.endOffset);
  node.lowerPromiseTo(meta.endOffset);
  node.refreshVoters();
  node.maybeFinishRecovery(false);
  node.fetchInFlight = false; // a Fetch from the old position is answered for a log we no longer have
  sendFetch(node);
  return true;
}

// Appends the leader's entries, skipping those we already hold and truncating at the first that
// conflicts. Returns the end of the prefix now known to match the leader, or null for a stale
// answer that does not connect to our log.
function appendFromLeader(node: RaftNode, response: FetchResponse): number | null {
  const entries = response.entries;
  if (entries.length === 0) return Math.min(response.fetchOffset, node.log.endOffset());
  if (entries[0]!.offset > node.log.endOffset() || entries[0]!.offset < node.log.startOffset()) return null;
  for (const entry of entries) {
    assert(entry.epoch <= node.epoch, 'leader sent an entry from a future epoch');
    if (entry.offset < node.log.endOffset()) {
      const existing = node.log.entryAt(entry.offset);
      if (existing.offset === entry.offset && existing.epoch === entry.epoch) {
        assert(existing.count === entry.count, 'Log Matching: same (epoch, offset) with different counts');
        continue;
      }
      if (!truncateFollower(node, existing.offset)) return null;
      if (existing.offset !== entry.offset) return null;
    }
    node.log.append(entry);
  }
  node.refreshVoters();
  return entryEnd(entries[entries.length - 1]!);
}

// A follower asks for more once what it has is durable (its Fetch acknowledges durable data).
// While it waits for a snapshot, it Fetches only on retry ticks (tickFollower).
export function maybeFetch(node: RaftNode): void {
  if (node.role !== 'follower' || node.leaderId === null || node.fetchInFlight || node.snapshotRequest !== null) return;
  if (node.durableEndOffset < node.log.endOffset()) return;
  sendFetch(node);
}

// Check-quorum: a leader that has not heard Fetches from a majority of voters within
// fetchTimeoutTicks steps down, so a partitioned leader stops acting as one.
export function checkQuorum(node: RaftNode): void {
  if (node.tick - node.leaderSinceTick < node.config.fetchTimeoutTicks) return;
  if (!quorumActive(node.voters, (id) => activeVoter(node, id))) node.becomeFollower(node.epoch, null);
}

// Check-quorum counts a voter that fetched within fetchTimeoutTicks and is not recovering (a
// replaced disk may follow a stale leader: see votersFetchedSince).
export function activeVoter(node: RaftNode, id: ReplicaId): boolean {
  if (id === node.id) return true;
  const progress = node.progressOf(id);
  return countsForQuorum(node, progress) && fetchedWithin(progress, node.tick, node.config.fetchTimeoutTicks);
}

export function resendBeginQuorumEpoch(node: RaftNode): void {
  for (const progress of node.progress.values()) {
    if (beginEpochDue(progress, node.tick, node.config.beginQuorumEpochResendTicks)) {
      node.send({ type: 'BeginQuorumEpoch', to: progress.id });
      progress.beginEpochSentTick = node.tick;
    }
  }
}

// Leadership transfer: once the target holds our whole log, tell it to start an election now.
export function maybeSendTimeoutNow(node: RaftNode): void {
  const target = node.transferTarget;
  if (target === null || node.timeoutNowSent) return;
  if (node.progressOf(target).matchedOffset < node.log.endOffset()) return;
  node.send({ type: 'TimeoutNow', to: target });
  node.timeoutNowSent = true;
}

// The voter best placed to take over: the one with the largest matched offset (when
// reachableOnly, among those that fetched within fetchTimeoutTicks).
export function bestSuccessor(node: RaftNode, reachableOnly = false): ReplicaId | null {
  let best: ReplicaId | null = null;
  let bestOffset = -1;
  for (const progress of node.progress.values()) {
    if (progress.id === node.id || !node.isVoter(progress.id) || progress.recoveringRequestId !== null) continue;
    if (reachableOnly && !fetchedWithin(progress, node.tick, node.config.fetchTimeoutTicks)) continue;
    if (progress.matchedOffset > bestOffset) {
      best = progress.id;
      bestOffset = progress.matchedOffset;
    }
  }
  return best;
}

// A leader that removed itself leads until the removal is committed, then steps down and asks
// the most caught-up voter to take over.
export function maybeStepDownAfterRemoval(node: RaftNode): void {
  if (node.role !== 'leader' || node.isVoter()) return;
  const records = node.log.membershipRecords();
  const latest = records[records.length - 1];
  assert(latest !== undefined, 'a leader outside the voters must have a membership entry');
  if (node.highWatermark <= latest.offset) return;
  const successor = bestSuccessor(node);
  if (successor !== null) node.send({ type: 'TimeoutNow', to: successor });
  node.becomeFollower(node.epoch, null);
}
