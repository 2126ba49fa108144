// Safety checks of the simulator, applied after every step of the driver:
//  - at most one leader per epoch (Raft §5.2 Election Safety);
//  - a committed entry is never changed, and never truncated from any replica (§5.4);
//  - Log Matching: two logs with an entry of the same (epoch, offset) are identical up to it
//    (§5.3), checked through a hash chain over each log;
//  - every leader holds every entry committed in its epoch or before (§5.4 Leader Completeness;
//    a stale leader of an older epoch may lack what a newer one committed);
//  - an acknowledged proposal is committed at its offset and stays so: no acknowledged proposal is
//    ever lost, disk faults included (checked again on the leader at the end of a run).

import type { RaftCore } from '../../src/raft/core.js';
import { indexOfOffset, type MemoryStorage } from '../../src/raft/storage.js';
import type { Entry, ReplicaId } from '../../src/raft/types.js';

const decoder = new TextDecoder();

interface NodeShadow {
  keys: string[]; // parallel to the stored entries
  chains: string[]; // hash of the log prefix ending with each entry
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

function chainHash(previous: string, key: string): string {
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

  constructor(ids: readonly ReplicaId[]) {
    for (const id of ids) this.shadows.set(id, { keys: [], chains: [], checkedHighWatermark: 0, leaderCheckedCount: 0 });
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

  private shadow(id: ReplicaId): NodeShadow {
    return this.shadows.get(id)!;
  }

  restarted(id: ReplicaId): void {
    const shadow = this.shadow(id);
    shadow.checkedHighWatermark = 0;
    shadow.leaderCheckedCount = 0;
  }

  crashed(id: ReplicaId, storage: MemoryStorage): void {
    const shadow = this.shadow(id);
    const length = storage.allEntries().length;
    shadow.keys.length = length;
    shadow.chains.length = length;
    this.pending = this.pending.filter((proposal) => proposal.leaderId !== id);
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
      const chain = chainHash(shadow.chains[shadow.chains.length - 1] ?? '', key);
      shadow.keys.push(key);
      shadow.chains.push(chain);
      const position = `${entry.epoch}:${entry.offset}`;
      const seen = this.chainAt.get(position);
      if (seen === undefined) this.chainAt.set(position, chain);
      else if (seen !== chain) this.violation(tick, `Log Matching: ${id} holds (epoch ${entry.epoch}, offset ${entry.offset}) with a different prefix`);
    }
    if (shadow.keys.length !== storage.allEntries().length) this.violation(tick, `checker: shadow of ${id} out of step`);
  }

  leaderElected(tick: number, id: ReplicaId, epoch: number, _storage: MemoryStorage): void {
    const previous = this.leaders.get(epoch);
    if (previous !== undefined && previous !== id) this.violation(tick, `two leaders in epoch ${epoch}: ${previous} and ${id}`);
    this.leaders.set(epoch, id);
    this.shadow(id).leaderCheckedCount = 0;
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
  private recordCommitted(tick: number, id: ReplicaId, epoch: number, storage: MemoryStorage, shadow: NodeShadow, highWatermark: number): void {
    const entries = storage.allEntries();
    if (storage.endOffset() < highWatermark) {
      this.violation(tick, `${id} high watermark ${highWatermark} beyond its stored log end ${storage.endOffset()}`);
      return;
    }
    let index = shadow.checkedHighWatermark === 0 ? 0 : indexOfOffset(entries, shadow.checkedHighWatermark);
    for (; index >= 0 && index < entries.length && entries[index]!.offset < highWatermark; index += 1) {
      const offset = entries[index]!.offset;
      const key = shadow.keys[index]!;
      const existing = this.committed.get(offset);
      if (existing === undefined) {
        this.committed.set(offset, key);
        this.committedOrder.push({ offset, epoch });
      } else if (existing !== key) {
        this.violation(tick, `committed entry at offset ${offset} changed on ${id}: was ${existing}, now ${key}`);
        return;
      }
    }
    shadow.checkedHighWatermark = highWatermark;
  }

  private checkLeaderHoldsCommitted(tick: number, id: ReplicaId, epoch: number, storage: MemoryStorage, shadow: NodeShadow): void {
    const entries = storage.allEntries();
    for (; shadow.leaderCheckedCount < this.committedOrder.length; shadow.leaderCheckedCount += 1) {
      const { offset, epoch: commitEpoch } = this.committedOrder[shadow.leaderCheckedCount]!;
      if (commitEpoch > epoch) continue;
      const index = offset < storage.endOffset() ? indexOfOffset(entries, offset) : -1;
      if (index < 0 || shadow.keys[index] !== this.committed.get(offset)) {
        const key = this.committed.get(offset)!;
        const acknowledged = [...this.acknowledged].find(([value, at]) => at === offset && key.endsWith(`:${value}`));
        const lost = acknowledged === undefined ? '' : `acknowledged ${acknowledged[0]} lost: `;
        this.violation(tick, `${lost}leader ${id} lacks committed entry ${key}`);
        return;
      }
    }
  }

  // Every acknowledged proposal is still in the leader's log at its offset.
  checkAcknowledgedKept(tick: number, leaderId: ReplicaId, storage: MemoryStorage): void {
    const entries = storage.allEntries();
    for (const [value, offset] of this.acknowledged) {
      const index = offset < storage.endOffset() ? indexOfOffset(entries, offset) : -1;
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
      const index = indexOfOffset(storage.allEntries(), proposal.offset);
      const stored = index < 0 ? undefined : decoder.decode(storage.allEntries()[index]!.payload);
      if (committedKey === undefined || !committedKey.endsWith(`:${proposal.value}`) || stored !== proposal.value) {
        this.violation(tick, `acknowledged ${proposal.value} at offset ${proposal.offset} is not the committed entry (${committedKey})`);
        return;
      }
      this.acknowledged.set(proposal.value, proposal.offset);
    }
    this.pending = keep;
  }
}
