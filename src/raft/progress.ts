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
}

export function newProgress(id: ReplicaId): Progress {
  return { id, matchedOffset: 0, lastFetchTick: null, beginEpochSentTick: null };
}

// A Fetch whose position the leader verified: the matched offset only grows (stale, reordered
// Fetches may carry an older, lower offset).
export function recordMatchedFetch(progress: Progress, fetchOffset: number, nowTick: number): void {
  assert(Number.isInteger(fetchOffset) && fetchOffset >= 0, 'recordMatchedFetch: bad offset');
  progress.matchedOffset = Math.max(progress.matchedOffset, fetchOffset);
  recordContact(progress, nowTick);
}

// Any Fetch in this epoch shows the replica is alive and follows us (check-quorum counts it).
export function recordContact(progress: Progress, nowTick: number): void {
  assert(progress.lastFetchTick === null || progress.lastFetchTick <= nowTick, 'recordContact: time went back');
  progress.lastFetchTick = nowTick;
}

export function fetchedWithin(progress: Progress, nowTick: number, windowTicks: number): boolean {
  return progress.lastFetchTick !== null && nowTick - progress.lastFetchTick < windowTicks;
}

export function beginEpochDue(progress: Progress, nowTick: number, resendTicks: number): boolean {
  if (fetchedWithin(progress, nowTick, resendTicks)) return false;
  return progress.beginEpochSentTick === null || nowTick - progress.beginEpochSentTick >= resendTicks;
}

// The replicas a leader tracks follow the voter set: new voters get fresh progress, removed
// voters are dropped. Returns a new map; kept entries are the same objects.
export function syncProgress(
  current: ReadonlyMap<ReplicaId, Progress>,
  voters: readonly ReplicaId[],
  selfId: ReplicaId,
): Map<ReplicaId, Progress> {
  const next = new Map<ReplicaId, Progress>();
  for (const id of voters) {
    if (id === selfId) continue;
    next.set(id, current.get(id) ?? newProgress(id));
  }
  return next;
}
