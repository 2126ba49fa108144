// The STOMP gateway's spans (src/gateway/common/tracing.ts) on one in-process broker whose spans go
// to an in-memory exporter, spoken to over a raw STOMP socket: a SEND yields a `stomp send <topic>`
// span (SERVER) continuing the client's traceparent, or starting a trace without one; the message
// is stored with that span's traceparent, so the broker's produce span is its child; every
// delivered MESSAGE yields a `stomp deliver <topic>` span (PRODUCER) under the stored context,
// whose context the MESSAGE carries, ended by the ACK, or with an error by a NACK. Every wait is
// bounded.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { InMemorySpanExporter, ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { MambaClient } from '../../src/client/client.js';
import { waitFor } from '../integration/cluster-harness.js';
import { startTracedBroker, type TracedBroker } from './traced-broker.js';
import { RawStomp } from './stomp-clients.js';

let broker: TracedBroker;
let spans: InMemorySpanExporter;
let sdk: MambaClient;
let stompPort: number;

before(async () => {
  broker = await startTracedBroker('stomp-tracing', 'stompPort');
  ({ spans, client: sdk, gatewayPort: stompPort } = broker);
});

after(async () => broker?.stop());

async function connected(): Promise<RawStomp> {
  const raw = await RawStomp.open({ host: '127.0.0.1', port: stompPort, caFile: null });
  raw.write(raw.connectFrame('anyone', 'no-keys-on-this-cluster'));
  await raw.frame('CONNECTED');
  return raw;
}

/** Sends and waits for the RECEIPT. */
async function send(raw: RawStomp, destination: string, body: string, headers: Record<string, string> = {}): Promise<void> {
  const receipt = `r-${Math.random().toString(36).slice(2)}`;
  const lines = Object.entries({ destination, receipt, ...headers }).map(([k, v]) => `${k}:${v}`);
  raw.write(`SEND\n${lines.join('\n')}\n\n${body}\0`);
  await waitFor(`RECEIPT ${receipt}`, 10_000, () => raw.frames.find((f) => f.startsWith('RECEIPT\n') && f.includes(`receipt-id:${receipt}\n`)));
}

function frameHeaders(frame: string): Record<string, string> {
  const head = frame.slice(0, frame.indexOf('\n\n'));
  return Object.fromEntries(
    head
      .split('\n')
      .slice(1)
      .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
  );
}

function named(name: string): ReadableSpan[] {
  return spans.getFinishedSpans().filter((s) => s.name === name);
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

async function storedTraceparent(topic: string, offset: number): Promise<string | undefined> {
  const read = await sdk.read(topic, 0, offset, { messagesMax: 1 });
  return read.messages[0]?.headers.traceparent?.toString();
}

test('a SEND with a traceparent: a stomp send span under it, stored as the parent of the broker produce span', async () => {
  await sdk.createTopic('traced-in', 1);
  spans.reset();
  const clientTraceId = '0af7651916cd43dd8448eb211c80319c';
  const clientSpanId = 'b7ad6b7169203331';
  const raw = await connected();
  try {
    await send(raw, '/queue/traced-in/0', 'hello', { traceparent: `00-${clientTraceId}-${clientSpanId}-01`, colour: 'blue' });
  } finally {
    raw.destroy();
  }
  const [gateway] = await waitFor('the stomp send span', 5000, () => (named('stomp send traced-in').length === 1 ? named('stomp send traced-in') : undefined));
  assert.equal(gateway!.kind, SpanKind.SERVER);
  assert.equal(gateway!.spanContext().traceId, clientTraceId, "in the client's trace");
  assert.equal(parentOf(gateway!), clientSpanId, "a child of the client's span");
  assert.equal(gateway!.attributes['mamba.queue'], 0);
  assert.equal(gateway!.attributes['mamba.offset'], 0);
  assert.equal(gateway!.attributes['network.protocol.name'], 'stomp');

  assert.equal(
    await storedTraceparent('traced-in', 0),
    `00-${clientTraceId}-${gateway!.spanContext().spanId}-01`,
    'the stored traceparent names the gateway span',
  );
  const produce = named('produce traced-in');
  assert.equal(produce.length, 1);
  assert.equal(parentOf(produce[0]!), gateway!.spanContext().spanId, "the broker's produce span is the gateway span's child");
  assert.equal(produce[0]!.spanContext().traceId, clientTraceId);
});

test('a SEND without a traceparent starts a trace at the gateway', async () => {
  await sdk.createTopic('traced-root', 1);
  spans.reset();
  const raw = await connected();
  try {
    await send(raw, '/queue/traced-root', 'no context');
  } finally {
    raw.destroy();
  }
  const [gateway] = await waitFor('the stomp send span', 5000, () =>
    named('stomp send traced-root').length === 1 ? named('stomp send traced-root') : undefined,
  );
  assert.equal(parentOf(gateway!), undefined, 'a root span');
  const { traceId, spanId } = gateway!.spanContext();
  assert.equal(await storedTraceparent('traced-root', 0), `00-${traceId}-${spanId}-01`);
  assert.equal(parentOf(named('produce traced-root')[0]!), spanId);
});

test('each delivered MESSAGE: a stomp deliver span under the stored context, ended by its ACK, failed by its NACK', async () => {
  await sdk.createTopic('traced-out', 1);
  const raw = await connected();
  try {
    await send(raw, '/queue/traced-out/0', 'first');
    await send(raw, '/queue/traced-out/0', 'second');
    const sendSpans = named('stomp send traced-out');
    assert.equal(sendSpans.length, 2);
    const sendSpanIds = await Promise.all([0, 1].map(async (offset) => (await storedTraceparent('traced-out', offset))!.split('-')[2]!));
    assert.deepEqual(
      sendSpanIds,
      sendSpans.map((s) => s.spanContext().spanId),
    );
    spans.reset();

    raw.write('SUBSCRIBE\nid:s\ndestination:/queue/traced-out/0\nack:client-individual\nmamba-consumer-group:traced\n\n\0');
    const answered = new Set<string>();
    // ACK first, NACK second on its first attempt, ACK it when it comes back from the retry queue.
    await waitFor('first, second and second again handled', 20_000, () => {
      for (const frame of raw.frames.filter((f) => f.startsWith('MESSAGE\n'))) {
        const h = frameHeaders(frame);
        if (answered.has(h.ack!)) continue;
        answered.add(h.ack!);
        const nack = frame.endsWith('second') && h['mamba-attempt'] === '1';
        raw.write(`${nack ? 'NACK' : 'ACK'}\nid:${h.ack}\n\n\0`);
      }
      return named('stomp deliver traced-out').length >= 3 ? true : undefined;
    });
    const delivered = named('stomp deliver traced-out').map((s) => ({
      parent: parentOf(s),
      attempt: s.attributes['mamba.attempt'],
      offset: s.attributes['mamba.offset'],
      status: s.status.code,
      kind: s.kind,
      traceId: s.spanContext().traceId,
    }));
    const [firstSend, secondSend] = sendSpans;
    assert.deepEqual(delivered.slice(0, 2), [
      {
        parent: firstSend!.spanContext().spanId,
        attempt: 1,
        offset: 0,
        status: SpanStatusCode.UNSET,
        kind: SpanKind.PRODUCER,
        traceId: firstSend!.spanContext().traceId,
      },
      {
        parent: secondSend!.spanContext().spanId,
        attempt: 1,
        offset: 1,
        status: SpanStatusCode.ERROR,
        kind: SpanKind.PRODUCER,
        traceId: secondSend!.spanContext().traceId,
      },
    ]);
    // The retry queue's copy keeps the stored context: the second delivery is in the same trace.
    assert.equal(delivered[2]!.parent, secondSend!.spanContext().spanId);
    assert.equal(delivered[2]!.attempt, 2);
    assert.equal(delivered[2]!.status, SpanStatusCode.UNSET);
    assert.equal(named('stomp deliver traced-out')[0]!.attributes['messaging.consumer.group.name'], 'traced');
    // The subscriber receives the delivery span's context, to continue its own trace from.
    const firstFrame = raw.frames.find((f) => f.startsWith('MESSAGE\n') && f.endsWith('first'))!;
    assert.equal(frameHeaders(firstFrame).traceparent?.split('-')[2], named('stomp deliver traced-out')[0]!.spanContext().spanId);
  } finally {
    raw.destroy();
  }
});
