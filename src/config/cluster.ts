// Cluster files (YAML or JSON): the groups, their brokers and the broker settings.
// Settings are given once for the cluster under `settings:` and may be overridden per broker
// (a broker entry's own `settings:`), e.g. to run one broker with `flush: { mode: sync }`.
import { isIP, isIPv4 } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import {
  at,
  ConfigError,
  fail,
  parseDocument,
  readTextFile,
  readArray,
  readChoice,
  readInteger,
  readNumber,
  readObject,
  readBoolean,
  readString,
  rejectUnknownKeys,
  type Where,
} from '../validation.js';
import { flushIntervalMsMax, segmentBytesMax, segmentBytesMin, type FlushPolicy } from '../log/options.js';
import type { AdviceSettings } from '../broker/advice.js';
import { consumerOffsetResetChoices, consumerOffsetResetDefault, type ConsumerOffsetReset } from '../broker/layout.js';
import { readSecurity, noSecurity, type SecurityConfig } from './security.js';

export type { AdviceSettings } from '../broker/advice.js';
import { defaultAlertSettings, defaultTracingSettings, readAlerts, readTracing, type AlertSettings, type TracingSettings } from '../observe/settings.js';

const MiB = 1024 * 1024;
const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface BrokerSettings {
  flush: FlushPolicy;
  segmentBytes: number;
  retentionBytesMax: number; // 0 = no size limit
  retentionAgeMsMax: number; // 0 = no age limit
  tickMs: number;
  electionTimeoutMs: number;
  fetchTimeoutMs: number;
  fetchWaitMsMax: number;
  fetchBytesMax: number;
  messageBytesMax: number;
  requestBytesMax: number;
  pendingProposalsMax: number;
  /** A snapshot of the state machine is taken once this many log entries were applied since the latest one... */
  snapshotIntervalEntries: number;
  /** ... or this many log bytes, whichever comes first (DESIGN §12: retention deletes only below a snapshot). */
  snapshotIntervalBytes: number;
  /**
   * A seed broker that starts on an empty, unformatted directory formats it once every other
   * seed broker of its group answers that its own directory is empty too (a new group); when
   * one holds data, it is a replaced disk and joins as recovering (src/rpc/storage-format.ts).
   */
  formatNewGroup: boolean;
  /** A consumer whose committed offset fell below its queue's start: resume at the start ('earliest', counted) or fail. */
  consumerOffsetReset: ConsumerOffsetReset;
  consumeWaitMsMax: number;
  /** Client API connections one remote address may hold; calls on more get RESOURCE_EXHAUSTED. */
  connectionsPerClientMax: number;
  /** Calls in flight on one client API connection; more get RESOURCE_EXHAUSTED. */
  inflightPerConnectionMax: number;
  advice: AdviceSettings;
  /** OpenTelemetry export (off while otlpEndpoint is ''). */
  tracing: TracingSettings;
  /** Alert rules evaluated on the broker's own metrics, and where alerts go. */
  alerts: AlertSettings;
}

export interface BrokerConfig {
  id: string;
  group: string;
  /** The address other brokers and clients dial: an IPv4 address or a DNS name (a pod's stable name). */
  host: string;
  /** The address the broker's sockets bind to: `host` unless `listenHost` says otherwise (0.0.0.0 in a container). */
  listenHost: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  /** The MQTT listener's port (src/gateway/mqtt); null: the broker does not speak MQTT. */
  mqttPort: number | null;
  /** The STOMP 1.2 listener (src/gateway/stomp); null: none. */
  stompPort: number | null;
  dataDir: string;
  settings: BrokerSettings;
  /**
   * A broker that joins the running group with `mambamq replica add` (issue 13.4): it starts on an
   * empty data directory and is not one of the group's seed voters. The seed (the first start's
   * voters) is every broker of the group without this flag; the log is the truth afterwards.
   */
  joining: boolean;
}

export interface GroupConfig {
  id: string;
  brokers: BrokerConfig[];
}

export interface ClusterConfig {
  name: string;
  source: string;
  groups: GroupConfig[];
  security: SecurityConfig;
}

export const defaultBrokerSettings: BrokerSettings = {
  flush: { mode: 'async', intervalMs: 10 },
  segmentBytes: 64 * MiB,
  retentionBytesMax: 0,
  retentionAgeMsMax: 0,
  tickMs: 10,
  electionTimeoutMs: 300,
  fetchTimeoutMs: 600,
  fetchWaitMsMax: 200,
  fetchBytesMax: 4 * MiB,
  messageBytesMax: 4 * MiB,
  requestBytesMax: 16 * MiB,
  pendingProposalsMax: 10_000,
  snapshotIntervalEntries: 100_000,
  snapshotIntervalBytes: 64 * MiB,
  formatNewGroup: true,
  consumerOffsetReset: consumerOffsetResetDefault,
  consumeWaitMsMax: 30_000,
  connectionsPerClientMax: 256,
  inflightPerConnectionMax: 1024,
  advice: { leaderInflightMax: 256, leaderCpuMax: 0.85, followerLagOffsetsMax: 1000, followerLagMsMax: 2000 },
  tracing: defaultTracingSettings,
  alerts: defaultAlertSettings,
};

const settingKeys = Object.keys(defaultBrokerSettings);
/** Keys of earlier releases, named in the error so that an old cluster file is easy to mend. */
const renamedSettingKeys: Readonly<Record<string, string>> = { fetchMaxWaitMs: 'fetchWaitMsMax' };

/** Reads a settings mapping over `base`: only the keys given change. */
export function readSettings(value: unknown, where: Where, base: BrokerSettings): BrokerSettings {
  const fields = readObject(value, where);
  for (const [old, renamed] of Object.entries(renamedSettingKeys))
    if (fields[old] !== undefined) fail(at(where, old), `was renamed to ${renamed} (units last, as every limit here)`);
  rejectUnknownKeys(fields, settingKeys, where);
  const s: BrokerSettings = { ...base, advice: { ...base.advice } };
  const int = (key: keyof BrokerSettings, min: number, max: number): void => {
    if (fields[key] !== undefined) (s[key] as number) = readInteger(fields[key], at(where, key), min, max);
  };
  if (fields.flush !== undefined) s.flush = readFlush(fields.flush, at(where, 'flush'));
  // The log owns the segment bounds; a broker asks for at least 64 KiB so that a message fits.
  int('segmentBytes', Math.max(segmentBytesMin, 64 * 1024), segmentBytesMax);
  int('retentionBytesMax', 0, Number.MAX_SAFE_INTEGER);
  int('retentionAgeMsMax', 0, Number.MAX_SAFE_INTEGER);
  int('tickMs', 1, 1000);
  int('electionTimeoutMs', 20, 60_000);
  int('fetchTimeoutMs', 20, 120_000);
  int('fetchWaitMsMax', 0, 10_000);
  int('fetchBytesMax', 64 * 1024, 256 * MiB);
  int('messageBytesMax', 1, 64 * MiB);
  int('requestBytesMax', 1024, 256 * MiB);
  int('pendingProposalsMax', 1, 1_000_000);
  // A snapshot costs a capture of the whole state: not more often than every 10 entries or 64 KiB.
  int('snapshotIntervalEntries', 10, 100_000_000);
  int('snapshotIntervalBytes', 64 * 1024, 64 * 1024 * MiB);
  if (fields.formatNewGroup !== undefined) s.formatNewGroup = readBoolean(fields.formatNewGroup, at(where, 'formatNewGroup'));
  if (fields.consumerOffsetReset !== undefined)
    s.consumerOffsetReset = readChoice(fields.consumerOffsetReset, at(where, 'consumerOffsetReset'), consumerOffsetResetChoices);
  int('consumeWaitMsMax', 0, 300_000);
  int('connectionsPerClientMax', 1, 100_000);
  int('inflightPerConnectionMax', 1, 100_000);
  if (fields.advice !== undefined) s.advice = readAdvice(fields.advice, at(where, 'advice'), s.advice);
  if (fields.tracing !== undefined) s.tracing = readTracing(fields.tracing, at(where, 'tracing'), s.tracing);
  if (fields.alerts !== undefined) s.alerts = readAlerts(fields.alerts, at(where, 'alerts'), s.alerts);
  checkSettings(s, where);
  return s;
}

function readFlush(value: unknown, where: Where): FlushPolicy {
  const fields = readObject(value, where);
  rejectUnknownKeys(fields, ['mode', 'intervalMs'], where);
  const mode = readChoice(fields.mode, at(where, 'mode'), ['sync', 'async'] as const);
  if (mode === 'sync') {
    if (fields.intervalMs !== undefined) fail(at(where, 'intervalMs'), 'only applies to mode async');
    return { mode };
  }
  const intervalMs = fields.intervalMs === undefined ? 10 : readInteger(fields.intervalMs, at(where, 'intervalMs'), 1, flushIntervalMsMax);
  return { mode, intervalMs };
}

function readAdvice(value: unknown, where: Where, base: AdviceSettings): AdviceSettings {
  const fields = readObject(value, where);
  rejectUnknownKeys(fields, Object.keys(base), where);
  const a = { ...base };
  if (fields.leaderInflightMax !== undefined) a.leaderInflightMax = readInteger(fields.leaderInflightMax, at(where, 'leaderInflightMax'), 0, 1_000_000);
  if (fields.leaderCpuMax !== undefined) a.leaderCpuMax = readNumber(fields.leaderCpuMax, at(where, 'leaderCpuMax'), 0, 64);
  if (fields.followerLagOffsetsMax !== undefined)
    a.followerLagOffsetsMax = readInteger(fields.followerLagOffsetsMax, at(where, 'followerLagOffsetsMax'), 0, Number.MAX_SAFE_INTEGER);
  if (fields.followerLagMsMax !== undefined) a.followerLagMsMax = readInteger(fields.followerLagMsMax, at(where, 'followerLagMsMax'), 0, 3_600_000);
  return a;
}

function checkSettings(s: BrokerSettings, where: Where): void {
  if (s.electionTimeoutMs < 2 * s.tickMs) fail(at(where, 'electionTimeoutMs'), `must be at least twice tickMs (${s.tickMs})`);
  if (s.fetchTimeoutMs < s.electionTimeoutMs) fail(at(where, 'fetchTimeoutMs'), `must be at least electionTimeoutMs (${s.electionTimeoutMs})`);
  if (s.fetchWaitMsMax >= s.electionTimeoutMs)
    fail(at(where, 'fetchWaitMsMax'), `must be below electionTimeoutMs (${s.electionTimeoutMs}), or followers time out on an idle leader`);
  if (s.messageBytesMax > s.requestBytesMax) fail(at(where, 'messageBytesMax'), `must not exceed requestBytesMax (${s.requestBytesMax})`);
  if (s.messageBytesMax + 4096 > s.segmentBytes) fail(at(where, 'messageBytesMax'), `must fit in one segment (segmentBytes ${s.segmentBytes})`);
  if (s.fetchBytesMax < s.messageBytesMax) fail(at(where, 'fetchBytesMax'), `must be at least messageBytesMax (${s.messageBytesMax})`);
}

/** Parses a cluster file's text; `source` names it in errors and anchors a relative dataDir. */
export function parseClusterConfig(text: string, source: string, baseDir: string): ClusterConfig {
  const document = parseDocument(text, source);
  const where: Where = { source, path: '' };
  const top = readObject(document, where);
  rejectUnknownKeys(top, ['cluster', 'dataDir', 'listenHost', 'settings', 'security', 'groups'], where);
  const name = readString(top.cluster, at(where, 'cluster'), idPattern);
  const dataDirText = top.dataDir === undefined ? './data' : readString(top.dataDir, at(where, 'dataDir'));
  const dataDir = isAbsolute(dataDirText) ? dataDirText : resolve(baseDir, dataDirText);
  const listenHost = top.listenHost === undefined ? null : readListenHost(top.listenHost, at(where, 'listenHost'));
  const settings = top.settings === undefined ? defaultBrokerSettings : readSettings(top.settings, at(where, 'settings'), defaultBrokerSettings);
  const groupsWhere = at(where, 'groups');
  const groupList = readArray(top.groups, groupsWhere);
  if (groupList.length === 0) fail(groupsWhere, 'must name at least one group');
  const groups = groupList.map((g, i) => readGroup(g, at(groupsWhere, i), { dataDir, listenHost, settings }));
  checkUnique(groups, where);
  const security = top.security === undefined ? noSecurity : readSecurity(top.security, at(where, 'security'), baseDir);
  return { name, source, groups, security };
}

/** What the top level of the file gives every broker unless its own entry says otherwise. */
interface BrokerDefaults {
  dataDir: string;
  /** null: each broker binds to its own host. */
  listenHost: string | null;
  settings: BrokerSettings;
}

function readGroup(value: unknown, where: Where, defaults: BrokerDefaults): GroupConfig {
  const fields = readObject(value, where);
  rejectUnknownKeys(fields, ['id', 'brokers'], where);
  const id = readString(fields.id, at(where, 'id'), idPattern);
  const brokersWhere = at(where, 'brokers');
  const list = readArray(fields.brokers, brokersWhere);
  if (list.length < 1 || list.length > 7) fail(brokersWhere, `a group has 1 to 7 brokers (3 is the norm), got ${list.length}`);
  const brokers = list.map((b, i) => readBroker(b, at(brokersWhere, i), id, defaults));
  if (brokers.every((b) => b.joining)) fail(brokersWhere, 'at least one broker must not be `joining` (the seed voters are the brokers without it)');
  return { id, brokers };
}

function readBroker(value: unknown, where: Where, group: string, defaults: BrokerDefaults): BrokerConfig {
  const fields = readObject(value, where);
  rejectUnknownKeys(
    fields,
    ['id', 'host', 'listenHost', 'clientPort', 'peerPort', 'metricsPort', 'mqttPort', 'stompPort', 'dataDir', 'settings', 'joining'],
    where,
  );
  const id = readString(fields.id, at(where, 'id'), idPattern);
  const host = readHost(fields.host, at(where, 'host'));
  const listenHost = fields.listenHost === undefined ? (defaults.listenHost ?? host) : readListenHost(fields.listenHost, at(where, 'listenHost'));
  const port = (key: string): number => readInteger(fields[key], at(where, key), 1, 65535);
  const dataDir = defaults.dataDir;
  const brokerDataDir = fields.dataDir === undefined ? resolve(dataDir, id) : resolve(dataDir, readString(fields.dataDir, at(where, 'dataDir')));
  const own = fields.settings === undefined ? defaults.settings : readSettings(fields.settings, at(where, 'settings'), defaults.settings);
  return {
    id,
    group,
    host,
    listenHost,
    clientPort: port('clientPort'),
    peerPort: port('peerPort'),
    metricsPort: port('metricsPort'),
    mqttPort: fields.mqttPort === undefined ? null : port('mqttPort'),
    stompPort: fields.stompPort === undefined ? null : port('stompPort'),
    dataDir: brokerDataDir,
    settings: own,
    joining: fields.joining === undefined ? false : readBoolean(fields.joining, at(where, 'joining')),
  };
}

/** RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 63 bytes each, 253 in all. */
const dnsLabelPattern = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function isDnsName(text: string): boolean {
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  // An all-digit last label is not a name (RFC 3696 §2): "10.0.0.300" is a mistyped address.
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return false;
  return labels.every((label) => dnsLabelPattern.test(label));
}

/**
 * A broker's `host`, dialled by the other brokers and by clients as `host:port`: an IPv4 address
 * or a DNS name (e.g. a Kubernetes pod's stable name under its headless service). Not an IPv6
 * literal (`host:port` would be ambiguous; give it a DNS name) and not an unspecified address.
 */
function readHost(value: unknown, where: Where): string {
  const host = readString(value, where);
  if (isIPv4(host)) {
    if (host === '0.0.0.0') fail(where, '0.0.0.0 cannot be dialled: give the address others reach this broker at (bind to all addresses with `listenHost`)');
    return host;
  }
  if (isIP(host) === 6) fail(where, `"${host}" is an IPv6 address: give a DNS name for it (addresses are written host:port)`);
  if (!isDnsName(host)) fail(where, `"${host}" is neither an IPv4 address nor a DNS name (letters, digits, hyphens and dots)`);
  return host;
}

/** Where a broker's sockets bind: any IP address (0.0.0.0 or :: for all) or a DNS name. */
function readListenHost(value: unknown, where: Where): string {
  const host = readString(value, where);
  if (isIP(host) === 0 && !isDnsName(host)) fail(where, `"${host}" is neither an IP address nor a DNS name`);
  return host;
}

/** Broker ids are unique, and so is every host:port (brokers on different hosts may share port numbers). */
function checkUnique(groups: GroupConfig[], where: Where): void {
  const ids = new Set<string>();
  const endpoints = new Map<string, string>();
  const groupIds = new Set<string>();
  groups.forEach((group, g) => {
    if (groupIds.has(group.id)) fail(at(at(at(where, 'groups'), g), 'id'), `group id "${group.id}" is used twice`);
    groupIds.add(group.id);
    group.brokers.forEach((broker, b) => {
      const bw = at(at(at(at(where, 'groups'), g), 'brokers'), b);
      if (ids.has(broker.id)) fail(at(bw, 'id'), `broker id "${broker.id}" is used twice`);
      ids.add(broker.id);
      for (const key of ['clientPort', 'peerPort', 'metricsPort', 'mqttPort', 'stompPort'] as const) {
        if (broker[key] === null) continue;
        const endpoint = `${broker.host}:${broker[key]}`;
        const owner = endpoints.get(endpoint);
        if (owner) fail(at(bw, key), `${endpoint} is already taken by ${owner}`);
        endpoints.set(endpoint, `${broker.id}.${key}`);
      }
    });
  });
}

export function loadClusterConfig(file: string): ClusterConfig {
  const text = readTextFile(file, 'cluster file');
  // A relative dataDir is taken from the directory the broker is started in (the repository
  // root for `make run`), so every cluster file can say `./data`.
  return parseClusterConfig(text, file, process.cwd());
}

export function findBroker(cluster: ClusterConfig, id: string): BrokerConfig {
  for (const group of cluster.groups) {
    const broker = group.brokers.find((b) => b.id === id);
    if (broker) return broker;
  }
  const known = cluster.groups.flatMap((g) => g.brokers.map((b) => b.id));
  throw new ConfigError(`${cluster.source}: no broker "${id}" (brokers: ${known.join(', ')})`);
}

export function groupOf(cluster: ClusterConfig, brokerId: string): GroupConfig {
  const group = cluster.groups.find((g) => g.brokers.some((b) => b.id === brokerId));
  if (!group) throw new ConfigError(`${cluster.source}: no broker "${brokerId}"`);
  return group;
}

/**
 * The group's seed voters: its brokers without `joining`, the same on every broker of the group.
 * Only the first start uses them; afterwards the membership entries of the log are the truth.
 */
export function seedVoters(group: GroupConfig): string[] {
  return group.brokers.filter((b) => !b.joining).map((b) => b.id);
}
