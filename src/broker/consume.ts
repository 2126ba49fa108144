// The consume path: from the requested (or the consumer group's committed) offset, the committed
// messages of one queue as blocks cut from the stored batches, waiting up to waitMsMax when there
// are none yet, with the read advice; and the consumers waiting for data, woken when a batch of
// their queue commits. Every offset a consumer sees, in answers and in errors, is a queue offset:
// group-log offsets stay inside (the log's own range errors are turned into the queue's).
import { assert } from '../assert.js';
import { InvalidArgumentError, OutOfRangeError, ResourceExhaustedError, TimeoutError } from '../errors.js';
import { batchHeaderBytes } from '../log/index.js';
import { decodeRecordsRegionWith, recordLengthBytes, type RecordMaker } from '../record-region.js';
import type { Logger } from '../replica/logger.js';
import type { Replica } from '../replica/replica.js';
import type { Advice } from './advice.js';
import { CommandKind, messagesFieldsAt, messagesPrefixBytes } from './commands.js';
import type { ConsumerOffsetReset } from './layout.js';
import { consumerGroupPattern, offsetKey, queueKey } from './names.js';
import type { BrokerObserver, ConsumedBlock, ConsumedRecord } from './observer.js';
import type { Placement } from './placement.js';
import type { IndexedBatch } from './queue-index.js';
import type { BrokerState } from './state.js';
import type { BrokerTracer } from './tracer.js';

const consumeMessagesMax = 10_000;
const consumeBytesDefault = 4 * 1024 * 1024;
const consumeWaitersMax = 10_000;
const consumeRoundsMax = 10_000;
/** Offset resets remembered (so a consumer that reads from its committed offset again is not counted twice). */
const offsetResetsRememberedMax = 10_000;

export interface ConsumeRequest {
  topic: string;
  queue: number;
  offset: number;
  consumerGroup: string;
  useCommitted: boolean;
  messagesMax: number;
  bytesMax: number;
  waitMsMax: number;
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

export interface ConsumeParts {
  replica: Replica;
  state: BrokerState;
  placement: Placement;
  consumeWaitMsMax: number;
  /** The read advice for a consumer that needs the log up to an offset (cluster-view.ts). */
  advise: (neededLogOffset: number) => Advice;
  observer: BrokerObserver;
  tracing: BrokerTracer;
  logger: Logger;
  /** A committed offset below the queue's start: resume from the start, or refuse (layout.ts). */
  consumerOffsetReset: ConsumerOffsetReset;
}

export class ConsumePath {
  private readonly waiters = new Map<string, Set<() => void>>();
  private waiterCount = 0;
  /** Per consumer offset (offsetKey), the reset last reported: committed offset and the start it went to. Oldest first. */
  private readonly resetsReported = new Map<string, { committed: number; start: number }>();

  constructor(private readonly parts: ConsumeParts) {}

  async consume(request: ConsumeRequest, cancelled: () => boolean = () => false): Promise<ConsumeResult> {
    const { replica, state, placement } = this.parts;
    placement.checkQueue(request.topic, request.queue);
    const key = queueKey(request.topic, request.queue);
    const offset = this.startingOffset(request, key);
    const waitMs = Math.min(request.waitMsMax, this.parts.consumeWaitMsMax);
    const deadline = Date.now() + waitMs;
    for (let round = 0; round < consumeRoundsMax; round++) {
      const highWatermark = replica.committedOffset;
      const start = state.index.startOffset(key);
      const end = state.index.committedEndOffset(key, highWatermark);
      if (offset < start || offset > end) {
        throw new OutOfRangeError(
          `offset ${offset} is outside queue ${request.queue} of "${request.topic}": valid offsets are ${start}..${end} (${end} = next to be written)`,
          start,
          end,
        );
      }
      if (offset < end || Date.now() >= deadline || cancelled())
        return this.delivered(request, this.readQueue(request, key, offset, start, end, highWatermark));
      await this.waitForData(key, deadline - Date.now());
    }
    throw new TimeoutError('consume gave up after too many wake-ups');
  }

  /** Messages of the queue `key` were committed. */
  wake(key: string): void {
    const set = this.waiters.get(key);
    if (!set) return;
    for (const done of [...set]) done();
  }

  /** Every waiting consumer answers now (leadership moved, or the broker stops). */
  wakeAll(): void {
    for (const key of [...this.waiters.keys()]) this.wake(key);
  }

  /** Reports what a consume call delivers (metrics, delivery spans). */
  private delivered(request: ConsumeRequest, result: ConsumeResult): ConsumeResult {
    if (result.messageCount === 0) return result;
    const { observer, tracing, replica } = this.parts;
    const nowMs = Date.now();
    const records = observer.consumedBlocks === undefined || tracing.enabled ? recordsOfBlocks(result.blocks) : null;
    if (observer.consumedBlocks !== undefined) observer.consumedBlocks(request.topic, result.blocks, nowMs);
    else observer.consumed(request.topic, records!, nowMs);
    if (records !== null && tracing.enabled) tracing.delivered(request.topic, request.queue, request.consumerGroup, replica.currentEpoch, records);
    return result;
  }

  private startingOffset(request: ConsumeRequest, key: string): number {
    if (!request.useCommitted) {
      if (!Number.isSafeInteger(request.offset) || request.offset < 0) throw new InvalidArgumentError(`offset ${request.offset} is not valid`);
      return request.offset;
    }
    if (!consumerGroupPattern.test(request.consumerGroup))
      throw new InvalidArgumentError(`use_committed needs a valid consumer_group, got "${request.consumerGroup}"`);
    const { state } = this.parts;
    const start = state.index.startOffset(key);
    const committed = state.consumerOffset(request.consumerGroup, request.topic, request.queue);
    if (committed === undefined) return start;
    return committed >= start ? committed : this.resetBelowStart(request, key, committed, start);
  }

  /** Retention removed messages the consumer group had not read: resume from the start, or refuse (consumerOffsetReset). */
  private resetBelowStart(request: ConsumeRequest, key: string, committed: number, start: number): number {
    const { consumerGroup, topic, queue } = request;
    if (this.parts.consumerOffsetReset === 'fail') {
      const end = this.parts.state.index.committedEndOffset(key, this.parts.replica.committedOffset);
      throw new OutOfRangeError(
        `consumer group "${consumerGroup}" committed offset ${committed} on queue ${queue} of "${topic}", below the queue's start ${start}: retention removed ${start - committed} messages it had not read (consumerOffsetReset is 'fail': commit an offset in ${start}..${end} to go on)`,
        start,
        end,
      );
    }
    const resetKey = offsetKey(consumerGroup, topic, queue);
    const before = this.resetsReported.get(resetKey);
    // Counted once: a later read from the same committed offset reports only what the start passed since.
    const countedTo = before?.committed === committed ? Math.max(committed, before.start) : committed;
    if (start > countedTo) {
      const skipped = start - countedTo;
      this.resetsReported.delete(resetKey);
      this.resetsReported.set(resetKey, { committed, start });
      if (this.resetsReported.size > offsetResetsRememberedMax) this.resetsReported.delete(this.resetsReported.keys().next().value as string);
      this.parts.logger.warn('consumer.offset_reset', { consumerGroup, topic, queue, committed, start, skipped });
      this.parts.observer.consumerOffsetReset?.(consumerGroup, topic, queue, skipped);
    }
    return start;
  }

  /**
   * readBlocks, with the log's range error (in group-log offsets: retention removed batches the
   * index still had) turned into the queue's.
   */
  private readQueue(request: ConsumeRequest, key: string, offset: number, start: number, end: number, highWatermark: number): ConsumeResult {
    try {
      return this.readBlocks(request, key, offset, start, end, highWatermark);
    } catch (error) {
      if (!(error instanceof OutOfRangeError)) throw error;
      const retainedStart = this.parts.state.index.startFromLog(key, error.startOffset);
      throw new OutOfRangeError(
        `offset ${offset} of queue ${request.queue} of "${request.topic}" is no longer stored (retention removed it): valid offsets are ${retainedStart}..${end} (${end} = next to be written)`,
        retainedStart,
        end,
      );
    }
  }

  /**
   * The committed messages from `offset` on, within messagesMax and bytesMax (the first message
   * always, whatever its size), as blocks cut from the stored batches at record boundaries.
   * Nothing per message is decoded: the cut walks the records' length fields. A message counts
   * its encoded bytes (length field included) against bytesMax.
   */
  private readBlocks(request: ConsumeRequest, key: string, offset: number, start: number, end: number, highWatermark: number): ConsumeResult {
    const messagesMax = Math.min(request.messagesMax > 0 ? request.messagesMax : 100, consumeMessagesMax);
    const cut: BlockCut = {
      blocks: [],
      messageCount: 0,
      bytes: 0,
      messagesMax,
      bytesMax: request.bytesMax > 0 ? request.bytesMax : consumeBytesDefault,
      nextOffset: offset,
      full: false,
    };
    const batches = this.parts.state.index.batchesFrom(key, offset, highWatermark, messagesMax);
    const regionPosition = batchHeaderBytes + messagesPrefixBytes(request.topic);
    // One log read per run of batches that lie back to back in the group log (no index lookup
    // between them); a run is bounded by the messages still wanted, the read by the bytes (the
    // log returns at least one batch, so every round takes at least one).
    for (let first = 0, round = 0; first < batches.length && !cut.full && round < batches.length; round++) {
      const last = runEnd(batches, first, messagesMax - cut.messageCount);
      first += this.cutRun(cut, batches, first, last, regionPosition);
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
      advice: this.parts.advise(needed),
      servedBy: this.parts.placement.self.id,
    };
  }

  /**
   * Reads batches[first..last] (back to back in the log) with one log read and cuts what it
   * returns; returns how many batches the log returned.
   */
  private cutRun(cut: BlockCut, batches: readonly IndexedBatch[], first: number, last: number, regionPosition: number): number {
    const firstBatch = batches[first]!;
    const lastBatch = batches[last]!;
    const stored = this.parts.replica.readBatches(firstBatch.logOffset, cut.bytesMax - cut.bytes, lastBatch.logOffset + lastBatch.count);
    assert(
      stored.length >= 1 && stored.length <= last - first + 1,
      `queue index: ${last - first + 1} batches from log offset ${firstBatch.logOffset}, the log returned ${stored.length}`,
    );
    for (let index = 0; index < stored.length && !cut.full; index++) cutBlock(cut, batches[first + index]!, stored[index]!, regionPosition);
    return stored.length;
  }

  private waitForData(key: string, waitMs: number): Promise<void> {
    if (this.waiterCount >= consumeWaitersMax) {
      throw new ResourceExhaustedError(`${this.waiterCount} consumers already wait for data (limit ${consumeWaitersMax}); retry`);
    }
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        if (set!.delete(done)) this.waiterCount--;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, waitMs));
      set.add(done);
      this.waiterCount++;
    });
  }
}

// ------------------------------------------------------------------ cutting blocks

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

function isAdjacent(earlier: { logOffset: number; count: number }, later: { logOffset: number }): boolean {
  return earlier.logOffset + earlier.count === later.logOffset;
}

/** Index of the last batch of the run from `first`: back to back in the log, within `messagesWanted`. */
function runEnd(batches: readonly IndexedBatch[], first: number, messagesWanted: number): number {
  let last = first;
  let runMessages = batches[first]!.count;
  while (last + 1 < batches.length && runMessages < messagesWanted && isAdjacent(batches[last]!, batches[last + 1]!)) runMessages += batches[++last]!.count;
  return last;
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
  const fields = messagesFieldsAt(stored, batchHeaderBytes, regionPosition);
  assert(fields.kind === CommandKind.Messages && fields.queueOffset === batch.queueOffset, `queue index and log disagree at log offset ${batch.logOffset}`);
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
    cut.blocks.push({
      queueOffset: batch.queueOffset + skipCount,
      count,
      firstTimestampMs: fields.firstTimestampMs,
      records: region.subarray(startPosition, position),
    });
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
