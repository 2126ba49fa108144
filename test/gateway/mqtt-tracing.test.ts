// The MQTT gateway's spans (src/gateway/common/tracing.ts) on one in-process broker exporting to
// an in-memory exporter: a PUBLISH makes an `mqtt publish <topic>` server span that continues the
// client's `traceparent` user property (else starts a trace) and parents the broker's produce span
// through the context the message is stored with; a delivery makes an `mqtt deliver <topic>` span,
// a child of that stored context, whose context the subscriber receives.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace-base';
import mqtt, { type MqttClient } from 'mqtt';
import type { MambaClient } from '../../src/client/client.js';
import { waitFor } from '../integration/cluster-harness.js';
import { startTracedBroker, type TracedBroker } from './traced-broker.js';

let broker: TracedBroker;
let spans: InMemorySpanExporter;
let client: MambaClient;
let mqttPort: number;
const opened: MqttClient[] = [];

before(async () => {
  broker = await startTracedBroker('mqtt-tracing', 'mqttPort');
  ({ spans, client, gatewayPort: mqttPort } = broker);
  await client.createTopic('mt', 1);
});

after(async () => {
  for (const c of opened) c.end(true);
  await broker?.stop();
});

async function connectMqtt(clientId: string): Promise<MqttClient> {
  const connected = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000 });
  opened.push(connected);
  return connected;
}

/** The one finished span named `name` whose attribute `key` is `value`. */
function spanWith(name: string, key: string, value: string | number): ReadableSpan | undefined {
  const found = spans.getFinishedSpans().filter((s) => s.name === name && s.attributes[key] === value);
  assert.ok(found.length <= 1, `${found.length} spans ${name} with ${key}=${value}`);
  return found[0];
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

/** Stores `body` through MQTT and reads it back: its offset and the traceparent it was stored with. */
async function publishAndRead(publisher: MqttClient, body: string, userProperties?: Record<string, string>): Promise<{ offset: number; traceparent: string }> {
  await publisher.publishAsync('mt/0', body, { qos: 1, ...(userProperties ? { properties: { userProperties } } : {}) });
  const read = await client.read('mt', 0, 0, { messagesMax: 1000 });
  const message = read.messages.find((m) => m.body.toString() === body);
  assert.ok(message, `${body} is stored`);
  const traceparent = message.headers.traceparent?.toString() ?? '';
  return { offset: message.offset, traceparent };
}

test("a PUBLISH with a traceparent user property: an `mqtt publish` server span in the client's trace, stored as the message's context, parent of the broker's produce span", async () => {
  const clientTraceId = '0af7651916cd43dd8448eb211c80319c';
  const clientSpanId = 'b7ad6b7169203331';
  const publisher = await connectMqtt('traced-publisher');
  const { offset, traceparent } = await publishAndRead(publisher, 'continued', { traceparent: `00-${clientTraceId}-${clientSpanId}-01` });

  const publish = await waitFor('the mqtt publish span', 5000, () => spanWith('mqtt publish mt', 'mamba.offset', offset));
  assert.equal(publish.kind, SpanKind.SERVER);
  assert.equal(publish.spanContext().traceId, clientTraceId, "in the client's trace");
  assert.equal(parentOf(publish), clientSpanId, "a child of the client's span");
  assert.equal(traceparent, `00-${clientTraceId}-${publish.spanContext().spanId}-01`, "the message is stored with the gateway span's context");
  assert.equal(publish.attributes['messaging.client.id'], 'traced-publisher');
  assert.equal(publish.attributes['mamba.gateway.destination'], 'mt/0');
  assert.equal(publish.attributes['mamba.queue'], 0);
  const produce = await waitFor('the broker produce span', 5000, () => spanWith('produce mt', 'mamba.offset', offset));
  assert.equal(parentOf(produce), publish.spanContext().spanId, "the broker's produce span is the gateway span's child");
  assert.equal(produce.spanContext().traceId, clientTraceId);
});

test('a PUBLISH without a trace context starts a trace: a root `mqtt publish` span, parent of the produce span', async () => {
  const publisher = await connectMqtt('plain-publisher');
  const { offset, traceparent } = await publishAndRead(publisher, 'new root');
  const publish = await waitFor('the mqtt publish span', 5000, () => spanWith('mqtt publish mt', 'mamba.offset', offset));
  assert.equal(parentOf(publish), undefined, 'a new root');
  assert.equal(traceparent, `00-${publish.spanContext().traceId}-${publish.spanContext().spanId}-01`);
  const produce = await waitFor('the broker produce span', 5000, () => spanWith('produce mt', 'mamba.offset', offset));
  assert.equal(parentOf(produce), publish.spanContext().spanId);
});

test('a refused PUBLISH ends its span with an error', async () => {
  const publisher = await connectMqtt('refused-publisher');
  await assert.rejects(publisher.publishAsync('mt/7', 'no such queue', { qos: 1 }), (e: Error & { code?: number }) => e.code === 0x90);
  const refused = await waitFor('the refused span', 5000, () => spanWith('mqtt publish mt', 'mamba.gateway.destination', 'mt/7'));
  assert.equal(refused.status.code, SpanStatusCode.ERROR);
  assert.match(refused.status.message ?? '', /queues 0\.\.0/);
});

test('a delivery to a subscriber: an `mqtt deliver` span, child of the stored context, ended after the PUBACK; the subscriber gets its context', async () => {
  const subscriber = await connectMqtt('traced-subscriber');
  const received = new Map<string, string>();
  subscriber.on('message', (_topic, payload, packet) => {
    const traceparent = packet.properties?.userProperties?.traceparent;
    received.set(payload.toString(), typeof traceparent === 'string' ? traceparent : '');
  });
  await subscriber.subscribeAsync('mt/0', { qos: 1 });
  const publisher = await connectMqtt('deliver-publisher');
  // The reader starts at the queue's end: publish until a message arrives.
  const body = await waitFor(
    'a delivery to the subscriber',
    15_000,
    async () => {
      const arrived = [...received.keys()].find((b) => b.startsWith('to-deliver-'));
      if (arrived) return arrived;
      await publisher.publishAsync('mt/0', `to-deliver-${Date.now()}`, { qos: 1 });
      return undefined;
    },
    300,
  );
  const read = await client.read('mt', 0, 0, { messagesMax: 1000 });
  const stored = read.messages.find((m) => m.body.toString() === body)!;
  const [, traceId, storedSpanId] = stored.headers.traceparent!.toString().split('-');
  const deliver = await waitFor('the mqtt deliver span', 5000, () => spanWith('mqtt deliver mt', 'mamba.offset', stored.offset));
  assert.equal(deliver.kind, SpanKind.PRODUCER);
  assert.equal(deliver.spanContext().traceId, traceId, "in the publisher's trace");
  assert.equal(parentOf(deliver), storedSpanId, 'a child of the context stored with the message');
  assert.equal(deliver.attributes['messaging.client.id'], 'traced-subscriber');
  assert.equal(deliver.status.code, SpanStatusCode.UNSET, 'the subscriber PUBACKed it');
  assert.equal(received.get(body), `00-${traceId}-${deliver.spanContext().spanId}-01`, "the subscriber receives the delivery span's context");
});
