// Alerting on real brokers: a paused follower builds replication lag on the leader, whose alert
// engine (rules file: lag over 1 s for 1 s) notifies a local webhook `firing`, naming the
// follower; after SIGCONT the follower catches up and the webhook receives `resolved`.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { TestCluster, waitFor, assertHoldsFor } from '../integration/cluster-harness.js';
import type { AlertNotification } from '../../src/observe/alerts/notifiers.js';

let cluster: TestCluster;
let server: Server;
let rulesDir: string;
const received: AlertNotification[] = [];

before(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString()) as AlertNotification);
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  rulesDir = mkdtempSync(join(tmpdir(), 'mamba-rules-'));
  const rulesFile = join(rulesDir, 'rules.yaml');
  writeFileSync(
    rulesFile,
    [
      'rules:',
      '  - name: ReplicationLagHigh',
      '    metric: mamba_replication_lag_seconds',
      '    condition: ">"',
      '    threshold: 1',
      '    for: 1s',
      '    severity: critical',
      '    labels: { team: storage }',
      '    summary: A follower is over 1 s behind',
    ].join('\n'),
  );
  const webhookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`;
  cluster = await TestCluster.start({ settings: { alerts: { rulesFile, webhookUrl, evaluationIntervalMs: 200 } } });
});

after(async () => {
  await cluster?.stop();
  server?.close();
  if (rulesDir) rmSync(rulesDir, { recursive: true, force: true });
});

test('a paused follower fires the lag alert on the leader, and resolves it once resumed', async () => {
  const view = await cluster.waitForLeader('g1', 10_000);
  const leader = view.leaderId;
  const follower = view.replicas.find((r) => r.id !== leader)!.id;
  const client = cluster.client(leader);
  const topic = `alerts-${randomBytes(4).toString('hex')}`;
  await client.call('CreateTopic', { name: topic, queues: 1 });
  assert.equal(received.length, 0, 'a healthy group raises no alert');

  cluster.signal(follower, 'SIGSTOP');
  try {
    // Keep the high watermark moving (the other follower makes the quorum) so the paused one falls behind.
    const firing = await waitFor(
      'the firing notification',
      15_000,
      async () => {
        await client.produce(topic, 0, [Buffer.from('tick')]);
        // The paused follower's alert (on a loaded machine the other may lag past 1 s for a moment too).
        return received.find((n) => n.status === 'firing' && n.labels.follower === follower);
      },
      100,
    );
    assert.equal(firing.alert, 'ReplicationLagHigh');
    assert.equal(firing.severity, 'critical');
    assert.equal(firing.broker, leader);
    assert.equal(firing.group, 'g1');
    assert.equal(firing.labels.follower, follower);
    assert.equal(firing.labels.team, 'storage');
    assert.ok(firing.value > 1, `value ${firing.value}`);
    assert.equal(firing.resolvedAt, null);
    assert.ok(Date.parse(firing.firedAt) - Date.parse(firing.activeSince) >= 1000, 'fired only after holding for 1 s');
  } finally {
    cluster.signal(follower, 'SIGCONT');
  }
  const resolved = await waitFor(
    'the resolved notification',
    15_000,
    () => received.find((n) => n.status === 'resolved' && n.labels.follower === follower),
    100,
  );
  assert.equal(resolved.alert, 'ReplicationLagHigh');
  assert.equal(resolved.labels.follower, follower);
  assert.ok(resolved.resolvedAt !== null && Date.parse(resolved.resolvedAt) >= Date.parse(resolved.firedAt));
  const forFollower = (): string[] => received.filter((n) => n.labels.follower === follower).map((n) => n.status);
  await assertHoldsFor('one firing, one resolution, no repeat within the repeat interval', 500, () => forFollower().length === 2);
  assert.deepEqual(forFollower(), ['firing', 'resolved']);
});
