// One MQTT connection (src/gateway/mqtt/connection.ts) over a real socket on 127.0.0.1, against a
// scripted backend (no cluster): several PUBLISHes of a connection wait for their quorum at once,
// are handed to the producer in the order they came, and are answered in that order
// (MQTT-4.6.0-2) whatever order the quorum answers in; a QoS 0 subscriber that stops reading
// holds the gateway's reads back instead of growing its send buffer. Also: wills (delay, DISCONNECT
// 0x04, a stopping broker), session takeover, SUBSCRIBE refusals, and packets pipelined in one write
// (no reader for a closed connection; an UNSUBSCRIBE does not overtake its SUBSCRIBE).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { MambaClient, ReceivedMessage } from '../../src/client/client.js';
import type { SentMessage } from '../../src/client/producer.js';
import type { OutgoingMessage } from '../../src/client/wire.js';
import type { GatewayBackend } from '../../src/gateway/common/backend.js';
import { gatewayMetrics } from '../../src/gateway/common/metrics.js';
import { gatewayTracing } from '../../src/gateway/common/tracing.js';
import { MqttConnection, type MqttContext } from '../../src/gateway/mqtt/connection.js';
import { MqttGateway, mqttLimitDefaults } from '../../src/gateway/mqtt/server.js';
import { SessionStore } from '../../src/gateway/mqtt/session-store.js';
import { assertHoldsFor, freePort, waitFor } from '../integration/cluster-harness.js';

interface HeldPublish {
  topic: string;
  queue: number | undefined;
  body: string;
  settle(stored: boolean): void;
}

/** A backend whose publishes wait until the test settles them, and whose reads the test scripts. */
class ScriptedBackend implements GatewayBackend {
  readonly held: HeldPublish[] = [];
  readCount = 0;
  /** Publishes held when close() was called (null: not closed). */
  heldAtClose: number | null = null;
  constructor(private readonly readBatch: (offset: number) => ReceivedMessage[]) {}

  readonly client = {
    cluster: { topic: async (name: string) => ({ name, queues: 1, queueGroups: ['g1'], metadataVersion: 1 }) },
    listTopics: async () => [{ name: 'fast', queues: 1, createdMs: 0 }],
    describeTopic: async () => ({ queues: [{ queue: 0, highWatermark: '0', startOffset: '0' }] }),
    read: async (_topic: string, _queue: number, offset: number) => {
      this.readCount++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      const messages = this.readBatch(offset);
      return { messages, nextOffset: offset + messages.length, highWatermark: offset + messages.length, startOffset: 0, servedBy: 'b1', advice: null };
    },
  } as unknown as MambaClient;

  publish(topic: string, message: OutgoingMessage, options: { queue?: number }): Promise<SentMessage> {
    return new Promise((resolve, reject) =>
      this.held.push({
        topic,
        queue: options.queue,
        body: String(message.body),
        settle: (stored) => (stored ? resolve({ topic, queue: options.queue ?? 0, offset: 0, duplicate: false }) : reject(new Error('refused'))),
      }),
    );
  }

  async close(): Promise<void> {
    this.heldAtClose = this.held.length;
  }
}

const servers: Server[] = [];
const sockets: Socket[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

/** A listener with one MqttConnection per socket over `backend`, and a raw client socket to it. */
async function connectTo(backend: GatewayBackend, protocolVersion: 4 | 5): Promise<{ socket: Socket; packets: Packet[] }> {
  return dial(await listen(backend), protocolVersion);
}

/** A listener with one MqttConnection per socket over `backend` (context fields from `overrides`); its port. */
async function listen(backend: GatewayBackend, overrides: Partial<MqttContext> = {}): Promise<number> {
  const silent = { debug() {}, info() {}, warn() {} };
  const context: MqttContext = {
    backend,
    tracing: gatewayTracing(null, 'mqtt'),
    access: null,
    metrics: gatewayMetrics(null, 'mqtt'),
    log: silent,
    limits: { ...mqttLimitDefaults, packetBytesMax: 1024 * 1024 },
    sessions: new SessionStore(10),
    topics: async () => [{ name: 'fast', queues: 1 }],
    ...overrides,
  };
  const server = createServer((socket) => {
    sockets.push(socket);
    new MqttConnection(socket, context);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

/** A raw client socket to the listener on `port`, and the packets it receives. */
async function dial(port: number, protocolVersion: 4 | 5): Promise<{ socket: Socket; packets: Packet[] }> {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  const packets: Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion });
  parser.on('packet', (packet: Packet) => packets.push(packet));
  socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  return { socket, packets };
}

function send(socket: Socket, packet: Packet, protocolVersion: 4 | 5): void {
  socket.write(mqttPacket.generate(packet, { protocolVersion }));
}

/** Several packets in one TCP write: the gateway parses them in one go. */
function sendTogether(socket: Socket, packets: Packet[], protocolVersion: 4 | 5): void {
  socket.write(Buffer.concat(packets.map((packet) => mqttPacket.generate(packet, { protocolVersion }))));
}

/** The topic list of the scripted listener, answered after `delayMs` (a slow listTopics). */
function slowTopics(delayMs: number): () => Promise<Array<{ name: string; queues: number }>> {
  return () => new Promise((resolve) => setTimeout(() => resolve([{ name: 'fast', queues: 1 }]), delayMs));
}

test('QoS 1 PUBLISHes wait for their quorum together, reach the producer in order, and are PUBACKed in order', async () => {
  const backend = new ScriptedBackend(() => []);
  const { socket, packets } = await connectTo(backend, 5);
  send(socket, { cmd: 'connect', protocolVersion: 5, clientId: 'pipe', clean: true, keepalive: 0 }, 5);
  for (let id = 1; id <= 5; id++)
    send(socket, { cmd: 'publish', topic: 'fast/0', payload: Buffer.from(`m${id}`), qos: 1, messageId: id, retain: false, dup: false }, 5);
  await waitFor('five publishes held at the producer at once', 5000, () => (backend.held.length === 5 ? true : undefined));
  assert.deepEqual(
    backend.held.map((h) => `${h.topic}/${h.queue}=${h.body}`),
    ['fast/0=m1', 'fast/0=m2', 'fast/0=m3', 'fast/0=m4', 'fast/0=m5'],
  );
  // The quorum answers the last ones first, and refuses the fourth.
  for (const index of [4, 2, 1]) backend.held[index]!.settle(true);
  backend.held[3]!.settle(false);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(
    packets.filter((p) => p.cmd === 'puback'),
    [],
    'no PUBACK before the first PUBLISH is stored',
  );
  backend.held[0]!.settle(true);
  const answers = await waitFor('five PUBACKs', 5000, () => {
    const pubacks = packets.filter((p) => p.cmd === 'puback');
    return pubacks.length === 5 ? pubacks : undefined;
  });
  assert.deepEqual(
    answers.map((p) => [p.messageId, p.reasonCode ?? 0]),
    [
      [1, 0],
      [2, 0],
      [3, 0],
      [4, 0x80],
      [5, 0],
    ],
  );
});

test('a QoS 0 subscriber that stops reading holds the reads back (the send buffer stays bounded), and reading again resumes them', async () => {
  const bodyBytes = 4096;
  const batch = (offset: number): ReceivedMessage[] =>
    Array.from({ length: 64 }, (_, i) => ({ offset: offset + i, timestampMs: 0, key: null, headers: {}, body: Buffer.alloc(bodyBytes, 0x61) }));
  const backend = new ScriptedBackend(batch);
  const { socket, packets } = await connectTo(backend, 4);
  send(socket, { cmd: 'connect', protocolVersion: 4, clientId: 'slow', clean: true, keepalive: 0 }, 4);
  send(socket, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fast/0', qos: 0 }] }, 4);
  await waitFor('the SUBACK', 5000, () => (packets.some((p) => p.cmd === 'suback') ? true : undefined));
  socket.pause();
  // Without backpressure a read round (256 KiB) leaves every 20 ms for as long as the client
  // sleeps; with it, reads stop once the socket buffers (a few MiB on loopback) are full.
  const settled = await waitFor(
    'reads to stop while the client does not read',
    5000,
    async () => {
      const before = backend.readCount;
      await new Promise((resolve) => setTimeout(resolve, 500));
      return backend.readCount === before ? before : undefined;
    },
    0,
  );
  const heldBytes = settled * 64 * bodyBytes;
  assert.ok(heldBytes <= 64 * 1024 * 1024, `reads stopped after ${settled} rounds (${heldBytes} bytes)`);
  socket.resume();
  await waitFor('reads to go on once the client reads again', 5000, () => (backend.readCount > settled + 5 ? true : undefined));
});

test('5.0 Will Delay Interval: the will waits for its delay; a reconnection to the session cancels it; a session that ends with the connection sends it at once', async () => {
  const backend = new ScriptedBackend(() => []);
  const port = await listen(backend);
  const wills = (): string[] => backend.held.map((h) => h.body);
  const connectWithWill = async (clientId: string, body: string, willDelayInterval: number, sessionExpiryInterval: number): Promise<Socket> => {
    const { socket, packets } = await dial(port, 5);
    const will = { topic: 'fast/0', payload: Buffer.from(body), qos: 1 as const, retain: false, properties: { willDelayInterval } };
    send(socket, { cmd: 'connect', protocolVersion: 5, clientId, clean: false, keepalive: 0, will, properties: { sessionExpiryInterval } }, 5);
    await waitFor(`the CONNACK of ${clientId}`, 5000, () => (packets.some((p) => p.cmd === 'connack') ? true : undefined));
    return socket;
  };

  // Gone without DISCONNECT: the will goes after its delay, not before.
  const gone = await connectWithWill('delayed', 'delayed is gone', 1, 60);
  const goneAtMs = Date.now();
  gone.destroy();
  await waitFor('the delayed will', 10_000, () => (wills().includes('delayed is gone') ? true : undefined), 10);
  assert.ok(Date.now() - goneAtMs >= 950, `the will went ${Date.now() - goneAtMs} ms after the connection ended (delay 1 s)`);

  // Back within the delay (3 s): the session resumes and its will is never sent, also past the delay.
  const flaky = await connectWithWill('flaky', 'flaky is gone', 3, 60);
  const flakyGoneAtMs = Date.now();
  flaky.destroy();
  const again = await dial(port, 5);
  send(again.socket, { cmd: 'connect', protocolVersion: 5, clientId: 'flaky', clean: false, keepalive: 0, properties: { sessionExpiryInterval: 60 } }, 5);
  await waitFor('the CONNACK of the reconnection', 5000, () => (again.packets.some((p) => p.cmd === 'connack') ? true : undefined));
  assert.ok(Date.now() - flakyGoneAtMs < 3000, 'the reconnection came within the delay');
  await assertHoldsFor('no will once the session resumed', flakyGoneAtMs + 3500 - Date.now(), () => !wills().includes('flaky is gone'));

  // Session expiry 0: the session ends with the connection, so a will of delay 10 s does not wait.
  const brief = await connectWithWill('brief', 'brief is gone', 10, 0);
  const briefGoneAtMs = Date.now();
  brief.destroy();
  await waitFor('the will of a session that ended', 5000, () => (wills().includes('brief is gone') ? true : undefined), 10);
  assert.ok(Date.now() - briefGoneAtMs < 5000, `the will went ${Date.now() - briefGoneAtMs} ms after the connection ended`);
  for (const h of backend.held) h.settle(true);
});

test('5.0 DISCONNECT with reason 0x04 sends the will; a DISCONNECT with reason 0 drops it', async () => {
  const backend = new ScriptedBackend(() => []);
  const port = await listen(backend);
  for (const [clientId, reasonCode] of [
    ['asks', 0x04],
    ['quiet', 0x00],
  ] as const) {
    const { socket, packets } = await dial(port, 5);
    const will = { topic: 'fast/0', payload: Buffer.from(`${clientId} left`), qos: 1 as const, retain: false };
    send(socket, { cmd: 'connect', protocolVersion: 5, clientId, clean: true, keepalive: 0, will }, 5);
    await waitFor(`the CONNACK of ${clientId}`, 5000, () => (packets.some((p) => p.cmd === 'connack') ? true : undefined));
    send(socket, { cmd: 'disconnect', reasonCode }, 5);
  }
  await waitFor('the will asked for', 5000, () => (backend.held.some((h) => h.body === 'asks left') ? true : undefined));
  await assertHoldsFor('no will after a DISCONNECT with reason 0', 500, () => !backend.held.some((h) => h.body === 'quiet left'));
  for (const h of backend.held) h.settle(true);
});

test('a SUBSCRIBE and a DISCONNECT in one write: no reader starts once the connection closed (the topic list came after)', async () => {
  const backend = new ScriptedBackend(() => []);
  const port = await listen(backend, { topics: slowTopics(300) });
  const { socket, packets } = await dial(port, 5);
  send(socket, { cmd: 'connect', protocolVersion: 5, clientId: 'gone', clean: true, keepalive: 0 }, 5);
  await waitFor('the CONNACK', 5000, () => (packets.some((p) => p.cmd === 'connack') ? true : undefined));
  sendTogether(
    socket,
    [
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 1 }] },
      { cmd: 'disconnect', reasonCode: 0 },
    ],
    5,
  );
  // A reader started for the closed connection would read every 20 ms from here on.
  await assertHoldsFor('no read for a closed connection', 1000, () => backend.readCount === 0);
});

test('a second CONNECT of a persistent session takes it over: the first gets DISCONNECT 0x8E, the second session present and the subscriptions', async () => {
  const backend = new ScriptedBackend(() => []);
  const port = await listen(backend);
  const connectPersistent = async (): Promise<{ socket: Socket; packets: Packet[] }> => {
    const client = await dial(port, 5);
    send(client.socket, { cmd: 'connect', protocolVersion: 5, clientId: 'twice', clean: false, keepalive: 0, properties: { sessionExpiryInterval: 60 } }, 5);
    await waitFor('a CONNACK', 5000, () => (client.packets.some((p) => p.cmd === 'connack') ? true : undefined));
    return client;
  };
  const first = await connectPersistent();
  send(first.socket, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fast/0', qos: 1 }] }, 5);
  await waitFor('the SUBACK', 5000, () => (first.packets.some((p) => p.cmd === 'suback') ? true : undefined));
  const second = await connectPersistent();
  const connack = second.packets.find((p) => p.cmd === 'connack');
  assert.equal(connack?.sessionPresent, true, 'the session and its subscription stayed with the broker');
  const taken = await waitFor('the DISCONNECT of the first', 5000, () => first.packets.find((p) => p.cmd === 'disconnect'));
  assert.equal(taken.reasonCode, 0x8e);
  second.socket.destroy();
});

test('a stopping broker ends its connections as the server shutting down: 5.0 gets DISCONNECT 0x8B, and every will is stored before the backend closes', async () => {
  const backend = new ScriptedBackend(() => []);
  const port = await freePort();
  const silent = { debug() {}, info() {}, warn() {} };
  const gateway = await MqttGateway.start({
    listenHost: '127.0.0.1',
    port,
    tls: null,
    backend,
    tracer: null,
    access: null,
    metrics: gatewayMetrics(null, 'mqtt'),
    log: silent,
    messageBytesMax: 1024 * 1024,
  });
  const clients = [];
  for (const protocolVersion of [5, 4] as const) {
    const client = await dial(port, protocolVersion);
    const will = { topic: 'fast/0', payload: Buffer.from(`will of ${protocolVersion}`), qos: 1 as const, retain: false };
    send(client.socket, { cmd: 'connect', protocolVersion, clientId: `stopped-${protocolVersion}`, clean: true, keepalive: 0, will }, protocolVersion);
    await waitFor('a CONNACK', 5000, () => (client.packets.some((p) => p.cmd === 'connack') ? true : undefined));
    clients.push(client);
  }
  const stopped = gateway.stop();
  await waitFor('both wills at the producer', 5000, () => (backend.held.length === 2 ? true : undefined));
  assert.deepEqual(backend.held.map((h) => h.body).sort(), ['will of 4', 'will of 5']);
  assert.equal(backend.heldAtClose, null, 'the backend waits for the wills');
  for (const h of backend.held) h.settle(true);
  await stopped;
  assert.equal(backend.heldAtClose, 2);
  const disconnect = clients[0]!.packets.find((p) => p.cmd === 'disconnect');
  assert.equal(disconnect?.reasonCode, 0x8b, 'server shutting down');
});

test('a SUBSCRIBE to a queue the topic does not have is refused: 5.0 SUBACK 0x8F, 3.1.1 0x80', async () => {
  const port = await listen(new ScriptedBackend(() => []));
  for (const protocolVersion of [5, 4] as const) {
    const { socket, packets } = await dial(port, protocolVersion);
    send(socket, { cmd: 'connect', protocolVersion, clientId: `queues-${protocolVersion}`, clean: true, keepalive: 0 }, protocolVersion);
    send(
      socket,
      {
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [
          { topic: 'fast/5', qos: 1 },
          { topic: 'fast/0', qos: 1 },
        ],
      },
      protocolVersion,
    );
    const suback = await waitFor('the SUBACK', 5000, () => packets.find((p) => p.cmd === 'suback'));
    assert.deepEqual(suback.granted, protocolVersion === 5 ? [0x8f, 1] : [0x80, 1], 'fast has queue 0 only');
    socket.destroy();
  }
});

test('an UNSUBSCRIBE right behind a SUBSCRIBE waits for it: SUBACK, then UNSUBACK 0, and no reader left', async () => {
  const backend = new ScriptedBackend(() => []);
  const port = await listen(backend, { topics: slowTopics(200) });
  const { socket, packets } = await dial(port, 5);
  send(socket, { cmd: 'connect', protocolVersion: 5, clientId: 'fickle', clean: true, keepalive: 0 }, 5);
  await waitFor('the CONNACK', 5000, () => (packets.some((p) => p.cmd === 'connack') ? true : undefined));
  sendTogether(
    socket,
    [
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fast/0', qos: 1 }] },
      { cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['fast/0'] },
    ],
    5,
  );
  await waitFor('both answers', 5000, () => (packets.some((p) => p.cmd === 'suback') && packets.some((p) => p.cmd === 'unsuback') ? true : undefined));
  assert.deepEqual(
    packets.filter((p) => p.cmd === 'suback' || p.cmd === 'unsuback').map((p) => [p.cmd, (p as { granted?: number[] }).granted]),
    [
      ['suback', [1]],
      ['unsuback', [0]],
    ],
  );
  // A stopped reader ends after its read in progress (20 ms here); then nothing reads.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const reads = backend.readCount;
  await assertHoldsFor('no reader left', 500, () => backend.readCount === reads);
  socket.destroy();
});
