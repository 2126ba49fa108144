// A crash test that can see a missing fsync (issue 11 §6): kill -9 keeps the page cache, so a
// log that never synced would pass any kill test. Here the test-only sync observer
// (src/log/sync-record.ts) hears every completed fdatasync, and every offset the log reports
// durable (onDurable, waitDurable, durableOffset) must be covered by a sync that completed
// before the report. Removing the sync, or advancing durableOffset before it completes, fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setSyncObserverForTests, type SyncRecord } from '../../src/log/index.js';
import { appendBatch, makeBatch, openLog, temporaryDirectory } from './helpers.js';

test('sync mode: every offset reported durable is covered by a completed fdatasync (DESIGN §3: synced before reported durable)', async () => {
  const { dir, remove } = temporaryDirectory('fsync-cover');
  const records: SyncRecord[] = [];
  setSyncObserverForTests((record) => records.push({ ...record }));
  const log = await openLog(dir);
  try {
    const syncedOffset = (): number => Math.max(0, ...records.filter((r) => r.dir === dir).map((r) => r.offset));
    const reports: Array<{ offset: number; synced: number }> = [];
    log.onDurable((offset) => reports.push({ offset, synced: syncedOffset() }));
    const waits: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      appendBatch(log, makeBatch(i, 1 + (i % 3), 200), 1);
      const end = log.endOffset;
      waits.push(log.waitDurable(end).then(() => assert.ok(syncedOffset() >= end, `waitDurable(${end}) resolved with syncs covering only ${syncedOffset()}`)));
      assert.ok(log.durableOffset <= syncedOffset(), `durableOffset ${log.durableOffset} ahead of the syncs (${syncedOffset()})`);
      if (i % 17 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(waits);
    assert.ok(reports.length > 0, 'durability was reported');
    for (const report of reports) assert.ok(report.synced >= report.offset, `reported ${report.offset} durable with syncs covering ${report.synced}`);
    const syncCount = records.filter((r) => r.dir === dir && r.syncCount > 0).length;
    assert.ok(syncCount >= 1 && syncCount <= 200, `${syncCount} fdatasync calls for 200 appends (group commit)`);
  } finally {
    setSyncObserverForTests(null);
    await log.close();
    remove();
  }
});
