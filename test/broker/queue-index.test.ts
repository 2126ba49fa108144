// The consume-queue index (src/broker/queue-index.ts): each test names the rule it checks; the
// property test at the end runs random appends, commits, truncations, retention and topic
// deletions against a model that keeps the whole group log, and rebuilds a second index from the
// retained log after every step (the index is meant to be rebuildable from the log alone).
// A property failure prints fast-check's seed and path; pass them in fc.assert's options to replay it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { InvariantError } from '../../src/assert.js';
import { QueueIndex, queueKey, type IndexedBatch } from '../../src/broker/queue-index.js';
import { LeaderLog, openState, startState, withDir } from './state-fixtures.js';

const queueA = queueKey('orders', 0);
const queueB = queueKey('orders', 1);

function batch(queueOffset: number, logOffset: number, count: number): IndexedBatch {
  return { queueOffset, logOffset, count };
}

/** Queue A: three batches [0,3) at log 10, [3,5) at log 20, [5,9) at log 30; queue B interleaved. */
function threeBatchIndex(): QueueIndex {
  const index = new QueueIndex();
  index.add(queueA, batch(0, 10, 3));
  index.add(queueB, batch(0, 13, 2));
  index.add(queueA, batch(3, 20, 2));
  index.add(queueA, batch(5, 30, 4));
  return index;
}

function ranges(batches: IndexedBatch[]): string[] {
  return batches.map((b) => `${b.queueOffset}+${b.count}@${b.logOffset}`);
}

describe('queue-index: keys and empty queues', () => {
  test('queueKey keeps (topic, queue) pairs apart even when their texts would concatenate alike', () => {
    const pairs: Array<[string, number]> = [
      ['a', 12],
      ['a1', 2],
      ['a', 1],
      ['a1', 12],
      ['a', 0],
    ];
    const keys = new Set(pairs.map(([topic, queue]) => queueKey(topic, queue)));
    assert.equal(keys.size, pairs.length);
  });

  test('a queue never written is empty at offset 0: start = end = committed end = 0, no batches', () => {
    const index = new QueueIndex();
    assert.equal(index.startOffset(queueA), 0);
    assert.equal(index.endOffset(queueA), 0);
    assert.equal(index.committedEndOffset(queueA, 1000), 0);
    assert.deepEqual(index.batchesFrom(queueA, 0, 1000, 10), []);
  });

  test('queues are independent: batches of one queue do not move the offsets of another', () => {
    const index = threeBatchIndex();
    assert.equal(index.endOffset(queueA), 9);
    assert.equal(index.endOffset(queueB), 2);
    assert.equal(index.endOffset(queueKey('orders', 2)), 0);
    assert.deepEqual(ranges(index.batchesFrom(queueB, 0, 100, 10)), ['0+2@13']);
  });
});

describe('queue-index: add keeps each queue contiguous and in log order', () => {
  test('the end of a queue is the last batch queue offset plus its count; the start is the first batch', () => {
    const index = threeBatchIndex();
    assert.equal(index.startOffset(queueA), 0);
    assert.equal(index.endOffset(queueA), 9);
  });

  test('the first batch of a queue may start at any queue offset (rebuild after retention removed the head)', () => {
    const index = new QueueIndex();
    index.add(queueA, batch(500, 7000, 2));
    assert.equal(index.startOffset(queueA), 500);
    assert.equal(index.endOffset(queueA), 502);
  });

  test('a batch that breaks queue contiguity or goes back in the log is a bug (InvariantError)', () => {
    const table: Array<{ rule: string; next: IndexedBatch }> = [
      { rule: 'queue offset leaves a hole', next: batch(4, 40, 1) },
      { rule: 'queue offset overlaps the last batch', next: batch(2, 40, 1) },
      { rule: 'queue offset repeats the last batch', next: batch(0, 40, 3) },
      { rule: 'log offset inside the last batch', next: batch(3, 12, 1) },
      { rule: 'log offset before the last batch', next: batch(3, 5, 1) },
    ];
    for (const { rule, next } of table) {
      const index = new QueueIndex();
      index.add(queueA, batch(0, 10, 3));
      assert.throws(() => index.add(queueA, next), InvariantError, rule);
      assert.equal(index.endOffset(queueA), 3, `${rule}: the refused batch is not indexed`);
    }
  });

  test('the next batch may start right at the end of the last one in both numberings', () => {
    const index = new QueueIndex();
    index.add(queueA, batch(0, 10, 3));
    index.add(queueA, batch(3, 13, 1));
    assert.equal(index.endOffset(queueA), 4);
  });
});

describe('queue-index: committed end counts only batches wholly below the high watermark', () => {
  test('boundaries: a batch counts once the high watermark reaches its log end, not before', () => {
    const index = threeBatchIndex();
    const table: Array<[highWatermark: number, committedEnd: number]> = [
      [0, 0],
      [10, 0],
      [12, 0],
      [13, 3],
      [21, 3],
      [22, 5],
      [30, 5],
      [33, 5],
      [34, 9],
      [1000, 9],
    ];
    for (const [highWatermark, expected] of table) {
      assert.equal(index.committedEndOffset(queueA, highWatermark), expected, `highWatermark=${highWatermark}`);
    }
  });

  test('with nothing committed the committed end is the start of the queue (after retention, not 0)', () => {
    const index = new QueueIndex();
    index.add(queueA, batch(40, 100, 5));
    assert.equal(index.committedEndOffset(queueA, 104), 40);
    assert.equal(index.committedEndOffset(queueA, 105), 45);
  });
});

describe('queue-index: batchesFrom returns the batch holding the offset and what follows, bounded', () => {
  const table: Array<{ rule: string; queueOffset: number; logOffsetEnd: number; batchesMax: number; expected: string[] }> = [
    { rule: 'offset 0 starts at the first batch', queueOffset: 0, logOffsetEnd: 100, batchesMax: 10, expected: ['0+3@10', '3+2@20', '5+4@30'] },
    { rule: 'an offset inside a batch returns that whole batch', queueOffset: 4, logOffsetEnd: 100, batchesMax: 10, expected: ['3+2@20', '5+4@30'] },
    { rule: 'the last offset of a batch still returns it', queueOffset: 2, logOffsetEnd: 100, batchesMax: 10, expected: ['0+3@10', '3+2@20', '5+4@30'] },
    { rule: 'the first offset of the last batch', queueOffset: 5, logOffsetEnd: 100, batchesMax: 10, expected: ['5+4@30'] },
    { rule: 'the last offset of the queue', queueOffset: 8, logOffsetEnd: 100, batchesMax: 10, expected: ['5+4@30'] },
    { rule: 'the end of the queue holds nothing yet', queueOffset: 9, logOffsetEnd: 100, batchesMax: 10, expected: [] },
    { rule: 'beyond the end holds nothing', queueOffset: 50, logOffsetEnd: 100, batchesMax: 10, expected: [] },
    { rule: 'batchesMax bounds the answer', queueOffset: 0, logOffsetEnd: 100, batchesMax: 2, expected: ['0+3@10', '3+2@20'] },
    { rule: 'batchesMax 1 is the batch holding the offset', queueOffset: 4, logOffsetEnd: 100, batchesMax: 1, expected: ['3+2@20'] },
    { rule: 'batchesMax 0 returns nothing', queueOffset: 0, logOffsetEnd: 100, batchesMax: 0, expected: [] },
    {
      rule: 'a batch not wholly below the log end is not returned, nor anything after it',
      queueOffset: 0,
      logOffsetEnd: 21,
      batchesMax: 10,
      expected: ['0+3@10'],
    },
    { rule: 'a batch ending exactly at the log end is returned', queueOffset: 0, logOffsetEnd: 22, batchesMax: 10, expected: ['0+3@10', '3+2@20'] },
    { rule: 'nothing below the log end: nothing returned', queueOffset: 0, logOffsetEnd: 12, batchesMax: 10, expected: [] },
  ];
  for (const { rule, queueOffset, logOffsetEnd, batchesMax, expected } of table) {
    test(rule, () => {
      assert.deepEqual(ranges(threeBatchIndex().batchesFrom(queueA, queueOffset, logOffsetEnd, batchesMax)), expected);
    });
  }

  test('an offset below the start (removed by retention) answers from the first batch kept', () => {
    const index = threeBatchIndex();
    index.dropBelow(20);
    assert.deepEqual(ranges(index.batchesFrom(queueA, 1, 100, 10)), ['3+2@20', '5+4@30']);
  });
});

describe('queue-index: truncation forgets batches at or above the truncation offset', () => {
  const table: Array<{ rule: string; logOffset: number; end: number; start: number }> = [
    { rule: 'truncating at the end of the log changes nothing', logOffset: 34, end: 9, start: 0 },
    { rule: 'truncating in the gap after a batch keeps it and drops the later one', logOffset: 25, end: 5, start: 0 },
    { rule: 'truncating at the log offset of a batch drops that batch', logOffset: 30, end: 5, start: 0 },
    { rule: 'truncating at the log end of a batch keeps that batch', logOffset: 22, end: 5, start: 0 },
    { rule: 'truncating at the first batch empties the queue; numbering resumes at its queue offset', logOffset: 10, end: 0, start: 0 },
    { rule: 'truncating at log offset 0 empties every queue', logOffset: 0, end: 0, start: 0 },
  ];
  for (const { rule, logOffset, end, start } of table) {
    test(rule, () => {
      const index = threeBatchIndex();
      index.truncateFrom(logOffset);
      assert.equal(index.endOffset(queueA), end, 'end');
      assert.equal(index.startOffset(queueA), start, 'start');
    });
  }

  test('truncation applies to every queue of the group log', () => {
    const index = threeBatchIndex();
    index.truncateFrom(13);
    assert.equal(index.endOffset(queueA), 3);
    assert.equal(index.endOffset(queueB), 0);
  });

  test('a queue emptied by truncation after retention resumes at the first dropped queue offset, not 0', () => {
    const index = threeBatchIndex();
    index.dropBelow(30);
    index.truncateFrom(30);
    assert.equal(index.startOffset(queueA), 5);
    assert.equal(index.endOffset(queueA), 5);
    index.add(queueA, batch(5, 40, 1));
    assert.deepEqual(ranges(index.batchesFrom(queueA, 0, 100, 10)), ['5+1@40']);
  });

  test('after truncation the queue accepts the next batch at the truncated queue offset', () => {
    const index = threeBatchIndex();
    index.truncateFrom(20);
    index.add(queueA, batch(3, 20, 7));
    assert.equal(index.endOffset(queueA), 10);
    assert.throws(() => index.add(queueA, batch(9, 40, 1)), InvariantError, 'the old numbering is gone');
  });
});

describe('queue-index: retention forgets batches below the new log start, numbering goes on', () => {
  const table: Array<{ rule: string; logOffset: number; start: number; end: number }> = [
    { rule: 'a log start of 0 drops nothing', logOffset: 0, start: 0, end: 9 },
    { rule: 'a log start at the first batch drops nothing', logOffset: 10, start: 0, end: 9 },
    { rule: 'a log start at the log end of a batch drops that batch', logOffset: 13, start: 3, end: 9 },
    { rule: 'a log start at a batch keeps that batch', logOffset: 20, start: 3, end: 9 },
    { rule: 'a log start past every batch empties the queue but keeps its end', logOffset: 34, start: 9, end: 9 },
  ];
  for (const { rule, logOffset, start, end } of table) {
    test(rule, () => {
      const index = threeBatchIndex();
      index.dropBelow(logOffset);
      assert.equal(index.startOffset(queueA), start, 'start');
      assert.equal(index.endOffset(queueA), end, 'end');
      assert.equal(index.committedEndOffset(queueA, 1000), end, 'committed end');
    });
  }

  test('after retention empties a queue, the leader numbers its next batch from the old end', () => {
    const index = threeBatchIndex();
    index.dropBelow(1000);
    assert.equal(index.endOffset(queueB), 2);
    index.add(queueA, batch(index.endOffset(queueA), 1000, 2));
    assert.equal(index.startOffset(queueA), 9);
    assert.equal(index.endOffset(queueA), 11);
  });
});

describe('queue-index: remove forgets a deleted topic queue', () => {
  test('a removed queue reads as never written; other queues keep their batches', () => {
    const index = threeBatchIndex();
    index.remove(queueA);
    assert.equal(index.endOffset(queueA), 0);
    assert.deepEqual(index.batchesFrom(queueA, 0, 1000, 10), []);
    assert.equal(index.endOffset(queueB), 2);
    index.add(queueA, batch(0, 50, 1));
    assert.equal(index.endOffset(queueA), 1, 'a re-created queue numbers from 0 again');
  });
});

// ------------------------------------------------------------------ model

interface ModelEntry {
  logOffset: number;
  count: number;
  key: string | null; // null: an entry of another kind (commit offset, control batch)
  queueOffset: number;
}

/**
 * The group log as a list of entries that truncation shortens; retention only moves `logStart`
 * (retained = at or above it). A queue's numbering is defined by all its entries ever kept,
 * retained or not; what a reader sees is defined by the retained ones.
 */
class LogModel {
  entries: ModelEntry[] = [];
  logStart = 0;
  highWatermark = 0;

  get logEnd(): number {
    const last = this.entries[this.entries.length - 1];
    return last ? last.logOffset + last.count : this.logStart;
  }

  ofQueue(key: string): ModelEntry[] {
    return this.entries.filter((e) => e.key === key);
  }

  retained(key: string): ModelEntry[] {
    return this.ofQueue(key).filter((e) => e.logOffset >= this.logStart);
  }

  end(key: string): number {
    const last = this.ofQueue(key).at(-1);
    return last ? last.queueOffset + last.count : 0;
  }

  start(key: string): number {
    return this.retained(key)[0]?.queueOffset ?? this.end(key);
  }

  committedEnd(key: string, highWatermark: number): number {
    const last = this.retained(key)
      .filter((e) => e.logOffset + e.count <= highWatermark)
      .at(-1);
    return last ? last.queueOffset + last.count : this.start(key);
  }

  batchesFrom(key: string, queueOffset: number, logOffsetEnd: number, batchesMax: number): IndexedBatch[] {
    const out: IndexedBatch[] = [];
    for (const e of this.retained(key).filter((b) => b.queueOffset + b.count > queueOffset)) {
      if (e.logOffset + e.count > logOffsetEnd || out.length >= batchesMax) break;
      out.push({ queueOffset: e.queueOffset, logOffset: e.logOffset, count: e.count });
    }
    return out;
  }

  /** Entry boundaries in [low, high]: the only places Raft commits, truncates and retention cuts. */
  boundaries(low: number, high: number): number[] {
    const all = [...this.entries.map((e) => e.logOffset), this.logEnd];
    return all.filter((o) => o >= low && o <= high);
  }
}

const keys = [queueKey('t', 0), queueKey('t', 1), queueKey('u', 0)];

type Step =
  | { kind: 'append'; queue: number; count: number }
  | { kind: 'other'; count: number }
  | { kind: 'commit'; at: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'retain'; at: number }
  | { kind: 'remove'; queue: number };

const fraction = fc.double({ min: 0, max: 1, noNaN: true });
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({ kind: fc.constant('append' as const), queue: fc.integer({ min: 0, max: keys.length - 1 }), count: fc.integer({ min: 1, max: 5 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('other' as const), count: fc.integer({ min: 1, max: 2 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('commit' as const), at: fraction }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fraction }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('retain' as const), at: fraction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), queue: fc.integer({ min: 0, max: keys.length - 1 }) }) },
);

function pick(values: number[], at: number): number {
  return values[Math.min(values.length - 1, Math.floor(at * values.length))]!;
}

function applyStep(index: QueueIndex, model: LogModel, s: Step): void {
  switch (s.kind) {
    case 'append': {
      const key = keys[s.queue]!;
      const queueOffset = index.endOffset(key); // as the leader stamps it
      const entry = { logOffset: model.logEnd, count: s.count, key, queueOffset };
      model.entries.push(entry);
      index.add(key, { queueOffset, logOffset: entry.logOffset, count: s.count });
      return;
    }
    case 'other':
      model.entries.push({ logOffset: model.logEnd, count: s.count, key: null, queueOffset: 0 });
      return;
    case 'commit':
      model.highWatermark = pick(model.boundaries(model.highWatermark, model.logEnd), s.at);
      return;
    case 'truncate': {
      // Raft truncates only what is not committed
      const at = pick(model.boundaries(model.highWatermark, model.logEnd), s.at);
      model.entries = model.entries.filter((e) => e.logOffset < at);
      index.truncateFrom(at);
      return;
    }
    case 'retain': {
      // retention removes only what is committed (and applied)
      const at = pick(model.boundaries(model.logStart, model.highWatermark), s.at);
      model.logStart = at;
      index.dropBelow(at);
      return;
    }
    case 'remove': {
      const key = keys[s.queue]!;
      for (const e of model.entries) if (e.key === key) e.key = null;
      index.remove(key);
      return;
    }
  }
}

/** What a replica that restarts builds: the retained log replayed into a fresh index. */
function rebuild(model: LogModel): QueueIndex {
  const index = new QueueIndex();
  for (const e of model.entries) {
    if (e.key !== null && e.logOffset >= model.logStart) index.add(e.key, { queueOffset: e.queueOffset, logOffset: e.logOffset, count: e.count });
  }
  return index;
}

function checkQueries(index: QueueIndex, model: LogModel, key: string, label: string): void {
  const end = model.end(key);
  assert.equal(index.endOffset(key), end, `${label} end`);
  assert.equal(index.startOffset(key), model.start(key), `${label} start`);
  for (const highWatermark of new Set([model.logStart, model.highWatermark, model.logEnd])) {
    assert.equal(index.committedEndOffset(key, highWatermark), model.committedEnd(key, highWatermark), `${label} committed end at ${highWatermark}`);
  }
  for (const queueOffset of new Set([0, model.start(key), Math.max(0, end - 1), end, end + 1])) {
    for (const batchesMax of [1, 3, 100]) {
      for (const logOffsetEnd of [model.highWatermark, model.logEnd]) {
        assert.deepEqual(
          index.batchesFrom(key, queueOffset, logOffsetEnd, batchesMax),
          model.batchesFrom(key, queueOffset, logOffsetEnd, batchesMax),
          `${label} batchesFrom(${queueOffset}, ${logOffsetEnd}, ${batchesMax})`,
        );
      }
    }
  }
}

test('queue-index (property): agrees with a model of the group log under appends, commits, truncation, retention and deletion; a rebuild from the retained log agrees on every queue that keeps a batch', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 50, size: 'max' }), (steps) => {
      const index = new QueueIndex();
      const model = new LogModel();
      for (const s of steps) {
        applyStep(index, model, s);
        const rebuilt = rebuild(model);
        for (const key of keys) {
          checkQueries(index, model, key, `live ${JSON.stringify(s)} ${key.replace('\u0000', '/')}`);
          if (model.retained(key).length > 0) checkQueries(rebuilt, model, key, `rebuilt ${key.replace('\u0000', '/')}`);
        }
      }
    }),
    { numRuns: 100 },
  );
});

describe('queue-index: removeTopic and startFromLog', () => {
  test('removeTopic forgets every queue of the topic and only those (a name prefix in common is another topic)', () => {
    const index = threeBatchIndex();
    const longer = queueKey('orders2', 0);
    index.add(longer, batch(0, 50, 1));
    index.removeTopic('orders');
    for (const key of [queueA, queueB]) assert.equal(index.hasBatches(key), false);
    assert.equal(index.endOffset(queueA), 0, 'a re-created topic numbers from 0');
    assert.equal(index.endOffset(longer), 1);
  });

  test('startFromLog is the queue offset of the first batch at or above a log offset, or the end when none is', () => {
    const index = threeBatchIndex();
    assert.equal(index.startFromLog(queueA, 0), 0);
    assert.equal(index.startFromLog(queueA, 11), 3);
    assert.equal(index.startFromLog(queueA, 30), 5);
    assert.equal(index.startFromLog(queueA, 31), 9);
    assert.equal(index.startFromLog(queueKey('orders', 7), 31), 0, 'a queue never written');
  });
});

describe('queue-index: a rebuilt index numbers a queue on from its old end, also when retention removed all its batches', () => {
  test('setEndOfEmpty gives a queue with no batch the end a snapshot holds; a queue with batches, a bad end, or an end going back is a bug (InvariantError)', () => {
    const live = threeBatchIndex();
    live.add(queueB, batch(2, 40, 1));
    live.dropBelow(40); // retention removed the segments below 40: queue A has no batch left, B has one
    const rebuilt = new QueueIndex(); // a restart replays the retained log: only B's batch at 40
    rebuilt.add(queueB, batch(2, 40, 1));
    assert.equal(rebuilt.endOffset(queueA), 0, 'the log alone does not hold the end of A');
    rebuilt.setEndOfEmpty(queueA, 9); // what the snapshot holds for A
    for (const key of [queueA, queueB]) {
      assert.equal(rebuilt.endOffset(key), live.endOffset(key));
      assert.equal(rebuilt.startOffset(key), live.startOffset(key));
    }
    rebuilt.add(queueA, batch(9, 50, 1));
    assert.equal(rebuilt.endOffset(queueA), 10, 'the next batch follows on');
    assert.throws(() => rebuilt.setEndOfEmpty(queueB, 5), InvariantError);
    assert.throws(() => new QueueIndex().setEndOfEmpty(queueA, -1), InvariantError);
    const emptied = new QueueIndex();
    emptied.setEndOfEmpty(queueA, 9);
    assert.throws(() => emptied.setEndOfEmpty(queueA, 8), InvariantError);
  });

  test('the complete mechanism: a snapshot at S, retention below S, a restart that replays the retained log and takes from the snapshot the end of every queue the log no longer shows; the next batch a leader numbers follows on', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('orders', 2).messages('orders', 0, 3).messages('orders', 1, 2).messages('orders', 0, 2);
      const live = openState(dir);
      startState(live.state, log.entries, null);
      const snapshot = live.state.captureSnapshot();
      log.messages('orders', 1, 1); // after S: queue 1 keeps a batch in the log, queue 0 none
      live.state.onAppend(log.entries.at(-1)!);
      live.state.onCommit(log.entries.at(-1)!);
      live.state.onLogStartMoved(snapshot.endOffset); // retention removed everything below S
      const retained = log.entries.filter((e) => e.offset >= snapshot.endOffset);
      await live.state.close();
      const withoutSnapshot = openState(join(dir, 'without'));
      startState(withoutSnapshot.state, retained, null);
      assert.equal(withoutSnapshot.state.index.endOffset(queueKey('orders', 0)), 0, 'the log alone would number queue 0 from 0 again');
      await withoutSnapshot.state.close();
      const restarted = openState(dir);
      startState(restarted.state, retained, snapshot);
      assert.equal(restarted.state.index.endOffset(queueKey('orders', 0)), 5, 'queue 0 numbers on from its old end');
      assert.equal(restarted.state.index.startOffset(queueKey('orders', 0)), 5, 'and starts there: nothing below is stored');
      assert.equal(restarted.state.index.endOffset(queueKey('orders', 1)), 3);
      assert.equal(restarted.state.index.startOffset(queueKey('orders', 1)), 2);
      log.messages('orders', 0, 1); // the leader (which never stopped) numbers the next batch from 5
      assert.doesNotThrow(() => restarted.state.onAppend(log.entries.at(-1)!), 'contiguous with the seeded end');
      assert.equal(restarted.state.index.endOffset(queueKey('orders', 0)), 6);
      await restarted.state.close();
    });
  });
});
