// Spans of the protocol gateways (DESIGN §7), for every protocol alike (the span names start with
// the protocol): one per message a client publishes, continuing the W3C context the client sent
// with it (else a new trace), whose context is what the message is stored with, so the broker's
// produce span is its child; and one per message delivered to a subscriber, a child of the context
// stored with the message, whose context the subscriber receives. With tracing off (no tracer)
// nothing is made and the client's own trace context is stored and delivered unchanged.
import { ROOT_CONTEXT, SpanKind, type Attributes, type Context, type Tracer } from '@opentelemetry/api';
import { contextFromHeaders, endSpan, headersOfSpan, messagingSystem, spanTimeMs, traceparentHeader, tracestateHeader } from '../../observe/message-trace.js';

/** What a span says about the connection and the message (semantic-convention names where they exist). */
export interface MessageFacts {
  /** The client id or session the message came from or goes to. */
  clientId: string;
  /** The protocol's own name for the destination (an MQTT topic name such as `orders/3`). */
  destination: string;
  payloadBytes: number;
  /** Deliveries: the consumer group reading for the client, and the delivery attempt (1 for the first). */
  consumerGroup?: string;
  attempt?: number;
}

export interface PublishSpan {
  /** The headers to store: the client's, with its trace context replaced by this span's. */
  readonly headers: Record<string, string>;
  /** Stored (where), or not (why). */
  end(outcome: { queue: number; offset: number } | { problem: string }): void;
}

export interface DeliverSpan {
  /** The trace context to hand the subscriber with the message (this span's). */
  readonly headers: Record<string, string>;
  /** Delivered (written, or acknowledged when the protocol acknowledges), or not (why). */
  end(problem?: string): void;
}

export interface GatewayTracing {
  /** A span over one message a client publishes to `topic`; `headers` are the message's as the client sent them. */
  startPublish(topic: string, headers: Record<string, string>, facts: MessageFacts): PublishSpan;
  /** A span over one stored message delivered to a subscriber; null when tracing is off or the message carries no context. */
  startDeliver(topic: string, queue: number, offset: number, headers: Readonly<Record<string, Uint8Array>>, facts: MessageFacts): DeliverSpan | null;
}

const untraced: GatewayTracing = {
  startPublish: (_topic, headers) => ({ headers, end() {} }),
  startDeliver: () => null,
};

/** The W3C context in a message's headers, or null when it has none (or a malformed one). */
function contextOf(headers: Readonly<Record<string, string | Uint8Array>>): Context | null {
  const list: Array<{ key: string; value: Uint8Array }> = [];
  for (const key of [traceparentHeader, tracestateHeader]) {
    const value = headers[key];
    if (value !== undefined) list.push({ key, value: typeof value === 'string' ? Buffer.from(value, 'latin1') : value });
  }
  return contextFromHeaders(list);
}

function withoutTraceContext(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([key]) => key !== traceparentHeader && key !== tracestateHeader));
}

/**
 * Spans of one gateway, named `<protocol> <publishVerb> <topic>` (the protocol's own verb: MQTT
 * PUBLISH, STOMP SEND) and `<protocol> deliver <topic>`.
 */
export function gatewayTracing(tracer: Tracer | null, protocol: string, publishVerb = 'publish'): GatewayTracing {
  if (tracer === null) return untraced;
  const base = (topic: string, facts: MessageFacts): Attributes => ({
    'messaging.system': messagingSystem,
    'messaging.destination.name': topic,
    'messaging.client.id': facts.clientId,
    'messaging.message.body.size': facts.payloadBytes,
    'network.protocol.name': protocol,
    'mamba.topic': topic,
    'mamba.gateway.destination': facts.destination,
    ...(facts.consumerGroup === undefined ? {} : { 'messaging.consumer.group.name': facts.consumerGroup }),
    ...(facts.attempt === undefined ? {} : { 'mamba.attempt': facts.attempt }),
  });
  return {
    startPublish(topic, headers, facts) {
      // The gateway serves the client's PUBLISH (or SEND): a server span, in the client's trace when it sent one.
      const span = tracer.startSpan(
        `${protocol} ${publishVerb} ${topic}`,
        { kind: SpanKind.SERVER, startTime: spanTimeMs(), attributes: base(topic, facts) },
        contextOf(headers) ?? ROOT_CONTEXT,
      );
      return {
        // Unsampled spans too: the broker's spans then follow the same decision.
        headers: { ...withoutTraceContext(headers), ...headersOfSpan(span) },
        end(outcome) {
          if ('problem' in outcome) return endSpan(span, new Error(outcome.problem));
          span.setAttributes({ 'mamba.queue': outcome.queue, 'mamba.offset': outcome.offset });
          endSpan(span);
        },
      };
    },
    startDeliver(topic, queue, offset, headers, facts) {
      const parent = contextOf(headers);
      if (parent === null) return null; // as the broker's delivery spans: none for a message without a context
      // The gateway starts an exchange the subscriber did not request message by message: a
      // producer span, which a subscriber's consumer span continues from the context it receives.
      const span = tracer.startSpan(
        `${protocol} deliver ${topic}`,
        {
          kind: SpanKind.PRODUCER,
          startTime: spanTimeMs(),
          attributes: { ...base(topic, facts), 'mamba.queue': queue, 'mamba.offset': offset },
        },
        parent,
      );
      return {
        headers: headersOfSpan(span),
        end: (problem) => endSpan(span, problem === undefined ? undefined : new Error(problem)),
      };
    },
  };
}
