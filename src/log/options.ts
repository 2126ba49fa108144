// Options of a SegmentLog and their validation: every refusal names the offending key.
import { LogError } from './errors.js';

export type FlushPolicy = { mode: 'sync' } | { mode: 'async'; intervalMs: number };

export interface RetentionPolicy {
  /** Delete whole head segments while the log holds more than this many bytes. */
  bytesMax?: number;
  /** Delete a head segment once its newest batch timestamp is older than this. */
  ageMsMax?: number;
}

export type LogEvent = Record<string, unknown> & { event: string };
export type LogLogger = (event: LogEvent) => void;

export interface SegmentLogOptions {
  dir: string;
  /** Size of each preallocated segment file, header included. Default 64 MiB. */
  segmentBytes?: number;
  /** Data bytes between two sparse index entries. Default 4096. */
  indexIntervalBytes?: number;
  flush: FlushPolicy;
  retention?: RetentionPolicy;
  /** Receives one object per notable event (truncation, rebuilt index, recovery progress). */
  logger?: LogLogger;
  /**
   * What recovery does with damage (a bad segment header, CRC errors before the tail):
   * `refuse` (default) fails the open; `quarantine` scans every segment, moves damaged segment
   * files (and every later one) into `quarantine/` beside the log directory, never deleting
   * them, and opens the log ending at the last good offset. A replica uses `quarantine`: its
   * leader holds every byte it lost.
   */
  onDamage?: 'refuse' | 'quarantine';
}

export interface ResolvedOptions {
  dir: string;
  segmentBytes: number;
  indexIntervalBytes: number;
  flush: FlushPolicy;
  retention: { bytesMax: number | null; ageMsMax: number | null };
  logger: LogLogger;
  onDamage: 'refuse' | 'quarantine';
}

export const segmentBytesDefault = 64 * 1024 * 1024;
export const segmentBytesMin = 4096;
/** Positions in a segment are u32; keeping below 1 GiB leaves room and bounds one mapping. */
export const segmentBytesMax = 1024 * 1024 * 1024;
export const indexIntervalBytesDefault = 4096;
export const indexIntervalBytesMin = 64;
export const flushIntervalMsMax = 3_600_000;

function integerIn(value: unknown, minimum: number, maximum: number, key: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < minimum || value > maximum) {
    throw new LogError('bad_config', `${key} must be an integer in [${minimum}, ${maximum}], got ${String(value)}`, { key });
  }
  return value;
}

function optionalIntegerIn(value: unknown, minimum: number, maximum: number, key: string): number | null {
  return value === undefined || value === null ? null : integerIn(value, minimum, maximum, key);
}

function resolveFlush(flush: unknown): FlushPolicy {
  if (typeof flush !== 'object' || flush === null) {
    throw new LogError('bad_config', 'flush must be { mode: "sync" } or { mode: "async", intervalMs }', { key: 'flush' });
  }
  const mode = (flush as { mode?: unknown }).mode;
  if (mode === 'sync') return { mode: 'sync' };
  if (mode === 'async') {
    const intervalMs = integerIn((flush as { intervalMs?: unknown }).intervalMs, 1, flushIntervalMsMax, 'flush.intervalMs');
    return { mode: 'async', intervalMs };
  }
  throw new LogError('bad_config', `flush.mode must be "sync" or "async", got ${String(mode)}`, { key: 'flush.mode' });
}

const defaultLogger: LogLogger = (event) => process.stderr.write(`${JSON.stringify(event)}\n`);

export function resolveOptions(options: SegmentLogOptions): ResolvedOptions {
  if (typeof options.dir !== 'string' || options.dir.length === 0) {
    throw new LogError('bad_config', 'dir must be a non-empty path', { key: 'dir' });
  }
  const segmentBytes = integerIn(options.segmentBytes ?? segmentBytesDefault, segmentBytesMin, segmentBytesMax, 'segmentBytes');
  const indexIntervalBytes = integerIn(options.indexIntervalBytes ?? indexIntervalBytesDefault, indexIntervalBytesMin, segmentBytes, 'indexIntervalBytes');
  const retention = options.retention ?? {};
  return {
    dir: options.dir,
    segmentBytes,
    indexIntervalBytes,
    flush: resolveFlush(options.flush),
    retention: {
      bytesMax: optionalIntegerIn(retention.bytesMax, 0, Number.MAX_SAFE_INTEGER, 'retention.bytesMax'),
      ageMsMax: optionalIntegerIn(retention.ageMsMax, 0, Number.MAX_SAFE_INTEGER, 'retention.ageMsMax'),
    },
    logger: options.logger ?? defaultLogger,
    onDamage: options.onDamage === 'quarantine' ? 'quarantine' : 'refuse',
  };
}
