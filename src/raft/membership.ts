// Encoding of the control entries the core writes itself (pure code, no I/O), and the
// configuration arithmetic over them.
//
// Membership payload: UTF-8 JSON
//   {"voters":[...],"learners":[...],"endpoints":[{"id":..,"clientAddress":..,"peerAddress":..}]}
// with every list sorted by id; learners and endpoints are left out when empty, so a voters-only
// configuration encodes as before learners existed ({"voters":[...]}), and code that reads only
// "voters" still reads the voters right. Unknown keys are ignored.
// LeaderChange payload: UTF-8 JSON {"leader":id}.

import { assert } from '../assert.js';
import type { Member, MemberEndpoints, MembershipConfig, MembershipRecord, ReplicaId } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// Upper bound on voters + learners of one configuration.
export const membersMax = 64;
export const votersMax = membersMax;
// Without force, a removal may not leave fewer voters than this (one failure tolerated).
export const votersMin = 3;
// Upper bound on the characters of an id or an endpoint string.
export const idCharactersMax = 255;
export const endpointCharactersMax = 255;

function validId(id: unknown): id is ReplicaId {
  return typeof id === 'string' && id.length > 0 && id.length <= idCharactersMax;
}

function validEndpoint(value: unknown): boolean {
  return value === undefined || (typeof value === 'string' && value.length > 0 && value.length <= endpointCharactersMax);
}

export function validEndpoints(member: Member): boolean {
  return validId(member.id) && validEndpoint(member.clientAddress) && validEndpoint(member.peerAddress);
}

export function validVoters(voters: readonly ReplicaId[]): boolean {
  if (voters.length < 1 || voters.length > votersMax) return false;
  if (new Set(voters).size !== voters.length) return false;
  return voters.every(validId);
}

// A configuration an entry may hold: at least one voter, voters and learners disjoint, each id
// once, at most membersMax members, endpoints only for members, once each, valid.
export function validConfig(config: MembershipConfig): boolean {
  const members = [...config.voters, ...config.learners];
  if (config.voters.length < 1 || members.length > membersMax) return false;
  if (new Set(members).size !== members.length || !members.every(validId)) return false;
  const ids = config.endpoints.map((member) => member.id);
  if (new Set(ids).size !== ids.length) return false;
  return config.endpoints.every((member) => members.includes(member.id) && validEndpoints(member));
}

function endpointsOf(member: Member): Member {
  const copy: Member = { id: member.id };
  if (member.clientAddress !== undefined) copy.clientAddress = member.clientAddress;
  if (member.peerAddress !== undefined) copy.peerAddress = member.peerAddress;
  return copy;
}

function hasEndpoints(member: MemberEndpoints): boolean {
  return member.clientAddress !== undefined || member.peerAddress !== undefined;
}

// A normalised copy: lists sorted, endpoints only for members that have some.
export function normalizeConfig(config: MembershipConfig): MembershipConfig {
  const endpoints = config.endpoints.filter(hasEndpoints).map(endpointsOf);
  endpoints.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { voters: [...config.voters].sort(), learners: [...config.learners].sort(), endpoints };
}

export function encodeMembershipConfig(config: MembershipConfig): Uint8Array {
  assert(validConfig(config), 'encodeMembershipConfig: invalid configuration');
  const normal = normalizeConfig(config);
  const value: { voters: ReplicaId[]; learners?: ReplicaId[]; endpoints?: Member[] } = { voters: normal.voters };
  if (normal.learners.length > 0) value.learners = normal.learners;
  if (normal.endpoints.length > 0) value.endpoints = normal.endpoints;
  return encoder.encode(JSON.stringify(value));
}

// Voters only (kept for callers from before learners).
export function encodeMembership(voters: readonly ReplicaId[]): Uint8Array {
  assert(validVoters(voters), 'encodeMembership: invalid voter set');
  return encodeMembershipConfig({ voters: [...voters], learners: [], endpoints: [] });
}

function decodeStrings(value: unknown, what: string): ReplicaId[] {
  if (value === undefined) return [];
  assert(Array.isArray(value) && value.every((id) => typeof id === 'string'), `decodeMembership: bad ${what}`);
  return value as ReplicaId[];
}

function decodeEndpoints(value: unknown): Member[] {
  if (value === undefined) return [];
  assert(Array.isArray(value), 'decodeMembership: bad endpoints');
  return value.map((item: unknown) => {
    assert(typeof item === 'object' && item !== null, 'decodeMembership: bad endpoint');
    const member = endpointsOf(item as Member);
    assert(validEndpoints(member), 'decodeMembership: bad endpoint');
    return member;
  });
}

// The whole configuration of a membership payload; an old {"voters":[...]} has no learners.
export function decodeMembershipConfig(payload: Uint8Array): MembershipConfig {
  const value: unknown = JSON.parse(decoder.decode(payload));
  assert(typeof value === 'object' && value !== null, 'decodeMembership: not an object');
  const fields = value as { voters?: unknown; learners?: unknown; endpoints?: unknown };
  const config = {
    voters: decodeStrings(fields.voters, 'voters'),
    learners: decodeStrings(fields.learners, 'learners'),
    endpoints: decodeEndpoints(fields.endpoints),
  };
  assert(validConfig(config), 'decodeMembership: invalid configuration');
  return config;
}

// The voters of a membership payload (kept for callers from before learners; storage should use
// decodeMembershipRecord so learners and endpoints survive a restart).
export function decodeMembership(payload: Uint8Array): ReplicaId[] {
  return decodeMembershipConfig(payload).voters;
}

// The record a storage keeps for the membership entry at `offset` (learners and endpoints only
// when there are some, so a voters-only record reads as before learners).
export function decodeMembershipRecord(offset: number, payload: Uint8Array): MembershipRecord {
  const config = decodeMembershipConfig(payload);
  const record: MembershipRecord = { offset, voters: config.voters };
  if (config.learners.length > 0) record.learners = config.learners;
  if (config.endpoints.length > 0) record.endpoints = config.endpoints;
  return record;
}

export function copyMembershipRecord(record: MembershipRecord): MembershipRecord {
  const copy: MembershipRecord = { offset: record.offset, voters: [...record.voters] };
  if (record.learners !== undefined) copy.learners = [...record.learners];
  if (record.endpoints !== undefined) copy.endpoints = record.endpoints.map(endpointsOf);
  return copy;
}

export function configOfRecord(record: MembershipRecord): MembershipConfig {
  return { voters: [...record.voters], learners: [...(record.learners ?? [])], endpoints: (record.endpoints ?? []).map(endpointsOf) };
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

// The configuration in force given the membership records of a log (offset order) and the seed
// voters: the latest record wins (a configuration takes effect when appended, not when committed).
export function currentConfig(records: readonly MembershipRecord[], seedVoters: readonly ReplicaId[]): MembershipConfig {
  const latest = records[records.length - 1];
  return latest === undefined ? { voters: [...seedVoters], learners: [], endpoints: [] } : configOfRecord(latest);
}

export function currentVoters(records: readonly MembershipRecord[], initialVoters: readonly ReplicaId[]): ReplicaId[] {
  return currentConfig(records, initialVoters).voters;
}

// ---- The single-server changes (dissertation §4.1): each returns the next configuration.

export function withLearner(config: MembershipConfig, member: Member): MembershipConfig {
  const endpoints = config.endpoints.filter((item) => item.id !== member.id);
  if (hasEndpoints(member)) endpoints.push(endpointsOf(member));
  return normalizeConfig({ voters: config.voters, learners: [...config.learners, member.id], endpoints });
}

export function withPromoted(config: MembershipConfig, id: ReplicaId): MembershipConfig {
  assert(config.learners.includes(id), 'withPromoted: not a learner');
  return normalizeConfig({ voters: [...config.voters, id], learners: config.learners.filter((item) => item !== id), endpoints: config.endpoints });
}

// Legacy addVoter: a voter straight away, without a learner phase.
export function withVoter(config: MembershipConfig, id: ReplicaId): MembershipConfig {
  return normalizeConfig({ voters: [...config.voters, id], learners: config.learners.filter((item) => item !== id), endpoints: config.endpoints });
}

export function withoutMember(config: MembershipConfig, id: ReplicaId): MembershipConfig {
  const keep = (item: ReplicaId): boolean => item !== id;
  return normalizeConfig({
    voters: config.voters.filter(keep),
    learners: config.learners.filter(keep),
    endpoints: config.endpoints.filter((member) => member.id !== id),
  });
}
