// What the broker reports about its work, declared here beside the broker (as its tracing hooks
// are, tracer.ts) so that it does not import observe/: observe/metrics.ts implements it. Also the
// shapes of delivered messages, which consume answers with and the observer is shown.
import type { BrokerTracer } from './tracer.js';

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
  /**
   * A consumer group's committed offset on a queue fell below the queue's start (retention
   * removed messages it had not read) and it resumed from the start: `skippedMessages` more
   * messages it never read (each skipped message is reported once per broker).
   */
  consumerOffsetReset?(consumerGroup: string, topic: string, queue: number, skippedMessages: number): void;
}

export const noBrokerObserver: BrokerObserver = { produced() {}, committed() {}, consumed() {} };

/** Metrics and tracing hooks a broker is built with (both off by default). */
export interface BrokerInstruments {
  observer?: BrokerObserver;
  tracing?: BrokerTracer;
}
