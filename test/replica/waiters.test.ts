// The replica's waiters (src/replica/waiters.ts): produce requests parked until the high
// watermark (quorum acks) or the durable end (leader acks) passes their entry, failed when the
// entry may be lost. Each test names the rule it checks, from the contract at the top of the
// source and from how src/replica/replica.ts uses it: release on a new high watermark or flush,
// failAbove(end) on a truncation, failAbove(high watermark) when leadership is lost, failAll on
// close. The property test at the end runs random waits, releases and failures against a model
// that keeps every waiter and checks which settle, how, in what order, and the size. A property
// failure prints fast-check's seed and path; pass them in fc.assert's options to replay it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InvariantError } from '../../src/assert.js';
import { ResourceExhaustedError, UnavailableError, type MambaError } from '../../src/errors.js';
import { Waiters, waitersMaxDefault } from '../../src/replica/waiters.js';

type Outcome = 'resolved' | MambaError;

/** Starts a wait and records how it settles (with its label) into `settled`, in settling order. */
function track(waiters: Waiters, label: string, offset: number, watermark: number, settled: Array<[string, Outcome]>): void {
  waiters.wait(offset, watermark).then(
    () => settled.push([label, 'resolved']),
    (error: MambaError) => settled.push([label, error]),
  );
}

/** Lets every settled promise run its callbacks. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function labels(settled: Array<[string, Outcome]>): string[] {
  return settled.map(([label, outcome]) => `${label}:${outcome === 'resolved' ? 'resolved' : outcome.kind}`);
}

const lost = (): MambaError => new UnavailableError('the entry was truncated by a new leader');

describe('waiters: wait and release', () => {
  test('a wait whose offset the watermark already reaches resolves at once and is not kept', async () => {
    const w = new Waiters();
    const settled: Array<[string, Outcome]> = [];
    track(w, 'equal', 10, 10, settled);
    track(w, 'below', 3, 10, settled);
    assert.equal(w.size, 0);
    await flush();
    assert.deepEqual(labels(settled), ['equal:resolved', 'below:resolved']);
  });

  test('release(w) resolves exactly the waiters at or below w; the others stay', async () => {
    const w = new Waiters();
    const settled: Array<[string, Outcome]> = [];
    for (const offset of [5, 6, 7]) track(w, `o${offset}`, offset, 4, settled);
    const table: Array<[watermark: number, resolved: string[], size: number]> = [
      [4, [], 3],
      [5, ['o5:resolved'], 2],
      [5, ['o5:resolved'], 2],
      [3, ['o5:resolved'], 2], // a lower watermark releases nothing
      [7, ['o5:resolved', 'o6:resolved', 'o7:resolved'], 0],
    ];
    for (const [watermark, resolved, size] of table) {
      w.release(watermark);
      await flush();
      assert.deepEqual(labels(settled), resolved, `release(${watermark})`);
      assert.equal(w.size, size, `size after release(${watermark})`);
    }
  });

  test('waiters settle in offset order, and those with one offset in the order they waited, whatever order they came in', async () => {
    const w = new Waiters();
    const settled: Array<[string, Outcome]> = [];
    const arrivals: Array<[string, number]> = [
      ['a', 30],
      ['b', 10],
      ['c', 20],
      ['d', 10],
      ['e', 30],
      ['f', 5],
    ];
    for (const [label, offset] of arrivals) track(w, label, offset, 0, settled);
    w.release(100);
    await flush();
    assert.deepEqual(
      settled.map(([label]) => label),
      ['f', 'b', 'd', 'c', 'a', 'e'],
    );
  });
});

describe('waiters: failures (the entry may be lost)', () => {
  test('truncation: failAbove(end) fails the waiters whose entries were cut, keeps the one ending exactly at end', async () => {
    const w = new Waiters();
    const settled: Array<[string, Outcome]> = [];
    for (const offset of [9, 10, 11, 12]) track(w, `o${offset}`, offset, 0, settled);
    w.failAbove(10, lost);
    await flush();
    assert.deepEqual(labels(settled), ['o11:unavailable', 'o12:unavailable']);
    assert.equal(w.size, 2);
    w.release(10);
    await flush();
    assert.deepEqual(labels(settled).slice(2), ['o9:resolved', 'o10:resolved']);
  });

  test('leadership lost: failAbove(high watermark) fails everything not yet committed, each with its own error from the factory', async () => {
    const w = new Waiters();
    const settled: Array<[string, Outcome]> = [];
    for (const offset of [3, 4]) track(w, `o${offset}`, offset, 2, settled);
    let made = 0;
    w.failAbove(2, () => {
      made++;
      return new UnavailableError(`lost leadership (${made})`);
    });
    await flush();
    assert.equal(made, 2);
    assert.deepEqual(
      settled.map(([, outcome]) => (outcome === 'resolved' ? outcome : `${outcome.kind} ${outcome.retriable} ${outcome.message}`)),
      ['unavailable true lost leadership (1)', 'unavailable true lost leadership (2)'],
    );
    assert.equal(w.size, 0);
  });

  test('failAbove with nothing above the end changes nothing and makes no error', () => {
    const w = new Waiters();
    void w.wait(5, 0);
    w.failAbove(5, () => assert.fail('no waiter is above 5'));
    w.failAbove(100, () => assert.fail('no waiter is above 100'));
    assert.equal(w.size, 1);
  });

  test('close: failAll fails every waiter in offset order; it does not close, a later wait waits as any other', async () => {
    const w = new Waiters();
    const settled: Array<[string, Outcome]> = [];
    for (const offset of [7, 2, 5]) track(w, `o${offset}`, offset, 1, settled);
    w.failAll(() => new UnavailableError('broker is shutting down'));
    await flush();
    assert.deepEqual(labels(settled), ['o2:unavailable', 'o5:unavailable', 'o7:unavailable']);
    assert.equal(w.size, 0);
    track(w, 'later', 8, 1, settled);
    assert.equal(w.size, 1);
    w.release(8);
    await flush();
    assert.deepEqual(labels(settled).at(-1), 'later:resolved');
  });
});

describe('waiters: bounds and arguments', () => {
  test(`the default bound (${waitersMaxDefault}) is above the largest pendingProposalsMax the configuration accepts, so the replica refuses a proposal first`, () => {
    assert.ok(waitersMaxDefault > 1_000_000);
    assert.equal(new Waiters().waitersMax, waitersMaxDefault);
  });

  test('a full set of waiters refuses a wait with a retriable RESOURCE_EXHAUSTED and keeps nothing; one the watermark reaches still resolves; room freed is reused', async () => {
    const w = new Waiters(2);
    const settled: Array<[string, Outcome]> = [];
    track(w, 'o5', 5, 0, settled);
    track(w, 'o6', 6, 0, settled);
    track(w, 'o7', 7, 0, settled);
    await flush();
    assert.deepEqual(labels(settled), ['o7:resource_exhausted']);
    assert.ok(settled[0]![1] instanceof ResourceExhaustedError && settled[0]![1].retriable);
    assert.equal(w.size, 2);
    await w.wait(4, 4); // nothing to keep: resolves although full
    w.release(5);
    const third = w.wait(7, 5);
    assert.equal(w.size, 2, 'the slot freed by the release is taken');
    w.release(7);
    await third;
  });

  test('offsets and watermarks that are not log offsets are caller bugs (InvariantError), and nothing is kept', () => {
    const w = new Waiters();
    const bad = [Number.NaN, -1, 1.5, Number.POSITIVE_INFINITY];
    for (const value of bad) {
      assert.throws(() => w.wait(value, 0), InvariantError, `wait offset ${value}`);
      assert.throws(() => w.wait(5, value), InvariantError, `wait watermark ${value}`);
      assert.throws(() => w.release(value), InvariantError, `release ${value}`);
      assert.throws(() => w.failAbove(value, lost), InvariantError, `failAbove ${value}`);
    }
    assert.equal(w.size, 0);
    for (const bound of [0, -1, 1.5, Number.NaN]) assert.throws(() => new Waiters(bound), InvariantError, `bound ${bound}`);
  });
});

// ------------------------------------------------------------------ model

type Op =
  | { kind: 'wait'; offset: number; watermark: number }
  | { kind: 'release'; watermark: number }
  | { kind: 'failAbove'; endOffset: number }
  | { kind: 'failAll' };

const offset = fc.integer({ min: 0, max: 20 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('wait' as const), offset, watermark: offset }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), watermark: offset }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('failAbove' as const), endOffset: offset }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'failAll' as const }) },
);

interface ModelWaiter {
  label: string;
  offset: number;
}

/** Every waiter in arrival order; each operation says which settle, how (resolved, or the kind of the error), and in what order. */
class WaitersModel {
  pending: ModelWaiter[] = [];

  constructor(readonly waitersMax: number) {}

  /** The settlements `o` causes, in the order they must happen. */
  apply(o: Op, label: string): string[] {
    switch (o.kind) {
      case 'wait':
        if (o.watermark >= o.offset) return [`${label}:resolved`];
        if (this.pending.length >= this.waitersMax) return [`${label}:resource_exhausted`];
        this.pending.push({ label, offset: o.offset });
        return [];
      case 'release':
        return this.settle((w) => w.offset <= o.watermark, 'resolved');
      case 'failAbove':
        return this.settle((w) => w.offset > o.endOffset, 'unavailable');
      case 'failAll':
        return this.settle(() => true, 'unavailable');
    }
  }

  /** Settles the matching waiters in offset order, arrival order among equal offsets. */
  private settle(match: (w: ModelWaiter) => boolean, how: string): string[] {
    const settled = this.pending.filter(match);
    this.pending = this.pending.filter((w) => !match(w));
    return settled.sort((a, b) => a.offset - b.offset).map((w) => `${w.label}:${how}`); // a stable sort
  }
}

test('waiters (property): against a model keeping every waiter, each operation settles exactly the waiters it should, resolved or rejected as it should, in offset order then arrival order, and the size agrees; a full set refuses', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 8 }), async (ops, waitersMax) => {
      const waiters = new Waiters(waitersMax);
      const model = new WaitersModel(waitersMax);
      const settled: Array<[string, Outcome]> = [];
      for (const [index, o] of ops.entries()) {
        const label = `w${index}`;
        const before = settled.length;
        if (o.kind === 'wait') track(waiters, label, o.offset, o.watermark, settled);
        else if (o.kind === 'release') waiters.release(o.watermark);
        else if (o.kind === 'failAbove') waiters.failAbove(o.endOffset, lost);
        else waiters.failAll(lost);
        const expected = model.apply(o, label);
        await flush();
        assert.deepEqual(labels(settled.slice(before)), expected, `${index}: ${JSON.stringify(o)}`);
        assert.equal(waiters.size, model.pending.length, `${index}: size`);
      }
    }),
    { numRuns: 200 },
  );
});
