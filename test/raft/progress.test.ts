import assert from 'node:assert/strict';
import { test } from 'node:test';
import { beginEpochDue, fetchedWithin, newProgress, recordContact, recordMatchedFetch, syncProgress } from '../../src/raft/progress.js';

test('progress: a matched offset only grows; a stale, reordered Fetch cannot lower it', () => {
  const progress = newProgress('b2');
  recordMatchedFetch(progress, 10, 1);
  recordMatchedFetch(progress, 4, 2);
  assert.equal(progress.matchedOffset, 10);
  assert.equal(progress.lastFetchTick, 2);
  recordMatchedFetch(progress, 12, 3);
  assert.equal(progress.matchedOffset, 12);
});

test('progress: contact counts for check-quorum within the window only', () => {
  const progress = newProgress('b2');
  assert.equal(fetchedWithin(progress, 5, 10), false, 'never fetched');
  recordContact(progress, 5);
  const table: Array<[number, boolean]> = [[5, true], [14, true], [15, false], [30, false]];
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
  const current = new Map([['b2', newProgress('b2')], ['b3', newProgress('b3')]]);
  current.get('b2')!.matchedOffset = 7;
  const next = syncProgress(current, ['b1', 'b2', 'b4'], 'b1');
  assert.deepEqual([...next.keys()].sort(), ['b2', 'b4']);
  assert.equal(next.get('b2'), current.get('b2'));
  assert.equal(next.get('b4')!.matchedOffset, 0);
});
