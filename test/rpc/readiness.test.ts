// /readyz (DESIGN §12, Deployment): ready when the replica has started and is either the leader
// or has had a Fetch answer from a leader within the election timeout; a recovering replica and
// one refusing a leader are not ready whatever their fetches say. One row per rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readiness, type ReadinessInput } from '../../src/rpc/readiness.js';

const nowMs = 1_000_000;
/** A follower of b1 whose last Fetch answer came 40 ms ago, election timeout 300 ms: ready. */
const healthyFollower: ReadinessInput = {
  stopping: false,
  started: true,
  role: 'follower',
  leaderId: 'b1',
  recovering: false,
  recoveryMarkOffset: null,
  logEndOffset: 500,
  refusedLeaderId: null,
  lastLeaderFetchAnswerAtMs: nowMs - 40,
  nowMs,
  electionTimeoutMs: 300,
};

test('readiness: one row per rule, with the reason an operator reads', () => {
  const rows: Array<[string, Partial<ReadinessInput>, boolean, RegExp | null]> = [
    ['a follower fetching from its leader', {}, true, null],
    ['a follower whose last answer is exactly one election timeout old', { lastLeaderFetchAnswerAtMs: nowMs - 300 }, true, null],
    [
      'a follower without an answer for longer than the election timeout',
      { lastLeaderFetchAnswerAtMs: nowMs - 2400 },
      false,
      /^no fetch from a leader for 2400 ms \(election timeout 300 ms; follower\)$/,
    ],
    [
      'a candidate that lost its leader',
      { role: 'candidate', leaderId: null, lastLeaderFetchAnswerAtMs: nowMs - 900 },
      false,
      /^no fetch from a leader for 900 ms .*candidate/,
    ],
    [
      'a prospective replica that never fetched',
      { role: 'prospective', leaderId: null, lastLeaderFetchAnswerAtMs: null },
      false,
      /^no fetch from a leader since the replica started \(prospective\)$/,
    ],
    ['the leader, which fetches from nobody', { role: 'leader', leaderId: 'b2', lastLeaderFetchAnswerAtMs: null }, true, null],
    ['a replica not started yet', { started: false, role: 'follower', lastLeaderFetchAnswerAtMs: null }, false, /^the replica has not started/],
    ['a leader that is not started (closed)', { started: false, role: 'leader' }, false, /^the replica has not started/],
    ['a broker that is stopping, even as the leader', { stopping: true, role: 'leader' }, false, /^the broker is stopping$/],
    [
      'a recovering follower that fetches (its log is below its promise)',
      { recovering: true, recoveryMarkOffset: 800 },
      false,
      /^recovering: its log ends at 500, below the 800 it promised; catching up from the leader$/,
    ],
    [
      'a replaced disk catching up (promise unknown)',
      { recovering: true, recoveryMarkOffset: null },
      false,
      /^recovering: an empty data directory in a group with history \(a replaced disk\)/,
    ],
    ['a replica refusing a leader that lacks committed data', { refusedLeaderId: 'b3' }, false, /^refusing leader b3: it lacks committed data$/],
  ];
  for (const [name, change, ready, reason] of rows) {
    const verdict = readiness({ ...healthyFollower, ...change });
    assert.equal(verdict.ready, ready, `${name}: ${JSON.stringify(verdict)}`);
    if (reason === null) assert.equal(verdict.reason, undefined, `${name}: a ready answer gives no reason`);
    else assert.match(verdict.reason ?? '', reason, name);
  }
});

test('readiness: the body names the role and leader, and how long ago a follower last fetched', () => {
  assert.deepEqual(readiness(healthyFollower), { ready: true, role: 'follower', leader: 'b1', lastFetchAgoMs: 40 });
  assert.deepEqual(readiness({ ...healthyFollower, role: 'leader', leaderId: 'b2' }), { ready: true, role: 'leader', leader: 'b2' });
  assert.equal(readiness({ ...healthyFollower, recovering: true }).role, 'recovering');
  assert.equal(readiness({ ...healthyFollower, refusedLeaderId: 'b3' }).role, 'refusing');
  // An answer stamped after `nowMs` was read (both on one monotonic clock) is fresh, never a negative age.
  assert.deepEqual(readiness({ ...healthyFollower, lastLeaderFetchAnswerAtMs: nowMs + 50 }).lastFetchAgoMs, 0);
  // The monotonic clock has fractions of a millisecond; the body and the reason speak whole ones.
  assert.equal(readiness({ ...healthyFollower, lastLeaderFetchAnswerAtMs: nowMs - 40.6 }).lastFetchAgoMs, 41);
  assert.match(readiness({ ...healthyFollower, lastLeaderFetchAnswerAtMs: nowMs - 307.3 }).reason!, /^no fetch from a leader for 307 ms /);
});
