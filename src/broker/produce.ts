// The produce path: checks a request, answers a retried batch of an idempotent producer with the
// offsets it already has, else encodes the messages into one Messages command, proposes it and
// waits for the acknowledgement the request asked for. Also how admin commands are replicated.
import { assert } from '../assert.js';
import { InvalidArgumentError, MambaError, ProducerExpiredError, TimeoutError } from '../errors.js';
import type { Replica } from '../replica/replica.js';
import { encodeCommand, type Command } from './commands.js';
import { encodeMessagesCommand, type ProduceMessage } from './produce-encoding.js';
import type { ProducedBatch } from './producer-table.js';
import { producerKey, queueKey } from './names.js';
import type { BrokerObserver } from './observer.js';
import type { Placement } from './placement.js';
import type { BrokerState } from './state.js';
import type { BrokerTracer, ProduceTrace } from './tracer.js';

export type { ProduceMessage } from './produce-encoding.js';
export type AckLevel = 'none' | 'leader' | 'quorum';

const messagesPerProduceMax = 100_000;
const replicationWaitMsMax = 30_000;

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

export interface ProduceParts {
  replica: Replica;
  state: BrokerState;
  placement: Placement;
  messageBytesMax: number;
  observer: BrokerObserver;
  tracing: BrokerTracer;
}

export class ProducePath {
  constructor(private readonly parts: ProduceParts) {}

  async produce(request: ProduceRequest): Promise<ProduceResult> {
    const trace = this.parts.tracing.startProduce(request.topic, request.queue, request.messages);
    try {
      const result = await this.produceTraced(request, trace);
      trace.end();
      return result;
    } catch (error) {
      trace.end(error);
      throw error;
    }
  }

  /** Proposes a command and waits until the group has committed it. */
  async replicate(command: Command): Promise<void> {
    const { replica, placement } = this.parts;
    placement.requireLeader();
    const offset = replica.propose(encodeCommand(command), 1);
    await withTimeout(replica.commitWaiters.wait(offset + 1, replica.committedOffset), 'quorum acknowledgement');
  }

  private async produceTraced(request: ProduceRequest, trace: ProduceTrace): Promise<ProduceResult> {
    const { replica, state, placement, observer } = this.parts;
    placement.checkQueue(request.topic, request.queue);
    if (request.messages.length === 0) throw new InvalidArgumentError('messages is empty: a produce request needs at least one message');
    placement.requireLeader();
    if (request.producerId !== 0) {
      const known = this.checkSequence(request);
      if (known) {
        await this.waitForAck(request.ack, known.logOffset + known.count);
        return { topic: request.topic, queue: request.queue, baseOffset: known.queueOffset, count: known.count, duplicate: true };
      }
    }
    const key = queueKey(request.topic, request.queue);
    const queueOffset = state.index.endOffset(key);
    const { payload, count } = encodeMessagesCommand(
      { topic: request.topic, queue: request.queue, queueOffset, producerId: request.producerId, sequence: request.sequence },
      request.messages,
      Date.now(),
      { messagesMax: messagesPerProduceMax, messageBytesMax: this.parts.messageBytesMax },
    );
    const proposedMs = performance.now();
    const logOffset = replica.propose(payload, count);
    trace.appended(proposedMs, { queueOffset, logOffset, epoch: replica.currentEpoch });
    observer.produced(request.topic, count, payload.byteLength);
    assert(state.index.endOffset(key) === queueOffset + count, 'produce: the proposal was not indexed at once');
    await this.waitForAck(request.ack, logOffset + count);
    if (request.ack === 'quorum') {
      observer.committed((performance.now() - proposedMs) / 1000);
      trace.committed(proposedMs);
    }
    return { topic: request.topic, queue: request.queue, baseOffset: queueOffset, count, duplicate: false };
  }

  private async waitForAck(ack: AckLevel, logEnd: number): Promise<void> {
    const replica = this.parts.replica;
    if (ack === 'quorum') await withTimeout(replica.commitWaiters.wait(logEnd, replica.committedOffset), 'quorum acknowledgement');
    else if (ack === 'leader') await withTimeout(replica.durableWaiters.wait(logEnd, replica.durableOffset), 'leader flush');
  }

  /** For an idempotent producer: the stored batch this request repeats, or null when it is new. */
  private checkSequence(request: ProduceRequest): ProducedBatch | null {
    const check = this.parts.state.producers.check(producerKey(request.producerId, request.topic, request.queue), request.sequence, request.messages.length);
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
      case 'unknown':
        throw new ProducerExpiredError(
          `producer ${request.producerId} expired on queue ${request.queue} of "${request.topic}": this broker no longer knows it (its table keeps the ${this.parts.state.producers.producersMax} most recently active producers; its stored batches may also have been lost), so sequence ${request.sequence} cannot be checked against what is stored; start over under a new producer id at sequence 0`,
          request.producerId,
        );
    }
  }
}

/** `promise`, or TimeoutError when `what` has not arrived within replicationWaitMsMax. */
export async function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
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
