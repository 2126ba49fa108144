// Encoding of the control entries the core writes itself (pure code, no I/O).
// Membership payload: UTF-8 JSON {"voters":[...]}; LeaderChange payload: UTF-8 JSON {"leader":id}.

import { assert } from '../assert.js';
import type { MembershipRecord, ReplicaId } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export const votersMax = 64;

export function validVoters(voters: readonly ReplicaId[]): boolean {
  if (voters.length < 1 || voters.length > votersMax) return false;
  if (new Set(voters).size !== voters.length) return false;
  return voters.every((id) => typeof id === 'string' && id.length > 0);
}

export function encodeMembership(voters: readonly ReplicaId[]): Uint8Array {
  assert(validVoters(voters), 'encodeMembership: invalid voter set');
  return encoder.encode(JSON.stringify({ voters: [...voters].sort() }));
}

export function decodeMembership(payload: Uint8Array): ReplicaId[] {
  const value: unknown = JSON.parse(decoder.decode(payload));
  assert(typeof value === 'object' && value !== null, 'decodeMembership: not an object');
  const voters = (value as { voters?: unknown }).voters;
  assert(Array.isArray(voters) && voters.every((id) => typeof id === 'string'), 'decodeMembership: bad voters');
  assert(validVoters(voters as string[]), 'decodeMembership: invalid voter set');
  return voters as ReplicaId[];
}

export function encodeLeaderChange(leaderId: ReplicaId): Uint8Array {
  return encoder.encode(JSON.stringify({ leader: leaderId }));
}

export function decodeLeaderChange(payload: Uint8Array): ReplicaId {
  const value: unknown = JSON.parse(decoder.decode(payload));
  const leader = (value as { leader?: unknown } | null)?.leader;
  assert(typeof leader === 'string' && leader.length > 0, 'decodeLeaderChange: bad leader');
  return leader;
}

// The voter set in force given the membership records of a log (offset order) and the initial
// voters: the latest record wins (a configuration takes effect when appended, not when committed).
export function currentVoters(records: readonly MembershipRecord[], initialVoters: readonly ReplicaId[]): ReplicaId[] {
  const latest = records[records.length - 1];
  return latest === undefined ? [...initialVoters] : [...latest.voters];
}
