// Hostile input: a bounded run (count and time) of random and mutated protobuf frames against
// every method of the client API and the peer API, signed and unsigned, with and without a
// member certificate. Every answer must be a proper status (never INTERNAL or UNKNOWN); no
// broker may exit; memory returns near its start; the stored log reads back exactly; no secret
// appears in the logs or on /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { protoRoot, messageType } from '../../src/protocol/protos.js';
import { signCall, type SigningKey } from '../../src/auth/signature.js';
import { createKey } from '../../src/auth/keys.js';
import { SecureCluster, waitFor, type Wire } from './secure-cluster.js';
import { prng } from '../harness/seeded-random.js';

const callsMax = 2400;
const runMsMax = 25_000;
const seed = Number(process.env.MAMBA_FUZZ_SEED ?? Date.now() % 100_000);

interface Method {
  service: string;
  name: string;
  path: string;
  requestType: string;
  serverStream: boolean;
}

function methods(service: string): Method[] {
  return protoRoot()
    .lookupService(service)
    .methodsArray.map((m) => {
      m.resolve();
      return { service, name: m.name, path: `/${service}/${m.name}`, requestType: m.resolvedRequestType!.fullName.slice(1), serverStream: !!m.responseStream };
    });
}

/** A valid request of each type, with values a fuzzer mutates from. */
function seedRequest(method: Method, clusterName: string): Wire {
  const sender = { cluster: clusterName, group: 'g1', replicaId: 'b1' };
  const samples: Record<string, Wire> = {
    Produce: {
      topic: 'fuzz',
      queue: 0,
      ack: 3,
      messages: [{ key: Buffer.from('k'), body: Buffer.from('body'), headers: [{ key: 'h', value: Buffer.from('v') }] }],
    },
    Consume: { topic: 'fuzz', queue: 0, offset: 0, messagesMax: 10, waitMsMax: 10 },
    Subscribe: { topic: 'fuzz', queue: 0, offset: 0, messagesMax: 10 },
    CommitOffset: { topic: 'fuzz', queue: 0, consumerGroup: 'cg', offset: 1 },
    FetchOffset: { topic: 'fuzz', queue: 0, consumerGroup: 'cg' },
    CreateTopic: { name: 'scratch', queues: 2 },
    DeleteTopic: { name: 'scratch' },
    DescribeTopic: { name: 'fuzz' },
    PreVote: { sender, to: 'b2', epoch: 1, lastEpoch: 1, lastOffset: 1 },
    Vote: { sender, to: 'b2', epoch: 1, lastEpoch: 1, lastOffset: 1 },
    BeginQuorumEpoch: { sender, to: 'b2', epoch: 1 },
    Fetch: { sender, to: 'b2', epoch: 1, fetchOffset: 0, lastFetchedEpoch: 0, bytesMax: 1024, waitMsMax: 10, requestId: 1 },
    TransferLeadership: { sender, to: 'b2', epoch: 1 },
  };
  return samples[method.name] ?? {};
}

function frame(method: Method, random: () => number, clusterName: string): Buffer {
  const int = (n: number): number => Math.floor(random() * n);
  const kind = int(4);
  if (kind === 0) return Buffer.from(Array.from({ length: int(300) }, () => int(256))); // random bytes
  const type = messageType(method.requestType);
  const valid = Buffer.from(type.encode(type.fromObject(seedRequest(method, clusterName))).finish());
  if (kind === 1) return valid.subarray(0, int(valid.length + 1)); // truncated
  const bytes = Buffer.from(valid);
  const edits = 1 + int(4);
  for (let i = 0; i < edits && bytes.length > 0; i++) bytes[int(bytes.length)] = kind === 2 ? int(256) : bytes[int(bytes.length)]! ^ (1 << int(8));
  // Sometimes a huge varint or a field of a claimed huge length appended.
  if (random() < 0.2) return Buffer.concat([bytes, Buffer.from([0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f])]);
  if (random() < 0.2) return Buffer.concat([bytes, Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])]);
  return bytes;
}

const identity = (b: Buffer): Buffer => b;
const internalDetails = new Set<string>();

interface Answer {
  code: grpc.status;
  details: string;
}

/**
 * A leadership change is a real event of this run: the member-certificate lane sends fuzzed
 * vote requests that a trusted peer may send, and a higher epoch among them deposes the leader.
 * A call caught in it gets UNAVAILABLE with the broker's own sentence (leadership lost, an entry
 * truncated by a new leader, a group or the metadata group not answering meanwhile, a topic
 * deleted while another fuzzed call created it: "retry"); that is a proper answer. UNAVAILABLE
 * worded by grpc-js (the connection to the broker gone or reset) is not, and is caught here.
 */
const transportFailure = /^(No connection established|Connection dropped|Received RST_STREAM|Stream refused|.*\bGOAWAY\b|.*\bECONNRESET\b|.*\bECONNREFUSED\b)/;

/** Sends `bytes` to `path` and returns the final status (a stream is cancelled after a moment). */
function send(client: grpc.Client, method: Method, bytes: Buffer, metadata: grpc.Metadata): Promise<Answer> {
  const deadline = Date.now() + 2000;
  if (!method.serverStream) {
    return new Promise((resolve) =>
      client.makeUnaryRequest(method.path, identity, identity, bytes, metadata, { deadline }, (e) => {
        if (e && (e.code === grpc.status.INTERNAL || e.code === grpc.status.UNKNOWN || e.code === grpc.status.UNAVAILABLE))
          internalDetails.add(`${method.name}: ${e.details} (frame ${bytes.toString('hex')})`);
        resolve(e ? { code: e.code, details: e.details ?? '' } : { code: grpc.status.OK, details: '' });
      }),
    );
  }
  return new Promise((resolve) => {
    const stream = client.makeServerStreamRequest(method.path, identity, identity, bytes, metadata, { deadline });
    stream.on('data', () => undefined);
    stream.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details ?? '' }));
    stream.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
    setTimeout(() => stream.cancel(), 150);
  });
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '0')![1]) * 1024;
}

test(`fuzzing both APIs (seed ${seed}): proper statuses only, brokers stay up, memory settles, the log reads back`, { timeout: 120_000 }, async () => {
  const cluster = await SecureCluster.start({ groups: 1, tls: true });
  try {
    const fuzzer = createKey(cluster.keysFile, 'fuzzer');
    cluster.writePermissions([
      { key: 'admin', topics: ['*'], actions: ['produce', 'consume', 'admin'] },
      { key: 'fuzzer', topics: ['*'], actions: ['produce', 'consume'] },
      { key: 'fuzzer', topics: ['scratch*'], actions: ['admin'] },
    ]);
    const clusterName = /cluster: (\S+)/.exec(readFileSync(cluster.file, 'utf8'))![1]!;
    const leader = await cluster.leaderOf('g1');
    const admin = cluster.signer(cluster.keys.admin);
    const adminClient = cluster.rawClient(leader.clientAddress);
    await cluster.call(adminClient, 'CreateTopic', { name: 'fuzz', queues: 1 }, admin);
    const stored = Array.from({ length: 200 }, (_, i) => Buffer.from(`stored-${i}-${'x'.repeat(i % 50)}`));
    for (let i = 0; i < 200; i += 50)
      await cluster.call(adminClient, 'Produce', { topic: 'fuzz', queue: 0, messages: stored.slice(i, i + 50).map((body) => ({ body })) }, admin);
    // Wait for the brokers to have the fuzz key (the keys file is reloaded on change).
    const fuzzKey: SigningKey = cluster.signer(fuzzer);
    // Every broker reloads the keys file on its own: wait until each one takes the fuzz key.
    const brokerClients = cluster.brokers.map((b) => cluster.rawClient(b.clientAddress));
    for (const client of brokerClients) await waitFor('the fuzzer key to load', 10_000, async () => cluster.call(client, 'ListTopics', {}, fuzzKey));
    const pids = cluster.brokers.map((b) => b.process!.pid!);
    const rssBefore = pids.map(rssBytes);

    const clientMethods = methods('mamba.v1.Mamba');
    const peerMethods = methods('mamba.raft.v1.RaftPeer');
    const targets = cluster.brokers.filter((b) => b.id !== 'b1');
    const clients = {
      client: cluster.brokers.map((b) => cluster.rawClient(b.clientAddress)),
      memberPeer: targets.map((b) => new grpc.Client(b.peerAddress, cluster.channelCredentials('b1'))),
      strangerPeer: targets.map((b) => new grpc.Client(b.peerAddress, cluster.channelCredentials('intruder'))),
    };
    const random = prng(seed);
    const seen = new Map<string, Map<string, number>>();
    const note = (what: string, code: grpc.status): void => {
      const codes = seen.get(what) ?? new Map<string, number>();
      codes.set(grpc.status[code]!, (codes.get(grpc.status[code]!) ?? 0) + 1);
      seen.set(what, codes);
    };
    const started = Date.now();
    let calls = 0;
    const bad: string[] = [];
    while (calls < callsMax && Date.now() - started < runMsMax) {
      const batch: Array<Promise<void>> = [];
      for (let i = 0; i < 24; i++, calls++) {
        const lane = Math.floor(random() * 4);
        const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
        if (lane <= 1) {
          const method = pick(clientMethods);
          const metadata = new grpc.Metadata();
          if (lane === 1) signCall(metadata, fuzzKey, method.path);
          const what = `client ${lane === 1 ? 'signed' : 'unsigned'}`;
          batch.push(
            send(pick(clients.client), method, frame(method, random, clusterName), metadata).then(({ code, details }) => {
              note(what, code);
              const allowed =
                lane === 0
                  ? [grpc.status.UNAUTHENTICATED]
                  : [
                      grpc.status.OK,
                      grpc.status.INVALID_ARGUMENT,
                      grpc.status.NOT_FOUND,
                      grpc.status.OUT_OF_RANGE,
                      grpc.status.ALREADY_EXISTS,
                      grpc.status.FAILED_PRECONDITION,
                      grpc.status.PERMISSION_DENIED,
                      grpc.status.RESOURCE_EXHAUSTED,
                      grpc.status.DEADLINE_EXCEEDED,
                      grpc.status.CANCELLED,
                    ];
              // CANCELLED on a stream is this client's own cancel (after 150 ms), not an answer.
              const proper =
                allowed.includes(code) ||
                (method.serverStream && code === grpc.status.CANCELLED) ||
                (lane === 1 && code === grpc.status.UNAVAILABLE && details !== '' && !transportFailure.test(details));
              if (!proper) bad.push(`${what} ${method.name}: ${grpc.status[code]}`);
            }),
          );
        } else {
          const method = pick(peerMethods);
          const member = lane === 3;
          const what = member ? 'peer member certificate' : 'peer stranger certificate';
          batch.push(
            send(pick(member ? clients.memberPeer : clients.strangerPeer), method, frame(method, random, clusterName), new grpc.Metadata()).then(({ code }) => {
              note(what, code);
              const allowed = member
                ? [
                    grpc.status.OK,
                    grpc.status.INVALID_ARGUMENT,
                    grpc.status.PERMISSION_DENIED,
                    grpc.status.FAILED_PRECONDITION,
                    grpc.status.DEADLINE_EXCEEDED,
                    grpc.status.UNAVAILABLE,
                  ]
                : [grpc.status.PERMISSION_DENIED];
              // CANCELLED on a stream (FetchStream) is this client's own cancel after 150 ms, as above.
              if (!allowed.includes(code) && !(method.serverStream && code === grpc.status.CANCELLED)) bad.push(`${what} ${method.name}: ${grpc.status[code]}`);
            }),
          );
        }
      }
      await Promise.all(batch);
    }
    for (const list of [clients.memberPeer, clients.strangerPeer]) for (const c of list) c.close();
    const table = [...seen].map(([what, codes]) => `${what}: ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}`).join('\n');
    process.stderr.write(`fuzz seed ${seed}: ${calls} calls in ${Date.now() - started} ms\n${table}\n`);
    // A broker that exited is named first, with its last words: every call to it then fails.
    const logs = cluster.logs();
    for (const b of cluster.brokers) {
      const lastWords = logs
        .split('\n')
        .filter((l) => l.includes(`"broker":"${b.id}"`) || !l.startsWith('{'))
        .slice(-15)
        .join('\n');
      assert.ok(cluster.isRunning(b.id), `${b.id} exited during the fuzz run (seed ${seed}):\n${lastWords}`);
    }
    assert.deepEqual([...new Set(bad)], [], `improper statuses (seed ${seed}): ${[...internalDetails].slice(0, 5).join('; ')}`);
    assert.doesNotMatch(logs, /Unhandled|uncaught|FATAL|InvariantError/i);

    const newLeader = await cluster.leaderOf('g1', 15_000);
    const reader = cluster.rawClient(newLeader.clientAddress);
    const read = await waitFor('the stored log', 10_000, async () =>
      cluster.call(reader, 'Consume', { topic: 'fuzz', queue: 0, offset: 0, messagesMax: 200 }, admin),
    );
    assert.deepEqual(
      (read.records as Wire[]).slice(0, 200).map((r) => Buffer.from(r.body).toString()),
      stored.map(String),
    );
    assert.deepEqual(
      (read.records as Wire[]).slice(0, 200).map((r) => Number(r.offset)),
      stored.map((_, i) => i),
    );

    // RSS is a coarse signal: V8 grows its heap in steps of several MiB and the allocator keeps
    // freed arenas, so the bound is set to catch a leak of ~40 KiB per call (2,400 calls ≈ 96 MiB,
    // e.g. a stream, waiter or nonce entry kept per request), not a few MiB of heap growth.
    const growthBytesMax = 96 * 1024 * 1024;
    const grown = (): string[] =>
      pids
        .map(rssBytes)
        .flatMap((after, i) => (after < rssBefore[i]! + growthBytesMax ? [] : [`${cluster.brokers[i]!.id} grew from ${rssBefore[i]} to ${after} bytes`]));
    await waitFor('broker memory to settle', 10_000, () => (grown().length === 0 ? true : undefined), 250).catch(() => undefined);
    assert.deepEqual(grown(), []);

    const metrics = await Promise.all(
      cluster.brokers.map(async (b) => {
        return fetch(`http://127.0.0.1:${b.metricsPort}/metrics`).then(
          (r) => r.text(),
          () => '',
        );
      }),
    );
    assert.match(metrics.join(''), /mamba_auth_failures_total\{reason="missing"/);
    for (const key of [...Object.values(cluster.keys), fuzzer]) {
      const derived = cluster.signer(key).signingKey.toString('hex');
      for (const text of [logs, metrics.join('')]) assert.ok(!text.includes(key.secret) && !text.includes(derived), `key material of ${key.id} leaked`);
    }
  } finally {
    await cluster.stop();
  }
});
