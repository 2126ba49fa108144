// Tracing (DESIGN §7): one message yields one connected trace — the SDK client's producer span,
// the broker's produce span with its append and commit children, the broker's delivery span and
// the client's receive span, all in the producer's trace and parented through the W3C
// traceparent stored with the message. Broker and client run in this process, each exporting
// to an in-memory exporter.
import { formatBrokerDirectory } from '../../src/rpc/storage-format.js';
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { SpanKind } from '@opentelemetry/api';
import { parseClusterConfig } from '../../src/config/cluster.js';
import { startBroker, type RunningBroker } from '../../src/rpc/broker-server.js';
import { Logger } from '../../src/replica/logger.js';
import { MambaClient } from '../../src/client/client.js';
import { Producer } from '../../src/client/producer.js';
import { Consumer } from '../../src/client/consumer.js';
import { freePort, waitFor } from '../integration/cluster-harness.js';

const brokerSpans = new InMemorySpanExporter();
const clientSpans = new InMemorySpanExporter();
let dir: string;
let running: RunningBroker;
let client: MambaClient;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mamba-trace-'));
  const [clientPort, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const text = [
    'cluster: tracing',
    `dataDir: ${join(dir, 'data')}`,
    'groups:',
    '  - id: g1',
    '    brokers:',
    `      - { id: b1, host: 127.0.0.1, clientPort: ${clientPort}, peerPort: ${peerPort}, metricsPort: ${metricsPort} }`,
  ].join('\n');
  const cluster = parseClusterConfig(text, 'tracing.yaml', dir);
  formatBrokerDirectory(cluster, 'b1');
  running = await startBroker(cluster, 'b1', new Logger('b1', 'g1', () => {}), { spanExporter: brokerSpans });
  await waitFor('b1 to lead', 10_000, () => (running.replica.isLeader ? true : undefined));
  client = new MambaClient({ brokers: [`127.0.0.1:${clientPort}`], tracing: { spanExporter: clientSpans } });
});

after(async () => {
  client?.close();
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function only(spans: ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  assert.equal(found.length, 1, `${name}: ${found.length} spans (${spans.map((s) => s.name).join(', ')})`);
  return found[0]!;
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

test('one message yields one connected trace from producer to consumer', async () => {
  await client.createTopic('traced', 1);
  brokerSpans.reset();
  clientSpans.reset();
  const sent = await client.send('traced', [{ body: 'hello' }], { queue: 0, ack: 'quorum' });
  const read = await client.read('traced', 0, sent.baseOffset, { messagesMax: 10 });
  assert.equal(read.messages.length, 1);
  const traceparent = read.messages[0]!.headers.traceparent?.toString();
  assert.match(traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'the stored message carries a W3C traceparent');

  const send = only(clientSpans.getFinishedSpans(), 'send traced');
  const receive = only(clientSpans.getFinishedSpans(), 'receive traced');
  const spans = brokerSpans.getFinishedSpans();
  const produce = only(spans, 'produce traced');
  const append = only(spans, 'append');
  const commit = only(spans, 'commit');
  const deliver = only(spans, 'deliver traced');

  const traceId = send.spanContext().traceId;
  assert.equal(traceparent!.split('-')[1], traceId);
  assert.equal(traceparent!.split('-')[2], send.spanContext().spanId);
  for (const span of [produce, append, commit, deliver, receive]) assert.equal(span.spanContext().traceId, traceId, `${span.name} is in the producer's trace`);
  assert.equal(send.kind, SpanKind.PRODUCER);
  assert.equal(parentOf(send), undefined, 'the producer span starts the trace');
  assert.equal(parentOf(produce), send.spanContext().spanId);
  assert.equal(parentOf(append), produce.spanContext().spanId);
  assert.equal(parentOf(commit), produce.spanContext().spanId);
  assert.equal(parentOf(deliver), send.spanContext().spanId);
  assert.equal(parentOf(receive), send.spanContext().spanId);
  assert.deepEqual(
    produce.links.map((l) => l.context.spanId),
    [send.spanContext().spanId],
    "produce links the message's producer span",
  );
  assert.deepEqual(
    deliver.links.map((l) => l.context.spanId),
    [send.spanContext().spanId],
  );

  for (const span of [append, commit]) {
    assert.equal(span.attributes['mamba.topic'], 'traced');
    assert.equal(span.attributes['mamba.queue'], 0);
    assert.equal(span.attributes['mamba.offset'], sent.baseOffset);
    assert.equal(span.attributes['mamba.group'], 'g1');
    assert.equal(span.attributes['mamba.epoch'], running.replica.currentEpoch);
  }
  assert.equal(deliver.attributes['mamba.offset'], sent.baseOffset);
  assert.equal(send.attributes['mamba.offset'], sent.baseOffset);
  // Time order: the append happens inside produce, the commit ends after the append.
  const ns = (t: [number, number]): bigint => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);
  assert.ok(ns(append.startTime) >= ns(produce.startTime) && ns(append.endTime) <= ns(produce.endTime));
  assert.ok(ns(commit.endTime) >= ns(append.endTime));
  assert.ok(ns(send.endTime) >= ns(produce.endTime), 'the send ends after the broker answered');
});

test('a message without a trace context gets no broker spans linked to anything', async () => {
  brokerSpans.reset();
  const untraced = new MambaClient({ brokers: [`${running.broker.config.host}:${running.broker.config.clientPort}`] });
  try {
    const sent = await untraced.send('traced', [{ body: 'plain' }], { queue: 0 });
    const read = await untraced.read('traced', 0, sent.baseOffset);
    assert.equal(read.messages[0]!.headers.traceparent, undefined, 'a client without tracing adds no header');
    const spans = brokerSpans.getFinishedSpans();
    const produce = only(spans, 'produce traced');
    assert.equal(parentOf(produce), undefined);
    assert.deepEqual(produce.links, []);
    assert.equal(spans.filter((s) => s.name === 'deliver traced').length, 0, 'no delivery span without a producer context');
  } finally {
    untraced.close();
  }
});

test('the SDK Producer and Consumer carry the same trace: send → produce → deliver → receive', async () => {
  const address = `${running.broker.config.host}:${running.broker.config.clientPort}`;
  await client.createTopic('traced-sdk', 1);
  brokerSpans.reset();
  clientSpans.reset();
  const producerSpans = new InMemorySpanExporter();
  const consumerSpans = new InMemorySpanExporter();
  const producer = new Producer({ brokers: [address], lingerMs: 0, tracing: { spanExporter: producerSpans } });
  const sent = await producer.send('traced-sdk', { body: 'via producer' }, { queue: 0 });
  const send = only(producerSpans.getFinishedSpans(), 'send traced-sdk'); // before close: shutdown empties the exporter
  await producer.close();
  let headers: Record<string, Buffer> = {};
  const consumer = new Consumer({
    brokers: [address],
    group: 'tracers',
    topic: 'traced-sdk',
    heartbeatIntervalMs: 100,
    tracing: { spanExporter: consumerSpans },
  });
  await consumer.start((m) => {
    if (m.body.toString() === 'via producer') headers = m.headers;
  });
  await waitFor('the consumer to get the message', 10_000, () => (headers.traceparent ? true : undefined));
  const receive = only(
    consumerSpans.getFinishedSpans().filter((s) => s.name === 'receive traced-sdk'),
    'receive traced-sdk',
  );
  await consumer.close();

  const produce = only(brokerSpans.getFinishedSpans(), 'produce traced-sdk');
  const traceId = send.spanContext().traceId;
  assert.equal(headers.traceparent!.toString().split('-')[1], traceId);
  assert.equal(send.attributes['mamba.offset'], sent.offset);
  assert.equal(parentOf(produce), send.spanContext().spanId);
  assert.equal(parentOf(receive), send.spanContext().spanId);
  const deliver = brokerSpans.getFinishedSpans().filter((s) => s.name === 'deliver traced-sdk');
  assert.ok(deliver.length >= 1 && deliver.every((d) => parentOf(d) === send.spanContext().spanId));
});
