// Per-message trace context: the producer's span travels in each message's W3C `traceparent`
// (and `tracestate`) header, is stored with the message, and parents the broker's spans for
// produce, append, commit and delivery, so one message yields one connected trace.
import { ROOT_CONTEXT, context, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { BrokerTracer, ProduceTrace } from '../broker/tracer.js';

export const traceparentHeader = 'traceparent';
export const tracestateHeader = 'tracestate';
export const messagingSystem = 'mamba';

type HeaderList = ReadonlyArray<{ key: string; value: Uint8Array | null }>;

const propagator = new W3CTraceContextPropagator();
/** Links a produce span carries at most (one per message of the batch with a context). */
const produceLinksMax = 128;

const listGetter = {
  keys: (headers: HeaderList) => headers.map((h) => h.key),
  get: (headers: HeaderList, key: string) => {
    const header = headers.find((h) => h.key === key);
    return header?.value ? Buffer.from(header.value.buffer, header.value.byteOffset, header.value.byteLength).toString('latin1') : undefined;
  },
};

/** The producer's context stored in a message's headers, or null when it has none. */
export function contextFromHeaders(headers: HeaderList): Context | null {
  if (!headers.some((h) => h.key === traceparentHeader)) return null;
  const context = propagator.extract(ROOT_CONTEXT, headers, listGetter);
  return trace.getSpanContext(context) ? context : null;
}

/** The headers that carry `span`'s context (traceparent and, when set, tracestate). */
export function headersOfSpan(span: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, {
    set: (c, k, v) => {
      c[k] = v;
    },
  });
  return carrier;
}

/**
 * Span times on one clock (the monotonic one, as epoch ms with a fraction): spans made at
 * different moments then order exactly, where the SDK's default mixes in Date.now() per span.
 */
export function spanTimeMs(performanceMs = performance.now()): number {
  return performance.timeOrigin + performanceMs;
}

export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }
  span.end(spanTimeMs());
}

/** The broker side's spans over one produce request. */
const noProduceTrace: ProduceTrace = { appended() {}, committed() {}, end() {} };

/** OpenTelemetry spans for the broker's tracing hooks (src/broker/tracer.ts). */
export class BrokerTracing implements BrokerTracer {
  constructor(
    private readonly tracer: Tracer | null,
    private readonly identity: { broker: string; group: string },
  ) {}

  get enabled(): boolean {
    return this.tracer !== null;
  }

  startProduce(topic: string, queue: number, messages: ReadonlyArray<{ headers: HeaderList }>): ProduceTrace {
    const tracer = this.tracer;
    if (!tracer) return noProduceTrace;
    const contexts = messages
      .slice(0, produceLinksMax)
      .map((m) => contextFromHeaders(m.headers))
      .filter((c): c is Context => c !== null);
    const links: Link[] = contexts.map((c) => ({ context: trace.getSpanContext(c)! }));
    const parent = contexts[0] ?? ROOT_CONTEXT;
    const base: Attributes = {
      'messaging.system': messagingSystem,
      'messaging.destination.name': topic,
      'mamba.topic': topic,
      'mamba.queue': queue,
      'mamba.group': this.identity.group,
      'mamba.broker': this.identity.broker,
    };
    const span = tracer.startSpan(
      `produce ${topic}`,
      { kind: SpanKind.SERVER, startTime: spanTimeMs(), links, attributes: { ...base, 'messaging.batch.message_count': messages.length } },
      parent,
    );
    const within = trace.setSpan(parent, span);
    let at: Attributes = base;
    return {
      appended: (startMs, offsets) => {
        at = { ...base, 'mamba.offset': offsets.queueOffset, 'mamba.log_offset': offsets.logOffset, 'mamba.epoch': offsets.epoch };
        span.setAttributes(at);
        tracer.startSpan('append', { startTime: spanTimeMs(startMs), attributes: at }, within).end(spanTimeMs());
      },
      committed: (startMs) => tracer.startSpan('commit', { startTime: spanTimeMs(startMs), attributes: at }, within).end(spanTimeMs()),
      end: (error) => endSpan(span, error),
    };
  }

  /** One delivery span per traced record, each a child of its producer's span. */
  delivered(topic: string, queue: number, consumerGroup: string, epoch: number, records: ReadonlyArray<{ offset: number; headers: HeaderList }>): void {
    const tracer = this.tracer;
    if (!tracer) return;
    for (const r of records) {
      const parent = contextFromHeaders(r.headers);
      if (!parent) continue;
      const nowMs = spanTimeMs();
      tracer
        .startSpan(
          `deliver ${topic}`,
          {
            kind: SpanKind.SERVER,
            startTime: nowMs,
            links: [{ context: trace.getSpanContext(parent)! }],
            attributes: {
              'messaging.system': messagingSystem,
              'messaging.destination.name': topic,
              'mamba.topic': topic,
              'mamba.queue': queue,
              'mamba.offset': r.offset,
              'mamba.group': this.identity.group,
              'mamba.broker': this.identity.broker,
              'mamba.epoch': epoch,
              ...(consumerGroup ? { 'messaging.consumer.group.name': consumerGroup } : {}),
            },
          },
          parent,
        )
        .end(nowMs);
    }
  }
}

/** The client side's spans over one send. */
export interface SendTrace {
  /** Headers to add to every message of the send (the producer span's context). */
  readonly headers: Record<string, string>;
  end(result: { queue: number; baseOffset: number } | null, error?: unknown): void;
}

const noSendTrace: SendTrace = { headers: {}, end() {} };

export class ClientTracing {
  constructor(private readonly tracer: Tracer | null) {}

  get enabled(): boolean {
    return this.tracer !== null;
  }

  /** A producer span under the caller's active context; its context goes into the messages. */
  startSend(topic: string, messageCount: number): SendTrace {
    if (!this.tracer) return noSendTrace;
    const span = this.tracer.startSpan(
      `send ${topic}`,
      {
        kind: SpanKind.PRODUCER,
        startTime: spanTimeMs(),
        attributes: {
          'messaging.system': messagingSystem,
          'messaging.destination.name': topic,
          'mamba.topic': topic,
          'messaging.batch.message_count': messageCount,
        },
      },
      context.active(),
    );
    return {
      headers: headersOfSpan(span), // unsampled too: downstream then follows the decision
      end: (result, error) => {
        if (result) span.setAttributes({ 'mamba.queue': result.queue, 'mamba.offset': result.baseOffset });
        endSpan(span, error);
      },
    };
  }

  /** One receive span per traced message, each a child of its producer's span. */
  received(topic: string, queue: number, messages: ReadonlyArray<{ offset: number; headers: Record<string, Uint8Array> }>): void {
    if (!this.tracer) return;
    for (const m of messages) {
      const value = m.headers[traceparentHeader];
      if (!value) continue;
      const list = [
        { key: traceparentHeader, value },
        ...(m.headers[tracestateHeader] ? [{ key: tracestateHeader, value: m.headers[tracestateHeader]! }] : []),
      ];
      const parent = contextFromHeaders(list);
      if (!parent) continue;
      const nowMs = spanTimeMs();
      this.tracer
        .startSpan(
          `receive ${topic}`,
          {
            kind: SpanKind.CONSUMER,
            startTime: nowMs,
            links: [{ context: trace.getSpanContext(parent)! }],
            attributes: {
              'messaging.system': messagingSystem,
              'messaging.destination.name': topic,
              'mamba.topic': topic,
              'mamba.queue': queue,
              'mamba.offset': m.offset,
            },
          },
          parent,
        )
        .end(nowMs);
    }
  }
}
