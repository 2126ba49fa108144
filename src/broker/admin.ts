// Administration: topics (create and delete across every group, list, describe), consumer-group
// offsets (commit through the log, fetch, backlogs and lag), consumer-group membership
// (heartbeat), and consumer groups as described to operators (list, describe: cluster-wide, each
// group's leader answering for the queues it holds).
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, MambaError, NotFoundError, OutOfRangeError, UnavailableError } from '../errors.js';
import type { Logger } from '../replica/logger.js';
import type { Replica } from '../replica/replica.js';
import { CommandKind } from './commands.js';
import type {
  AddQueuesResult,
  ClusterForwarder,
  ConsumerGroupDescription,
  ConsumerGroupList,
  ConsumerGroupListing,
  ConsumerGroupQueue,
  GroupInfo,
} from './cluster-view.js';
import { GroupCoordinator, type HeartbeatResult } from './group-coordinator.js';
import { clientAddress, type GroupLayout } from './layout.js';
import { placeQueues, topicOf, type ClusterMetadata, type MetadataGroup } from './metadata.js';
import type { MetadataSync } from './metadata-sync.js';
import { checkConsumerGroup, checkMemberId, checkQueueCount, checkTopicName, queueKey, queuesPerTopicMax } from './names.js';
import type { Placement } from './placement.js';
import type { ProducePath } from './produce.js';
import type { BrokerState, TopicInfo } from './state.js';

/** Placement by load compares groups' stored entries in steps of this many (see groupLoad). */
export const placementLoadStepEntries = 100_000;

/** How long the metadata group's leader waits for another group to follow a topic change before answering. */
const followTimeoutMs = 5000;

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new UnavailableError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** A consumer-group member that misses heartbeats this long loses its queues. */
export const consumerSessionTimeoutMs = 6000;

export interface QueueInfo {
  queue: number;
  group: string;
  leaderId: string;
  startOffset: number;
  highWatermark: number;
}

/**
 * A consumer group on one queue of this group, for the metrics: every queue of a topic on which
 * the consumer group has committed an offset (on any queue this group holds) or has live members.
 */
export interface ConsumerBacklog {
  consumerGroup: string;
  topic: string;
  queue: number;
  /** Committed messages after the committed offset; null when nothing is committed on this queue. */
  backlogMessages: number | null;
  /** What DescribeConsumerGroup shows (consumerLagMessages). */
  lagMessages: number;
}

/** The most consumer groups (per topic) one ListConsumerGroups answer carries, and one group's part of it. */
export const consumerGroupListingsMax = 4096;
/** The most entries consumerBacklogs() gives (metric series per broker), in (consumer group, topic, queue) order. */
export const consumerBacklogsMax = 20_000;

/**
 * Messages a consumer group has still to read on a queue: from its committed offset (or, when it
 * committed nothing, from the queue's start) to the queue's committed end. A committed offset below
 * the start (retention removed what it had not read) counts from the start: those messages are gone.
 */
export function consumerLagMessages(endOffset: number, startOffset: number, committedOffset: number | null): number {
  return Math.max(0, endOffset - Math.max(startOffset, committedOffset ?? startOffset));
}

export interface AdminParts {
  sync: MetadataSync;
  logger: Logger;
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

  // Topics live in the cluster metadata (metadata.ts): creating, growing or deleting one is one
  // entry in the metadata group's log, made by its leader; any other broker passes the call on
  // there. After the entry commits, the metadata group's leader asks every group's leader to follow
  // it at once ('materialize'); a group that does not answer follows when it next can
  // (metadata-sync.ts). A 'materialize' call (forwarded) makes this group follow the metadata now.

  /** Creates the topic (metadata group's leader), or passes the call there. */
  async createTopic(name: string, queues: number, forwarded: boolean): Promise<TopicInfo> {
    const { placement, sync } = this.parts;
    checkTopicName(name);
    checkQueueCount(queues);
    if (forwarded && !sync.isMetadataGroup) return this.materialize(name);
    if (!sync.isMetadataGroup) {
      const created = await this.onMetadataGroup((group) => this.parts.forwarder.createTopic(group, name, queues, 'client'));
      if (!created) throw new UnavailableError(`the metadata group answered the creation of "${name}" without the topic; retry`);
      return created;
    }
    placement.requireLeader();
    await sync.bootstrapIfNeeded();
    let topic = topicOf(sync.current, name);
    if (topic && topic.placement.length !== queues) throw new AlreadyExistsError(`topic "${name}" already exists with ${topic.placement.length} queues`);
    if (!topic) {
      const groupLoad = await this.groupLoad();
      await sync.propose({ change: 'place-topic', topic: { name, createdMs: Date.now(), placement: placeQueues(sync.current, queues, groupLoad) } });
      topic = topicOf(sync.current, name);
      if (!topic) throw new UnavailableError(`topic "${name}" was deleted while it was being created; retry`);
      if (topic.placement.length !== queues) throw new AlreadyExistsError(`topic "${name}" already exists with ${topic.placement.length} queues`);
      const t = topic;
      this.parts.logger.info('topic.placed', { topic: name, queues, placement: t.placement, metadataVersion: sync.current.version });
    }
    await this.followEverywhere((group) => this.parts.forwarder.createTopic(group, name, queues, 'materialize'));
    return { name, queues: topic.placement.length, createdMs: topic.createdMs };
  }

  async deleteTopic(name: string, forwarded: boolean): Promise<void> {
    const { placement, sync } = this.parts;
    checkTopicName(name);
    if (forwarded && !sync.isMetadataGroup) {
      await this.materialize(name);
      return;
    }
    if (!sync.isMetadataGroup) {
      await this.onMetadataGroup((group) => this.parts.forwarder.deleteTopic(group, name, 'client'));
      return;
    }
    placement.requireLeader();
    await sync.bootstrapIfNeeded();
    const topic = topicOf(sync.current, name);
    if (!topic) throw new NotFoundError(`topic "${name}" does not exist`);
    await sync.propose({ change: 'delete-topic', name, createdMs: topic.createdMs });
    this.parts.logger.info('topic.unplaced', { topic: name, metadataVersion: sync.current.version });
    await this.followEverywhere((group) => this.parts.forwarder.deleteTopic(group, name, 'materialize'));
  }

  /** Grows a topic by `count` queues placed by load; the existing ones stay where they are. */
  async addQueues(name: string, count: number): Promise<AddQueuesResult> {
    const { placement, sync } = this.parts;
    checkTopicName(name);
    if (!Number.isSafeInteger(count) || count < 1) throw new InvalidArgumentError(`count must be a positive integer, got ${count}`);
    if (!sync.isMetadataGroup) return this.onMetadataGroup((group) => this.parts.forwarder.addQueues(group, name, count));
    placement.requireLeader();
    await sync.bootstrapIfNeeded();
    const topic = topicOf(sync.current, name);
    if (!topic) throw new NotFoundError(`topic "${name}" does not exist`);
    const total = topic.placement.length + count;
    if (total > queuesPerTopicMax)
      throw new OutOfRangeError(
        `topic "${name}" has ${topic.placement.length} queues: ${count} more is over the limit of ${queuesPerTopicMax}`,
        0,
        queuesPerTopicMax,
      );
    const added = placeQueues(sync.current, count, await this.groupLoad());
    await sync.propose({ change: 'place-topic', topic: { ...topic, placement: [...topic.placement, ...added] } });
    const grown = topicOf(sync.current, name);
    if (!grown || grown.createdMs !== topic.createdMs) throw new UnavailableError(`topic "${name}" was deleted while it was being grown; retry`);
    this.parts.logger.info('topic.queues_added', { topic: name, added: added.length, queues: grown.placement.length, placement: added });
    await this.followEverywhere((group) => this.parts.forwarder.createTopic(group, name, grown.placement.length, 'materialize'));
    return {
      topic: { name, queues: grown.placement.length, createdMs: grown.createdMs },
      placement: [...grown.placement],
      metadataVersion: sync.current.version,
    };
  }

  /**
   * Registers a group (its brokers started with a cluster file naming it) in the metadata. Its
   * id and its brokers' ids and addresses must be new, and it must answer with a leader.
   */
  async addGroup(group: MetadataGroup): Promise<ClusterMetadata> {
    const { placement, sync } = this.parts;
    if (!sync.isMetadataGroup) return this.onMetadataGroup((metadataGroup) => this.parts.forwarder.addGroup(metadataGroup, group));
    placement.requireLeader();
    await sync.bootstrapIfNeeded();
    const metadata = sync.current;
    if (metadata.groups.some((g) => g.id === group.id)) throw new AlreadyExistsError(`group ${group.id} already exists`);
    if (group.brokers.length === 0) throw new InvalidArgumentError(`group ${group.id} names no broker`);
    for (const broker of group.brokers) {
      for (const other of metadata.groups) {
        for (const known of other.brokers) {
          if (known.id === broker.id) throw new InvalidArgumentError(`broker id ${broker.id} is already used in group ${other.id}`);
          if (clientAddress(known) === clientAddress(broker))
            throw new InvalidArgumentError(`address ${clientAddress(broker)} of ${broker.id} is already used by ${known.id} of group ${other.id}`);
        }
      }
    }
    let described: GroupInfo;
    try {
      described = await this.parts.forwarder.describeGroup(group);
    } catch (error) {
      throw new FailedPreconditionError(`group ${group.id} does not answer (${(error as Error).message}): start its brokers first`);
    }
    if (!described.leaderId) throw new FailedPreconditionError(`group ${group.id} has no leader yet: start its brokers and wait for an election`);
    await sync.propose({ change: 'add-group', group });
    this.parts.logger.info('metadata.group_added', { group: group.id, brokers: group.brokers.map((b) => b.id), metadataVersion: sync.current.version });
    return sync.current;
  }

  /** This group follows the metadata now (a 'materialize' call): the topic as this group has it. */
  private async materialize(name: string): Promise<TopicInfo> {
    const { placement, state, sync } = this.parts;
    placement.requireLeader();
    await sync.refreshNow();
    await sync.reconcile();
    const topic = state.topic(name);
    if (topic) return topic;
    if (topicOf(sync.current, name)) throw new UnavailableError(`topic "${name}" is not created in group ${placement.group.id} yet; retry`);
    return { name, queues: 0, createdMs: 0 }; // deleted here, as the metadata says
  }

  private onMetadataGroup<T>(call: (group: GroupLayout) => Promise<T>): Promise<T> {
    return call(this.parts.sync.metadataGroup());
  }

  /** Every group's leader follows the metadata now; one that does not answer in time does later. */
  private async followEverywhere(call: (group: GroupLayout) => Promise<unknown>): Promise<void> {
    const { placement, sync } = this.parts;
    await sync.reconcile();
    await Promise.all(
      placement
        .groups()
        .filter((g) => g.id !== placement.group.id)
        .map((group) =>
          withTimeout(call(group), followTimeoutMs).catch((error: Error) =>
            this.parts.logger.warn('metadata.follow_later', {
              group: group.id,
              reason: error.message,
              detail: 'the group follows the metadata when it next can',
            }),
          ),
        ),
    );
  }

  /**
   * Each group's stored entries (its high watermark) in steps of placementLoadStepEntries, for the
   * tie-break of placement by load: a group that does not answer counts as the fullest. Steps, so
   * that groups of about the same size keep the group order (a new cluster deals queues in order).
   */
  private async groupLoad(): Promise<(group: string) => number> {
    const answers = await this.askEveryGroup(
      () => this.parts.replica.committedOffset,
      async (group) => (await this.parts.forwarder.describeGroup(group)).highWatermark,
    );
    const load = new Map(answers.map((a) => [a.group, a.answer === null ? Number.MAX_SAFE_INTEGER : Math.floor(a.answer / placementLoadStepEntries)]));
    return (group) => load.get(group) ?? Number.MAX_SAFE_INTEGER;
  }

  /** The cluster's topics: the metadata's once there is one (a group catching up lists them too), else this group's. */
  listTopics(): TopicInfo[] {
    const metadata = this.parts.sync.current;
    const topics =
      metadata.version > 0 ? metadata.topics.map((t) => ({ name: t.name, queues: t.placement.length, createdMs: t.createdMs })) : this.parts.state.topicList();
    return topics.sort((a, b) => a.name.localeCompare(b.name));
  }

  describeTopic(name: string, groups: GroupInfo[]): { topic: TopicInfo; queues: QueueInfo[] } {
    const { state, placement, replica, sync } = this.parts;
    const placed = topicOf(sync.current, name);
    // The metadata's queue count (a topic grown there is described whole); a queue of this group
    // that it has not created yet shows offsets 0.
    const topic = placed ? { name, queues: placed.placement.length, createdMs: placed.createdMs } : state.topic(name);
    if (!topic) throw new NotFoundError(`topic "${name}" does not exist`);
    const local = state.topic(name);
    const localIsCurrent = local !== undefined && (placed === undefined || placed.legacy === true || local.createdMs === placed.createdMs);
    const queues: QueueInfo[] = [];
    for (let q = 0; q < topic.queues; q++) {
      const group = placement.groupOfQueue(name, q);
      const info = groups.find((g) => g.id === group.id);
      const own = group.id === placement.group.id && localIsCurrent && q < local.queues;
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

  /**
   * Per consumer group known here (a committed offset on a queue of this group, or live members on
   * this coordinator), every queue of its topic that this group holds: the backlog (committed
   * queues only) and the lag. At most consumerBacklogsMax entries.
   */
  consumerBacklogs(): ConsumerBacklog[] {
    const highWatermark = this.parts.replica.committedOffset;
    const backlogs: ConsumerBacklog[] = [];
    for (const { consumerGroup, topic } of this.knownConsumerGroups()) {
      for (const queue of this.ownQueues(topic)) {
        if (backlogs.length >= consumerBacklogsMax) return backlogs;
        const q = this.consumerGroupQueue(consumerGroup, topic.name, queue, highWatermark);
        const backlogMessages = q.committedOffset === null ? null : Math.max(0, q.endOffset - q.committedOffset);
        backlogs.push({ consumerGroup, topic: topic.name, queue, backlogMessages, lagMessages: q.lagMessages });
      }
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

  // ------------------------------------------------------------------ consumer groups, described

  /**
   * A consumer group on a topic, cluster-wide: each group's leader describes the queues it holds
   * (the one holding queue 0 also the members); a group that does not answer is named in
   * groupsUnreachable. Forwarded: only this group's part, from its leader.
   */
  async describeConsumerGroup(consumerGroup: string, topicName: string, forwarded: boolean): Promise<ConsumerGroupDescription> {
    checkConsumerGroup(consumerGroup);
    checkTopicName(topicName);
    const topic = this.parts.state.topic(topicName);
    if (!topic) throw new NotFoundError(`topic "${topicName}" does not exist`);
    if (forwarded) {
      this.parts.placement.requireLeader();
      return this.consumerGroupPart(consumerGroup, topic);
    }
    const answers = await this.askEveryGroup(
      () => this.consumerGroupPart(consumerGroup, topic),
      (group) => this.parts.forwarder.describeConsumerGroup(group, consumerGroup, topicName),
    );
    const described = mergeConsumerGroupParts(consumerGroup, topicName, answers, this.coordinator.sessionTimeoutMs);
    if (described.members.length === 0 && described.queues.every((q) => q.committedOffset === null)) {
      if (described.groupsUnreachable.length > 0)
        throw new UnavailableError(
          `consumer group "${consumerGroup}" is not known on topic "${topicName}" by the groups that answered; ${described.groupsUnreachable.join(', ')} did not answer`,
        );
      throw new NotFoundError(`consumer group "${consumerGroup}" has no committed offset and no live member on topic "${topicName}"`);
    }
    return described;
  }

  /** Every consumer group with a committed offset or live members, per topic, cluster-wide (forwarded: this group's part). */
  async listConsumerGroups(forwarded: boolean): Promise<ConsumerGroupList> {
    if (forwarded) {
      this.parts.placement.requireLeader();
      return this.consumerGroupListPart();
    }
    const answers = await this.askEveryGroup(
      () => this.consumerGroupListPart(),
      (group) => this.parts.forwarder.listConsumerGroups(group),
    );
    return mergeConsumerGroupLists(answers);
  }

  /**
   * Each group's answer (null for a group that did not answer): this broker's own when it leads
   * its group, else its leader's through the forwarder, like every other group's. Asked at once.
   */
  private askEveryGroup<T>(local: () => T, forward: (group: GroupLayout) => Promise<T>): Promise<Array<{ group: string; answer: T | null }>> {
    const { placement, replica } = this.parts;
    return Promise.all(
      placement.groups().map(async (group) => {
        try {
          const answer = group.id === placement.group.id && replica.isLeader ? local() : await forward(group);
          return { group: group.id, answer };
        } catch (error) {
          if (error instanceof MambaError && error.retriable) return { group: group.id, answer: null };
          throw error;
        }
      }),
    );
  }

  /** What this group holds of a consumer group on a topic: its queues and, as coordinator, the members. */
  private consumerGroupPart(consumerGroup: string, topic: TopicInfo): ConsumerGroupDescription {
    const highWatermark = this.parts.replica.committedOffset;
    const queues = this.ownQueues(topic).map((q) => this.consumerGroupQueue(consumerGroup, topic.name, q, highWatermark));
    const membership = this.coordinator.describe(consumerGroup, topic.name, Date.now());
    return {
      consumerGroup,
      topic: topic.name,
      members: membership?.members ?? [],
      queues,
      lagMessages: queues.reduce((sum, q) => sum + q.lagMessages, 0),
      generation: membership?.generation ?? 0,
      sessionTimeoutMs: this.coordinator.sessionTimeoutMs,
      groupsUnreachable: [],
    };
  }

  private consumerGroupQueue(consumerGroup: string, topic: string, queue: number, highWatermark: number): ConsumerGroupQueue {
    const { state, placement } = this.parts;
    const key = queueKey(topic, queue);
    const startOffset = state.index.startOffset(key);
    const endOffset = state.index.committedEndOffset(key, highWatermark);
    const committedOffset = state.consumerOffset(consumerGroup, topic, queue) ?? null;
    const lagMessages = consumerLagMessages(endOffset, startOffset, committedOffset);
    return { queue, group: placement.group.id, committedOffset, startOffset, endOffset, lagMessages, memberId: '' };
  }

  /** The consumer groups this group knows, with its own counts, cut at consumerGroupListingsMax. */
  private consumerGroupListPart(): ConsumerGroupList {
    const listings = new Map<string, ConsumerGroupListing>();
    const listing = (consumerGroup: string, topic: string): ConsumerGroupListing => {
      const key = listingKey(consumerGroup, topic);
      let found = listings.get(key);
      if (!found) listings.set(key, (found = { consumerGroup, topic, memberCount: 0, committedQueueCount: 0 }));
      return found;
    };
    for (const { consumerGroup, topic } of this.ownConsumerOffsets()) listing(consumerGroup, topic).committedQueueCount++;
    for (const { consumerGroup, topic, memberCount } of this.coordinator.activeGroups(Date.now()))
      if (this.parts.state.topic(topic)) listing(consumerGroup, topic).memberCount = memberCount;
    const sorted = [...listings.values()].sort(byListing);
    return { consumerGroups: sorted.slice(0, consumerGroupListingsMax), groupsUnreachable: [], truncated: sorted.length > consumerGroupListingsMax };
  }

  /** (consumer group, topic) pairs known here, in order: committed offsets on this group's queues, live members. */
  private knownConsumerGroups(): Array<{ consumerGroup: string; topic: TopicInfo }> {
    const known = new Map<string, { consumerGroup: string; topic: TopicInfo }>();
    const add = (consumerGroup: string, topicName: string): void => {
      const topic = this.parts.state.topic(topicName);
      if (topic) known.set(listingKey(consumerGroup, topicName), { consumerGroup, topic });
    };
    for (const { consumerGroup, topic } of this.ownConsumerOffsets()) add(consumerGroup, topic);
    for (const { consumerGroup, topic } of this.coordinator.activeGroups(Date.now())) add(consumerGroup, topic);
    return [...known.values()].sort((a, b) =>
      byListing({ consumerGroup: a.consumerGroup, topic: a.topic.name }, { consumerGroup: b.consumerGroup, topic: b.topic.name }),
    );
  }

  /** Committed offsets on queues of existing topics that this group holds. */
  private *ownConsumerOffsets(): IterableIterator<{ consumerGroup: string; topic: string; queue: number; offset: number }> {
    const { state, placement } = this.parts;
    for (const entry of state.consumerOffsetEntries()) {
      const topic = state.topic(entry.topic);
      if (topic && entry.queue < topic.queues && placement.groupOfQueue(entry.topic, entry.queue).id === placement.group.id) yield entry;
    }
  }

  /** The queues of `topic` this group holds, in order. */
  private ownQueues(topic: TopicInfo): number[] {
    const { placement } = this.parts;
    const queues: number[] = [];
    for (let q = 0; q < topic.queues; q++) if (placement.groupOfQueue(topic.name, q).id === placement.group.id) queues.push(q);
    return queues;
  }
}

function listingKey(consumerGroup: string, topic: string): string {
  return JSON.stringify([consumerGroup, topic]);
}

function byListing(a: { consumerGroup: string; topic: string }, b: { consumerGroup: string; topic: string }): number {
  return compareText(a.consumerGroup, b.consumerGroup) || compareText(a.topic, b.topic);
}

/** Code-unit order (the same on every broker, unlike localeCompare). */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One description from the groups' parts: their queues in order, the coordinator's members, each queue's assigned member. */
export function mergeConsumerGroupParts(
  consumerGroup: string,
  topic: string,
  answers: ReadonlyArray<{ group: string; answer: ConsumerGroupDescription | null }>,
  sessionTimeoutMs: number,
): ConsumerGroupDescription {
  const parts = answers.flatMap((a) => (a.answer ? [a.answer] : []));
  const coordinator = parts.find((p) => p.members.length > 0);
  const members = coordinator?.members ?? [];
  const owners = new Map<number, string>();
  for (const m of members) for (const q of m.assignedQueues) owners.set(q, m.memberId);
  const queues = parts
    .flatMap((p) => p.queues)
    .map((q) => ({ ...q, memberId: owners.get(q.queue) ?? '' }))
    .sort((a, b) => a.queue - b.queue);
  return {
    consumerGroup,
    topic,
    members,
    queues,
    lagMessages: queues.reduce((sum, q) => sum + q.lagMessages, 0),
    generation: coordinator?.generation ?? 0,
    sessionTimeoutMs: coordinator?.sessionTimeoutMs ?? sessionTimeoutMs,
    groupsUnreachable: answers.filter((a) => a.answer === null).map((a) => a.group),
  };
}

/**
 * One list from the groups' lists, counts summed. A part that was cut covers every entry up to its
 * last one only: entries after the first such cut are left out (and the answer says it is cut), so
 * every count given is complete.
 */
export function mergeConsumerGroupLists(answers: ReadonlyArray<{ group: string; answer: ConsumerGroupList | null }>): ConsumerGroupList {
  const merged = new Map<string, ConsumerGroupListing>();
  let cutAfter: ConsumerGroupListing | null = null;
  for (const { answer } of answers) {
    if (!answer) continue;
    const last = answer.consumerGroups.at(-1);
    if (answer.truncated && last && (cutAfter === null || byListing(last, cutAfter) < 0)) cutAfter = last;
    for (const l of answer.consumerGroups) {
      const key = listingKey(l.consumerGroup, l.topic);
      const found = merged.get(key);
      if (found) {
        found.memberCount += l.memberCount;
        found.committedQueueCount += l.committedQueueCount;
      } else merged.set(key, { ...l });
    }
  }
  const complete = [...merged.values()].filter((l) => cutAfter === null || byListing(l, cutAfter) <= 0).sort(byListing);
  return {
    consumerGroups: complete.slice(0, consumerGroupListingsMax),
    groupsUnreachable: answers.filter((a) => a.answer === null).map((a) => a.group),
    truncated: cutAfter !== null || complete.length > consumerGroupListingsMax,
  };
}
