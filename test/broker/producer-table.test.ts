// The idempotent-producer table (src/broker/producer-table.ts): each test names the rule it
// checks (rules 1-3 are written at the top of the source). The table has no producer epochs: a
// producer that starts over takes a new producer id (src/client/producer-lane.ts, rule 4), so
// fencing is not part of this unit. Two property tests at the end: one plays a leader (check,
// then append only what is new) against a model that keeps every batch ever stored, with
// truncations of any uncommitted suffix; the other plays three replicas that lead in turn,
// replicate, truncate to the new leader's log and apply its entries, and checks that no replica
// ever fails an assertion or would store a batch twice. A property failure prints fast-check's
// seed and path; pass them in fc.assert's options to replay it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvariantError } from '../../src/assert.js';
import { ProducerTable, producerBatchesKept, producerKey, type ProducedBatch, type SequenceCheck } from '../../src/broker/producer-table.js';
const key = producerKey(7, 'orders', 0);

/** Appends `counts.length` batches of one producer in order from `firstSequence`, one log entry each, 10 log offsets apart. */
function appendBatches(table: ProducerTable, k: string, counts: number[], firstSequence = 0, firstLogOffset = 0): ProducedBatch[] {
  const stored: ProducedBatch[] = [];
  let sequence = firstSequence;
  let logOffset = firstLogOffset;
  for (const count of counts) {
    const b = { sequence, count, queueOffset: sequence, logOffset };
    table.add(k, b);
    stored.push(b);
    sequence += count;
    logOffset += 10;
  }
  return stored;
}

describe('producer-table: keys', () => {
  test('producerKey keeps (producer, topic, queue) triples apart even when their texts would concatenate alike', () => {
    const triples: Array<[number, string, number]> = [
      [1, 'a', 12],
      [1, 'a1', 2],
      [11, 'a', 2],
      [1, 'a', 1],
      [1, 'b', 12],
      [2, 'a', 12],
    ];
    const keys = new Set(triples.map(([p, t, q]) => producerKey(p, t, q)));
    assert.equal(keys.size, triples.length);
  });

  test('producers are tracked per (producer, topic, queue): sequences on one queue do not affect another', () => {
    const table = new ProducerTable();
    appendBatches(table, key, [2, 2]);
    const others = [producerKey(7, 'orders', 1), producerKey(7, 'payments', 0), producerKey(8, 'orders', 0)];
    for (const other of others) {
      assert.equal(table.nextSequence(other), 0);
      assert.deepEqual(table.check(other, 0, 1), { kind: 'new' }, 'an unknown producer starts at 0');
      assert.deepEqual(table.check(other, 3, 1), { kind: 'unknown' }, 'the sequence of another producer is no starting point');
    }
  });
});

describe('producer-table: check classifies a batch against what the producer stored', () => {
  test('rule 1: a producer the table does not know is taken at sequence 0 only; any other sequence is unknown (it may repeat a batch no longer remembered)', () => {
    const table = new ProducerTable();
    assert.deepEqual(table.check(key, 0, 1), { kind: 'new' });
    for (const sequence of [1, 17, 2 ** 31 - 1]) assert.deepEqual(table.check(key, sequence, 1), { kind: 'unknown' }, `sequence ${sequence}`);
  });

  // Stored: [0,3) at log 0, [3,4) at log 10, [4,8) at log 20; next expected 8.
  const table: Array<{ rule: string; sequence: number; count: number; expected: SequenceCheck['kind']; expectedNext?: number; logOffset?: number }> = [
    { rule: 'the next sequence (last sequence + count) is new', sequence: 8, count: 5, expected: 'new' },
    { rule: 'one past the next sequence is a gap (a batch in between was lost)', sequence: 9, count: 1, expected: 'gap', expectedNext: 8 },
    { rule: 'far past the next sequence is a gap', sequence: 1000, count: 1, expected: 'gap', expectedNext: 8 },
    { rule: 'a retry of the last stored batch is a duplicate', sequence: 4, count: 4, expected: 'duplicate', logOffset: 20 },
    { rule: 'a retry of the first stored batch (sequence 0) is a duplicate', sequence: 0, count: 3, expected: 'duplicate', logOffset: 0 },
    { rule: 'a retry of a middle batch is a duplicate', sequence: 3, count: 1, expected: 'duplicate', logOffset: 10 },
    { rule: 'a stored sequence with another count is not that batch: stale', sequence: 4, count: 3, expected: 'stale', expectedNext: 8 },
    { rule: 'a sequence inside a stored batch is stale', sequence: 5, count: 1, expected: 'stale', expectedNext: 8 },
    { rule: 'a sequence inside the first stored batch is stale', sequence: 1, count: 2, expected: 'stale', expectedNext: 8 },
  ];
  for (const { rule, sequence, count, expected, expectedNext, logOffset } of table) {
    test(rule, () => {
      const t = new ProducerTable();
      const stored = appendBatches(t, key, [3, 1, 4]);
      assert.equal(t.nextSequence(key), 8);
      const answer = t.check(key, sequence, count);
      assert.equal(answer.kind, expected);
      if (answer.kind === 'gap' || answer.kind === 'stale') assert.equal(answer.expected, expectedNext);
      if (answer.kind === 'duplicate') {
        assert.deepEqual(
          answer.batch,
          stored.find((b) => b.logOffset === logOffset),
          'the duplicate is answered with the offsets it already has',
        );
      }
    });
  }
});

describe('producer-table: the table remembers the last producerBatchesKept batches per producer and queue', () => {
  test(`exactly the last ${producerBatchesKept} batches are recognised as duplicates; the one before is stale`, () => {
    const t = new ProducerTable();
    const stored = appendBatches(
      t,
      key,
      Array.from({ length: producerBatchesKept + 3 }, () => 2),
    );
    const kept = stored.slice(-producerBatchesKept);
    const forgotten = stored.slice(0, -producerBatchesKept);
    for (const b of kept) assert.equal(t.check(key, b.sequence, b.count).kind, 'duplicate', `sequence ${b.sequence}`);
    for (const b of forgotten) assert.equal(t.check(key, b.sequence, b.count).kind, 'stale', `sequence ${b.sequence}`);
    assert.equal(t.nextSequence(key), stored.length * 2);
  });
});

describe('producer-table: add applies what the leader appended (rule 2)', () => {
  // Stored: [0,3) at log 0, [3,4) at log 10, [4,8) at log 20; next expected 8.
  test('a sequence past the next one (a leader that did not know the run) continues the run: the remembered batches stay', () => {
    const t = new ProducerTable();
    appendBatches(t, key, [3, 1, 4]);
    t.add(key, { sequence: 12, count: 2, queueOffset: 8, logOffset: 100 });
    assert.equal(t.nextSequence(key), 14);
    assert.equal(t.check(key, 4, 4).kind, 'duplicate', 'an earlier batch of the run is still recognised');
    assert.deepEqual(t.check(key, 8, 1), { kind: 'stale', expected: 14 });
  });

  const below: Array<{ rule: string; sequence: number }> = [
    { rule: 'a repeat of the last batch', sequence: 4 },
    { rule: 'inside the last batch', sequence: 6 },
    { rule: 'a restart at 0', sequence: 0 },
  ];
  for (const { rule, sequence } of below) {
    test(`a sequence below the next one (${rule}) starts a new run: numbering continues from it, the old run is forgotten`, () => {
      const t = new ProducerTable();
      appendBatches(t, key, [3, 1, 4]);
      t.add(key, { sequence, count: 1, queueOffset: 8, logOffset: 100 });
      assert.equal(t.nextSequence(key), sequence + 1);
      assert.deepEqual(t.check(key, sequence, 1), { kind: 'duplicate', batch: { sequence, count: 1, queueOffset: 8, logOffset: 100 } });
      if (sequence !== 0)
        assert.deepEqual(t.check(key, 0, 3), { kind: 'stale', expected: sequence + 1 }, 'a batch of the old run is not answered with its offsets');
    });
  }

  test('a batch that goes back in the log, or is no batch, is a bug (InvariantError); the table is unchanged', () => {
    const table: Array<{ rule: string; batch: ProducedBatch }> = [
      { rule: 'log offset before the last batch', batch: { sequence: 8, count: 1, queueOffset: 8, logOffset: 5 } },
      { rule: 'log offset inside the last batch', batch: { sequence: 8, count: 1, queueOffset: 8, logOffset: 23 } },
      { rule: 'a negative sequence', batch: { sequence: -1, count: 1, queueOffset: 8, logOffset: 100 } },
      { rule: 'a sequence that is not an integer', batch: { sequence: 8.5, count: 1, queueOffset: 8, logOffset: 100 } },
      { rule: 'no messages', batch: { sequence: 8, count: 0, queueOffset: 8, logOffset: 100 } },
    ];
    for (const { rule, batch } of table) {
      const t = new ProducerTable();
      appendBatches(t, key, [3, 1, 4]);
      assert.throws(() => t.add(key, batch), InvariantError, rule);
      assert.equal(t.nextSequence(key), 8, `${rule}: next sequence unchanged`);
      assert.equal(t.check(key, 4, 4).kind, 'duplicate', `${rule}: remembered batches unchanged`);
    }
  });

  test('the next batch may start right at the log end of the last one', () => {
    const t = new ProducerTable();
    t.add(key, { sequence: 0, count: 3, queueOffset: 0, logOffset: 10 });
    t.add(key, { sequence: 3, count: 1, queueOffset: 3, logOffset: 13 });
    assert.equal(t.nextSequence(key), 4);
  });

  test('add accepts a known producer starting over at sequence 0; numbering continues from the new batch', () => {
    const t = new ProducerTable();
    appendBatches(t, key, [3, 1]);
    t.add(key, { sequence: 0, count: 2, queueOffset: 4, logOffset: 100 });
    assert.equal(t.nextSequence(key), 2);
  });

  test('check cannot tell a restart at 0 from a retry of batch 0 (no epochs): same count is a duplicate, another count is stale, which is why a lane starts over under a new producer id', () => {
    const t = new ProducerTable();
    appendBatches(t, key, [2, 1]);
    assert.equal(t.check(key, 0, 2).kind, 'duplicate');
    assert.deepEqual(t.check(key, 0, 3), { kind: 'stale', expected: 3 });
  });

  test('the first batch of an unknown producer may carry any sequence; numbering continues from it', () => {
    const t = new ProducerTable();
    t.add(key, { sequence: 40, count: 3, queueOffset: 0, logOffset: 0 });
    assert.equal(t.nextSequence(key), 43);
    assert.equal(t.check(key, 42, 1).kind, 'stale');
    assert.equal(t.check(key, 44, 1).kind, 'gap');
  });
});

describe('producer-table: truncation keeps what the remaining log proves (rule 3)', () => {
  // Stored: [0,3) at log 0, [3,4) at log 10, [4,8) at log 20.
  const table: Array<{ rule: string; logOffset: number; next: number; duplicates: number[]; newSequence: number }> = [
    { rule: 'truncating past the last batch changes nothing', logOffset: 21, next: 8, duplicates: [0, 3, 4], newSequence: 8 },
    { rule: 'truncating at the log offset of the last batch drops it: its retry is new again', logOffset: 20, next: 4, duplicates: [0, 3], newSequence: 4 },
    { rule: 'truncating between batches keeps the earlier ones', logOffset: 15, next: 4, duplicates: [0, 3], newSequence: 4 },
  ];
  for (const { rule, logOffset, next, duplicates, newSequence } of table) {
    test(rule, () => {
      const t = new ProducerTable();
      const stored = appendBatches(t, key, [3, 1, 4]);
      t.truncateFrom(logOffset);
      assert.equal(t.nextSequence(key), next, 'next sequence');
      for (const b of stored) {
        const kind = t.check(key, b.sequence, b.count).kind;
        if (duplicates.includes(b.sequence)) assert.equal(kind, 'duplicate', `sequence ${b.sequence} kept`);
        else if (b.sequence === newSequence) assert.equal(kind, 'new', `sequence ${b.sequence} is the first dropped: new`);
        else assert.equal(kind, 'gap', `sequence ${b.sequence} dropped after the first dropped: a gap`);
      }
    });
  }

  test('truncating every batch of a producer forgets it: unknown, as to a leader whose log never held them (rule 1: 0 is new, any other sequence unknown)', () => {
    for (const logOffset of [0, 100]) {
      const t = new ProducerTable();
      appendBatches(t, key, [3, 1, 4], 20, 100);
      t.truncateFrom(logOffset);
      assert.equal(t.nextSequence(key), 0);
      assert.deepEqual(t.check(key, 0, 1), { kind: 'new' }, `cut at ${logOffset}, sequence 0`);
      for (const sequence of [19, 20, 21, 24, 1000])
        assert.deepEqual(t.check(key, sequence, 1), { kind: 'unknown' }, `cut at ${logOffset}, sequence ${sequence}`);
      t.add(key, { sequence: 3, count: 1, queueOffset: 0, logOffset: 100 });
      assert.equal(t.nextSequence(key), 4, 'the next batch, at any sequence, starts the producer again');
    }
  });

  test('truncating every remembered batch of a producer whose older batches are still in the log resumes right after those', () => {
    const t = new ProducerTable();
    const stored = appendBatches(
      t,
      key,
      Array.from({ length: producerBatchesKept + 2 }, () => 1),
    );
    const firstRemembered = stored[2]!; // sequences 0 and 1 left the table but stay in the log
    t.truncateFrom(firstRemembered.logOffset);
    assert.equal(t.nextSequence(key), 2);
    assert.deepEqual(t.check(key, 2, 1), { kind: 'new' }, 'the retry of the first truncated batch is stored again');
    assert.deepEqual(t.check(key, 3, 1), { kind: 'gap', expected: 2 }, 'the next sequence is known exactly');
    assert.deepEqual(t.check(key, 1, 1), { kind: 'stale', expected: 2 }, 'a batch still in the log is not stored twice');
    t.add(key, { sequence: 2, count: 1, queueOffset: 2, logOffset: firstRemembered.logOffset });
    assert.equal(t.check(key, 2, 1).kind, 'duplicate');
  });

  test('a second truncation after the window emptied still finds where the run ends, or what is not stored', () => {
    const t = new ProducerTable();
    const stored = appendBatches(
      t,
      key,
      Array.from({ length: producerBatchesKept + 4 }, () => 1),
    ); // remembered: 4..11; left the window last: 3 (log 30)
    t.truncateFrom(stored[4]!.logOffset);
    assert.equal(t.nextSequence(key), 4, 'ends with the batch that left last');
    t.truncateFrom(stored[2]!.logOffset);
    assert.deepEqual(t.check(key, 2, 1), { kind: 'stale', expected: 3 }, 'where it ends is unknown now: below 3 may be stored');
    assert.deepEqual(t.check(key, 3, 1), { kind: 'new' }, '3 and above are not stored');
    t.truncateFrom(0);
    assert.deepEqual(t.check(key, 0, 1), { kind: 'new' }, 'nothing of the run is left: unknown');
  });

  test('truncation applies to every producer of the group log', () => {
    const t = new ProducerTable();
    const other = producerKey(8, 'orders', 0);
    appendBatches(t, key, [1, 1], 0, 0); // log 0, 10
    appendBatches(t, other, [1, 1], 0, 5); // log 5, 15
    t.truncateFrom(10);
    assert.equal(t.nextSequence(key), 1);
    assert.equal(t.nextSequence(other), 1);
  });
});

describe('producer-table: removeTopic forgets the producers of a deleted topic only', () => {
  test('producers on the topic become unknown; producers on other topics, even with a name prefix in common, stay', () => {
    const t = new ProducerTable();
    const keys = {
      gone: producerKey(7, 'orders', 0),
      gone2: producerKey(8, 'orders', 3),
      longer: producerKey(7, 'orders2', 0),
      shorter: producerKey(7, 'order', 0),
    };
    for (const k of Object.values(keys)) appendBatches(t, k, [2]);
    t.removeTopic('orders');
    assert.equal(t.nextSequence(keys.gone), 0);
    assert.equal(t.nextSequence(keys.gone2), 0);
    assert.deepEqual(t.check(keys.gone, 5, 1), { kind: 'unknown' }, 'unknown again');
    assert.deepEqual(t.check(keys.gone, 0, 1), { kind: 'new' }, 'unknown again: starts at 0');
    assert.equal(t.nextSequence(keys.longer), 2);
    assert.equal(t.nextSequence(keys.shorter), 2);
  });
});

describe('producer-table: truncation and replication after a failover (reported bugs)', () => {
  test('a truncation that removes more batches than the table remembers lets the producer resend the first removed one', () => {
    const t = new ProducerTable();
    appendBatches(
      t,
      key,
      Array.from({ length: producerBatchesKept + 2 }, () => 1),
    );
    t.truncateFrom(0); // the log holds none of this producer's batches any more
    assert.deepEqual(t.check(key, 0, 1), { kind: 'new' });
  });

  test('a truncation that removes more batches than the table remembers, down to the middle of the run, never takes a stored batch as new', () => {
    const t = new ProducerTable();
    const stored = appendBatches(
      t,
      key,
      Array.from({ length: producerBatchesKept + 4 }, () => 1),
      0,
      0,
    ); // sequence s at log 10 s; remembered: 4..11; left the window last: 3
    t.truncateFrom(stored[2]!.logOffset); // 0 and 1 stay in the log
    for (const b of stored.slice(0, 2)) assert.equal(t.check(key, b.sequence, b.count).kind, 'stale', `stored sequence ${b.sequence}`);
    for (const b of stored.slice(3)) assert.equal(t.check(key, b.sequence, b.count).kind, 'new', `truncated sequence ${b.sequence}`);
    assert.deepEqual(t.check(key, 2, 1), { kind: 'stale', expected: 3 }, 'whether 2 is stored the table cannot know: refused, never stored twice');
  });

  test('where the run ends is unknown after such a truncation: a leader entry at or past the run start continues the run, so truncating it again keeps the stored batches stale', () => {
    const follower = new ProducerTable();
    const stored = appendBatches(
      follower,
      key,
      Array.from({ length: producerBatchesKept + 4 }, () => 1),
      0,
      0,
    ); // sequence s at log 10 s; remembered: 4..11; left the window last: 3
    follower.truncateFrom(stored[2]!.logOffset); // 0 and 1 stay in the log; whether 2 does, the table cannot know
    follower.add(key, { sequence: 2, count: 1, queueOffset: 2, logOffset: 20 }); // the new leader knew the run ends at 2
    assert.equal(follower.nextSequence(key), 3);
    follower.truncateFrom(20); // and that entry is lost too (another failover)
    for (const b of stored.slice(0, 2)) assert.equal(follower.check(key, b.sequence, b.count).kind, 'stale', `stored sequence ${b.sequence}`);
  });

  test('a follower whose table lost every batch of a producer to truncation accepts what the new leader (which never saw that producer) appended', () => {
    const follower = new ProducerTable();
    appendBatches(follower, key, [1, 1, 1], 0, 100); // acked by the old leader with ack=leader, never committed
    follower.truncateFrom(100);
    const leader = new ProducerTable(); // the new leader's log never held them
    // Rule 1: this leader refuses sequence 3 of a producer it does not know; a leader of an earlier
    // release took it, and rule 2 applies whatever a leader appended.
    assert.equal(leader.check(key, 3, 1).kind, 'unknown');
    leader.add(key, { sequence: 3, count: 1, queueOffset: 0, logOffset: 100 });
    assert.doesNotThrow(() => follower.add(key, { sequence: 3, count: 1, queueOffset: 0, logOffset: 100 }));
    for (const sequence of [0, 3, 4, 5])
      assert.deepEqual(follower.check(key, sequence, 1), leader.check(key, sequence, 1), `sequence ${sequence}: as the leader answers`);
  });

  test('a follower that knows more of a producer than the leader (the leader replayed a log whose head retention removed) applies the leader entry, whatever its sequence', () => {
    for (const sequence of [0, 2, 8, 30]) {
      const follower = new ProducerTable();
      appendBatches(follower, key, [3, 1, 4], 0, 0); // committed long ago; gone from the leader's log
      const leader = new ProducerTable(); // restarted with no snapshot: the producer is unknown to it
      assert.equal(leader.check(key, sequence, 2).kind, sequence === 0 ? 'new' : 'unknown', 'rule 1 (an earlier release took any sequence)');
      leader.add(key, { sequence, count: 2, queueOffset: 8, logOffset: 500 });
      assert.doesNotThrow(() => follower.add(key, { sequence, count: 2, queueOffset: 8, logOffset: 500 }), `sequence ${sequence}`);
      assert.equal(follower.nextSequence(key), leader.nextSequence(key), `sequence ${sequence}: next sequence as on the leader`);
      assert.deepEqual(follower.check(key, sequence, 2), leader.check(key, sequence, 2), `sequence ${sequence}: its retry is a duplicate on both`);
    }
  });
});

// ------------------------------------------------------------------ model: one leader

const producerKeys = [producerKey(1, 't', 0), producerKey(2, 't', 0)];

interface ModelBatch extends ProducedBatch {
  key: string;
  appendIndex: number; // position in the producer's append history (truncated batches included)
}

/** Every batch stored, in log order; truncation shortens it. No window: the model remembers everything. */
class StoreModel {
  batches: ModelBatch[] = [];
  truncated: ModelBatch[] = []; // batches truncation removed, most recent last: a producer may resend them
  appended = new Map<string, number>(); // batches ever appended per key
  sent = new Map<string, number>(); // end of the last batch appended per key (truncated or not): the producer's own numbering
  logEnd = 0;
  highWatermark = 0;
  logStart = 0; // retention removed the log below this (never above the high watermark)

  /** What a replay of the log knows: the end of the last stored batch; undefined when none is stored (unknown). */
  next(k: string): number | undefined {
    const last = this.of(k).at(-1);
    return last ? last.sequence + last.count : undefined;
  }

  of(k: string): ModelBatch[] {
    return this.batches.filter((b) => b.key === k);
  }

  /**
   * The batches the table must still recognise: among the last producerBatchesKept appended, not
   * truncated (a lower bound of what it remembers: truncation shrinks its window, later batches
   * fill it again without pushing older ones out), and, unless `evenBelowStart`, still in the log
   * (rule 4: retention takes them out of the window).
   */
  remembered(k: string, evenBelowStart = false): ModelBatch[] {
    const appended = this.appended.get(k) ?? 0;
    return this.of(k).filter((b) => b.appendIndex >= appended - producerBatchesKept && (evenBelowStart || b.logOffset >= this.logStart));
  }
}

type Step =
  | { kind: 'send'; producer: number; offset: number; count: number } // offset from the producer's next sequence
  | { kind: 'retry'; producer: number; pick: number }
  | { kind: 'resend'; producer: number; pick: number }
  | { kind: 'commit' }
  | { kind: 'truncate'; at: number }
  | { kind: 'retain'; at: number };

const fraction = fc.double({ min: 0, max: 1, noNaN: true });
const producerIndex = fc.integer({ min: 0, max: producerKeys.length - 1 });
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      producer: producerIndex,
      offset: fc.constantFrom(0, 0, 0, 0, 1, 2, -1, -3),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('retry' as const), producer: producerIndex, pick: fraction }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('resend' as const), producer: producerIndex, pick: fraction }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fraction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('retain' as const), at: fraction }) },
);

function pickOf<T>(values: T[], at: number): T | undefined {
  return values[Math.min(values.length - 1, Math.floor(at * values.length))];
}

/** Safety on any replica: no stored batch, nor a sequence inside one, is new (it would be stored twice). */
function checkStoredNotNew(table: ProducerTable, k: string, stored: ProducedBatch[], label: string): void {
  for (const b of stored) {
    assert.notEqual(table.check(k, b.sequence, b.count).kind, 'new', `${label}: stored sequence ${b.sequence} count ${b.count} is new`);
    assert.notEqual(table.check(k, b.sequence + b.count - 1, 1).kind, 'new', `${label}: stored sequence ${b.sequence + b.count - 1} is new`);
  }
}

/** The leader's produce path: check, and append only what is new. Checks the answer against the model. */
function leaderProduce(table: ProducerTable, model: StoreModel, k: string, sequence: number, count: number): void {
  const stored = model.of(k);
  const last = stored.at(-1);
  const answer = table.check(k, sequence, count);
  const label = `${k.replaceAll('\u0000', '/')} sequence ${sequence} count ${count}: ${JSON.stringify(answer)}`;
  // Safety: never 'new' below the stored end (it would be stored twice).
  if (answer.kind === 'new' && last) assert.ok(sequence >= last.sequence + last.count, `${label}: new below the stored end`);
  // Safety: a duplicate is answered with a stored batch, exactly that one.
  if (answer.kind === 'duplicate') {
    const match = stored.find((b) => b.sequence === sequence && b.count === count);
    assert.ok(match, `${label}: duplicate of a batch that is not stored`);
    assert.deepEqual(answer.batch, { sequence, count, queueOffset: match.queueOffset, logOffset: match.logOffset }, label);
  }
  const next = model.next(k);
  const remembered = model.remembered(k);
  if (next === undefined) assert.equal(answer.kind, sequence === 0 ? 'new' : 'unknown', `${label}: no batch of the producer is stored: unknown, only 0 is new`);
  else if (last && model.remembered(k, true).includes(last)) {
    // The table holds the newest stored batch: it knows exactly where the producer is.
    assert.equal(table.nextSequence(k), next, `${label}: next sequence`);
    if (sequence === next) assert.equal(answer.kind, 'new', `${label}: the next sequence is new`);
    if (sequence > next) assert.deepEqual(answer, { kind: 'gap', expected: next }, `${label}: past the next sequence is a gap`);
  }
  const retried = remembered.find((b) => b.sequence === sequence && b.count === count);
  if (retried) assert.equal(answer.kind, 'duplicate', `${label}: a retry of a remembered batch is a duplicate`);
  if (answer.kind !== 'new') return;
  const appendIndex = model.appended.get(k) ?? 0;
  const queueOffset = 1000 + model.logEnd; // any value unique per batch, so a wrong duplicate answer shows
  const b = { key: k, sequence, count, queueOffset, logOffset: model.logEnd, appendIndex };
  table.add(k, { sequence, count, queueOffset, logOffset: model.logEnd }); // must not throw after 'new'
  model.batches.push(b);
  model.appended.set(k, appendIndex + 1);
  model.sent.set(k, Math.max(model.sent.get(k) ?? 0, sequence + count));
  model.logEnd += count;
}

function applyStep(table: ProducerTable, model: StoreModel, s: Step): void {
  switch (s.kind) {
    case 'send': {
      const k = producerKeys[s.producer]!;
      leaderProduce(table, model, k, Math.max(0, (model.sent.get(k) ?? 0) + s.offset), s.count);
      return;
    }
    case 'retry': {
      const k = producerKeys[s.producer]!;
      const b = pickOf(model.of(k).slice(-(producerBatchesKept + 2)), s.pick); // retries are of recent batches, around the bound
      if (b) leaderProduce(table, model, k, b.sequence, b.count);
      return;
    }
    case 'resend': {
      const k = producerKeys[s.producer]!;
      const b = pickOf(model.truncated.filter((t) => t.key === k).slice(-(producerBatchesKept + 4)), s.pick);
      if (b) leaderProduce(table, model, k, b.sequence, b.count);
      return;
    }
    case 'commit':
      model.highWatermark = model.logEnd;
      return;
    case 'truncate': {
      // Raft truncates only what is not committed; with ack leader or none that may be any number of batches.
      const points = [...model.batches.map((b) => b.logOffset), model.logEnd].filter((o) => o >= model.highWatermark);
      const at = pickOf(points, s.at)!;
      model.truncated.push(...model.batches.filter((b) => b.logOffset >= at));
      model.batches = model.batches.filter((b) => b.logOffset < at);
      model.logEnd = at;
      table.truncateFrom(at);
      return;
    }
    case 'retain': {
      // Retention removes only what is committed (below the newest snapshot, itself below the high watermark).
      const points = [...model.batches.map((b) => b.logOffset), model.highWatermark].filter((o) => o >= model.logStart && o <= model.highWatermark);
      const at = pickOf(points, s.at)!;
      model.logStart = at;
      table.dropBelow(at);
      return;
    }
  }
}

test('producer-table (property): against a model of every stored batch, under truncations of any uncommitted suffix and retention of any committed prefix: nothing stored is new (nothing twice), a duplicate is answered with its offsets, retries of remembered batches still in the log are duplicates, where the table holds the newest stored batch (retained or not) the next sequence is new and a skip is a gap, with nothing stored only 0 is new, and what check calls new, add accepts', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 120, size: 'max' }), (steps) => {
      const table = new ProducerTable();
      const model = new StoreModel();
      for (const s of steps) {
        applyStep(table, model, s);
        for (const k of producerKeys) checkStoredNotNew(table, k, model.of(k), `after ${JSON.stringify(s)}, ${k.replaceAll('\u0000', '/')}`);
      }
      // What the leader stored of each producer only moves forward: nothing twice.
      for (const k of producerKeys) {
        const stored = model.of(k);
        stored.slice(1).forEach((b, i) => assert.ok(b.sequence >= stored[i]!.sequence + stored[i]!.count, `${k.replaceAll('\u0000', '/')} batch ${i + 1}`));
      }
    }),
    { numRuns: 300 },
  );
});

// ------------------------------------------------------------------ model: replicas that lead in turn

interface LogBatch extends ProducedBatch {
  key: string;
  id: number; // one per append: the same entry on every replica that holds it
}

interface ReplicaModel {
  log: LogBatch[];
  table: ProducerTable;
}

type ClusterStep =
  | { kind: 'send'; producer: number; offset: number; count: number }
  | { kind: 'retry'; producer: number; pick: number }
  | { kind: 'replicate'; follower: number; share: number }
  | { kind: 'commit' }
  | { kind: 'elect'; replica: number };

const replicaCount = 3;
const replicaIndex = fc.integer({ min: 0, max: replicaCount - 1 });
const clusterStep: fc.Arbitrary<ClusterStep> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      producer: producerIndex,
      offset: fc.constantFrom(0, 0, 0, 1, -1),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('retry' as const), producer: producerIndex, pick: fraction }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('replicate' as const), follower: replicaIndex, share: fraction }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('elect' as const), replica: replicaIndex }) },
);

class ClusterModel {
  replicas: ReplicaModel[] = Array.from({ length: replicaCount }, () => ({ log: [], table: new ProducerTable() }));
  leader = 0;
  committed = 0; // entries in the committed prefix
  nextId = 0;
  sent = new Map<string, LogBatch[]>(); // every batch a producer had stored by some leader, in order

  /** Entries the follower holds as the leader does (the log matching property: a common prefix). */
  matching(follower: ReplicaModel): number {
    const log = this.replicas[this.leader]!.log;
    let n = 0;
    while (n < follower.log.length && n < log.length && follower.log[n]!.id === log[n]!.id) n++;
    return n;
  }

  produce(k: string, sequence: number, count: number): void {
    const leader = this.replicas[this.leader]!;
    const answer = leader.table.check(k, sequence, count);
    const label = `leader ${this.leader} ${k.replaceAll('\u0000', '/')} sequence ${sequence} count ${count}: ${JSON.stringify(answer)}`;
    if (answer.kind === 'duplicate') {
      const match = leader.log.find((b) => b.key === k && b.sequence === sequence && b.count === count);
      assert.ok(match, `${label}: duplicate of a batch the leader does not hold`);
      assert.deepEqual(answer.batch, { sequence, count, queueOffset: match.queueOffset, logOffset: match.logOffset }, label);
    }
    if (answer.kind !== 'new') return;
    const last = leader.log.at(-1);
    const logOffset = last ? last.logOffset + last.count : 0;
    const b: LogBatch = { key: k, sequence, count, queueOffset: 1000 + logOffset, logOffset, id: this.nextId++ };
    leader.log.push(b);
    leader.table.add(k, { sequence, count, queueOffset: b.queueOffset, logOffset });
    this.sent.set(k, [...(this.sent.get(k) ?? []), b]);
  }

  /** The follower truncates where it diverges from the leader, then appends a share of what it lacks. */
  replicate(index: number, share: number): void {
    if (index === this.leader) return;
    const follower = this.replicas[index]!;
    const log = this.replicas[this.leader]!.log;
    const n = this.matching(follower);
    if (n < follower.log.length) {
      // What it drops is not the leader's, so not committed (committed entries are in every leader's log).
      follower.table.truncateFrom(follower.log[n]!.logOffset);
      follower.log.length = n;
    }
    const end = n + Math.ceil(share * (log.length - n));
    for (const b of log.slice(n, end)) {
      follower.log.push(b);
      follower.table.add(b.key, { sequence: b.sequence, count: b.count, queueOffset: b.queueOffset, logOffset: b.logOffset }); // must not throw
    }
  }

  commit(): void {
    const held = this.replicas.filter((_, i) => i !== this.leader).map((r) => this.matching(r));
    this.committed = Math.max(this.committed, ...held); // the leader and one follower: a majority of three
  }

  /** A replica may lead only if it holds every committed entry (Raft's election restriction). */
  elect(index: number): void {
    const candidate = this.replicas[index]!;
    const log = this.replicas[this.leader]!.log;
    const holds = candidate.log.length >= this.committed && log.slice(0, this.committed).every((b, i) => candidate.log[i]!.id === b.id);
    if (holds) this.leader = index;
  }
}

test('producer-table (property): three replicas that lead in turn, replicate, truncate where they diverge from the new leader and apply its entries never fail an assertion, and no replica takes a batch it holds as new', () => {
  fc.assert(
    fc.property(fc.array(clusterStep, { minLength: 1, maxLength: 120, size: 'max' }), (steps) => {
      const cluster = new ClusterModel();
      for (const s of steps) {
        switch (s.kind) {
          case 'send': {
            const k = producerKeys[s.producer]!;
            const last = cluster.sent.get(k)?.at(-1);
            cluster.produce(k, Math.max(0, (last ? last.sequence + last.count : 0) + s.offset), s.count);
            break;
          }
          case 'retry': {
            const k = producerKeys[s.producer]!;
            const b = pickOf((cluster.sent.get(k) ?? []).slice(-(producerBatchesKept + 4)), s.pick);
            if (b) cluster.produce(k, b.sequence, b.count);
            break;
          }
          case 'replicate':
            cluster.replicate(s.follower, s.share);
            break;
          case 'commit':
            cluster.commit();
            break;
          case 'elect':
            cluster.elect(s.replica);
            break;
        }
        cluster.replicas.forEach((r, i) => {
          for (const k of producerKeys)
            checkStoredNotNew(
              r.table,
              k,
              r.log.filter((b) => b.key === k),
              `after ${JSON.stringify(s)}, replica ${i}, ${k.replaceAll('\u0000', '/')}`,
            );
        });
      }
    }),
    { numRuns: 300 },
  );
});

// ------------------------------------------------------------------ retention, the bound, snapshots (rules 4-6)

describe('producer-table: retention takes batches below the log start out of the window, keeping where the run ends (rule 4)', () => {
  test('retries of batches below the start are stale, not new; the next sequence stays exact and a skip is still a gap', () => {
    const t = new ProducerTable();
    const stored = appendBatches(t, key, [3, 1, 4], 0, 0); // log 0, 10, 20
    t.dropBelow(15);
    assert.equal(t.check(key, 0, 3).kind, 'stale', 'below the start: no longer answered with its offsets');
    assert.equal(t.check(key, 3, 1).kind, 'stale');
    assert.equal(t.check(key, 4, 4).kind, 'duplicate', 'still in the log: still a duplicate');
    t.dropBelow(100);
    for (const b of stored) assert.equal(t.check(key, b.sequence, b.count).kind, 'stale', `sequence ${b.sequence}`);
    assert.equal(t.nextSequence(key), 8, 'the producer stays known');
    assert.deepEqual(t.check(key, 8, 1), { kind: 'new' });
    assert.deepEqual(t.check(key, 9, 1), { kind: 'gap', expected: 8 });
    assert.equal(t.size, 1);
  });

  test('a truncation after retention keeps the end of the newest batch below the start', () => {
    const t = new ProducerTable();
    appendBatches(t, key, [3, 1, 4], 0, 0);
    t.dropBelow(15);
    t.truncateFrom(20); // the batch at 20 was not committed after all (retention is only ever below the high watermark)
    assert.equal(t.nextSequence(key), 4);
    assert.deepEqual(t.check(key, 4, 4), { kind: 'new' });
  });
});

describe('producer-table: at most producersMax producers; the least recently appended expire (rule 5)', () => {
  test('a new producer beyond the bound expires the one that appended least recently; an append makes a producer the most recent', () => {
    const t = new ProducerTable(3);
    const keys = [1, 2, 3, 4].map((id) => producerKey(id, 'orders', 0));
    appendBatches(t, keys[0]!, [1], 0, 0);
    appendBatches(t, keys[1]!, [1], 0, 10);
    appendBatches(t, keys[2]!, [1], 0, 20);
    appendBatches(t, keys[0]!, [1], 1, 30); // producer 1 appends again: producer 2 is now the oldest
    appendBatches(t, keys[3]!, [1], 0, 40);
    assert.equal(t.size, 3);
    assert.equal(t.expired, 1);
    assert.equal(t.has(keys[1]!), false, 'producer 2 expired');
    for (const k of [keys[0]!, keys[2]!, keys[3]!]) assert.equal(t.has(k), true);
    assert.deepEqual(t.check(keys[1]!, 1, 1), { kind: 'unknown' }, 'its next batch is refused: it may repeat a stored one');
    assert.deepEqual(t.check(keys[1]!, 0, 1), { kind: 'new' }, 'sequence 0 starts it again (as a new producer id does)');
  });

  test('the bound holds under any sequence of appends, truncations and retention', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 4 })), { maxLength: 200 }), (plan) => {
        const t = new ProducerTable(5);
        let logOffset = 0;
        for (const [producerId, action] of plan) {
          if (action === 0) t.truncateFrom(Math.max(0, logOffset - 3));
          else if (action === 1) t.dropBelow(Math.max(0, logOffset - 5));
          else t.add(producerKey(producerId, 't', 0), { sequence: logOffset, count: 1, queueOffset: logOffset, logOffset });
          logOffset++;
          assert.ok(t.size <= 5);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('producer-table: a snapshot holds each producer as a truncation at its offset leaves it; what the log no longer shows comes back as the oldest (rule 6)', () => {
  test('statesBelow(S) is exactly what truncateFrom(S) would leave, and changes nothing', () => {
    const t = new ProducerTable();
    const other = producerKey(8, 'orders', 0);
    appendBatches(
      t,
      key,
      Array.from({ length: producerBatchesKept + 3 }, () => 1),
      0,
      0,
    ); // log 0..100
    appendBatches(t, other, [2, 2], 0, 200); // wholly at or above 200
    const below = [...t.statesBelow(45)];
    assert.deepEqual(
      below.map((e) => e.key),
      [key],
      'the producer whose run starts at or above S is unknown as of S',
    );
    const truncated = new ProducerTable();
    appendBatches(
      truncated,
      key,
      Array.from({ length: producerBatchesKept + 3 }, () => 1),
      0,
      0,
    );
    truncated.truncateFrom(45);
    assert.deepEqual(below[0]!.state, [...truncated.statesBelow(Number.MAX_SAFE_INTEGER)][0]!.state);
    assert.equal(t.nextSequence(key), producerBatchesKept + 3, 'the table itself is unchanged');
    assert.equal(t.nextSequence(other), 4);
  });

  test('restoreOlder puts back unknown producers only, as they were at S, older than those known (first to expire)', () => {
    const snapshotTable = new ProducerTable();
    const [a, b] = [producerKey(1, 't', 0), producerKey(2, 't', 0)];
    appendBatches(snapshotTable, a, [1, 1, 1], 0, 0); // log 0, 10, 20
    appendBatches(snapshotTable, b, [1], 0, 30);
    const states = [...snapshotTable.statesBelow(40)];
    const t = new ProducerTable(2);
    const c = producerKey(3, 't', 0);
    t.add(b, { sequence: 1, count: 1, queueOffset: 1, logOffset: 40 }); // the log shows b (newer than the snapshot)
    t.add(c, { sequence: 0, count: 1, queueOffset: 0, logOffset: 50 });
    t.restoreOlder(states);
    assert.equal(t.nextSequence(b), 2, 'what the log shows wins');
    assert.equal(t.has(a), false, 'a came back as the oldest and expired at once (bound 2)');
    const roomy = new ProducerTable();
    roomy.add(c, { sequence: 0, count: 1, queueOffset: 0, logOffset: 50 });
    roomy.restoreOlder(states);
    assert.equal(roomy.nextSequence(a), 3);
    for (const sequence of [0, 1, 2]) assert.equal(roomy.check(a, sequence, 1).kind, 'duplicate', `sequence ${sequence}: a retry is answered as at S`);
  });

  test('restoreOlder asserts the invariants of what it takes (a decoder bug is an InvariantError)', () => {
    const t = new ProducerTable();
    const broken = { batches: [b(5, 1, 20), b(6, 1, 10)], forgotten: null, runLogOffset: 0, runSequence: 0, storedBelowSequence: 0 };
    assert.throws(() => t.restoreOlder([{ key, state: broken }]), InvariantError);
  });
});

function b(sequence: number, count: number, logOffset: number): ProducedBatch {
  return { sequence, count, queueOffset: sequence, logOffset };
}
