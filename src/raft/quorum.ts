// Quorum arithmetic: pure functions over voter sets (Raft §5.2, §5.3; single-server changes §6 of
// the dissertation use the same majority rule with the latest configuration).

import { assert } from '../assert.js';
import type { ReplicaId } from './types.js';

export function majoritySize(voterCount: number): number {
  assert(voterCount >= 1, 'a quorum needs at least one voter');
  return Math.floor(voterCount / 2) + 1;
}

// The largest offset that at least a majority of voters hold: sort descending and take the value
// at position majority - 1. `offsetOf` gives each voter's durable end offset (0 when unknown).
export function majorityOffset(voters: readonly ReplicaId[], offsetOf: (id: ReplicaId) => number): number {
  assert(voters.length >= 1, 'majorityOffset: no voters');
  const offsets = voters.map(offsetOf);
  for (const offset of offsets) assert(Number.isInteger(offset) && offset >= 0, 'majorityOffset: bad offset');
  offsets.sort((a, b) => b - a);
  const result = offsets[majoritySize(voters.length) - 1];
  assert(result !== undefined, 'majorityOffset: index out of range');
  return result;
}

export type VoteOutcome = 'won' | 'lost' | 'pending';

// Counts only answers from voters; an answer from a non-voter is ignored.
export function voteOutcome(voters: readonly ReplicaId[], answers: ReadonlyMap<ReplicaId, boolean>): VoteOutcome {
  const needed = majoritySize(voters.length);
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const answer = answers.get(id);
    if (answer === true) granted += 1;
    if (answer === false) rejected += 1;
  }
  if (granted >= needed) return 'won';
  if (rejected > voters.length - needed) return 'lost';
  return 'pending';
}

// True when a majority of voters satisfy `isActive`.
export function quorumActive(voters: readonly ReplicaId[], isActive: (id: ReplicaId) => boolean): boolean {
  let active = 0;
  for (const id of voters) if (isActive(id)) active += 1;
  return active >= majoritySize(voters.length);
}
