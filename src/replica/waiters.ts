// Promises keyed by an offset: released when a watermark passes their offset, failed when the
// entry they wait for is gone. Kept sorted by offset, so a release touches only what it frees.
import type { MambaError } from '../errors.js';

interface Waiter {
  offset: number; // released once the watermark is >= offset
  resolve: () => void;
  reject: (error: MambaError) => void;
}

export class Waiters {
  private readonly waiters: Waiter[] = [];

  get size(): number {
    return this.waiters.length;
  }

  /** Resolves once `release(w)` is called with w >= offset. */
  wait(offset: number, currentWatermark: number): Promise<void> {
    if (currentWatermark >= offset) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { offset, resolve, reject };
      // Produce requests arrive in offset order, so this is nearly always a push.
      let at = this.waiters.length;
      while (at > 0 && this.waiters[at - 1]!.offset > offset) at--;
      this.waiters.splice(at, 0, waiter);
    });
  }

  release(watermark: number): void {
    let count = 0;
    while (count < this.waiters.length && this.waiters[count]!.offset <= watermark) count++;
    if (count === 0) return;
    for (const waiter of this.waiters.splice(0, count)) waiter.resolve();
  }

  /** Fails every waiter whose offset lies above `endOffset` (those entries may be lost). */
  failAbove(endOffset: number, error: () => MambaError): void {
    let keep = this.waiters.length;
    while (keep > 0 && this.waiters[keep - 1]!.offset > endOffset) keep--;
    for (const waiter of this.waiters.splice(keep)) waiter.reject(error());
  }

  failAll(error: () => MambaError): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error());
  }
}
