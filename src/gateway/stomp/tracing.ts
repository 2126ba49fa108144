// A protocol gateway's spans (STOMP's for now; written for both gateways, to move to ../common):
//   - one per message a client sends, `<protocol> send <topic>` (kind SERVER), continuing the W3C
//     traceparent (and tracestate) the client sent, else starting a trace. Its context replaces
//     the client's in the headers stored with the message, so the broker's produce span is its child.
//   - one per message delivered to a client, `<protocol> deliver <topic>` (kind SERVER), a child
//     of the context stored with the message, ended when the client has it (or ACKs or NACKs it).
//     A message stored without a context gets no span, as the broker's own delivery spans.
// The gateway layer sees only the OpenTelemetry API: the broker hands in its Tracer, null when
// tracing is off, and then no span work is done and a client's trace context is stored as it came.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

export const traceparentHeader = 'traceparent';
export const tracestateHeader = 'tracestate';
const messagingSystem = 'mamba';

const propagator = new W3CTraceContextPropagator();

type TextHeaders = Record<string, string>;

const textGetter = {
  keys: (headers: TextHeaders) => Object.keys(headers),
  get: (headers: TextHeaders, key: string) => headers[key],
};

/** The trace context headers (traceparent, tracestate) among a message's or frame's headers. */
export function traceHeadersFrom(header: (name: string) => string | undefined): TextHeaders {
  const picked: TextHeaders = {};
  for (const name of [traceparentHeader, tracestateHeader]) {
    const value = header(name);
    if (value !== undefined) picked[name] = value;
  }
  return picked;
}

/** The trace context `headers` carry (traceparent, tracestate), or null when they carry none that is valid. */
export function contextFromTextHeaders(headers: TextHeaders): Context | null {
  if (headers[traceparentHeader] === undefined) return null;
  const context = propagator.extract(ROOT_CONTEXT, headers, textGetter);
  return trace.getSpanContext(context) ? context : null;
}

/** traceparent (and tracestate, when the span has one) naming `span`. */
export function textHeadersOfSpan(span: Span): TextHeaders {
  const carrier: TextHeaders = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, {
    set: (c, k, v) => {
      c[k] = v;
    },
  });
  return carrier;
}

/**
 * Span times on the monotonic clock, as the broker's spans take them (src/observe/message-trace.ts):
 * a gateway span and the broker spans under it then order exactly.
 */
function spanTimeMs(): number {
  return performance.timeOrigin + performance.now();
}

function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined && error !== null) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }
  span.end(spanTimeMs());
}

/** The span over one message a client sent. */
export interface GatewaySendTrace {
  /**
   * Puts the span's context in the headers to be stored, in place of the trace context the client
   * sent; with tracing off, leaves the headers as the client sent them.
   */
  stamp(headers: TextHeaders): void;
  /** Stored (with where), or refused (`error`). */
  end(result: { queue: number; baseOffset: number } | null, error?: unknown): void;
}

/** The span over one message delivered to a client. */
export interface GatewayDeliverTrace {
  /** The client has it (auto) or ACKed it; an error when it NACKed it or the subscription ended first. */
  end(error?: Error | null): void;
}

const noSendTrace: GatewaySendTrace = { stamp() {}, end() {} };
const noDeliverTrace: GatewayDeliverTrace = { end() {} };

export interface DeliveredMessage {
  topic: string;
  queue: number;
  offset: number;
  attempt: number;
  consumerGroup: string;
  /** The stored headers' trace context: traceparent and tracestate, as text. */
  traceHeaders: TextHeaders;
}

export class GatewayTracing {
  constructor(
    private readonly tracer: Tracer | null,
    /** `stomp` or `mqtt`: the span names' first word and network.protocol.name. */
    private readonly protocol: string,
    private readonly brokerId: string,
  ) {}

  get enabled(): boolean {
    return this.tracer !== null;
  }

  private attributes(topic: string): Attributes {
    return {
      'messaging.system': messagingSystem,
      'messaging.destination.name': topic,
      'network.protocol.name': this.protocol,
      'mamba.topic': topic,
      'mamba.broker': this.brokerId,
    };
  }

  /** A span over storing one message the client sent, under the context of `clientHeaders` (its traceparent and tracestate), if any. */
  startSend(topic: string, queue: number | null, clientHeaders: TextHeaders): GatewaySendTrace {
    const tracer = this.tracer;
    if (!tracer) return noSendTrace;
    const parent = contextFromTextHeaders(clientHeaders) ?? ROOT_CONTEXT;
    const span = tracer.startSpan(
      `${this.protocol} send ${topic}`,
      { kind: SpanKind.SERVER, startTime: spanTimeMs(), attributes: { ...this.attributes(topic), ...(queue === null ? {} : { 'mamba.queue': queue }) } },
      parent,
    );
    const spanHeaders = textHeadersOfSpan(span); // unsampled too: the broker then follows the decision
    return {
      stamp: (headers) => {
        delete headers[traceparentHeader];
        delete headers[tracestateHeader];
        Object.assign(headers, spanHeaders);
      },
      end: (result, error) => {
        if (result) span.setAttributes({ 'mamba.queue': result.queue, 'mamba.offset': result.baseOffset });
        endSpan(span, error);
      },
    };
  }

  /** A span over handing one stored message to a client, a child of the context stored with it. */
  startDeliver(message: DeliveredMessage): GatewayDeliverTrace {
    const tracer = this.tracer;
    if (!tracer) return noDeliverTrace;
    const parent = contextFromTextHeaders(message.traceHeaders);
    if (!parent) return noDeliverTrace;
    const span = tracer.startSpan(
      `${this.protocol} deliver ${message.topic}`,
      {
        kind: SpanKind.SERVER,
        startTime: spanTimeMs(),
        attributes: {
          ...this.attributes(message.topic),
          'mamba.queue': message.queue,
          'mamba.offset': message.offset,
          'mamba.attempt': message.attempt,
          'messaging.consumer.group.name': message.consumerGroup,
        },
      },
      parent,
    );
    return { end: (error) => endSpan(span, error) };
  }
}
