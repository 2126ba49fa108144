// The alert state machine, pure and clock-free: each evaluation gets the current samples and
// the time, and returns what to notify. Per rule and series (label set):
//   inactive → pending (condition holds) → firing (held for the rule's for-duration) →
//   resolved (condition no longer holds, or the series is gone); a pending alert whose condition
//   stops holding goes back to inactive without a notification. A firing alert is notified again
//   every repeat interval. For `increase` rules the value watched (and notified) is the counter's
//   growth over the rule's window, from a bounded history per series.
import { assert } from '../../assert.js';
import type { AlertRule, Comparison } from './rules.js';

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Metric name → its series at one evaluation. */
export type Samples = ReadonlyMap<string, readonly Sample[]>;

export type AlertStatus = 'firing' | 'resolved';

export interface AlertEvent {
  status: AlertStatus;
  /** A firing alert notified again after the repeat interval. */
  repeat: boolean;
  rule: AlertRule;
  /** The series' labels plus the rule's labels. */
  labels: Record<string, string>;
  value: number;
  activeSinceMs: number;
  firedAtMs: number;
  resolvedAtMs: number | null;
}

/** History points kept per series of an `increase` rule: one per window/historyPoints at most. */
const historyPoints = 512;

/**
 * A counter's recent history, enough to say how much it grew over the last window. Values are
 * kept adjusted for resets (a counter that goes down restarted from 0, as Prometheus assumes).
 */
class CounterHistory {
  private readonly points: Array<{ ms: number; value: number }> = [];
  private carried = 0;
  private lastRaw: number;

  constructor(firstMs: number, firstRaw: number, startsAtZero: boolean) {
    this.lastRaw = firstRaw;
    if (startsAtZero) this.points.push({ ms: firstMs, value: 0 });
    this.points.push({ ms: firstMs, value: firstRaw });
  }

  /** Records a sample; returns the growth since the newest point at or before `nowMs - windowMs`. */
  growth(nowMs: number, raw: number, windowMs: number): number {
    if (raw < this.lastRaw) this.carried += this.lastRaw;
    this.lastRaw = raw;
    const value = raw + this.carried;
    const last = this.points[this.points.length - 1]!;
    if (nowMs - last.ms >= windowMs / historyPoints) this.points.push({ ms: nowMs, value });
    const windowStartMs = nowMs - windowMs;
    while (this.points.length >= 2 && this.points[1]!.ms <= windowStartMs) this.points.shift();
    return value - this.points[0]!.value;
  }
}

interface Instance {
  rule: AlertRule;
  labels: Record<string, string>;
  state: 'pending' | 'firing';
  activeSinceMs: number;
  firedAtMs: number;
  notifiedAtMs: number;
  value: number;
  /** For `increasing`: the value when the alert became pending. */
  baseline: number;
}

export interface EngineOptions {
  repeatIntervalMs: number;
  /** Bound on pending and firing alerts kept; series beyond it are not watched (counted in `dropped`). */
  instancesMax?: number;
}

const compare: Record<Comparison, (a: number, b: number) => boolean> = {
  '>': (a, b) => a > b,
  '<': (a, b) => a < b,
  '>=': (a, b) => a >= b,
  '<=': (a, b) => a <= b,
  '==': (a, b) => a === b,
};

function seriesKey(rule: AlertRule, labels: Record<string, string>): string {
  return `${rule.name}\u0000${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join('\u0000')}`;
}

function matches(rule: AlertRule, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(rule.match)) if (labels[k] !== v) return false;
  return true;
}

export class AlertEngine {
  private readonly instances = new Map<string, Instance>();
  /** Last value per series of `increasing` rules (the next evaluation compares against it). */
  private readonly previous = new Map<string, number>();
  /** Per series of `increase` rules. */
  private readonly counters = new Map<string, CounterHistory>();
  private evaluations = 0;
  private readonly instancesMax: number;
  private lastEvaluationMs = -Infinity;
  dropped = 0;

  constructor(
    readonly rules: readonly AlertRule[],
    private readonly options: EngineOptions,
  ) {
    assert(options.repeatIntervalMs > 0, 'repeat interval must be positive');
    this.instancesMax = options.instancesMax ?? 10_000;
  }

  /** Alerts now pending or firing. */
  active(): Array<{ rule: string; labels: Record<string, string>; state: 'pending' | 'firing'; value: number; activeSinceMs: number }> {
    return [...this.instances.values()].map((i) => ({ rule: i.rule.name, labels: i.labels, state: i.state, value: i.value, activeSinceMs: i.activeSinceMs }));
  }

  evaluate(samples: Samples, nowMs: number): AlertEvent[] {
    assert(nowMs >= this.lastEvaluationMs, `evaluation time went back from ${this.lastEvaluationMs} to ${nowMs}`);
    this.lastEvaluationMs = nowMs;
    const events: AlertEvent[] = [];
    for (const rule of this.rules) this.evaluateRule(rule, samples.get(rule.metric) ?? [], nowMs, events);
    this.evaluations++;
    return events;
  }

  private evaluateRule(rule: AlertRule, series: readonly Sample[], nowMs: number, events: AlertEvent[]): void {
    const seen = new Set<string>();
    for (const sample of series) {
      if (!matches(rule, sample.labels)) continue;
      const key = seriesKey(rule, sample.labels);
      seen.add(key);
      this.step(rule, key, rule.condition === 'increase' ? this.growthOf(rule, key, sample, nowMs) : sample, nowMs, events);
    }
    // Series that disappeared: their alerts resolve, their history goes.
    for (const [key, instance] of this.instances) {
      if (instance.rule === rule && !seen.has(key)) this.clear(key, instance, nowMs, events);
    }
    const history = rule.condition === 'increasing' ? this.previous : rule.condition === 'increase' ? this.counters : null;
    if (history) for (const key of history.keys()) if (key.startsWith(`${rule.name}\u0000`) && !seen.has(key)) history.delete(key);
  }

  /** An `increase` rule's sample becomes the counter's growth over the window (NaN: not watched, past the bound). */
  private growthOf(rule: AlertRule, key: string, sample: Sample, nowMs: number): Sample {
    const windowMs = rule.windowMs ?? 0;
    let history = this.counters.get(key);
    if (!history) {
      if (this.counters.size >= this.instancesMax) {
        this.dropped++;
        return { labels: sample.labels, value: Number.NaN };
      }
      history = new CounterHistory(nowMs, sample.value, this.evaluations > 0);
      this.counters.set(key, history);
    }
    return { labels: sample.labels, value: history.growth(nowMs, sample.value, windowMs) };
  }

  private step(rule: AlertRule, key: string, sample: Sample, nowMs: number, events: AlertEvent[]): void {
    let instance = this.instances.get(key);
    const previous = this.previous.get(key);
    if (rule.condition === 'increasing' && (previous !== undefined || this.previous.size < this.instancesMax)) this.previous.set(key, sample.value);
    const holds = this.holds(rule, sample.value, previous, instance !== undefined);
    if (!holds) {
      if (instance) this.clear(key, instance, nowMs, events);
      return;
    }
    if (!instance) {
      if (this.instances.size >= this.instancesMax) {
        this.dropped++;
        return;
      }
      const baseline = rule.condition === 'increasing' ? (previous ?? sample.value) : sample.value;
      instance = {
        rule,
        labels: { ...sample.labels, ...rule.labels },
        state: 'pending',
        activeSinceMs: nowMs,
        firedAtMs: 0,
        notifiedAtMs: 0,
        value: sample.value,
        baseline,
      };
      this.instances.set(key, instance);
    }
    instance.value = sample.value;
    if (instance.state === 'pending') {
      if (nowMs - instance.activeSinceMs < rule.forMs) return;
      if (rule.condition === 'increasing' && !(sample.value - instance.baseline > rule.threshold)) return;
      instance.state = 'firing';
      instance.firedAtMs = nowMs;
      instance.notifiedAtMs = nowMs;
      events.push(this.event('firing', false, instance, null));
      return;
    }
    if (nowMs - instance.notifiedAtMs >= (rule.repeatIntervalMs ?? this.options.repeatIntervalMs)) {
      instance.notifiedAtMs = nowMs;
      events.push(this.event('firing', true, instance, null));
    }
  }

  private holds(rule: AlertRule, value: number, previous: number | undefined, active: boolean): boolean {
    if (Number.isNaN(value)) return false;
    if (rule.condition === 'increase') return value > rule.threshold; // value: the growth over the window
    if (rule.condition !== 'increasing') return compare[rule.condition](value, rule.threshold);
    if (previous === undefined) return false;
    return active ? value >= previous : value > previous; // once pending, not going down keeps it
  }

  private clear(key: string, instance: Instance, nowMs: number, events: AlertEvent[]): void {
    this.instances.delete(key);
    if (instance.state === 'firing') events.push(this.event('resolved', false, instance, nowMs));
  }

  private event(status: AlertEvent['status'], repeat: boolean, i: Instance, resolvedAtMs: number | null): AlertEvent {
    return { status, repeat, rule: i.rule, labels: { ...i.labels }, value: i.value, activeSinceMs: i.activeSinceMs, firedAtMs: i.firedAtMs, resolvedAtMs };
  }
}
