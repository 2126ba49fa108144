// The broker's state and its apply: topics and consumer offsets (from committed commands, kept in
// the broker's store with the applied offset), the queue index and the producer table (from every
// appended Messages command, rebuilt from the log on each start). The replica drives it through
// the StateMachine calls; produce, consume and admin read it.
import { assert } from '../assert.js';
import type { Entry } from '../raft/types.js';
import { CommandKind, decodeEntry, type CommitOffsetCommand, type CreateTopicCommand, type DeleteTopicCommand } from './commands.js';
import { decodeOffsetKey, offsetKey, producerKey, queueKey } from './names.js';
import { QueueIndex } from './queue-index.js';
import { ProducerTable } from './producer-table.js';
import type { StateStore, StoredTopic } from './state-store.js';
import type { Logger } from '../replica/logger.js';

export type TopicInfo = StoredTopic;

/** How often the applied offset is stored when only Messages commands (which store nothing) were applied. */
export const appliedRecordIntervalMs = 1000;

/** What the state tells the rest of the broker as it applies. */
export interface StateEvents {
  /** Messages of this queue (queueKey) were committed: wake its consumers. */
  messagesCommitted(key: string): void;
}

export class BrokerState {
  readonly index = new QueueIndex();
  readonly producers = new ProducerTable();
  private readonly topics = new Map<string, TopicInfo>();
  private readonly consumerOffsets = new Map<string, number>();
  /** Every committed entry below this is applied here (in memory; the store follows). */
  private applied: number;
  private readonly recordTimer: NodeJS.Timeout;

  constructor(
    private readonly store: StateStore,
    private readonly logger: Logger,
    private readonly events: StateEvents,
  ) {
    const stored = store.load();
    for (const topic of stored.topics) this.topics.set(topic.name, topic);
    for (const { key, offset } of stored.consumerOffsets) this.consumerOffsets.set(key, offset);
    this.applied = stored.appliedOffset;
    // Not per Messages command: a store write for each would cost more than the command's apply.
    this.recordTimer = setInterval(() => this.store.recordApplied(this.applied), appliedRecordIntervalMs);
    this.recordTimer.unref();
  }

  // ------------------------------------------------------------------ reads

  topic(name: string): TopicInfo | undefined {
    return this.topics.get(name);
  }

  topicList(): TopicInfo[] {
    return [...this.topics.values()];
  }

  consumerOffset(consumerGroup: string, topic: string, queue: number): number | undefined {
    return this.consumerOffsets.get(offsetKey(consumerGroup, topic, queue));
  }

  /** Every committed consumer-group offset. */
  *consumerOffsetEntries(): IterableIterator<{ consumerGroup: string; topic: string; queue: number; offset: number }> {
    for (const [key, offset] of this.consumerOffsets) yield { ...decodeOffsetKey(key), offset };
  }

  /** Every committed entry below this is applied and stored: a restart replays from here. */
  appliedOffset(): number {
    return this.store.durableAppliedOffset;
  }

  // ------------------------------------------------------------------ apply

  /** An entry reached the local log (committed or not): index its messages. */
  onAppend(entry: Entry): void {
    const command = decodeEntry(entry);
    if (command?.kind !== CommandKind.Messages) return;
    this.index.add(queueKey(command.topic, command.queue), { queueOffset: command.queueOffset, logOffset: entry.offset, count: entry.count });
    if (command.producerId !== 0) {
      this.producers.add(producerKey(command.producerId, command.topic, command.queue), {
        sequence: command.sequence,
        count: entry.count,
        queueOffset: command.queueOffset,
        logOffset: entry.offset,
      });
    }
  }

  onTruncate(endOffset: number): void {
    this.index.truncateFrom(endOffset);
    this.producers.truncateFrom(endOffset);
  }

  /** A committed entry, in log order, none below the applied offset. */
  onCommit(entry: Entry): void {
    assert(entry.offset >= this.applied, `apply: entry at ${entry.offset} is below the applied offset ${this.applied}`);
    const command = decodeEntry(entry);
    this.applied = entry.offset + entry.count;
    if (command === null) return;
    switch (command.kind) {
      case CommandKind.Messages:
        this.events.messagesCommitted(queueKey(command.topic, command.queue));
        return;
      case CommandKind.CreateTopic:
        this.createTopic(command);
        return;
      case CommandKind.DeleteTopic:
        this.deleteTopic(command);
        return;
      case CommandKind.CommitOffset:
        this.commitOffset(command);
        return;
    }
  }

  /** Stores the applied offset and waits for the store (restart keeps all that was applied). */
  async close(): Promise<void> {
    clearInterval(this.recordTimer);
    this.store.recordApplied(this.applied);
    await this.store.close();
  }

  // Each apply sets state (never adds to it): a command applied twice in a row leaves the state
  // applying it once does. A replay over a state that is ahead of its applied offset is not always
  // harmless (an offset committed on a topic that was deleted later comes back, as the delete then
  // finds no topic), which is why the store writes every change with its applied offset. Only the
  // one migration of a data directory of the former layout can start so (its applied offset
  // lagged its state by up to a second).

  private createTopic(command: CreateTopicCommand): void {
    if (this.topics.has(command.name)) return; // a retried or forwarded create: first wins
    const topic = { name: command.name, queues: command.queues, createdMs: command.createdMs };
    this.topics.set(command.name, topic);
    this.store.putTopic(topic, this.applied);
    this.logger.info('topic.created', { topic: command.name, queues: command.queues });
  }

  private deleteTopic(command: DeleteTopicCommand): void {
    const topic = this.topics.get(command.name);
    if (!topic) return;
    this.topics.delete(command.name);
    for (let q = 0; q < topic.queues; q++) this.index.remove(queueKey(command.name, q));
    this.producers.removeTopic(command.name);
    const offsetKeys = [...this.consumerOffsets.keys()].filter((key) => decodeOffsetKey(key).topic === command.name);
    for (const key of offsetKeys) this.consumerOffsets.delete(key);
    this.store.deleteTopic(command.name, offsetKeys, this.applied);
    this.logger.info('topic.deleted', { topic: command.name });
  }

  private commitOffset(command: CommitOffsetCommand): void {
    const key = offsetKey(command.consumerGroup, command.topic, command.queue);
    this.consumerOffsets.set(key, command.offset);
    this.store.putConsumerOffset(key, command.offset, this.applied);
  }
}
