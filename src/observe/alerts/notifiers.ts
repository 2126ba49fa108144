// Where alerts go: a webhook (HTTP POST of one JSON object), e-mail over SMTP, and the broker's
// own log. A notification is the same object for all three.
import nodemailer from 'nodemailer';
import type { Logger } from '../../replica/logger.js';
import type { AlertEvent } from './engine.js';

export interface AlertNotification {
  status: 'firing' | 'resolved';
  repeat: boolean;
  alert: string;
  severity: string;
  summary: string;
  metric: string;
  condition: string;
  threshold: number;
  value: number;
  labels: Record<string, string>;
  broker: string;
  group: string;
  activeSince: string;
  firedAt: string;
  resolvedAt: string | null;
}

export interface AlertNotifier {
  readonly name: string;
  notify(notification: AlertNotification): Promise<void>;
}

export function notificationOf(event: AlertEvent, identity: { broker: string; group: string }): AlertNotification {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    status: event.status,
    repeat: event.repeat,
    alert: event.rule.name,
    severity: event.rule.severity,
    summary: event.rule.summary,
    metric: event.rule.metric,
    condition: event.rule.condition,
    threshold: event.rule.threshold,
    value: event.value,
    labels: event.labels,
    broker: identity.broker,
    group: identity.group,
    activeSince: iso(event.activeSinceMs),
    firedAt: iso(event.firedAtMs),
    resolvedAt: event.resolvedAtMs === null ? null : iso(event.resolvedAtMs),
  };
}

function subjectOf(n: AlertNotification): string {
  return `[${n.status.toUpperCase()}${n.repeat ? ', repeated' : ''}] ${n.alert} (${n.severity}) on broker ${n.broker}, group ${n.group}`;
}

export class WebhookNotifier implements AlertNotifier {
  readonly name = 'webhook';

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new RangeError(`webhook URL ${url} is not http(s)`);
  }

  async notify(notification: AlertNotification): Promise<void> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(notification),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    await response.arrayBuffer(); // release the connection
    if (!response.ok) throw new Error(`webhook answered HTTP ${response.status}`);
  }
}

export interface SmtpOptions {
  host: string;
  port: number;
  secure: boolean;
  user: string;
  password: string;
  from: string;
  to: string[];
  timeoutMs: number;
}

export class EmailNotifier implements AlertNotifier {
  readonly name = 'email';
  private readonly transport: nodemailer.Transporter;

  constructor(private readonly options: SmtpOptions) {
    this.transport = nodemailer.createTransport({
      host: options.host,
      port: options.port,
      secure: options.secure,
      ...(options.user ? { auth: { user: options.user, pass: options.password } } : {}),
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      socketTimeout: options.timeoutMs,
    });
  }

  async notify(n: AlertNotification): Promise<void> {
    const lines = [
      n.summary,
      '',
      `status: ${n.status}`,
      `alert: ${n.alert}`,
      `severity: ${n.severity}`,
      `condition: ${n.metric} ${n.condition} ${n.threshold}`,
      `value: ${n.value}`,
      `labels: ${Object.entries(n.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
      `active since: ${n.activeSince}`,
      `fired at: ${n.firedAt}`,
      ...(n.resolvedAt ? [`resolved at: ${n.resolvedAt}`] : []),
    ];
    await this.transport.sendMail({ from: this.options.from, to: this.options.to, subject: subjectOf(n), text: `${lines.join('\n')}\n` });
  }

  close(): void {
    this.transport.close();
  }
}

export class LogNotifier implements AlertNotifier {
  readonly name = 'log';

  constructor(private readonly logger: Logger) {}

  async notify(n: AlertNotification): Promise<void> {
    const fields = {
      alert: n.alert,
      severity: n.severity,
      repeat: n.repeat,
      value: n.value,
      threshold: n.threshold,
      condition: n.condition,
      metric: n.metric,
      labels: n.labels,
      summary: n.summary,
    };
    if (n.status === 'firing') this.logger.warn('alert.firing', fields);
    else this.logger.info('alert.resolved', fields);
  }
}
