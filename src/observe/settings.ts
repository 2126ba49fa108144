// The observability settings keys of a cluster file (`tracing:` and `alerts:` under `settings:`,
// per broker overridable like every setting), their defaults and their validation.
import { at, fail, readArray, readBoolean, readInteger, readNumber, readObject, readString, rejectUnknownKeys, type Where } from '../validation.js';
import { defaultTracingSettings, type TracingSettings } from './tracing.js';

export type { TracingSettings } from './tracing.js';

export interface SmtpSettings {
  /** '' = no e-mail. */
  host: string;
  port: number;
  /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it. */
  secure: boolean;
  user: string;
  /** Name of the environment variable that holds the SMTP password (never the password itself). */
  passwordEnv: string;
  from: string;
  to: string[];
}

export interface AlertSettings {
  /** Evaluate alert rules on this broker (notifying at least its log). */
  enabled: boolean;
  /** YAML or JSON rules file; '' = the default rules. */
  rulesFile: string;
  evaluationIntervalMs: number;
  /** A firing alert is notified again after this long. */
  repeatIntervalMs: number;
  /** Resident memory limit of the broker: threshold of the default MemoryOverLimit rule. */
  memoryBytesMax: number;
  /** '' = no webhook. */
  webhookUrl: string;
  notifyTimeoutMs: number;
  smtp: SmtpSettings;
}

export const defaultAlertSettings: AlertSettings = {
  enabled: true,
  rulesFile: '',
  evaluationIntervalMs: 5000,
  repeatIntervalMs: 4 * 3_600_000,
  memoryBytesMax: 2 * 1024 * 1024 * 1024,
  webhookUrl: '',
  notifyTimeoutMs: 5000,
  smtp: { host: '', port: 587, secure: false, user: '', passwordEnv: '', from: '', to: [] },
};

export { defaultTracingSettings };

/** A string that may be empty (empty turns the feature off). */
function readText(value: unknown, where: Where): string {
  if (typeof value !== 'string') fail(where, 'must be a string');
  return value;
}

export function readTracing(value: unknown, where: Where, base: TracingSettings): TracingSettings {
  const f = readObject(value, where);
  rejectUnknownKeys(f, Object.keys(defaultTracingSettings), where);
  const t = { ...base };
  if (f.otlpEndpoint !== undefined) t.otlpEndpoint = readUrl(f.otlpEndpoint, at(where, 'otlpEndpoint'));
  if (f.samplingRatio !== undefined) t.samplingRatio = readNumber(f.samplingRatio, at(where, 'samplingRatio'), 0, 1);
  return t;
}

function readUrl(value: unknown, where: Where): string {
  const text = readText(value, where);
  if (text === '') return text;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    fail(where, `"${text}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(where, `"${text}" is not an http(s) URL`);
  return text;
}

export function readAlerts(value: unknown, where: Where, base: AlertSettings): AlertSettings {
  const f = readObject(value, where);
  rejectUnknownKeys(f, Object.keys(defaultAlertSettings), where);
  const a: AlertSettings = { ...base, smtp: { ...base.smtp } };
  if (f.enabled !== undefined) a.enabled = readBoolean(f.enabled, at(where, 'enabled'));
  if (f.rulesFile !== undefined) a.rulesFile = readText(f.rulesFile, at(where, 'rulesFile'));
  if (f.evaluationIntervalMs !== undefined) a.evaluationIntervalMs = readInteger(f.evaluationIntervalMs, at(where, 'evaluationIntervalMs'), 100, 3_600_000);
  if (f.repeatIntervalMs !== undefined) a.repeatIntervalMs = readInteger(f.repeatIntervalMs, at(where, 'repeatIntervalMs'), 1000, 7 * 24 * 3_600_000);
  if (f.memoryBytesMax !== undefined) a.memoryBytesMax = readInteger(f.memoryBytesMax, at(where, 'memoryBytesMax'), 1024 * 1024, Number.MAX_SAFE_INTEGER);
  if (f.webhookUrl !== undefined) a.webhookUrl = readUrl(f.webhookUrl, at(where, 'webhookUrl'));
  if (f.notifyTimeoutMs !== undefined) a.notifyTimeoutMs = readInteger(f.notifyTimeoutMs, at(where, 'notifyTimeoutMs'), 100, 120_000);
  if (f.smtp !== undefined) a.smtp = readSmtp(f.smtp, at(where, 'smtp'), a.smtp);
  return a;
}

function readSmtp(value: unknown, where: Where, base: SmtpSettings): SmtpSettings {
  const f = readObject(value, where);
  rejectUnknownKeys(f, Object.keys(defaultAlertSettings.smtp), where);
  const s: SmtpSettings = { ...base, to: [...base.to] };
  if (f.host !== undefined) s.host = readText(f.host, at(where, 'host'));
  if (f.port !== undefined) s.port = readInteger(f.port, at(where, 'port'), 1, 65535);
  if (f.secure !== undefined) s.secure = readBoolean(f.secure, at(where, 'secure'));
  if (f.user !== undefined) s.user = readText(f.user, at(where, 'user'));
  if (f.passwordEnv !== undefined) s.passwordEnv = readString(f.passwordEnv, at(where, 'passwordEnv'), /^[A-Za-z_][A-Za-z0-9_]*$/);
  if (f.from !== undefined) s.from = readString(f.from, at(where, 'from'));
  if (f.to !== undefined) s.to = readArray(f.to, at(where, 'to')).map((x, i) => readString(x, at(at(where, 'to'), i), /^[^\s@]+@[^\s@]+$/));
  if (s.host !== '' && (s.from === '' || s.to.length === 0)) fail(where, 'an SMTP host needs `from` and at least one address in `to`');
  return s;
}
