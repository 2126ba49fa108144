// A broker: the queues its group holds, produce and consume on them, topics and consumer-group
// offsets (both replicated through the group's log), and the read advice. It works on typed
// requests; gRPC lives in src/rpc/.
import { assert } from '../assert.js';
import {
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  AlreadyExistsError,
  NotLeaderError,
  TimeoutError,
  ResourceExhaustedError,
  MambaError,
} from '../errors.js';
import type { BrokerConfig, ClusterConfig, GroupConfig } from '../config/cluster.js';
import { batchHeaderBytes } from '../log/index.js';
import { decodeRecordsRegionWith, recordLengthBytes, type RecordMaker } from '../record-region.js';
import type { Entry, ReplicaId, Role } from '../raft/types.js';
import type { Replica, StateMachine } from '../replica/replica.js';
import type { Logger } from '../replica/logger.js';
import { CommandKind, decodeCommand, encodeCommand, type Command, type MessagesCommand } from './commands.js';
import { encodeMessagesCommand, type ProduceMessage } from './produce-encoding.js';
import { QueueIndex, queueKey, type IndexedBatch } from './queue-index.js';
import { ProducerTable, producerKey, type ProducedBatch } from './producer-table.js';
import { adviseRead, type Advice, type FollowerView } from './advice.js';
import { LoadMonitor } from './load.js';
import { noBrokerTracer, type BrokerTracer, type ProduceTrace } from './tracer.js';
import { GroupCoordinator, type HeartbeatResult } from './group-coordinator.js';

/** A consumer-group member that misses heartbeats this long loses its queues. */
export const consumerSessionTimeoutMs = 6000;

export const topicNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
export const consumerGroupPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
export const queuesPerTopicMax = 1024;
const messagesPerProduceMax = 100_000;
const consumeMessagesMax = 10_000;
const consumeBytesDefault = 4 * 1024 * 1024;
const consumeWaitersMax = 10_000;
const replicationWaitMsMax = 30_000;

export type AckLevel = 'none' | 'leader' | 'quorum';
export type { ProduceMessage } from './produce-encoding.js';

/**
 * An idempotent producer's batch whose sequence skips ahead of what this queue holds: an earlier
 * batch of the producer was not stored. INVALID_ARGUMENT on the unary call; a pipelining client
 * (ProduceStream) resends from the earlier batch, in order.
 */
export class SequenceGapError extends MambaError {
  override readonly name = 'SequenceGapError';
  constructor(
    message: string,
    readonly expectedSequence: number,
  ) {
    super('invalid_argument', message, false);
  }
}

export interface ProduceRequest {
  topic: string;
  queue: number;
  messages: ProduceMessage[];
  ack: AckLevel;
  producerId: number;
  sequence: number;
}

export interface ProduceResult {
  topic: string;
  queue: number;
  baseOffset: number;
  count: number;
  duplicate: boolean;
}

export interface ConsumeRequest {
  topic: string;
  queue: number;
  offset: number;
  consumerGroup: string;
  useCommitted: boolean;
  maxMessages: number;
  maxBytes: number;
  maxWaitMs: number;
}

/**
 * A run of whole messages of one queue as stored (mamba.proto RecordBlock): part or all of the
 * records region of one stored batch, a view of the log's mapping, never re-encoded.
 */
export interface ConsumedBlock {
  /** Queue offset of the first record in `records`. */
  queueOffset: number;
  /** Records in `records`, exactly. */
  count: number;
  /** The records' timestamps are stored as deltas from this. */
  firstTimestampMs: number;
  /** `count` records in the log's record encoding (src/record-region.ts). */
  records: Buffer;
}

export interface ConsumedRecord {
  offset: number;
  timestampMs: number;
  key: Uint8Array | null;
  headers: Array<{ key: string; value: Uint8Array | null }>;
  body: Uint8Array | null;
}

export interface ConsumeResult {
  topic: string;
  queue: number;
  /** The messages, in offset order, contiguous from the requested offset to nextOffset - 1. */
  blocks: ConsumedBlock[];
  /** Messages in `blocks`. */
  messageCount: number;
  nextOffset: number;
  highWatermark: number;
  startOffset: number;
  advice: Advice;
  servedBy: string;
}

export interface TopicInfo {
  name: string;
  queues: number;
  createdMs: number;
}

export interface QueueInfo {
  queue: number;
  group: string;
  leaderId: string;
  startOffset: number;
  highWatermark: number;
}

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
  createTopic(group: GroupConfig, name: string, queues: number): Promise<void>;
  deleteTopic(group: GroupConfig, name: string): Promise<void>;
  describeGroup(group: GroupConfig): Promise<GroupInfo>;
}

/** Committed messages a consumer group has not committed past, on one queue. */
export interface ConsumerBacklog {
  consumerGroup: string;
  topic: string;
  queue: number;
  backlogMessages: number;
}

/** What the broker reports about its work (metrics); every call is cheap and synchronous. */
export interface BrokerObserver {
  produced(topic: string, messageCount: number, bytes: number): void;
  /** Propose → the high watermark passed the entry (quorum-acknowledged produce requests). */
  committed(latencySeconds: number): void;
  consumed(topic: string, records: readonly ConsumedRecord[], nowMs: number): void;
  /**
   * The same report as `consumed`, from the stored blocks: an observer that has it spares the
   * broker a decoded object per delivered message.
   */
  consumedBlocks?(topic: string, blocks: readonly ConsumedBlock[], nowMs: number): void;
}

export const noBrokerObserver: BrokerObserver = { produced() {}, committed() {}, consumed() {} };

/** Metrics and tracing hooks a broker is built with (both off by default). */
export interface BrokerInstruments {
  observer?: BrokerObserver;
  tracing?: BrokerTracer;
}

export function clientAddress(b: BrokerConfig): string {
  return `${b.host}:${b.clientPort}`;
}

export class Broker implements StateMachine {
  readonly id: string;
  readonly group: GroupConfig;
  private readonly index = new QueueIndex();
  private readonly producers = new ProducerTable();
  private readonly topics = new Map<string, TopicInfo>();
  private readonly consumerOffsets = new Map<string, number>();
  private readonly consumeWaiters = new Map<string, Set<() => void>>();
  private consumeWaiterCount = 0;
  private readonly load: LoadMonitor;
  private readonly observer: BrokerObserver;
  private readonly tracing: BrokerTracer;
  private readonly coordinator = new GroupCoordinator(consumerSessionTimeoutMs);

  constructor(
    readonly config: BrokerConfig,
    readonly cluster: ClusterConfig,
    private readonly replica: Replica,
    private readonly forwarder: ClusterForwarder,
    private readonly logger: Logger,
    instruments: BrokerInstruments = {},
  ) {
    this.observer = instruments.observer ?? noBrokerObserver;
    this.tracing = instruments.tracing ?? noBrokerTracer;
    this.id = config.id;
    this.group = cluster.groups.find((g) => g.id === config.group)!;
    this.load = new LoadMonitor();
    for (const { value } of replica.meta.topics.getRange()) this.topics.set(value.name, value);
    for (const { key, value } of replica.meta.offsets.getRange()) this.consumerOffsets.set(key, value);
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
    if (entry.type !== 0) return;
    const payload = entry.payload;
    if (payload[0] !== CommandKind.Messages) return;
    const command = decodeCommand(payload) as MessagesCommand;
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

  onCommit(entry: Entry): void {
    const command = decodeCommand(entry.payload);
    this.applyCommand(command);
  }

  onRoleChange(role: Role, _epoch: number, _leaderId: ReplicaId | null): void {
    if (role !== 'leader') {
      this.wakeAllConsumers();
      this.coordinator.clear();
    }
  }

  private applyCommand(command: Command): void {
    switch (command.kind) {
      case CommandKind.Messages:
        this.wakeConsumers(queueKey(command.topic, command.queue));
        return;
      case CommandKind.CreateTopic: {
        if (this.topics.has(command.name)) return; // a retried or forwarded create: first wins
        const topic = { name: command.name, queues: command.queues, createdMs: command.createdMs };
        this.topics.set(command.name, topic);
        void this.replica.meta.topics.put(command.name, topic);
        this.logger.info('topic.created', { topic: command.name, queues: command.queues });
        return;
      }
      case CommandKind.DeleteTopic: {
        const topic = this.topics.get(command.name);
        if (!topic) return;
        this.topics.delete(command.name);
        void this.replica.meta.topics.remove(command.name);
        for (let q = 0; q < topic.queues; q++) this.index.remove(queueKey(command.name, q));
        this.producers.removeTopic(command.name);
        for (const key of [...this.consumerOffsets.keys()]) {
          if (key.split('\u0000')[1] === command.name) {
            this.consumerOffsets.delete(key);
            void this.replica.meta.offsets.remove(key);
          }
        }
        this.logger.info('topic.deleted', { topic: command.name });
        return;
      }
      case CommandKind.CommitOffset: {
        const key = offsetKey(command.consumerGroup, command.topic, command.queue);
        this.consumerOffsets.set(key, command.offset);
        void this.replica.meta.offsets.put(key, command.offset);
        return;
      }
    }
  }

  // ------------------------------------------------------------------ placement

  /** The group that holds queue `queue` of a topic: queues are dealt over groups in order. */
  groupOfQueue(queue: number): GroupConfig {
    return this.cluster.groups[queue % this.cluster.groups.length]!;
  }

  private checkQueue(topic: string, queue: number): TopicInfo {
    if (!topicNamePattern.test(topic)) throw new InvalidArgumentError(`topic name "${topic}" is not valid (letters, digits, '.', '_', '-'; at most 200)`);
    const info = this.topics.get(topic);
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

  private requireLeader(): void {
    if (this.replica.isLeader) return;
    const error = this.replica.notLeader();
    const leader = error.leaderId ? this.group.brokers.find((b) => b.id === error.leaderId) : undefined;
    throw new NotLeaderError(error.message, error.leaderId, leader ? clientAddress(leader) : null);
  }

  // ------------------------------------------------------------------ produce

  async produce(request: ProduceRequest): Promise<ProduceResult> {
    const trace = this.tracing.startProduce(request.topic, request.queue, request.messages);
    try {
      const result = await this.produceTraced(request, trace);
      trace.end();
      return result;
    } catch (error) {
      trace.end(error);
      throw error;
    }
  }

  private async produceTraced(request: ProduceRequest, trace: ProduceTrace): Promise<ProduceResult> {
    this.checkQueue(request.topic, request.queue);
    if (request.messages.length === 0) throw new InvalidArgumentError('messages is empty: a produce request needs at least one message');
    this.requireLeader();
    if (request.producerId !== 0) {
      const known = this.checkSequence(request);
      if (known) {
        await this.waitForAck(request.ack, known.logOffset + known.count);
        return { topic: request.topic, queue: request.queue, baseOffset: known.queueOffset, count: known.count, duplicate: true };
      }
    }
    const key = queueKey(request.topic, request.queue);
    const queueOffset = this.index.endOffset(key);
    const { payload, count } = encodeMessagesCommand(
      { topic: request.topic, queue: request.queue, queueOffset, producerId: request.producerId, sequence: request.sequence },
      request.messages,
      Date.now(),
      { messagesMax: messagesPerProduceMax, messageBytesMax: this.config.settings.messageBytesMax },
    );
    const proposedMs = performance.now();
    const logOffset = this.replica.propose(payload, count);
    trace.appended(proposedMs, { queueOffset, logOffset, epoch: this.replica.currentEpoch });
    this.observer.produced(request.topic, count, payload.byteLength);
    assert(this.index.endOffset(key) === queueOffset + count, 'produce: the proposal was not indexed at once');
    await this.waitForAck(request.ack, logOffset + count);
    if (request.ack === 'quorum') {
      this.observer.committed((performance.now() - proposedMs) / 1000);
      trace.committed(proposedMs);
    }
    return { topic: request.topic, queue: request.queue, baseOffset: queueOffset, count, duplicate: false };
  }

  private async waitForAck(ack: AckLevel, logEnd: number): Promise<void> {
    if (ack === 'quorum') await this.withTimeout(this.replica.commitWaiters.wait(logEnd, this.replica.committedOffset), 'quorum acknowledgement');
    else if (ack === 'leader') await this.withTimeout(this.replica.durableWaiters.wait(logEnd, this.replica.durableOffset), 'leader flush');
  }

  /** For an idempotent producer: the stored batch this request repeats, or null when it is new. */
  private checkSequence(request: ProduceRequest): ProducedBatch | null {
    const check = this.producers.check(producerKey(request.producerId, request.topic, request.queue), request.sequence, request.messages.length);
    switch (check.kind) {
      case 'new':
        return null;
      case 'duplicate':
        return check.batch;
      case 'gap':
        throw new SequenceGapError(
          `producer ${request.producerId}: sequence ${request.sequence} on queue ${request.queue} of "${request.topic}" skips ahead of ${check.expected} (messages were lost between them)`,
          check.expected,
        );
      case 'stale':
        throw new InvalidArgumentError(
          `producer ${request.producerId}: sequence ${request.sequence} on queue ${request.queue} of "${request.topic}" is older than the batches remembered (next expected ${check.expected})`,
        );
    }
  }

  private async withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`${what} did not arrive within ${replicationWaitMsMax} ms`)), replicationWaitMsMax);
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------ consume

  async consume(request: ConsumeRequest, cancelled: () => boolean = () => false): Promise<ConsumeResult> {
    this.checkQueue(request.topic, request.queue);
    const key = queueKey(request.topic, request.queue);
    const offset = this.startingOffset(request, key);
    const waitMs = Math.min(request.maxWaitMs, this.config.settings.consumeWaitMsMax);
    const deadline = Date.now() + waitMs;
    for (let round = 0; round < 10_000; round++) {
      const highWatermark = this.replica.committedOffset;
      const start = this.index.startOffset(key);
      const end = this.index.committedEndOffset(key, highWatermark);
      if (offset < start || offset > end) {
        throw new OutOfRangeError(
          `offset ${offset} is outside queue ${request.queue} of "${request.topic}": valid offsets are ${start}..${end} (${end} = next to be written)`,
          start,
          end,
        );
      }
      if (offset < end || Date.now() >= deadline || cancelled())
        return this.delivered(request, this.readBlocks(request, key, offset, start, end, highWatermark));
      await this.waitForData(key, deadline - Date.now());
    }
    throw new TimeoutError('consume gave up after too many wake-ups');
  }

  /** Reports what a consume call delivers (metrics, delivery spans). */
  private delivered(request: ConsumeRequest, result: ConsumeResult): ConsumeResult {
    if (result.messageCount === 0) return result;
    const nowMs = Date.now();
    const records = this.observer.consumedBlocks === undefined || this.tracing.enabled ? recordsOfBlocks(result.blocks) : null;
    if (this.observer.consumedBlocks !== undefined) this.observer.consumedBlocks(request.topic, result.blocks, nowMs);
    else this.observer.consumed(request.topic, records!, nowMs);
    if (records !== null && this.tracing.enabled)
      this.tracing.delivered(request.topic, request.queue, request.consumerGroup, this.replica.currentEpoch, records);
    return result;
  }

  private startingOffset(request: ConsumeRequest, key: string): number {
    if (!request.useCommitted) {
      if (!Number.isSafeInteger(request.offset) || request.offset < 0) throw new InvalidArgumentError(`offset ${request.offset} is not valid`);
      return request.offset;
    }
    if (!consumerGroupPattern.test(request.consumerGroup))
      throw new InvalidArgumentError(`use_committed needs a valid consumer_group, got "${request.consumerGroup}"`);
    return this.consumerOffsets.get(offsetKey(request.consumerGroup, request.topic, request.queue)) ?? this.index.startOffset(key);
  }

  /**
   * The committed messages from `offset` on, within maxMessages and maxBytes (the first message
   * always, whatever its size), as blocks cut from the stored batches at record boundaries.
   * Nothing per message is decoded: the cut walks the records' length fields. A message counts
   * its encoded bytes (length field included) against maxBytes.
   */
  private readBlocks(request: ConsumeRequest, key: string, offset: number, start: number, end: number, highWatermark: number): ConsumeResult {
    const messagesMax = Math.min(request.maxMessages > 0 ? request.maxMessages : 100, consumeMessagesMax);
    const cut: BlockCut = {
      blocks: [],
      messageCount: 0,
      bytes: 0,
      messagesMax,
      bytesMax: request.maxBytes > 0 ? request.maxBytes : consumeBytesDefault,
      nextOffset: offset,
      full: false,
    };
    const batches = this.index.batchesFrom(key, offset, highWatermark, messagesMax);
    const regionPosition = batchHeaderBytes + messagesPrefixBytes(request.topic);
    // One log read per run of batches that lie back to back in the group log (no index lookup
    // between them); a run is bounded by the messages still wanted, the read by the bytes (the
    // log returns at least one batch, so every round takes at least one).
    for (let first = 0, round = 0; first < batches.length && !cut.full && round < batches.length; round++) {
      let last = first;
      let runMessages = batches[first]!.count;
      while (last + 1 < batches.length && runMessages < messagesMax - cut.messageCount && isAdjacent(batches[last]!, batches[last + 1]!))
        runMessages += batches[++last]!.count;
      const lastBatch = batches[last]!;
      const stored = this.replica.log.read(batches[first]!.logOffset, cut.bytesMax - cut.bytes, lastBatch.logOffset + lastBatch.count);
      assert(
        stored.length >= 1 && stored.length <= last - first + 1,
        `queue index: ${last - first + 1} batches from log offset ${batches[first]!.logOffset}, the log returned ${stored.length}`,
      );
      for (let index = 0; index < stored.length && !cut.full; index++) cutBlock(cut, batches[first + index]!, stored[index]!, regionPosition);
      first += stored.length;
    }
    const needed = batches[0] ? batches[0].logOffset + batches[0].count : highWatermark;
    return {
      topic: request.topic,
      queue: request.queue,
      blocks: cut.blocks,
      messageCount: cut.messageCount,
      nextOffset: cut.nextOffset,
      highWatermark: end,
      startOffset: start,
      advice: this.advice(needed),
      servedBy: this.id,
    };
  }

  private waitForData(key: string, waitMs: number): Promise<void> {
    if (this.consumeWaiterCount >= consumeWaitersMax) {
      throw new ResourceExhaustedError(`${this.consumeWaiterCount} consumers already wait for data (limit ${consumeWaitersMax}); retry`);
    }
    return new Promise((resolve) => {
      let set = this.consumeWaiters.get(key);
      if (!set) this.consumeWaiters.set(key, (set = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        if (set!.delete(done)) this.consumeWaiterCount--;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, waitMs));
      set.add(done);
      this.consumeWaiterCount++;
    });
  }

  private wakeConsumers(key: string): void {
    const set = this.consumeWaiters.get(key);
    if (!set) return;
    for (const done of [...set]) done();
  }

  private wakeAllConsumers(): void {
    for (const key of [...this.consumeWaiters.keys()]) this.wakeConsumers(key);
  }

  // ------------------------------------------------------------------ read advice

  /** Where the consumer should read next; `neededLogOffset` is the log end it must find there. */
  advice(neededLogOffset: number): Advice {
    const self = { id: this.id, address: clientAddress(this.config) };
    if (!this.replica.isLeader) {
      const leaderId = this.replica.currentLeaderId;
      const leader = this.group.brokers.find((b) => b.id === leaderId);
      if (this.replica.committedOffset >= neededLogOffset) return { replicaId: self.id, address: self.address, reason: 'this follower holds the next offset' };
      return leader
        ? { replicaId: leader.id, address: clientAddress(leader), reason: `follower ${this.id} does not hold the next offset yet; read from the leader` }
        : { replicaId: self.id, address: self.address, reason: 'no leader known; stay here' };
    }
    return adviseRead(self, this.load.sample(), this.followerViews(), neededLogOffset, this.config.settings.advice);
  }

  private followerViews(): FollowerView[] {
    const status = this.replica.status();
    const nowMs = Date.now();
    const tickMs = this.config.settings.tickMs;
    const fetchTimeoutMs = this.config.settings.fetchTimeoutMs;
    return status.replicas
      .filter((r) => r.id !== this.id)
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

  // ------------------------------------------------------------------ consumer offsets

  async commitOffset(consumerGroup: string, topic: string, queue: number, offset: number): Promise<void> {
    if (!consumerGroupPattern.test(consumerGroup)) throw new InvalidArgumentError(`consumer_group "${consumerGroup}" is not valid`);
    this.checkQueue(topic, queue);
    const key = queueKey(topic, queue);
    const end = this.index.committedEndOffset(key, this.replica.committedOffset);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > end) {
      throw new OutOfRangeError(`cannot commit offset ${offset} for queue ${queue} of "${topic}": valid offsets are 0..${end}`, 0, end);
    }
    await this.replicate({ kind: CommandKind.CommitOffset, consumerGroup, topic, queue, offset });
  }

  /** Every committed consumer-group offset on a queue of this group, with the messages after it. */
  consumerBacklogs(): ConsumerBacklog[] {
    const highWatermark = this.replica.committedOffset;
    const backlogs: ConsumerBacklog[] = [];
    for (const [key, offset] of this.consumerOffsets) {
      const [consumerGroup, topic, queueText] = key.split('\u0000') as [string, string, string];
      const queue = Number(queueText);
      if (!this.topics.has(topic) || this.groupOfQueue(queue).id !== this.group.id) continue;
      const end = this.index.committedEndOffset(queueKey(topic, queue), highWatermark);
      backlogs.push({ consumerGroup, topic, queue, backlogMessages: Math.max(0, end - offset) });
    }
    return backlogs;
  }

  fetchOffset(consumerGroup: string, topic: string, queue: number): number | null {
    if (!consumerGroupPattern.test(consumerGroup)) throw new InvalidArgumentError(`consumer_group "${consumerGroup}" is not valid`);
    this.checkQueue(topic, queue);
    return this.consumerOffsets.get(offsetKey(consumerGroup, topic, queue)) ?? null;
  }

  /** Proposes a command and waits until the group has committed it. */
  private async replicate(command: Command): Promise<void> {
    this.requireLeader();
    const offset = this.replica.propose(encodeCommand(command), 1);
    await this.withTimeout(this.replica.commitWaiters.wait(offset + 1, this.replica.committedOffset), 'quorum acknowledgement');
  }

  /** Consumer-group membership; served by the leader of the group that holds queue 0. */
  heartbeat(consumerGroup: string, topic: string, memberId: string, owned: number[], leave: boolean): HeartbeatResult {
    if (!consumerGroupPattern.test(consumerGroup)) throw new InvalidArgumentError(`consumer_group "${consumerGroup}" is not valid`);
    if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/.test(memberId)) throw new InvalidArgumentError(`member_id "${memberId}" is not valid`);
    const info = this.checkQueue(topic, 0);
    this.requireLeader();
    return this.coordinator.heartbeat(consumerGroup, topic, info.queues, memberId, owned, leave, Date.now());
  }

  // ------------------------------------------------------------------ topics

  /** Creates the topic in this group, then (unless forwarded) in every other group. */
  async createTopic(name: string, queues: number, forwarded: boolean): Promise<TopicInfo> {
    if (!topicNamePattern.test(name)) throw new InvalidArgumentError(`topic name "${name}" is not valid (letters, digits, '.', '_', '-'; at most 200)`);
    if (!Number.isInteger(queues) || queues < 1 || queues > queuesPerTopicMax)
      throw new InvalidArgumentError(`queues must be 1..${queuesPerTopicMax}, got ${queues}`);
    const existing = this.topics.get(name);
    if (existing && existing.queues !== queues) throw new AlreadyExistsError(`topic "${name}" already exists with ${existing.queues} queues`);
    if (!existing) await this.replicate({ kind: CommandKind.CreateTopic, name, queues, createdMs: Date.now() });
    if (!forwarded) {
      for (const group of this.cluster.groups) if (group.id !== this.group.id) await this.forwarder.createTopic(group, name, queues);
    }
    const created = this.topics.get(name);
    assert(created !== undefined, 'create topic: committed but not applied');
    if (created.queues !== queues) throw new AlreadyExistsError(`topic "${name}" already exists with ${created.queues} queues`);
    return created;
  }

  async deleteTopic(name: string, forwarded: boolean): Promise<void> {
    if (!this.topics.has(name)) throw new NotFoundError(`topic "${name}" does not exist`);
    await this.replicate({ kind: CommandKind.DeleteTopic, name });
    if (!forwarded) {
      for (const group of this.cluster.groups) {
        if (group.id === this.group.id) continue;
        await this.forwarder.deleteTopic(group, name).catch((error: Error) => {
          if (!(error instanceof NotFoundError)) throw error;
        });
      }
    }
  }

  listTopics(): TopicInfo[] {
    return [...this.topics.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  describeTopic(name: string, groups: GroupInfo[]): { topic: TopicInfo; queues: QueueInfo[] } {
    const topic = this.topics.get(name);
    if (!topic) throw new NotFoundError(`topic "${name}" does not exist`);
    const queues: QueueInfo[] = [];
    for (let q = 0; q < topic.queues; q++) {
      const group = this.groupOfQueue(q);
      const info = groups.find((g) => g.id === group.id);
      const own = group.id === this.group.id;
      const key = queueKey(name, q);
      queues.push({
        queue: q,
        group: group.id,
        leaderId: info?.leaderId ?? '',
        startOffset: own ? this.index.startOffset(key) : 0,
        highWatermark: own ? this.index.committedEndOffset(key, this.replica.committedOffset) : 0,
      });
    }
    return { topic, queues };
  }

  // ------------------------------------------------------------------ cluster view

  /**
   * This group as this broker sees it. Only the leader knows every replica's progress: a
   * follower asks it, and answers a forwarded request with a redirect to it.
   */
  async describeOwnGroup(forwarded: boolean): Promise<GroupInfo> {
    if (this.replica.isLeader || !this.replica.currentLeaderId) return this.localGroupInfo();
    if (forwarded) this.requireLeader();
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
    const replicas: ReplicaInfo[] = this.group.brokers.map((b) => {
      if (b.id === this.id) {
        return {
          id: b.id,
          address: clientAddress(b),
          role: this.replica.roleLabel(),
          endOffset: this.replica.log.endOffset,
          lagOffsets: Math.max(0, status.highWatermark - this.replica.log.endOffset),
          lagMs: 0,
          lastFetchAgeMs: 0,
          reachable: true,
        };
      }
      const progress = status.replicas.find((r) => r.id === b.id);
      if (!leader || !progress)
        return {
          id: b.id,
          address: clientAddress(b),
          role: b.id === status.leaderId ? 'leader' : 'unknown',
          endOffset: 0,
          lagOffsets: 0,
          lagMs: 0,
          lastFetchAgeMs: -1,
          reachable: false,
        };
      const ageMs = progress.ticksSinceFetch === null ? -1 : progress.ticksSinceFetch * this.config.settings.tickMs;
      return {
        id: b.id,
        address: clientAddress(b),
        role: progress.recovering ? 'recovering' : 'follower',
        endOffset: progress.matchedOffset,
        lagOffsets: Math.max(0, status.highWatermark - progress.matchedOffset),
        lagMs: this.replica.followerLagMs(b.id, progress.matchedOffset, nowMs),
        lastFetchAgeMs: ageMs,
        reachable: ageMs >= 0 && ageMs <= this.config.settings.fetchTimeoutMs,
      };
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
      else {
        groups.push(
          await this.forwarder.describeGroup(group).catch(() => ({
            id: group.id,
            leaderId: '',
            epoch: 0,
            highWatermark: 0,
            advice: null,
            replicas: group.brokers.map((b) => ({
              id: b.id,
              address: clientAddress(b),
              role: 'unreachable',
              endOffset: 0,
              lagOffsets: 0,
              lagMs: 0,
              lastFetchAgeMs: -1,
              reachable: false,
            })),
          })),
        );
      }
    }
    return groups;
  }

  close(): void {
    this.wakeAllConsumers();
    this.load.close();
  }
}

function offsetKey(consumerGroup: string, topic: string, queue: number): string {
  return `${consumerGroup}\u0000${topic}\u0000${queue}`;
}

// ------------------------------------------------------------------ consume: cutting blocks

/** A consume answer being cut from stored batches, and its bounds. */
interface BlockCut {
  readonly blocks: ConsumedBlock[];
  messageCount: number;
  bytes: number;
  readonly messagesMax: number;
  readonly bytesMax: number;
  /** Queue offset after the last message taken (the requested offset before any). */
  nextOffset: number;
  /** A bound was reached: take nothing more. */
  full: boolean;
}

/** Bytes of a Messages command before its records region (commands.ts, kind 1) for `topic`. */
function messagesPrefixBytes(topic: string): number {
  return 1 + 2 + Buffer.byteLength(topic, 'utf8') + 4 + 8 * 4;
}

function isAdjacent(earlier: { logOffset: number; count: number }, later: { logOffset: number }): boolean {
  return earlier.logOffset + earlier.count === later.logOffset;
}

/** Position after the record that starts at `position` (the records were checked on produce). */
function recordEndPosition(region: Buffer, position: number): number {
  if (position + recordLengthBytes > region.byteLength) assert(false, `stored record at byte ${position} has no length field`);
  const endPosition = position + recordLengthBytes + region.readUInt32LE(position);
  if (endPosition > region.byteLength) assert(false, `stored record at byte ${position} runs past its region`);
  return endPosition;
}

/**
 * Takes from one stored batch (the log's CRC-checked view) the records from cut.nextOffset on,
 * within the cut's bounds, as one block; `regionPosition` is where the records region starts.
 */
function cutBlock(cut: BlockCut, batch: IndexedBatch, stored: Buffer, regionPosition: number): void {
  assert(
    stored[batchHeaderBytes] === CommandKind.Messages && stored.readDoubleLE(regionPosition - 32) === batch.queueOffset,
    `queue index and log disagree at log offset ${batch.logOffset}`,
  );
  const firstTimestampMs = stored.readDoubleLE(regionPosition - 24);
  const region = stored.subarray(regionPosition);
  const skipCount = Math.max(0, cut.nextOffset - batch.queueOffset);
  let position = 0;
  for (let index = 0; index < skipCount; index++) position = recordEndPosition(region, position);
  const startPosition = position;
  let count = 0;
  for (let index = skipCount; index < batch.count; index++) {
    if (cut.messageCount + count >= cut.messagesMax) break;
    const endPosition = recordEndPosition(region, position);
    if (cut.messageCount + count > 0 && cut.bytes + endPosition - position > cut.bytesMax) break;
    cut.bytes += endPosition - position;
    position = endPosition;
    count++;
  }
  if (skipCount + count === batch.count)
    assert(position === region.byteLength, `stored batch at log offset ${batch.logOffset} has bytes after its ${batch.count} records`);
  if (count > 0) {
    cut.blocks.push({ queueOffset: batch.queueOffset + skipCount, count, firstTimestampMs, records: region.subarray(startPosition, position) });
    cut.messageCount += count;
    cut.nextOffset = batch.queueOffset + skipCount + count;
  }
  if (skipCount + count < batch.count || cut.messageCount >= cut.messagesMax || cut.bytes >= cut.bytesMax) cut.full = true;
}

/** The messages of `blocks`, one object each (for clients that do not take blocks, and tracing). */
export function recordsOfBlocks(blocks: readonly ConsumedBlock[]): ConsumedRecord[] {
  const records: ConsumedRecord[] = [];
  for (const block of blocks) {
    const make: RecordMaker<ConsumedRecord> = (index, timestampMs, key, body, headers) => ({
      offset: block.queueOffset + index,
      timestampMs,
      key,
      body,
      headers: headers.map((h) => ({ key: h.name, value: h.value })),
    });
    for (const record of decodeRecordsRegionWith(block.records, block.firstTimestampMs, block.count, make)) records.push(record);
  }
  return records;
}
