// SegmentLog.byteSizeBetween: a backup announces the bytes of the batches it is about to send
// (issue 14), so the size must equal what read() returns for the same range, across segment
// boundaries, after retention and after a reset; a range that does not start or end on a batch
// boundary is a caller's bug.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvariantError } from '../../src/assert.js';
import type { SegmentLog } from '../../src/log/index.js';
import { appendBatch, batchBaseOffset, makeBatch, openLog, temporaryDirectory } from './helpers.js';

/** Boundaries of every batch from the log start to its end, and the bytes of each batch. */
function batchesOf(log: SegmentLog): Array<{ offset: number; next: number; bytes: number }> {
  const batches: Array<{ offset: number; next: number; bytes: number }> = [];
  let offset = log.startOffset;
  for (let round = 0; offset < log.endOffset && round < 10_000; round++) {
    for (const batch of log.read(offset, 65536)) {
      const base = batchBaseOffset(batch);
      const next = base + batch.readUInt32LE(24);
      batches.push({ offset: base, next, bytes: batch.byteLength });
      offset = next;
    }
  }
  return batches;
}

describe('SegmentLog.byteSizeBetween', () => {
  it('equals the bytes read() returns for every range of batch boundaries, over several segments', async () => {
    const { dir, remove } = temporaryDirectory('byte-size');
    try {
      const log = await openLog(dir);
      for (let index = 0; index < 40; index++) appendBatch(log, makeBatch(index, 1 + (index % 3), 200 + (index % 5) * 90), 1 + Math.floor(index / 20));
      assert.ok(log.stats.segmentCount >= 3, `${log.stats.segmentCount} segments`);
      const batches = batchesOf(log);
      const boundaries = [batches[0]!.offset, ...batches.map((b) => b.next)];
      for (const from of boundaries) {
        for (const to of boundaries) {
          if (to < from) continue;
          const expected = batches.filter((b) => b.offset >= from && b.next <= to).reduce((total, b) => total + b.bytes, 0);
          assert.equal(log.byteSizeBetween(from, to), expected, `[${from}, ${to})`);
        }
      }
      assert.equal(log.byteSizeBetween(log.startOffset, log.endOffset), log.sizeBytes - 64 * log.stats.segmentCount, 'every batch, no segment header');
      await log.close();
    } finally {
      remove();
    }
  });

  it('counts from the log start after retention and after a reset', async () => {
    const { dir, remove } = temporaryDirectory('byte-size-start');
    try {
      const log = await openLog(dir, { retention: { bytesMax: 0 } });
      for (let index = 0; index < 30; index++) appendBatch(log, makeBatch(index, 2, 400), 1);
      log.applyRetention(Date.now(), log.endOffset);
      assert.ok(log.startOffset > 0, 'retention moved the start');
      const held = batchesOf(log).reduce((total, b) => total + b.bytes, 0);
      assert.equal(log.byteSizeBetween(log.startOffset, log.endOffset), held);
      log.resetTo(500, 2);
      assert.equal(log.byteSizeBetween(500, 500), 0, 'an empty log after a reset');
      const batch = appendBatch(log, makeBatch(99, 3, 100), 2);
      assert.equal(log.byteSizeBetween(500, 503), batch.byteLength);
      await log.close();
    } finally {
      remove();
    }
  });

  it('refuses a range outside the log or off a batch boundary (a caller bug)', async () => {
    const { dir, remove } = temporaryDirectory('byte-size-bad');
    try {
      const log = await openLog(dir);
      appendBatch(log, makeBatch(1, 3, 100), 1);
      appendBatch(log, makeBatch(2, 3, 100), 1);
      assert.throws(() => log.byteSizeBetween(0, 7), InvariantError);
      assert.throws(() => log.byteSizeBetween(1, 6), InvariantError);
      assert.throws(() => log.byteSizeBetween(0, 4), InvariantError);
      assert.throws(() => log.byteSizeBetween(3, 0), InvariantError);
      await log.close();
    } finally {
      remove();
    }
  });
});
