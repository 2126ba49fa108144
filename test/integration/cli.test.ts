// The built `mambamq` binary: output formats and exit codes (0 success, 1 run-time failure,
// 2 usage error), against a real three-broker cluster where a cluster is needed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, freePort } from './cluster-harness.js';
import { cli, type CliRun } from './workload.js';

const run = (args: string[], input?: string, timeoutMs = 30_000): Promise<CliRun> => cli(args, { input, timeoutMs });

describe('mambamq without a cluster', () => {
  test('--help at every level exits 0 and names the commands', async () => {
    const top = await run(['--help']);
    assert.equal(top.code, 0);
    for (const command of ['broker', 'cluster', 'status', 'topic', 'produce', 'consume', 'bench']) assert.match(top.stdout, new RegExp(`\\n  ${command}\\b`));
    const topic = await run(['topic', '--help']);
    assert.equal(topic.code, 0);
    assert.match(topic.stdout, /create \[options\] <name>/);
    const produce = await run(['produce', '--help']);
    assert.equal(produce.code, 0);
    assert.match(produce.stdout, /--ack <level>/);
  });

  test('usage errors exit 2 with a message', async () => {
    const unknownFlag = await run(['status', '--frobnicate']);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /unknown option '--frobnicate'/);
    const missingArgument = await run(['topic', 'create']);
    assert.equal(missingArgument.code, 2);
    assert.match(missingArgument.stderr, /missing required argument 'name'/);
    const missingOption = await run(['produce', 'hello']);
    assert.equal(missingOption.code, 2);
    assert.match(missingOption.stderr, /required option '--topic <name>' not specified/);
    const badNumber = await run(['topic', 'create', 't', '--queues', 'many']);
    assert.equal(badNumber.code, 2);
    assert.match(badNumber.stderr, /--queues must be a non-negative integer, got "many"/);
    const unknownCommand = await run(['frobnicate']);
    assert.equal(unknownCommand.code, 2);
  });

  test('an unreachable cluster is one line naming the addresses tried, exit 1, no stack trace', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const result = await run(['--brokers', `127.0.0.1:${a},127.0.0.1:${b}`, 'status']);
    assert.equal(result.code, 1);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, new RegExp(`^mambamq: cannot reach the cluster \\(tried 127\\.0\\.0\\.1:${a}, 127\\.0\\.0\\.1:${b}\\)`));
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });
});

describe('mambamq against a cluster', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  let brokers: string;
  before(async () => {
    cluster = await TestCluster.start();
    brokers = cluster.brokers.map((b) => b.clientAddress).join(',');
  });
  after(async () => cluster?.stop());

  test('status --json prints the documented shape with every replica and its lag', async () => {
    const result = await run(['--brokers', brokers, 'status', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as { groups: Array<Record<string, unknown>> };
    assert.equal(status.groups.length, 1);
    const group = status.groups[0]!;
    assert.deepEqual(Object.keys(group), ['id', 'leader', 'epoch', 'highWatermark', 'replicas', 'advice']);
    assert.equal(group.id, 'g1');
    const replicas = group.replicas as Array<Record<string, unknown>>;
    assert.deepEqual(replicas.map((r) => r.id).sort(), ['b1', 'b2', 'b3']);
    for (const r of replicas) assert.deepEqual(Object.keys(r), ['id', 'role', 'endOffset', 'lagOffsets', 'lagMs', 'lastFetchAgeMs']);
    assert.deepEqual(Object.keys(group.advice as object), ['replica', 'reason']);
    const text = await run(['--brokers', brokers, 'status']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /group g1 {2}leader b\d {2}epoch \d+ {2}high watermark \d+/);
    assert.match(text.stdout, /read advice: b\d \(/);
  });

  test('topic create, list and describe; produce from arguments and stdin; consume them back', async () => {
    const created = await run(['--brokers', brokers, 'topic', 'create', 'cli-topic', '--queues', '2']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created topic cli-topic with 2 queues/);
    const listed = await run(['--brokers', brokers, '--json', 'topic', 'list']);
    assert.deepEqual(
      (JSON.parse(listed.stdout).topics as Array<{ name: string }>).map((t) => t.name),
      ['cli-topic'],
    );
    const produced = await run(['--brokers', brokers, 'produce', '--topic', 'cli-topic', '--queue', '1', 'one', 'two']);
    assert.equal(produced.code, 0, produced.stderr);
    assert.equal(produced.stdout, 'queue 1 offset 0\nqueue 1 offset 1\n');
    const fromStdin = await run(['--brokers', brokers, '--json', 'produce', '--topic', 'cli-topic', '--queue', '1'], 'three\nfour\n');
    assert.deepEqual(JSON.parse(fromStdin.stdout), {
      topic: 'cli-topic',
      sent: [
        { queue: 1, offset: 2 },
        { queue: 1, offset: 3 },
      ],
    });
    const consumed = await run(['--brokers', brokers, 'consume', '--topic', 'cli-topic', '--queue', '1']);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.equal(consumed.stdout, '0\tone\n1\ttwo\n2\tthree\n3\tfour\n');
    const described = await run(['--brokers', brokers, '--json', 'topic', 'describe', 'cli-topic']);
    const queues = JSON.parse(described.stdout).queues as Array<{ queue: number; highWatermark: number }>;
    assert.deepEqual(
      queues.map((q) => [q.queue, q.highWatermark]),
      [
        [0, 0],
        [1, 4],
      ],
    );
    const missing = await run(['--brokers', brokers, 'consume', '--topic', 'no-such-topic']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^mambamq: topic "no-such-topic" does not exist\n$/);
  });

  test('cluster status reads the brokers from a cluster file', async () => {
    const result = await run(['--cluster', cluster.file, '--json', 'cluster', 'status']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout).groups as unknown[]).length, 1);
  });

  test('bench reports rates and latency as JSON', async () => {
    const result = await run(['--brokers', brokers, '--json', 'bench', '--topic', 'cli-bench', '--messages', '2000', '--size', '128']);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as Record<string, number>;
    assert.equal(report.messages, 2000);
    assert.equal(report.failed, 0);
    assert.ok(report.msgsPerS! > 0 && report.p99Ms! >= report.p50Ms!);
  });
});
