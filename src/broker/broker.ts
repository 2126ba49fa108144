// A broker: the queues its group holds, produce and consume on them, topics and consumer-group
// offsets (both replicated through the group's log), and the read advice. It works on typed
// requests; gRPC lives in src/rpc/. This class only composes the parts, one concern each:
//   state.ts (+ state-store.ts)  topics, consumer offsets, queue index, producer table; the apply
//   produce.ts                   the produce path and the replication of admin commands
//   consume.ts                   the consume path, block cutting, consumers waiting for data
//   admin.ts                     topics, consumer offsets, backlogs and lag, group membership,
//                                consumer groups described cluster-wide
//   cluster-view.ts              this group and the cluster as described to clients, read advice
//   placement.ts, names.ts, layout.ts   where a queue lives, naming rules and keys, own identity
import type { Entry, ReplicaId, Role } from '../raft/types.js';
import type { BackupSource, Replica, StateMachine } from '../replica/replica.js';
import type { Logger } from '../replica/logger.js';
import type { Advice } from './advice.js';
import { Admin, type ConsumerBacklog, type QueueInfo } from './admin.js';
import { MetadataSync, metadataPollWaitMs } from './metadata-sync.js';
import type { ClusterMetadata, MetadataGroup } from './metadata.js';
import {
  ClusterView,
  type AddQueuesResult,
  type ClusterForwarder,
  type ConsumerGroupDescription,
  type ConsumerGroupList,
  type GroupInfo,
} from './cluster-view.js';
import { ConsumePath, type ConsumeRequest, type ConsumeResult } from './consume.js';
import type { HeartbeatResult } from './group-coordinator.js';
import { NotFoundError, NotLeaderError } from '../errors.js';
import { clientAddress, consumerOffsetResetDefault, type BrokerIdentity, type ClusterLayout, type GroupLayout } from './layout.js';
import { LoadMonitor } from './load.js';
import { noBrokerObserver, type BrokerInstruments } from './observer.js';
import {
  MembershipAdmin,
  membershipWaitMsDefault,
  type AddReplicaRequest,
  type AddReplicaResult,
  type MembershipChange,
  type RemoveReplicaRequest,
  type TransferLeaderRequest,
  type TransferLeaderResult,
} from './membership.js';
import { Placement } from './placement.js';
import { ProducePath, type ProduceRequest, type ProduceResult } from './produce.js';
import { BrokerState, type SnapshotPayload, type TopicInfo } from './state.js';
import type { StateStore } from './state-store.js';
import { noBrokerTracer } from './tracer.js';

export { consumerGroupListingsMax, consumerLagMessages, consumerSessionTimeoutMs, type ConsumerBacklog, type QueueInfo } from './admin.js';
export { checkMetadata, MetadataError, type ClusterMetadata, type MetadataGroup, type MetadataTopic } from './metadata.js';
export type {
  AddQueuesResult,
  TopicCallMode,
  ClusterForwarder,
  ConsumerGroupDescription,
  ConsumerGroupList,
  ConsumerGroupListing,
  ConsumerGroupQueue,
  GroupInfo,
  ReplicaInfo,
} from './cluster-view.js';
export type { MemberView } from './group-coordinator.js';
export { recordsOfBlocks, type ConsumeRequest, type ConsumeResult } from './consume.js';
export {
  clientAddress,
  consumerOffsetResetChoices,
  consumerOffsetResetDefault,
  type BrokerEndpoint,
  type BrokerIdentity,
  type ClusterLayout,
  type ConsumerOffsetReset,
  type GroupLayout,
  type ServingSettings,
} from './layout.js';
export { consumerGroupPattern, queuesPerTopicMax, topicNamePattern } from './names.js';
export { noBrokerObserver, type BrokerInstruments, type BrokerObserver, type ConsumedBlock, type ConsumedRecord } from './observer.js';
export { SequenceGapError, type AckLevel, type ProduceMessage, type ProduceRequest, type ProduceResult } from './produce.js';
export type { SnapshotPayload, TopicInfo } from './state.js';
export { producersMaxDefault } from './producer-table.js';
export {
  membershipWaitMsDefault,
  membershipWaitMsMax,
  type AddReplicaRequest,
  type AddReplicaResult,
  type MemberInfo,
  type MembershipChange,
  type RemoveReplicaRequest,
  type TransferLeaderRequest,
  type TransferLeaderResult,
} from './membership.js';
export { StateSnapshotError, type StateSnapshotProblem } from './state-snapshot.js';

/** A forwarded membership call may take this much longer than the wait it asks for. */
const forwardMarginMs = 5000;

export class Broker implements StateMachine {
  readonly id: string;
  readonly group: GroupLayout;
  private readonly state: BrokerState;
  private readonly placement: Placement;
  private readonly load = new LoadMonitor();
  private readonly producePath: ProducePath;
  private readonly consumePath: ConsumePath;
  private readonly admin: Admin;
  private readonly view: ClusterView;
  private readonly membership: MembershipAdmin;
  /** The cluster metadata here: the state's own (metadata group) or a fetched copy (metadata-sync.ts). */
  private readonly sync: MetadataSync;

  constructor(
    readonly config: BrokerIdentity,
    readonly cluster: ClusterLayout,
    replica: Replica,
    store: StateStore,
    forwarder: ClusterForwarder,
    logger: Logger,
    instruments: BrokerInstruments = {},
  ) {
    const observer = instruments.observer ?? noBrokerObserver;
    const tracing = instruments.tracing ?? noBrokerTracer;
    this.id = config.id;
    this.state = new BrokerState(store, logger, {
      messagesCommitted: (key) => this.consumePath.wake(key),
      metadataChanged: () => this.sync?.changed(),
    });
    this.placement = new Placement(config, cluster, replica, this.state, () => this.sync.current);
    this.group = this.placement.group;
    this.view = new ClusterView(replica, this.placement, this.load, forwarder);
    const parts = { replica, state: this.state, placement: this.placement, observer, tracing };
    this.producePath = new ProducePath({ ...parts, messageBytesMax: config.settings.messageBytesMax });
    this.consumePath = new ConsumePath({
      ...parts,
      consumeWaitMsMax: config.settings.consumeWaitMsMax,
      advise: (needed) => this.view.advice(needed),
      logger,
      consumerOffsetReset: config.settings.consumerOffsetReset ?? consumerOffsetResetDefault,
    });
    this.sync = new MetadataSync({
      self: config,
      cluster,
      replica,
      state: this.state,
      store,
      forwarder,
      replicate: (command) => this.producePath.replicate(command),
      logger,
    });
    this.admin = new Admin({ replica, state: this.state, placement: this.placement, produce: this.producePath, forwarder, sync: this.sync, logger });
    this.membership = new MembershipAdmin(replica, this.placement);
    this.replica = replica;
    this.forwarder = forwarder;
  }

  private readonly replica: Replica;
  private readonly forwarder: ClusterForwarder;

  // ------------------------------------------------------------------ membership and leadership (issue 13.4)
  // On the named group's leader; any other broker forwards the request there (once: a forwarded
  // request that finds no leader here is refused with a redirect).

  addReplica(request: AddReplicaRequest, forwarded: boolean): Promise<AddReplicaResult> {
    return this.onGroupLeader(
      request.group,
      forwarded,
      request.waitMsMax,
      (group, timeoutMs) => this.forwarder.addReplica(group, request, timeoutMs),
      () => this.membership.addReplica(request),
    );
  }

  removeReplica(request: RemoveReplicaRequest, forwarded: boolean): Promise<MembershipChange> {
    return this.onGroupLeader(
      request.group,
      forwarded,
      request.waitMsMax,
      (group, timeoutMs) => this.forwarder.removeReplica(group, request, timeoutMs),
      () => this.membership.removeReplica(request),
    );
  }

  transferLeader(request: TransferLeaderRequest, forwarded: boolean): Promise<TransferLeaderResult> {
    return this.onGroupLeader(
      request.group,
      forwarded,
      request.waitMsMax,
      (group, timeoutMs) => this.forwarder.transferLeader(group, request, timeoutMs),
      () => this.membership.transferLeader(request),
    );
  }

  private async onGroupLeader<T>(
    groupId: string,
    forwarded: boolean,
    waitMsMax: number,
    forward: (group: GroupLayout, timeoutMs: number) => Promise<T>,
    local: () => Promise<T>,
  ): Promise<T> {
    const group = this.cluster.groups.find((g) => g.id === groupId);
    if (!group) throw new NotFoundError(`the cluster has no group "${groupId}" (groups: ${this.cluster.groups.map((g) => g.id).join(', ')})`);
    if (group.id === this.group.id && this.replica.isLeader) return local();
    if (forwarded) {
      if (group.id === this.group.id) this.placement.requireLeader();
      throw new NotLeaderError(`broker ${this.id} is not in group ${group.id}`, null, clientAddress(group.brokers[0]!));
    }
    return forward(group, (waitMsMax === 0 ? membershipWaitMsDefault : waitMsMax) + forwardMarginMs);
  }

  // ------------------------------------------------------------------ backup (issue 14)

  /**
   * A backup of `groupId` pinned on this broker (replica.openBackup): only the group's leader
   * serves it. NotFoundError for a group the cluster lacks; NotLeaderError naming where to go
   * for another group's or when this broker does not lead (a backup is never forwarded: the
   * stream carries every byte of the group, the caller goes to the leader itself).
   */
  openBackup(groupId: string): BackupSource {
    const group = this.cluster.groups.find((g) => g.id === groupId);
    if (!group) throw new NotFoundError(`the cluster has no group "${groupId}" (groups: ${this.cluster.groups.map((g) => g.id).join(', ')})`);
    if (group.id !== this.group.id)
      throw new NotLeaderError(
        `broker ${this.id} is in group ${this.group.id}, not ${group.id}: ask a broker of ${group.id}`,
        null,
        clientAddress(group.brokers[0]!),
      );
    this.placement.requireLeader();
    return this.replica.openBackup();
  }

  get inflight(): number {
    return this.load.inflightRequests;
  }

  /** Counts a client request in flight (the leader's load for the read advice). */
  track<T>(work: () => Promise<T>): Promise<T> {
    return this.load.track(work);
  }

  // ------------------------------------------------------------------ state machine

  onAppend(entry: Entry): void {
    this.state.onAppend(entry);
  }

  onTruncate(endOffset: number): void {
    this.state.onTruncate(endOffset);
  }

  onCommit(entry: Entry): void {
    this.state.onCommit(entry);
  }

  onRoleChange(role: Role, _epoch: number, _leaderId: ReplicaId | null): void {
    if (role === 'leader') this.sync.becameLeader();
    if (role !== 'leader') {
      this.consumePath.wakeAll();
      this.admin.forgetMembership();
    }
  }

  appliedOffset(): number {
    return this.state.appliedOffset();
  }

  // ------------------------------------------------------------------ snapshots and retention (state.ts)

  /** The state as of the in-memory applied offset: synchronous, bounded (state-snapshot.ts). */
  captureSnapshot(): SnapshotPayload {
    return this.state.captureSnapshot();
  }

  /** Replaces the whole state with a snapshot's, stored in one transaction with applied offset `endOffset`. */
  restoreSnapshot(endOffset: number, payload: Uint8Array): void {
    this.state.restoreSnapshot(endOffset, payload);
    // Waiting consumers look again at queues that may hold other offsets now.
    this.consumePath.wakeAll();
  }

  /** After the log's batches are indexed: queue ends and producers the log no longer holds, from `latest`. */
  indexFromSnapshot(latest: SnapshotPayload | null): void {
    this.state.indexFromSnapshot(latest);
  }

  /** Retention removed the log below `startOffset`. */
  onLogStartMoved(startOffset: number): void {
    this.state.onLogStartMoved(startOffset);
  }

  // ------------------------------------------------------------------ client requests

  groupOfQueue(topic: string, queue: number): GroupLayout {
    return this.placement.groupOfQueue(topic, queue);
  }

  // ------------------------------------------------------------------ cluster metadata (issue 14.1)

  /** Starts following the cluster metadata (after the servers listen: it calls other brokers). */
  startMetadata(): void {
    this.sync.start();
  }

  /** Every group of the cluster (the metadata's, or the cluster file's before there is any). */
  groups(): readonly GroupLayout[] {
    return this.placement.groups();
  }

  get metadataVersion(): number {
    return this.sync.current.version;
  }

  /** The metadata once its version passes `knownVersion`, or after `waitMs` (GetMetadata). */
  metadata(knownVersion: number, waitMs: number): Promise<ClusterMetadata> {
    return this.sync.waitForVersionAbove(knownVersion, Math.min(waitMs, metadataPollWaitMs));
  }

  addGroup(group: MetadataGroup): Promise<ClusterMetadata> {
    return this.admin.addGroup(group);
  }

  addQueues(topic: string, count: number): Promise<AddQueuesResult> {
    return this.admin.addQueues(topic, count);
  }

  produce(request: ProduceRequest): Promise<ProduceResult> {
    return this.producePath.produce(request);
  }

  consume(request: ConsumeRequest, cancelled: () => boolean = () => false): Promise<ConsumeResult> {
    return this.consumePath.consume(request, cancelled);
  }

  commitOffset(consumerGroup: string, topic: string, queue: number, offset: number): Promise<void> {
    return this.admin.commitOffset(consumerGroup, topic, queue, offset);
  }

  consumerBacklogs(): ConsumerBacklog[] {
    return this.admin.consumerBacklogs();
  }

  fetchOffset(consumerGroup: string, topic: string, queue: number): number | null {
    return this.admin.fetchOffset(consumerGroup, topic, queue);
  }

  heartbeat(consumerGroup: string, topic: string, memberId: string, owned: number[], leave: boolean): HeartbeatResult {
    return this.admin.heartbeat(consumerGroup, topic, memberId, owned, leave);
  }

  createTopic(name: string, queues: number, forwarded: boolean): Promise<TopicInfo> {
    return this.admin.createTopic(name, queues, forwarded);
  }

  deleteTopic(name: string, forwarded: boolean): Promise<void> {
    return this.admin.deleteTopic(name, forwarded);
  }

  listTopics(): TopicInfo[] {
    return this.admin.listTopics();
  }

  describeTopic(name: string, groups: GroupInfo[]): { topic: TopicInfo; queues: QueueInfo[] } {
    return this.admin.describeTopic(name, groups);
  }

  /** Cluster-wide unless `forwarded` (then this group's part, from its leader). */
  describeConsumerGroup(consumerGroup: string, topic: string, forwarded: boolean): Promise<ConsumerGroupDescription> {
    return this.admin.describeConsumerGroup(consumerGroup, topic, forwarded);
  }

  /** Cluster-wide unless `forwarded` (then this group's part, from its leader). */
  listConsumerGroups(forwarded: boolean): Promise<ConsumerGroupList> {
    return this.admin.listConsumerGroups(forwarded);
  }

  // ------------------------------------------------------------------ cluster view

  describeOwnGroup(forwarded: boolean): Promise<GroupInfo> {
    return this.view.describeOwnGroup(forwarded);
  }

  localGroupInfo(): GroupInfo {
    return this.view.localGroupInfo();
  }

  describeCluster(): Promise<GroupInfo[]> {
    return this.view.describeCluster();
  }

  advice(neededLogOffset: number): Advice {
    return this.view.advice(neededLogOffset);
  }

  /** Waiting consumers answer now; the state is stored (what the replica applies later is replayed at the next start). */
  async close(): Promise<void> {
    this.sync.stop();
    this.consumePath.wakeAll();
    this.load.close();
    await this.state.close();
  }
}
