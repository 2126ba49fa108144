// TopicCatalog (issue 14): the topics a group holds at an offset, worked out from a state snapshot
// and the entries after it, must be what the broker's own apply holds there. Checked against
// BrokerState on random leader logs (topic churn, messages, consumer offsets), with the snapshot
// taken at a random cut.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TopicCatalog } from '../../src/broker/topic-catalog.js';
import { StateSnapshotError } from '../../src/broker/state-snapshot.js';
import { commitRange, leaderLogOf, leaderStep, openState, withDir } from './state-fixtures.js';

describe('TopicCatalog', () => {
  test('holds what BrokerState holds after the same committed entries, from a snapshot at any cut', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(leaderStep, { minLength: 1, maxLength: 40 }), fc.nat(), async (steps, cutSeed) => {
        await withDir(async (dir) => {
          const log = leaderLogOf(steps);
          const end = log.endOffset;
          const cut = log.entries[cutSeed % log.entries.length]!.offset;
          const { state } = openState(dir);
          try {
            for (const entry of log.entries) state.onAppend(entry);
            commitRange(state, log.entries, 0, cut);
            const snapshot = cut === 0 ? null : state.captureSnapshot();
            commitRange(state, log.entries, cut, end);
            const catalog = TopicCatalog.fromSnapshot(snapshot);
            for (const entry of log.entries) if (entry.offset >= cut) catalog.apply(entry);
            const held = state.topicList().sort((a, b) => (a.name < b.name ? -1 : 1));
            assert.deepEqual(catalog.list(), held);
          } finally {
            await state.close(); // closes its store
          }
        });
      }),
      { numRuns: 40 },
    );
  });

  test('refuses a payload that is not a state snapshot of that offset, by name', () => {
    assert.throws(() => TopicCatalog.fromSnapshot({ endOffset: 5, payload: Buffer.from('not a snapshot') }), StateSnapshotError);
    assert.deepEqual(TopicCatalog.fromSnapshot(null).list(), []);
  });
});
