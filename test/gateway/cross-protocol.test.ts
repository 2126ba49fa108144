// Issue 15, across protocols on one secure cluster (TLS, access keys): what an MQTT client
// publishes a STOMP subscriber and the SDK (gRPC) receive, and what a STOMP client sends an MQTT
// subscriber receives, each while the group's leader is killed: nothing acknowledged (PUBACK,
// RECEIPT) is missing on the other side. Clients sit on the two brokers that are not the leader.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { MambaClient } from '../../src/client/client.js';
import { SecureCluster, waitFor } from '../security/secure-cluster.js';
import { collect, connectStomp, loadStompClient, sendWithReceipt, skipWithoutClient, type Connected } from './stomp-clients.js';

const modules = await loadStompClient();
let cluster: SecureCluster;
let admin: MambaClient;
const mqttClients: MqttClient[] = [];
const stompClients: Connected[] = [];

const ca = (): string => join(cluster.certDir, 'ca.crt');

async function leaderId(): Promise<string> {
  return waitFor('a leader of g1', 20_000, async () => {
    const g = (await admin.describeCluster().catch(() => [])).find((x) => x.id === 'g1');
    return g?.leaderId && cluster.isRunning(g.leaderId) ? g.leaderId : undefined;
  });
}

async function connectMqtt(brokerId: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${cluster.broker(brokerId).extraPorts.mqttPort}`, {
    ca: [readFileSync(ca())],
    username: cluster.keys.admin.id,
    password: cluster.keys.admin.secret,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  mqttClients.push(client);
  return client;
}

async function connectStompTo(brokerId: string): Promise<Connected> {
  const connected = await connectStomp(
    modules!,
    { host: '127.0.0.1', port: cluster.broker(brokerId).extraPorts.stompPort!, caFile: ca() },
    cluster.keys.admin.id,
    cluster.keys.admin.secret,
  );
  stompClients.push(connected);
  return connected;
}

before(async () => {
  if (!modules) return;
  cluster = await SecureCluster.start({ groups: 1, tls: true, extraPorts: ['mqttPort', 'stompPort'] });
  admin = new MambaClient({
    brokers: cluster.brokers.map((b) => b.clientAddress),
    accessKey: { keyId: cluster.keys.admin.id, secret: cluster.keys.admin.secret },
    tls: { caFile: ca() },
    retry: { attemptsMax: 40, backoffMsInitial: 20, backoffMsMax: 500 },
    requestTimeoutMs: 3000,
  });
  await admin.createTopic('cross', 1);
  await admin.createTopic('back', 1);
});

after(async () => {
  for (const c of mqttClients) c.end(true);
  for (const c of stompClients) await c.close();
  admin?.close();
  await cluster?.stop();
});

test('MQTT publishes (QoS 1) reach a STOMP subscriber and gRPC, the leader killed midway: every PUBACKed message arrives', {
  skip: !modules && skipWithoutClient,
  timeout: 120_000,
}, async () => {
  const leader = await leaderId();
  const [publisherBroker, subscriberBroker] = cluster.brokers.map((b) => b.id).filter((id) => id !== leader) as [string, string];
  const stomp = await connectStompTo(subscriberBroker);
  const received = collect(stomp, '/queue/cross', { ack: 'auto', 'mamba-consumer-group': 'cross-readers' });
  const publisher = await connectMqtt(publisherBroker);
  const acknowledged: string[] = [];
  for (let i = 0; i < 60; i++) {
    if (i === 20) await cluster.kill(leader);
    const body = `mqtt-${i}`;
    await publisher.publishAsync('cross/0', body, { qos: 1 }).then(
      () => acknowledged.push(body),
      () => undefined, // not acknowledged: it may or may not be stored
    );
  }
  assert.ok(acknowledged.length >= 40, `only ${acknowledged.length} of 60 acknowledged across the leader kill`);
  await waitFor('every PUBACKed message at the STOMP subscriber', 60_000, () => {
    const bodies = new Set(received.map((m) => m.body));
    return acknowledged.every((b) => bodies.has(b)) ? true : undefined;
  });
  const overGrpc = new Set((await admin.read('cross', 0, 0, { messagesMax: 1000 })).messages.map((m) => m.body.toString()));
  assert.deepEqual(
    acknowledged.filter((b) => !overGrpc.has(b)),
    [],
    'every PUBACKed message read over gRPC',
  );
  cluster.launch(leader);
});

test('STOMP sends (with receipts) reach an MQTT subscriber, the leader killed midway: every receipted message arrives', {
  skip: !modules && skipWithoutClient,
  timeout: 120_000,
}, async () => {
  const leader = await leaderId();
  const [senderBroker, subscriberBroker] = cluster.brokers.map((b) => b.id).filter((id) => id !== leader) as [string, string];
  // The broker killed in the test before may still be starting: connect once it listens.
  const subscriber = await waitFor(`MQTT on ${subscriberBroker}`, 30_000, () => connectMqtt(subscriberBroker).catch(() => undefined));
  const received = new Set<string>();
  subscriber.on('message', (_topic, payload) => received.add(payload.toString()));
  await subscriber.subscribeAsync('back/+', { qos: 1 });
  // MQTT readers start at the queue end: a probe that arrives shows this one runs.
  await waitFor(
    'a probe at the MQTT subscriber',
    30_000,
    async () => {
      if (received.has('probe')) return true;
      await admin.send('back', [{ body: 'probe' }], { queue: 0 });
      return undefined;
    },
    500,
  );
  const sender = await waitFor(`STOMP on ${senderBroker}`, 30_000, () => connectStompTo(senderBroker).catch(() => undefined));
  const receipted: string[] = [];
  for (let i = 0; i < 60; i++) {
    if (i === 20) await cluster.kill(leader);
    const body = `stomp-${i}`;
    await sendWithReceipt(sender, '/queue/back/0', body).then(
      () => receipted.push(body),
      () => undefined,
    );
    if (!sender.client.connected) break; // a send refused after the gateway lost its way: the rest is not sent
  }
  assert.ok(receipted.length >= 40, `only ${receipted.length} of 60 receipted across the leader kill`);
  await waitFor('every receipted message at the MQTT subscriber', 60_000, () => (receipted.every((b) => received.has(b)) ? true : undefined));
  cluster.launch(leader);
});
