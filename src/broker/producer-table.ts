// Idempotent producers: for every (producer id, queue) the last few batches appended, so a
// retried batch is recognised and answered with the offsets it already has instead of being
// stored twice. Built from the log itself (every Messages command carries producer id and
// sequence), on the leader and on every follower alike, so it survives a failover; trimmed by
// truncation exactly like the queue index; what the log no longer holds comes from the latest
// snapshot (rule 6).
//
// The rules (Kafka's idempotent producer is the reference):
//   1. Check (the leader, before it appends): the next sequence is new; past it is a gap; a retry
//      of a remembered batch is a duplicate; anything else below it is stale. A producer the
//      table does not know (new, expired by rule 5, or every batch of its run truncated) is taken
//      at sequence 0 only, where every producer id starts (src/client/producer-lane.ts); any other
//      sequence is `unknown`: it may repeat a batch the table no longer remembers, so taking it
//      could store it twice. The producer starts over under a new id (Kafka answers
//      UNKNOWN_PRODUCER_ID for the same reason).
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
//   4. Retention (the log now starts at S): remembered batches below S leave the window as if
//      aged out (their retries are stale; where the run ends stays known). The producer stays:
//      what identifies its next batch does not depend on the log holding its last one.
//   5. Bound: at most producersMax producers; adding one more expires the least recently
//      appended (Map order is append order). Every replica applies the same appends in the same
//      order, so they expire the same producers.
//   6. Snapshot: a snapshot at S holds each producer as a truncation at S would leave it (rule
//      3, so never more than entries below S prove); producers the log no longer shows are put
//      back from it as they were at S, as the oldest (they appended nothing since). Not trimmed to
//      the log start: after an install the log starts at S, and the batches just below it are
//      the ones a producer may still retry.
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
 * Producers (producer id, topic, queue) the table keeps by default (rule 5). An SDK producer holds
 * one id per queue it writes, so this covers e.g. 1,000 producer processes writing 100 queues of
 * one group. Each costs at most ~0.7 KB here (8 batches) and ~0.3 KB in a snapshot: the table
 * stays under ~70 MB, its part of a snapshot under ~30 MB.
 */
export const producersMaxDefault = 100_000;

/**
 * One producer on one queue: a run of batches whose sequences only grow (each at or past the end
 * of the one before), the last few remembered. Also what a snapshot holds of it.
 */
export interface ProducerState {
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
  | { kind: 'stale'; expected: number }
  /** Not known, and not at sequence 0: its batches may be stored already (rule 1). */
  | { kind: 'unknown' };

export function producerKey(producerId: number, topic: string, queue: number): string {
  return `${producerId}\u0000${topic}\u0000${queue}`;
}

/** Where the producer's run ends as far as the table knows: exactly, or only a lower bound of what is not stored. */
function expectedOf(p: ProducerState): { sequence: number; exact: boolean } {
  const last = p.batches[p.batches.length - 1] ?? p.forgotten;
  return last ? { sequence: last.sequence + last.count, exact: true } : { sequence: p.storedBelowSequence, exact: false };
}

function newRun(batch: ProducedBatch): ProducerState {
  return { batches: [batch], forgotten: null, runLogOffset: batch.logOffset, runSequence: batch.sequence, storedBelowSequence: batch.sequence };
}

/** What the table can prove of `p` once the log ends at `logOffset` (rule 3); null when no batch of its run is left. */
function cutBelow(p: ProducerState, logOffset: number): ProducerState | null {
  const newest = p.batches[p.batches.length - 1] ?? p.forgotten;
  if (newest && newest.logOffset < logOffset) return p; // the cut is past everything it knows
  const batches = p.batches.filter((b) => b.logOffset < logOffset);
  if (batches.length > 0) return { ...p, batches }; // the run ends with its last remembered batch below the cut
  if (p.forgotten && p.forgotten.logOffset < logOffset) return { ...p, batches }; // it ends with the batch that last left the window
  if (p.runLogOffset >= logOffset) return null; // no batch of the run is left: unknown
  // Older batches of the run remain: where they end is unknown, but below the batch that last left the window.
  return { ...p, batches, forgotten: null, storedBelowSequence: p.forgotten ? p.forgotten.sequence : p.storedBelowSequence };
}

/** Rule 4: remembered batches below `logOffset` leave the window; the newest of them marks where the run ends. */
function dropStateBelow(p: ProducerState, logOffset: number): void {
  let dropCount = 0;
  while (dropCount < p.batches.length && p.batches[dropCount]!.logOffset < logOffset) dropCount++;
  if (dropCount === 0) return;
  p.forgotten = p.batches[dropCount - 1]!;
  p.batches.splice(0, dropCount);
}

function checkBatch(batch: ProducedBatch): void {
  assert(Number.isSafeInteger(batch.sequence) && batch.sequence >= 0, `producer sequence ${batch.sequence} is not a sequence`);
  assert(Number.isSafeInteger(batch.count) && batch.count >= 1, `producer batch of ${batch.count} messages`);
}

/** The invariants of one producer's state (checked on what a snapshot brings, after its decoder checked the same). */
function checkState(p: ProducerState): void {
  assert(p.batches.length <= producerBatchesKept, `producer state holds ${p.batches.length} batches`);
  const known = p.forgotten ? [p.forgotten, ...p.batches] : p.batches;
  known.forEach((b, index) => {
    checkBatch(b);
    const before = known[index - 1];
    if (before) assert(b.logOffset >= before.logOffset + before.count, `producer batch at log offset ${b.logOffset} goes back before ${before.logOffset}`);
  });
  const first = known[0];
  if (first) assert(p.runLogOffset <= first.logOffset, `producer run at log offset ${p.runLogOffset} starts after its batch at ${first.logOffset}`);
}

export class ProducerTable {
  /** In append order, least recent first (rule 5). */
  private producers = new Map<string, ProducerState>();
  private expiredCount = 0;

  constructor(readonly producersMax: number = producersMaxDefault) {
    assert(Number.isSafeInteger(producersMax) && producersMax >= 1, `producersMax ${producersMax} is not a bound`);
  }

  get size(): number {
    return this.producers.size;
  }

  /** Producers expired by the bound since this table was made (rule 5). */
  get expired(): number {
    return this.expiredCount;
  }

  has(key: string): boolean {
    return this.producers.has(key);
  }

  /** The lowest sequence `check` calls new (0 for a producer the table does not know). */
  nextSequence(key: string): number {
    const p = this.producers.get(key);
    return p ? expectedOf(p).sequence : 0;
  }

  /** What a batch with `sequence` from this producer is: new, a retry of one stored, or out of order (rule 1). */
  check(key: string, sequence: number, count: number): SequenceCheck {
    const p = this.producers.get(key);
    if (!p) return sequence === 0 ? { kind: 'new' } : { kind: 'unknown' };
    const expected = expectedOf(p);
    if (sequence === expected.sequence) return { kind: 'new' };
    if (sequence > expected.sequence) return expected.exact ? { kind: 'gap', expected: expected.sequence } : { kind: 'new' };
    const batch = p.batches.find((b) => b.sequence === sequence && b.count === count);
    return batch ? { kind: 'duplicate', batch } : { kind: 'stale', expected: expected.sequence };
  }

  /** A batch was appended to the log (in log order): applied as the leader appended it (rule 2). */
  add(key: string, batch: ProducedBatch): void {
    checkBatch(batch);
    const p = this.producers.get(key);
    let next: ProducerState;
    if (!p) next = newRun(batch);
    else {
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
      next = batch.sequence < (expected.exact ? expected.sequence : p.runSequence) ? newRun(batch) : p;
      if (next === p) {
        p.batches.push(batch);
        if (p.batches.length > producerBatchesKept) p.forgotten = p.batches.shift()!;
      }
    }
    // Most recently appended last (rule 5).
    this.producers.delete(key);
    this.producers.set(key, next);
    this.expireOldest();
  }

  /** Forgets batches at or above `logOffset` (the log was truncated there), keeping what it can prove (rule 3). */
  truncateFrom(logOffset: number): void {
    for (const [key, p] of this.producers) {
      const cut = cutBelow(p, logOffset);
      if (cut === null) this.producers.delete(key);
      else if (cut !== p) this.producers.set(key, cut); // an existing key keeps its place
    }
  }

  /** Retention removed the log below `logOffset` (rule 4). */
  dropBelow(logOffset: number): void {
    for (const p of this.producers.values()) dropStateBelow(p, logOffset);
  }

  removeTopic(topic: string): void {
    for (const key of [...this.producers.keys()]) if (key.split('\u0000')[1] === topic) this.producers.delete(key);
  }

  /** Forgets every producer (the state was replaced by a snapshot's). */
  clear(): void {
    this.producers.clear();
  }

  /** Each producer as entries below `logOffset` leave it (rule 6), least recently appended first. */
  *statesBelow(logOffset: number): IterableIterator<{ key: string; state: ProducerState }> {
    for (const [key, p] of this.producers) {
      const state = cutBelow(p, logOffset);
      if (state !== null) yield { key, state };
    }
  }

  /**
   * Puts back producers of a snapshot that the table does not know (the log no longer shows
   * them), as older than every producer it knows (rule 6). Expires the oldest beyond the bound.
   */
  restoreOlder(entries: Iterable<{ key: string; state: ProducerState }>): void {
    const merged = new Map<string, ProducerState>();
    for (const { key, state } of entries) {
      if (this.producers.has(key) || merged.has(key)) continue; // what the log shows is newer
      checkState(state);
      merged.set(key, { ...state, batches: [...state.batches] });
    }
    for (const [key, p] of this.producers) merged.set(key, p);
    this.producers = merged;
    this.expireOldest();
  }

  private expireOldest(): void {
    while (this.producers.size > this.producersMax) {
      const oldest = this.producers.keys().next().value as string;
      this.producers.delete(oldest);
      this.expiredCount++;
    }
  }
}
