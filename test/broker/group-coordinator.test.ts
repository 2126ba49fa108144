// Consumer-group membership (src/broker/group-coordinator.ts): each test names the rule it
// checks. Time is the nowMs argument, so no test sleeps. Most tests use a coordinator in service
// (past the one session timeout a new coordinator spends learning the members' claims); the
// learning rule has tests of its own. The property test at the end drives members that read
// exactly what their last answer allowed, lose answers, pause, crash and leave, while the
// coordinator changes (failover, restart), and checks that no two of them ever read one queue at
// the same time, then that the groups settle on the round-robin deal. A property failure prints
// fast-check's seed and path; pass them in fc.assert's options to replay it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ResourceExhaustedError } from '../../src/errors.js';
import { GroupCoordinator, groupsTrackedMax, membersPerGroupMax, type HeartbeatResult } from '../../src/broker/group-coordinator.js';

const sessionTimeoutMs = 1000;

/** A coordinator in service: its first heartbeat (a member leaving another group) was more than one session timeout before time 0. */
function inService(): GroupCoordinator {
  const c = new GroupCoordinator(sessionTimeoutMs);
  c.heartbeat('earlier', 't', 1, 'm', [], true, -sessionTimeoutMs - 1);
  return c;
}

/** One heartbeat of `member` in consumer group 'g' on topic 't' with `queues` queues. */
function beat(c: GroupCoordinator, member: string, owned: number[], nowMs: number, queues = 6, leave = false): HeartbeatResult {
  return c.heartbeat('g', 't', queues, member, owned, leave, nowMs);
}

/** Heartbeats every member in turn, each claiming what its previous answer gave it (first: `from`, or nothing), `rounds` times. */
function settle(c: GroupCoordinator, members: string[], queues: number, nowMs: number, rounds = 3, from?: Map<string, number[]>): Map<string, number[]> {
  const reading = new Map<string, number[]>(members.map((m) => [m, from?.get(m) ?? []]));
  for (let round = 0; round < rounds; round++) {
    for (const m of members) reading.set(m, beat(c, m, reading.get(m)!, nowMs, queues).assignedQueues);
  }
  return reading;
}

describe('group-coordinator: the deal', () => {
  test('the first member of a group gets every queue, generation 1, and the session timeout', () => {
    const c = inService();
    assert.deepEqual(beat(c, 'm1', [], 0, 4), { generation: 1, assignedQueues: [0, 1, 2, 3], members: ['m1'], sessionTimeoutMs });
  });

  const table: Array<{ rule: string; members: string[]; queues: number; expected: Record<string, number[]> }> = [
    { rule: 'two members split six queues alternately, in id order', members: ['b', 'a'], queues: 6, expected: { a: [0, 2, 4], b: [1, 3, 5] } },
    {
      rule: 'three members over seven queues: the first ids take the remainder',
      members: ['m3', 'm1', 'm2'],
      queues: 7,
      expected: { m1: [0, 3, 6], m2: [1, 4], m3: [2, 5] },
    },
    { rule: 'more members than queues: the last ids get nothing', members: ['c', 'b', 'a'], queues: 2, expected: { a: [0], b: [1], c: [] } },
    { rule: 'a single queue goes to the lowest id', members: ['z', 'y'], queues: 1, expected: { y: [0], z: [] } },
    { rule: 'ids are ordered as strings, not as numbers', members: ['m10', 'm9'], queues: 2, expected: { m10: [0], m9: [1] } },
  ];
  for (const { rule, members, queues, expected } of table) {
    test(`settled: ${rule}`, () => {
      const c = inService();
      const reading = settle(c, members, queues, 0);
      assert.deepEqual(Object.fromEntries([...reading].sort(([a], [b]) => a.localeCompare(b))), expected);
    });
  }

  test('claims of queues that do not exist (negative, too large, not integers) are ignored and block nobody', () => {
    const c = inService();
    const invalid = [-1, 6, 7, 1.5, 3.2, Number.NaN];
    beat(c, 'a', [], 0);
    beat(c, 'b', [], 0);
    assert.deepEqual(beat(c, 'a', invalid, 1).assignedQueues, [0, 2, 4]);
    assert.deepEqual(beat(c, 'b', [], 2).assignedQueues, [1, 3, 5], 'b is not blocked by claims of 1.5 or 3.2');
    assert.deepEqual(beat(c, 'a', invalid, 3).assignedQueues, [0, 2, 4]);
  });

  test('consumer groups are independent per (group, topic)', () => {
    const c = inService();
    beat(c, 'a', [], 0);
    assert.deepEqual(c.heartbeat('g', 'other', 2, 'b', [], false, 0).assignedQueues, [0, 1], 'same group, other topic');
    assert.deepEqual(c.heartbeat('h', 't', 2, 'b', [], false, 0).assignedQueues, [0, 1], 'same topic, other group');
  });
});

describe('group-coordinator: a queue moves only once its old owner gave it up', () => {
  test('a joining member waits for queues the old owner was granted, then for those it still claims', () => {
    const c = inService();
    const all = beat(c, 'a', [], 0).assignedQueues; // a reads 0..5
    assert.deepEqual(all, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(beat(c, 'b', [], 1).assignedQueues, [], 'b: every queue dealt to it is still granted to a');
    assert.deepEqual(beat(c, 'a', all, 2).assignedQueues, [0, 2, 4], 'a is told to give up 1, 3, 5');
    assert.deepEqual(beat(c, 'b', [], 3).assignedQueues, [], 'b: a has not confirmed giving them up');
    assert.deepEqual(beat(c, 'a', [0, 2, 4], 4).assignedQueues, [0, 2, 4]);
    assert.deepEqual(beat(c, 'b', [], 5).assignedQueues, [1, 3, 5], 'b: a gave them up');
  });

  test('a member whose answer was lost still blocks the queues it claims', () => {
    const c = inService();
    beat(c, 'a', [], 0);
    beat(c, 'b', [], 1);
    beat(c, 'a', [0, 1, 2, 3, 4, 5], 2); // answer [0, 2, 4] lost: a still reads everything
    beat(c, 'a', [0, 1, 2, 3, 4, 5], 3); // it claims everything again
    assert.deepEqual(beat(c, 'b', [], 4).assignedQueues, [], 'b must wait while a claims them');
  });

  test('a member that leaves frees its queues at once and is answered with none', () => {
    const c = inService();
    settle(c, ['a', 'b'], 6, 0);
    const left = beat(c, 'a', [0, 2, 4], 1, 6, true);
    assert.deepEqual(left.assignedQueues, []);
    assert.deepEqual(left.members, ['b']);
    assert.deepEqual(beat(c, 'b', [1, 3, 5], 2).assignedQueues, [0, 1, 2, 3, 4, 5]);
  });

  test('a member whose session expired frees its queues without confirming', () => {
    const c = inService();
    settle(c, ['a', 'b'], 6, 0);
    beat(c, 'b', [1, 3, 5], 600);
    const after = beat(c, 'b', [1, 3, 5], 1001);
    assert.deepEqual(after.members, ['b']);
    assert.deepEqual(after.assignedQueues, [0, 1, 2, 3, 4, 5]);
  });
});

describe('group-coordinator: sessions and generations', () => {
  const table: Array<{ rule: string; silentMs: number; alive: boolean }> = [
    { rule: 'a member silent for less than the session timeout is alive', silentMs: sessionTimeoutMs - 1, alive: true },
    { rule: 'a member silent for exactly the session timeout is alive', silentMs: sessionTimeoutMs, alive: true },
    { rule: 'a member silent for one millisecond more has expired', silentMs: sessionTimeoutMs + 1, alive: false },
  ];
  for (const { rule, silentMs, alive } of table) {
    test(rule, () => {
      const c = inService();
      beat(c, 'a', [], 0);
      const answer = beat(c, 'b', [], silentMs);
      assert.deepEqual(answer.members, alive ? ['a', 'b'] : ['b']);
    });
  }

  test('the generation grows exactly when the set of live members changes (join, leave, expiry), not on a plain heartbeat', () => {
    const c = inService();
    const steps: Array<{ what: string; run: () => HeartbeatResult; generation: number }> = [
      { what: 'a joins', run: () => beat(c, 'a', [], 0), generation: 1 },
      { what: 'a heartbeats', run: () => beat(c, 'a', [0, 1, 2, 3, 4, 5], 10), generation: 1 },
      { what: 'b joins', run: () => beat(c, 'b', [], 20), generation: 2 },
      { what: 'b heartbeats', run: () => beat(c, 'b', [], 30), generation: 2 },
      { what: 'c joins', run: () => beat(c, 'c', [], 40), generation: 3 },
      { what: 'c leaves', run: () => beat(c, 'c', [], 50, 6, true), generation: 4 },
      { what: 'c leaves again (unknown now)', run: () => beat(c, 'c', [], 60, 6, true), generation: 4 },
      { what: 'b heartbeats after a expired', run: () => beat(c, 'b', [], 20 + sessionTimeoutMs), generation: 5 },
      { what: 'b heartbeats again', run: () => beat(c, 'b', [], 30 + sessionTimeoutMs), generation: 5 },
    ];
    for (const { what, run, generation } of steps) assert.equal(run().generation, generation, what);
  });

  test('a group whose last member left is forgotten: the next member starts it again at generation 1', () => {
    const c = inService();
    beat(c, 'a', [], 0);
    beat(c, 'b', [], 0);
    beat(c, 'a', [], 1, 6, true);
    assert.deepEqual(beat(c, 'b', [], 2, 6, true), { generation: 4, assignedQueues: [], members: [], sessionTimeoutMs });
    assert.equal(beat(c, 'c', [], 3).generation, 1);
  });

  test('clear() forgets every group (this broker is no longer the coordinator); if it coordinates again, it learns the claims first', () => {
    const c = inService();
    settle(c, ['a', 'b'], 6, 0);
    c.clear();
    assert.deepEqual(beat(c, 'b', [1, 3, 5], 1), { generation: 1, assignedQueues: [1, 3, 5], members: ['b'], sessionTimeoutMs });
    assert.deepEqual(beat(c, 'b', [1, 3, 5], 2 + sessionTimeoutMs).assignedQueues, [0, 1, 2, 3, 4, 5], 'a never claimed its queues: gone');
  });
});

describe('group-coordinator: bounds refuse with a retriable RESOURCE_EXHAUSTED', () => {
  test(`a group holds at most ${membersPerGroupMax} members; members already in keep heartbeating; a slot freed by expiry is reused`, () => {
    const c = inService();
    beat(c, 'early', [], 0, 1);
    for (let i = 1; i < membersPerGroupMax; i++) beat(c, `m${i}`, [], 500, 1);
    assert.throws(
      () => beat(c, 'late', [], 500, 1),
      (e: unknown) => e instanceof ResourceExhaustedError && e.retriable && e.kind === 'resource_exhausted',
    );
    assert.equal(beat(c, 'm1', [], 500, 1).members.length, membersPerGroupMax, 'a member already in is served');
    assert.equal(beat(c, 'early', [], 500, 1, true).members.length, membersPerGroupMax - 1, 'leave is always accepted');
    assert.equal(beat(c, 'late', [], 501, 1).members.length, membersPerGroupMax, 'a slot freed by leaving is reused');
    assert.throws(() => beat(c, 'later', [], 502, 1), ResourceExhaustedError);
    beat(c, 'm1', [], 1400, 1); // everyone else expires after 1500
    assert.deepEqual(beat(c, 'later', [], 1501, 1).members, ['late', 'later', 'm1'], 'expired members free their slots');
  });

  test(`at most ${groupsTrackedMax} consumer groups are tracked; a new one is refused until some expire, then accepted`, () => {
    const c = inService();
    c.heartbeat('g0', 't', 1, 'm', [], false, 0);
    for (let i = 1; i < groupsTrackedMax; i++) c.heartbeat(`g${i}`, 't', 1, 'm', [], false, 500);
    assert.throws(
      () => c.heartbeat('new', 't', 1, 'm', [], false, 500),
      (e: unknown) => e instanceof ResourceExhaustedError && e.retriable,
    );
    assert.equal(c.heartbeat('g1', 't', 1, 'm', [], false, 600).generation, 1, 'a tracked group is still served');
    assert.equal(c.heartbeat('new', 't', 1, 'm', [], false, 1001).generation, 1, 'g0 expired and was dropped to make room');
    assert.throws(() => c.heartbeat('newer', 't', 1, 'm', [], false, 1001), ResourceExhaustedError, 'one slot freed, one taken');
  });
});

describe('group-coordinator: a new coordinator learns the claims for one session timeout before it deals a queue nobody claims', () => {
  test('after a coordinator change, a queue a live member still reads is not granted to another member before that member is heard', () => {
    const c = inService();
    const reading = settle(c, ['a', 'b'], 6, 0);
    c.clear(); // leadership moved away and back, or a new coordinator took over
    const b = beat(c, 'b', reading.get('b')!, 10).assignedQueues;
    const stillReadByA = reading.get('a')!.filter((q) => b.includes(q));
    assert.deepEqual(stillReadByA, [], 'queues granted to b while a still reads them');
  });

  test('a new coordinator (a restarted broker) keeps each member on what it claims, dealt to it or not; once learning ends the deal is the one before: nothing moves', () => {
    const old = inService();
    const reading = settle(old, ['a', 'b', 'c'], 7, 0);
    const c = new GroupCoordinator(sessionTimeoutMs);
    for (const [m, owned] of reading) assert.deepEqual(beat(c, m, owned, 5000, 7).assignedQueues, owned, `${m} keeps what it reads`);
    assert.deepEqual(settle(c, ['a', 'b', 'c'], 7, 5001, 3, reading), reading, 'while learning');
    assert.deepEqual(settle(c, ['a', 'b', 'c'], 7, 5001 + sessionTimeoutMs, 3, reading), reading, 'after');
  });

  test('the learning time starts at the first heartbeat, not when the coordinator was made, and lasts one session timeout, both ends included', () => {
    const c = new GroupCoordinator(sessionTimeoutMs);
    const table: Array<[nowMs: number, assigned: number[]]> = [
      [5000, []],
      [5000 + sessionTimeoutMs - 1, []],
      [5000 + sessionTimeoutMs, []],
      [5000 + sessionTimeoutMs + 1, [0, 1, 2, 3, 4, 5]],
    ];
    for (const [nowMs, assigned] of table) assert.deepEqual(beat(c, 'a', [], nowMs).assignedQueues, assigned, `at ${nowMs}`);
  });

  test('while learning, a member keeps what it claims, dealt to it or not, and nothing unclaimed is dealt; then the deal, moving a queue once its holder gave it up', () => {
    const c = new GroupCoordinator(sessionTimeoutMs);
    assert.deepEqual(beat(c, 'a', [0, 1, 2], 0).assignedQueues, [0, 1, 2]);
    assert.deepEqual(beat(c, 'b', [], 10).assignedQueues, [], 'b claims nothing: nothing yet');
    assert.deepEqual(beat(c, 'a', [0, 1, 2], 20).assignedQueues, [0, 1, 2], 'a keeps 1 although the deal gives it to b');
    assert.deepEqual(beat(c, 'b', [], 30).assignedQueues, [], 'b: 3 and 5 may be read by a member not heard from yet');
    assert.deepEqual(beat(c, 'a', [0, 1, 2], 1001).assignedQueues, [0, 2, 4], 'learning over: the deal; a is told to give up 1');
    assert.deepEqual(beat(c, 'b', [], 1002).assignedQueues, [3, 5], 'b waits for 1 until a gave it up');
    assert.deepEqual(beat(c, 'a', [0, 2, 4], 1003).assignedQueues, [0, 2, 4]);
    assert.deepEqual(beat(c, 'b', [3, 5], 1004).assignedQueues, [1, 3, 5]);
  });

  test('while learning, a queue two members claim (each read it before) is granted to neither', () => {
    const c = new GroupCoordinator(sessionTimeoutMs);
    assert.deepEqual(beat(c, 'a', [0, 1], 0).assignedQueues, [0, 1]);
    assert.deepEqual(beat(c, 'b', [1], 10).assignedQueues, [], 'b claims 1 but a does too');
    assert.deepEqual(beat(c, 'a', [0, 1], 20).assignedQueues, [0], 'a claims 1 but b does too');
    assert.deepEqual(beat(c, 'b', [1], 30).assignedQueues, []);
  });

  test('a member that read under the previous coordinator and is never heard here has stopped when learning ends: its queues are dealt then', () => {
    const c = inService();
    const reading = settle(c, ['a', 'b'], 6, 0);
    c.clear();
    const b = reading.get('b')!;
    for (let nowMs = 100; nowMs <= 100 + sessionTimeoutMs; nowMs += 100) assert.deepEqual(beat(c, 'b', b, nowMs).assignedQueues, b, `at ${nowMs}`);
    assert.deepEqual(beat(c, 'b', b, 101 + sessionTimeoutMs).assignedQueues, [0, 1, 2, 3, 4, 5]);
  });

  test('the learning time is for the whole coordinator: a group first heard of after it starts at once', () => {
    const c = new GroupCoordinator(sessionTimeoutMs);
    c.heartbeat('other', 't', 2, 'x', [], false, 0);
    assert.deepEqual(c.heartbeat('g', 't', 2, 'y', [], false, sessionTimeoutMs + 1).assignedQueues, [0, 1]);
  });
});

// ------------------------------------------------------------------ model

const memberIds = ['a', 'b', 'c', 'd'];
const queueCount = 5;

/** What a member does: it reads exactly what its last received answer allowed, and claims that. */
interface MemberModel {
  reading: number[];
  lastHeardMs: number | null; // time of the coordinator's last answer it received; null: not in the group
}

type Step =
  | { kind: 'beat'; member: number; answerLost: boolean }
  | { kind: 'leave'; member: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'failover'; restart: boolean };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('beat' as const),
      member: fc.integer({ min: 0, max: memberIds.length - 1 }),
      answerLost: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('leave' as const), member: fc.integer({ min: 0, max: memberIds.length - 1 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('wait' as const),
      ms: fc.oneof(fc.integer({ min: 1, max: 700 }), fc.constantFrom(sessionTimeoutMs / 2, sessionTimeoutMs, sessionTimeoutMs + 1)),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('failover' as const), restart: fc.boolean() }) },
);

/** Time passes. Client rule: a member that has not been answered within the session timeout stops reading. */
function advance(members: Map<string, MemberModel>, nowMs: number, ms: number): number {
  const later = nowMs + ms;
  for (const m of members.values())
    if (m.lastHeardMs !== null && later - m.lastHeardMs > sessionTimeoutMs) Object.assign(m, { reading: [], lastHeardMs: null });
  return later;
}

function checkNoQueueReadTwice(members: Map<string, MemberModel>, label: string): void {
  const readers = new Map<number, string>();
  for (const [id, m] of members) {
    for (const q of m.reading) {
      const other = readers.get(q);
      assert.equal(other, undefined, `${label}: queue ${q} read by ${other} and ${id}`);
      readers.set(q, id);
    }
  }
}

test('group-coordinator (property): members that read only what they were last granted never read one queue at the same time, through joins, leaves, lost answers, expiry and changes of coordinator; afterwards, once a new coordinator has learned the claims, four honest rounds settle on the round-robin deal', () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 80, size: 'max' }), (steps) => {
      let c = inService();
      const members = new Map<string, MemberModel>(memberIds.map((id) => [id, { reading: [], lastHeardMs: null }]));
      let nowMs = 0;
      for (const s of steps) {
        if (s.kind === 'wait') nowMs = advance(members, nowMs, s.ms);
        else if (s.kind === 'failover') {
          // Another broker takes over (a new coordinator), or this one lost leadership and won it back (clear()).
          // Members go on reading what they were granted; the next heartbeats go to the new coordinator.
          if (s.restart) c = new GroupCoordinator(sessionTimeoutMs);
          else c.clear();
        } else {
          const id = memberIds[s.member]!;
          const m = members.get(id)!;
          const leave = s.kind === 'leave';
          const answer = c.heartbeat('g', 't', queueCount, id, m.reading, leave, nowMs);
          if (leave) Object.assign(m, { reading: [], lastHeardMs: null });
          else if (!(s.kind === 'beat' && s.answerLost)) Object.assign(m, { reading: answer.assignedQueues, lastHeardMs: nowMs });
        }
        checkNoQueueReadTwice(members, `after ${JSON.stringify(s)} at ${nowMs}`);
      }
      // Liveness: once every member heartbeats every 200 ms and hears its answers, a coordinator
      // that changed has learned the claims after at most one session timeout (rounds 1 to 6),
      // and then the group settles on the deal: one round for every member to be known, one for
      // every grant to lie within the deal, one for every claim to, one for every member to get
      // its whole share (rounds 7 to 10).
      for (let round = 1; round <= 10; round++) {
        nowMs = advance(members, nowMs, 200);
        for (const id of memberIds) {
          const m = members.get(id)!;
          Object.assign(m, { reading: c.heartbeat('g', 't', queueCount, id, m.reading, false, nowMs).assignedQueues, lastHeardMs: nowMs });
          checkNoQueueReadTwice(members, `settling round ${round}`);
        }
      }
      memberIds.forEach((id, index) => {
        const expected = Array.from({ length: queueCount }, (_, q) => q).filter((q) => q % memberIds.length === index);
        assert.deepEqual(members.get(id)!.reading, expected, `settled share of ${id}`);
      });
    }),
    { numRuns: 300 },
  );
});
