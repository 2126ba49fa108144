// Alert rules: which metric series to watch, the condition, how long it must hold, and what to
// attach to the alert. Loaded from a YAML (or JSON) rules file, validated key by key; without a
// file the broker uses the default rules below.
import {
  at,
  fail,
  parseDocument,
  readTextFile,
  readArray,
  readChoice,
  readNumber,
  readObject,
  readString,
  rejectUnknownKeys,
  type Where,
} from '../../validation.js';

export const comparisons = ['>', '<', '>=', '<=', '=='] as const;
export type Comparison = (typeof comparisons)[number];
/**
 * `increasing`: the series has not gone down at any evaluation since the alert became pending,
 * and by the end of the for-duration it stands more than `threshold` above where it started.
 * `increase`: a counter grew by more than `threshold` over the last `window` (Prometheus's
 * `increase(metric[window]) > threshold`): it holds while the counter moves and resolves once it
 * has stood still for a window. A counter going down was reset (a restart) and counts from 0; a
 * series that appears after the first evaluation counts from 0 too, since a labelled counter
 * appears only when first incremented.
 */
export type Condition = Comparison | 'increasing' | 'increase';
export const conditions: readonly Condition[] = [...comparisons, 'increasing', 'increase'];
export const severities = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof severities)[number];

export interface AlertRule {
  name: string;
  /** A metric name as exposed at /metrics, e.g. mamba_replication_lag_seconds (histograms: _count, _sum, _bucket). */
  metric: string;
  /** Only series whose labels equal these are watched. */
  match: Record<string, string>;
  condition: Condition;
  threshold: number;
  /** For `increase` (and only for it): how far back the growth is measured. */
  windowMs: number | null;
  forMs: number;
  severity: Severity;
  /** Extra labels attached to every alert of this rule. */
  labels: Record<string, string>;
  summary: string;
  /** Overrides the engine's repeat interval for this rule. */
  repeatIntervalMs: number | null;
}

const namePattern = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const metricPattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelPattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const durationPattern = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const durationMsMax = 7 * 24 * 3_600_000;
export const rulesMax = 256;

/** A duration: milliseconds as a number, or a string such as "500ms", "30s", "5m", "1h". */
export function readDurationMs(value: unknown, where: Where): number {
  if (typeof value === 'number') return readNumber(value, where, 0, durationMsMax);
  if (typeof value !== 'string') fail(where, 'must be a duration such as 500ms, 30s, 5m, 1h or a number of milliseconds');
  const m = durationPattern.exec(value.trim());
  if (!m) fail(where, `"${value}" is not a duration such as 500ms, 30s, 5m, 1h`);
  const ms = Number(m[1]) * unitMs[m[2]!]!;
  if (ms > durationMsMax) fail(where, `${value} is longer than 7 days`);
  return ms;
}

function readLabels(value: unknown, where: Where): Record<string, string> {
  if (value === undefined) return {};
  const fields = readObject(value, where);
  const labels: Record<string, string> = {};
  for (const [key, v] of Object.entries(fields)) {
    if (!labelPattern.test(key)) fail(at(where, key), 'is not a valid label name');
    if (typeof v !== 'string' && typeof v !== 'number') fail(at(where, key), 'must be a string');
    labels[key] = String(v);
  }
  return labels;
}

const ruleKeys = ['name', 'metric', 'match', 'condition', 'threshold', 'window', 'for', 'severity', 'labels', 'summary', 'repeatInterval'];
/** Conditions whose threshold may be left out (0): growth of any size. */
const growthConditions: readonly Condition[] = ['increasing', 'increase'];

export function readRule(value: unknown, where: Where): AlertRule {
  const f = readObject(value, where);
  rejectUnknownKeys(f, ruleKeys, where);
  const condition = readChoice(f.condition, at(where, 'condition'), conditions);
  if (condition === 'increase' && f.window === undefined) fail(at(where, 'window'), 'is required with condition increase (a duration such as 5m)');
  if (condition !== 'increase' && f.window !== undefined) fail(at(where, 'window'), `is only for condition increase, not ${condition}`);
  const windowMs = condition === 'increase' ? readDurationMs(f.window, at(where, 'window')) : null;
  if (windowMs === 0) fail(at(where, 'window'), 'must be longer than 0');
  return {
    name: readString(f.name, at(where, 'name'), namePattern),
    metric: readString(f.metric, at(where, 'metric'), metricPattern),
    match: readLabels(f.match, at(where, 'match')),
    condition,
    threshold:
      f.threshold === undefined && growthConditions.includes(condition)
        ? 0
        : readNumber(f.threshold, at(where, 'threshold'), -Number.MAX_VALUE, Number.MAX_VALUE),
    windowMs,
    forMs: f.for === undefined ? 0 : readDurationMs(f.for, at(where, 'for')),
    severity: f.severity === undefined ? 'warning' : readChoice(f.severity, at(where, 'severity'), severities),
    labels: readLabels(f.labels, at(where, 'labels')),
    summary: f.summary === undefined ? '' : readString(f.summary, at(where, 'summary')),
    repeatIntervalMs: f.repeatInterval === undefined ? null : readDurationMs(f.repeatInterval, at(where, 'repeatInterval')),
  };
}

/** Parses a rules file's text: a mapping with a `rules:` list. */
export function parseRules(text: string, source: string): AlertRule[] {
  const document = parseDocument(text, source);
  const where: Where = { source, path: '' };
  const top = readObject(document, where);
  rejectUnknownKeys(top, ['rules'], where);
  const list = readArray(top.rules, at(where, 'rules'));
  if (list.length > rulesMax) fail(at(where, 'rules'), `${list.length} rules (limit ${rulesMax})`);
  const rules = list.map((r, i) => readRule(r, at(at(where, 'rules'), i)));
  const names = new Set<string>();
  rules.forEach((r, i) => {
    if (names.has(r.name)) fail(at(at(at(where, 'rules'), i), 'name'), `rule name "${r.name}" is used twice`);
    names.add(r.name);
  });
  return rules;
}

export function loadRules(file: string): AlertRule[] {
  return parseRules(readTextFile(file, 'alert rules file'), file);
}

function rule(fields: Partial<AlertRule> & Pick<AlertRule, 'name' | 'metric' | 'condition' | 'threshold' | 'severity' | 'summary'>): AlertRule {
  return { match: {}, windowMs: null, forMs: 0, labels: {}, repeatIntervalMs: null, ...fields };
}

/** The rules a broker watches when no rules file is configured (cluster/alert-rules.yaml has the same). */
export function defaultRules(memoryBytesMax: number): AlertRule[] {
  return [
    rule({
      name: 'ReplicationLagHigh',
      metric: 'mamba_replication_lag_seconds',
      condition: '>',
      threshold: 30,
      severity: 'critical',
      summary: 'A follower has not caught up with the high watermark for over 30 s',
    }),
    rule({
      name: 'GroupWithoutLeader',
      metric: 'mamba_group_leader_known',
      condition: '==',
      threshold: 0,
      forMs: 5000,
      severity: 'critical',
      summary: 'This broker has known no leader of its group for 5 s',
    }),
    rule({
      name: 'DiskUsageHigh',
      metric: 'mamba_disk_used_ratio',
      condition: '>',
      threshold: 0.85,
      forMs: 60_000,
      severity: 'warning',
      summary: "The data directory's file system is over 85% full",
    }),
    rule({
      name: 'ConsumerBacklogGrowing',
      metric: 'mamba_consumer_backlog_messages',
      condition: 'increasing',
      threshold: 0,
      forMs: 300_000,
      severity: 'warning',
      summary: "A consumer group's backlog has grown for 5 minutes",
    }),
    rule({
      name: 'CommittedDataDivergence',
      metric: 'mamba_replica_committed_data_divergence',
      condition: '>',
      threshold: 0,
      severity: 'critical',
      summary:
        'A leader asked this replica to truncate committed entries (it lacks committed data); refused: see the leader, epoch and both offsets in the labels',
    }),
    rule({
      name: 'ReplicaRecovering',
      metric: 'mamba_replica_recovering',
      condition: '>',
      threshold: 0,
      forMs: 300_000,
      severity: 'warning',
      summary: 'This replica lost entries it had promised and has not caught up from its leader for 5 minutes',
    }),
    rule({
      name: 'PeerMessagesRefused',
      metric: 'mamba_raft_messages_refused_total',
      condition: 'increase',
      threshold: 0,
      windowMs: 600_000,
      severity: 'critical',
      summary:
        'This broker refused peer messages no correct replica could send in the last 10 minutes (a faulty or hostile member, or a forged peer certificate): see raft.message_refused in its log',
    }),
    rule({
      name: 'MemoryOverLimit',
      metric: 'mamba_process_resident_memory_bytes',
      condition: '>',
      threshold: memoryBytesMax,
      forMs: 60_000,
      severity: 'critical',
      summary: `Broker resident memory is over its limit of ${memoryBytesMax} bytes`,
    }),
  ];
}
