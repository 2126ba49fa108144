// Metrics on a live broker: /metrics from a real broker process parses as strict Prometheus text
// (DESIGN §7), carries every metric family the design lists, and the produced and consumed
// counters move by exactly what a test produced and read.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { loadClusterConfig } from '../../src/config/cluster.js';
import { TestCluster } from '../integration/cluster-harness.js';
import { parsePromText, sampleValue, PromSyntaxError, type PromFamily } from './prom-text.js';

let cluster: TestCluster;
let metricsUrl: Map<string, string>;

before(async () => {
  cluster = await TestCluster.start();
  const config = loadClusterConfig(cluster.file);
  metricsUrl = new Map(config.groups.flatMap((g) => g.brokers.map((b) => [b.id, `http://${b.host}:${b.metricsPort}/metrics`] as const)));
});

after(async () => {
  await cluster?.stop();
});

async function scrape(brokerId: string): Promise<{ text: string; families: Map<string, PromFamily> }> {
  const response = await fetch(metricsUrl.get(brokerId)!, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  return { text, families: parsePromText(text) };
}

test('the parser is strict: it rejects what promtool rejects', () => {
  const good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
  assert.equal(sampleValue(parsePromText(good), 'a_total', { x: '1' }), 2);
  const bad = [
    'a_total 1', // no final newline
    '# TYPE a counter\n# TYPE a counter\na 1\n',
    '# TYPE a countr\na 1\n',
    'a{x="1} 1\n',
    'a{x="1",x="2"} 1\n',
    'a{1x="1"} 1\n',
    'a{x="\\q"} 1\n',
    'a 1.2.3\n',
    '9a 1\n',
    'a 1\na 2\n',
    'a 1\nb 1\na{x="y"} 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 0\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_count 2\nh_sum 0\n',
  ];
  for (const text of bad) assert.throws(() => parsePromText(text), PromSyntaxError, text);
});

test('a live broker serves strict Prometheus text with every metric the design names, labelled by broker and group', async () => {
  const view = await cluster.waitForLeader('g1', 10_000);
  const leader = view.leaderId;
  const topic = `metrics-${randomBytes(4).toString('hex')}`;
  await cluster.client(leader).call('CreateTopic', { name: topic, queues: 1 });
  const { families, text } = await scrape(leader);
  const required = [
    'mamba_produced_messages_total',
    'mamba_produced_bytes_total',
    'mamba_consumed_messages_total',
    'mamba_consumed_bytes_total',
    'mamba_network_received_bytes_total',
    'mamba_network_sent_bytes_total',
    'mamba_log_append_seconds',
    'mamba_commit_latency_seconds',
    'mamba_end_to_end_delay_seconds',
    'mamba_replication_lag_offsets',
    'mamba_replication_lag_seconds',
    'mamba_high_watermark',
    'mamba_leader_epoch',
    'mamba_leader_changes_total',
    'mamba_elections_total',
    'mamba_consumer_backlog_messages',
    'mamba_consumer_group_lag_messages',
    'mamba_log_segments',
    'mamba_log_size_bytes',
    'mamba_disk_free_bytes',
    'mamba_disk_used_ratio',
    'mamba_process_cpu_seconds_total',
    'mamba_process_resident_memory_bytes',
    'mamba_grpc_requests_total',
    'mamba_group_leader_known',
    'mamba_memory_limit_bytes',
  ];
  for (const name of required) {
    const family = families.get(name);
    assert.ok(family, `${name} is missing`);
    assert.ok(family.help && family.help.length > 0, `${name} has no HELP`);
    assert.notEqual(family.type, 'untyped', `${name} has no TYPE`);
    if (family.type === 'counter') assert.match(name, /_total$/, `counter ${name} does not end in _total`);
  }
  assert.equal(families.get('mamba_log_append_seconds')!.type, 'histogram');
  assert.equal(families.get('mamba_commit_latency_seconds')!.type, 'histogram');
  // Every mamba_ sample carries the broker and group labels.
  for (const family of families.values())
    for (const s of family.samples) assert.deepEqual([s.labels.broker, s.labels.group], [leader, 'g1'], `${s.name} labels`);
  assert.equal(sampleValue(families, 'mamba_group_leader_known'), 1);
  assert.ok(sampleValue(families, 'mamba_leader_epoch')! >= 1);
  assert.ok(sampleValue(families, 'mamba_disk_free_bytes')! > 0);
  const followers = view.replicas.filter((r) => r.id !== leader).map((r) => r.id);
  for (const f of followers) assert.notEqual(sampleValue(families, 'mamba_replication_lag_offsets', { follower: f }), undefined, `no lag series for ${f}`);
  assert.ok(sampleValue(families, 'mamba_grpc_requests_total', { api: 'client', method: 'CreateTopic', code: 'OK' })! >= 1, text.slice(0, 0));
  // Followers fetch on one long-lived FetchStream each: its requests are counted as they arrive.
  assert.ok(sampleValue(families, 'mamba_grpc_stream_messages_received_total', { api: 'peer', method: 'FetchStream' })! >= 2);
});

test('produced and consumed counters, commit latency and backlog move with the traffic', async () => {
  const view = await cluster.waitForLeader('g1', 10_000);
  const leader = view.leaderId;
  const client = cluster.client(leader);
  const topic = `traffic-${randomBytes(4).toString('hex')}`;
  await client.call('CreateTopic', { name: topic, queues: 1 });
  const before = (await scrape(leader)).families;
  const commitsBefore = sampleValue(before, 'mamba_commit_latency_seconds_count') ?? 0;
  const bodies = Array.from({ length: 25 }, (_, i) => Buffer.from(`message ${i} ${'x'.repeat(100)}`));
  for (let i = 0; i < 5; i++) await client.produce(topic, 0, bodies.slice(i * 5, i * 5 + 5));
  const read = await client.consume(topic, 0, 0, 100);
  assert.equal(read.records.length, 25);
  await client.call('CommitOffset', { consumerGroup: 'readers', topic, queue: 0, offset: 10 });
  const afterwards = (await scrape(leader)).families;
  assert.equal(sampleValue(before, 'mamba_produced_messages_total', { topic }) ?? 0, 0);
  assert.equal(sampleValue(afterwards, 'mamba_produced_messages_total', { topic }), 25);
  assert.ok(sampleValue(afterwards, 'mamba_produced_bytes_total', { topic })! > 25 * 100);
  assert.equal(sampleValue(afterwards, 'mamba_consumed_messages_total', { topic }), 25);
  assert.equal(
    sampleValue(afterwards, 'mamba_consumed_bytes_total', { topic }),
    bodies.reduce((n, b) => n + b.byteLength, 0),
  );
  assert.equal(sampleValue(afterwards, 'mamba_end_to_end_delay_seconds_count', { topic }), 25);
  assert.ok(sampleValue(afterwards, 'mamba_commit_latency_seconds_count')! >= commitsBefore + 5);
  assert.equal(sampleValue(afterwards, 'mamba_consumer_backlog_messages', { consumer_group: 'readers', topic, queue: '0' }), 15);
  assert.equal(sampleValue(afterwards, 'mamba_consumer_group_lag_messages', { consumer_group: 'readers', topic, queue: '0' }), 15);
  assert.ok(
    sampleValue(afterwards, 'mamba_network_received_bytes_total', { api: 'client' })! >
      sampleValue(before, 'mamba_network_received_bytes_total', { api: 'client' })! + 25 * 100,
  );
  assert.ok(sampleValue(afterwards, 'mamba_high_watermark')! > sampleValue(before, 'mamba_high_watermark')!);
  // A follower appended the same entries: its append histogram counted them.
  const follower = view.replicas.find((r) => r.id !== leader)!.id;
  const followerFamilies = (await scrape(follower)).families;
  assert.ok(sampleValue(followerFamilies, 'mamba_log_append_seconds_count')! >= 1);
  assert.equal(sampleValue(followerFamilies, 'mamba_produced_messages_total', { topic }) ?? 0, 0, 'followers do not count produce');
});

const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;

test('promtool check metrics accepts the exposition (syntax and naming lint)', { skip: promtool ? false : 'promtool is not installed' }, async () => {
  const { text } = await scrape((await cluster.waitForLeader('g1', 10_000)).leaderId);
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 10_000 });
  assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
});

test('a path other than /metrics, /healthz and /readyz is not found', async () => {
  const response = await fetch(metricsUrl.get('b1')!.replace('/metrics', '/other'), { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 404);
  await response.text();
});
