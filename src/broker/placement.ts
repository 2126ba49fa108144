// Where requests may be served: which group holds a queue, and whether this broker leads its
// group. Produce, consume and admin check here before they touch the state.
import { NotFoundError, NotLeaderError } from '../errors.js';
import type { Replica } from '../replica/replica.js';
import { checkTopicName } from './names.js';
import { clientAddress, groupOf, groupOfQueue, type BrokerIdentity, type ClusterLayout, type GroupLayout } from './layout.js';
import type { BrokerState, TopicInfo } from './state.js';

export class Placement {
  /** This broker's group. */
  readonly group: GroupLayout;

  constructor(
    readonly self: BrokerIdentity,
    readonly cluster: ClusterLayout,
    private readonly replica: Replica,
    private readonly state: BrokerState,
  ) {
    this.group = groupOf(cluster, self);
  }

  groupOfQueue(queue: number): GroupLayout {
    return groupOfQueue(this.cluster, queue);
  }

  /** The topic, when it has queue `queue` and that queue lives in this broker's group. */
  checkQueue(topic: string, queue: number): TopicInfo {
    checkTopicName(topic);
    const info = this.state.topic(topic);
    if (!info) throw new NotFoundError(`topic "${topic}" does not exist`);
    if (!Number.isInteger(queue) || queue < 0 || queue >= info.queues) {
      throw new NotFoundError(`topic "${topic}" has no queue ${queue} (it has queues 0..${info.queues - 1})`);
    }
    const owner = this.groupOfQueue(queue);
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
