// Safety checks of the simulator, applied after every step of the driver:
//  - at most one leader per epoch (Raft §5.2 Election Safety);
//  - a committed entry is never changed, and never truncated from any replica (§5.4);
//  - Log Matching: two logs with an entry of the same (epoch, offset) are identical up to it
//    (§5.3), checked through a hash chain over each log;
//  - every leader holds every entry committed in its epoch or before (§5.4 Leader Completeness;
//    a stale leader of an older epoch may lack what a newer one committed);
//  - an acknowledged proposal is committed at its offset and stays so: no acknowledged proposal is
//    ever lost, disk faults included (checked again on the leader at the end of a run);
//  - snapshots (KIP-630, Raft §7): the committed entries, in offset order, form one sequence (the
//    canonical log, gapless); a snapshot, when taken and when installed, holds exactly the state
//    of that sequence below its end, with the epoch of its last entry; every state machine, after
//    every apply, equals the canonical state at its applied offset (so state machines converge);
//    entries a leader or a log no longer holds below its start are covered by its snapshot; an
//    install never discards a committed entry above the snapshot that the replica promised.
//  - membership (dissertation §4.1-4.2, etcd learners, KIP-853): a leader is a voter of its own
//    configuration (or one an uncommitted entry of it removes) and was granted votes in its epoch by a majority of that configuration's
//    voters (a learner's vote is never what elects it); no replica grants two candidates a vote in
//    one epoch; vote and pre-vote requests go only to voters of the sender's configuration, and
//    never come from a replica that is a learner in its own; a high watermark a leader raises is
//    promised (synced in the hard state) by a majority of its voters (learners never count).
//
// The state of a state machine is a hash chain over the entries it applied (entryKey, chainHash),
// the same chain as the logs' prefix hashes: the canonical state at an offset is the chain of the
// committed prefix ending there.

import type { RaftCore } from '../../src/raft/core.js';
import { entryEnd, indexOfOffset, type MemoryStorage } from '../../src/raft/storage.js';
import { majoritySize } from '../../src/raft/quorum.js';
import type { Entry, Message, ReplicaId, SnapshotMeta } from '../../src/raft/types.js';

const decoder = new TextDecoder();

interface NodeShadow {
  keys: string[]; // parallel to the stored entries
  chains: string[]; // hash of the log prefix ending with each entry
  baseChain: string; // hash of the prefix below the first stored entry (a snapshot's state)
  checkedHighWatermark: number;
  leaderCheckedCount: number; // committed entries already checked against this leader
}

interface PendingProposal {
  leaderId: ReplicaId;
  epoch: number;
  offset: number;
  value: string;
}

export function entryKey(entry: Entry): string {
  return `${entry.epoch}:${entry.offset}:${entry.count}:${entry.type}:${decoder.decode(entry.payload)}`;
}

function fnv(text: string, basis: number): number {
  let hash = basis >>> 0;
  for (let index = 0; index < text.length; index += 1) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export function chainHash(previous: string, key: string): string {
  const text = `${previous}|${key}`;
  return `${fnv(text, 0x811c9dc5).toString(36)}.${fnv(text, 0x1b873593).toString(36)}`;
}

export class Checker {
  readonly violations: string[] = [];
  private readonly shadows = new Map<ReplicaId, NodeShadow>();
  private readonly committed = new Map<number, string>();
  private readonly committedOrder: Array<{ offset: number; epoch: number }> = [];
  private readonly leaders = new Map<number, ReplicaId>();
  private readonly chainAt = new Map<string, string>();
  private pending: PendingProposal[] = [];
  private readonly acknowledged = new Map<string, number>();
  // The canonical log: for each end offset of a committed entry (and 0), the state there.
  private readonly canonical = new Map<number, { chain: string; epoch: number }>([[0, { chain: '', epoch: 0 }]]);
  private canonicalEndOffset = 0;
  // Vote grants: `${epoch}:${voter}` -> the candidate it voted for.
  private readonly grants = new Map<string, ReplicaId>();
  // The high watermark each leader was last seen with, in its epoch.
  private readonly leaderWatermarks = new Map<ReplicaId, { epoch: number; offset: number }>();

  constructor(ids: readonly ReplicaId[]) {
    for (const id of ids) this.shadows.set(id, { keys: [], chains: [], baseChain: '', checkedHighWatermark: 0, leaderCheckedCount: 0 });
  }

  ok(): boolean {
    return this.violations.length === 0;
  }

  violation(tick: number, text: string): void {
    this.violations.push(`tick ${tick}: ${text}`);
  }

  committedCount(): number {
    return this.committed.size;
  }
  acknowledgedCount(): number {
    return this.acknowledged.size;
  }
  leaderEpochCount(): number {
    return this.leaders.size;
  }
  isAcknowledged(value: string): boolean {
    return this.acknowledged.has(value);
  }
  // The committed entry at `offset` (entryKey: epoch:offset:...), if any.
  committedKeyAt(offset: number): string | undefined {
    return this.committed.get(offset);
  }

  private shadow(id: ReplicaId): NodeShadow {
    return this.shadows.get(id)!;
  }

  restarted(id: ReplicaId): void {
    const shadow = this.shadow(id);
    shadow.checkedHighWatermark = 0;
    shadow.leaderCheckedCount = 0;
  }

  // The log lost its end (crash, disk fault); when it lost every entry it starts at its snapshot.
  crashed(id: ReplicaId, storage: MemoryStorage): void {
    const shadow = this.shadow(id);
    const length = storage.allEntries().length;
    shadow.keys.length = length;
    shadow.chains.length = length;
    if (length === 0) shadow.baseChain = this.canonical.get(storage.startOffset())?.chain ?? `unknown@${storage.startOffset()}`;
    this.pending = this.pending.filter((proposal) => proposal.leaderId !== id);
  }

  // A wiped disk: nothing of the log or snapshot is left.
  wiped(id: ReplicaId): void {
    const shadow = this.shadow(id);
    shadow.keys = [];
    shadow.chains = [];
    shadow.baseChain = '';
    this.pending = this.pending.filter((proposal) => proposal.leaderId !== id);
  }

  // The canonical state at `offset`, or a violation when no committed prefix ends there.
  private canonicalAt(tick: number, offset: number, what: string): { chain: string; epoch: number } | null {
    const state = this.canonical.get(offset);
    if (state === undefined) this.violation(tick, `${what}: no committed prefix ends at ${offset} (committed end ${this.canonicalEndOffset})`);
    return state ?? null;
  }

  // Raft §7: a snapshot taken by `id` holds the committed state below its end.
  snapshotTaken(tick: number, id: ReplicaId, meta: SnapshotMeta, state: string): void {
    const canonical = this.canonicalAt(tick, meta.endOffset, `${id} snapshot`);
    if (canonical === null) return;
    if (canonical.chain !== state) this.violation(tick, `${id} snapshot at ${meta.endOffset} differs from the committed state there`);
    else if (canonical.epoch !== meta.epoch)
      this.violation(tick, `${id} snapshot at ${meta.endOffset} says epoch ${meta.epoch}, the committed entry below is of epoch ${canonical.epoch}`);
  }

  // Entries below `upTo` removed (retention below the snapshot).
  removedBefore(id: ReplicaId, removedCount: number): void {
    const shadow = this.shadow(id);
    if (removedCount === 0) return;
    shadow.baseChain = shadow.chains[removedCount - 1]!;
    shadow.keys.splice(0, removedCount);
    shadow.chains.splice(0, removedCount);
  }

  // KIP-630 install (Ready step 2): the fetched snapshot holds the committed state below its end,
  // and no committed entry above its end that this replica promised is discarded.
  installing(tick: number, id: ReplicaId, storage: MemoryStorage, meta: SnapshotMeta, state: string, promisedOffset: number): void {
    const canonical = this.canonicalAt(tick, meta.endOffset, `${id} installs a snapshot`);
    if (canonical !== null && (canonical.chain !== state || canonical.epoch !== meta.epoch)) {
      this.violation(tick, `${id} installs a snapshot at ${meta.endOffset} that differs from the committed state there`);
    }
    const shadow = this.shadow(id);
    const entries = storage.allEntries();
    for (let index = 0; index < entries.length; index += 1) {
      const entry = entries[index]!;
      if (entry.offset < meta.endOffset || entryEnd(entry) > promisedOffset) continue;
      if (this.committed.get(entry.offset) === shadow.keys[index]) {
        this.violation(tick, `${id} install at ${meta.endOffset} discards committed entry ${shadow.keys[index]} it promised (promise ${promisedOffset})`);
        break;
      }
    }
    shadow.keys = [];
    shadow.chains = [];
    shadow.baseChain = canonical?.chain ?? `unknown@${meta.endOffset}`;
  }

  // A state machine applied every entry below appliedOffset: its state is the committed one there.
  applied(tick: number, id: ReplicaId, appliedOffset: number, state: string): void {
    const canonical = this.canonicalAt(tick, appliedOffset, `${id} applied`);
    if (canonical !== null && canonical.chain !== state) this.violation(tick, `${id} state machine at ${appliedOffset} differs from the committed state there`);
  }

  // A truncation by the core must never remove a committed entry.
  truncating(tick: number, id: ReplicaId, storage: MemoryStorage, endOffset: number): void {
    const entries = storage.allEntries();
    const shadow = this.shadow(id);
    const first = endOffset >= storage.endOffset() ? entries.length : indexOfOffset(entries, endOffset);
    for (let index = first; index < entries.length; index += 1) {
      const entry = entries[index]!;
      if (this.committed.get(entry.offset) === shadow.keys[index]) {
        this.violation(tick, `${id} truncated committed entry ${shadow.keys[index]} (truncate to ${endOffset})`);
        return;
      }
    }
    shadow.keys.length = Math.max(0, first);
    shadow.chains.length = Math.max(0, first);
  }

  appended(tick: number, id: ReplicaId, storage: MemoryStorage, entries: readonly Entry[]): void {
    const shadow = this.shadow(id);
    for (const entry of entries) {
      const key = entryKey(entry);
      const chain = chainHash(shadow.chains[shadow.chains.length - 1] ?? shadow.baseChain, key);
      shadow.keys.push(key);
      shadow.chains.push(chain);
      const position = `${entry.epoch}:${entry.offset}`;
      const seen = this.chainAt.get(position);
      if (seen === undefined) this.chainAt.set(position, chain);
      else if (seen !== chain) this.violation(tick, `Log Matching: ${id} holds (epoch ${entry.epoch}, offset ${entry.offset}) with a different prefix`);
    }
    if (shadow.keys.length !== storage.allEntries().length) this.violation(tick, `checker: shadow of ${id} out of step`);
  }

  // Raft §5.2 with membership: one leader per epoch; it is a voter of its configuration, or one
  // that configuration removes while it is uncommitted (dissertation §4.2.2: it may be needed to
  // elect a leader; it leads until the removal commits), and a majority of those voters granted
  // it their vote in that epoch (its own counts only where it is a voter).
  leaderElected(tick: number, id: ReplicaId, epoch: number, voters: readonly ReplicaId[], removalPending: boolean): void {
    const previous = this.leaders.get(epoch);
    if (previous !== undefined && previous !== id) this.violation(tick, `two leaders in epoch ${epoch}: ${previous} and ${id}`);
    this.leaders.set(epoch, id);
    this.shadow(id).leaderCheckedCount = 0;
    if (!voters.includes(id) && !removalPending) {
      this.violation(tick, `${id} leads epoch ${epoch} but is not a voter of its configuration [${voters.join(',')}]`);
    }
    const granted = voters.filter((voter) => voter === id || this.grants.get(`${epoch}:${voter}`) === id);
    if (granted.length < majoritySize(voters.length)) {
      this.violation(tick, `${id} leads epoch ${epoch} with votes of [${granted.join(',')}] only, not a majority of its voters [${voters.join(',')}]`);
    }
  }

  // What a replica sent in one Ready: vote grants (at most one candidate per epoch), and vote and
  // pre-vote requests (only to the sender's voters, never from a learner). Grants are kept by
  // replica id, across disk faults and replaced disks: a replica that forgot its vote must still
  // not grant a second one. A candidate's vote for itself is not a grant: a replaced disk may vote
  // in an epoch its old identity campaigned in and lost (nobody granted it: see votersFetchedSince
  // in src/raft/replication.ts); two winners of one epoch are caught by leaderElected.
  observeMessages(tick: number, id: ReplicaId, core: RaftCore, messages: readonly Message[]): void {
    for (const message of messages) {
      if (message.type === 'VoteResponse' && message.granted) this.voted(tick, id, message.epoch, message.to);
      if (message.type !== 'VoteRequest' && message.type !== 'PreVoteRequest') continue;
      if (core.learners.includes(id)) this.violation(tick, `learner ${id} asks ${message.to} for a ${message.type}`);
      if (!core.voters.includes(message.to)) this.violation(tick, `${id} asks ${message.to}, not a voter of its configuration, for a ${message.type}`);
    }
  }

  private voted(tick: number, id: ReplicaId, epoch: number, candidate: ReplicaId): void {
    const key = `${epoch}:${id}`;
    const previous = this.grants.get(key);
    if (previous !== undefined && previous !== candidate) this.violation(tick, `${id} voted for ${previous} and ${candidate} in epoch ${epoch}`);
    this.grants.set(key, candidate);
  }

  // Raft §5.3 with learners: when a leader's high watermark rises to H, a majority of its voters
  // promised (synced) at least H; what learners hold never counts.
  // `highWatermark` is the one a Ready exposes (its hard state is synced by then).
  checkCommitQuorum(tick: number, id: ReplicaId, core: RaftCore, highWatermark: number, promisedOffsetOf: (id: ReplicaId) => number): void {
    if (core.role !== 'leader') {
      this.leaderWatermarks.delete(id);
      return;
    }
    const seen = this.leaderWatermarks.get(id);
    this.leaderWatermarks.set(id, { epoch: core.epoch, offset: highWatermark });
    if (seen === undefined || seen.epoch !== core.epoch || highWatermark <= seen.offset) return;
    const holders = core.voters.filter((voter) => promisedOffsetOf(voter) >= highWatermark);
    if (holders.length < majoritySize(core.voters.length)) {
      this.violation(
        tick,
        `leader ${id} commits up to ${highWatermark} promised by [${holders.join(',')}] only, not a majority of its voters [${core.voters.join(',')}]`,
      );
    }
  }

  proposed(leaderId: ReplicaId, epoch: number, offset: number, value: string): void {
    this.pending.push({ leaderId, epoch, offset, value });
  }

  observeHighWatermark(tick: number, id: ReplicaId, core: RaftCore, storage: MemoryStorage): void {
    const shadow = this.shadow(id);
    const highWatermark = core.highWatermark;
    if (highWatermark > shadow.checkedHighWatermark) this.recordCommitted(tick, id, core.epoch, storage, shadow, highWatermark);
    if (core.role === 'leader') this.checkLeaderHoldsCommitted(tick, id, core.epoch, storage, shadow);
    if (this.pending.length > 0) this.checkAcknowledgements(tick, id, core, storage);
  }

  // `epoch` is the observer's: the entry was committed by the leader of that epoch or earlier.
  // Entries below the log start are covered by the snapshot (checked when it was taken or
  // installed); the others extend the canonical log or must equal it.
  private recordCommitted(tick: number, id: ReplicaId, epoch: number, storage: MemoryStorage, shadow: NodeShadow, highWatermark: number): void {
    const entries = storage.allEntries();
    if (storage.endOffset() < highWatermark) {
      this.violation(tick, `${id} high watermark ${highWatermark} beyond its stored log end ${storage.endOffset()}`);
      return;
    }
    const from = Math.max(shadow.checkedHighWatermark, storage.startOffset());
    let index = from >= storage.endOffset() ? entries.length : indexOfOffset(entries, from);
    for (; index >= 0 && index < entries.length && entries[index]!.offset < highWatermark; index += 1) {
      const entry = entries[index]!;
      const key = shadow.keys[index]!;
      const existing = this.committed.get(entry.offset);
      if (existing === undefined) {
        if (!this.extendCanonical(tick, id, entry, key)) return;
        this.committed.set(entry.offset, key);
        this.committedOrder.push({ offset: entry.offset, epoch });
      } else if (existing !== key) {
        this.violation(tick, `committed entry at offset ${entry.offset} changed on ${id}: was ${existing}, now ${key}`);
        return;
      }
    }
    shadow.checkedHighWatermark = highWatermark;
  }

  private extendCanonical(tick: number, id: ReplicaId, entry: Entry, key: string): boolean {
    if (entry.offset !== this.canonicalEndOffset) {
      this.violation(tick, `${id} commits ${key} at ${entry.offset}, but the committed log ends at ${this.canonicalEndOffset} (a gap)`);
      return false;
    }
    const previous = this.canonical.get(entry.offset)!;
    this.canonicalEndOffset = entryEnd(entry);
    this.canonical.set(this.canonicalEndOffset, { chain: chainHash(previous.chain, key), epoch: entry.epoch });
    return true;
  }

  private checkLeaderHoldsCommitted(tick: number, id: ReplicaId, epoch: number, storage: MemoryStorage, shadow: NodeShadow): void {
    const entries = storage.allEntries();
    for (; shadow.leaderCheckedCount < this.committedOrder.length; shadow.leaderCheckedCount += 1) {
      const { offset, epoch: commitEpoch } = this.committedOrder[shadow.leaderCheckedCount]!;
      if (commitEpoch > epoch) continue;
      if (offset < storage.startOffset() && this.coveredBySnapshot(storage, offset)) continue;
      const index = offset < storage.endOffset() && offset >= storage.startOffset() ? indexOfOffset(entries, offset) : -1;
      if (index < 0 || shadow.keys[index] !== this.committed.get(offset)) {
        const key = this.committed.get(offset)!;
        const acknowledged = [...this.acknowledged].find(([value, at]) => at === offset && key.endsWith(`:${value}`));
        const lost = acknowledged === undefined ? '' : `acknowledged ${acknowledged[0]} lost: `;
        this.violation(tick, `${lost}leader ${id} lacks committed entry ${key}`);
        return;
      }
    }
  }

  // Below the log start only a snapshot (checked against the canonical state) holds the entry.
  private coveredBySnapshot(storage: MemoryStorage, offset: number): boolean {
    const snapshot = storage.snapshot();
    return snapshot !== null && offset < snapshot.endOffset && storage.startOffset() <= snapshot.endOffset;
  }

  // Every acknowledged proposal is still in the leader's log at its offset (or in its snapshot).
  checkAcknowledgedKept(tick: number, leaderId: ReplicaId, storage: MemoryStorage): void {
    const entries = storage.allEntries();
    for (const [value, offset] of this.acknowledged) {
      if (offset < storage.startOffset() && this.coveredBySnapshot(storage, offset)) continue;
      const index = offset < storage.endOffset() && offset >= storage.startOffset() ? indexOfOffset(entries, offset) : -1;
      const stored = index < 0 ? undefined : decoder.decode(entries[index]!.payload);
      if (stored !== value) {
        this.violation(tick, `acknowledged ${value} at offset ${offset} lost: leader ${leaderId} holds ${stored ?? 'nothing'} there`);
        return;
      }
    }
  }

  private checkAcknowledgements(tick: number, id: ReplicaId, core: RaftCore, storage: MemoryStorage): void {
    const keep: PendingProposal[] = [];
    for (const proposal of this.pending) {
      if (proposal.leaderId !== id) {
        keep.push(proposal);
        continue;
      }
      if (core.role !== 'leader' || core.epoch !== proposal.epoch) continue; // outcome unknown
      if (core.highWatermark <= proposal.offset) {
        keep.push(proposal);
        continue;
      }
      const committedKey = this.committed.get(proposal.offset);
      const held = proposal.offset >= storage.startOffset();
      const index = held ? indexOfOffset(storage.allEntries(), proposal.offset) : -1;
      const stored = index < 0 ? undefined : decoder.decode(storage.allEntries()[index]!.payload);
      const storedOk = held ? stored === proposal.value : this.coveredBySnapshot(storage, proposal.offset);
      if (committedKey === undefined || !committedKey.endsWith(`:${proposal.value}`) || !storedOk) {
        this.violation(tick, `acknowledged ${proposal.value} at offset ${proposal.offset} is not the committed entry (${committedKey})`);
        return;
      }
      this.acknowledged.set(proposal.value, proposal.offset);
    }
    this.pending = keep;
  }
}
