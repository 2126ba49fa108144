// Where requests may be served: which group holds a queue, and whether this broker leads its
// group. Produce, consume and admin check here before they touch the state. The groups and the
// group of each queue come from the cluster metadata (metadata.ts); before this broker has any
// (the metadata group's bootstrap), from the cluster file, queues dealt over its groups in order.
import { NotFoundError, NotLeaderError, UnavailableError } from '../errors.js';
import type { Replica } from '../replica/replica.js';
import { checkTopicName } from './names.js';
import { clientAddress, groupOf, groupOfQueue, type BrokerIdentity, type ClusterLayout, type GroupLayout } from './layout.js';
import type { ClusterMetadata, MetadataGroup, MetadataTopic } from './metadata.js';
import type { BrokerState, TopicInfo } from './state.js';

export class Placement {
  /** This broker's group. */
  readonly group: GroupLayout;

  constructor(
    readonly self: BrokerIdentity,
    readonly cluster: ClusterLayout,
    private readonly replica: Replica,
    private readonly state: BrokerState,
    private readonly metadata: () => ClusterMetadata,
  ) {
    this.group = groupOf(cluster, self);
  }

  /** Every group of the cluster: the metadata's, or the cluster file's before there is any. */
  groups(): readonly GroupLayout[] {
    const metadata = this.metadata();
    return metadata.version > 0 ? metadata.groups : this.cluster.groups;
  }

  /** The metadata version the groups and placement are read from (0: the cluster file's). */
  get metadataVersion(): number {
    return this.metadata().version;
  }

  /** The group that holds queue `queue` of `topic`. */
  groupOfQueue(topic: string, queue: number): GroupLayout {
    const metadata = this.metadata();
    if (metadata.version === 0) return groupOfQueue(this.cluster, queue);
    const placed = this.indexOf(metadata).topics.get(topic)?.placement[queue];
    // A topic the metadata does not have (yet): only the legacy placement can be said.
    if (placed === undefined) return groupOfQueue({ groups: metadata.groups }, queue);
    const group = this.indexOf(metadata).groups.get(placed);
    if (!group) throw new UnavailableError(`queue ${queue} of topic "${topic}" is placed on group ${placed}, which the metadata does not describe`);
    return group;
  }

  /** The metadata's topics and groups by name, made once per metadata (every produce looks here). */
  private indexOf(metadata: ClusterMetadata): { topics: Map<string, MetadataTopic>; groups: Map<string, MetadataGroup> } {
    if (this.index?.of !== metadata)
      this.index = { of: metadata, topics: new Map(metadata.topics.map((t) => [t.name, t])), groups: new Map(metadata.groups.map((g) => [g.id, g])) };
    return this.index;
  }

  private index: { of: ClusterMetadata; topics: Map<string, MetadataTopic>; groups: Map<string, MetadataGroup> } | null = null;

  /** The topic, when it has queue `queue` and that queue lives in this broker's group. */
  checkQueue(topic: string, queue: number): TopicInfo {
    checkTopicName(topic);
    const info = this.state.topic(topic);
    const metadata = this.metadata();
    const known = this.indexOf(metadata).topics.get(topic);
    if (!info) {
      // Created in the metadata, not yet in this group's log (it was down, or is catching up).
      if (known) throw new UnavailableError(`topic "${topic}" is not created in group ${this.group.id} yet; retry`);
      throw new NotFoundError(`topic "${topic}" does not exist`);
    }
    if (!Number.isInteger(queue) || queue < 0 || queue >= info.queues) {
      if (known && Number.isInteger(queue) && queue >= 0 && queue < known.placement.length)
        throw new UnavailableError(`queue ${queue} of topic "${topic}" is not added in group ${this.group.id} yet; retry`);
      throw new NotFoundError(`topic "${topic}" has no queue ${queue} (it has queues 0..${info.queues - 1})`);
    }
    const owner = this.groupOfQueue(topic, queue);
    if (owner.id !== this.group.id) {
      throw new NotLeaderError(`queue ${queue} of topic "${topic}" lives in group ${owner.id}, not ${this.group.id}`, null, clientAddress(owner.brokers[0]!));
    }
    return info;
  }

  /** Throws NotLeaderError naming the leader's client address when this broker is not it. */
  requireLeader(): void {
    if (this.replica.isLeader) return;
    const error = this.replica.notLeader();
    throw new NotLeaderError(error.message, error.leaderId, error.leaderId ? this.memberAddress(error.leaderId) : null);
  }

  /**
   * A member's client address: the one its membership entry carries (a replica added with
   * `replica add`), else the cluster file's; null when neither knows it.
   */
  memberAddress(id: string): string | null {
    const own = this.replica.membership.endpoints.find((m) => m.id === id)?.clientAddress;
    if (own !== undefined) return own;
    const broker = this.group.brokers.find((b) => b.id === id);
    return broker ? clientAddress(broker) : null;
  }
}
