// The tracing and alerts settings keys of a cluster file: defaults (tracing off, alerts on with
// the log only), per-broker overrides, and errors that name the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseClusterConfig } from '../../src/config/cluster.js';
import { ConfigError } from '../../src/validation.js';

function cluster(settings: string, brokerSettings = ''): ReturnType<typeof parseClusterConfig> {
  return parseClusterConfig(
    [
      'cluster: c',
      'dataDir: /tmp/unused',
      ...(settings ? ['settings:', settings] : []),
      'groups:',
      '  - id: g1',
      '    brokers:',
      `      - { id: b1, host: 127.0.0.1, clientPort: 1, peerPort: 2, metricsPort: 3${brokerSettings ? `, settings: ${brokerSettings}` : ''} }`,
    ].join('\n'),
    'c.yaml',
    '/tmp',
  );
}

test('defaults: tracing off, alerts evaluated with the default rules and only the log notified', () => {
  const s = cluster('').groups[0]!.brokers[0]!.settings;
  assert.deepEqual(s.tracing, { otlpEndpoint: '', samplingRatio: 1 });
  assert.equal(s.alerts.enabled, true);
  assert.equal(s.alerts.rulesFile, '');
  assert.equal(s.alerts.webhookUrl, '');
  assert.equal(s.alerts.smtp.host, '');
});

test('settings are read and a broker may override them', () => {
  const c = cluster(
    '  tracing: { otlpEndpoint: "http://127.0.0.1:4318/v1/traces", samplingRatio: 0.25 }\n  alerts: { evaluationIntervalMs: 1000, webhookUrl: "http://127.0.0.1:9/hook", smtp: { host: mail, from: a@b.c, to: [x@y.z], passwordEnv: SMTP_PASSWORD } }',
    '{ alerts: { enabled: false } }',
  );
  const s = c.groups[0]!.brokers[0]!.settings;
  assert.deepEqual(s.tracing, { otlpEndpoint: 'http://127.0.0.1:4318/v1/traces', samplingRatio: 0.25 });
  assert.equal(s.alerts.enabled, false, 'the broker override');
  assert.equal(s.alerts.evaluationIntervalMs, 1000, 'kept from the cluster settings');
  assert.deepEqual([s.alerts.smtp.host, s.alerts.smtp.port, s.alerts.smtp.to, s.alerts.smtp.passwordEnv], ['mail', 587, ['x@y.z'], 'SMTP_PASSWORD']);
});

test('bad values are refused with the key named', () => {
  const bad: Array<[string, RegExp]> = [
    ['  tracing: { samplingRatio: 2 }', /settings\.tracing\.samplingRatio: 2 is out of range/],
    ['  tracing: { otlpEndpoint: "grpc://x:4317" }', /settings\.tracing\.otlpEndpoint: .* not an http\(s\) URL/],
    ['  tracing: { endpoint: "http://x" }', /settings\.tracing\.endpoint: unknown key/],
    ['  alerts: { evaluationIntervalMs: 5 }', /settings\.alerts\.evaluationIntervalMs: 5 is out of range/],
    ['  alerts: { webhookUrl: "not a url" }', /settings\.alerts\.webhookUrl: "not a url" is not a URL/],
    ['  alerts: { smtp: { host: mail } }', /settings\.alerts\.smtp: an SMTP host needs `from`/],
    ['  alerts: { smtp: { password: hunter2 } }', /settings\.alerts\.smtp\.password: unknown key/],
    ['  alerts: { smtp: { host: mail, from: a@b.c, to: [nobody] } }', /settings\.alerts\.smtp\.to\[0\]/],
  ];
  for (const [text, message] of bad)
    assert.throws(
      () => cluster(text),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
      text,
    );
});
