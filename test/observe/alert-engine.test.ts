// The alert state machine on a fake clock (pending → firing → resolved, repeat, for-durations,
// growth), the rules file reader, and the webhook and SMTP notifiers against local servers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { AlertEngine, type Sample } from '../../src/observe/alerts/engine.js';
import { defaultRules, loadRules, parseRules, type AlertRule } from '../../src/observe/alerts/rules.js';
import { EmailNotifier, WebhookNotifier, notificationOf, type AlertNotification } from '../../src/observe/alerts/notifiers.js';
import { ConfigError } from '../../src/validation.js';
import { defaultAlertSettings } from '../../src/observe/settings.js';
import { BrokerMetrics } from '../../src/observe/metrics.js';
import { samplesOf } from '../../src/observe/alerts/evaluator.js';

function rule(fields: Partial<AlertRule> = {}): AlertRule {
  return {
    name: 'LagHigh',
    metric: 'lag_seconds',
    match: {},
    condition: '>',
    threshold: 10,
    windowMs: null,
    forMs: 3000,
    severity: 'critical',
    labels: { team: 'storage' },
    summary: 'lag',
    repeatIntervalMs: null,
    ...fields,
  };
}

function at(value: number | null, labels: Record<string, string> = { follower: 'b2' }, metric = 'lag_seconds'): Map<string, Sample[]> {
  return new Map(value === null ? [] : [[metric, [{ labels, value }]]]);
}

test('a condition must hold for the for-duration before the alert fires; a short blip only goes pending', () => {
  const engine = new AlertEngine([rule()], { repeatIntervalMs: 60_000 });
  assert.deepEqual(engine.evaluate(at(20), 0), []);
  assert.equal(engine.active()[0]!.state, 'pending');
  assert.deepEqual(engine.evaluate(at(5), 1000), [], 'pending and back to normal: no notification');
  assert.deepEqual(engine.active(), []);
  assert.deepEqual(engine.evaluate(at(20), 2000), []);
  assert.deepEqual(engine.evaluate(at(20), 4000), [], 'held 2 s of 3 s');
  const fired = engine.evaluate(at(21), 5000);
  assert.equal(fired.length, 1);
  assert.equal(fired[0]!.status, 'firing');
  assert.equal(fired[0]!.repeat, false);
  assert.equal(fired[0]!.value, 21);
  assert.equal(fired[0]!.activeSinceMs, 2000);
  assert.equal(fired[0]!.firedAtMs, 5000);
  assert.deepEqual(fired[0]!.labels, { follower: 'b2', team: 'storage' }, 'series labels plus rule labels');
  assert.deepEqual(engine.evaluate(at(25), 6000), [], 'still firing: no repeat before the interval');
  const resolved = engine.evaluate(at(1), 7000);
  assert.deepEqual(
    resolved.map((e) => [e.status, e.resolvedAtMs, e.value]),
    [['resolved', 7000, 25]],
  );
  assert.deepEqual(engine.active(), []);
});

test('a firing alert repeats every repeat interval (the rule may override it), and resolves when its series disappears', () => {
  const engine = new AlertEngine([rule({ forMs: 0 }), rule({ name: 'Fast', forMs: 0, repeatIntervalMs: 1000 })], { repeatIntervalMs: 10_000 });
  assert.deepEqual(
    engine.evaluate(at(20), 0).map((e) => [e.rule.name, e.status, e.repeat]),
    [
      ['LagHigh', 'firing', false],
      ['Fast', 'firing', false],
    ],
  );
  assert.deepEqual(
    engine.evaluate(at(20), 999).map((e) => e.rule.name),
    [],
  );
  assert.deepEqual(
    engine.evaluate(at(20), 1000).map((e) => [e.rule.name, e.repeat]),
    [['Fast', true]],
  );
  assert.deepEqual(
    engine.evaluate(at(20), 10_000).map((e) => [e.rule.name, e.repeat]),
    [
      ['LagHigh', true],
      ['Fast', true],
    ],
  );
  assert.deepEqual(
    engine.evaluate(at(null), 11_000).map((e) => [e.rule.name, e.status]),
    [
      ['LagHigh', 'resolved'],
      ['Fast', 'resolved'],
    ],
  );
});

test('each series is its own alert, and match filters series', () => {
  const engine = new AlertEngine([rule({ forMs: 0, match: { group: 'g1' } })], { repeatIntervalMs: 60_000 });
  const samples = new Map([
    [
      'lag_seconds',
      [
        { labels: { group: 'g1', follower: 'b2' }, value: 30 },
        { labels: { group: 'g1', follower: 'b3' }, value: 1 },
        { labels: { group: 'g2', follower: 'b5' }, value: 99 },
      ],
    ],
  ]);
  assert.deepEqual(
    engine.evaluate(samples, 0).map((e) => e.labels.follower),
    ['b2'],
  );
  samples.get('lag_seconds')![1]!.value = 40;
  assert.deepEqual(
    engine.evaluate(samples, 1).map((e) => e.labels.follower),
    ['b3'],
  );
  samples.get('lag_seconds')![0]!.value = 0;
  assert.deepEqual(
    engine.evaluate(samples, 2).map((e) => [e.labels.follower, e.status]),
    [['b2', 'resolved']],
  );
});

test('every comparison operator compares against the threshold', () => {
  const cases: Array<[AlertRule['condition'], number, boolean]> = [
    ['>', 10, false],
    ['>', 11, true],
    ['<', 9, true],
    ['<', 10, false],
    ['>=', 10, true],
    ['<=', 10, true],
    ['<=', 11, false],
    ['==', 10, true],
    ['==', 10.5, false],
  ];
  for (const [condition, value, fires] of cases) {
    const engine = new AlertEngine([rule({ condition, forMs: 0 })], { repeatIntervalMs: 60_000 });
    assert.equal(engine.evaluate(at(value), 0).length, fires ? 1 : 0, `${value} ${condition} 10`);
  }
  const nan = new AlertEngine([rule({ condition: '<', forMs: 0 })], { repeatIntervalMs: 60_000 });
  assert.equal(nan.evaluate(at(NaN), 0).length, 0, 'NaN never satisfies a condition');
});

test('increasing: fires when a series has not gone down for the for-duration and grew by more than the threshold', () => {
  const growing = rule({ name: 'BacklogGrowing', metric: 'backlog', condition: 'increasing', threshold: 5, forMs: 4000 });
  const engine = new AlertEngine([growing], { repeatIntervalMs: 60_000 });
  const b = (v: number): Map<string, Sample[]> => at(v, { consumer_group: 'c' }, 'backlog');
  assert.deepEqual(engine.evaluate(b(100), 0), [], 'first sight: nothing to compare with');
  assert.deepEqual(engine.evaluate(b(100), 1000), [], 'flat');
  assert.deepEqual(engine.evaluate(b(102), 2000), [], 'grew: pending from 100');
  assert.equal(engine.active()[0]!.state, 'pending');
  assert.deepEqual(engine.evaluate(b(102), 3000), [], 'flat keeps it pending');
  assert.deepEqual(engine.evaluate(b(101), 4000), [], 'went down: back to inactive');
  assert.deepEqual(engine.active(), []);
  assert.deepEqual(engine.evaluate(b(103), 5000), [], 'grew again: pending from 101');
  assert.deepEqual(engine.evaluate(b(104), 9000), [], 'held 4 s but grew only 3 (threshold 5)');
  const fired = engine.evaluate(b(107), 10_000);
  assert.deepEqual(
    fired.map((e) => [e.status, e.value, e.activeSinceMs]),
    [['firing', 107, 5000]],
  );
  assert.deepEqual(engine.evaluate(b(107), 11_000), [], 'flat keeps it firing');
  assert.deepEqual(
    engine.evaluate(b(50), 12_000).map((e) => e.status),
    ['resolved'],
    'consumers caught up',
  );
});

test('increase: fires while a counter grew over the window, resolves once it stood still for a window', () => {
  const refused = rule({ name: 'Refused', metric: 'refused_total', condition: 'increase', threshold: 0, windowMs: 10_000, forMs: 0 });
  const engine = new AlertEngine([refused], { repeatIntervalMs: 60_000 });
  const c = (v: number | null, type = 'fetch'): Map<string, Sample[]> => at(v, { type }, 'refused_total');
  assert.deepEqual(engine.evaluate(c(null), 0), [], 'no series yet');
  // A labelled counter appears when first incremented: its first sight counts from 0.
  assert.deepEqual(
    engine.evaluate(c(1), 1000).map((e) => [e.status, e.value]),
    [['firing', 1]],
  );
  assert.deepEqual(engine.evaluate(c(1), 5000), [], 'grew by 1 within the window: still firing');
  assert.deepEqual(engine.evaluate(c(3), 9000), []);
  assert.equal(engine.active()[0]!.value, 3);
  assert.deepEqual(engine.evaluate(c(3), 12_000), [], 'the 1 → 3 step is still inside the window');
  assert.deepEqual(
    engine.evaluate(c(3), 19_500).map((e) => [e.status, e.value]),
    [['resolved', 2]],
    'no growth over the last 10 s (a resolved alert carries its last value while active)',
  );
  assert.deepEqual(
    engine.evaluate(c(1), 20_000).map((e) => [e.status, e.value]),
    [['firing', 1]],
    'a counter that went down was reset (a restart): it counts from 0 again',
  );
});

test('increase: a series present at the first evaluation gives its baseline, not a growth from 0', () => {
  const refused = rule({ name: 'Refused', metric: 'refused_total', condition: 'increase', threshold: 2, windowMs: 60_000, forMs: 1000 });
  const engine = new AlertEngine([refused], { repeatIntervalMs: 60_000 });
  const c = (v: number): Map<string, Sample[]> => at(v, { type: 'vote' }, 'refused_total');
  assert.deepEqual(engine.evaluate(c(500), 0), [], 'counted before the engine started: not growth');
  assert.deepEqual(engine.evaluate(c(502), 1000), [], 'grew by 2: not above the threshold');
  assert.deepEqual(engine.evaluate(c(503), 2000), [], 'grew by 3: pending for the for-duration');
  assert.equal(engine.active()[0]!.state, 'pending');
  assert.deepEqual(
    engine.evaluate(c(503), 3000).map((e) => [e.status, e.value, e.activeSinceMs]),
    [['firing', 3, 2000]],
  );
});

test('increase: the history kept per series is bounded however often the engine evaluates', () => {
  const refused = rule({ name: 'Refused', metric: 'refused_total', condition: 'increase', threshold: 0, windowMs: 1000, forMs: 0 });
  const engine = new AlertEngine([refused], { repeatIntervalMs: 60_000 });
  for (let ms = 0; ms <= 100_000; ms += 1) engine.evaluate(at(ms, { type: 'fetch' }, 'refused_total'), ms);
  assert.equal(engine.active()[0]!.value, 1000, 'a counter growing by 1 per ms grew by 1000 over the 1 s window');
  const history = (engine as unknown as { counters: Map<string, { points: unknown[] }> }).counters;
  assert.ok([...history.values()][0]!.points.length <= 520, 'points kept: about one per window/512');
});

test('the engine bounds the alerts it tracks', () => {
  const engine = new AlertEngine([rule({ forMs: 1000 })], { repeatIntervalMs: 60_000, instancesMax: 2 });
  const samples = new Map([['lag_seconds', [1, 2, 3].map((i) => ({ labels: { follower: `b${i}` }, value: 50 }))]]);
  engine.evaluate(samples, 0);
  assert.equal(engine.active().length, 2);
  assert.equal(engine.dropped, 1);
});

test('the evaluation clock may not go back', () => {
  const engine = new AlertEngine([rule()], { repeatIntervalMs: 60_000 });
  engine.evaluate(at(1), 1000);
  assert.throws(() => engine.evaluate(at(1), 999), /went back/);
});

test('rules files: durations, defaults, and errors that name the key', () => {
  const rules = parseRules(
    [
      'rules:',
      '  - { name: Lag, metric: mamba_replication_lag_seconds, condition: ">", threshold: 1, for: 1s, severity: critical, labels: { page: "yes" } }',
      '  - { name: Growing, metric: mamba_consumer_backlog_messages, condition: increasing, for: 5m, repeatInterval: 1h, match: { topic: orders } }',
      '  - { name: Refused, metric: mamba_raft_messages_refused_total, condition: increase, window: 10m }',
    ].join('\n'),
    'rules.yaml',
  );
  assert.deepEqual(
    rules.map((r) => [r.name, r.condition, r.threshold, r.windowMs, r.forMs, r.severity, r.repeatIntervalMs]),
    [
      ['Lag', '>', 1, null, 1000, 'critical', null],
      ['Growing', 'increasing', 0, null, 300_000, 'warning', 3_600_000],
      ['Refused', 'increase', 0, 600_000, 0, 'warning', null],
    ],
  );
  assert.deepEqual(rules[0]!.labels, { page: 'yes' });
  assert.deepEqual(rules[1]!.match, { topic: 'orders' });
  const bad: Array<[string, RegExp]> = [
    ['rules: [{ name: A, metric: m, condition: "!=", threshold: 1 }]', /rules\[0\]\.condition: must be one of/],
    ['rules: [{ name: A, metric: m, condition: ">" }]', /rules\[0\]\.threshold: must be a number/],
    ['rules: [{ name: A, metric: m, condition: ">", threshold: 1, for: 5 minutes }]', /rules\[0\]\.for: "5 minutes" is not a duration/],
    ['rules: [{ name: A, metric: "bad-name", condition: ">", threshold: 1 }]', /rules\[0\]\.metric/],
    ['rules: [{ name: A, metric: m, condition: ">", threshold: 1, severity: loud }]', /rules\[0\]\.severity/],
    ['rules: [{ name: A, metric: m, condition: ">", threshold: 1, treshold: 2 }]', /rules\[0\]\.treshold: unknown key/],
    ['rules: [{ name: A, metric: m, condition: increase }]', /rules\[0\]\.window: is required with condition increase/],
    ['rules: [{ name: A, metric: m, condition: increase, window: 0s }]', /rules\[0\]\.window: must be longer than 0/],
    ['rules: [{ name: A, metric: m, condition: ">", threshold: 1, window: 5m }]', /rules\[0\]\.window: is only for condition increase, not >/],
    [
      'rules: [{ name: A, metric: m, condition: ">", threshold: 1 }, { name: A, metric: n, condition: ">", threshold: 1 }]',
      /rules\[1\]\.name: rule name "A" is used twice/,
    ],
  ];
  for (const [text, message] of bad)
    assert.throws(
      () => parseRules(text, 'rules.yaml'),
      (e: Error) => e instanceof ConfigError && message.test(e.message) && e.message.startsWith('rules.yaml: '),
      text,
    );
});

test('the default rules cover lag, leaderless groups, disk, backlog growth, committed data divergence, recovery, refused peer messages and memory', () => {
  const rules = defaultRules(1234 * 1024 * 1024);
  const byName = new Map(rules.map((r) => [r.name, r]));
  assert.deepEqual(
    [...byName.keys()],
    [
      'ReplicationLagHigh',
      'GroupWithoutLeader',
      'DiskUsageHigh',
      'ConsumerBacklogGrowing',
      'CommittedDataDivergence',
      'ReplicaRecovering',
      'PeerMessagesRefused',
      'MemoryOverLimit',
    ],
  );
  assert.deepEqual(
    [byName.get('PeerMessagesRefused')!.metric, byName.get('PeerMessagesRefused')!.condition, byName.get('PeerMessagesRefused')!.windowMs],
    ['mamba_raft_messages_refused_total', 'increase', 600_000],
  );
  assert.deepEqual(
    [byName.get('CommittedDataDivergence')!.metric, byName.get('CommittedDataDivergence')!.severity],
    ['mamba_replica_committed_data_divergence', 'critical'],
  );
  assert.deepEqual([byName.get('ReplicationLagHigh')!.metric, byName.get('ReplicationLagHigh')!.threshold], ['mamba_replication_lag_seconds', 30]);
  assert.deepEqual([byName.get('GroupWithoutLeader')!.condition, byName.get('GroupWithoutLeader')!.forMs], ['==', 5000]);
  assert.equal(byName.get('DiskUsageHigh')!.threshold, 0.85);
  assert.deepEqual([byName.get('ConsumerBacklogGrowing')!.condition, byName.get('ConsumerBacklogGrowing')!.forMs], ['increasing', 300_000]);
  assert.equal(byName.get('MemoryOverLimit')!.threshold, 1234 * 1024 * 1024);
});

test("the default rules on a broker's own registry: the first refused peer message fires PeerMessagesRefused, ten still minutes resolve it", async () => {
  const metrics = new BrokerMetrics({ broker: 'b1', group: 'g1' });
  const engine = new AlertEngine(defaultRules(defaultAlertSettings.memoryBytesMax), { repeatIntervalMs: 3_600_000 });
  const refusals = async (nowMs: number): Promise<Array<[string, number, string | undefined]>> =>
    engine
      .evaluate(await samplesOf(metrics.registry), nowMs)
      .filter((e) => e.rule.name === 'PeerMessagesRefused')
      .map((e) => [e.status, e.value, e.labels.type]);
  assert.deepEqual(await refusals(0), [], 'no refusal yet: no series');
  metrics.messageRefused('FetchResponse');
  assert.deepEqual(await refusals(5000), [['firing', 1, 'FetchResponse']]);
  metrics.messageRefused('FetchResponse');
  assert.deepEqual(await refusals(60_000), [], 'still firing, not repeated within the repeat interval');
  assert.deepEqual(await refusals(60_000 + 600_000), [['resolved', 2, 'FetchResponse']]);
});

test('cluster/alert-rules.yaml holds exactly the default rules', () => {
  const file = fileURLToPath(new URL('../../../cluster/alert-rules.yaml', import.meta.url));
  assert.deepEqual(loadRules(file), defaultRules(defaultAlertSettings.memoryBytesMax));
});

function sampleNotification(): AlertNotification {
  const [event] = new AlertEngine([rule({ forMs: 0 })], { repeatIntervalMs: 60_000 }).evaluate(at(42), Date.parse('2026-01-02T03:04:05Z'));
  return notificationOf(event!, { broker: 'b1', group: 'g1' });
}

test('the webhook notifier POSTs the notification as JSON and fails on a non-2xx answer', async () => {
  const bodies: unknown[] = [];
  let status = 200;
  const server = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      bodies.push({ method: request.method, type: request.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString()) });
      response.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const notifier = new WebhookNotifier(url, 2000);
    await notifier.notify(sampleNotification());
    assert.deepEqual(bodies[0], {
      method: 'POST',
      type: 'application/json',
      body: {
        status: 'firing',
        repeat: false,
        alert: 'LagHigh',
        severity: 'critical',
        summary: 'lag',
        metric: 'lag_seconds',
        condition: '>',
        threshold: 10,
        value: 42,
        labels: { follower: 'b2', team: 'storage' },
        broker: 'b1',
        group: 'g1',
        activeSince: '2026-01-02T03:04:05.000Z',
        firedAt: '2026-01-02T03:04:05.000Z',
        resolvedAt: null,
      },
    });
    status = 500;
    await assert.rejects(notifier.notify(sampleNotification()), /HTTP 500/);
    assert.throws(() => new WebhookNotifier('ftp://x/', 1000), /not http/);
  } finally {
    server.close();
  }
});

/** A minimal SMTP server that accepts one conversation and records the envelope and message. */
function fakeSmtp(): Promise<{ port: number; mails: Array<{ from: string; to: string[]; data: string }>; close(): void }> {
  const mails: Array<{ from: string; to: string[]; data: string }> = [];
  const server = createTcpServer((socket) => {
    let buffered = '';
    let inData = false;
    let mail = { from: '', to: [] as string[], data: '' };
    socket.write('220 localhost ESMTP test\r\n');
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (let guard = 0; guard < 10_000; guard++) {
        const end = buffered.indexOf('\r\n');
        if (end < 0) return;
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            mails.push(mail);
            mail = { from: '', to: [], data: '' };
            socket.write('250 queued\r\n');
          } else mail.data += `${line.startsWith('..') ? line.slice(1) : line}\n`;
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') socket.write('250-localhost\r\n250 8BITMIME\r\n');
        else if (verb === 'MAIL') {
          mail.from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          socket.write('250 ok\r\n');
        } else if (verb === 'RCPT') {
          mail.to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          socket.write('250 ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 bye\r\n');
        } else socket.write('250 ok\r\n');
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as AddressInfo).port, mails, close: () => server.close() })),
  );
}

test('the e-mail notifier sends the alert over SMTP to every recipient', async () => {
  const smtp = await fakeSmtp();
  const notifier = new EmailNotifier({
    host: '127.0.0.1',
    port: smtp.port,
    secure: false,
    user: '',
    password: '',
    from: 'mamba@example.org',
    to: ['ops@example.org', 'oncall@example.org'],
    timeoutMs: 5000,
  });
  try {
    await notifier.notify(sampleNotification());
    assert.equal(smtp.mails.length, 1);
    const mail = smtp.mails[0]!;
    assert.equal(mail.from, 'mamba@example.org');
    assert.deepEqual(mail.to, ['ops@example.org', 'oncall@example.org']);
    assert.match(mail.data, /^Subject: \[FIRING\] LagHigh \(critical\) on broker b1, group g1$/m);
    assert.match(mail.data, /^condition: lag_seconds > 10$/m);
    assert.match(mail.data, /^value: 42$/m);
  } finally {
    notifier.close();
    smtp.close();
  }
});
