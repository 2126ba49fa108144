import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  beginEpochDue,
  fetchedWithin,
  holdsEntryAt,
  newProgress,
  recordContact,
  recordDivergingFetch,
  recordMatchedFetch,
  syncProgress,
} from '../../src/raft/progress.js';

test('progress: a matched offset only grows; a stale, reordered Fetch cannot lower it', () => {
  const progress = newProgress('b2');
  recordMatchedFetch(progress, 10, 101, false, 1, 100);
  recordMatchedFetch(progress, 4, 100, false, 2, 100);
  assert.equal(progress.matchedOffset, 10);
  assert.equal(progress.lastFetchTick, 2);
  recordMatchedFetch(progress, 12, 102, false, 3, 100);
  assert.equal(progress.matchedOffset, 12);
});

test('recovering replica (DESIGN §12): its Fetch sets the matched offset to its real end, even lower; Fetches of its earlier incarnation no longer count', () => {
  const progress = newProgress('b2');
  recordMatchedFetch(progress, 50, 5_000_000, false, 1, 100); // before it lost entries
  recordMatchedFetch(progress, 20, 90, true, 2, 100); // restarted, recovering: real end 20
  assert.equal(progress.matchedOffset, 20, 'the leader forgets the 50 it once saw');
  recordMatchedFetch(progress, 50, 5_000_001, false, 3, 100); // a late Fetch of the old incarnation
  assert.equal(progress.matchedOffset, 20, 'a Fetch outside the current run of request ids is ignored');
  recordMatchedFetch(progress, 35, 91, true, 4, 100);
  assert.equal(progress.matchedOffset, 35);
  recordMatchedFetch(progress, 55, 92, false, 5, 100); // recovered: past its mark, an ordinary voter
  assert.equal(progress.matchedOffset, 55);
  assert.equal(progress.recoveringRequestId, null);
  recordMatchedFetch(progress, 50, 5_000_001, false, 6, 100);
  assert.equal(progress.matchedOffset, 55, 'after recovery the old Fetch is below what it holds');
});

test('recovering replica: a Fetch that does not match counts it at 0 until one matches; from an ordinary replica it changes nothing', () => {
  const progress = newProgress('b2');
  recordMatchedFetch(progress, 50, 7000, false, 1, 100);
  recordDivergingFetch(progress, 7001, false, 2, 100);
  assert.equal(progress.matchedOffset, 50);
  recordDivergingFetch(progress, 90, true, 3, 100);
  assert.equal(progress.matchedOffset, 0);
  assert.equal(progress.lastFetchTick, 3);
});

test('progress: contact counts for check-quorum within the window only', () => {
  const progress = newProgress('b2');
  assert.equal(fetchedWithin(progress, 5, 10), false, 'never fetched');
  recordContact(progress, 5);
  const table: Array<[number, boolean]> = [
    [5, true],
    [14, true],
    [15, false],
    [30, false],
  ];
  for (const [now, expected] of table) assert.equal(fetchedWithin(progress, now, 10), expected, `now=${now}`);
});

test('progress: BeginQuorumEpoch is re-sent to a voter that has not fetched recently, at most every resend interval', () => {
  const progress = newProgress('b2');
  assert.equal(beginEpochDue(progress, 0, 3), true, 'never sent');
  progress.beginEpochSentTick = 0;
  assert.equal(beginEpochDue(progress, 2, 3), false, 'sent recently');
  assert.equal(beginEpochDue(progress, 3, 3), true, 'resend interval passed');
  recordContact(progress, 3);
  assert.equal(beginEpochDue(progress, 4, 3), false, 'fetching: no resend');
});

test('progress: tracked replicas follow the voter set (new voters fresh, removed dropped, self excluded)', () => {
  const current = new Map([
    ['b2', newProgress('b2')],
    ['b3', newProgress('b3')],
  ]);
  current.get('b2')!.matchedOffset = 7;
  const next = syncProgress(current, ['b1', 'b2', 'b4'], 'b1');
  assert.deepEqual([...next.keys()].sort(), ['b2', 'b4']);
  assert.equal(next.get('b2'), current.get('b2'));
  assert.equal(next.get('b4')!.matchedOffset, 0);
});

test('recovering run (replaced disk): its first Fetch marks the leader log end; a voter counts as "since" only once it holds the entry at the mark (causal, not by time)', () => {
  const recovering = newProgress('b3');
  assert.equal(recordMatchedFetch(recovering, 0, 500, true, 1, 40), true, 'a run begins: the leader marks offset 40');
  assert.equal(recovering.recoveringSinceOffset, 40);
  assert.equal(recordMatchedFetch(recovering, 0, 501, true, 2, 41), false, 'the same run: no new mark');
  assert.equal(recovering.recoveringSinceOffset, 40);
  assert.equal(recordDivergingFetch(recovering, 900_000, true, 3, 45), true, 'another incarnation: a new run, a new mark');
  assert.equal(recovering.recoveringSinceOffset, 45);
  const voter = newProgress('b2');
  recordMatchedFetch(voter, 45, 7, false, 4, 46); // delayed from before the mark: holds up to 44 only
  assert.equal(holdsEntryAt(voter, 45), false);
  recordMatchedFetch(voter, 46, 8, false, 5, 46);
  assert.equal(holdsEntryAt(voter, 45), true);
  recordMatchedFetch(recovering, 46, 900_001, false, 6, 46); // recovered
  assert.equal(recovering.recoveringSinceOffset, null);
});
