// The consume-queue index (RocketMQ's ConsumeQueue, kept in memory): for every queue, which
// batches of the group's log hold which queue offsets. A group's log interleaves the batches of
// all its queues; every data batch names its queue and carries the queue offset of its first
// message, stamped by the leader, so the index can be rebuilt from the log (also after retention
// removed the head) and is identical on every replica. The one thing the log cannot give back is
// the end of a queue whose batches all left it: the latest snapshot's queue heads do
// (setEndOfEmpty, state-snapshot.ts).
import { assert } from '../assert.js';

export interface IndexedBatch {
  queueOffset: number; // queue offset of the batch's first message
  logOffset: number; // group-log offset of the batch (its first record)
  count: number; // messages in the batch
}

export function queueKey(topic: string, queue: number): string {
  return `${topic}\u0000${queue}`;
}

class QueueBatches {
  readonly batches: IndexedBatch[] = [];

  get startOffset(): number {
    return this.batches.length ? this.batches[0]!.queueOffset : this.endAfterDrop;
  }

  get endOffset(): number {
    const last = this.batches[this.batches.length - 1];
    return last ? last.queueOffset + last.count : this.endAfterDrop;
  }

  /** Queue end kept when every batch was dropped (truncation or retention), so numbering goes on. */
  endAfterDrop = 0;

  /** Index of the last batch whose queueOffset <= offset (or -1). */
  find(queueOffset: number): number {
    let lo = 0;
    let hi = this.batches.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.batches[mid]!.queueOffset <= queueOffset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Queue offset one past the last message whose batch lies wholly below `logOffsetEnd`. */
  endBelow(logOffsetEnd: number): number {
    for (let i = this.batches.length - 1; i >= 0; i--) {
      const b = this.batches[i]!;
      if (b.logOffset + b.count <= logOffsetEnd) return b.queueOffset + b.count;
    }
    return this.startOffset;
  }
}

export class QueueIndex {
  private readonly queues = new Map<string, QueueBatches>();

  private queueOf(key: string): QueueBatches {
    let q = this.queues.get(key);
    if (!q) {
      q = new QueueBatches();
      this.queues.set(key, q);
    }
    return q;
  }

  /** Adds a batch appended to the log. Batches of one queue arrive in queue-offset order. */
  add(key: string, batch: IndexedBatch): void {
    const q = this.queueOf(key);
    const last = q.batches[q.batches.length - 1];
    if (last) {
      assert(batch.logOffset >= last.logOffset + last.count, `queue index: log offset ${batch.logOffset} goes back`);
      assert(
        batch.queueOffset === last.queueOffset + last.count,
        `queue index: queue offset ${batch.queueOffset} is not contiguous with ${last.queueOffset + last.count}`,
      );
    }
    q.batches.push(batch);
  }

  /** Forgets every batch at or above `logOffset` (the log was truncated there). */
  truncateFrom(logOffset: number): void {
    for (const q of this.queues.values()) {
      let keep = q.batches.length;
      while (keep > 0 && q.batches[keep - 1]!.logOffset >= logOffset) keep--;
      if (keep < q.batches.length) {
        const firstDropped = q.batches[keep]!;
        if (keep === 0) q.endAfterDrop = firstDropped.queueOffset;
        q.batches.length = keep;
      }
    }
  }

  /** Forgets every batch below `logOffset` (retention removed the head of the log). */
  dropBelow(logOffset: number): void {
    for (const q of this.queues.values()) {
      let drop = 0;
      while (drop < q.batches.length && q.batches[drop]!.logOffset < logOffset) drop++;
      if (drop > 0) {
        const end = q.endOffset;
        q.batches.splice(0, drop);
        if (q.batches.length === 0) q.endAfterDrop = end;
      }
    }
  }

  /** Forgets a queue entirely (its topic was deleted). */
  remove(key: string): void {
    this.queues.delete(key);
  }

  /** Forgets every queue of `topic` (deleted, or re-created: its queues start again at 0). */
  removeTopic(topic: string): void {
    // A topic name holds no control character, so no other topic's keys share this prefix.
    const prefix = queueKey(topic, 0).slice(0, -1);
    for (const key of [...this.queues.keys()]) if (key.startsWith(prefix)) this.queues.delete(key);
  }

  /** Forgets everything (the state was replaced by a snapshot's). */
  clear(): void {
    this.queues.clear();
  }

  /**
   * A queue with no batch in the index ends at `end` (a snapshot's head: its batches all left the
   * log), so the next batch is numbered from there, not from 0.
   */
  setEndOfEmpty(key: string, end: number): void {
    assert(Number.isSafeInteger(end) && end >= 0, `queue index: end ${end} is not an offset`);
    const q = this.queueOf(key);
    assert(q.batches.length === 0, `queue index: a queue with ${q.batches.length} batches has its end from its batches`);
    assert(end >= q.endAfterDrop, `queue index: end ${end} goes back from ${q.endAfterDrop}`);
    q.endAfterDrop = end;
  }

  hasBatches(key: string): boolean {
    return (this.queues.get(key)?.batches.length ?? 0) > 0;
  }

  startOffset(key: string): number {
    return this.queues.get(key)?.startOffset ?? 0;
  }

  /**
   * Queue offset of the first batch at or above `logStartOffset` (the end when none is): where the
   * queue starts once the log starts there.
   */
  startFromLog(key: string, logStartOffset: number): number {
    const q = this.queues.get(key);
    if (!q) return 0;
    return q.batches.find((b) => b.logOffset >= logStartOffset)?.queueOffset ?? q.endOffset;
  }

  /** End of the queue counting every appended batch (committed or not). */
  endOffset(key: string): number {
    return this.queues.get(key)?.endOffset ?? 0;
  }

  /** End of the queue counting only batches wholly below the group's high watermark. */
  committedEndOffset(key: string, highWatermark: number): number {
    return this.queues.get(key)?.endBelow(highWatermark) ?? 0;
  }

  /** Batches from the one holding `queueOffset`, at most `batchesMax`, all below `logOffsetEnd`. */
  batchesFrom(key: string, queueOffset: number, logOffsetEnd: number, batchesMax: number): IndexedBatch[] {
    const q = this.queues.get(key);
    if (!q) return [];
    const out: IndexedBatch[] = [];
    let i = Math.max(0, q.find(queueOffset));
    for (; i < q.batches.length && out.length < batchesMax; i++) {
      const b = q.batches[i]!;
      if (b.logOffset + b.count > logOffsetEnd) break;
      if (b.queueOffset + b.count > queueOffset) out.push(b);
    }
    return out;
  }
}
