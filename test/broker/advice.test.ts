// The read advice (src/broker/advice.ts, DESIGN §5): each test names the rule it checks. The
// property test at the end checks the choice against the rule written out as a filter and a
// minimum, over random loads and follower views (a failure prints fast-check's seed and path).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { adviseRead, loadReason, type FollowerView, type LeaderLoad } from '../../src/broker/advice.js';
import type { AdviceSettings } from '../../src/broker/advice.js';

const limits: AdviceSettings = { leaderInflightMax: 100, leaderCpuMax: 0.8, followerLagOffsetsMax: 50, followerLagMsMax: 500 };
const self = { id: 'b1', address: '10.0.0.1:9000' };
const idle: LeaderLoad = { inflightRequests: 0, cpuShare: 0 };
const busy: LeaderLoad = { inflightRequests: 101, cpuShare: 0 };
const needed = 1000; // the log offset the consumer's next message ends at

function follower(id: string, fields: Partial<FollowerView> = {}): FollowerView {
  return { id, address: `${id}:9000`, endOffset: needed, lagOffsets: 0, lagMs: 0, reachable: true, ...fields };
}

describe('advice: the leader is loaded only above a threshold', () => {
  const table: Array<{ rule: string; load: LeaderLoad; loaded: boolean; mentions?: string }> = [
    { rule: 'no load', load: { inflightRequests: 0, cpuShare: 0 }, loaded: false },
    { rule: 'in-flight requests at the limit are not load', load: { inflightRequests: 100, cpuShare: 0 }, loaded: false },
    { rule: 'one request over the limit is load', load: { inflightRequests: 101, cpuShare: 0 }, loaded: true, mentions: '101 requests in flight (limit 100)' },
    { rule: 'CPU at the limit is not load', load: { inflightRequests: 0, cpuShare: 0.8 }, loaded: false },
    { rule: 'CPU just over the limit is load', load: { inflightRequests: 0, cpuShare: 0.81 }, loaded: true, mentions: 'CPU 0.81 above 0.8' },
    { rule: 'both at the limit are not load', load: { inflightRequests: 100, cpuShare: 0.8 }, loaded: false },
    { rule: 'both over: the in-flight reason is given', load: { inflightRequests: 200, cpuShare: 3 }, loaded: true, mentions: 'in flight' },
  ];
  for (const { rule, load, loaded, mentions } of table) {
    test(rule, () => {
      const reason = loadReason(load, limits);
      assert.equal(reason !== null, loaded);
      if (mentions) assert.ok(reason?.includes(mentions), reason ?? 'null');
    });
  }
});

describe('advice: a loaded leader points at a follower only when it is reachable, close behind and holds the next message', () => {
  test('an unloaded leader advises itself, however good the followers are', () => {
    const advice = adviseRead(self, idle, [follower('b2'), follower('b3')], needed, limits);
    assert.deepEqual(advice, { replicaId: 'b1', address: self.address, reason: 'leader load is under its thresholds' });
  });

  const table: Array<{ rule: string; view: Partial<FollowerView>; eligible: boolean }> = [
    { rule: 'a follower fully caught up is suggested', view: {}, eligible: true },
    { rule: 'an unreachable follower is not suggested', view: { reachable: false }, eligible: false },
    { rule: 'lag in offsets at the bound is allowed', view: { lagOffsets: 50 }, eligible: true },
    { rule: 'lag in offsets over the bound is not', view: { lagOffsets: 51 }, eligible: false },
    { rule: 'lag in ms at the bound is allowed', view: { lagMs: 500 }, eligible: true },
    { rule: 'lag in ms over the bound is not', view: { lagMs: 501 }, eligible: false },
    { rule: 'a follower whose log ends exactly at the needed offset holds the next message', view: { endOffset: needed }, eligible: true },
    { rule: 'a follower one offset short of the needed offset does not', view: { endOffset: needed - 1 }, eligible: false },
    { rule: 'close behind but not holding the next message is not enough', view: { lagOffsets: 0, endOffset: 0 }, eligible: false },
  ];
  for (const { rule, view, eligible } of table) {
    test(rule, () => {
      const advice = adviseRead(self, busy, [follower('b2', view)], needed, limits);
      assert.equal(advice.replicaId, eligible ? 'b2' : 'b1');
      assert.equal(advice.address, eligible ? 'b2:9000' : self.address);
      assert.ok(advice.reason.startsWith('leader has 101 requests in flight'), advice.reason);
    });
  }

  test('with no follower at all a loaded leader advises itself and says why', () => {
    const advice = adviseRead(self, busy, [], needed, limits);
    assert.equal(advice.replicaId, 'b1');
    assert.match(advice.reason, /no follower is within the lag bounds/);
  });

  test('the follower with the least lag in offsets is chosen; ties go to the smaller id, whatever the input order', () => {
    const views = [
      follower('b4', { lagOffsets: 3 }),
      follower('b3', { lagOffsets: 1, lagMs: 400 }),
      follower('b2', { lagOffsets: 1, lagMs: 10 }),
      follower('b5', { lagOffsets: 0, reachable: false }),
    ];
    for (const order of [views, [...views].reverse(), [views[2]!, views[0]!, views[3]!, views[1]!]]) {
      assert.equal(adviseRead(self, busy, order, needed, limits).replicaId, 'b2', order.map((f) => f.id).join(','));
    }
  });

  test("the advice does not reorder the caller's follower list", () => {
    const views = [follower('b3', { lagOffsets: 5 }), follower('b2', { lagOffsets: 1 })];
    adviseRead(self, busy, views, needed, limits);
    assert.deepEqual(
      views.map((f) => f.id),
      ['b3', 'b2'],
    );
  });
});

const viewArbitrary: fc.Arbitrary<FollowerView> = fc
  .record({
    id: fc.constantFrom('b2', 'b3', 'b4', 'b5'),
    address: fc.constant('x:1'),
    endOffset: fc.integer({ min: needed - 3, max: needed + 3 }),
    lagOffsets: fc.integer({ min: 0, max: 60 }),
    lagMs: fc.integer({ min: 0, max: 600 }),
    reachable: fc.boolean(),
  })
  .map((f) => ({ ...f, address: `${f.id}:9000` }));

test('advice (property): the answer is the leader unless it is loaded and some follower qualifies; then it is the qualifying follower with the least lag (smallest id on ties)', () => {
  fc.assert(
    fc.property(
      fc.record({ inflightRequests: fc.integer({ min: 95, max: 105 }), cpuShare: fc.double({ min: 0.7, max: 0.9, noNaN: true }) }),
      fc.uniqueArray(viewArbitrary, { selector: (f) => f.id, maxLength: 4 }),
      (load, views) => {
        const advice = adviseRead(self, load, views, needed, limits);
        const loaded = load.inflightRequests > limits.leaderInflightMax || load.cpuShare > limits.leaderCpuMax;
        const qualifying = views.filter(
          (f) => f.reachable && f.lagOffsets <= limits.followerLagOffsetsMax && f.lagMs <= limits.followerLagMsMax && f.endOffset >= needed,
        );
        if (!loaded || qualifying.length === 0) {
          assert.equal(advice.replicaId, self.id);
          return;
        }
        const chosen = qualifying.find((f) => f.id === advice.replicaId);
        assert.ok(chosen, `${advice.replicaId} does not qualify`);
        assert.equal(advice.address, chosen.address);
        for (const f of qualifying) {
          assert.ok(
            chosen.lagOffsets < f.lagOffsets || (chosen.lagOffsets === f.lagOffsets && chosen.id <= f.id),
            `${f.id} is a better choice than ${chosen.id}`,
          );
        }
      },
    ),
    { numRuns: 500 },
  );
});
