// Shared pieces of the benchmarks: free ports, bounded waits, percentiles, progress on stderr.
export { freePort, sleep, waitFor } from '../lib/cluster.js';

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function progress(text: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

/** Prints `label n/total` at most every `everyMs`. */
export function progressCounter(label: string, total: number, everyMs = 1000): (done: number) => void {
  let last = 0;
  return (done: number) => {
    const now = Date.now();
    if (now - last >= everyMs || done === total) {
      last = now;
      progress(`${label} ${done}/${total}`);
    }
  };
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
