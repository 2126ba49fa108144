// Votes and pre-votes (Raft §5.2, §5.4.1; KIP-996 pre-vote; etcd's check-quorum lease).

import { voteOutcome } from './quorum.js';
import type { RaftNode } from './node.js';
import type { PreVoteRequest, PreVoteResponse, VoteRequest, VoteResponse } from './types.js';

// §5.4.1: a candidate's log is at least as up to date as ours when its last epoch is higher, or
// equal with an end offset at least ours.
export function logUpToDate(node: RaftNode, lastEpoch: number, lastOffset: number): boolean {
  const ownEpoch = node.log.lastEpoch();
  if (lastEpoch !== ownEpoch) return lastEpoch > ownEpoch;
  return lastOffset >= node.log.endOffset();
}

// True while a follower hears from a live leader: it then refuses pre-votes, so a replica that
// rejoins after a partition cannot disrupt a healthy group.
export function leaderRecentlyHeard(node: RaftNode): boolean {
  if (node.role === 'leader') return true;
  if (node.role !== 'follower' || node.leaderId === null || node.lastLeaderContactTick === null) return false;
  return node.tick - node.lastLeaderContactTick < node.config.electionTicks;
}

// Votes do not depend on our view of the membership (dissertation §4.2.2-4.2.3): a replica being
// removed may still be needed to elect a leader, and configurations differ between logs while a
// change is uncommitted. Disruption by removed replicas is prevented by pre-vote and by refusing
// pre-votes while a leader is heard; a replica outside its own configuration never campaigns
// unless the change removing it is uncommitted (RaftNode.canCampaign).

// A recovering replica (DESIGN §12) grants neither: it lost entries it had promised, and its vote
// would let a candidate lacking them win (its log looks older than it was when it promised).
// A learner does grant, when asked (RaftNode.mayVote, etcd #10998): a candidate asks only the
// voters of its configuration, which may already name the learner a voter; the vote counts only
// there, since votes are counted over the candidate's voters.

// Called with message.epoch === node.epoch (the caller adopts a higher epoch first).
export function handleVoteRequest(node: RaftNode, message: VoteRequest): void {
  const canVote = node.votedFor === null || node.votedFor === message.from;
  const grant = canVote && node.mayVote() && node.leaderId === null && node.role !== 'leader' && logUpToDate(node, message.lastEpoch, message.lastOffset);
  if (grant) {
    node.votedFor = message.from;
    node.hardStateDirty = true;
    node.resetElectionTimer();
  }
  node.send({ type: 'VoteResponse', to: message.from, granted: grant });
}

// A pre-vote never changes our epoch or vote. The request's epoch is the one the sender proposes.
export function handlePreVoteRequest(node: RaftNode, message: PreVoteRequest): void {
  const proposedEpoch = message.epoch;
  const grant =
    proposedEpoch > node.epoch &&
    node.role !== 'resigned' &&
    node.mayVote() &&
    !leaderRecentlyHeard(node) &&
    logUpToDate(node, message.lastEpoch, message.lastOffset);
  // Answer in the sender's epoch unless ours is higher, so that the answer is not discarded as
  // stale and a higher epoch is learnt.
  const answerEpoch = Math.max(node.epoch, proposedEpoch - 1);
  node.sendWithEpoch({ type: 'PreVoteResponse', to: message.from, granted: grant }, answerEpoch);
}

export function handlePreVoteResponse(node: RaftNode, message: PreVoteResponse): void {
  if (node.role !== 'prospective') return;
  node.votes.set(message.from, message.granted);
  if (voteOutcome(node.voters, node.votes) === 'won') node.becomeCandidate();
}

export function handleVoteResponse(node: RaftNode, message: VoteResponse): void {
  if (node.role !== 'candidate') return;
  node.votes.set(message.from, message.granted);
  if (voteOutcome(node.voters, node.votes) === 'won') node.becomeLeader();
}
