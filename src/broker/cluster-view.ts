// The cluster as this broker sees it: its own group (every replica's progress, on the leader),
// the other groups (asked through the forwarder), and the read advice that rides on every
// Consume reply (DESIGN §5).
import type { ReplicaStatus } from '../raft/types.js';
import type { Replica } from '../replica/replica.js';
import { adviseRead, type Advice, type FollowerView } from './advice.js';
import { clientAddress, type BrokerEndpoint, type BrokerIdentity, type ClusterLayout, type GroupLayout } from './layout.js';
import type { LoadMonitor } from './load.js';
import type { Placement } from './placement.js';

export interface ReplicaInfo {
  id: string;
  address: string;
  role: string;
  endOffset: number;
  lagOffsets: number;
  lagMs: number;
  lastFetchAgeMs: number;
  reachable: boolean;
}

export interface GroupInfo {
  id: string;
  leaderId: string;
  epoch: number;
  highWatermark: number;
  replicas: ReplicaInfo[];
  advice: Advice | null;
}

/** How a broker reaches the other groups (and its own leader) for cluster-wide requests. */
export interface ClusterForwarder {
  createTopic(group: GroupLayout, name: string, queues: number): Promise<void>;
  deleteTopic(group: GroupLayout, name: string): Promise<void>;
  describeGroup(group: GroupLayout): Promise<GroupInfo>;
}

export class ClusterView {
  private readonly self: BrokerIdentity;
  private readonly cluster: ClusterLayout;
  private readonly group: GroupLayout;

  constructor(
    private readonly replica: Replica,
    private readonly placement: Placement,
    private readonly load: LoadMonitor,
    private readonly forwarder: ClusterForwarder,
  ) {
    this.self = placement.self;
    this.cluster = placement.cluster;
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
    const replicas = this.group.brokers.map((b): ReplicaInfo => {
      if (b.id === this.self.id) return this.ownReplicaInfo(b, status.highWatermark);
      const progress = status.replicas.find((r) => r.id === b.id);
      if (!leader || !progress) return unknownReplicaInfo(b, b.id === status.leaderId ? 'leader' : 'unknown');
      return this.followerInfo(b, progress, status.highWatermark, nowMs);
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

  async describeCluster(): Promise<GroupInfo[]> {
    const groups: GroupInfo[] = [];
    for (const group of this.cluster.groups) {
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
      const leader = this.group.brokers.find((b) => b.id === leaderId);
      if (this.replica.committedOffset >= neededLogOffset) return { replicaId: self.id, address: self.address, reason: 'this follower holds the next offset' };
      return leader
        ? { replicaId: leader.id, address: clientAddress(leader), reason: `follower ${this.self.id} does not hold the next offset yet; read from the leader` }
        : { replicaId: self.id, address: self.address, reason: 'no leader known; stay here' };
    }
    return adviseRead(self, this.load.sample(), this.followerViews(), neededLogOffset, this.self.settings.advice);
  }

  private followerViews(): FollowerView[] {
    const status = this.replica.status();
    const nowMs = Date.now();
    const { tickMs, fetchTimeoutMs } = this.self.settings;
    return status.replicas
      .filter((r) => r.id !== this.self.id)
      .map((r) => {
        const broker = this.group.brokers.find((b) => b.id === r.id);
        const ageMs = r.ticksSinceFetch === null ? Infinity : r.ticksSinceFetch * tickMs;
        return {
          id: r.id,
          address: broker ? clientAddress(broker) : '',
          endOffset: r.matchedOffset,
          lagOffsets: Math.max(0, status.highWatermark - r.matchedOffset),
          lagMs: this.replica.followerLagMs(r.id, r.matchedOffset, nowMs),
          reachable: ageMs <= fetchTimeoutMs,
        };
      });
  }

  private ownReplicaInfo(b: BrokerEndpoint, highWatermark: number): ReplicaInfo {
    const endOffset = this.replica.logEndOffset;
    return {
      id: b.id,
      address: clientAddress(b),
      role: this.replica.roleLabel(),
      endOffset,
      lagOffsets: Math.max(0, highWatermark - endOffset),
      lagMs: 0,
      lastFetchAgeMs: 0,
      reachable: true,
    };
  }

  /** A follower as the leader sees it through its Fetches. */
  private followerInfo(b: BrokerEndpoint, progress: ReplicaStatus, highWatermark: number, nowMs: number): ReplicaInfo {
    const ageMs = progress.ticksSinceFetch === null ? -1 : progress.ticksSinceFetch * this.self.settings.tickMs;
    return {
      id: b.id,
      address: clientAddress(b),
      role: progress.recovering ? 'recovering' : 'follower',
      endOffset: progress.matchedOffset,
      lagOffsets: Math.max(0, highWatermark - progress.matchedOffset),
      lagMs: this.replica.followerLagMs(b.id, progress.matchedOffset, nowMs),
      lastFetchAgeMs: ageMs,
      reachable: ageMs >= 0 && ageMs <= this.self.settings.fetchTimeoutMs,
    };
  }
}

function unknownReplicaInfo(b: BrokerEndpoint, role: string): ReplicaInfo {
  return { id: b.id, address: clientAddress(b), role, endOffset: 0, lagOffsets: 0, lagMs: 0, lastFetchAgeMs: -1, reachable: false };
}

/** Another group that did not answer. */
function unreachableGroupInfo(group: GroupLayout): GroupInfo {
  return {
    id: group.id,
    leaderId: '',
    epoch: 0,
    highWatermark: 0,
    advice: null,
    replicas: group.brokers.map((b) => unknownReplicaInfo(b, 'unreachable')),
  };
}
