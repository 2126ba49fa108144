// The consumer: a member of a consumer group. It heartbeats to the topic's coordinator, reads
// the queues the coordinator assigns (one loop per queue, in order), follows the read advice of
// every reply, commits processed offsets (on an interval, or by hand), and hands a failed
// message to the topic's retry queue with a growing delay and, after `attemptsMax`, to its
// dead-letter queue. Delivery is at least once: a message is processed before its offset is
// committed. Calls go through the client's request path (cluster.ts); reads are retried with the
// client's retry policy (retry.ts), each failure reported as an 'error' event.
//
// With a fixed assignment (ConsumerOptions.assignment, as Kafka's assign()) it is no member: no
// heartbeats and no rebalancing, it reads exactly the queues given (and their retry queues), with
// the consumer group's offsets and the same retry and dead-letter path.
//
// The session rule (the member's half of the coordinator's hand-off safety, group-coordinator.ts):
// a member that has had no heartbeat answer for one session timeout stops reading the queues it
// owns, at once and without committing, since from then on the coordinator (or a new one) may deal
// them to another member. The time runs from when the last answered heartbeat was sent, which is
// no later than when the coordinator saw it; an answer that arrives after that is not acted on.
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, NotFoundError, OutOfRangeError, type MambaError } from '../errors.js';
import type { Transport } from './connection.js';
import { retry, sleep, type RetryPolicy } from './retry.js';
import { MambaClient, connectionOptionsOf, type ConnectionOptions } from './client.js';
import { readResultFromWire, type ReadResult, type ReceivedMessage } from './wire.js';
import { Producer } from './producer.js';

/** The bound on a coordinator call (Heartbeat) and on offset calls: well inside a session (6 s). */
const groupCallTimeoutMs = 5000;

/** The retry producer's largest batch unless told: the broker's default requestBytesMax. */
export const retryBatchBytesMaxDefault = 16 * 1024 * 1024;

export interface ConsumerOptions extends ConnectionOptions {
  brokers: string[];
  /**
   * A client to work through instead of one of the consumer's own (one client shared by many
   * consumers keeps one set of connections; the retry producer then sends through it too). The
   * consumer never closes it; `brokers`, `retry`, `requestTimeoutMs`, `transport` and the
   * connection options are then the client's.
   */
  client?: MambaClient;
  group: string;
  topic: string;
  /** 0 turns auto-commit off: call commit() yourself. */
  autoCommitIntervalMs?: number;
  heartbeatIntervalMs?: number;
  messagesMax?: number;
  waitMsMax?: number;
  /** Failed messages: retry queue with growing delay, then the dead-letter queue. */
  nack?: { attemptsMax?: number; delayMsInitial?: number; delayMsMax?: number };
  /**
   * The largest batch the producer of failed messages sends (default 16 MiB, the broker's default
   * requestBytesMax): it must hold the largest message read plus its retry headers.
   */
  retryBatchBytesMax?: number;
  /**
   * Queues of `topic` to read by hand instead of joining the group (as Kafka's assign()): no
   * heartbeats, no rebalancing. Reading starts at the group's committed offset of each queue (or
   * the queue's start, as for a member), commits go to the group, failed messages take the retry
   * and dead-letter path. Of the retry topic it reads queue `q % retryQueues` for each queue q and
   * takes only retries of the queues given (a retry topic with fewer queues than the topic mixes
   * several queues' retries in one). Consumers in one group should either all join or all be
   * given queues: a member and a fixed reader of the same queue would both read and commit it.
   */
  assignment?: number[];
  retry?: Partial<RetryPolicy>;
  requestTimeoutMs?: number;
  memberId?: string;
  /**
   * A queue's next offset fell below its start (retention removed those messages): `'earliest'`
   * (default, as Kafka's auto.offset.reset) goes on from the start and emits `'offset-reset'`
   * with the messages skipped; `'fail'` reports the OutOfRangeError each round instead.
   */
  offsetReset?: 'earliest' | 'fail';
  /** Unary calls go here instead of gRPC connections (tests: a scripted coordinator and queues). */
  transport?: Transport;
}

export interface Delivery extends ReceivedMessage {
  topic: string;
  queue: number;
  /** 1 for a first delivery; counts retries from the retry queue. */
  attempt: number;
}

export type Handler = (message: Delivery) => Promise<void> | void;

/** Header names on messages in the retry and dead-letter queues. */
export const retryHeaders = {
  attempt: 'mamba-attempt',
  notBeforeMs: 'mamba-not-before-ms',
  originTopic: 'mamba-origin-topic',
  originQueue: 'mamba-origin-queue',
  originOffset: 'mamba-origin-offset',
  /** The consumer group that failed the message: the retry topic is shared by every group of the topic. */
  originGroup: 'mamba-origin-group',
  error: 'mamba-error',
} as const;

export function retryTopicOf(topic: string): string {
  return `${topic}.retry`;
}

export function deadLetterTopicOf(topic: string): string {
  return `${topic}.dlq`;
}

/** A queue of a fixed assignment (or its retry queue) and where its reader starts. */
interface FixedReader {
  membership: Membership;
  queue: number;
  committed: number;
}

interface QueueReader {
  topic: string;
  queue: number;
  offset: number;
  committed: number;
  address: string | undefined;
  stopping: boolean;
  /** Aborted when the queue is given up: ends a backoff in progress at once. */
  stop: AbortController;
  done: Promise<void>;
}

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(`${name}: ${value} is out of range ${min}..${max}`);
  return value;
}

/** ConsumerOptions.assignment checked (start() checks it against the topic): a set of queue indexes, or null for group membership. */
function checkAssignment(assignment: number[] | undefined): ReadonlySet<number> | null {
  if (assignment === undefined) return null;
  if (!Array.isArray(assignment) || assignment.length === 0) throw new InvalidArgumentError('assignment: give at least one queue');
  for (const queue of assignment)
    if (!Number.isInteger(queue) || queue < 0) throw new InvalidArgumentError(`assignment: ${queue} is not a queue number (an integer from 0)`);
  const queues = new Set(assignment);
  if (queues.size !== assignment.length) throw new InvalidArgumentError(`assignment: queue numbers repeat (${assignment.join(', ')})`);
  return queues;
}

/**
 * True once `sessionTimeoutMs` has passed since `answeredAtMs` (when the last heartbeat that got an
 * answer was sent): the member must no longer read the queues it owns. False before any answer.
 */
export function sessionExpired(answeredAtMs: number | null, sessionTimeoutMs: number, nowMs: number): boolean {
  return answeredAtMs !== null && nowMs - answeredAtMs >= sessionTimeoutMs;
}

/** What a consumer emits as 'session-expired': the queues it stopped reading. */
export interface SessionExpiredEvent {
  topic: string;
  queues: number[];
  /** Since the last answered heartbeat was sent. */
  answerAgeMs: number;
}

/** One consumer-group member on one topic (the main topic or its retry topic). */
class Membership {
  readonly readers = new Map<number, QueueReader>();
  generation = 0;
  /** When the last heartbeat that got an answer was sent; null before the first answer. */
  answeredAtMs: number | null = null;
  /** From the last answer. */
  sessionTimeoutMs = 0;
  /** Fires when the session runs out (re-armed by every answer). */
  sessionTimer: NodeJS.Timeout | null = null;
  /** Loops stopped by an expired session that may still finish the message in hand. */
  readonly stoppedReads = new Set<Promise<void>>();

  constructor(
    readonly topic: string,
    readonly retries: boolean,
  ) {}

  expired(nowMs: number): boolean {
    return sessionExpired(this.answeredAtMs, this.sessionTimeoutMs, nowMs);
  }
}

export class Consumer extends EventEmitter {
  readonly client: MambaClient;
  /** False when the client was given (ConsumerOptions.client): close() leaves it open. */
  private readonly ownsClient: boolean;
  readonly memberId: string;
  private readonly group: string;
  private readonly topic: string;
  private readonly autoCommitIntervalMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly messagesMax: number;
  private readonly waitMsMax: number;
  private readonly offsetReset: 'earliest' | 'fail';
  private readonly attemptsMax: number;
  private readonly delayMsInitial: number;
  private readonly delayMsMax: number;
  private readonly memberships: Membership[];
  /** ConsumerOptions.assignment; null: the coordinator deals the queues. */
  private readonly fixedQueues: ReadonlySet<number> | null;
  private retryProducer: Producer | null = null;
  private handler: Handler | null = null;
  private timers: NodeJS.Timeout[] = [];
  private running = false;
  /** close() came before start() finished: start() starts nothing. */
  private closedBeforeStart = false;
  private heartbeating: Promise<void> = Promise.resolve();
  private heartbeatRunning = false;

  constructor(private readonly options: ConsumerOptions) {
    super();
    if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/.test(options.group ?? ''))
      throw new InvalidArgumentError(`group: "${options.group}" is not a valid consumer group name`);
    if (!options.topic) throw new InvalidArgumentError('topic: a topic is required');
    this.group = options.group;
    this.topic = options.topic;
    this.autoCommitIntervalMs = checkRange('autoCommitIntervalMs', options.autoCommitIntervalMs ?? 1000, 0, 3_600_000);
    this.heartbeatIntervalMs = checkRange('heartbeatIntervalMs', options.heartbeatIntervalMs ?? 1000, 50, 60_000);
    this.messagesMax = checkRange('messagesMax', options.messagesMax ?? 500, 1, 10_000);
    this.waitMsMax = checkRange('waitMsMax', options.waitMsMax ?? 500, 0, 30_000);
    if (options.offsetReset !== undefined && options.offsetReset !== 'earliest' && options.offsetReset !== 'fail')
      throw new InvalidArgumentError(`offsetReset: must be 'earliest' or 'fail', got ${JSON.stringify(options.offsetReset)}`);
    this.offsetReset = options.offsetReset ?? 'earliest';
    this.attemptsMax = checkRange('nack.attemptsMax', options.nack?.attemptsMax ?? 3, 1, 100);
    this.delayMsInitial = checkRange('nack.delayMsInitial', options.nack?.delayMsInitial ?? 1000, 0, 3_600_000);
    this.delayMsMax = checkRange('nack.delayMsMax', options.nack?.delayMsMax ?? 60_000, this.delayMsInitial, 86_400_000);
    this.memberId = options.memberId ?? `m-${randomUUID()}`;
    this.fixedQueues = checkAssignment(options.assignment);
    this.ownsClient = options.client === undefined;
    this.client =
      options.client ??
      new MambaClient({
        brokers: options.brokers,
        requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
        ...(options.retry ? { retry: options.retry } : {}),
        ...(options.transport ? { transport: options.transport } : {}),
        ...connectionOptionsOf(options),
      });
    this.memberships = [new Membership(this.topic, false), new Membership(retryTopicOf(this.topic), true)];
  }

  /**
   * Joins the group (or, with a fixed assignment, starts reading its queues) and calls `handler`
   * for every message of the queues assigned to it. InvalidArgumentError names an assigned queue
   * the topic does not have.
   */
  async start(handler: Handler): Promise<void> {
    if (this.running) throw new InvalidArgumentError('consumer already started');
    if (this.closedBeforeStart) throw new InvalidArgumentError('consumer is closed');
    this.handler = handler;
    const route = await this.client.cluster.topic(this.topic);
    for (const queue of this.fixedQueues ?? [])
      if (queue >= route.queues)
        throw new InvalidArgumentError(`assignment: topic "${this.topic}" has ${route.queues} queues (0..${route.queues - 1}), not queue ${queue}`);
    await this.ensureTopic(retryTopicOf(this.topic), route.queues);
    await this.ensureTopic(deadLetterTopicOf(this.topic), 1);
    const fixed = this.fixedQueues ? await this.fixedReaders(this.fixedQueues) : null;
    // close() was called while this started: it found nothing running, so nothing may start now.
    if (this.closedBeforeStart) return;
    this.retryProducer = new Producer({
      brokers: this.options.brokers,
      lingerMs: 0,
      whenUnavailable: 'buffer',
      batchBytesMax: this.options.retryBatchBytesMax ?? retryBatchBytesMaxDefault,
      ...(this.ownsClient ? connectionOptionsOf(this.options) : { client: this.client }),
    });
    this.running = true;
    if (fixed) for (const reader of fixed) this.startReader(reader.membership, reader.queue, reader.committed);
    else {
      await this.heartbeatAll();
      this.timers.push(
        setInterval(() => {
          this.heartbeating = this.heartbeatAll();
        }, this.heartbeatIntervalMs),
      );
    }
    if (this.autoCommitIntervalMs > 0)
      this.timers.push(
        setInterval(() => {
          void this.commit().catch((e: Error) => this.report(e));
        }, this.autoCommitIntervalMs),
      );
  }

  private async ensureTopic(name: string, queues: number): Promise<void> {
    try {
      await this.client.cluster.topic(name);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      await this.client.createTopic(name, queues).catch((e: MambaError) => {
        if (e.kind !== 'already_exists') throw e;
      });
    }
  }

  /** 'error' events are for the application; without a listener they must not throw. */
  private report(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  /** The queues this member reads now, per topic. */
  assignment(): { topic: number[]; retry: number[] } {
    return { topic: [...this.memberships[0]!.readers.keys()].sort((a, b) => a - b), retry: [...this.memberships[1]!.readers.keys()].sort((a, b) => a - b) };
  }

  private async heartbeatAll(): Promise<void> {
    if (this.heartbeatRunning) return; // a slow round (a revocation waits for its reader) is not doubled
    this.heartbeatRunning = true;
    try {
      for (const membership of this.memberships) {
        if (!this.running) return;
        await this.heartbeat(membership, false).catch((error: Error) => this.report(error as Error));
      }
    } finally {
      this.heartbeatRunning = false;
    }
  }

  private async heartbeat(membership: Membership, leave: boolean): Promise<void> {
    const sentAtMs = Date.now();
    // The coordinator is the leader of the group that holds queue 0 of the topic.
    const reply = await this.client.cluster.callQueueLeader(
      membership.topic,
      0,
      'Heartbeat',
      { consumerGroup: this.group, topic: membership.topic, memberId: this.memberId, ownedQueues: [...membership.readers.keys()], leave },
      { timeoutMs: groupCallTimeoutMs },
    );
    if (leave) return;
    this.answered(membership, sentAtMs, reply.sessionTimeoutMs);
    if (this.checkSession(membership)) return; // answered too late: the queues may be another's by now
    await this.settleStoppedReads(membership);
    const assigned = new Set(reply.assignedQueues);
    const generation = reply.generation;
    if (generation !== membership.generation) {
      membership.generation = generation;
      this.emit('rebalance', { topic: membership.topic, generation, members: reply.members, assigned: [...assigned].sort((a, b) => a - b) });
    }
    for (const [queue, reader] of membership.readers) if (!assigned.has(queue)) await this.revoke(membership, reader);
    for (const queue of assigned) if (!membership.readers.has(queue) && this.running) await this.assign(membership, queue);
  }

  /** A heartbeat sent at `sentAtMs` got an answer: the session runs from then. */
  private answered(membership: Membership, sentAtMs: number, sessionTimeoutMs: number): void {
    membership.answeredAtMs = Math.max(membership.answeredAtMs ?? sentAtMs, sentAtMs);
    membership.sessionTimeoutMs = sessionTimeoutMs;
    if (membership.sessionTimer) clearTimeout(membership.sessionTimer);
    membership.sessionTimer = null;
    if (!this.running) return;
    const leftMs = Math.max(0, membership.answeredAtMs + sessionTimeoutMs - Date.now());
    membership.sessionTimer = setTimeout(() => this.checkSession(membership), leftMs);
    membership.sessionTimer.unref();
  }

  /**
   * The session rule (see the header): when the session has run out, stops every queue reader of
   * the membership at once (the handler of a message in hand finishes; no message starts), commits
   * nothing, and gives the queues up. True when it has run out.
   */
  private checkSession(membership: Membership): boolean {
    const nowMs = Date.now();
    if (!membership.expired(nowMs)) return false;
    if (membership.readers.size === 0) return true;
    const queues = [...membership.readers.keys()].sort((a, b) => a - b);
    for (const reader of membership.readers.values()) {
      reader.stopping = true;
      reader.stop.abort();
      const done = reader.done.catch((error: Error) => this.report(error)).finally(() => membership.stoppedReads.delete(done));
      membership.stoppedReads.add(done);
    }
    membership.readers.clear();
    const event: SessionExpiredEvent = { topic: membership.topic, queues, answerAgeMs: nowMs - (membership.answeredAtMs ?? nowMs) };
    this.emit('session-expired', event);
    return true;
  }

  /** Waits for loops an expired session stopped, so a queue dealt back is never read twice at once here. */
  private async settleStoppedReads(membership: Membership): Promise<void> {
    if (membership.stoppedReads.size > 0) await Promise.all([...membership.stoppedReads]);
  }

  /** False once the reader must stop: its queue given up, the consumer closing, or the session run out. */
  private mayRead(membership: Membership, reader: QueueReader): boolean {
    return !reader.stopping && this.running && !this.checkSession(membership);
  }

  private async assign(membership: Membership, queue: number): Promise<void> {
    this.startReader(membership, queue, await this.committedOffset(membership.topic, queue));
  }

  /**
   * A fixed assignment's readers, not yet started: the queues given and their retry queues, each
   * with the group's committed offset (asked under the client's retry policy). All are known
   * before any reader starts, so a failure leaves nothing running.
   */
  private async fixedReaders(queues: ReadonlySet<number>): Promise<FixedReader[]> {
    const retryQueues = (await this.client.cluster.topic(retryTopicOf(this.topic))).queues;
    const [main, retries] = this.memberships as [Membership, Membership];
    const readers: FixedReader[] = [];
    const add = async (membership: Membership, queue: number): Promise<void> => {
      readers.push({ membership, queue, committed: await this.client.retry(() => this.committedOffset(membership.topic, queue)) });
    };
    for (const queue of queues) await add(main, queue);
    for (const queue of new Set([...queues].map((q) => q % retryQueues))) await add(retries, queue);
    return readers;
  }

  private startReader(membership: Membership, queue: number, committed: number): void {
    const reader: QueueReader = {
      topic: membership.topic,
      queue,
      offset: committed,
      committed,
      address: undefined,
      stopping: false,
      stop: new AbortController(),
      done: Promise.resolve(),
    };
    membership.readers.set(queue, reader);
    // A loop that fails (never by design) stops that queue's reads and is reported; it must not
    // become an unhandled rejection, which would end the process.
    reader.done = this.readLoop(membership, reader).catch((error: Error) => this.report(error));
  }

  /** Stops reading a queue, waits for the message in hand, commits, and gives the queue up. */
  private async revoke(membership: Membership, reader: QueueReader): Promise<void> {
    reader.stopping = true;
    reader.stop.abort();
    await reader.done;
    await this.commitReader(reader).catch((error: Error) => this.report(error as Error));
    membership.readers.delete(reader.queue);
  }

  private async committedOffset(topic: string, queue: number): Promise<number> {
    const reply = await this.client.cluster.callQueueLeader(
      topic,
      queue,
      'FetchOffset',
      { consumerGroup: this.group, topic, queue },
      { timeoutMs: groupCallTimeoutMs },
    );
    if (reply.found) return reply.offset;
    const described = await this.client.describeTopic(topic);
    return described.queues.find((q) => q.queue === queue)?.startOffset ?? 0;
  }

  private async readLoop(membership: Membership, reader: QueueReader): Promise<void> {
    // Ends when the queue is revoked, the session runs out or the consumer closes; each round
    // waits at most waitMsMax.
    while (this.mayRead(membership, reader)) {
      const result = await this.readRetried(membership, reader);
      if (result === null) continue;
      reader.address = result.advice?.address || undefined;
      this.client.tracing.received(reader.topic, reader.queue, result.messages);
      for (const message of result.messages) {
        if (!this.mayRead(membership, reader)) return;
        const processed = await this.process(membership, reader, message);
        if (processed === 'stop') return;
        if (processed === 'again') break; // read again from the same message
        reader.offset = message.offset + 1;
      }
      if (result.messages.length === 0 && result.nextOffset > reader.offset) reader.offset = result.nextOffset;
    }
  }

  /**
   * One read of the reader's queue under the client's retry policy: the first attempt where the
   * last answer advised, retries at the leader, each failure reported. null when the retries gave
   * up (reported, then a pause of backoffMsMax so a lasting refusal does not spin) or the queue
   * is being given up.
   */
  private async readRetried(membership: Membership, reader: QueueReader): Promise<ReadResult | null> {
    const policy = this.client.retryPolicy;
    const request = { topic: reader.topic, queue: reader.queue, offset: reader.offset, messagesMax: this.messagesMax, waitMsMax: this.waitMsMax, blocks: true };
    try {
      const reply = await retry(
        policy,
        (attempt) => {
          if (attempt.index > 0 && !this.mayRead(membership, reader)) attempt.bail(null);
          return this.client.cluster.callQueueLeader(reader.topic, reader.queue, 'Consume', request, {
            address: attempt.index === 0 ? reader.address : undefined,
            timeoutMs: this.client.cluster.requestTimeoutMs + this.waitMsMax,
          });
        },
        { signal: reader.stop.signal, onRetry: (error) => this.report(error) },
      );
      return readResultFromWire(reply);
    } catch (error) {
      reader.address = undefined; // back to the leader
      if (reader.stopping || !this.running) return null;
      if (this.resetBelowStart(reader, error)) return null;
      this.report(error as Error);
      await sleep(policy.backoffMsMax, reader.stop.signal);
      return null;
    }
  }

  /**
   * Retention removed the reader's next offset: with offsetReset 'earliest', go on from the
   * queue's start (the broker names it on the refusal). True when the reader moved.
   */
  private resetBelowStart(reader: QueueReader, error: unknown): boolean {
    if (!(error instanceof OutOfRangeError) || this.offsetReset !== 'earliest') return false;
    if (error.startOffset < 0 || reader.offset >= error.startOffset) return false;
    const event = {
      topic: reader.topic,
      queue: reader.queue,
      fromOffset: reader.offset,
      toOffset: error.startOffset,
      skippedMessages: error.startOffset - reader.offset,
    };
    reader.offset = error.startOffset;
    this.emit('offset-reset', event);
    return true;
  }

  /**
   * Hands one message to the handler (a retry of a queue not in a fixed assignment is passed
   * over): 'next' once it is handled or stored for a retry; 'stop' when the queue was given up
   * before its turn; 'again' when a failed message could not be stored for a retry (reported):
   * it is not passed over, the queue is read again from it after a pause.
   */
  private async process(membership: Membership, reader: QueueReader, message: ReceivedMessage): Promise<'next' | 'stop' | 'again'> {
    if (membership.retries && !this.retryIsOurs(message)) return 'next';
    const attempt = membership.retries ? Number(message.headers[retryHeaders.attempt]?.toString() ?? '1') : 1;
    if (membership.retries) {
      const notBeforeMs = Number(message.headers[retryHeaders.notBeforeMs]?.toString() ?? '0');
      // Wait for the message's retry time (bounded by revocation and close).
      while (Date.now() < notBeforeMs && !reader.stopping && this.running) await sleep(Math.min(200, notBeforeMs - Date.now()));
      if (Date.now() < notBeforeMs) return 'stop';
    }
    const origin = membership.retries ? (message.headers[retryHeaders.originTopic]?.toString() ?? this.topic) : this.topic;
    try {
      await this.handler!({ ...message, topic: origin, queue: reader.queue, attempt });
    } catch (error) {
      try {
        await this.nack(reader, message, attempt, error as Error);
      } catch (nackError) {
        this.report(nackError as Error);
        await sleep(this.client.retryPolicy.backoffMsMax, reader.stop.signal);
        return 'again';
      }
    }
    return 'next';
  }

  /**
   * A group takes only its own failures from the retry topic, which every consumer group of the
   * topic shares (a retry stored before the origin-group header: every group's, as it was); a
   * member takes every one of its retry queues, a fixed assignment only those of its own queues.
   */
  private retryIsOurs(message: ReceivedMessage): boolean {
    const originGroup = message.headers[retryHeaders.originGroup]?.toString();
    if (originGroup !== undefined && originGroup !== this.group) return false;
    if (this.fixedQueues === null) return true;
    const originQueue = Number(message.headers[retryHeaders.originQueue]?.toString() ?? Number.NaN);
    return this.fixedQueues.has(originQueue);
  }

  /** Sends a failed message to the retry queue with a growing delay, or to the dead-letter queue. */
  private async nack(reader: QueueReader, message: ReceivedMessage, attempt: number, error: Error): Promise<void> {
    const dead = attempt >= this.attemptsMax;
    const delayMs = Math.min(this.delayMsMax, this.delayMsInitial * 2 ** (attempt - 1));
    const headers: Record<string, string | Uint8Array> = { ...message.headers };
    headers[retryHeaders.attempt] = String(attempt + 1);
    headers[retryHeaders.notBeforeMs] = String(Date.now() + delayMs);
    headers[retryHeaders.error] = error.message.slice(0, 500);
    headers[retryHeaders.originGroup] = this.group;
    if (!message.headers[retryHeaders.originTopic]) {
      headers[retryHeaders.originTopic] = reader.topic;
      headers[retryHeaders.originQueue] = String(reader.queue);
      headers[retryHeaders.originOffset] = String(message.offset);
    }
    const target = dead ? deadLetterTopicOf(this.topic) : retryTopicOf(this.topic);
    await this.retryProducer!.send(
      target,
      { key: message.key, body: message.body, headers, timestampMs: message.timestampMs },
      dead ? { queue: 0 } : { queue: reader.queue % (await this.client.cluster.topic(target)).queues },
    );
    this.emit(dead ? 'dead-letter' : 'retry', { topic: this.topic, queue: reader.queue, offset: message.offset, attempt });
  }

  /** Commits the offset after the last processed message of every queue this member reads (none once its session ran out). */
  async commit(): Promise<void> {
    for (const membership of this.memberships) {
      for (const reader of membership.readers.values()) {
        if (this.checkSession(membership)) break;
        await this.commitReader(reader);
      }
    }
  }

  private async commitReader(reader: QueueReader): Promise<void> {
    if (reader.offset === reader.committed) return;
    const offset = reader.offset;
    const request = { consumerGroup: this.group, topic: reader.topic, queue: reader.queue, offset };
    await this.client.cluster.callQueueLeader(reader.topic, reader.queue, 'CommitOffset', request, { timeoutMs: groupCallTimeoutMs });
    reader.committed = Math.max(reader.committed, offset);
  }

  /** Leaves the group: stops every loop, commits, tells the coordinator, closes connections (not a given client's). */
  async close(): Promise<void> {
    if (!this.running) {
      this.closedBeforeStart = true;
      if (this.ownsClient) this.client.close();
      return;
    }
    this.running = false;
    for (const timer of this.timers) clearInterval(timer);
    await this.heartbeating.catch(() => undefined);
    for (const membership of this.memberships) {
      if (membership.sessionTimer) clearTimeout(membership.sessionTimer);
      await this.settleStoppedReads(membership);
      // A session that ran out owns nothing: its readers are gone, nothing is committed for them.
      for (const reader of [...membership.readers.values()]) await this.revoke(membership, reader);
      if (!this.fixedQueues) await this.heartbeat(membership, true).catch(() => undefined);
    }
    await this.retryProducer?.close();
    if (this.ownsClient) this.client.close();
  }
}
