// Messages no correct peer could send. A member is trusted with the group's data, so Raft does
// not defend against a hostile one; but a faulty or hostile member (or a forged message with a
// member's certificate, as the fuzz test sends) must not stop the broker. Such a message is
// refused before anything changes, with the reason; the core's own asserts stay for its own
// state. The simulator counts every refusal as a violation, so its correct peers never send one.

import { decodeLeaderChange, decodeMembershipRecord } from './membership.js';
import type { RaftNode } from './node.js';
import { fetchVerdict } from './replication.js';
import { entryEnd } from './storage.js';
import { EntryType, type Entry, type Message, type ReplicaId } from './types.js';

// The leader a message of a higher epoch tells us about, when it does.
export function leaderNamedBy(message: Message): ReplicaId | null {
  if (message.type === 'BeginQuorumEpoch') return message.from;
  if (message.type === 'FetchResponse') {
    if (message.error === undefined) return message.from;
    return message.leaderId ?? null;
  }
  return null;
}

const isOffset = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0;

/** Why no correct peer could have sent `message` to `node` in its state; null when one could. */
export function messageFlaw(node: RaftNode, message: Message): string | null {
  if (message.to !== node.id) return `addressed to ${message.to}, not to this replica`;
  if (message.from === node.id) return 'claims to come from this replica';
  if (!isOffset(message.epoch)) return `bad epoch ${message.epoch}`;
  // Only the replica itself can make itself leader of an epoch, and it stores the epoch first.
  if (message.epoch > node.epoch && leaderNamedBy(message) === node.id) return `names this replica leader of epoch ${message.epoch}, which it never reached`;
  if (message.type === 'BeginQuorumEpoch' && message.epoch === node.epoch && node.role !== 'resigned') {
    if (node.role === 'leader') return `${message.from} claims epoch ${message.epoch}, which this replica leads`;
    if (node.leaderId !== null && node.leaderId !== message.from) return `${message.from} claims epoch ${message.epoch}, whose leader is ${node.leaderId}`;
  }
  if (message.type === 'VoteRequest' || message.type === 'PreVoteRequest') {
    if (!isOffset(message.lastEpoch) || !isOffset(message.lastOffset)) return 'a vote request with a bad last epoch or offset';
  }
  if (message.type === 'FetchRequest') {
    if (!Number.isFinite(message.bytesMax) || !Number.isInteger(message.requestId)) return 'a fetch with a bad size bound or request id';
    return fetchRequestFlaw(node, message.fetchOffset, message.lastFetchedEpoch, message.epoch);
  }
  if (message.type === 'FetchResponse') {
    if (!isOffset(message.fetchOffset) || !isOffset(message.lastFetchedEpoch) || !isOffset(message.highWatermark))
      return 'a fetch answer with a bad offset, epoch or high watermark';
    const diverging = message.divergingEpoch;
    if (diverging !== undefined && (!isOffset(diverging.epoch) || !isOffset(diverging.endOffset))) return 'a bad diverging epoch';
    if (diverging !== undefined && divergenceCutsAnEntry(node, diverging)) return `a diverging epoch ending inside one of this replica's entries`;
    return entriesFlaw(node, message.entries, message.epoch);
  }
  return null;
}

// A matching Fetch position lies on an entry boundary of ours: the fetcher's log holds the same
// epoch there, and the entries of one epoch are one leader's.
function fetchRequestFlaw(node: RaftNode, fetchOffset: number, lastFetchedEpoch: number, epoch: number): string | null {
  if (!isOffset(fetchOffset) || !isOffset(lastFetchedEpoch)) return 'a fetch with a bad offset or epoch';
  if (node.role !== 'leader' || epoch !== node.epoch) return null;
  const log = node.log;
  if (fetchOffset <= log.startOffset() || fetchOffset >= log.endOffset()) return null;
  if (fetchVerdict(node, fetchOffset, lastFetchedEpoch).kind !== 'valid') return null;
  if (log.entryAt(fetchOffset).offset !== fetchOffset) return `a matching fetch at offset ${fetchOffset}, inside an entry`;
  return null;
}

// Where the follower would cut (replication.ts, divergenceTruncation) when both logs hold the
// epoch: the leader's end of that epoch is one of our entry boundaries.
function divergenceCutsAnEntry(node: RaftNode, diverging: { epoch: number; endOffset: number }): boolean {
  const log = node.log;
  const own = log.endOffsetForEpoch(diverging.epoch);
  if (own === null || own.epoch !== diverging.epoch) return false;
  const cut = Math.min(own.endOffset, diverging.endOffset, log.endOffset());
  if (cut <= log.startOffset() || cut >= log.endOffset()) return false;
  return log.entryAt(cut).offset !== cut;
}

// The entries of an answer: well formed, contiguous, epochs not decreasing and none above the
// answer's; an entry at a position we hold with the same epoch is the same entry (Log Matching).
function entriesFlaw(node: RaftNode, entries: readonly Entry[], epoch: number): string | null {
  const log = node.log;
  let previous: Entry | null = null;
  for (const entry of entries) {
    if (!isOffset(entry.offset) || !Number.isInteger(entry.count) || entry.count < 1 || !Number.isInteger(entry.epoch) || entry.epoch < 1)
      return `a malformed entry at offset ${entry.offset}`;
    if (!(entry.payload instanceof Uint8Array)) return `an entry without payload bytes at offset ${entry.offset}`;
    if (entry.epoch > epoch) return `an entry of epoch ${entry.epoch} in an answer of epoch ${epoch}`;
    if (previous !== null && entry.offset !== entryEnd(previous)) return `entries not contiguous at offset ${entry.offset}`;
    if (previous !== null && entry.epoch < previous.epoch) return `entry epochs going back at offset ${entry.offset}`;
    const payloadFlaw = controlPayloadFlaw(entry);
    if (payloadFlaw !== null) return payloadFlaw;
    if (entry.offset >= log.startOffset() && entry.offset < log.endOffset()) {
      const held = log.entryAt(entry.offset);
      if (held.epoch === entry.epoch && (held.offset !== entry.offset || held.count !== entry.count))
        return `entry at offset ${entry.offset} of epoch ${entry.epoch} differs from the one this replica holds`;
    }
    previous = entry;
  }
  return null;
}

// Control entries are decoded by the core as they are appended: an undecodable one is refused here.
function controlPayloadFlaw(entry: Entry): string | null {
  try {
    if (entry.type === EntryType.Membership) decodeMembershipRecord(entry.offset, entry.payload);
    else if (entry.type === EntryType.LeaderChange) decodeLeaderChange(entry.payload);
    else if (entry.type !== EntryType.Data) return `an entry of unknown type ${entry.type} at offset ${entry.offset}`;
  } catch (error) {
    return `an undecodable control entry at offset ${entry.offset}: ${(error as Error).message}`;
  }
  return null;
}
