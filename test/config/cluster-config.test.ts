// Cluster files: every refusal names the file and the key; bounds come from the layer that owns
// them (the segment log's segment and flush bounds), so a file the loader accepts is one the
// broker can run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadClusterConfig, parseClusterConfig } from '../../src/config/cluster.js';
import { flushIntervalMsMax, segmentBytesMax } from '../../src/log/options.js';
import { ConfigError } from '../../src/validation.js';

const brokers = (ports: number[][]): string =>
  ports.map(([c, p, m], i) => `      - { id: b${i + 1}, host: 127.0.0.1, clientPort: ${c}, peerPort: ${p}, metricsPort: ${m} }`).join('\n');
const file = (
  settings: string,
  ports = [
    [7001, 7101, 7201],
    [7002, 7102, 7202],
    [7003, 7103, 7203],
  ],
): string => `cluster: c1\nsettings:\n${settings}\ngroups:\n  - id: g1\n    brokers:\n${brokers(ports)}\n`;
const parse = (text: string) => parseClusterConfig(text, 'cluster.yaml', '/');

test('a well-formed file gives three brokers with defaults and overrides', () => {
  const config = parse(file('  flush: { mode: sync }\n  segmentBytes: 16777216'));
  assert.equal(config.groups[0]!.brokers.length, 3);
  assert.deepEqual(config.groups[0]!.brokers[0]!.settings.flush, { mode: 'sync' });
  assert.equal(config.groups[0]!.brokers[2]!.settings.segmentBytes, 16777216);
});

test('refusals name the source, the key path and what fits', () => {
  const rows: Array<[string, RegExp]> = [
    ['cluster: [', /^cluster\.yaml: not valid YAML or JSON/],
    [file('  segmentBytes: 4294967296'), new RegExp(`^cluster\\.yaml: settings\\.segmentBytes: 4294967296 is out of range \\[65536, ${segmentBytesMax}\\]`)],
    [
      file(`  flush: { mode: async, intervalMs: ${flushIntervalMsMax + 1} }`),
      /^cluster\.yaml: settings\.flush\.intervalMs: \d+ is out of range \[1, 3600000\]/,
    ],
    [file('  flush: { mode: sync, intervalMs: 5 }'), /settings\.flush\.intervalMs: only applies to mode async/],
    [file('  fetchBytesMaxx: 1'), /settings\.fetchBytesMaxx: unknown key/],
    [file('  fetchMaxWaitMs: 100'), /settings\.fetchMaxWaitMs: was renamed to fetchWaitMsMax/],
    [
      file('  tickMs: 1', [
        [7001, 7101, 7201],
        [7001, 7102, 7202],
        [7003, 7103, 7203],
      ]),
      /groups\[0\]\.brokers\[1\]\.clientPort: 127\.0\.0\.1:7001 is already taken by b1\.clientPort/,
    ],
  ];
  for (const [text, message] of rows) {
    assert.throws(
      () => parse(text),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
      `${text} → ${message}`,
    );
  }
});

test('brokers on different hosts may listen on the same ports; one host:port twice is refused', () => {
  const onHosts = (hosts: string[]): string =>
    `cluster: c1\ngroups:\n  - id: g1\n    brokers:\n${hosts.map((host, i) => `      - { id: b${i + 1}, host: ${host}, clientPort: 7101, peerPort: 7201, metricsPort: 7301 }`).join('\n')}\n`;
  const config = parse(onHosts(['10.0.0.1', 'mamba-b2', 'broker-3.mamba.example']));
  assert.deepEqual(
    config.groups[0]!.brokers.map((b) => `${b.host}:${b.clientPort}`),
    ['10.0.0.1:7101', 'mamba-b2:7101', 'broker-3.mamba.example:7101'],
  );
  assert.throws(
    () => parse(onHosts(['10.0.0.1', '10.0.0.2', '10.0.0.1'])),
    /groups\[0\]\.brokers\[2\]\.clientPort: 10\.0\.0\.1:7101 is already taken by b1\.clientPort/,
  );
});

test('a host that clients could not dial as host:port is refused, naming the key', () => {
  for (const host of ['10.0.0.1:7101', '"::1"', '"[::1]"', '"broker one"', '-broker', 'mamba_b2', 'a..b']) {
    const text = `cluster: c1\ngroups:\n  - id: g1\n    brokers:\n      - { id: b1, host: ${host}, clientPort: 7101, peerPort: 7201, metricsPort: 7301 }\n`;
    assert.throws(
      () => parse(text),
      (e: Error) =>
        e instanceof ConfigError &&
        /^cluster\.yaml: groups\[0\]\.brokers\[0\]\.host: ".*" is (neither an IPv4 address nor a DNS name|an IPv6 address)/.test(e.message),
      host,
    );
  }
});

test('an unreadable file is refused with the file name and the system reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-config-'));
  try {
    assert.throws(() => loadClusterConfig(join(dir, 'missing.yaml')), /missing\.yaml: cannot read cluster file: ENOENT/);
    writeFileSync(join(dir, 'ok.yaml'), file('  tickMs: 10'));
    assert.equal(loadClusterConfig(join(dir, 'ok.yaml')).name, 'c1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('snapshot policy and consumer offset reset: defaults, overrides per broker, bounds named (DESIGN §12)', () => {
  const defaults = parse(file('  tickMs: 10')).groups[0]!.brokers[0]!.settings;
  assert.deepEqual([defaults.snapshotIntervalEntries, defaults.snapshotIntervalBytes, defaults.consumerOffsetReset], [100_000, 64 * 1024 * 1024, 'earliest']);
  const set = parse(file('  snapshotIntervalEntries: 500\n  snapshotIntervalBytes: 1048576\n  consumerOffsetReset: fail')).groups[0]!.brokers[1]!.settings;
  assert.deepEqual([set.snapshotIntervalEntries, set.snapshotIntervalBytes, set.consumerOffsetReset], [500, 1048576, 'fail']);
  const rows: Array<[string, RegExp]> = [
    ['  snapshotIntervalEntries: 9', /^cluster\.yaml: settings\.snapshotIntervalEntries: 9 is out of range \[10, 100000000\]/],
    ['  snapshotIntervalEntries: 1.5', /settings\.snapshotIntervalEntries: /],
    ['  snapshotIntervalBytes: 1024', /^cluster\.yaml: settings\.snapshotIntervalBytes: 1024 is out of range \[65536, /],
    ['  consumerOffsetReset: latest', /^cluster\.yaml: settings\.consumerOffsetReset: must be one of earliest, fail, got/],
  ];
  for (const [settings, message] of rows) {
    assert.throws(
      () => parse(file(settings)),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
      `${settings} → ${message}`,
    );
  }
});

/** A one-group file whose brokers' entries are given whole (host, listenHost...), with `top` above `groups:`. */
const hostsFile = (entries: string[], top = ''): string =>
  `cluster: c1\n${top}groups:\n  - id: g1\n    brokers:\n${entries.map((e, i) => `      - { id: b${i + 1}, ${e}, clientPort: 7101, peerPort: 7201, metricsPort: 7301 }`).join('\n')}\n`;

test('host: DNS names (a pod under its headless service) and IPv4 addresses are accepted; listenHost defaults to host', () => {
  const names = [
    'mamba-g1-0.mamba-g1.mamba.svc.cluster.local',
    'mamba-g1-1.mamba-g1.mamba.svc.cluster.local.', // fully qualified, with the root's dot
    'localhost',
  ];
  const config = parse(hostsFile(names.map((n) => `host: ${n}`)));
  const brokers = config.groups[0]!.brokers;
  assert.deepEqual(
    brokers.map((b) => b.host),
    names,
  );
  assert.deepEqual(
    brokers.map((b) => b.listenHost),
    names,
    'without listenHost a broker binds to the address it is dialled at',
  );
  // The same ports on three hosts are three endpoints.
  assert.deepEqual(
    brokers.map((b) => b.clientPort),
    [7101, 7101, 7101],
  );
  assert.equal(parse(hostsFile(['host: 10.1.2.3', 'host: 10.1.2.4', 'host: 10.1.2.5'])).groups[0]!.brokers[2]!.host, '10.1.2.5');
});

test('listenHost: given at the top level for every broker, overridden per broker', () => {
  const brokers = parse(hostsFile(['host: a.example', 'host: b.example, listenHost: "::"', 'host: c.example, listenHost: c.example'], 'listenHost: 0.0.0.0\n'))
    .groups[0]!.brokers;
  assert.deepEqual(
    brokers.map((b) => [b.host, b.listenHost]),
    [
      ['a.example', '0.0.0.0'],
      ['b.example', '::'],
      ['c.example', 'c.example'],
    ],
  );
});

test('host and listenHost refusals name the key and say what fits', () => {
  const rows: Array<[string, RegExp]> = [
    [hostsFile(['host: 0.0.0.0']), /groups\[0\]\.brokers\[0\]\.host: 0\.0\.0\.0 cannot be dialled: .*listenHost/],
    [hostsFile(['host: "::1"']), /brokers\[0\]\.host: "::1" is an IPv6 address: give a DNS name/],
    [hostsFile(['host: 10.0.0.300']), /brokers\[0\]\.host: "10\.0\.0\.300" is neither an IPv4 address nor a DNS name/],
    [hostsFile(['host: under_score.example']), /brokers\[0\]\.host: "under_score\.example" is neither/],
    [hostsFile(['host: -lead.example']), /brokers\[0\]\.host: "-lead\.example" is neither/],
    [hostsFile(['host: "a..b"']), /brokers\[0\]\.host: "a\.\.b" is neither/],
    [hostsFile([`host: ${'a'.repeat(64)}.example`]), /brokers\[0\]\.host: "a{64}\.example" is neither/],
    [hostsFile(['host: "127.0.0.1:7101"']), /brokers\[0\]\.host: "127\.0\.0\.1:7101" is neither/],
    [hostsFile(['host: a.example, listenHost: "*"']), /brokers\[0\]\.listenHost: "\*" is neither an IP address nor a DNS name/],
    [hostsFile(['host: a.example'], 'listenHost: ""\n'), /^cluster\.yaml: listenHost: must be a non-empty string/],
  ];
  for (const [text, message] of rows) {
    assert.throws(
      () => parse(text),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
      `${text} → ${message}`,
    );
  }
});

test('mqttPort is optional (no MQTT listener when absent), a port number, and shares no host:port', () => {
  const withMqtt = (ports: string[]): string =>
    `cluster: c1\ngroups:\n  - id: g1\n    brokers:\n${ports.map((mqtt, i) => `      - { id: b${i + 1}, host: 127.0.0.1, clientPort: ${7101 + i}, peerPort: ${7201 + i}, metricsPort: ${7301 + i}${mqtt} }`).join('\n')}\n`;
  const config = parse(withMqtt([', mqttPort: 7401', ', mqttPort: 7402', '']));
  assert.deepEqual(
    config.groups[0]!.brokers.map((b) => b.mqttPort),
    [7401, 7402, null],
  );
  assert.throws(() => parse(withMqtt([', mqttPort: 0', '', ''])), /groups\[0\]\.brokers\[0\]\.mqttPort: 0 is out of range \[1, 65535\]/);
  assert.throws(() => parse(withMqtt([', mqttPort: "x"', '', ''])), /groups\[0\]\.brokers\[0\]\.mqttPort:/);
  assert.throws(
    () => parse(withMqtt(['', ', mqttPort: 7101', ''])),
    /groups\[0\]\.brokers\[1\]\.mqttPort: 127\.0\.0\.1:7101 is already taken by b1\.clientPort/,
  );
  assert.throws(
    () => parse(withMqtt([', mqttPort: 7401, stompPort: 7401', '', ''])),
    /brokers\[0\]\.stompPort: 127\.0\.0\.1:7401 is already taken by b1\.mqttPort/,
  );
});

test('stompPort: optional (no STOMP listener without it), a port number, and no other listener on the same host:port', () => {
  const stomp = (entries: string[]): string =>
    `cluster: c1\ngroups:\n  - id: g1\n    brokers:\n${entries.map((e, i) => `      - { id: b${i + 1}, host: 127.0.0.1, clientPort: ${7101 + i}, peerPort: ${7201 + i}, metricsPort: ${7301 + i}${e} }`).join('\n')}\n`;
  const config = parse(stomp([', stompPort: 7501', '']));
  assert.equal(config.groups[0]!.brokers[0]!.stompPort, 7501);
  assert.equal(config.groups[0]!.brokers[1]!.stompPort, null);
  assert.throws(() => parse(stomp([', stompPort: 0'])), /groups\[0\]\.brokers\[0\]\.stompPort: .*1\.\.65535|stompPort/);
  assert.throws(() => parse(stomp([', stompPort: "x"'])), /groups\[0\]\.brokers\[0\]\.stompPort/);
  assert.throws(() => parse(stomp(['', ', stompPort: 7101'])), /groups\[0\]\.brokers\[1\]\.stompPort: 127\.0\.0\.1:7101 is already taken by b1\.clientPort/);
  assert.throws(() => parse(stomp([', stompPort: 7501', ', stompPort: 7501'])), /brokers\[1\]\.stompPort: 127\.0\.0\.1:7501 is already taken by b1\.stompPort/);
});
