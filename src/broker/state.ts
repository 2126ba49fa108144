// The broker's state and its apply: topics and consumer offsets (from committed commands, kept in
// the broker's store with the applied offset), the queue index and the producer table (from every
// appended Messages command, rebuilt on each start from the log and the latest snapshot). The
// replica drives it through the StateMachine calls; produce, consume and admin read it.
//
// Snapshots (DESIGN §12): captureSnapshot gives the state as of the applied offset S;
// restoreSnapshot replaces the whole state with one (on install, or on a start whose store is
// behind the latest snapshot); indexFromSnapshot gives the index and the producer table, once the
// log's batches are indexed, what the log no longer holds; onLogStartMoved follows retention.
import { assert } from '../assert.js';
import type { Entry } from '../raft/types.js';
import {
  CommandKind,
  decodeEntry,
  type CommitOffsetCommand,
  type CreateTopicCommand,
  type DeleteTopicCommand,
  type GrowTopicCommand,
  type MessagesCommand,
  type MetadataCommand,
} from './commands.js';
import { applyMetadataChange, emptyMetadata, type ClusterMetadata } from './metadata.js';
import { decodeOffsetKey, offsetKey, producerKey, queueKey } from './names.js';
import { QueueIndex } from './queue-index.js';
import { ProducerTable, producersMaxDefault } from './producer-table.js';
import {
  decodeStateSnapshot,
  encodeStateSnapshot,
  producerEntriesOf,
  producersOf,
  queueHeadsOf,
  seedQueueHeads,
  type StateSnapshot,
} from './state-snapshot.js';
import type { StateStore, StoredTopic } from './state-store.js';
import { TopicLifecycle } from './topic-lifecycle.js';
import type { Logger } from '../replica/logger.js';

export type TopicInfo = StoredTopic;

/** How often the applied offset is stored when only Messages commands (which store nothing) were applied. */
export const appliedRecordIntervalMs = 1000;

/** What the state tells the rest of the broker as it applies. */
export interface StateEvents {
  /** Messages of this queue (queueKey) were committed: wake its consumers. */
  messagesCommitted(key: string): void;
  /** The cluster metadata changed (a metadata command applied, or a snapshot restored). */
  metadataChanged?(metadata: ClusterMetadata): void;
}

/** A snapshot as the replica keeps it: the state with every entry below endOffset applied. */
export interface SnapshotPayload {
  endOffset: number;
  payload: Uint8Array;
}

export interface StateOptions {
  /** The producer table's bound (producer-table.ts rule 5); producersMaxDefault when absent. */
  producersMax?: number;
}

export class BrokerState {
  readonly index = new QueueIndex();
  readonly producers: ProducerTable;
  private readonly topics = new Map<string, TopicInfo>();
  private readonly consumerOffsets = new Map<string, number>();
  private readonly lifecycle = new TopicLifecycle();
  /** The cluster metadata this state applied (only the metadata group's log carries any). */
  private clusterMetadata: ClusterMetadata;
  /** Every committed entry below this is applied here (in memory; the store follows). */
  private applied: number;
  /** The last snapshot decoded, kept for the indexFromSnapshot that follows a restoreSnapshot of the same payload. */
  private decoded: { payload: Uint8Array; snapshot: StateSnapshot } | null = null;
  private readonly recordTimer: NodeJS.Timeout;

  constructor(
    private readonly store: StateStore,
    private readonly logger: Logger,
    private readonly events: StateEvents,
    options: StateOptions = {},
  ) {
    this.producers = new ProducerTable(options.producersMax ?? producersMaxDefault);
    const stored = store.load();
    for (const topic of stored.topics) this.topics.set(topic.name, topic);
    for (const { key, offset } of stored.consumerOffsets) this.consumerOffsets.set(key, offset);
    this.clusterMetadata = stored.metadata ?? emptyMetadata;
    this.applied = stored.appliedOffset;
    // Not per Messages command: a store write for each would cost more than the command's apply.
    this.recordTimer = setInterval(() => this.store.recordApplied(this.applied), appliedRecordIntervalMs);
    this.recordTimer.unref();
  }

  // ------------------------------------------------------------------ reads

  /** The cluster metadata applied here (version 0: none). */
  get metadata(): ClusterMetadata {
    return this.clusterMetadata;
  }

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

  /**
   * An entry reached the local log (committed or not): index its messages, and end a topic's
   * content where its incarnation ends (topic-lifecycle.ts). Entries below the applied offset (a
   * start-up replay) are known committed: their topic commands act here, in log order, on the
   * index and the producer table only (the store has them already).
   */
  onAppend(entry: Entry): void {
    const command = decodeEntry(entry);
    if (command === null) return;
    const knownApplied = entry.offset < this.applied;
    switch (command.kind) {
      case CommandKind.Messages:
        if (this.lifecycle.indexes(command.topic, knownApplied, this.topics.has(command.topic))) this.indexMessages(command, entry);
        return;
      case CommandKind.CreateTopic:
      case CommandKind.DeleteTopic:
        if (this.lifecycle.appended(command, entry.offset, knownApplied, this.topics.get(command.name))) this.forgetTopicContent(command.name);
        return;
      case CommandKind.CommitOffset:
      case CommandKind.Metadata:
      case CommandKind.GrowTopic:
        return;
    }
  }

  onTruncate(endOffset: number): void {
    this.index.truncateFrom(endOffset);
    this.producers.truncateFrom(endOffset);
    this.lifecycle.truncateFrom(endOffset);
  }

  /** A committed entry, in log order, none below the applied offset. */
  onCommit(entry: Entry): void {
    assert(entry.offset >= this.applied, `apply: entry at ${entry.offset} is below the applied offset ${this.applied}`);
    this.lifecycle.replayDone();
    const command = decodeEntry(entry);
    this.applied = entry.offset + entry.count;
    if (command === null) return;
    switch (command.kind) {
      case CommandKind.Messages:
        this.events.messagesCommitted(queueKey(command.topic, command.queue));
        return;
      case CommandKind.CreateTopic:
        this.lifecycle.committed(command, entry.offset);
        this.createTopic(command);
        return;
      case CommandKind.DeleteTopic:
        if (this.lifecycle.committed(command, entry.offset)) this.forgetTopicContent(command.name);
        this.deleteTopic(command);
        return;
      case CommandKind.CommitOffset:
        this.commitOffset(command);
        return;
      case CommandKind.Metadata:
        this.applyMetadata(command, entry.offset);
        return;
      case CommandKind.GrowTopic:
        this.growTopic(command);
        return;
    }
  }

  /** Retention removed the log below `startOffset`: queue starts move there; producers keep where they end. */
  onLogStartMoved(startOffset: number): void {
    this.index.dropBelow(startOffset);
    this.producers.dropBelow(startOffset);
  }

  // ------------------------------------------------------------------ snapshots

  /** The state as of the in-memory applied offset (every committed entry below it applied). */
  captureSnapshot(): SnapshotPayload {
    const endOffset = this.applied;
    const topics = this.topicList();
    // A topic whose new incarnation is appended already holds that one's content, not this one's.
    const includes = (topic: string): boolean => this.topics.has(topic) && !this.lifecycle.recreating(topic);
    const snapshot: StateSnapshot = {
      endOffset,
      topics,
      consumerOffsets: [...this.consumerOffsetEntries()],
      queueHeads: queueHeadsOf(
        this.index,
        topics.filter((t) => includes(t.name)),
        endOffset,
      ),
      producers: producersOf(this.producers, includes, endOffset),
      metadata: this.clusterMetadata.version > 0 ? this.clusterMetadata : null,
    };
    return { endOffset, payload: encodeStateSnapshot(snapshot) };
  }

  /**
   * Replaces the whole state with the snapshot's: topics and consumer offsets stored in one
   * synchronous transaction with applied offset `endOffset`; the queue index and the producer
   * table emptied (indexFromSnapshot gives them the snapshot's part once the log is indexed).
   * StateSnapshotError, with nothing changed, when the payload is not a snapshot at `endOffset`.
   */
  restoreSnapshot(endOffset: number, payload: Uint8Array): void {
    const snapshot = decodeStateSnapshot(payload, endOffset);
    const consumerOffsets = snapshot.consumerOffsets.map((o) => ({ key: offsetKey(o.consumerGroup, o.topic, o.queue), offset: o.offset }));
    this.store.replaceAll({ topics: snapshot.topics, consumerOffsets, metadata: snapshot.metadata }, endOffset);
    this.clusterMetadata = snapshot.metadata ?? emptyMetadata;
    this.events.metadataChanged?.(this.clusterMetadata);
    this.topics.clear();
    for (const topic of snapshot.topics) this.topics.set(topic.name, { ...topic });
    this.consumerOffsets.clear();
    for (const { key, offset } of consumerOffsets) this.consumerOffsets.set(key, offset);
    this.applied = endOffset;
    this.index.clear();
    this.producers.clear();
    this.lifecycle.clear();
    this.decoded = { payload, snapshot };
    this.logger.info('broker.state.restored', {
      endOffset,
      topics: snapshot.topics.length,
      consumerOffsets: consumerOffsets.length,
      queueHeads: snapshot.queueHeads.length,
      producers: snapshot.producers.length,
    });
  }

  /**
   * After the log's batches are indexed (a start-up replay, or an install): takes from the latest
   * snapshot what the log no longer holds, for topics that still are the snapshot's incarnation
   * (same createdMs, not re-created since): the end of every queue with no batch left in the
   * index, and the producers the log no longer shows. null: there is no snapshot.
   */
  indexFromSnapshot(latest: SnapshotPayload | null): void {
    this.lifecycle.replayDone();
    if (latest === null) return;
    const snapshot = this.decoded?.payload === latest.payload ? this.decoded.snapshot : decodeStateSnapshot(latest.payload, latest.endOffset);
    this.decoded = null;
    const createdMsOf = new Map(snapshot.topics.map((t) => [t.name, t.createdMs]));
    const includes = (topic: string): boolean => {
      const current = this.topics.get(topic);
      return current !== undefined && current.createdMs === createdMsOf.get(topic) && !this.lifecycle.recreating(topic);
    };
    seedQueueHeads(this.index, snapshot, includes);
    this.producers.restoreOlder(producerEntriesOf(snapshot, includes));
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

  private applyMetadata(command: MetadataCommand, logOffset: number): void {
    const next = applyMetadataChange(this.clusterMetadata, command.change, logOffset);
    if (next === this.clusterMetadata) return;
    this.clusterMetadata = next;
    this.store.putMetadata(next, this.applied);
    this.logger.info('metadata.applied', { change: command.change.change, version: next.version, groups: next.groups.length, topics: next.topics.length });
    this.events.metadataChanged?.(next);
  }

  /** More queues for the topic's incarnation `createdMs` (metadata-sync.ts proposes it). */
  private growTopic(command: GrowTopicCommand): void {
    const topic = this.topics.get(command.name);
    if (!topic || topic.createdMs !== command.createdMs || command.queues <= topic.queues) return;
    const grown = { ...topic, queues: command.queues };
    this.topics.set(command.name, grown);
    this.store.putTopic(grown, this.applied);
    this.logger.info('topic.grown', { topic: command.name, queues: command.queues, from: topic.queues });
  }

  private deleteTopic(command: DeleteTopicCommand): void {
    if (!this.topics.has(command.name)) return;
    this.topics.delete(command.name);
    const offsetKeys = [...this.consumerOffsets.keys()].filter((key) => decodeOffsetKey(key).topic === command.name);
    for (const key of offsetKeys) this.consumerOffsets.delete(key);
    this.store.deleteTopic(command.name, offsetKeys, this.applied);
    this.logger.info('topic.deleted', { topic: command.name });
  }

  private indexMessages(command: MessagesCommand, entry: Entry): void {
    this.index.add(queueKey(command.topic, command.queue), { queueOffset: command.queueOffset, logOffset: entry.offset, count: entry.count });
    if (command.producerId === 0) return;
    this.producers.add(producerKey(command.producerId, command.topic, command.queue), {
      sequence: command.sequence,
      count: entry.count,
      queueOffset: command.queueOffset,
      logOffset: entry.offset,
    });
  }

  /** The topic's queues and producers go (in memory; the store is the apply's). */
  private forgetTopicContent(name: string): void {
    this.index.removeTopic(name);
    this.producers.removeTopic(name);
  }

  private commitOffset(command: CommitOffsetCommand): void {
    const key = offsetKey(command.consumerGroup, command.topic, command.queue);
    this.consumerOffsets.set(key, command.offset);
    this.store.putConsumerOffset(key, command.offset, this.applied);
  }
}
