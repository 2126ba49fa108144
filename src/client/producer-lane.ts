// One lane of the producer: the messages bound for one queue of a topic, batched adaptively and
// sent with several batches in flight, in order, numbered for the broker's duplicate check.
//
// The rules, in the order a lane applies them:
//   1. Adaptive batching. A message joins `pending`. A lane with nothing in flight sends
//      everything pending (up to batchBytesMax) at once as one batch: the first message of an
//      idle lane goes alone, with no linger. What arrives while batches are in flight coalesces
//      behind them and leaves when one returns, or earlier, as one more batch in flight (up to
//      `batchesInflightMax`), once `pipelineBytesMin` bytes wait: the depth of the pipeline grows
//      with the backlog. (Measured under `mambamq bench --inflight 256`: four small batches in
//      flight per queue cost the leader ~120 µs of CPU per message against ~80 µs for one
//      larger batch; each request costs a proposal, a log write and a replication round.)
//      `lingerMs` > 0 restores a fixed wait for more before a batch that is not full.
//   2. Numbering. A batch takes the lane's next sequence numbers when it first leaves; batches
//      leave in sequence order, on one stream to the queue's leader, so the broker sees them in
//      order.
//   3. In order, with more than one in flight: `batchesInflightMax` stays below the batches a
//      broker remembers per producer and queue (producer-table.ts, 8), so any batch resent after
//      a failure is recognised as a duplicate if it was stored. A producer id the broker has not
//      seen is taken at whatever sequence it starts with, so until the first batch under the
//      lane's current producer id is acknowledged, that batch is alone in flight (otherwise a
//      second batch could be stored while the first failed, and the first could never follow).
//   4. Recovery. When a batch fails, the lane stops sending new batches, waits for every batch
//      in flight to settle, then delivers the failed ones one at a time, in sequence order, with
//      the retry policy through the SDK's retrier (retry.ts: backoff, attemptsMax and
//      elapsedMsMax for `whenUnavailable: 'drop'`; no limit but the capped backoff for 'buffer'),
//      failover to another group's queue for round-robin lanes, then drop or keep per
//      `whenUnavailable`. Failover and drop are for batches no attempt may have stored
//      (produce-outcome.ts: never sent, or refused before the append). A batch that may be stored
//      (an attempt got no answer, or one that does not rule the append out) stays on its queue
//      under its producer id and sequence, so a copy its group stored is answered as a duplicate
//      (as Kafka keeps a batch on its partition); when the lane gives up on it, its messages fail
//      with OutcomeUnknownError. A batch refused for good fails its messages, and the lane goes on
//      under a new producer id from sequence 0; failed batches behind it are renumbered under that
//      id (they were not stored: the broker refused them as a gap), except those that may be
//      stored, which keep their numbers (answered as a duplicate, or refused as a gap and then
//      renumbered). Then the lane resumes rule 1.
import { MambaError, UnavailableError } from '../errors.js';
import type { Ack } from '../protocol/messages.js';
import { isRetriable, retry, systemClock, type RetryClock, type RetryPolicy } from './retry.js';
import { SequenceGapError, type RequestProgress } from './produce-stream.js';
import { OutcomeUnknownError, mayBeStored } from './produce-outcome.js';
import type { WireMessage } from './wire.js';

export interface SentMessage {
  topic: string;
  queue: number;
  offset: number;
  duplicate: boolean;
}

export interface LaneItem {
  message: WireMessage;
  bytes: number;
  resolve: (sent: SentMessage) => void;
  reject: (error: Error) => void;
}

export interface LaneOptions {
  batchBytesMax: number;
  /** Batches of one lane in flight at once (1..producerBatchesInflightMax). */
  batchesInflightMax: number;
  /** Bytes waiting that justify one more batch in flight beside those already out (rule 1). */
  pipelineBytesMin: number;
  lingerMs: number;
  retry: RetryPolicy;
  whenUnavailable: 'buffer' | 'drop';
  /** Consecutive failures on one group before a round-robin batch moves to another group's queue. */
  groupFailuresMax: number;
  /** The producer's ack level (what a RESOURCE_EXHAUSTED answer says: produce-outcome.ts). */
  ack: Ack;
}

/** Below the 8 batches a broker remembers per producer and queue (src/broker/producer-table.ts). */
export const producerBatchesInflightMax = 7;

/** What a lane needs from its producer: the network, ids, time, and where freed room goes. */
export interface LaneHost {
  /** One request; the host records in `progress` how far it got (produce-stream.ts). */
  send(
    topic: string,
    queue: number,
    messages: WireMessage[],
    producerId: number,
    sequence: number,
    progress: RequestProgress,
  ): Promise<{ baseOffset: number; duplicate: boolean }>;
  newProducerId(): number;
  /** A queue of the topic in another group than `queue`'s, or null. */
  nextGroupQueue(topic: string, queue: number): Promise<number | null>;
  sleep(ms: number): Promise<void>;
  now(): number;
  isClosed(): boolean;
  /** A batch's bytes are no longer held (acknowledged, failed or dropped). */
  freed(bytes: number): void;
  /** No group accepted the batch after the retries (whenUnavailable 'drop'). */
  drop(topic: string, queue: number, items: LaneItem[], cause: MambaError): void;
}

interface Batch {
  items: LaneItem[];
  bytes: number;
  queue: number;
  producerId: number;
  sequence: number;
  /** Set when the batch failed in flight; recovery delivers it again. */
  error: MambaError | null;
  /**
   * An attempt may have stored the batch in `queue` (produce-outcome.ts): it never leaves that
   * queue nor its producer id and sequence (rule 4). Never cleared.
   */
  mayBeStored: boolean;
}

export class ProducerLane {
  private readonly pending: LaneItem[] = [];
  private pendingBytes = 0;
  private readonly inflight: Batch[] = [];
  private recovering = false;
  private timer: NodeJS.Timeout | null = null;
  private producerId: number;
  private nextSequence = 0;
  /** A batch under the current producer id was acknowledged: the broker knows the id (rule 3). */
  private producerConfirmed = false;
  /** The retrier's time: the host's clock and sleep (tests make them fake and instant). */
  private readonly clock: RetryClock;

  constructor(
    readonly topic: string,
    readonly queue: number,
    readonly roundRobin: boolean,
    private readonly options: LaneOptions,
    private readonly host: LaneHost,
  ) {
    this.producerId = host.newProducerId();
    this.clock = { now: () => host.now(), sleep: (ms) => host.sleep(ms), random: systemClock.random };
  }

  /** Nothing pending, in flight or being recovered. */
  get idle(): boolean {
    return this.pending.length === 0 && this.inflight.length === 0 && !this.recovering;
  }

  get inflightCount(): number {
    return this.inflight.length;
  }

  /** Rule 1: queue a message and send what may leave now. */
  add(item: LaneItem): void {
    this.pending.push(item);
    this.pendingBytes += item.bytes;
    if (this.options.lingerMs > 0 && this.pendingBytes < this.options.batchBytesMax) {
      this.timer ??= setTimeout(() => this.flush(), this.options.lingerMs);
    } else {
      this.flush();
    }
  }

  /** Sends pending messages as batches while the lane has room in flight (no linger). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const inflightMax = this.producerConfirmed ? this.options.batchesInflightMax : 1;
    while (!this.recovering && this.pending.length > 0 && this.inflight.length < inflightMax) {
      if (this.inflight.length > 0 && this.pendingBytes < this.options.pipelineBytesMin) return; // coalesce behind them
      this.send(this.takeBatch());
    }
  }

  /** Refuses every message not yet sent (the producer is closing). */
  failPending(error: Error): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const items = this.pending.splice(0);
    this.pendingBytes = 0;
    for (const item of items) item.reject(error);
    this.host.freed(items.reduce((n, i) => n + i.bytes, 0));
  }

  private takeBatch(): Batch {
    const items: LaneItem[] = [];
    let bytes = 0;
    while (this.pending.length > 0 && (items.length === 0 || bytes + this.pending[0]!.bytes <= this.options.batchBytesMax)) {
      const item = this.pending.shift()!;
      items.push(item);
      bytes += item.bytes;
    }
    this.pendingBytes -= bytes;
    const batch: Batch = { items, bytes, queue: this.queue, producerId: 0, sequence: 0, error: null, mayBeStored: false };
    this.number(batch);
    return batch;
  }

  /** Rule 2: the lane's next sequence numbers, under its current producer id. */
  private number(batch: Batch): void {
    batch.producerId = this.producerId;
    batch.sequence = this.nextSequence;
    this.nextSequence += batch.items.length;
  }

  private restartSequences(): void {
    this.producerId = this.host.newProducerId();
    this.nextSequence = 0;
    this.producerConfirmed = false;
  }

  private send(batch: Batch): void {
    this.inflight.push(batch);
    this.attempt(batch).then(
      (reply) => {
        this.inflight.splice(this.inflight.indexOf(batch), 1);
        this.succeeded(batch, reply);
        this.host.freed(batch.bytes);
        if (this.recovering) this.maybeRecover();
        else this.flush();
      },
      (error: MambaError) => {
        batch.error = error;
        this.recovering = true;
        this.maybeRecover();
      },
    );
  }

  /**
   * One request for the batch (written synchronously, rule 2); a failure that may have stored the
   * batch marks it (rule 4).
   */
  private async attempt(batch: Batch): Promise<{ baseOffset: number; duplicate: boolean }> {
    const progress: RequestProgress = { stage: 'unsent' };
    try {
      return await this.host.send(
        this.topic,
        batch.queue,
        batch.items.map((i) => i.message),
        batch.producerId,
        batch.sequence,
        progress,
      );
    } catch (error) {
      if (mayBeStored(error, progress.stage, this.options.ack)) batch.mayBeStored = true;
      throw error;
    }
  }

  private succeeded(batch: Batch, reply: { baseOffset: number; duplicate: boolean }): void {
    if (batch.producerId === this.producerId) this.producerConfirmed = true;
    batch.items.forEach((item, i) => item.resolve({ topic: this.topic, queue: batch.queue, offset: reply.baseOffset + i, duplicate: reply.duplicate }));
  }

  /** Rule 4: once nothing is in flight any more, deliver the failed batches one by one. */
  private maybeRecover(): void {
    if (this.inflight.some((b) => b.error === null)) return;
    void this.recover(this.inflight.splice(0)); // in the order they were sent: sequence order
  }

  private async recover(failed: Batch[]): Promise<void> {
    for (const batch of failed) {
      // A gap in flight came from an earlier failed batch, now delivered: just resend. A lane
      // that started over under a new producer id renumbers the batch (it was never stored),
      // unless it may be stored: then its own numbers find the copy the broker holds, if any.
      let error = batch.error instanceof SequenceGapError ? null : batch.error;
      if (batch.producerId !== this.producerId && batch.queue === this.queue && !batch.mayBeStored) {
        this.number(batch);
        error = null;
      }
      await this.deliverAlone(batch, error);
      this.host.freed(batch.bytes);
    }
    this.recovering = false;
    if (this.host.isClosed()) this.failPending(new UnavailableError('producer closed before the message was sent'));
    else this.flush();
  }

  /**
   * One batch, alone in flight, until a group takes it, it is refused for good, it is dropped, or
   * the producer closes. `error` is why its last attempt failed (null: send at once); it counts
   * as the first attempt of the retries. A round-robin batch moves to another group's queue after
   * groupFailuresMax failures in a row, unless it may be stored where it is (rule 4).
   */
  private async deliverAlone(batch: Batch, error: MambaError | null): Promise<void> {
    let replay = error;
    let sent = false;
    let groupFailures = 0;
    const policy: RetryPolicy =
      this.options.whenUnavailable === 'buffer'
        ? { ...this.options.retry, attemptsMax: Number.POSITIVE_INFINITY, elapsedMsMax: Number.POSITIVE_INFINITY }
        : this.options.retry;
    try {
      const reply = await retry(
        policy,
        async (attempt) => {
          if (replay) {
            const failure = replay;
            replay = null;
            throw failure;
          }
          if (sent && this.host.isClosed()) attempt.bail(new UnavailableError('producer closed before the batch was acknowledged'));
          const mayMove = this.roundRobin && !batch.mayBeStored && groupFailures >= this.options.groupFailuresMax;
          if (mayMove && (await this.moveToNextGroup(batch))) groupFailures = 0;
          sent = true;
          return this.attemptAlone(batch);
        },
        {
          clock: this.clock,
          onRetry: () => {
            groupFailures++;
          },
        },
      );
      this.succeeded(batch, reply);
    } catch (failure) {
      this.restartSequences();
      this.gaveUp(batch, failure);
    }
  }

  /**
   * Rule 4's end for a batch the lane gives up on: one that may be stored fails with
   * OutcomeUnknownError (never dropped: a drop says no group took it); one no group took is
   * dropped (whenUnavailable 'drop', after retriable failures) or fails with its last error.
   */
  private gaveUp(batch: Batch, cause: unknown): void {
    if (batch.mayBeStored && cause instanceof MambaError) {
      const error = new OutcomeUnknownError(this.topic, batch.queue, batch.items.length, cause);
      for (const item of batch.items) item.reject(error);
    } else if (isRetriable(cause) && this.options.whenUnavailable === 'drop' && !this.host.isClosed()) {
      this.host.drop(this.topic, batch.queue, batch.items, cause);
    } else {
      for (const item of batch.items) item.reject(cause as Error);
    }
  }

  /**
   * One attempt of a batch alone in flight. Still a gap although alone: the broker lost earlier
   * batches (an ack level below quorum, then a failover), so the lane starts over under a new
   * producer id and sends the batch again at once (a new id is taken at any sequence).
   */
  private async attemptAlone(batch: Batch): Promise<{ baseOffset: number; duplicate: boolean }> {
    try {
      return await this.attempt(batch);
    } catch (error) {
      if (!(error instanceof SequenceGapError)) throw error;
      this.restartSequences();
      this.number(batch);
      return this.attempt(batch);
    }
  }

  /**
   * The group stays unavailable and the batch is not stored there (the caller checks
   * mayBeStored): it moves to another group's queue of the topic under a producer id of its own
   * (its sequence numbers belong to the old queue); the lane starts over.
   */
  private async moveToNextGroup(batch: Batch): Promise<boolean> {
    const next = await this.host.nextGroupQueue(this.topic, batch.queue).catch(() => null);
    if (next === null || next === batch.queue) return false;
    batch.queue = next;
    batch.producerId = this.host.newProducerId();
    batch.sequence = 0;
    this.restartSequences();
    return true;
  }
}
