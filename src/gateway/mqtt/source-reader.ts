// One (topic, queue) a connection's subscriptions cover: reads it through the SDK (following each
// answer's read advice), delivers every message, waits for the client's PUBACKs of a batch and
// only then moves on and, for a persistent session, commits the offset to the session's consumer
// group. So a message is committed only once the client has it (at least once), and a session
// that comes back, on any broker, resumes at the committed offset.
import type { MambaClient, ReadResult, ReceivedMessage } from '../../client/client.js';
import { OutOfRangeError } from '../../errors.js';
import type { GatewayLog } from '../common/metrics.js';
import { retainHeader } from './message-map.js';
import type { Source } from './topic-map.js';

/** Messages read per round (also bounds the PUBACKs one reader waits for). */
const batchMessagesMax = 64;
/** How long one read waits at the end of the queue, so a stopped reader ends within about this. */
const readWaitMsMax = 1000;
/** The retained message of a queue is looked for among its last this many messages. */
export const retainedScanMessagesMax = 1000;
const errorPauseMs = 500;
const groupCallTimeoutMs = 5000;

export interface DeliveryTarget {
  /**
   * Writes a PUBLISH; resolves true once the client has it (QoS 0: written; QoS 1: acknowledged),
   * false when the connection closed first.
   */
  publish(source: Source, qos: 0 | 1, message: ReceivedMessage, retained: boolean): Promise<boolean>;
}

export interface ReaderPosition {
  /** The persistent session's consumer group (offsets are committed there), or null. */
  consumerGroup: string | null;
  /** Start at the committed offset when there is one (a session resumed), else at the end. */
  resume: boolean;
}

export class SourceReader {
  private stopped = false;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: MambaClient,
    readonly source: Source,
    public qos: 0 | 1,
    private readonly target: DeliveryTarget,
    private readonly position: ReaderPosition,
    private readonly log: GatewayLog,
  ) {}

  start(): void {
    this.done = this.run().catch((error: Error) =>
      this.log.warn('mqtt.reader.failed', { topic: this.source.topic, queue: this.source.queue, problem: error.message }),
    );
  }

  /** Stops after the read in progress (at most about readWaitMsMax); resolves when it has. */
  stop(): Promise<void> {
    this.stopped = true;
    return this.done;
  }

  private async run(): Promise<void> {
    let offset: number | null = null;
    while (!this.stopped && offset === null) offset = await this.attempt(() => this.startOffset());
    let address: string | undefined;
    while (!this.stopped && offset !== null) {
      const from: number = offset;
      const result = await this.attempt(() => this.readAt(from, address));
      if (result === null) {
        address = undefined;
        continue;
      }
      address = result.advice?.address || undefined;
      if (result.messages.length === 0) {
        offset = Math.max(offset, result.nextOffset);
        continue;
      }
      const delivered = await Promise.all(result.messages.map((m) => this.target.publish(this.source, this.qos, m, false)));
      if (delivered.includes(false)) return; // the connection closed: the rest is delivered again next time
      offset = result.messages[result.messages.length - 1]!.offset + 1;
      const committed = offset;
      await this.attempt(() => this.commit(committed)); // a failed commit is retried with the next batch's
    }
  }

  /** One read; a position retention removed moves to the queue's start (as the SDK consumer's 'earliest'). */
  private async readAt(offset: number, address: string | undefined): Promise<Pick<ReadResult, 'messages' | 'nextOffset' | 'advice'>> {
    try {
      return await this.client.read(this.source.topic, this.source.queue, offset, { messagesMax: batchMessagesMax, waitMsMax: readWaitMsMax, address });
    } catch (error) {
      if (error instanceof OutOfRangeError && error.startOffset > offset) return { messages: [], nextOffset: error.startOffset, advice: null };
      throw error;
    }
  }

  /** `work`, or null after an error (logged, then a pause; a position below the queue start moves to it). */
  private async attempt<T>(work: () => Promise<T>): Promise<T | null> {
    try {
      return await work();
    } catch (error) {
      if (this.stopped) return null;
      this.log.debug('mqtt.reader.retry', { topic: this.source.topic, queue: this.source.queue, problem: (error as Error).message });
      await new Promise((resolve) => setTimeout(resolve, errorPauseMs));
      return null;
    }
  }

  private async startOffset(): Promise<number> {
    const { topic, queue } = this.source;
    const group = this.position.consumerGroup;
    if (group !== null && this.position.resume) {
      const reply = await this.client.cluster.callQueueLeader(
        topic,
        queue,
        'FetchOffset',
        { consumerGroup: group, topic, queue },
        { timeoutMs: groupCallTimeoutMs },
      );
      if (reply.found) return reply.offset;
    }
    const described = await this.client.describeTopic(topic);
    const info = described.queues.find((q) => q.queue === queue);
    const end = info ? Number(info.highWatermark) : 0;
    const start = info ? Number(info.startOffset) : 0;
    await this.deliverRetained(Math.max(start, end - retainedScanMessagesMax), end);
    // A new persistent subscription starts at the end: commit it, so that what is published while
    // the client is away is delivered when it comes back.
    await this.commit(end);
    return end;
  }

  /** The newest message in [from, end) published with retain, delivered with the retain flag (an empty one clears). */
  private async deliverRetained(from: number, end: number): Promise<void> {
    let retained: ReceivedMessage | null = null;
    let offset = from;
    for (let round = 0; round < 20 && offset < end; round++) {
      let result: ReadResult;
      try {
        result = await this.client.read(this.source.topic, this.source.queue, offset, { messagesMax: 500 });
      } catch (error) {
        if (error instanceof OutOfRangeError && error.startOffset > offset) {
          offset = error.startOffset;
          continue;
        }
        throw error;
      }
      for (const m of result.messages) if (m.offset < end && m.headers[retainHeader]) retained = m;
      if (result.messages.length === 0) break;
      offset = result.messages[result.messages.length - 1]!.offset + 1;
    }
    if (retained && retained.body.length > 0 && !this.stopped) await this.target.publish(this.source, this.qos, retained, true);
  }

  private async commit(offset: number): Promise<void> {
    const group = this.position.consumerGroup;
    if (group === null) return;
    const { topic, queue } = this.source;
    await this.client.cluster.callQueueLeader(topic, queue, 'CommitOffset', { consumerGroup: group, topic, queue, offset }, { timeoutMs: groupCallTimeoutMs });
  }
}
