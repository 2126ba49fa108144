// The cluster metadata on one broker (issue 14.1): where it comes from and what follows from it.
//   - In the metadata group (the cluster file's first group) it is the state's own: applied from
//     the group's log (state.ts). Its leader bootstraps it once: the seed groups of the cluster
//     file and the topics the group held before the metadata log (their queues where they were:
//     dealt over the groups in order), in one entry.
//   - Every other broker keeps a copy, fetched from the metadata group's brokers with a long poll
//     (GetMetadata) and stored, so that a restart serves what it knew while that group is down.
//     Versions only go forward: an older answer (a lagging follower) is ignored.
//   - Every group's leader makes its own topics follow the metadata (reconcile): a topic it lacks
//     is created in its log under the metadata's incarnation (createdMs), one the metadata no
//     longer has is deleted, one with more queues is grown. A topic's creation is one metadata
//     entry: atomic. A group that was down when it was made creates it when it next leads; until
//     then its queues answer UNAVAILABLE (retriable).
import type { Replica } from '../replica/replica.js';
import type { Logger } from '../replica/logger.js';
import { CommandKind, type Command } from './commands.js';
import type { ClusterForwarder } from './cluster-view.js';
import type { BrokerIdentity, ClusterLayout, GroupLayout } from './layout.js';
import { checkMetadata, emptyMetadata, legacyPlacement, type ClusterMetadata, type MetadataChange, type MetadataGroup } from './metadata.js';
import type { BrokerState } from './state.js';
import type { StateStore } from './state-store.js';

/** How long one GetMetadata long poll of the watcher waits on the metadata group. */
export const metadataPollWaitMs = 10_000;
/** How often a leader checks its topics against the metadata even when nothing changed. */
const reconcileIntervalMs = 2000;
const watchBackoffMs = { min: 100, max: 2000 };

export interface MetadataSyncParts {
  self: BrokerIdentity;
  /** The cluster file: the seed groups, and where the metadata group's brokers are at first. */
  cluster: ClusterLayout;
  replica: Replica;
  state: BrokerState;
  store: StateStore;
  forwarder: ClusterForwarder;
  /** Proposes a command to this group's log and waits for its commit (produce.ts). */
  replicate: (command: Command) => Promise<void>;
  logger: Logger;
}

export class MetadataSync {
  readonly metadataGroupId: string;
  private cache: ClusterMetadata;
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;
  private reconciling: Promise<void> | null = null;
  private reconcileAgain = false;
  private bootstrapping: Promise<void> | null = null;

  constructor(private readonly parts: MetadataSyncParts) {
    this.metadataGroupId = parts.cluster.groups[0]!.id;
    this.cache = this.isMetadataGroup ? emptyMetadata : (parts.store.metadataCache() ?? emptyMetadata);
  }

  get isMetadataGroup(): boolean {
    return this.parts.self.group === this.metadataGroupId;
  }

  /** The metadata this broker knows now (version 0: none yet). */
  get current(): ClusterMetadata {
    return this.isMetadataGroup ? this.parts.state.metadata : this.cache;
  }

  /** The metadata group as the metadata says (brokers may have changed), else as the cluster file says. */
  metadataGroup(): GroupLayout {
    const known = this.current.groups.find((g) => g.id === this.metadataGroupId);
    return known ?? this.parts.cluster.groups[0]!;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.timer = setInterval(() => this.tick(), reconcileIntervalMs);
    this.timer.unref();
    if (!this.isMetadataGroup) void this.watch();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.notify(); // ends long polls waiting here
  }

  /** The state applied a metadata change (metadata group) or a newer copy arrived. */
  changed(): void {
    this.notify();
    if (this.parts.replica.isLeader) void this.reconcile();
  }

  /** This replica became leader: bootstrap (metadata group) and follow the metadata. */
  becameLeader(): void {
    this.tick();
  }

  /** Resolves with the metadata once its version passes `knownVersion`, or at `waitMs` with what there is. */
  async waitForVersionAbove(knownVersion: number, waitMs: number): Promise<ClusterMetadata> {
    if (this.current.version > knownVersion || waitMs <= 0 || this.stopped) return this.current;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve();
      };
      const check = (): void => {
        if (this.current.version > knownVersion || this.stopped) done();
      };
      const timer = setTimeout(done, waitMs);
      this.listeners.add(check);
    });
    return this.current;
  }

  /** Outside the metadata group: asks the metadata group now (a poke from its leader). */
  async refreshNow(): Promise<void> {
    if (this.isMetadataGroup) return;
    this.accept(await this.parts.forwarder.fetchMetadata(this.metadataGroup(), this.cache.version, 0));
  }

  /**
   * The metadata group's leader: the first metadata entry, once. The seed groups come from the
   * cluster file; the topics this group held before the metadata log keep their queues where
   * they were (dealt over the seed groups in order).
   */
  bootstrapIfNeeded(): Promise<void> {
    if (!this.isMetadataGroup || this.parts.state.metadata.version > 0 || !this.parts.replica.isLeader) return Promise.resolve();
    this.bootstrapping ??= (async () => {
      const groups: MetadataGroup[] = this.parts.cluster.groups.map((g) => ({
        id: g.id,
        brokers: g.brokers.map((b) => ({ id: b.id, host: b.host, clientPort: b.clientPort })),
      }));
      const topics = this.parts.state
        .topicList()
        .map((t) => ({ name: t.name, createdMs: t.createdMs, placement: legacyPlacement(groups, t.queues), legacy: true }));
      await this.propose({ change: 'bootstrap', groups, topics });
      this.parts.logger.info('metadata.bootstrapped', { groups: groups.map((g) => g.id), topics: topics.length });
    })().finally(() => {
      this.bootstrapping = null;
    });
    return this.bootstrapping;
  }

  /** Proposes a metadata change to the metadata group's log (its leader only) and waits for its commit. */
  propose(change: MetadataChange): Promise<void> {
    return this.parts.replicate({ kind: CommandKind.Metadata, change });
  }

  /**
   * On this group's leader: makes its topics what the metadata says, one command at a time,
   * each waiting for its commit. Runs one at a time; a call while one runs runs once more after.
   */
  reconcile(): Promise<void> {
    if (this.reconciling !== null) {
      this.reconcileAgain = true;
      return this.reconciling;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        await this.reconcileOnce();
      } while (this.reconcileAgain && !this.stopped);
    })()
      .catch((error: Error) => {
        // Leadership lost or a commit timed out: the next leader or tick does it again.
        this.parts.logger.info('metadata.reconcile.interrupted', { reason: error.message });
      })
      .finally(() => {
        this.reconciling = null;
      });
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    const { state, replica } = this.parts;
    const metadata = this.current;
    // Before the bootstrap nothing is known: the topics held now are kept as they are. A group
    // not registered yet (started for `group add`) holds no queue: it follows once it is.
    if (metadata.version === 0 || !replica.isLeader || this.stopped) return;
    if (!metadata.groups.some((g) => g.id === this.parts.self.group)) return;
    for (const topic of metadata.topics) {
      if (!replica.isLeader || this.stopped) return;
      const local = state.topic(topic.name);
      const queues = topic.placement.length;
      if (local && local.createdMs !== topic.createdMs && topic.legacy !== true) {
        this.parts.logger.info('metadata.reconcile', { topic: topic.name, action: 'delete-old-incarnation', createdMs: local.createdMs });
        await this.parts.replicate({ kind: CommandKind.DeleteTopic, name: topic.name });
      }
      const now = state.topic(topic.name);
      if (!now) {
        this.parts.logger.info('metadata.reconcile', { topic: topic.name, action: 'create', queues, createdMs: topic.createdMs });
        await this.parts.replicate({ kind: CommandKind.CreateTopic, name: topic.name, queues, createdMs: topic.createdMs });
      } else if (now.queues < queues) {
        this.parts.logger.info('metadata.reconcile', { topic: topic.name, action: 'grow', queues, from: now.queues });
        await this.parts.replicate({ kind: CommandKind.GrowTopic, name: topic.name, queues, createdMs: now.createdMs });
      }
    }
    const named = new Set(metadata.topics.map((t) => t.name));
    for (const local of state.topicList()) {
      if (named.has(local.name) || !replica.isLeader || this.stopped) continue;
      this.parts.logger.info('metadata.reconcile', { topic: local.name, action: 'delete', reason: 'not in the cluster metadata' });
      await this.parts.replicate({ kind: CommandKind.DeleteTopic, name: local.name });
    }
  }

  private tick(): void {
    if (this.stopped || !this.parts.replica.isLeader) return;
    void this.bootstrapIfNeeded()
      .then(() => this.reconcile())
      .catch((error: Error) => this.parts.logger.info('metadata.bootstrap.interrupted', { reason: error.message }));
  }

  /** Outside the metadata group: long polls its brokers for newer metadata, for as long as it runs. */
  private async watch(): Promise<void> {
    let backoffMs = watchBackoffMs.min;
    while (!this.stopped) {
      try {
        this.accept(await this.parts.forwarder.fetchMetadata(this.metadataGroup(), this.cache.version, metadataPollWaitMs));
        backoffMs = watchBackoffMs.min;
      } catch (error) {
        this.parts.logger.debug('metadata.watch.failed', { reason: (error as Error).message, retryInMs: backoffMs });
        await new Promise((resolve) => setTimeout(resolve, backoffMs).unref());
        backoffMs = Math.min(watchBackoffMs.max, backoffMs * 2);
      }
    }
  }

  private accept(received: ClusterMetadata): void {
    if (this.stopped || received.version <= this.cache.version) return;
    const metadata = checkMetadata(received);
    this.cache = metadata;
    this.parts.store.saveMetadataCache(metadata);
    this.parts.logger.info('metadata.received', { version: metadata.version, groups: metadata.groups.length, topics: metadata.topics.length });
    this.changed();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
