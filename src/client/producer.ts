// The producer: batches messages per queue (linger, batch bytes), sends each queue's batches one
// at a time in order, numbers them for the brokers' duplicate check (idempotent producer), retries
// with exponential backoff against the group's current leader, moves round-robin batches to the
// next group when one stays unavailable, and when no group takes a batch either keeps it in a
// bounded buffer (send() waits for room) or drops it (counted, with a 'drop' event and a metric).
import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import { Counter, register } from 'prom-client';
import { InvalidArgumentError, MambaError, NotLeaderError, UnavailableError } from '../errors.js';
import { backoffMs, retryDefaults, sleep, type RetryPolicy } from './connection.js';
import { MambaClient, messageToWire, queueForKey, connectionOptionsOf, type Ack, type OutgoingMessage, type ConnectionOptions } from './client.js';
import type { Wire } from './connection.js';

export interface ProducerOptions extends ConnectionOptions {
  brokers: string[];
  ack?: Ack;
  /** How long a batch waits for more messages before it is sent. */
  lingerMs?: number;
  batchBytesMax?: number;
  retry?: Partial<RetryPolicy>;
  /** What happens to a batch no group accepts after the retries: keep it and try again, or drop it. */
  whenUnavailable?: 'buffer' | 'drop';
  /** Memory for messages not yet acknowledged; send() waits for room beyond it. */
  bufferBytesMax?: number;
  idempotent?: boolean;
  requestTimeoutMs?: number;
  routeRefreshMs?: number;
  /** Consecutive failures on one group before a round-robin batch moves to the next group. */
  groupFailuresMax?: number;
}

export interface SendOptions {
  queue?: number;
}

export interface SentMessage {
  topic: string;
  queue: number;
  offset: number;
  duplicate: boolean;
}

export class DroppedError extends MambaError {
  override readonly name = 'DroppedError';
  constructor(message: string) {
    super('unavailable', message, false);
  }
}

interface Item {
  message: Wire;
  bytes: number;
  resolve: (sent: SentMessage) => void;
  reject: (error: Error) => void;
}

interface Lane {
  topic: string;
  queue: number;
  roundRobin: boolean;
  pending: Item[];
  pendingBytes: number;
  timer: NodeJS.Timeout | null;
  inflight: boolean;
  producerId: number;
  nextSequence: number;
}

const producerIdMax = 2 ** 48;
let droppedCounter: Counter | null = null;

function droppedMetric(): Counter {
  droppedCounter ??= (register.getSingleMetric('mamba_client_dropped_messages_total') as Counter | undefined)
    ?? new Counter({ name: 'mamba_client_dropped_messages_total', help: 'Messages the producer dropped because no group accepted them', labelNames: ['topic'] });
  return droppedCounter;
}

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(`${name}: ${value} is out of range ${min}..${max}`);
  return value;
}

export class Producer extends EventEmitter {
  readonly client: MambaClient;
  private readonly ack: Ack;
  private readonly lingerMs: number;
  private readonly batchBytesMax: number;
  private readonly retry: RetryPolicy;
  private readonly whenUnavailable: 'buffer' | 'drop';
  private readonly bufferBytesMax: number;
  private readonly idempotent: boolean;
  private readonly requestTimeoutMs: number;
  private readonly groupFailuresMax: number;
  private readonly lanes = new Map<string, Lane>();
  private readonly roomWaiters: Array<() => void> = [];
  private readonly refreshTimer: NodeJS.Timeout;
  private bufferedBytes = 0;
  private admission: Promise<void> = Promise.resolve();
  private roundRobin = 0;
  private closed = false;
  dropped = 0;

  constructor(options: ProducerOptions) {
    super();
    this.ack = options.ack ?? 'quorum';
    if (!['none', 'leader', 'quorum'].includes(this.ack)) throw new InvalidArgumentError(`ack: "${this.ack}" is not none, leader or quorum`);
    this.lingerMs = checkRange('lingerMs', options.lingerMs ?? 5, 0, 60_000);
    this.batchBytesMax = checkRange('batchBytesMax', options.batchBytesMax ?? 1024 * 1024, 1024, 64 * 1024 * 1024);
    this.whenUnavailable = options.whenUnavailable ?? 'buffer';
    if (this.whenUnavailable !== 'buffer' && this.whenUnavailable !== 'drop') throw new InvalidArgumentError(`whenUnavailable: "${String(this.whenUnavailable)}" is not buffer or drop`);
    this.bufferBytesMax = checkRange('bufferBytesMax', options.bufferBytesMax ?? 64 * 1024 * 1024, 1024, 16 * 1024 * 1024 * 1024);
    this.idempotent = options.idempotent ?? true;
    this.requestTimeoutMs = checkRange('requestTimeoutMs', options.requestTimeoutMs ?? 10_000, 1, 600_000);
    this.groupFailuresMax = checkRange('groupFailuresMax', options.groupFailuresMax ?? 3, 1, 1000);
    const routeRefreshMs = checkRange('routeRefreshMs', options.routeRefreshMs ?? 30_000, 100, 3_600_000);
    // The client checks brokers and retry (names the option on a bad value).
    this.client = new MambaClient({ brokers: options.brokers, requestTimeoutMs: this.requestTimeoutMs, ...(options.retry ? { retry: options.retry } : {}), ...connectionOptionsOf(options) });
    this.retry = { ...retryDefaults, ...options.retry };
    this.refreshTimer = setInterval(() => { void this.client.router.refresh().catch(() => undefined); }, routeRefreshMs);
    this.refreshTimer.unref();
  }

  /** Queues a message; resolves once it is acknowledged at the producer's ack level. */
  send(topic: string, message: OutgoingMessage, options: SendOptions = {}): Promise<SentMessage> {
    if (this.closed) return Promise.reject(new UnavailableError('producer is closed'));
    // A producer span per message; its W3C traceparent travels in the message's headers.
    const trace = this.client.tracing.startSend(topic, 1);
    const wire = messageToWire(message, trace.headers);
    const bytes = wire.body.length + wire.key.length + 64 + (wire.headers as Wire[]).reduce((n, h) => n + h.key.length + h.value.length, 0);
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
      const item: Item = { message: wire, bytes, resolve, reject };
      // Messages are admitted one after another in call order (route lookup, queue choice,
      // room in the buffer), so two sends to one queue keep their order whatever the lookups do.
      this.admission = this.admission.then(() => this.admit(topic, message, options, item)).catch(reject);
    });
  }

  private async admit(topic: string, message: OutgoingMessage, options: SendOptions, item: Item): Promise<void> {
    const route = await this.client.router.topic(topic);
    let roundRobin = false;
    let queue = options.queue;
    if (queue === undefined && message.key) queue = queueForKey(message.key, route.queues);
    if (queue === undefined) {
      queue = this.roundRobin++ % route.queues;
      roundRobin = true;
    }
    if (!Number.isInteger(queue) || queue < 0 || queue >= route.queues) throw new InvalidArgumentError(`queue ${queue}: topic "${topic}" has queues 0..${route.queues - 1}`);
    await this.waitForRoom(item.bytes);
    const lane = this.lane(topic, queue, roundRobin);
    lane.pending.push(item);
    lane.pendingBytes += item.bytes;
    this.bufferedBytes += item.bytes;
    if (lane.pendingBytes >= this.batchBytesMax || this.lingerMs === 0) this.flushLane(lane);
    else lane.timer ??= setTimeout(() => this.flushLane(lane), this.lingerMs);
  }

  private lane(topic: string, queue: number, roundRobin: boolean): Lane {
    const key = `${topic}\u0000${queue}\u0000${roundRobin ? 'rr' : 'pinned'}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { topic, queue, roundRobin, pending: [], pendingBytes: 0, timer: null, inflight: false, producerId: this.newProducerId(), nextSequence: 0 };
      this.lanes.set(key, lane);
    }
    return lane;
  }

  private newProducerId(): number {
    return this.idempotent ? randomInt(1, producerIdMax) : 0;
  }

  private async waitForRoom(bytes: number): Promise<void> {
    // Bounded memory: beyond bufferBytesMax, send() waits until acknowledgements free room.
    for (let round = 0; this.bufferedBytes + bytes > this.bufferBytesMax && this.bufferedBytes > 0; round++) {
      if (this.closed) throw new UnavailableError('producer is closed');
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  private freeRoom(bytes: number): void {
    this.bufferedBytes -= bytes;
    for (const wake of this.roomWaiters.splice(0)) wake();
  }

  /** Sends the lane's pending messages as one batch, unless a batch of this lane is in flight. */
  private flushLane(lane: Lane): void {
    if (lane.timer) clearTimeout(lane.timer);
    lane.timer = null;
    if (lane.inflight || lane.pending.length === 0) return;
    const items: Item[] = [];
    let bytes = 0;
    while (lane.pending.length && (items.length === 0 || bytes + lane.pending[0]!.bytes <= this.batchBytesMax)) {
      const item = lane.pending.shift()!;
      items.push(item);
      bytes += item.bytes;
    }
    lane.pendingBytes -= bytes;
    lane.inflight = true;
    void this.deliver(lane, items, bytes).finally(() => {
      lane.inflight = false;
      this.freeRoom(bytes);
      if (lane.pending.length && (lane.pendingBytes >= this.batchBytesMax || !lane.timer)) this.flushLane(lane);
    });
  }

  /** Sends one batch until a group takes it, the retries run out (drop), or forever (buffer). */
  private async deliver(lane: Lane, items: Item[], _bytes: number): Promise<void> {
    let queue = lane.queue;
    let producerId = lane.producerId;
    let sequence = lane.nextSequence;
    lane.nextSequence += items.length;
    let groupFailures = 0;
    for (let attempt = 0; !this.closed || attempt === 0; attempt++) {
      try {
        const reply = await this.produceOnce(lane.topic, queue, items, producerId, sequence);
        items.forEach((item, i) => item.resolve({ topic: lane.topic, queue, offset: Number(reply.baseOffset) + i, duplicate: !!reply.duplicate }));
        return;
      } catch (error) {
        const failure = error as MambaError;
        if (!failure.retriable) {
          this.restartSequences(lane);
          return this.fail(items, failure);
        }
        groupFailures++;
        if (lane.roundRobin && groupFailures >= this.groupFailuresMax) {
          // The group stays unavailable: move the batch to the next group's queue of this topic,
          // under a new producer id there (its sequence numbers belong to the old queue).
          const next = await this.nextGroupQueue(lane.topic, queue).catch(() => null);
          if (next !== null && next !== queue) {
            queue = next;
            producerId = this.newProducerId();
            sequence = 0;
            groupFailures = 0;
            this.restartSequences(lane);
          }
        }
        const exhausted = attempt + 1 >= this.retry.attemptsMax;
        if (exhausted && this.whenUnavailable === 'drop') {
          this.restartSequences(lane);
          return this.drop(lane.topic, queue, items, failure);
        }
        await sleep(exhausted ? this.retry.backoffMsMax : backoffMs(this.retry, attempt));
      }
    }
    this.fail(items, new UnavailableError('producer closed before the batch was acknowledged'));
  }

  private async produceOnce(topic: string, queue: number, items: Item[], producerId: number, sequence: number): Promise<Wire> {
    // The queue → group map of a topic does not change; only leaders move (router.leaderOf).
    const route = await this.client.router.topic(topic);
    const group = route.queueGroups[queue]!;
    const address = await this.client.router.leaderOf(group);
    try {
      return await this.client.pool.call(address, 'Produce', {
        topic, queue, ack: { none: 1, leader: 2, quorum: 3 }[this.ack], producerId, sequence, messages: items.map((i) => i.message),
      }, this.requestTimeoutMs);
    } catch (error) {
      this.client.router.noteFailure(group, error as MambaError);
      if (!(error instanceof NotLeaderError) || !(error as NotLeaderError).leaderAddress) await this.client.router.refresh().catch(() => undefined);
      throw error;
    }
  }

  /**
   * A batch given up leaves a hole in the lane's sequence numbers that the broker would refuse
   * as a gap: the lane goes on under a new producer id, from sequence 0.
   */
  private restartSequences(lane: Lane): void {
    lane.producerId = this.newProducerId();
    lane.nextSequence = 0;
  }

  /** A queue of the topic in another group than `queue`'s (round-robin failover). */
  private async nextGroupQueue(topic: string, queue: number): Promise<number | null> {
    const route = await this.client.router.topic(topic);
    const group = route.queueGroups[queue];
    for (let step = 1; step < route.queues; step++) {
      const candidate = (queue + step) % route.queues;
      if (route.queueGroups[candidate] !== group) return candidate;
    }
    return null;
  }

  private drop(topic: string, queue: number, items: Item[], cause: MambaError): void {
    this.dropped += items.length;
    droppedMetric().inc({ topic }, items.length);
    this.emit('drop', { topic, queue, count: items.length, error: cause });
    const error = new DroppedError(`dropped ${items.length} messages for "${topic}": no group accepted them (${cause.message})`);
    for (const item of items) item.reject(error);
  }

  private fail(items: Item[], error: Error): void {
    for (const item of items) item.reject(error);
  }

  /** Sends everything pending now and waits until it is acknowledged (or refused). */
  async flush(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const lane of this.lanes.values()) this.flushLane(lane);
    while (Date.now() < deadline && [...this.lanes.values()].some((l) => l.inflight || l.pending.length)) {
      for (const lane of this.lanes.values()) if (!lane.inflight) this.flushLane(lane);
      await sleep(5);
    }
  }

  /** Flushes (bounded), then refuses what is left and closes the connections. */
  async close(timeoutMs = 10_000): Promise<void> {
    await this.flush(timeoutMs);
    this.closed = true;
    clearInterval(this.refreshTimer);
    for (const lane of this.lanes.values()) {
      if (lane.timer) clearTimeout(lane.timer);
      this.fail(lane.pending.splice(0), new UnavailableError('producer closed before the message was sent'));
    }
    for (const wake of this.roomWaiters.splice(0)) wake();
    this.client.close();
  }
}
