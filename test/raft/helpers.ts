// A tiny synchronous harness for unit tests: cores over memory storage, a perfect network that
// the test drives message by message, and a driver that executes Ready in the documented order.
// Snapshot transfers are synchronous: a Ready's fetchSnapshot is served at once from the named
// leader's stored snapshot when it is that one (unless `snapshotTransfer` is off).

import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { Message, RaftConfig, RaftEvent, ReplicaId, SnapshotRequest } from '../../src/raft/types.js';

export const encoder = new TextEncoder();

export interface TestNode {
  id: ReplicaId;
  storage: MemoryStorage;
  core: RaftCore;
}

export function config(id: ReplicaId, voters: ReplicaId[], overrides: Partial<RaftConfig> = {}): RaftConfig {
  return {
    id,
    voters,
    electionTicks: 10,
    electionJitterTicks: 0,
    fetchTimeoutTicks: 15,
    fetchRetryTicks: 3,
    beginQuorumEpochResendTicks: 3,
    fetchBytesMax: 1 << 20,
    random: () => 0,
    ...overrides,
  };
}

export class Group {
  readonly nodes = new Map<ReplicaId, TestNode>();
  queue: Message[] = [];
  // Every event of every Ready, with the replica that reported it.
  events: Array<{ id: ReplicaId; event: RaftEvent }> = [];
  // When set, messages for which it returns false are dropped.
  filter: ((message: Message) => boolean) | null = null;
  snapshotTransfer = true;
  // Every snapshot request and install, in order.
  snapshotLog: Array<{ id: ReplicaId; what: 'request' | 'install'; endOffset: number; epoch: number }> = [];

  constructor(
    readonly voters: ReplicaId[],
    readonly overrides: Partial<RaftConfig> = {},
    extra: ReplicaId[] = [],
  ) {
    for (const id of [...voters, ...extra]) this.restart(id, new MemoryStorage());
  }

  node(id: ReplicaId): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  core(id: ReplicaId): RaftCore {
    return this.node(id).core;
  }

  restart(id: ReplicaId, storage: MemoryStorage): void {
    this.nodes.set(id, { id, storage, core: new RaftCore(config(id, this.voters, this.overrides), storage) });
  }

  // Executes every pending Ready of a node (synchronous durability) and queues its messages.
  drain(id: ReplicaId): void {
    const { core, storage } = this.node(id);
    for (let ready = core.ready(); ready !== null; ready = core.ready()) {
      if (ready.hardState !== undefined) storage.setHardState(ready.hardState);
      if (ready.installSnapshot !== undefined) {
        storage.installSnapshot(ready.installSnapshot);
        this.snapshotLog.push({ id, what: 'install', endOffset: ready.installSnapshot.endOffset, epoch: ready.installSnapshot.epoch });
      }
      if (ready.truncateTo !== undefined) storage.truncateTo(ready.truncateTo);
      storage.append(ready.entries);
      core.advance(ready, storage.endOffset());
      for (const event of ready.events ?? []) this.events.push({ id, event });
      for (const message of ready.messages) if (this.filter === null || this.filter(message)) this.queue.push(message);
      if (ready.fetchSnapshot) this.transferSnapshot(id, ready.fetchSnapshot);
    }
  }

  private transferSnapshot(id: ReplicaId, request: SnapshotRequest): void {
    this.snapshotLog.push({ id, what: 'request', endOffset: request.snapshot.endOffset, epoch: request.snapshot.epoch });
    if (!this.snapshotTransfer) return;
    const served = this.nodes.get(request.leaderId)?.storage.snapshot() ?? null;
    if (served === null || served.endOffset !== request.snapshot.endOffset || served.epoch !== request.snapshot.epoch) return;
    this.core(id).snapshotFetched(served);
  }

  // The driver's compaction: a snapshot at the high watermark, then the entries below it removed.
  compact(id: ReplicaId): number {
    const { core, storage } = this.node(id);
    const endOffset = core.highWatermark;
    storage.recordSnapshot(core.snapshotMetaAt(endOffset));
    core.compact(endOffset);
    storage.removeBefore(endOffset);
    return endOffset;
  }

  drainAll(): void {
    for (const id of this.nodes.keys()) this.drain(id);
  }

  tick(id: ReplicaId, times = 1): void {
    for (let index = 0; index < times; index += 1) {
      this.core(id).tick();
      this.drain(id);
    }
  }

  // Takes the queued messages (optionally only some) out of the network.
  take(predicate: (message: Message) => boolean = () => true): Message[] {
    const taken = this.queue.filter(predicate);
    this.queue = this.queue.filter((message) => !predicate(message));
    return taken;
  }

  deliver(message: Message): void {
    this.core(message.to).step(message);
    this.drain(message.to);
  }

  // Delivers messages in order. Followers re-fetch as soon as they are answered (the driver's long
  // poll is absent here), so the network never goes quiet: stop after `limit` deliveries and drop
  // the rest (fetch retries recover them on later ticks).
  settle(limit = 400): void {
    for (let count = 0; this.queue.length > 0 && count < limit; count += 1) this.deliver(this.queue.shift()!);
    this.queue = [];
  }

  // Ticks `id` to its election timeout and lets the election run on a perfect network.
  elect(id: ReplicaId): void {
    this.drainAll();
    while (this.core(id).role !== 'prospective' && this.core(id).role !== 'candidate') this.tick(id);
    this.settle();
    if (this.core(id).role !== 'leader') throw new Error(`elect: ${id} is ${this.core(id).role}`);
  }

  // A few rounds of one tick for every replica followed by message delivery.
  replicate(rounds = 5): void {
    for (let round = 0; round < rounds; round += 1) {
      for (const id of this.nodes.keys()) if (this.core(id).role !== 'resigned') this.tick(id);
      this.settle();
    }
  }
}
