// The cluster as this broker sees it: its own group (every replica's progress, on the leader),
// the other groups (asked through the forwarder), and the read advice that rides on every
// Consume reply (DESIGN §5).
import type { ConsumerGroupListingView, ConsumerGroupListView, ConsumerGroupQueueView, ConsumerGroupView } from '../protocol/consumer-groups.js';
import type { GroupInfo, ReplicaInfo } from '../protocol/messages.js';
import type { RaftStatus, ReplicaStatus } from '../raft/types.js';
import type { Replica } from '../replica/replica.js';
import { adviseRead, type Advice, type FollowerView } from './advice.js';
import { clientAddress, type BrokerIdentity, type GroupLayout } from './layout.js';
import type { LoadMonitor } from './load.js';
import type { ClusterMetadata, MetadataGroup } from './metadata.js';
import type { TopicInfo } from './state.js';
import type { Placement } from './placement.js';
import type { AddReplicaRequest, AddReplicaResult, MembershipChange, RemoveReplicaRequest, TransferLeaderRequest, TransferLeaderResult } from './membership.js';

/** What AddQueues answers: the grown topic, where its queues live, the metadata version holding it. */
export interface AddQueuesResult {
  topic: TopicInfo;
  placement: string[];
  metadataVersion: number;
}

// The wire's shapes (src/protocol/messages.ts): a group as DescribeCluster tells it.
export type { GroupInfo, ReplicaInfo };

// Consumer groups as the wire tells them (src/protocol/consumer-groups.ts decodes them).
export type ConsumerGroupQueue = ConsumerGroupQueueView;
export type ConsumerGroupDescription = ConsumerGroupView;
export type ConsumerGroupListing = ConsumerGroupListingView;
export type ConsumerGroupList = ConsumerGroupListView;

/** How a broker reaches the other groups (and its own leader) for cluster-wide requests. */
/**
 * How a topic call reaches another group: 'client' as a client's own call (to the metadata
 * group, which makes the change), 'materialize' to a group's leader, which then makes its topics
 * follow the metadata at once (metadata-sync.ts).
 */
export type TopicCallMode = 'client' | 'materialize';

export interface ClusterForwarder {
  createTopic(group: GroupLayout, name: string, queues: number, mode: TopicCallMode): Promise<TopicInfo | null>;
  deleteTopic(group: GroupLayout, name: string, mode: TopicCallMode): Promise<void>;
  /** The metadata a broker of `group` (the metadata group) holds, once past `knownVersion` or after `waitMs`. */
  fetchMetadata(group: GroupLayout, knownVersion: number, waitMs: number): Promise<ClusterMetadata>;
  addGroup(metadataGroup: GroupLayout, group: MetadataGroup): Promise<ClusterMetadata>;
  addQueues(metadataGroup: GroupLayout, topic: string, count: number): Promise<AddQueuesResult>;
  describeGroup(group: GroupLayout): Promise<GroupInfo>;
  /** The part of a consumer group's description that the group's leader holds (answered there, not forwarded on). */
  describeConsumerGroup(group: GroupLayout, consumerGroup: string, topic: string): Promise<ConsumerGroupDescription>;
  /** The consumer groups the group's leader knows (answered there, not forwarded on). */
  listConsumerGroups(group: GroupLayout): Promise<ConsumerGroupList>;
  /** Membership and leadership calls on the group's leader (membership.ts), each bounded by `timeoutMs`. */
  addReplica(group: GroupLayout, request: AddReplicaRequest, timeoutMs: number): Promise<AddReplicaResult>;
  removeReplica(group: GroupLayout, request: RemoveReplicaRequest, timeoutMs: number): Promise<MembershipChange>;
  transferLeader(group: GroupLayout, request: TransferLeaderRequest, timeoutMs: number): Promise<TransferLeaderResult>;
}

export class ClusterView {
  private readonly self: BrokerIdentity;
  private readonly group: GroupLayout;

  constructor(
    private readonly replica: Replica,
    private readonly placement: Placement,
    private readonly load: LoadMonitor,
    private readonly forwarder: ClusterForwarder,
  ) {
    this.self = placement.self;
    this.group = placement.group;
  }

  /**
   * This group as this broker sees it. Only the leader knows every replica's progress: a
   * follower asks it, and answers a forwarded request with a redirect to it.
   */
  async describeOwnGroup(forwarded: boolean): Promise<GroupInfo> {
    if (this.replica.isLeader || !this.replica.currentLeaderId) return this.localGroupInfo();
    if (forwarded) this.placement.requireLeader();
    try {
      return await this.forwarder.describeGroup(this.group);
    } catch {
      return this.localGroupInfo(); // the leader is unreachable: describe what this replica knows
    }
  }

  localGroupInfo(): GroupInfo {
    const status = this.replica.status();
    const nowMs = Date.now();
    const leader = this.replica.isLeader;
    // The members the log holds (voters, then learners); the cluster file only fills in addresses.
    const replicas = this.members(status).map((m): ReplicaInfo => {
      if (m.id === this.self.id) return this.ownReplicaInfo(m, status.highWatermark);
      const progress = status.replicas.find((r) => r.id === m.id);
      if (!leader || !progress) return unknownReplicaInfo(m, m.id === status.leaderId ? 'leader' : m.learner ? 'learner' : 'unknown');
      return this.followerInfo(m, progress, status.highWatermark, nowMs);
    });
    return {
      id: this.group.id,
      leaderId: status.leaderId ?? '',
      epoch: status.epoch,
      highWatermark: status.highWatermark,
      replicas,
      advice: leader ? this.advice(status.highWatermark) : null,
    };
  }

  /** The group's members with their client address (the log's endpoints, else the cluster file's; '' when neither). */
  private members(status: RaftStatus): GroupMember[] {
    const fromLog = status.members.map((m) => ({ id: m.id, address: m.clientAddress ?? this.fileAddress(m.id), learner: m.role === 'learner' }));
    return fromLog.length > 0 ? fromLog : this.group.brokers.map((b) => ({ id: b.id, address: clientAddress(b), learner: false }));
  }

  private fileAddress(id: string): string {
    const broker = this.group.brokers.find((b) => b.id === id);
    return broker ? clientAddress(broker) : '';
  }

  /** The client address of a member of this group (log endpoints, then the cluster file), or null. */
  memberAddress(id: string): string | null {
    return this.placement.memberAddress(id);
  }

  async describeCluster(): Promise<GroupInfo[]> {
    const groups: GroupInfo[] = [];
    const known = this.placement.groups();
    // A group not registered yet (started for `group add`) still describes itself.
    const all = known.some((g) => g.id === this.group.id) ? known : [...known, this.group];
    for (const group of all) {
      if (group.id === this.group.id) groups.push(await this.describeOwnGroup(false));
      else groups.push(await this.forwarder.describeGroup(group).catch(() => unreachableGroupInfo(group)));
    }
    return groups;
  }

  /** Where the consumer should read next; `neededLogOffset` is the log end it must find there. */
  advice(neededLogOffset: number): Advice {
    const self = { id: this.self.id, address: clientAddress(this.self) };
    if (!this.replica.isLeader) {
      const leaderId = this.replica.currentLeaderId;
      const leaderAddress = leaderId ? this.memberAddress(leaderId) : null;
      if (this.replica.committedOffset >= neededLogOffset) return { replicaId: self.id, address: self.address, reason: 'this follower holds the next offset' };
      return leaderId && leaderAddress
        ? { replicaId: leaderId, address: leaderAddress, reason: `follower ${this.self.id} does not hold the next offset yet; read from the leader` }
        : { replicaId: self.id, address: self.address, reason: 'no leader known; stay here' };
    }
    return adviseRead(self, this.load.sample(), this.followerViews(), neededLogOffset, this.self.settings.advice);
  }

  /** Voters whose client address is known (learners and members without one are never advised). */
  private followerViews(): FollowerView[] {
    const status = this.replica.status();
    const nowMs = Date.now();
    const { tickMs, fetchTimeoutMs } = this.self.settings;
    const views: FollowerView[] = [];
    for (const r of status.replicas) {
      const address = r.id === this.self.id || r.role !== 'voter' ? null : this.memberAddress(r.id);
      if (address === null) continue;
      const ageMs = r.ticksSinceFetch === null ? Infinity : r.ticksSinceFetch * tickMs;
      views.push({
        id: r.id,
        address,
        endOffset: r.matchedOffset,
        lagOffsets: Math.max(0, status.highWatermark - r.matchedOffset),
        lagMs: this.replica.followerLagMs(r.id, r.matchedOffset, nowMs),
        reachable: ageMs <= fetchTimeoutMs,
      });
    }
    return views;
  }

  private ownReplicaInfo(m: GroupMember, highWatermark: number): ReplicaInfo {
    const endOffset = this.replica.logEndOffset;
    return {
      id: m.id,
      address: m.address || clientAddress(this.self),
      role: m.learner && this.replica.roleLabel() === 'follower' ? 'learner' : this.replica.roleLabel(),
      endOffset,
      lagOffsets: Math.max(0, highWatermark - endOffset),
      lagMs: 0,
      lastFetchAgeMs: 0,
      reachable: true,
    };
  }

  /** A follower as the leader sees it through its Fetches. */
  private followerInfo(m: GroupMember, progress: ReplicaStatus, highWatermark: number, nowMs: number): ReplicaInfo {
    const ageMs = progress.ticksSinceFetch === null ? -1 : progress.ticksSinceFetch * this.self.settings.tickMs;
    return {
      id: m.id,
      address: m.address,
      role: progress.recovering ? 'recovering' : progress.role === 'learner' ? 'learner' : 'follower',
      endOffset: progress.matchedOffset,
      lagOffsets: Math.max(0, highWatermark - progress.matchedOffset),
      lagMs: this.replica.followerLagMs(m.id, progress.matchedOffset, nowMs),
      lastFetchAgeMs: ageMs,
      reachable: ageMs >= 0 && ageMs <= this.self.settings.fetchTimeoutMs,
    };
  }
}

/** A member of this group as the cluster view lists it. */
interface GroupMember {
  id: string;
  /** '' when neither the log nor the cluster file gives one. */
  address: string;
  learner: boolean;
}

function unknownReplicaInfo(b: GroupMember, role: string): ReplicaInfo {
  return { id: b.id, address: b.address, role, endOffset: 0, lagOffsets: 0, lagMs: 0, lastFetchAgeMs: -1, reachable: false };
}

/** Another group that did not answer. */
function unreachableGroupInfo(group: GroupLayout): GroupInfo {
  return {
    id: group.id,
    leaderId: '',
    epoch: 0,
    highWatermark: 0,
    advice: null,
    replicas: group.brokers.map((b) => unknownReplicaInfo({ id: b.id, address: clientAddress(b), learner: false }, 'unreachable')),
  };
}
