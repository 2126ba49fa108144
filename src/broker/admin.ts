// Administration: topics (create and delete across every group, list, describe), consumer-group
// offsets (commit through the log, fetch, backlogs) and consumer-group membership (heartbeat).
import { assert } from '../assert.js';
import { AlreadyExistsError, NotFoundError, OutOfRangeError } from '../errors.js';
import type { Replica } from '../replica/replica.js';
import { CommandKind } from './commands.js';
import type { ClusterForwarder, GroupInfo } from './cluster-view.js';
import { GroupCoordinator, type HeartbeatResult } from './group-coordinator.js';
import { checkConsumerGroup, checkMemberId, checkQueueCount, checkTopicName, queueKey } from './names.js';
import type { Placement } from './placement.js';
import type { ProducePath } from './produce.js';
import type { BrokerState, TopicInfo } from './state.js';

/** A consumer-group member that misses heartbeats this long loses its queues. */
export const consumerSessionTimeoutMs = 6000;

export interface QueueInfo {
  queue: number;
  group: string;
  leaderId: string;
  startOffset: number;
  highWatermark: number;
}

/** Committed messages a consumer group has not committed past, on one queue. */
export interface ConsumerBacklog {
  consumerGroup: string;
  topic: string;
  queue: number;
  backlogMessages: number;
}

export interface AdminParts {
  replica: Replica;
  state: BrokerState;
  placement: Placement;
  /** Proposes a command and waits for its commit (produce.ts). */
  produce: ProducePath;
  forwarder: ClusterForwarder;
}

export class Admin {
  private readonly coordinator = new GroupCoordinator(consumerSessionTimeoutMs);

  constructor(private readonly parts: AdminParts) {}

  // ------------------------------------------------------------------ topics

  /** Creates the topic in this group, then (unless forwarded) in every other group. */
  async createTopic(name: string, queues: number, forwarded: boolean): Promise<TopicInfo> {
    const { state, placement } = this.parts;
    checkTopicName(name);
    checkQueueCount(queues);
    const existing = state.topic(name);
    if (existing && existing.queues !== queues) throw new AlreadyExistsError(`topic "${name}" already exists with ${existing.queues} queues`);
    if (!existing) await this.parts.produce.replicate({ kind: CommandKind.CreateTopic, name, queues, createdMs: Date.now() });
    if (!forwarded) {
      for (const group of placement.cluster.groups) if (group.id !== placement.group.id) await this.parts.forwarder.createTopic(group, name, queues);
    }
    const created = state.topic(name);
    assert(created !== undefined, 'create topic: committed but not applied');
    if (created.queues !== queues) throw new AlreadyExistsError(`topic "${name}" already exists with ${created.queues} queues`);
    return created;
  }

  async deleteTopic(name: string, forwarded: boolean): Promise<void> {
    const { state, placement } = this.parts;
    if (!state.topic(name)) throw new NotFoundError(`topic "${name}" does not exist`);
    await this.parts.produce.replicate({ kind: CommandKind.DeleteTopic, name });
    if (forwarded) return;
    for (const group of placement.cluster.groups) {
      if (group.id === placement.group.id) continue;
      await this.parts.forwarder.deleteTopic(group, name).catch((error: Error) => {
        if (!(error instanceof NotFoundError)) throw error;
      });
    }
  }

  listTopics(): TopicInfo[] {
    return this.parts.state.topicList().sort((a, b) => a.name.localeCompare(b.name));
  }

  describeTopic(name: string, groups: GroupInfo[]): { topic: TopicInfo; queues: QueueInfo[] } {
    const { state, placement, replica } = this.parts;
    const topic = state.topic(name);
    if (!topic) throw new NotFoundError(`topic "${name}" does not exist`);
    const queues: QueueInfo[] = [];
    for (let q = 0; q < topic.queues; q++) {
      const group = placement.groupOfQueue(q);
      const info = groups.find((g) => g.id === group.id);
      const own = group.id === placement.group.id;
      const key = queueKey(name, q);
      queues.push({
        queue: q,
        group: group.id,
        leaderId: info?.leaderId ?? '',
        startOffset: own ? state.index.startOffset(key) : 0,
        highWatermark: own ? state.index.committedEndOffset(key, replica.committedOffset) : 0,
      });
    }
    return { topic, queues };
  }

  // ------------------------------------------------------------------ consumer offsets

  async commitOffset(consumerGroup: string, topic: string, queue: number, offset: number): Promise<void> {
    const { state, placement, replica } = this.parts;
    checkConsumerGroup(consumerGroup);
    placement.checkQueue(topic, queue);
    const end = state.index.committedEndOffset(queueKey(topic, queue), replica.committedOffset);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > end) {
      throw new OutOfRangeError(`cannot commit offset ${offset} for queue ${queue} of "${topic}": valid offsets are 0..${end}`, 0, end);
    }
    await this.parts.produce.replicate({ kind: CommandKind.CommitOffset, consumerGroup, topic, queue, offset });
  }

  fetchOffset(consumerGroup: string, topic: string, queue: number): number | null {
    checkConsumerGroup(consumerGroup);
    this.parts.placement.checkQueue(topic, queue);
    return this.parts.state.consumerOffset(consumerGroup, topic, queue) ?? null;
  }

  /** Every committed consumer-group offset on a queue of this group, with the messages after it. */
  consumerBacklogs(): ConsumerBacklog[] {
    const { state, placement, replica } = this.parts;
    const highWatermark = replica.committedOffset;
    const backlogs: ConsumerBacklog[] = [];
    for (const { consumerGroup, topic, queue, offset } of state.consumerOffsetEntries()) {
      if (!state.topic(topic) || placement.groupOfQueue(queue).id !== placement.group.id) continue;
      const end = state.index.committedEndOffset(queueKey(topic, queue), highWatermark);
      backlogs.push({ consumerGroup, topic, queue, backlogMessages: Math.max(0, end - offset) });
    }
    return backlogs;
  }

  // ------------------------------------------------------------------ membership

  /** Consumer-group membership; served by the leader of the group that holds queue 0. */
  heartbeat(consumerGroup: string, topic: string, memberId: string, owned: number[], leave: boolean): HeartbeatResult {
    checkConsumerGroup(consumerGroup);
    checkMemberId(memberId);
    const info = this.parts.placement.checkQueue(topic, 0);
    this.parts.placement.requireLeader();
    return this.coordinator.heartbeat(consumerGroup, topic, info.queues, memberId, owned, leave, Date.now());
  }

  /** This broker stopped leading: the membership it coordinated is learnt again by the next leader. */
  forgetMembership(): void {
    this.coordinator.clear();
  }
}
