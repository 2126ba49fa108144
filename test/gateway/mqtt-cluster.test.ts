// The MQTT gateway against a real secure cluster (TLS, access keys, permissions): independent
// clients (the `mqtt` npm client and mosquitto_pub/mosquitto_sub) on one side, the SDK over gRPC
// on the other; persistent sessions, refusals with their reason codes, hostile frames, and a
// leader kill while publishing that loses no PUBACKed message. Every wait is bounded.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { MambaClient } from '../../src/client/client.js';
import { SecureCluster, sleep, waitFor } from '../security/secure-cluster.js';
import { assertHoldsFor } from '../../scripts/lib/cluster.js';

let cluster: SecureCluster;
let admin: MambaClient;
const opened: MqttClient[] = [];

const port = (id: string): number => cluster.broker(id).extraPorts.mqttPort!;
const ca = (): string => join(cluster.certDir, 'ca.crt');

async function connectMqtt(brokerId: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port(brokerId)}`, {
    ca: [execFileSync('cat', [ca()])],
    username: cluster.keys.app.id,
    password: cluster.keys.app.secret,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...options,
  });
  opened.push(client);
  return client;
}

async function readAll(topic: string, queue: number, count: number): Promise<string[]> {
  return waitFor(`${count} messages in ${topic}/${queue}`, 15_000, async () => {
    const result = await admin.read(topic, queue, 0, { messagesMax: 5000 });
    return result.messages.length >= count ? result.messages.map((m) => m.body.toString()) : undefined;
  });
}

/**
 * Runs mosquitto_sub with `args` for one message (-C 1, at most 30 s) and calls `publish` until it
 * prints one (its reader starts at the queue end, so a message published before it is ready is
 * not for it); what it printed, once it exited with 0.
 */
async function firstMessageOfMosquittoSub(args: string[], publish: () => void): Promise<string> {
  const sub = spawn('mosquitto_sub', [...args, '-C', '1', '-W', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  sub.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => sub.once('exit', (code) => resolve(code)));
  await waitFor(
    'mosquitto_sub to print a message',
    25_000,
    () => {
      if (out.length > 0) return true;
      publish();
      return undefined;
    },
    700,
  );
  assert.equal(await exited, 0, 'mosquitto_sub exit code');
  return out;
}

describe('MQTT gateway', { timeout: 150_000 }, () => {
  before(async () => {
    cluster = await SecureCluster.start({ groups: 1, tls: true, extraPorts: ['mqttPort'] });
    cluster.writePermissions([
      { key: 'admin', topics: ['*'], actions: ['produce', 'consume', 'admin'] },
      { key: cluster.keys.app.id, topics: ['mq.*'], actions: ['produce', 'consume'] },
    ]);
    admin = new MambaClient({
      brokers: cluster.brokers.map((b) => b.clientAddress),
      accessKey: { keyId: cluster.keys.admin.id, secret: cluster.keys.admin.secret },
      tls: { caFile: ca() },
      retry: { attemptsMax: 40, backoffMsInitial: 20, backoffMsMax: 500 },
      requestTimeoutMs: 3000,
    });
    for (const [name, queues] of [
      ['mq.in', 2],
      ['mq.out', 2],
      ['mq.sess', 1],
      ['mq.kill', 1],
      ['mq.mos', 1],
      ['mq.ret', 1],
      ['mq.will', 1],
      ['mq.q0', 2],
      ['mq.q0sub', 1],
      ['mq.once', 1],
      ['secret', 1],
    ] as const)
      await admin.createTopic(name, queues);
    // Each broker reloads the permissions file when it changes: wait until every one lets the
    // app's key see an mq.* topic (DescribeTopic needs any permission on it; the first file had none).
    for (const b of cluster.brokers) {
      const app = new MambaClient({
        brokers: [b.clientAddress],
        accessKey: { keyId: cluster.keys.app.id, secret: cluster.keys.app.secret },
        tls: { caFile: ca() },
        retry: { attemptsMax: 1 },
      });
      await waitFor(`${b.id} to grant the app's key mq.*`, 20_000, () =>
        app.describeTopic('mq.in').then(
          () => true,
          () => undefined,
        ),
      );
      app.close();
    }
  });

  after(async () => {
    for (const c of opened) c.end(true);
    admin?.close();
    await cluster?.stop();
  });

  test('QoS 1 publishes are stored in the named queue and read over gRPC, traceparent kept as a header', async () => {
    const client = await connectMqtt('b1');
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    for (let i = 0; i < 5; i++) await client.publishAsync('mq.in/1', `m${i}`, { qos: 1, properties: { userProperties: { traceparent, key: 'k' } } });
    const bodies = await readAll('mq.in', 1, 5);
    assert.deepEqual(bodies, ['m0', 'm1', 'm2', 'm3', 'm4']);
    const read = await admin.read('mq.in', 1, 0);
    assert.equal(read.messages[0]!.headers.traceparent?.toString(), traceparent);
    assert.equal(read.messages[0]!.key?.toString(), 'k');
  });

  test('QoS 0 publishes written back to back (more than the Receive Maximum) are all stored, in order, and read over gRPC', async () => {
    const client = await connectMqtt('b1');
    let disconnectReason: number | undefined;
    client.on('disconnect', (packet) => {
      disconnectReason = packet.reasonCode;
    });
    const bodies = Array.from({ length: 300 }, (_, i) => `z${i}`);
    // No acknowledgement to wait for: all 300 leave at once; the Receive Maximum (64) is for QoS 1 only.
    for (const body of bodies) client.publish('mq.q0/0', body, { qos: 0 });
    const stored = await waitFor('300 QoS 0 messages in mq.q0/0', 20_000, async () => {
      if (disconnectReason !== undefined) throw new Error(`the gateway disconnected the publisher (reason 0x${disconnectReason.toString(16)})`);
      const read = await admin.read('mq.q0', 0, 0, { messagesMax: 1000 });
      return read.messages.length >= bodies.length ? read.messages : undefined;
    });
    assert.deepEqual(
      stored.map((m) => m.body.toString()),
      bodies,
    );
    assert.equal(disconnectReason, undefined);
    assert.ok(client.connected, 'the publisher is still connected');
  });

  test('QoS 0 subscriptions: a QoS 1 publish reaches a QoS 0 subscriber at QoS 0, a QoS 0 publish a QoS 1 subscriber at QoS 0', async () => {
    const atMost = await connectMqtt('b2');
    const atLeast = await connectMqtt('b3', { protocolVersion: 4 });
    const received = { atMost: new Map<string, number>(), atLeast: new Map<string, number>() };
    atMost.on('message', (_t, payload, packet) => received.atMost.set(payload.toString(), packet.qos));
    atLeast.on('message', (_t, payload, packet) => received.atLeast.set(payload.toString(), packet.qos));
    assert.deepEqual(
      (await atMost.subscribeAsync('mq.q0sub/0', { qos: 0 })).map((g) => g.qos),
      [0],
    );
    assert.deepEqual(
      (await atLeast.subscribeAsync('mq.q0sub/0', { qos: 1 })).map((g) => g.qos),
      [1],
    );
    // Readers start at the queue end: a probe that reaches both shows they run.
    await waitFor(
      'a probe at both subscribers',
      15_000,
      async () => {
        if (received.atMost.has('probe') && received.atLeast.has('probe')) return true;
        await admin.send('mq.q0sub', [{ body: 'probe' }], { queue: 0 });
        return undefined;
      },
      500,
    );
    const publisher = await connectMqtt('b1');
    await publisher.publishAsync('mq.q0sub/0', 'sent at qos 1', { qos: 1 });
    await publisher.publishAsync('mq.q0sub/0', 'sent at qos 0', { qos: 0 });
    await waitFor('both messages at both subscribers', 15_000, () =>
      ['sent at qos 1', 'sent at qos 0'].every((b) => received.atMost.has(b) && received.atLeast.has(b)) ? true : undefined,
    );
    // 3.1.1 and 5.0 §3.8.4: delivered at the lower of the published QoS and the granted QoS.
    assert.equal(received.atMost.get('probe'), 0, 'an SDK message (stored at quorum) to a QoS 0 subscription');
    assert.equal(received.atMost.get('sent at qos 1'), 0);
    assert.equal(received.atMost.get('sent at qos 0'), 0);
    assert.equal(received.atLeast.get('probe'), 1, 'an SDK message to a QoS 1 subscription');
    assert.equal(received.atLeast.get('sent at qos 1'), 1);
    assert.equal(received.atLeast.get('sent at qos 0'), 0);
  });

  test('an SDK produce reaches an MQTT subscriber with a wildcard, on another broker, as <topic>/<queue>', async () => {
    const client = await connectMqtt('b2', { protocolVersion: 4 });
    const got: string[] = [];
    client.on('message', (topic, payload) => got.push(`${topic}=${payload.toString()}`));
    await client.subscribeAsync('mq.out/+', { qos: 1 });
    // Readers start at the queue end: a probe in each queue that arrives shows both run.
    await waitFor(
      'a probe from each queue',
      15_000,
      async () => {
        const missing = [0, 1].filter((queue) => !got.includes(`mq.out/${queue}=probe`));
        if (missing.length === 0) return true;
        for (const queue of missing) await admin.send('mq.out', [{ body: 'probe' }], { queue });
        return undefined;
      },
      500,
    );
    await admin.send('mq.out', [{ body: 'zero' }], { queue: 0 });
    await admin.send('mq.out', [{ body: 'one' }], { queue: 1 });
    const real = (): string[] => got.filter((g) => !g.endsWith('=probe'));
    await waitFor('both deliveries', 15_000, () => (real().length >= 2 ? true : undefined));
    assert.deepEqual(real().sort(), ['mq.out/0=zero', 'mq.out/1=one']);
  });

  test('a retained message reaches a later subscriber (flagged retained); a last will is published when a client vanishes without DISCONNECT', async () => {
    const publisher = await connectMqtt('b1');
    await publisher.publishAsync('mq.ret/0', 'older', { qos: 1, retain: true });
    await publisher.publishAsync('mq.ret/0', 'newest', { qos: 1, retain: true });
    await publisher.publishAsync('mq.ret/0', 'not retained', { qos: 1 });
    const late = await connectMqtt('b3');
    const retained: string[] = [];
    late.on('message', (_t, payload, packet) => {
      if (packet.retain) retained.push(payload.toString());
    });
    await late.subscribeAsync('mq.ret/0', { qos: 1 });
    await waitFor('the retained message', 15_000, () => (retained.length > 0 ? true : undefined));
    assert.deepEqual(retained, ['newest'], 'the newest retained message, once');

    const watcher = await connectMqtt('b2');
    const wills: string[] = [];
    watcher.on('message', (_t, payload) => wills.push(payload.toString()));
    await watcher.subscribeAsync('mq.will/+', { qos: 1 });
    // Readers start at the queue end: a probe that arrives shows this one runs.
    await waitFor(
      'the probe at the watcher',
      15_000,
      async () => {
        if (wills.includes('probe')) return true;
        await admin.send('mq.will', [{ body: 'probe' }], { queue: 0 });
        return undefined;
      },
      500,
    );
    const mortal = await connectMqtt('b1', { clientId: 'mortal', will: { topic: 'mq.will/0', payload: Buffer.from('mortal is gone'), qos: 1, retain: false } });
    // The socket closes without DISCONNECT: the will is due.
    (mortal as unknown as { stream: { destroy(): void } }).stream.destroy();
    await waitFor('the last will', 15_000, () => (wills.includes('mortal is gone') ? true : undefined));
    const polite = await connectMqtt('b1', { clientId: 'polite', will: { topic: 'mq.will/0', payload: Buffer.from('polite is gone'), qos: 1, retain: false } });
    await polite.endAsync();
    await assertHoldsFor('no will after a normal DISCONNECT', 1500, () => !wills.includes('polite is gone'));
  });

  test('a persistent session resumes from its committed offset after a reconnect to another broker', async () => {
    const options = { clientId: 'sess-1', clean: false, properties: { sessionExpiryInterval: 300 } };
    const first = await connectMqtt('b1', options);
    const got: string[] = [];
    first.on('message', (_t, p) => got.push(p.toString()));
    await first.subscribeAsync('mq.sess/0', { qos: 1 });
    // A new persistent subscription commits the queue's end (0 here) before its first read.
    await waitFor('the subscription to commit its start', 15_000, async () => {
      const d = await admin.describeConsumerGroup('mqtt.sess-1', 'mq.sess');
      return d.queues[0]?.committedOffset === 0 ? true : undefined;
    });
    await admin.send('mq.sess', [{ body: 'a0' }, { body: 'a1' }, { body: 'a2' }], { queue: 0 });
    await waitFor('a0..a2', 15_000, () => (got.length >= 3 ? true : undefined));
    await waitFor('the offset committed', 10_000, async () => {
      const d = await admin.describeConsumerGroup('mqtt.sess-1', 'mq.sess');
      return d.queues[0]?.committedOffset === 3 ? true : undefined;
    });
    await first.endAsync();
    await admin.send('mq.sess', [{ body: 'b0' }, { body: 'b1' }], { queue: 0 });
    const again: string[] = [];
    const second = await connectMqtt('b3', options);
    second.on('message', (_t, p) => again.push(p.toString()));
    await second.subscribeAsync('mq.sess/0', { qos: 1 });
    await waitFor('b0 and b1 after the reconnect', 15_000, () => (again.length >= 2 ? true : undefined));
    await sleep(500);
    assert.deepEqual(again, ['b0', 'b1']);
  });

  test('refusals: QoS 2 (DISCONNECT 0x9B), wrong secret (0x86; 3.1.1: 4), no permission (PUBACK 0x87), unknown topic (0x90)', async () => {
    await assert.rejects(connectMqtt('b1', { password: 'wrong-secret' }), (e: Error & { code?: number }) => e.code === 0x86);
    await assert.rejects(connectMqtt('b1', { password: 'wrong-secret', protocolVersion: 4 }), (e: Error & { code?: number }) => e.code === 4);
    const client = await connectMqtt('b1');
    await assert.rejects(client.publishAsync('secret/0', 'x', { qos: 1 }), (e: Error & { code?: number }) => e.code === 0x87);
    await assert.rejects(client.publishAsync('mq.nosuch/0', 'x', { qos: 1 }), (e: Error & { code?: number }) => e.code === 0x90);
    const disconnected = new Promise<number | undefined>((resolve) => client.once('disconnect', (p) => resolve(p.reasonCode)));
    client.publish('mq.in/0', 'x', { qos: 2 });
    assert.equal(await Promise.race([disconnected, sleep(5000).then(() => -1)]), 0x9b);
  });

  test('hostile input: random and mutated frames, a silent client, an oversized packet: closed, the broker serves on', async () => {
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const valid = mqttPacket.generate({
      cmd: 'connect',
      clientId: 'fuzz',
      protocolVersion: 5,
      keepalive: 10,
      clean: true,
      username: 'x',
      password: Buffer.from('y'),
    });
    const frames: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const bytes = Buffer.from(valid);
      for (let k = 0; k < 3; k++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      frames.push(i % 2 ? bytes : Buffer.from(Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256))));
    }
    // A length prefix announcing 200 MB, a CONNECT with keep-alive 1 s followed by silence.
    frames.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1, 0x61]));
    const closedWithin = (frame: Buffer, ms: number): Promise<boolean> =>
      new Promise((resolve) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: port('b1'), ca: execFileSync('cat', [ca()]) }, () => socket.write(frame));
        const timer = setTimeout(() => {
          socket.destroy();
          resolve(false);
        }, ms);
        socket.on('data', () => undefined);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    for (const frame of frames.slice(0, -1)) await closedWithin(frame, 600); // garbage may also wait for more bytes
    assert.ok(await closedWithin(frames[frames.length - 1]!, 15_000), 'a 200 MB length prefix is refused');
    const silent = mqttPacket.generate({
      cmd: 'connect',
      clientId: 'silent',
      protocolVersion: 4,
      keepalive: 1,
      clean: true,
      username: cluster.keys.app.id,
      password: Buffer.from(cluster.keys.app.secret),
    });
    assert.ok(await closedWithin(silent, 6000), 'a client silent past 1.5 keep-alive periods is closed');
    for (const b of cluster.brokers) assert.ok(cluster.isRunning(b.id), `${b.id} is up`);
    const client = await connectMqtt('b1');
    await client.publishAsync('mq.in/0', 'after-fuzz', { qos: 1 });
    assert.ok((await readAll('mq.in', 0, 1)).includes('after-fuzz'));
  });

  test('mosquitto_pub to mosquitto_sub round trip', async (t) => {
    if (!hasMosquitto() && !installMosquitto()) {
      t.skip('mosquitto-clients is missing and apt-get could not install it');
      return;
    }
    const common = ['-h', '127.0.0.1', '--cafile', ca(), '-u', cluster.keys.app.id, '-P', cluster.keys.app.secret, '-V', 'mqttv311'];
    const out = await firstMessageOfMosquittoSub([...common, '-p', String(port('b2')), '-t', 'mq.mos/+', '-q', '1', '-v'], () =>
      execFileSync('mosquitto_pub', [...common, '-p', String(port('b1')), '-t', 'mq.mos/0', '-q', '1', '-m', 'hello mosquitto'], { timeout: 10_000 }),
    );
    assert.match(out, /^mq\.mos\/0 hello mosquitto/);
  });

  test('mosquitto_pub -q 0 (3.1.1 and 5.0, many lines then DISCONNECT) stores every message in order; mosquitto_sub -q 0 receives', async (t) => {
    if (!hasMosquitto() && !installMosquitto()) {
      t.skip('mosquitto-clients is missing and apt-get could not install it');
      return;
    }
    const common = ['-h', '127.0.0.1', '--cafile', ca(), '-u', cluster.keys.app.id, '-P', cluster.keys.app.secret];
    const lines311 = Array.from({ length: 100 }, (_, i) => `p${i}`);
    const lines5 = Array.from({ length: 100 }, (_, i) => `p${100 + i}`);
    // -l: one QoS 0 PUBLISH per stdin line, then DISCONNECT at once (nothing to wait for).
    execFileSync('mosquitto_pub', [...common, '-V', 'mqttv311', '-p', String(port('b1')), '-t', 'mq.q0/1', '-q', '0', '-l'], {
      input: `${lines311.join('\n')}\n`,
      timeout: 10_000,
    });
    // QoS 0 tells the publisher nothing: its exit does not mean stored, so wait before the next one.
    assert.deepEqual(await readAll('mq.q0', 1, 100), lines311);
    execFileSync('mosquitto_pub', [...common, '-V', 'mqttv5', '-p', String(port('b2')), '-t', 'mq.q0/1', '-q', '0', '-l'], {
      input: `${lines5.join('\n')}\n`,
      timeout: 10_000,
    });
    assert.deepEqual(await readAll('mq.q0', 1, 200), [...lines311, ...lines5]);

    const out = await firstMessageOfMosquittoSub([...common, '-V', 'mqttv311', '-p', String(port('b3')), '-t', 'mq.q0/1', '-q', '0'], () =>
      execFileSync('mosquitto_pub', [...common, '-p', String(port('b1')), '-t', 'mq.q0/1', '-q', '0', '-m', 'to qos 0'], { timeout: 10_000 }),
    );
    assert.equal(out, 'to qos 0\n');
  });

  test('a leader kill while publishing QoS 1 loses no PUBACKed message', async () => {
    const leader = (await cluster.leaderOf('g1')).id;
    const via = cluster.brokers.find((b) => b.id !== leader)!.id;
    const client = await connectMqtt(via);
    const acked: string[] = [];
    let refused = 0;
    for (let i = 0; i < 200; i++) {
      if (i === 60) await cluster.kill(leader);
      try {
        await client.publishAsync('mq.kill/0', `k${i}`, { qos: 1 });
        acked.push(`k${i}`);
      } catch {
        refused++;
      }
    }
    cluster.launch(leader);
    await cluster.leaderOf('g1', 20_000);
    const stored = new Set(await readAll('mq.kill', 0, acked.length));
    const lost = acked.filter((b) => !stored.has(b));
    assert.deepEqual(lost, [], `lost ${lost.length} of ${acked.length} acked (${refused} refused)`);
    assert.ok(acked.length >= 150, `most publishes are acked across the failover (${acked.length})`);
  });

  test('leader transfers and a kill under pipelined QoS 1 streams of four clients: no message stored twice, none PUBACKed lost, each client in order', async () => {
    const first = (await cluster.leaderOf('g1')).id;
    const via = cluster.brokers.find((b) => b.id !== first)!.id;
    const others = cluster.brokers.map((b) => b.id).filter((id) => id !== via);
    // To one of the brokers the clients are not on; refused while the target does not fetch yet.
    const transferAway = (): Promise<boolean> =>
      waitFor(
        'a leadership transfer',
        30_000,
        async () => {
          const current = (await cluster.leaderOf('g1')).id;
          await admin.transferLeader('g1', { to: others.find((id) => id !== current)! });
          return true;
        },
        200,
      );
    // The broker the test before restarted may still be catching up: once a transfer succeeds, all fetch.
    await transferAway();
    const clients = await Promise.all([0, 1, 2, 3].map(() => waitFor(`MQTT on ${via}`, 30_000, () => connectMqtt(via).catch(() => undefined), 200)));
    const acknowledged = new Set<string>();
    // The streams run until the transfers and the kill are behind them (so every transfer falls
    // inside them however fast this machine is), bounded per client.
    const perClientMax = 2000;
    const inflightMax = 16;
    let stopping = false;
    let sentCount = 0;
    const streams = clients.map(async (client, c) => {
      const inflight = new Set<Promise<void>>();
      for (let i = 0; i < perClientMax && !stopping; i++, sentCount++) {
        const body = `c${c}-${i}`;
        const publish: Promise<void> = client
          .publishAsync('mq.once/0', body, { qos: 1 })
          .then(
            () => void acknowledged.add(body),
            () => undefined, // refused: it may or may not be stored, but never twice
          )
          .finally(() => inflight.delete(publish));
        inflight.add(publish);
        if (inflight.size >= inflightMax) await Promise.race(inflight);
      }
      await Promise.all(inflight);
    });
    let ended = false;
    void Promise.all(streams).then(() => {
      ended = true;
    });
    // Each transfer ends the old leader's term with appended entries it may not have committed:
    // answers to their produce requests fail, and a plain retry would store them again.
    let transfersDuringStreams = 0;
    for (let round = 0; round < 4; round++) {
      await waitFor(`${(round + 1) * 80} acknowledgements`, 30_000, () => (acknowledged.size >= (round + 1) * 80 ? true : undefined));
      await transferAway();
      if (!ended) transfersDuringStreams++;
    }
    const killed = (await cluster.leaderOf('g1')).id;
    if (killed !== via) await cluster.kill(killed);
    const acknowledgedAtKill = acknowledged.size;
    await waitFor('80 acknowledgements after the kill', 60_000, () => (ended || acknowledged.size >= acknowledgedAtKill + 80 ? true : undefined));
    stopping = true;
    await waitFor('the publish streams to end', 90_000, () => (ended ? true : undefined));
    assert.ok(transfersDuringStreams >= 1, 'the streams ended before any leadership transfer');
    if (!cluster.isRunning(killed)) cluster.launch(killed);
    await cluster.leaderOf('g1', 20_000);

    const bodies: string[] = [];
    for (let round = 0; round < 100; round++) {
      const read = await admin.read('mq.once', 0, bodies.length, { messagesMax: 5000 });
      if (read.messages.length === 0) break;
      bodies.push(...read.messages.map((m) => m.body.toString()));
    }
    const seen = new Set<string>();
    const twice = bodies.filter((b) => seen.has(b) || !seen.add(b));
    assert.deepEqual(twice, [], `${twice.length} messages stored twice`);
    const stored = new Set(bodies);
    const lost = [...acknowledged].filter((b) => !stored.has(b));
    assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.size} PUBACKed messages missing`);
    for (let c = 0; c < clients.length; c++) {
      const order = bodies.filter((b) => b.startsWith(`c${c}-`)).map((b) => Number(b.split('-')[1]));
      assert.deepEqual(
        order,
        [...order].sort((a, b) => a - b),
        `client ${c}'s messages in publish order`,
      );
    }
    assert.ok(acknowledged.size >= 0.8 * sentCount, `most publishes acknowledged (${acknowledged.size} of ${sentCount})`);
  });
});

function hasMosquitto(): boolean {
  try {
    execFileSync('mosquitto_pub', ['--help'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    return (
      (error as { status?: number }).status !== undefined && (error as { status?: number }).status !== 127 && (error as NodeJS.ErrnoException).code !== 'ENOENT'
    );
  }
}

function installMosquitto(): boolean {
  try {
    execFileSync('apt-get', ['install', '-y', '-q', 'mosquitto-clients'], {
      stdio: 'ignore',
      timeout: 300_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch {
    return false;
  }
  return hasMosquitto();
}
