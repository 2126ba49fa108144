// Idempotent producers: for every (producer id, queue) the last few batches appended, so a
// retried batch is recognised and answered with the offsets it already has instead of being
// stored twice. Built from the log itself (every Messages command carries producer id and
// sequence), on the leader and on every follower alike, so it survives a failover; trimmed by
// truncation exactly like the queue index.
//
// The rules (Kafka's idempotent producer is the reference):
//   1. Check (the leader, before it appends): the next sequence is new; past it is a gap; a retry
//      of a remembered batch is a duplicate; anything else below it is stale. A producer the
//      table does not know (new, or none of its batches is in the log any more) starts wherever
//      it is: there is nothing to compare with.
//   2. Add (every replica, in log order): what the leader appended is authoritative. Replicas may
//      know different things about a producer (one truncated its batches, or replayed a log whose
//      head retention had removed, while the leader never saw them), so a sequence that does not
//      follow on is applied, not asserted: past the end it continues the run, below it it starts a
//      new run of the producer, as the leader that appended it saw it (Kafka checks sequences only
//      for client appends, never for replication).
//   3. Truncate (entries above the high watermark were dropped): the table keeps what it can
//      prove about the log that remains, never more. Its remembered batches below the cut; if
//      none, the end of the newest batch it knows to be below the cut (the one that last left
//      the window); if the cut removed every batch of the run, nothing: the producer is unknown,
//      exactly as to a leader whose log never held those batches. If the cut went below
//      everything the table remembers but not below the run's first batch, the next sequence is
//      unknown, but every batch of the run still in the log lies below the sequence of the batch
//      that last left the window (truncated too): from there on anything is new (a leader never
//      stores a batch twice), below it anything is stale.
import { assert } from '../assert.js';

export interface ProducedBatch {
  sequence: number; // sequence of the batch's first message
  count: number;
  queueOffset: number;
  logOffset: number;
}

/** Batches remembered per (producer, queue): more than a client keeps in flight. */
export const producerBatchesKept = 8;

/**
 * One producer on one queue: a run of batches whose sequences only grow (each at or past the end
 * of the one before), the last few remembered.
 */
interface ProducerQueue {
  /** The last batches of the run (at most producerBatchesKept), in log order. */
  batches: ProducedBatch[];
  /** The batch that last left `batches` by age (just before batches[0]); null when none did. */
  forgotten: ProducedBatch | null;
  /** Log offset of the run's first batch: a truncation at or below it removes the whole run. */
  runLogOffset: number;
  /** Sequence of the run's first batch. */
  runSequence: number;
  /**
   * Used only when `batches` and `forgotten` are both empty (rule 3): every batch of the run
   * still in the log has a sequence below this one, and none at or above it is stored.
   */
  storedBelowSequence: number;
}

export type SequenceCheck =
  | { kind: 'new' }
  | { kind: 'duplicate'; batch: ProducedBatch }
  | { kind: 'gap'; expected: number }
  | { kind: 'stale'; expected: number };

export function producerKey(producerId: number, topic: string, queue: number): string {
  return `${producerId}\u0000${topic}\u0000${queue}`;
}

/** Where the producer's run ends as far as the table knows: exactly, or only a lower bound of what is not stored. */
function expectedOf(p: ProducerQueue): { sequence: number; exact: boolean } {
  const last = p.batches[p.batches.length - 1] ?? p.forgotten;
  return last ? { sequence: last.sequence + last.count, exact: true } : { sequence: p.storedBelowSequence, exact: false };
}

function newRun(batch: ProducedBatch): ProducerQueue {
  return { batches: [batch], forgotten: null, runLogOffset: batch.logOffset, runSequence: batch.sequence, storedBelowSequence: batch.sequence };
}

export class ProducerTable {
  private readonly producers = new Map<string, ProducerQueue>();

  /** The lowest sequence `check` calls new (0 for a producer the table does not know: it takes any). */
  nextSequence(key: string): number {
    const p = this.producers.get(key);
    return p ? expectedOf(p).sequence : 0;
  }

  /** What a batch with `sequence` from this producer is: new, a retry of one stored, or out of order. */
  check(key: string, sequence: number, count: number): SequenceCheck {
    const p = this.producers.get(key);
    if (!p) return { kind: 'new' };
    const expected = expectedOf(p);
    if (sequence === expected.sequence) return { kind: 'new' };
    if (sequence > expected.sequence) return expected.exact ? { kind: 'gap', expected: expected.sequence } : { kind: 'new' };
    const batch = p.batches.find((b) => b.sequence === sequence && b.count === count);
    return batch ? { kind: 'duplicate', batch } : { kind: 'stale', expected: expected.sequence };
  }

  /** A batch was appended to the log (in log order): applied as the leader appended it (rule 2). */
  add(key: string, batch: ProducedBatch): void {
    assert(Number.isSafeInteger(batch.sequence) && batch.sequence >= 0, `producer sequence ${batch.sequence} is not a sequence`);
    assert(Number.isSafeInteger(batch.count) && batch.count >= 1, `producer batch of ${batch.count} messages`);
    const p = this.producers.get(key);
    if (!p) {
      this.producers.set(key, newRun(batch));
      return;
    }
    const newest = p.batches[p.batches.length - 1] ?? p.forgotten;
    if (newest) {
      assert(batch.logOffset >= newest.logOffset + newest.count, `producer batch at log offset ${batch.logOffset} goes back before ${newest.logOffset}`);
    } else {
      assert(batch.logOffset > p.runLogOffset, `producer batch at log offset ${batch.logOffset} goes back before its run at ${p.runLogOffset}`);
    }
    // Below where the run ends (below its first batch, when where it ends is unknown): the
    // appending leader did not know the run, or the producer started over. A new run: what the
    // table knew of the old one no longer applies.
    const expected = expectedOf(p);
    if (batch.sequence < (expected.exact ? expected.sequence : p.runSequence)) {
      this.producers.set(key, newRun(batch));
      return;
    }
    p.batches.push(batch);
    if (p.batches.length > producerBatchesKept) p.forgotten = p.batches.shift()!;
  }

  /** Forgets batches at or above `logOffset` (the log was truncated there), keeping what it can prove (rule 3). */
  truncateFrom(logOffset: number): void {
    for (const [key, p] of this.producers) {
      let keep = p.batches.length;
      while (keep > 0 && p.batches[keep - 1]!.logOffset >= logOffset) keep--;
      p.batches.length = keep;
      if (keep > 0) continue; // the run ends with its last remembered batch below the cut
      if (p.forgotten && p.forgotten.logOffset < logOffset) continue; // it ends with the batch that last left the window
      if (p.runLogOffset >= logOffset) {
        this.producers.delete(key); // no batch of the run is left: unknown
        continue;
      }
      // Older batches of the run remain: where they end is unknown, but below the batch that last left the window.
      if (p.forgotten) p.storedBelowSequence = p.forgotten.sequence;
      p.forgotten = null;
    }
  }

  removeTopic(topic: string): void {
    for (const key of [...this.producers.keys()]) if (key.split('\u0000')[1] === topic) this.producers.delete(key);
  }
}
