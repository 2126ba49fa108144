// Promises keyed by an offset: released when a watermark passes their offset, failed when the
// entry they wait for is gone. Kept sorted by offset, so a release touches only what it frees.
//
// The contract:
//   - wait(offset, w) resolves at once when w >= offset; otherwise once release(w') is called
//     with w' >= offset, or it is rejected by failAbove(e) with e < offset, or by failAll.
//   - Waiters settle in offset order, and those with one offset in the order they waited.
//   - At most `waitersMax` wait at once; beyond that wait() refuses with a retriable
//     ResourceExhaustedError and keeps nothing (the replica refuses a proposal well before, at
//     pendingProposalsMax; this bounds the waits no proposal precedes: retried duplicates and
//     ack=leader flushes).
//   - Offsets and watermarks are integer log offsets; anything else is a caller bug (asserted).
//   - failAll does not close: a later wait waits as any other.
import { assert } from '../assert.js';
import { ResourceExhaustedError, type MambaError } from '../errors.js';

interface Waiter {
  offset: number; // released once the watermark is >= offset
  resolve: () => void;
  reject: (error: MambaError) => void;
}

/** Above the largest pendingProposalsMax the configuration accepts (1,000,000). */
export const waitersMaxDefault = 1 << 20;

function assertOffset(offset: number, what: string): void {
  assert(Number.isSafeInteger(offset) && offset >= 0, `waiters: ${what} ${offset} is not a log offset`);
}

export class Waiters {
  private readonly waiters: Waiter[] = [];

  constructor(readonly waitersMax: number = waitersMaxDefault) {
    assert(Number.isSafeInteger(waitersMax) && waitersMax >= 1, `waiters: bound ${waitersMax}`);
  }

  get size(): number {
    return this.waiters.length;
  }

  /** Resolves once `release(w)` is called with w >= offset (at once if `currentWatermark` is). */
  wait(offset: number, currentWatermark: number): Promise<void> {
    assertOffset(offset, 'offset');
    assertOffset(currentWatermark, 'watermark');
    if (currentWatermark >= offset) return Promise.resolve();
    if (this.waiters.length >= this.waitersMax) {
      return Promise.reject(new ResourceExhaustedError(`${this.waiters.length} requests already wait for replication or a flush (limit ${this.waitersMax})`));
    }
    return new Promise((resolve, reject) => {
      const waiter = { offset, resolve, reject };
      // Produce requests arrive in offset order, so this is nearly always a push.
      let at = this.waiters.length;
      while (at > 0 && this.waiters[at - 1]!.offset > offset) at--;
      this.waiters.splice(at, 0, waiter);
    });
  }

  release(watermark: number): void {
    assertOffset(watermark, 'watermark');
    let count = 0;
    while (count < this.waiters.length && this.waiters[count]!.offset <= watermark) count++;
    if (count === 0) return;
    for (const waiter of this.waiters.splice(0, count)) waiter.resolve();
  }

  /** Fails every waiter whose offset lies above `endOffset` (those entries may be lost). */
  failAbove(endOffset: number, error: () => MambaError): void {
    assertOffset(endOffset, 'end offset');
    let keep = this.waiters.length;
    while (keep > 0 && this.waiters[keep - 1]!.offset > endOffset) keep--;
    for (const waiter of this.waiters.splice(keep)) waiter.reject(error());
  }

  failAll(error: () => MambaError): void {
    for (const waiter of this.waiters.splice(0)) waiter.reject(error());
  }
}
