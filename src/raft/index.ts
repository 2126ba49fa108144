// Public surface of the Raft core.
export { RaftCore } from './core.js';
export { MemoryStorage, entryBytes, entryEnd, entryOverheadBytes, type RaftStorage } from './storage.js';
export {
  encodeMembership,
  encodeMembershipConfig,
  decodeMembership,
  decodeMembershipConfig,
  decodeMembershipRecord,
  encodeLeaderChange,
  decodeLeaderChange,
  currentConfig,
  currentVoters,
  membersMax,
  votersMin,
} from './membership.js';
export { majorityOffset, majoritySize, quorumActive, voteOutcome } from './quorum.js';
export * from './types.js';
