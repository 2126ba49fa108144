// Message handling: common epoch rules first, then one plain step function per role (as etcd's
// stepLeader / stepCandidate / stepFollower), and one tick function per role.

import { assert } from '../assert.js';
import { handlePreVoteRequest, handlePreVoteResponse, handleVoteRequest, handleVoteResponse } from './election.js';
import { leaderNamedBy } from './message-check.js';
import { sendFetch, type RaftNode } from './node.js';
import { checkQuorum, followerHandleFetchResponse, leaderHandleFetch, maybeSendTimeoutNow, refuseFetch, resendBeginQuorumEpoch } from './replication.js';
import type { BeginQuorumEpoch, Message } from './types.js';

export function step(node: RaftNode, message: Message): void {
  assert(message.to === node.id, 'step: message for another replica');
  assert(message.from !== node.id, 'step: message from self');
  assert(Number.isInteger(message.epoch) && message.epoch >= 0, 'step: bad epoch');
  if (node.role === 'resigned') return stepResigned(node, message);
  if (message.type === 'PreVoteRequest') return handlePreVoteRequest(node, message);
  if (message.type === 'FetchRequest') {
    if (node.role === 'leader' && message.epoch === node.epoch) return leaderHandleFetch(node, message);
    return refuseFetch(node, message);
  }
  if (message.epoch > node.epoch) {
    if (message.type === 'TimeoutNow') return;
    node.becomeFollower(message.epoch, leaderNamedBy(message));
  } else if (message.epoch < node.epoch) {
    // Stale: tell a stale candidate, and a stale leader announcing itself (KRaft answers
    // FENCED_LEADER_EPOCH), our epoch; drop everything else. Without the answer a replica that
    // moved to a new epoch whose election failed (its vote requests lost) would never hear from
    // that leader again, nor the leader from it.
    if (message.type === 'VoteRequest') node.send({ type: 'VoteResponse', to: message.from, granted: false });
    if (message.type === 'BeginQuorumEpoch') node.send({ type: 'BeginQuorumEpochResponse', to: message.from });
    return;
  }
  switch (node.role) {
    case 'follower':
      return stepFollower(node, message);
    case 'prospective':
      return stepProspective(node, message);
    case 'candidate':
      return stepCandidate(node, message);
    case 'leader':
      return stepLeader(node, message);
  }
}

function stepFollower(node: RaftNode, message: Message): void {
  switch (message.type) {
    case 'VoteRequest':
      return handleVoteRequest(node, message);
    case 'BeginQuorumEpoch':
      return acceptLeader(node, message);
    case 'FetchResponse':
      if (node.leaderId === null) {
        const named = leaderNamedBy(message);
        if (named === null || named === node.id || node.refuses(named)) return;
        node.becomeFollower(node.epoch, named);
      }
      if (message.from === node.leaderId) followerHandleFetchResponse(node, message);
      return;
    case 'TimeoutNow':
      if (message.from === node.leaderId && node.canCampaign()) node.becomeCandidate();
      return;
    default:
      return;
  }
}

// BeginQuorumEpoch: the sender won this epoch; follow it and fetch.
function acceptLeader(node: RaftNode, message: BeginQuorumEpoch): void {
  if (node.refuses(message.from)) return; // it lacks committed entries (CommittedDataDivergence)
  assert(node.leaderId === null || node.leaderId === message.from, 'two leaders in one epoch');
  if (node.role !== 'follower' || node.leaderId !== message.from) {
    node.becomeFollower(node.epoch, message.from);
  } else {
    node.lastLeaderContactTick = node.tick;
    node.electionElapsedTicks = 0;
  }
  node.send({ type: 'BeginQuorumEpochResponse', to: message.from });
}

function stepProspective(node: RaftNode, message: Message): void {
  switch (message.type) {
    case 'PreVoteResponse':
      return handlePreVoteResponse(node, message);
    case 'VoteRequest':
      return handleVoteRequest(node, message);
    case 'BeginQuorumEpoch':
      return acceptLeader(node, message);
    case 'FetchResponse':
      if (message.error !== undefined || node.refuses(message.from)) return;
      node.becomeFollower(node.epoch, message.from);
      return followerHandleFetchResponse(node, message);
    default:
      return;
  }
}

function stepCandidate(node: RaftNode, message: Message): void {
  switch (message.type) {
    case 'VoteResponse':
      return handleVoteResponse(node, message);
    case 'VoteRequest':
      return handleVoteRequest(node, message);
    case 'BeginQuorumEpoch':
      return acceptLeader(node, message);
    default:
      return;
  }
}

function stepLeader(node: RaftNode, message: Message): void {
  switch (message.type) {
    case 'VoteRequest':
      return handleVoteRequest(node, message);
    case 'BeginQuorumEpoch':
      assert(false, 'two leaders in one epoch');
      return;
    case 'BeginQuorumEpochResponse':
      return maybeSendTimeoutNow(node);
    default:
      return;
  }
}

// A resigned replica (shutting down) still answers votes so the others can elect a successor,
// and refuses Fetches; it never campaigns or leads again.
function stepResigned(node: RaftNode, message: Message): void {
  if (message.type === 'FetchRequest') return refuseFetch(node, message);
  if (message.type !== 'VoteRequest') return;
  if (message.epoch < node.epoch) {
    node.send({ type: 'VoteResponse', to: message.from, granted: false });
    return;
  }
  node.setEpoch(message.epoch);
  handleVoteRequest(node, message);
}

export function tick(node: RaftNode): void {
  node.tick += 1;
  switch (node.role) {
    case 'follower':
      return tickFollower(node);
    case 'prospective':
    case 'candidate':
      return tickElection(node);
    case 'leader':
      return tickLeader(node);
    case 'resigned':
      return;
  }
}

function tickFollower(node: RaftNode): void {
  node.electionElapsedTicks += 1;
  if (node.leaderId !== null) {
    // Fetch when idle and caught up durably; re-send after fetchRetryTicks without an answer
    // (lost message) or while durability lags (the answer is then re-sent, which is harmless).
    // While a snapshot is fetched (KIP-630) only the retries go out: they keep the leader's
    // check-quorum and our election timer fed, and bring a newer snapshot id if there is one.
    const retryDue = node.tick - node.fetchSentTick >= node.config.fetchRetryTicks;
    const idle = !node.fetchInFlight && node.snapshotRequest === null && node.durableEndOffset >= node.log.endOffset();
    if (idle || retryDue) sendFetch(node);
  }
  if (node.electionElapsedTicks < node.electionTimeoutTicks) return;
  if (node.canCampaign()) node.becomeProspective();
  else node.resetElectionTimer();
}

// Prospective and candidate: on timeout start a new pre-vote round (a failed candidate does not
// bump the epoch again without a pre-vote majority, KIP-996).
function tickElection(node: RaftNode): void {
  node.electionElapsedTicks += 1;
  if (node.electionElapsedTicks < node.electionTimeoutTicks) return;
  if (node.canCampaign()) node.becomeProspective();
  else node.becomeFollower(node.epoch, null);
}

function tickLeader(node: RaftNode): void {
  checkQuorum(node);
  if (node.role !== 'leader') return;
  resendBeginQuorumEpoch(node);
  if (node.transferTarget !== null && node.tick >= node.transferDeadlineTick) node.endTransfer(node.transferTimedOut());
}
