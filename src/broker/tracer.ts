// The tracing hooks a broker reports to, declared here beside the broker (as BrokerObserver is)
// so that the broker does not import observe/: observe/message-trace.ts implements them with
// OpenTelemetry spans, and a broker built without tracing gets the no-op below.

/** Message headers as the broker holds them (W3C trace context travels in them). */
export type TracedHeaders = ReadonlyArray<{ key: string; value: Uint8Array | null }>;

/** The spans of one produce request, from arrival to the answer. */
export interface ProduceTrace {
  /** The entry is in the local log: append span from `startMs` (performance.now()) to now. */
  appended(startMs: number, at: { queueOffset: number; logOffset: number; epoch: number }): void;
  /** The high watermark passed the entry: commit span from `startMs` to now. */
  committed(startMs: number): void;
  end(error?: unknown): void;
}

export interface BrokerTracer {
  /** False when no tracer is configured: the broker then skips the work tracing would need. */
  readonly enabled: boolean;
  startProduce(topic: string, queue: number, messages: ReadonlyArray<{ headers: TracedHeaders }>): ProduceTrace;
  delivered(topic: string, queue: number, consumerGroup: string, epoch: number, records: ReadonlyArray<{ offset: number; headers: TracedHeaders }>): void;
}

const noProduceTrace: ProduceTrace = { appended() {}, committed() {}, end() {} };

export const noBrokerTracer: BrokerTracer = {
  enabled: false,
  startProduce: () => noProduceTrace,
  delivered() {},
};
