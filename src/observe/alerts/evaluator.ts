// Runs the alert engine on a broker: reads the broker's own metrics registry every evaluation
// interval, steps the engine, and hands what changed to every notifier (a few attempts each,
// with a bound on notifications in flight).
import type { Registry } from 'prom-client';
import type { Logger } from '../../replica/logger.js';
import { AlertEngine, type Sample } from './engine.js';
import type { AlertRule } from './rules.js';
import { notificationOf, type AlertNotification, type AlertNotifier } from './notifiers.js';

export interface EvaluatorOptions {
  rules: AlertRule[];
  evaluationIntervalMs: number;
  repeatIntervalMs: number;
  notifiers: AlertNotifier[];
  logger: Logger;
  identity: { broker: string; group: string };
}

const deliveriesInFlightMax = 256;
const deliveryAttemptsMax = 3;
const deliveryRetryDelayMs = 1000;

/** The registry's current samples by metric name (histogram series under their _bucket/_sum/_count names). */
export async function samplesOf(registry: Registry): Promise<Map<string, Sample[]>> {
  const samples = new Map<string, Sample[]>();
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const v of metric.values) {
      const name = (v as { metricName?: string }).metricName ?? metric.name;
      const labels: Record<string, string> = {};
      for (const [k, value] of Object.entries(v.labels)) if (value !== undefined) labels[k] = String(value);
      let list = samples.get(name);
      if (!list) samples.set(name, (list = []));
      list.push({ labels, value: v.value });
    }
  }
  return samples;
}

export class AlertEvaluator {
  readonly engine: AlertEngine;
  private timer: NodeJS.Timeout | null = null;
  private evaluating = false;
  private deliveriesInFlight = 0;
  private stopped = false;
  private readonly deliveries = new Set<Promise<void>>();

  constructor(
    private readonly registry: Registry,
    private readonly options: EvaluatorOptions,
  ) {
    this.engine = new AlertEngine(options.rules, { repeatIntervalMs: options.repeatIntervalMs });
  }

  start(): void {
    this.timer = setInterval(() => void this.evaluateOnce(), this.options.evaluationIntervalMs);
    this.timer.unref();
  }

  /** One evaluation now (skipped while the previous one still runs). */
  async evaluateOnce(): Promise<void> {
    if (this.evaluating || this.stopped) return;
    this.evaluating = true;
    try {
      const events = this.engine.evaluate(await samplesOf(this.registry), Date.now());
      for (const event of events) this.dispatch(notificationOf(event, this.options.identity));
    } catch (error) {
      this.options.logger.error('alert.evaluation.failed', { error: (error as Error).message });
    } finally {
      this.evaluating = false;
    }
  }

  private dispatch(notification: AlertNotification): void {
    for (const notifier of this.options.notifiers) {
      if (this.deliveriesInFlight >= deliveriesInFlightMax) {
        this.options.logger.warn('alert.notification.dropped', {
          alert: notification.alert,
          status: notification.status,
          notifier: notifier.name,
          inFlight: this.deliveriesInFlight,
        });
        continue;
      }
      this.deliveriesInFlight++;
      const delivery = this.deliver(notifier, notification).finally(() => {
        this.deliveriesInFlight--;
        this.deliveries.delete(delivery);
      });
      this.deliveries.add(delivery);
    }
  }

  private async deliver(notifier: AlertNotifier, notification: AlertNotification): Promise<void> {
    for (let attempt = 1; attempt <= deliveryAttemptsMax; attempt++) {
      try {
        await notifier.notify(notification);
        return;
      } catch (error) {
        const last = attempt === deliveryAttemptsMax || this.stopped;
        this.options.logger.warn('alert.notification.failed', {
          alert: notification.alert,
          status: notification.status,
          notifier: notifier.name,
          attempt,
          error: (error as Error).message,
          giveUp: last,
        });
        if (last) return;
        await new Promise((resolve) => setTimeout(resolve, deliveryRetryDelayMs * attempt).unref());
      }
    }
  }

  /** Stops evaluating; waits (bounded by the notifiers' own timeouts) for deliveries under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.deliveries]);
  }
}
