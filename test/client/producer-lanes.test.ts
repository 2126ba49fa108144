// The producer's lanes (src/client/producer-lane.ts) against a scripted broker: each test names
// the rule of the lane it checks. No network, no timers beyond the lane's own.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProducerLane, type LaneHost, type LaneItem, type LaneOptions, type SentMessage } from '../../src/client/producer-lane.js';
import { SequenceGapError } from '../../src/client/produce-stream.js';
import { messageToWire } from '../../src/client/wire.js';
import { InvalidArgumentError, NotLeaderError, ResourceExhaustedError, TimeoutError, UnavailableError, type MambaError } from '../../src/errors.js';
import { OutcomeUnknownError } from '../../src/client/produce-outcome.js';

interface Sent {
  queue: number;
  bodies: string[];
  producerId: number;
  sequence: number;
  settle: (outcome: Outcome) => void;
}

/**
 * How a request is answered: taken by the broker and acknowledged, or it fails with `error`,
 * which the broker answered (`how` 'refused', the default without `stored`), or which came
 * without an answer: never sent ('unsent': connection refused, no route) or written with its
 * answer lost ('lost', the default with `stored`). `stored`: the broker took the request before
 * the failure (stored unless its sequence is a gap or a duplicate): an answer lost, or an
 * UNAVAILABLE or timeout answered after the append.
 */
type Outcome = { ok: true } | { ok: false; error: MambaError; how?: 'refused' | 'unsent' | 'lost'; stored?: boolean };

/**
 * A broker for the queues of one topic that keeps the producer table rule (a batch is stored only
 * when its sequence is the next expected for its producer id on its queue; an unknown id starts
 * anywhere) and lets the test decide when and how each request is answered. Offsets count over
 * every queue (storedAt[offset] is where and what).
 */
class ScriptedBroker {
  readonly sent: Sent[] = [];
  readonly stored: string[] = [];
  /** Each stored message as [queue, body], in the order stored. */
  readonly storedAt: Array<[number, string]> = [];
  /** Next sequence per (queue, producer id), as the broker's producer table keeps it. */
  private readonly expected = new Map<string, number>();
  private readonly baseOf = new Map<string, number>();
  freedBytes = 0;
  dropped: string[] = [];
  private ids = 100;
  closed = false;
  /** The fake clock: the lane's sleeps advance it at once. */
  nowMs = 0;

  host(overrides: Partial<LaneHost> = {}): LaneHost {
    return {
      send: (_topic, queue, messages, producerId, sequence, progress) =>
        new Promise((resolve, reject) => {
          const bodies = messages.map((m) => String(m.body));
          progress.stage = 'written';
          this.sent.push({
            queue,
            bodies,
            producerId,
            sequence,
            settle: (outcome) => {
              const how = outcome.ok ? 'refused' : (outcome.how ?? (outcome.stored ? 'lost' : 'refused'));
              assert.ok(outcome.ok || !outcome.stored || how !== 'unsent', 'a request never sent is not taken');
              if (how === 'refused') progress.stage = 'answered';
              if (how === 'unsent') progress.stage = 'unsent';
              if (!outcome.ok && !outcome.stored) return reject(outcome.error);
              const answer = this.take(queue, bodies, producerId, sequence);
              if (!outcome.ok) return reject(outcome.error);
              if (answer instanceof SequenceGapError) return reject(answer);
              resolve(answer);
            },
          });
        }),
      newProducerId: () => ++this.ids,
      nextGroupQueue: async () => null,
      sleep: async (ms) => {
        this.nowMs += ms;
      },
      now: () => this.nowMs,
      isClosed: () => this.closed,
      freed: (bytes) => {
        this.freedBytes += bytes;
      },
      drop: (_topic, _queue, items) => {
        this.dropped.push(...items.map((i) => String(i.message.body)));
        for (const i of items) i.reject(new UnavailableError('dropped'));
      },
      ...overrides,
    };
  }

  /** The producer table rule: a gap is refused, a duplicate answered with its offset, anything else stored. */
  private take(queue: number, bodies: string[], producerId: number, sequence: number): SequenceGapError | { baseOffset: number; duplicate: boolean } {
    const producer = `${queue}/${producerId}`;
    const next = this.expected.get(producer);
    if (next !== undefined && sequence > next) return new SequenceGapError(`sequence ${sequence} skips ahead of ${next}`);
    if (next !== undefined && sequence < next) return { baseOffset: this.baseOf.get(`${producer}/${sequence}`)!, duplicate: true };
    const baseOffset = this.stored.length;
    this.baseOf.set(`${producer}/${sequence}`, baseOffset);
    this.stored.push(...bodies);
    this.storedAt.push(...bodies.map((body): [number, string] => [queue, body]));
    this.expected.set(producer, sequence + bodies.length);
    return { baseOffset, duplicate: false };
  }

  /** Answers the oldest unanswered request. */
  answerNext(outcome: Outcome = { ok: true }): Sent {
    const next = this.sent.find((s) => !(s as Sent & { answered?: boolean }).answered) as Sent & { answered?: boolean };
    assert.ok(next, 'a request to answer');
    next.answered = true;
    next.settle(outcome);
    return next;
  }

  unanswered(): number {
    return this.sent.filter((s) => !(s as Sent & { answered?: boolean }).answered).length;
  }
}

const options = (overrides: Partial<LaneOptions> = {}): LaneOptions => ({
  batchBytesMax: 1024 * 1024,
  batchesInflightMax: 2,
  pipelineBytesMin: 0,
  lingerMs: 0,
  retry: { attemptsMax: 3, backoffMsInitial: 0, backoffMsMax: 0, multiplier: 1, jitter: 0, elapsedMsMax: 60_000 },
  whenUnavailable: 'buffer',
  groupFailuresMax: 3,
  ack: 'quorum',
  ...overrides,
});

function item(body: string, results: Map<string, SentMessage | Error>): LaneItem {
  return { message: messageToWire({ body }), bytes: 10, resolve: (s) => results.set(body, s), reject: (e) => results.set(body, e) };
}

/** Sends one message and has it acknowledged, so the broker knows the lane's producer id (rule 3). */
async function confirmed(lane: ProducerLane, broker: ScriptedBroker, results: Map<string, SentMessage | Error>): Promise<void> {
  lane.add(item('first', results));
  broker.answerNext();
  await settle();
}

/** Lets every settled promise run its continuations (the lane's recovery is a chain of awaits). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('producer lanes', () => {
  test('rule 1: a message for an idle lane leaves at once, alone, with no linger', () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options(), broker.host());
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('a', results));
    assert.equal(broker.sent.length, 1, 'sent synchronously inside add()');
    assert.deepEqual(broker.sent[0]!.bodies, ['a']);
  });

  test('rule 1: what arrives while the lane is full in flight coalesces into one batch, sent when a batch returns', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 2 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    for (const body of ['a', 'b', 'c', 'd', 'e']) lane.add(item(body, results));
    assert.deepEqual(
      broker.sent.slice(1).map((s) => s.bodies),
      [['a'], ['b']],
      'two batches in flight, the rest waits',
    );
    broker.answerNext();
    await settle();
    assert.deepEqual(
      broker.sent.slice(1).map((s) => s.bodies),
      [['a'], ['b'], ['c', 'd', 'e']],
    );
    broker.answerNext();
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['first', 'a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(
      ['a', 'b', 'c', 'd', 'e'].map((b) => (results.get(b) as SentMessage).offset),
      [1, 2, 3, 4, 5],
    );
    assert.ok(lane.idle);
    assert.equal(broker.freedBytes, 60, 'every byte given back once');
  });

  test('rule 1: with batches in flight, one more leaves only once pipelineBytesMin bytes wait', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 4, pipelineBytesMin: 30 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    lane.add(item('a', results)); // idle: leaves at once
    lane.add(item('b', results));
    lane.add(item('c', results));
    assert.deepEqual(
      broker.sent.slice(1).map((s) => s.bodies),
      [['a']],
      '20 bytes wait: below 30, they coalesce',
    );
    lane.add(item('d', results));
    assert.deepEqual(
      broker.sent.slice(1).map((s) => s.bodies),
      [['a'], ['b', 'c', 'd']],
      '30 bytes: one more batch in flight',
    );
    broker.answerNext();
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['first', 'a', 'b', 'c', 'd']);
  });

  test('rule 3: a producer id the broker has not acknowledged yet has one batch in flight', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 4 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    for (const body of ['a', 'b', 'c']) lane.add(item(body, results));
    assert.deepEqual(
      broker.sent.map((s) => s.bodies),
      [['a']],
    );
    broker.answerNext();
    await settle();
    assert.deepEqual(
      broker.sent.map((s) => s.bodies),
      [['a'], ['b', 'c']],
    );
  });

  test('rule 1: batchBytesMax splits what waits into several batches', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 1, batchBytesMax: 1024 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('first', results));
    for (let i = 0; i < 250; i++) lane.add(item(`m${i}`, results)); // 10 bytes each: 102 fit in 1024
    broker.answerNext();
    await settle();
    assert.equal(broker.sent[1]!.bodies.length, 102);
  });

  test('rule 1: lingerMs > 0 holds a batch that is not full until the linger ends', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ lingerMs: 20 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('a', results));
    lane.add(item('b', results));
    assert.equal(broker.sent.length, 0);
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.deepEqual(
      broker.sent.map((s) => s.bodies),
      [['a', 'b']],
    );
  });

  test('rules 2 and 3: batches in flight carry contiguous sequence numbers under one producer id, in order', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 4 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    for (const body of ['a', 'b', 'c']) lane.add(item(body, results));
    assert.equal(broker.sent.length, 4);
    assert.deepEqual(
      broker.sent.map((s) => s.sequence),
      [0, 1, 2, 3],
    );
    assert.equal(new Set(broker.sent.map((s) => s.producerId)).size, 1);
  });

  test('rule 4: a retriable failure stops new batches, then resends the failed ones in order with the same numbers', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 3 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    for (const body of ['a', 'b', 'c']) lane.add(item(body, results));
    broker.answerNext({ ok: false, error: new UnavailableError('leader gone') }); // a fails
    broker.answerNext(); // b: a gap (a is missing)
    lane.add(item('d', results));
    assert.equal(broker.sent.length, 4, 'no new batch while recovering');
    broker.answerNext(); // c: a gap too
    await settle();
    // Recovery: a alone, then b, then c, each answered in turn.
    for (const expected of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ] as const) {
      const resent: Sent = broker.sent[broker.sent.length - 1]!;
      assert.deepEqual([resent.bodies[0], resent.sequence], expected);
      assert.equal(broker.unanswered(), 1, 'one batch at a time while recovering');
      broker.answerNext();
      await settle();
    }
    // Back to normal: d leaves next, numbered after c.
    const last = broker.sent[broker.sent.length - 1]!;
    assert.deepEqual([last.bodies, last.sequence], [['d'], 4]);
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['first', 'a', 'b', 'c', 'd']);
    assert.ok(lane.idle);
    assert.equal(broker.freedBytes, 50);
  });

  test('rule 4: a batch stored whose answer was lost is resent with the same numbers and answered as a duplicate', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 2 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    lane.add(item('a', results));
    lane.add(item('b', results));
    broker.answerNext({ ok: false, error: new UnavailableError('stream broke'), stored: true });
    broker.answerNext({ ok: false, error: new UnavailableError('stream broke'), stored: true });
    await settle();
    broker.answerNext();
    await settle();
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['first', 'a', 'b'], 'stored once each');
    assert.deepEqual(
      ['a', 'b'].map((x) => results.get(x) as SentMessage).map((r) => [r.offset, r.duplicate]),
      [
        [1, true],
        [2, true],
      ],
    );
  });

  test('rule 4: a batch refused for good fails its messages; the batches behind it start over under a new producer id', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 3 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    for (const body of ['a', 'b', 'c']) lane.add(item(body, results));
    const firstId = broker.sent[0]!.producerId;
    broker.answerNext({ ok: false, error: new InvalidArgumentError('message too large') });
    broker.answerNext(); // gap
    broker.answerNext(); // gap
    await settle();
    assert.ok(results.get('a') instanceof InvalidArgumentError);
    const resentB = broker.sent[4]!;
    assert.deepEqual(resentB.bodies, ['b']);
    assert.notEqual(resentB.producerId, firstId);
    assert.equal(resentB.sequence, 0);
    broker.answerNext();
    await settle();
    const resentC = broker.sent[5]!;
    assert.deepEqual([resentC.bodies, resentC.producerId, resentC.sequence], [['c'], resentB.producerId, 1]);
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['first', 'b', 'c']);
    assert.equal(broker.freedBytes, 40);
  });

  test('rule 4: a gap while alone in flight (the broker lost acknowledged batches) starts over under a new id', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 1 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('a', results));
    broker.answerNext({ ok: false, error: new SequenceGapError('gap') });
    await settle();
    // Recovery resends it as is first (a gap in flight is usually an earlier failure's echo) …
    broker.answerNext({ ok: false, error: new SequenceGapError('gap') });
    await settle();
    // … and a second gap alone means the earlier batches are gone: new id, sequence 0.
    const last = broker.sent[broker.sent.length - 1]!;
    assert.equal(last.sequence, 0);
    assert.notEqual(last.producerId, broker.sent[0]!.producerId);
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['a']);
  });

  test('rule 4: whenUnavailable drop gives a batch no broker took up after retry.attemptsMax and the lane goes on', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 1, whenUnavailable: 'drop' }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('a', results));
    lane.add(item('b', results));
    for (let i = 0; i < 3; i++) {
      broker.answerNext({ ok: false, error: new UnavailableError('connection refused'), how: 'unsent' });
      await settle();
    }
    assert.deepEqual(broker.dropped, ['a']);
    broker.answerNext(); // b, under a new producer id
    await settle();
    assert.deepEqual(broker.stored, ['b']);
    assert.ok(lane.idle);
    assert.equal(broker.freedBytes, 20);
  });

  test("rule 4: a round-robin batch no broker took (refused before send or before the append) moves to another group's queue under its own producer id", async () => {
    const refusals: Outcome[] = [
      { ok: false, error: new UnavailableError('connection refused'), how: 'unsent' },
      { ok: false, error: new NotLeaderError('not the leader', null, null) },
      { ok: false, error: new ResourceExhaustedError('too many uncommitted entries') },
    ];
    for (const refusal of refusals) {
      const broker = new ScriptedBroker();
      const lane = new ProducerLane(
        't',
        0,
        true,
        options({ batchesInflightMax: 1, groupFailuresMax: 2, retry: { ...options().retry, attemptsMax: 10 } }),
        broker.host({ nextGroupQueue: async () => 1 }),
      );
      const results = new Map<string, SentMessage | Error>();
      lane.add(item('a', results));
      broker.answerNext(refusal);
      await settle();
      broker.answerNext(refusal);
      await settle();
      const moved = broker.sent[broker.sent.length - 1]!;
      assert.deepEqual([moved.queue, moved.sequence], [1, 0], refusal.ok ? '' : refusal.error.message);
      assert.notEqual(moved.producerId, broker.sent[0]!.producerId);
      broker.answerNext();
      await settle();
      assert.equal((results.get('a') as SentMessage).queue, 1);
      assert.deepEqual(broker.storedAt, [[1, 'a']]);
    }
  });

  test('rule 4: a round-robin batch no group takes is dropped after the retries (drop) or kept trying on the next groups (buffer)', async () => {
    const refused: Outcome = { ok: false, error: new UnavailableError('connection refused'), how: 'unsent' };
    const drop = new ScriptedBroker();
    const dropLane = new ProducerLane(
      't',
      0,
      true,
      options({ batchesInflightMax: 1, groupFailuresMax: 2, whenUnavailable: 'drop', retry: { ...options().retry, attemptsMax: 5 } }),
      drop.host({ nextGroupQueue: async (_topic, queue) => (queue + 1) % 3 }),
    );
    const dropResults = new Map<string, SentMessage | Error>();
    dropLane.add(item('a', dropResults));
    for (let i = 0; i < 5; i++) {
      drop.answerNext(refused);
      await settle();
    }
    assert.deepEqual(
      drop.sent.map((s) => s.queue),
      [0, 0, 1, 1, 2],
      'two attempts per group, then the next group',
    );
    assert.deepEqual(drop.dropped, ['a']);
    assert.ok(dropLane.idle);

    const buffer = new ScriptedBroker();
    const bufferLane = new ProducerLane(
      't',
      0,
      true,
      options({ batchesInflightMax: 1, groupFailuresMax: 2, retry: { ...options().retry, attemptsMax: 5 } }),
      buffer.host({ nextGroupQueue: async (_topic, queue) => (queue + 1) % 3 }),
    );
    const bufferResults = new Map<string, SentMessage | Error>();
    bufferLane.add(item('a', bufferResults));
    for (let i = 0; i < 8; i++) {
      buffer.answerNext(refused);
      await settle();
    }
    assert.equal(bufferResults.size, 0, 'buffer: still trying past retry.attemptsMax');
    buffer.answerNext();
    await settle();
    assert.deepEqual(buffer.storedAt, [[1, 'a']], 'taken by the group its ninth attempt reached');
  });

  test('rule 4: a round-robin batch that may be stored (answer lost) never moves: it is resent to its queue with the same numbers', async () => {
    // The reported sequence: attempt 1 is stored in queue 0 but its answer is lost, then the old
    // leader refuses twice with NOT_LEADER while its group elects. Moving the batch to queue 1
    // would store it there as well once the new leader of queue 0 commits attempt 1.
    const broker = new ScriptedBroker();
    const lane = new ProducerLane(
      't',
      0,
      true,
      options({ batchesInflightMax: 1, groupFailuresMax: 3, retry: { ...options().retry, attemptsMax: 10 } }),
      broker.host({ nextGroupQueue: async () => 1 }),
    );
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('a', results));
    broker.answerNext({ ok: false, error: new UnavailableError('stream broke'), stored: true });
    await settle();
    for (let i = 0; i < 2; i++) {
      broker.answerNext({ ok: false, error: new NotLeaderError('not the leader', null, null) });
      await settle();
    }
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.storedAt, [[0, 'a']], 'stored once, in queue 0');
    assert.deepEqual(
      broker.sent.map((s) => [s.queue, s.producerId, s.sequence]),
      broker.sent.map(() => [0, broker.sent[0]!.producerId, 0]),
      'every attempt to queue 0 under the first producer id and sequence',
    );
    const sent = results.get('a') as SentMessage;
    assert.deepEqual([sent.queue, sent.offset, sent.duplicate], [0, 0, true]);
  });

  test('rule 4: a batch whose outcome is unknown fails at its deadline with OutcomeUnknownError naming its queue, never moved nor dropped', async () => {
    for (const roundRobin of [false, true]) {
      const broker = new ScriptedBroker();
      const lane = new ProducerLane(
        't',
        0,
        roundRobin,
        options({
          batchesInflightMax: 1,
          whenUnavailable: 'drop',
          retry: { attemptsMax: 100, backoffMsInitial: 100, backoffMsMax: 100, multiplier: 1, jitter: 0, elapsedMsMax: 1000 },
        }),
        broker.host({ nextGroupQueue: async () => 1 }),
      );
      const results = new Map<string, SentMessage | Error>();
      lane.add(item('a', results));
      lane.add(item('b', results));
      broker.answerNext({ ok: false, error: new TimeoutError('no answer within requestTimeoutMs'), how: 'lost' });
      await settle();
      while (!results.has('a') && broker.unanswered() > 0) {
        broker.answerNext({ ok: false, error: new NotLeaderError('not the leader', null, null) });
        await settle();
      }
      const failure = results.get('a');
      assert.ok(failure instanceof OutcomeUnknownError, `roundRobin ${roundRobin}: ${String(failure)}`);
      assert.deepEqual([failure.queue, failure.topic, failure.retriable], [0, 't', false]);
      assert.match(failure.message, /queue 0 of "t".*unknown/);
      assert.ok(failure.lastError instanceof NotLeaderError);
      assert.equal(broker.nowMs, 1000, 'given up at retry.elapsedMsMax');
      const attempts = broker.sent.filter((s) => s.bodies[0] === 'a');
      assert.equal(attempts.length, 11, 'the first, then one every 100 ms');
      assert.ok(
        attempts.every((s) => s.queue === 0 && s.producerId === attempts[0]!.producerId && s.sequence === 0),
        'every attempt to queue 0 with the same numbers',
      );
      assert.deepEqual(broker.dropped, [], 'not dropped: it may be stored');
      // The lane goes on under a new producer id: b left at once.
      broker.answerNext();
      await settle();
      const b = broker.sent[broker.sent.length - 1]!;
      assert.deepEqual([b.bodies, b.sequence], [['b'], 0]);
      assert.notEqual(b.producerId, broker.sent[0]!.producerId);
      assert.equal((results.get('b') as SentMessage).queue, 0);
      assert.ok(lane.idle);
    }
  });

  test('rule 4: after the lane starts over, a batch behind that may be stored keeps its numbers and is answered as a duplicate', async () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane(
      't',
      0,
      false,
      options({ batchesInflightMax: 2, whenUnavailable: 'drop', retry: { ...options().retry, attemptsMax: 2 } }),
      broker.host(),
    );
    const results = new Map<string, SentMessage | Error>();
    await confirmed(lane, broker, results);
    lane.add(item('a', results));
    lane.add(item('b', results));
    const firstId = broker.sent[0]!.producerId;
    // The stream breaks after the broker stored both; neither answer arrives.
    broker.answerNext({ ok: false, error: new UnavailableError('stream broke'), how: 'lost', stored: true });
    broker.answerNext({ ok: false, error: new UnavailableError('stream broke'), how: 'lost', stored: true });
    await settle();
    // a is resent and its answers keep getting lost until the retries end.
    broker.answerNext({ ok: false, error: new UnavailableError('stream broke'), how: 'lost' });
    await settle();
    assert.ok(results.get('a') instanceof OutcomeUnknownError);
    const resentB = broker.sent[broker.sent.length - 1]!;
    assert.deepEqual([resentB.bodies, resentB.producerId, resentB.sequence], [['b'], firstId, 2], 'b keeps its numbers');
    broker.answerNext();
    await settle();
    assert.deepEqual(broker.stored, ['first', 'a', 'b'], 'b stored once');
    assert.deepEqual([(results.get('b') as SentMessage).offset, (results.get('b') as SentMessage).duplicate], [2, true]);
  });

  test('a closing producer refuses what the lane has not sent', () => {
    const broker = new ScriptedBroker();
    const lane = new ProducerLane('t', 0, false, options({ batchesInflightMax: 1 }), broker.host());
    const results = new Map<string, SentMessage | Error>();
    lane.add(item('a', results));
    lane.add(item('b', results));
    lane.failPending(new UnavailableError('closed'));
    assert.ok(results.get('b') instanceof UnavailableError);
    assert.equal(broker.freedBytes, 10);
  });
});

// The lane against a model of what becomes of each message, over random scripts of answers:
// acknowledged, refused before the append, never sent, and unknown outcomes (an answer lost after
// the broker took the request or not, UNAVAILABLE or a timeout answered after the append), for
// pinned and round-robin lanes over three queues in both whenUnavailable modes. Then a liveness
// phase in which every request is acknowledged. A failure prints fast-check's seed and path; pass
// them in fc.assert's options to replay it.
type Step = { kind: 'add'; count: number } | { kind: 'answer'; outcome: number };

const outcomes: Outcome[] = [
  { ok: true },
  { ok: false, error: new NotLeaderError('not the leader', null, null) },
  { ok: false, error: new ResourceExhaustedError('too many uncommitted entries') },
  { ok: false, error: new UnavailableError('connection refused'), how: 'unsent' },
  { ok: false, error: new UnavailableError('stream broke'), how: 'lost', stored: true },
  { ok: false, error: new TimeoutError('no answer within requestTimeoutMs'), how: 'lost' },
  { ok: false, error: new UnavailableError('lost leadership before the entry committed'), stored: true, how: 'refused' },
  { ok: false, error: new UnavailableError('broker is shutting down') },
  { ok: false, error: new InvalidArgumentError('message too large') },
];

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('add' as const), count: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('answer' as const), outcome: fc.integer({ min: 0, max: outcomes.length - 1 }) }) },
);

const laneSetup = fc.record({
  roundRobin: fc.boolean(),
  whenUnavailable: fc.constantFrom('buffer' as const, 'drop' as const),
  batchesInflightMax: fc.integer({ min: 1, max: 3 }),
  attemptsMax: fc.integer({ min: 2, max: 6 }),
  groupFailuresMax: fc.integer({ min: 1, max: 3 }),
});

describe('producer lanes against a model', () => {
  test('no message is stored twice; an acknowledged one is where its answer says; a failed one is stored nowhere unless its outcome is unknown', async () => {
    await fc.assert(
      fc.asyncProperty(laneSetup, fc.array(step, { maxLength: 40, size: 'max' }), async (setup, steps) => {
        const broker = new ScriptedBroker();
        const lane = new ProducerLane(
          't',
          0,
          setup.roundRobin,
          options({
            batchesInflightMax: setup.batchesInflightMax,
            groupFailuresMax: setup.groupFailuresMax,
            whenUnavailable: setup.whenUnavailable,
            retry: { ...options().retry, attemptsMax: setup.attemptsMax },
          }),
          broker.host({ nextGroupQueue: async (_topic, queue) => (queue + 1) % 3 }),
        );
        const results = new Map<string, SentMessage | Error>();
        let added = 0;
        for (const s of steps) {
          if (s.kind === 'add') for (let i = 0; i < s.count; i++) lane.add(item(`m${added++}`, results));
          else if (broker.unanswered() > 0) broker.answerNext(outcomes[s.outcome]!);
          await settle();
        }
        // Liveness: with every request acknowledged from here on, everything settles.
        for (let round = 0; round < 100 && !(lane.idle && results.size === added); round++) {
          if (broker.unanswered() > 0) broker.answerNext();
          await settle();
        }
        assert.equal(results.size, added, 'every message settled');
        assert.ok(lane.idle);
        assert.equal(new Set(broker.stored).size, broker.stored.length, `stored once at most: ${broker.storedAt.map(([q, b]) => `${q}:${b}`).join(' ')}`);
        for (const [body, result] of results) {
          if (!(result instanceof Error)) assert.deepEqual(broker.storedAt[result.offset], [result.queue, body], `${body} acknowledged where it is stored`);
          else if (!(result instanceof OutcomeUnknownError)) assert.ok(!broker.stored.includes(body), `${body} failed (${result.message}) but is stored`);
        }
      }),
      { numRuns: 500 },
    );
  });
});
