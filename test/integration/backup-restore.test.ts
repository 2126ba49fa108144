// Backup and restore end to end (issue 14), with the built `mambamq` and real brokers:
//   - a cluster of two groups takes a load of idempotent sends (the SDK's Producer, several in
//     flight per queue, binary bodies, keys and headers) while `mambamq backup` copies it; what was
//     acknowledged before the backup began is recorded;
//   - the source is stopped; `mambamq restore` seeds a new cluster (its own ports and data
//     directory, not started), which is then started: every queue reads back, byte for byte and
//     in order, everything acknowledged before the backup began, and nothing it holds is anything
//     but the message sent at that offset (messages acknowledged after the backup began may or
//     may not be there);
//   - `--topics` keeps one topic: the other is gone, the kept one reads back as above;
//   - bad input, each refused with an error naming the problem and nothing written: a damaged
//     file, a missing file, a target that holds data, a backup of another group count.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { TestCluster, waitFor } from './cluster-harness.js';
import { cli } from './workload.js';
import { MambaClient } from '../../src/client/client.js';
import { Producer } from '../../src/client/producer.js';
import { NotFoundError } from '../../src/errors.js';

const orders = `orders-${process.pid}`;
const audit = `audit-${process.pid}`;
const queuesOf: Record<string, number> = { [orders]: 4, [audit]: 2 };
const inflightPerQueueMax = 8;
const work = mkdtempSync(join(tmpdir(), 'mamba-backup-it-'));
const backupDir = join(work, 'backup');
const clusters: TestCluster[] = [];
after(async () => {
  for (const cluster of clusters) await cluster.stop();
  if (!process.env.MAMBA_KEEP_TEST_DIR) rmSync(work, { recursive: true, force: true });
});

/** The message sent as number `index` of a queue: binary, of varying length, every byte value. */
function bodyOf(topic: string, queue: number, index: number): Buffer {
  const seed = createHash('sha256').update(`${topic}/${queue}/${index}`).digest();
  const length = index % 7 === 0 ? 0 : 1 + (seed.readUInt16LE(0) % 700);
  return Buffer.from(Array.from({ length }, (_, i) => seed[i % 32]! ^ (i & 0xff)));
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function mambamq(args: string[]): Promise<Run> {
  return cli(args, { timeoutMs: 60_000 });
}

/** Every file under a directory with its size; [] when it does not exist. */
function listing(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (path: string, prefix: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full, `${prefix}${entry.name}/`);
      else out.push(`${prefix}${entry.name} ${readFileSync(full).byteLength}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** What each queue was sent: index → offset acknowledged and when. */
const acked = new Map<string, Map<number, { offset: number; atMs: number }>>();
let backupBeganMs = 0;
let backupEndedMs = 0;
/** The first restored cluster, stopped, its data kept: a target that holds data. */
let restoredBefore: TestCluster | null = null;

/** Reads a whole queue (up to its high watermark) from a cluster. */
async function readQueue(client: MambaClient, topic: string, queue: number): Promise<Array<{ offset: number; key: string; index: string; body: Buffer }>> {
  const messages: Array<{ offset: number; key: string; index: string; body: Buffer }> = [];
  let offset = 0;
  for (let round = 0; round < 10_000; round++) {
    const result = await client.read(topic, queue, offset, { messagesMax: 1000 });
    for (const m of result.messages) messages.push({ offset: m.offset, key: m.key?.toString() ?? '', index: m.headers.i?.toString() ?? '', body: m.body });
    offset = result.nextOffset;
    if (result.messages.length === 0 || offset >= result.highWatermark) break;
  }
  return messages;
}

/** A restored queue holds, in order, exactly the messages sent at its offsets, and every one acknowledged before the backup began. */
async function checkQueue(client: MambaClient, topic: string, queue: number): Promise<number> {
  const restored = await readQueue(client, topic, queue);
  const sent = acked.get(`${topic}/${queue}`)!;
  const before = [...sent.entries()].filter(([, a]) => a.atMs < backupBeganMs);
  assert.ok(before.length > 0, `${topic}/${queue}: messages acknowledged before the backup began`);
  const needed = Math.max(...before.map(([, a]) => a.offset)) + 1;
  assert.ok(restored.length >= needed, `${topic}/${queue}: ${restored.length} messages restored, ${needed} acknowledged before the backup began`);
  restored.forEach((m, position) => {
    assert.equal(m.offset, position, `${topic}/${queue}: offsets in order from 0`);
    assert.equal(m.index, String(position), `${topic}/${queue} offset ${position}: the message sent there`);
    assert.equal(m.key, `k${queue}`);
    assert.ok(m.body.equals(bodyOf(topic, queue, position)), `${topic}/${queue} offset ${position}: the same bytes`);
  });
  return restored.length;
}

async function startRestored(cluster: TestCluster): Promise<MambaClient> {
  cluster.launchAll();
  await cluster.waitForLeader('g1', 30_000);
  await cluster.waitForLeader('g2', 30_000);
  return new MambaClient({ brokers: cluster.brokers.map((b) => b.clientAddress), requestTimeoutMs: 5000 });
}

describe('backup under load, restore into a new cluster (issue 14)', { timeout: 180_000 }, () => {
  test('a backup taken while a producer runs holds everything acknowledged before it began', async () => {
    const source = await TestCluster.start({ groups: 2, settings: { snapshotIntervalEntries: 100 } });
    clusters.push(source);
    const admin = new MambaClient({ brokers: source.brokers.map((b) => b.clientAddress), requestTimeoutMs: 5000 });
    await admin.createTopic(orders, queuesOf[orders]!);
    await admin.createTopic(audit, queuesOf[audit]!);
    const producer = new Producer({ brokers: source.brokers.map((b) => b.clientAddress), idempotent: true });
    let stop = false;
    const sendersDone = Object.entries(queuesOf).flatMap(([topic, queues]) =>
      Array.from({ length: queues }, async (_, queue) => {
        const sent = new Map<number, { offset: number; atMs: number }>();
        acked.set(`${topic}/${queue}`, sent);
        const inflight = new Set<Promise<void>>();
        for (let index = 0; !stop && index < 20_000; index++) {
          const message = { key: `k${queue}`, headers: { i: String(index) }, body: bodyOf(topic, queue, index) };
          const sending: Promise<void> = producer.send(topic, message, { queue }).then((result) => {
            assert.equal(result.offset, index, `${topic}/${queue}: an idempotent producer's messages keep their order`);
            sent.set(index, { offset: result.offset, atMs: Date.now() });
            inflight.delete(sending);
          });
          inflight.add(sending);
          if (inflight.size >= inflightPerQueueMax) await Promise.race(inflight);
        }
        await Promise.all(inflight);
      }),
    );
    await waitFor('300 messages acknowledged on every queue', 60_000, () => ([...acked.values()].every((sent) => sent.size >= 300) ? true : undefined), 100);

    backupBeganMs = Date.now();
    const backup = await mambamq(['--cluster', source.file, 'backup', '--to', backupDir, '--json']);
    backupEndedMs = Date.now();
    const ackedDuring = [...acked.values()].flatMap((sent) => [...sent.values()]).filter((a) => a.atMs >= backupBeganMs && a.atMs <= backupEndedMs).length;
    stop = true;
    await Promise.all(sendersDone);
    await producer.close();
    admin.close();
    assert.equal(backup.code, 0, backup.stderr);
    assert.ok(ackedDuring > 0, 'the producer was acknowledged while the backup ran (under load)');

    const summary = JSON.parse(backup.stdout.trim()) as {
      groups: Array<{ id: string; highWatermark: number; snapshotEndOffset: number | null }>;
      topics: number;
    };
    assert.equal(backup.stdout.trim().split('\n').length, 1, 'one JSON line on stdout');
    assert.deepEqual(
      summary.groups.map((g) => g.id),
      ['g1', 'g2'],
    );
    assert.ok(
      summary.groups.every((g) => g.snapshotEndOffset !== null),
      'each group sent a snapshot',
    );
    assert.match(backup.stderr, /backup g1: done/);
    assert.match(backup.stderr, /backup g2: done/);
    const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8')) as { topics: Array<{ name: string; queueGroups: string[] }> };
    assert.deepEqual(
      manifest.topics.map((t) => [t.name, t.queueGroups]),
      [
        [audit, ['g1', 'g2']],
        [orders, ['g1', 'g2', 'g1', 'g2']],
      ],
    );
    await source.stop();
  });

  test('restored into a new cluster, every queue reads back byte for byte what was acknowledged before the backup began', async () => {
    const target = await TestCluster.create({ groups: 2, name: 'mamba-restored' });
    clusters.push(target);
    const restore = await mambamq(['restore', '--from', backupDir, '--cluster', target.file, '--json']);
    assert.equal(restore.code, 0, restore.stderr);
    assert.match(restore.stderr, /restore g2: b6 in place/);
    const client = await startRestored(target);
    try {
      for (const [topic, queues] of Object.entries(queuesOf)) for (let queue = 0; queue < queues; queue++) await checkQueue(client, topic, queue);
      // The restored cluster takes new messages after what it restored.
      const sent = await client.send(orders, [{ body: 'after the restore' }], { queue: 1 });
      const restoredEnd = (await readQueue(client, orders, 1)).length;
      assert.equal(sent.baseOffset, restoredEnd - 1);
    } finally {
      client.close();
    }
    for (const broker of target.brokers) await target.kill(broker.id, 'SIGTERM'); // its data stays for the bad-input test
    restoredBefore = target;
  });

  test('--topics keeps one topic: the other is gone, the kept one reads back', async () => {
    const target = await TestCluster.create({ groups: 2, name: 'mamba-restored-topics' });
    clusters.push(target);
    const restore = await mambamq(['restore', '--from', backupDir, '--cluster', target.file, '--topics', audit, '--json']);
    assert.equal(restore.code, 0, restore.stderr);
    const summary = JSON.parse(restore.stdout.trim()) as { topics: string[]; groups: Array<{ deletedTopics: string[] }> };
    assert.deepEqual(summary.topics, [audit]);
    assert.ok(summary.groups.every((g) => g.deletedTopics.join() === orders));
    const client = await startRestored(target);
    try {
      assert.deepEqual(
        (await client.listTopics()).map((t) => t.name),
        [audit],
      );
      await assert.rejects(client.describeTopic(orders), NotFoundError);
      for (let queue = 0; queue < queuesOf[audit]!; queue++) await checkQueue(client, audit, queue);
    } finally {
      client.close();
    }
    await target.stop();
  });

  test('bad input: each refused with an error naming the problem, nothing written', async () => {
    const target = await TestCluster.create({ groups: 2, name: 'mamba-restore-refused' });
    clusters.push(target);
    const data = join(target.dir, 'data');
    const before = listing(data);
    const refused = async (args: string[], expected: RegExp): Promise<void> => {
      const run = await mambamq(['restore', ...args]);
      assert.equal(run.code, 1, `exit code 1 (${run.stderr})`);
      assert.match(run.stderr, expected);
      assert.equal(run.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
    };

    const damaged = join(work, 'damaged');
    cpSync(backupDir, damaged, { recursive: true });
    const log = readFileSync(join(damaged, 'g2', 'log'));
    log[Math.floor(log.byteLength / 2)]! ^= 0x01;
    writeFileSync(join(damaged, 'g2', 'log'), log);
    await refused(['--from', damaged, '--cluster', target.file], /mambamq: backup file g2\/log fails its checksum/);
    assert.deepEqual(listing(data), before);

    const missing = join(work, 'missing');
    cpSync(backupDir, missing, { recursive: true });
    rmSync(join(missing, 'g1', 'snapshot'));
    await refused(['--from', missing, '--cluster', target.file], /mambamq: backup file g1\/snapshot is missing/);
    assert.deepEqual(listing(data), before);

    // The first restored cluster (stopped) holds data: no restore over it.
    const used = restoredBefore!;
    const usedBefore = listing(join(used.dir, 'data'));
    assert.ok(usedBefore.length > 0);
    await refused(['--from', backupDir, '--cluster', used.file], /mambamq: broker b1: its data directory .* holds data/);
    assert.deepEqual(listing(join(used.dir, 'data')), usedBefore);

    const three = await TestCluster.create({ groups: 3, name: 'mamba-restore-three' });
    clusters.push(three);
    const threeBefore = listing(join(three.dir, 'data')); // the launcher's format records only
    await refused(['--from', backupDir, '--cluster', three.file], /mambamq: the backup holds 2 groups \(g1, g2\) but .* has 3 \(g1, g2, g3\)/);
    assert.deepEqual(listing(join(three.dir, 'data')), threeBefore);

    await refused(['--from', backupDir, '--cluster', target.file, '--topics', 'nope'], /--topics: topic "nope" is not in the backup/);
    assert.deepEqual(listing(data), before);
  });
});
