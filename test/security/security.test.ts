// Integration: brokers with access keys, permissions and mutual TLS between them (DESIGN §8).
// Each class of bad request gets its status; permitted calls work through the SDK and the CLI.
import { test, describe, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/protocol/protos.js';
import { MambaClient } from '../../src/client/client.js';
import { signCall } from '../../src/auth/signature.js';
import { SecureCluster, cliPath, waitFor, type Wire } from './secure-cluster.js';

async function status(work: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  const error = await work.then(
    () => null,
    (e: grpc.ServiceError) => e,
  );
  return error ? { code: error.code, details: error.details } : { code: grpc.status.OK, details: '' };
}

function expectCode(actual: { code: grpc.status; details: string }, code: grpc.status, pattern?: RegExp): void {
  assert.equal(grpc.status[actual.code], grpc.status[code], actual.details);
  if (pattern) assert.match(actual.details, pattern);
}

describe('security: access keys, permissions, TLS', { timeout: 120_000 }, () => {
  let cluster: SecureCluster;
  let leaderAddress: string;

  before(async () => {
    cluster = await SecureCluster.start({ groups: 2, tls: true });
    leaderAddress = (await cluster.leaderOf('g1')).clientAddress;
  });
  // On a loaded machine leadership may move between tests: each starts from g1's leader now.
  beforeEach(async () => {
    leaderAddress = (await cluster.leaderOf('g1')).clientAddress;
  });
  after(async () => cluster?.stop());

  test('a topic created by the admin key spans both groups (brokers forward with their own key over TLS)', async () => {
    const client = cluster.rawClient(leaderAddress);
    const admin = cluster.signer(cluster.keys.admin);
    const created = await cluster.call(client, 'CreateTopic', { name: 'orders.eu', queues: 4 }, admin);
    assert.equal(created.topic.queues, 4);
    const described = await cluster.call(client, 'DescribeTopic', { name: 'orders.eu' }, admin);
    assert.deepEqual(new Set((described.queues as Wire[]).map((q) => q.group)), new Set(['g1', 'g2']));
  });

  test('every class of bad credentials gets UNAUTHENTICATED; refusals are logged without secrets', async () => {
    const client = cluster.rawClient(leaderAddress);
    const admin = cluster.signer(cluster.keys.admin);
    expectCode(await status(cluster.call(client, 'ListTopics', {}, null)), grpc.status.UNAUTHENTICATED, /requires an access key/);
    expectCode(
      await status(cluster.call(client, 'ListTopics', {}, { keyId: 'nobody', signingKey: admin.signingKey })),
      grpc.status.UNAUTHENTICATED,
      /unknown access key "nobody"/,
    );
    expectCode(
      await status(cluster.call(client, 'ListTopics', {}, cluster.signer({ id: 'admin', secret: 'not-the-secret-at-all' }))),
      grpc.status.UNAUTHENTICATED,
      /wrong signature/,
    );
    const stale = signCall(new grpc.Metadata(), admin, '/mamba.v1.Mamba/ListTopics', Date.now() - 60_000);
    expectCode(await status(cluster.call(client, 'ListTopics', {}, null, stale)), grpc.status.UNAUTHENTICATED, /away from the broker's clock/);
    const once = signCall(new grpc.Metadata(), admin, '/mamba.v1.Mamba/ListTopics');
    expectCode(await status(cluster.call(client, 'ListTopics', {}, null, once.clone())), grpc.status.OK);
    expectCode(await status(cluster.call(client, 'ListTopics', {}, null, once.clone())), grpc.status.UNAUTHENTICATED, /replayed/);
    const otherMethod = signCall(new grpc.Metadata(), admin, '/mamba.v1.Mamba/ListTopics');
    expectCode(await status(cluster.call(client, 'DeleteTopic', { name: 'orders.eu' }, null, otherMethod)), grpc.status.UNAUTHENTICATED, /wrong signature/);
    const garbled = new grpc.Metadata();
    garbled.set('mamba-key-id', 'admin');
    garbled.set('mamba-signature', 'zz');
    expectCode(await status(cluster.call(client, 'ListTopics', {}, null, garbled)), grpc.status.UNAUTHENTICATED, /needs each of/);

    const plain = new (grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba'))(leaderAddress, grpc.credentials.createInsecure());
    expectCode(await status(cluster.call(plain, 'ListTopics', {}, admin, new grpc.Metadata(), 2000)), grpc.status.UNAVAILABLE);
    plain.close();

    await waitFor('the audit lines', 3000, async () => ((cluster.logs().match(/"event":"auth.unauthenticated"/g)?.length ?? 0) >= 6 ? true : undefined));
    const logs = cluster.logs();
    for (const key of Object.values(cluster.keys)) assert.ok(!logs.includes(key.secret), `the secret of ${key.id} is in a broker log`);
    for (const key of Object.values(cluster.keys))
      assert.ok(!logs.includes(cluster.signer(key).signingKey.toString('hex')), `the signing key of ${key.id} is in a broker log`);
  });

  test('a key may only do what the permissions file grants: PERMISSION_DENIED names topic and action, one audit line', async () => {
    const client = cluster.rawClient(leaderAddress);
    const app = cluster.signer(cluster.keys.app);
    const admin = cluster.signer(cluster.keys.admin);
    await cluster.call(client, 'CreateTopic', { name: 'payments', queues: 1 }, admin);
    const topic = await cluster.call(client, 'DescribeTopic', { name: 'orders.eu' }, admin);
    const q0 = (topic.queues as Wire[]).find((q) => q.group === 'g1')!.queue as number;
    const produced = await cluster.call(client, 'Produce', { topic: 'orders.eu', queue: q0, messages: [{ body: Buffer.from('ok') }] }, app);
    assert.equal(Number(produced.count), 1);
    expectCode(
      await status(cluster.call(client, 'Produce', { topic: 'payments', queue: 0, messages: [{ body: Buffer.from('no') }] }, app)),
      grpc.status.PERMISSION_DENIED,
      /may not produce topic "payments"/,
    );
    expectCode(
      await status(cluster.call(client, 'Consume', { topic: 'orders.eu', queue: q0, offset: 0 }, app)),
      grpc.status.PERMISSION_DENIED,
      /may not consume topic "orders.eu"/,
    );
    expectCode(
      await status(cluster.call(client, 'CreateTopic', { name: 'orders.us', queues: 1 }, app)),
      grpc.status.PERMISSION_DENIED,
      /may not administer topic "orders.us"/,
    );
    expectCode(
      await status(cluster.call(client, 'DeleteTopic', { name: 'payments' }, app)),
      grpc.status.PERMISSION_DENIED,
      /may not administer topic "payments"/,
    );
    await waitFor('the audit line', 3000, async () =>
      /"event":"auth.permission_denied"[^\n]*"action":"consume","topic":"orders.eu"/.test(cluster.logs()) ? true : undefined,
    );
    assert.equal(cluster.logs().match(/"event":"auth.permission_denied"[^\n]*"action":"consume"/g)?.length, 1);

    // Reloaded without a restart: grant consume and the same call passes.
    cluster.writePermissions([
      { key: 'admin', topics: ['*'], actions: ['produce', 'consume', 'admin'] },
      { key: cluster.keys.app.id, topics: ['orders.*'], actions: ['produce', 'consume'] },
    ]);
    const read = await waitFor('the new grant', 10_000, async () => cluster.call(client, 'Consume', { topic: 'orders.eu', queue: q0, offset: 0 }, app));
    assert.equal(Buffer.from((read.records as Wire[])[0]!.body).toString(), 'ok');
    assert.match(cluster.logs(), /"event":"auth.file.reloaded"/);
  });

  test('the peer API takes only group brokers: no certificate, a stranger certificate, a certificate for another id', async () => {
    const target = cluster.brokers.find((b) => b.group === 'g1')!;
    const Peer = grpc.makeGenericClientConstructor(serviceDefinition('mamba.raft.v1.RaftPeer'), 'RaftPeer');
    const fetch = (peer: grpc.Client, sender: Wire): Promise<{ code: grpc.status; details: string }> =>
      status(
        new Promise((resolve, reject) =>
          (peer as unknown as Record<string, (r: Wire, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>).Fetch!.call(
            peer,
            { sender, epoch: 1, fetchOffset: 0 },
            { deadline: Date.now() + 3000 },
            (e, w) => (e ? reject(e) : resolve(w)),
          ),
        ),
      );
    const name = readFileSync(cluster.file, 'utf8').match(/cluster: (\S+)/)![1]!;
    const other = cluster.brokers.find((b) => b.group === 'g1' && b.id !== target.id)!;
    const noCert = new Peer(target.peerAddress, cluster.channelCredentials());
    expectCode(await fetch(noCert, { cluster: name, group: 'g1', replicaId: other.id }), grpc.status.UNAVAILABLE);
    const stranger = new Peer(target.peerAddress, cluster.channelCredentials('intruder'));
    expectCode(
      await fetch(stranger, { cluster: name, group: 'g1', replicaId: other.id }),
      grpc.status.PERMISSION_DENIED,
      /certificate of "intruder" is not one of this group's brokers/,
    );
    const g2broker = cluster.brokers.find((b) => b.group === 'g2')!;
    const otherGroup = new Peer(target.peerAddress, cluster.channelCredentials(g2broker.id));
    expectCode(
      await fetch(otherGroup, { cluster: name, group: 'g1', replicaId: g2broker.id }),
      grpc.status.PERMISSION_DENIED,
      /certificate of "b4" is not one of this group's brokers/,
    );
    const third = cluster.brokers.find((b) => b.group === 'g1' && b.id !== target.id && b.id !== other.id)!;
    const impostor = new Peer(target.peerAddress, cluster.channelCredentials(third.id));
    expectCode(
      await fetch(impostor, { cluster: name, group: 'g1', replicaId: other.id }),
      grpc.status.PERMISSION_DENIED,
      new RegExp(`certificate of "${third.id}" cannot speak for replica "${other.id}"`),
    );
    for (const c of [noCert, stranger, otherGroup, impostor]) c.close();
  });

  test('a backup (issue 14) needs admin on "*": a key without it is refused by name; the admin key gets the stream over TLS', async () => {
    const caFile = join(cluster.certDir, 'ca.crt');
    const clientOf = (key: { id: string; secret: string }): MambaClient =>
      new MambaClient({ brokers: [leaderAddress], accessKey: { keyId: key.id, secret: key.secret }, tls: { caFile }, retry: { attemptsMax: 1 } });
    const app = clientOf(cluster.keys.app);
    try {
      const call = await app.backup('g1');
      await assert.rejects(call.chunks.next(), (e: Error) => e.name === 'PermissionDeniedError' && /may not administer topic "\*"/.test(e.message));
    } finally {
      app.close();
    }
    const admin = clientOf(cluster.keys.admin);
    try {
      const call = await admin.backup('g1');
      const first = await call.chunks.next();
      assert.equal(first.done, false);
      assert.equal(first.value?.start?.group, 'g1');
      assert.ok((first.value?.start?.highWatermark ?? 0) > 0);
      call.cancel();
    } finally {
      admin.close();
    }
    // Sent whole before the cancel arrived (a small group) or given up: either way released.
    await waitFor('the leader releases the backup', 5000, async () => (/"event":"backup\.(finished|abandoned)"/.test(cluster.logs()) ? true : undefined));
  });

  test('the SDK signs with a key from options or the environment, the CLI from a credentials file', async () => {
    const caFile = join(cluster.certDir, 'ca.crt');
    const sdk = new MambaClient({
      brokers: [leaderAddress],
      accessKey: { keyId: 'admin', secret: cluster.keys.admin.secret },
      tls: { caFile },
      retry: { attemptsMax: 3 },
    });
    try {
      const sent = await sdk.send('payments', [{ body: 'from the sdk' }], { queue: 0 });
      const read = await sdk.read('payments', 0, sent.baseOffset);
      assert.equal(read.messages[0]!.body.toString(), 'from the sdk');
    } finally {
      sdk.close();
    }
    const saved = { id: process.env.MAMBA_KEY_ID, secret: process.env.MAMBA_KEY_SECRET, ca: process.env.MAMBA_TLS_CA };
    Object.assign(process.env, { MAMBA_KEY_ID: cluster.keys.app.id, MAMBA_KEY_SECRET: cluster.keys.app.secret, MAMBA_TLS_CA: caFile });
    const fromEnv = new MambaClient({ brokers: [leaderAddress], retry: { attemptsMax: 1 } });
    try {
      await assert.rejects(
        fromEnv.deleteTopic('payments'),
        (e: Error) => e.name === 'PermissionDeniedError' && /may not administer topic "payments"/.test(e.message),
      );
    } finally {
      fromEnv.close();
      for (const [k, v] of [
        ['MAMBA_KEY_ID', saved.id],
        ['MAMBA_KEY_SECRET', saved.secret],
        ['MAMBA_TLS_CA', saved.ca],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
    const credentials = join(cluster.dir, 'credentials');
    writeFileSync(credentials, `key_id = admin\nkey_secret = ${cluster.keys.admin.secret}\n`, { mode: 0o600 });
    const env = { ...process.env, MAMBA_KEY_ID: '', MAMBA_KEY_SECRET: '', MAMBA_CREDENTIALS: '' };
    const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) =>
        execFile(process.execPath, [cliPath, ...args], { env, timeout: 20_000 }, (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
        ),
      );
    const listed = await run(['--cluster', cluster.file, '--credentials', credentials, '--json', 'topic', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok((JSON.parse(listed.stdout) as { topics: Array<{ name: string }> }).topics.some((t) => t.name === 'payments'));
    const refused = await run(['--cluster', cluster.file, '--credentials', join(cluster.dir, 'missing'), 'topic', 'list']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot read credentials file/);
  });
});
