// The producer: one lane per queue (producer-lane.ts: adaptive batching, several batches in flight
// per queue in order, numbered for the brokers' duplicate check), every batch sent on the
// ProduceStream of its group leader's connection (produce-stream.ts), retries with exponential
// backoff against the group's current leader, round-robin batches moved to the next group when
// one stays unavailable (only batches no attempt may have stored: produce-outcome.ts), and when no
// group takes a batch either kept in a bounded buffer (send() waits for room) or dropped (counted
// in stats(), with a 'drop' event, and in a Prometheus counter only when the application hands
// over a registry).
import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import { InvalidArgumentError, MambaError, UnavailableError } from '../errors.js';
import { ackToWire, isAck, type Ack } from '../protocol/messages.js';
import { sleep, type RetryPolicy } from './retry.js';
import { ProducerLane, producerBatchesInflightMax, type LaneItem, type SentMessage } from './producer-lane.js';
import { ProduceStreamClient, type RequestProgress } from './produce-stream.js';
import { MambaClient, queueForKey, connectionOptionsOf, type ConnectionOptions } from './client.js';
import { messageToWire, wireMessageBytes, type OutgoingMessage, type WireMessage } from './wire.js';
import type { TopicRoute } from './router.js';

export interface ProducerOptions extends ConnectionOptions {
  brokers: string[];
  /**
   * A client to send through instead of one of the producer's own (one client shared by many
   * producers and consumers keeps one set of connections). The producer never closes it;
   * `brokers`, `retry` and the connection options are then the client's.
   */
  client?: MambaClient;
  ack?: Ack;
  /**
   * How long a batch that is not full waits for more messages before it is sent. Default 0:
   * adaptive batching (a message for an idle queue leaves at once; what arrives while batches
   * are in flight leaves together as the next batch).
   */
  lingerMs?: number;
  /** Batches of one queue in flight at once, kept in order by the idempotent sequence numbers (1..7). */
  batchesInflightMax?: number;
  /**
   * Bytes waiting for a queue that has batches in flight which send one more batch at once
   * (default 64 KiB, at most batchBytesMax); below it they wait for a batch to return.
   */
  pipelineBytesMin?: number;
  batchBytesMax?: number;
  retry?: Partial<RetryPolicy>;
  /**
   * What happens to a batch no group accepts after the retries: keep it and try again, or drop it.
   * A batch an attempt may have stored is never dropped: in 'drop' mode it fails with
   * OutcomeUnknownError after the retries.
   */
  whenUnavailable?: 'buffer' | 'drop';
  /** Memory for messages not yet acknowledged; send() waits for room beyond it. */
  bufferBytesMax?: number;
  idempotent?: boolean;
  requestTimeoutMs?: number;
  routeRefreshMs?: number;
  /**
   * Consecutive failures on one group before a round-robin batch moves to the next group (only a
   * batch no attempt may have stored moves: produce-outcome.ts).
   */
  groupFailuresMax?: number;
  /**
   * Prometheus metrics of this producer, registered on `registry` (the application's): the
   * counter `mamba_client_dropped_messages_total{topic}`. Without it nothing is registered
   * anywhere; stats() counts either way.
   */
  metrics?: { registry: Registry };
}

/** What a producer has counted since it was made. */
export interface ProducerStats {
  /** Messages dropped because no group accepted them (whenUnavailable 'drop'). */
  droppedMessages: number;
}

export interface SendOptions {
  queue?: number;
}

export type { SentMessage } from './producer-lane.js';
export { OutcomeUnknownError } from './produce-outcome.js';

export class DroppedError extends MambaError {
  override readonly name = 'DroppedError';
  constructor(message: string) {
    super('unavailable', message, false);
  }
}

const producerIdMax = 2 ** 48;
export const droppedMetricName = 'mamba_client_dropped_messages_total';

/**
 * The drop counter on the application's registry. Producers given the same registry share one
 * counter (a registry refuses a second metric of one name).
 */
function droppedCounterOn(registry: Registry): Counter<'topic'> {
  const existing = registry.getSingleMetric(droppedMetricName);
  if (existing instanceof Counter) return existing as Counter<'topic'>;
  if (existing) throw new InvalidArgumentError(`metrics.registry: it holds a ${droppedMetricName} that is not a counter`);
  return new Counter({
    name: droppedMetricName,
    help: 'Messages the producer dropped because no group accepted them',
    labelNames: ['topic'],
    registers: [registry],
  });
}

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(`${name}: ${value} is out of range ${min}..${max}`);
  return value;
}

export class Producer extends EventEmitter {
  readonly client: MambaClient;
  /** False when the client was given (ProducerOptions.client): close() leaves it open. */
  private readonly ownsClient: boolean;
  private readonly ack: Ack;
  private readonly lingerMs: number;
  private readonly batchBytesMax: number;
  private readonly retry: RetryPolicy;
  private readonly whenUnavailable: 'buffer' | 'drop';
  private readonly bufferBytesMax: number;
  private readonly idempotent: boolean;
  private readonly requestTimeoutMs: number;
  private readonly groupFailuresMax: number;
  private readonly lanes = new Map<string, ProducerLane>();
  private readonly streams = new Map<string, ProduceStreamClient>();
  private readonly batchesInflightMax: number;
  private readonly pipelineBytesMin: number;
  private readonly roomWaiters: Array<() => void> = [];
  private readonly refreshTimer: NodeJS.Timeout;
  private bufferedBytes = 0;
  private admission: Promise<void> = Promise.resolve();
  private admissionsWaiting = 0;
  private roundRobin = 0;
  private closed = false;
  private droppedMessages = 0;
  private readonly droppedCounter: Counter<'topic'> | null;

  constructor(options: ProducerOptions) {
    super();
    const ack: unknown = options.ack ?? 'quorum';
    if (!isAck(ack)) throw new InvalidArgumentError(`ack: "${String(ack)}" is not none, leader or quorum`);
    this.ack = ack;
    this.lingerMs = checkRange('lingerMs', options.lingerMs ?? 0, 0, 60_000);
    this.batchesInflightMax = checkRange('batchesInflightMax', options.batchesInflightMax ?? 4, 1, producerBatchesInflightMax);
    this.batchBytesMax = checkRange('batchBytesMax', options.batchBytesMax ?? 1024 * 1024, 1024, 64 * 1024 * 1024);
    this.pipelineBytesMin = checkRange('pipelineBytesMin', options.pipelineBytesMin ?? Math.min(64 * 1024, this.batchBytesMax), 0, this.batchBytesMax);
    this.whenUnavailable = options.whenUnavailable ?? 'buffer';
    if (this.whenUnavailable !== 'buffer' && this.whenUnavailable !== 'drop')
      throw new InvalidArgumentError(`whenUnavailable: "${String(this.whenUnavailable)}" is not buffer or drop`);
    this.bufferBytesMax = checkRange('bufferBytesMax', options.bufferBytesMax ?? 64 * 1024 * 1024, 1024, 16 * 1024 * 1024 * 1024);
    this.idempotent = options.idempotent ?? true;
    this.requestTimeoutMs = checkRange('requestTimeoutMs', options.requestTimeoutMs ?? 10_000, 1, 600_000);
    this.groupFailuresMax = checkRange('groupFailuresMax', options.groupFailuresMax ?? 3, 1, 1000);
    const routeRefreshMs = checkRange('routeRefreshMs', options.routeRefreshMs ?? 30_000, 100, 3_600_000);
    this.droppedCounter = options.metrics ? droppedCounterOn(options.metrics.registry) : null;
    this.ownsClient = options.client === undefined;
    // The client checks brokers and retry (names the option on a bad value).
    this.client =
      options.client ??
      new MambaClient({
        brokers: options.brokers,
        requestTimeoutMs: this.requestTimeoutMs,
        ...(options.retry ? { retry: options.retry } : {}),
        ...connectionOptionsOf(options),
      });
    this.retry = this.client.retryPolicy;
    this.refreshTimer = setInterval(() => {
      void this.client.cluster.refresh().catch(() => undefined);
    }, routeRefreshMs);
    this.refreshTimer.unref();
  }

  /** Queues a message; resolves once it is acknowledged at the producer's ack level. */
  send(topic: string, message: OutgoingMessage, options: SendOptions = {}): Promise<SentMessage> {
    if (this.closed) return Promise.reject(new UnavailableError('producer is closed'));
    // A producer span per message; its W3C traceparent travels in the message's headers.
    const trace = this.client.tracing.startSend(topic, 1);
    const wire = messageToWire(message, trace.headers);
    const bytes = wireMessageBytes(wire);
    if (bytes > this.batchBytesMax) {
      const error = new InvalidArgumentError(`message of ${bytes} bytes is larger than batchBytesMax ${this.batchBytesMax}`);
      trace.end(null, error);
      return Promise.reject(error);
    }
    return new Promise<SentMessage>((resolveSend, rejectSend) => {
      const resolve = (sent: SentMessage): void => {
        trace.end({ queue: sent.queue, baseOffset: sent.offset });
        resolveSend(sent);
      };
      const reject = (error: Error): void => {
        trace.end(null, error);
        rejectSend(error);
      };
      const item: LaneItem = { message: wire, bytes, resolve, reject };
      // Messages are admitted one after another in call order (route lookup, queue choice,
      // room in the buffer), so two sends to one queue keep their order whatever the lookups do.
      // With nothing waiting for admission, the route known and room in the buffer (the usual
      // case), a message is admitted at once, in this call: still in call order.
      if (this.admissionsWaiting === 0 && this.admitNow(topic, message, options, item)) return;
      this.admissionsWaiting++;
      this.admission = this.admission
        .then(() => this.admit(topic, message, options, item))
        .catch(reject)
        .finally(() => {
          this.admissionsWaiting--;
        });
    });
  }

  /** Admits without waiting when the route is cached and the buffer has room; false otherwise. */
  private admitNow(topic: string, message: OutgoingMessage, options: SendOptions, item: LaneItem): boolean {
    const route = this.client.cluster.cachedTopic(topic);
    if (!route || (this.bufferedBytes + item.bytes > this.bufferBytesMax && this.bufferedBytes > 0)) return false;
    try {
      this.enqueue(route, topic, message, options, item);
    } catch (error) {
      item.reject(error as Error);
    }
    return true;
  }

  private async admit(topic: string, message: OutgoingMessage, options: SendOptions, item: LaneItem): Promise<void> {
    const route = await this.client.cluster.topic(topic);
    await this.waitForRoom(item.bytes);
    this.enqueue(route, topic, message, options, item);
  }

  /** Picks the queue (given, by key, or round-robin) and hands the message to its lane. */
  private enqueue(route: TopicRoute, topic: string, message: OutgoingMessage, options: SendOptions, item: LaneItem): void {
    let roundRobin = false;
    let queue = options.queue;
    if (queue === undefined && message.key) queue = queueForKey(message.key, route.queues);
    if (queue === undefined) {
      queue = this.roundRobin++ % route.queues;
      roundRobin = true;
    }
    if (!Number.isInteger(queue) || queue < 0 || queue >= route.queues)
      throw new InvalidArgumentError(`queue ${queue}: topic "${topic}" has queues 0..${route.queues - 1}`);
    this.bufferedBytes += item.bytes;
    this.lane(topic, queue, roundRobin).add(item);
  }

  private lane(topic: string, queue: number, roundRobin: boolean): ProducerLane {
    const key = `${topic}\u0000${queue}\u0000${roundRobin ? 'rr' : 'pinned'}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = new ProducerLane(
        topic,
        queue,
        roundRobin,
        {
          batchBytesMax: this.batchBytesMax,
          batchesInflightMax: this.batchesInflightMax,
          pipelineBytesMin: this.pipelineBytesMin,
          lingerMs: this.lingerMs,
          retry: this.retry,
          whenUnavailable: this.whenUnavailable,
          groupFailuresMax: this.groupFailuresMax,
          ack: this.ack,
        },
        this.laneHost,
      );
      this.lanes.set(key, lane);
    }
    return lane;
  }

  private readonly laneHost = {
    send: (topic: string, queue: number, messages: WireMessage[], producerId: number, sequence: number, progress: RequestProgress) =>
      this.produceOnce(topic, queue, messages, producerId, sequence, progress),
    newProducerId: () => this.newProducerId(),
    nextGroupQueue: (topic: string, queue: number) => this.nextGroupQueue(topic, queue),
    sleep,
    now: () => Date.now(),
    isClosed: () => this.closed,
    freed: (bytes: number) => this.freeRoom(bytes),
    drop: (topic: string, queue: number, items: LaneItem[], cause: MambaError) => this.drop(topic, queue, items, cause),
  };

  private newProducerId(): number {
    return this.idempotent ? randomInt(1, producerIdMax) : 0;
  }

  private async waitForRoom(bytes: number): Promise<void> {
    // Bounded memory: beyond bufferBytesMax, send() waits until acknowledgements free room.
    while (this.bufferedBytes + bytes > this.bufferBytesMax && this.bufferedBytes > 0) {
      if (this.closed) throw new UnavailableError('producer is closed');
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  private freeRoom(bytes: number): void {
    this.bufferedBytes -= bytes;
    for (const wake of this.roomWaiters.splice(0)) wake();
  }

  /**
   * One batch to its queue's group leader, on the ProduceStream of that connection, through the
   * request path (cluster.ts). With the route and leader known (the usual case) the request is
   * written synchronously, so a lane's batches reach the stream in the order they were numbered.
   * `progress` stays 'unsent' when the route or the leader cannot be found.
   */
  private produceOnce(
    topic: string,
    queue: number,
    messages: WireMessage[],
    producerId: number,
    sequence: number,
    progress: RequestProgress,
  ): Promise<{ baseOffset: number; duplicate: boolean }> {
    const request = { topic, queue, ack: ackToWire(this.ack), producerId, sequence, messages };
    return this.client.cluster.onQueueLeader(topic, queue, (address) => this.stream(address).produce(request, progress));
  }

  private stream(address: string): ProduceStreamClient {
    let stream = this.streams.get(address);
    if (!stream) {
      stream = new ProduceStreamClient(address, () => this.client.pool.produceStream(address), this.requestTimeoutMs);
      this.streams.set(address, stream);
    }
    return stream;
  }

  /** A queue of the topic in another group than `queue`'s (round-robin failover). */
  private async nextGroupQueue(topic: string, queue: number): Promise<number | null> {
    const route = await this.client.cluster.topic(topic);
    const group = route.queueGroups[queue];
    for (let step = 1; step < route.queues; step++) {
      const candidate = (queue + step) % route.queues;
      if (route.queueGroups[candidate] !== group) return candidate;
    }
    return null;
  }

  private drop(topic: string, queue: number, items: LaneItem[], cause: MambaError): void {
    this.droppedMessages += items.length;
    this.droppedCounter?.inc({ topic }, items.length);
    this.emit('drop', { topic, queue, count: items.length, error: cause });
    const error = new DroppedError(`dropped ${items.length} messages for "${topic}": no group accepted them (${cause.message})`);
    for (const item of items) item.reject(error);
  }

  /** What this producer has counted (plain numbers; no metrics registry needed). */
  stats(): ProducerStats {
    return { droppedMessages: this.droppedMessages };
  }

  /** @deprecated Use stats().droppedMessages. */
  get dropped(): number {
    return this.droppedMessages;
  }

  /** Sends everything pending now and waits until it is acknowledged (or refused). */
  async flush(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && [...this.lanes.values()].some((l) => !l.idle)) {
      for (const lane of this.lanes.values()) lane.flush();
      await sleep(5);
    }
  }

  /** Flushes (bounded), then refuses what is left and closes the streams and (unless the client was given) the connections. */
  async close(timeoutMs = 10_000): Promise<void> {
    await this.flush(timeoutMs);
    this.closed = true;
    clearInterval(this.refreshTimer);
    for (const lane of this.lanes.values()) lane.failPending(new UnavailableError('producer closed before the message was sent'));
    for (const wake of this.roomWaiters.splice(0)) wake();
    for (const stream of this.streams.values()) stream.close();
    if (this.ownsClient) this.client.close();
  }
}
