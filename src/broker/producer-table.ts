// Idempotent producers: for every (producer id, queue) the last few batches appended, so a
// retried batch is recognised and answered with the offsets it already has instead of being
// stored twice. Built from the log itself (every Messages command carries producer id and
// sequence), on the leader and on every follower alike, so it survives a failover; trimmed by
// truncation exactly like the queue index.
import { assert } from '../assert.js';

export interface ProducedBatch {
  sequence: number; // sequence of the batch's first message
  count: number;
  queueOffset: number;
  logOffset: number;
}

/** Batches remembered per (producer, queue): more than a client keeps in flight. */
export const producerBatchesKept = 8;

interface ProducerQueue {
  batches: ProducedBatch[];
  /** Next sequence expected when every remembered batch is gone (after truncation). */
  nextSequenceFloor: number;
}

export type SequenceCheck =
  | { kind: 'new' }
  | { kind: 'duplicate'; batch: ProducedBatch }
  | { kind: 'gap'; expected: number }
  | { kind: 'stale'; expected: number };

export function producerKey(producerId: number, topic: string, queue: number): string {
  return `${producerId}\u0000${topic}\u0000${queue}`;
}

export class ProducerTable {
  private readonly producers = new Map<string, ProducerQueue>();

  nextSequence(key: string): number {
    const p = this.producers.get(key);
    if (!p) return 0;
    const last = p.batches[p.batches.length - 1];
    return last ? last.sequence + last.count : p.nextSequenceFloor;
  }

  /** What a batch with `sequence` from this producer is: new, a retry of one stored, or out of order. */
  check(key: string, sequence: number, count: number): SequenceCheck {
    // A producer this table does not know (new, or its batches left with retention) starts
    // wherever it is: there is nothing to compare with.
    if (!this.producers.has(key)) return { kind: 'new' };
    const expected = this.nextSequence(key);
    if (sequence === expected) return { kind: 'new' };
    if (sequence > expected) return { kind: 'gap', expected };
    const batch = this.producers.get(key)?.batches.find((b) => b.sequence === sequence && b.count === count);
    return batch ? { kind: 'duplicate', batch } : { kind: 'stale', expected };
  }

  /** A batch was appended to the log (in log order). */
  add(key: string, batch: ProducedBatch): void {
    let p = this.producers.get(key);
    if (!p) this.producers.set(key, (p = { batches: [], nextSequenceFloor: batch.sequence }));
    const expected = this.nextSequence(key);
    // A producer that starts over (new session with the same id) restarts at 0.
    assert(batch.sequence === expected || batch.sequence === 0, `producer sequence ${batch.sequence} appended where ${expected} was expected`);
    p.batches.push(batch);
    if (p.batches.length > producerBatchesKept) p.batches.shift();
  }

  /** Forgets batches at or above `logOffset` (the log was truncated there). */
  truncateFrom(logOffset: number): void {
    for (const p of this.producers.values()) {
      let keep = p.batches.length;
      while (keep > 0 && p.batches[keep - 1]!.logOffset >= logOffset) keep--;
      if (keep < p.batches.length) {
        if (keep === 0) p.nextSequenceFloor = p.batches[0]!.sequence;
        p.batches.length = keep;
      }
    }
  }

  removeTopic(topic: string): void {
    for (const key of [...this.producers.keys()]) if (key.split('\u0000')[1] === topic) this.producers.delete(key);
  }
}
