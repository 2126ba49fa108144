// Shared pieces of the benchmarks: bounded waits, percentiles, progress on stderr,
// message bodies that carry their id, and CPU time of server processes from /proc.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
export { sleep, waitFor } from '../lib/cluster.js';

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** ours / peer, two decimals; null when either side has no figure. */
export function ratio(ours: number | null, peer: number | null): number | null {
  if (ours === null || peer === null || !Number.isFinite(ours) || !Number.isFinite(peer) || peer === 0) return null;
  return round(ours / peer, 2);
}

export function progress(text: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

/** Prints `label n/total` at most every `everyMs`. */
export function progressCounter(label: string, total: number, everyMs = 2000): (done: number) => void {
  let last = Date.now();
  return (done: number) => {
    const now = Date.now();
    if (now - last >= everyMs || done === total) {
      last = now;
      progress(`${label} ${done}/${total}`);
    }
  };
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

// ---------------------------------------------------------------- message bodies
export const messageBytes = 1024;
const bodyMagic = 0x4d424e43; // "MBNC": marks a body written by the bench
const bodyTemplate = Buffer.alloc(messageBytes, 0x61);

/** A 1 KiB body whose first 8 bytes are a magic number and the message id. */
export function bodyFor(id: number): Buffer {
  const body = Buffer.allocUnsafe(messageBytes);
  bodyTemplate.copy(body);
  body.writeUInt32LE(bodyMagic, 0);
  body.writeUInt32LE(id, 4);
  return body;
}

/** The id a body carries, or -1 when it is not a bench body. */
export function idOf(body: Uint8Array): number {
  if (body.byteLength < 8) return -1;
  const view = Buffer.from(body.buffer, body.byteOffset, 8);
  return view.readUInt32LE(0) === bodyMagic ? view.readUInt32LE(4) : -1;
}

// ---------------------------------------------------------------- CPU time from /proc
let clockTicksPerSecond: number | null = null;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === null) {
    const answer = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim());
    clockTicksPerSecond = Number.isInteger(answer) && answer > 0 ? answer : 100;
  }
  return clockTicksPerSecond;
}

/** utime + stime of one process (all its threads) in microseconds, from /proc/<pid>/stat. */
export function cpuMicroseconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: fields after it start past the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unreadable /proc/${pid}/stat`);
  return ((utime + stime) * 1e6) / ticksPerSecond();
}

/** Sum of cpuMicroseconds over `pids`. */
export function cpuMicrosecondsOf(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + cpuMicroseconds(pid), 0);
}
