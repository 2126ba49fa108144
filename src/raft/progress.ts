// What a leader knows about each replica that fetches from it (etcd's tracker, pull-based).
// A Fetch at offset N says the replica durably holds everything below N (once the leader has
// checked that its log matches up to N).

import { assert } from '../assert.js';
import type { ReplicaId } from './types.js';

export interface Progress {
  id: ReplicaId;
  matchedOffset: number; // largest verified durable end offset reported in this epoch
  lastFetchTick: number | null; // tick of the last Fetch received in this epoch (any outcome)
  beginEpochSentTick: number | null; // when BeginQuorumEpoch was last sent
  // Request id of the latest Fetch that said the replica is recovering; null when it is not.
  recoveringRequestId: number | null;
  // The leader's log end when it saw the first Fetch of this replica's current recovering run;
  // null when it is not recovering. The leader appends an entry there at once, so another voter
  // whose Fetch shows it holds that entry sent its Fetch after the run began: it is at this epoch
  // now (replication.ts, votersFetchedSince). Causal, unlike a time: a Fetch delayed in the
  // network cannot pass for a later one.
  recoveringSinceOffset: number | null;
}

// How far past the last recovering Fetch's request id a Fetch may be and still belong to the same
// incarnation of the replica (its ids count up by one per Fetch from a random start in [0, 2^30)).
export const recoveringRequestIdWindow = 100_000;

export function newProgress(id: ReplicaId): Progress {
  return { id, matchedOffset: 0, lastFetchTick: null, beginEpochSentTick: null, recoveringRequestId: null, recoveringSinceOffset: null };
}

// A Fetch whose position the leader verified. From a replica that is not recovering the matched
// offset only grows (stale, reordered Fetches may carry an older, lower offset; counting less is
// always safe). A recovering replica lost entries it had reported: it is counted at exactly the
// offset it fetches from, lower than before if so (as KRaft lets a replica's end go back), and a
// Fetch of its earlier incarnation (request id outside its current run) no longer counts.
// Returns true when the Fetch began a recovering run (the leader then marks its log: see Progress).
export function recordMatchedFetch(
  progress: Progress,
  fetchOffset: number,
  requestId: number,
  recovering: boolean,
  nowTick: number,
  endOffset: number,
): boolean {
  assert(Number.isInteger(fetchOffset) && fetchOffset >= 0, 'recordMatchedFetch: bad offset');
  recordContact(progress, nowTick);
  if (recovering) {
    progress.matchedOffset = fetchOffset;
    return recordRecovering(progress, requestId, endOffset);
  }
  if (progress.recoveringRequestId !== null) {
    const after = requestId - progress.recoveringRequestId;
    if (after <= 0 || after > recoveringRequestIdWindow) return false; // an earlier incarnation's Fetch
    progress.recoveringRequestId = null; // recovered: its Fetches now cover all it ever reported
    progress.recoveringSinceOffset = null;
  }
  progress.matchedOffset = Math.max(progress.matchedOffset, fetchOffset);
  return false;
}

// A Fetch that did not match our log. From a recovering replica it says nothing is verified: it
// is counted at 0 until a Fetch matches (counting less is always safe).
export function recordDivergingFetch(progress: Progress, requestId: number, recovering: boolean, nowTick: number, endOffset: number): boolean {
  recordContact(progress, nowTick);
  if (!recovering) return false;
  progress.matchedOffset = 0;
  return recordRecovering(progress, requestId, endOffset);
}

// A recovering Fetch. A run begins with the first one this leader sees, or with one whose request
// id lies outside the window of the previous (another incarnation): its start mark moves then, so
// what counted as later than it before no longer does (counting less is always safe).
function recordRecovering(progress: Progress, requestId: number, endOffset: number): boolean {
  const previous = progress.recoveringRequestId;
  progress.recoveringRequestId = requestId;
  if (previous !== null && Math.abs(requestId - previous) <= recoveringRequestIdWindow) return false;
  progress.recoveringSinceOffset = endOffset;
  return true;
}

// Any Fetch in this epoch shows the replica is alive and follows us (check-quorum counts it).
export function recordContact(progress: Progress, nowTick: number): void {
  assert(progress.lastFetchTick === null || progress.lastFetchTick <= nowTick, 'recordContact: time went back');
  progress.lastFetchTick = nowTick;
}

// A voter that is not recovering and holds the entry at `offset` (so its Fetch was sent after
// the leader appended it).
export function holdsEntryAt(progress: Progress, offset: number): boolean {
  return progress.recoveringRequestId === null && progress.matchedOffset > offset;
}

export function fetchedWithin(progress: Progress, nowTick: number, windowTicks: number): boolean {
  return progress.lastFetchTick !== null && nowTick - progress.lastFetchTick < windowTicks;
}

// What promoteLearner asks of a learner (etcd leaves it to the application; KIP-853 AddVoter
// waits for the replica to catch up): it fetched within the window, is not recovering, and holds
// at least `neededOffset` durably.
export function caughtUp(progress: Progress, nowTick: number, windowTicks: number, neededOffset: number): boolean {
  return fetchedWithin(progress, nowTick, windowTicks) && progress.recoveringRequestId === null && progress.matchedOffset >= neededOffset;
}

export function beginEpochDue(progress: Progress, nowTick: number, resendTicks: number): boolean {
  if (fetchedWithin(progress, nowTick, resendTicks)) return false;
  return progress.beginEpochSentTick === null || nowTick - progress.beginEpochSentTick >= resendTicks;
}

// The replicas a leader tracks follow the configuration (voters and learners): new members get
// fresh progress, removed ones are dropped, a promoted learner keeps its own. Returns a new map;
// kept entries are the same objects.
export function syncProgress(current: ReadonlyMap<ReplicaId, Progress>, members: readonly ReplicaId[], selfId: ReplicaId): Map<ReplicaId, Progress> {
  const next = new Map<ReplicaId, Progress>();
  for (const id of members) {
    if (id === selfId) continue;
    next.set(id, current.get(id) ?? newProgress(id));
  }
  return next;
}
