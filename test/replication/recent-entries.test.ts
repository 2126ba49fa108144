// LogRaftStorage's recent-entries cache (src/replica/log-storage.ts) answers exactly what a
// segment read answers: the same entries (offset, epoch, count, type, payload bytes), from the
// entry holding the offset, within bytesMax but at least one; after truncation and eviction too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentLog } from '../../src/log/index.js';
import { LogRaftStorage, batchOfEntry, entryFromBatch, recentEntriesCountMax } from '../../src/replica/log-storage.js';
import { EntryType, type Entry } from '../../src/raft/types.js';
import { prng } from '../harness/seeded-random.js';

function view(entries: Entry[]): string[] {
  return entries.map((e) => `${e.offset}/${e.count}/${e.epoch}/${e.type}/${Buffer.from(e.payload).toString('hex')}`);
}

/** Small deterministic generator (mulberry32). */
test('the cache answers every read as the segment log does, through appends, truncations and eviction', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-recent-'));
  const log = await SegmentLog.open({ dir, segmentBytes: 256 * 1024, flush: { mode: 'async', intervalMs: 1000 } });
  try {
    const storage = new LogRaftStorage(log, { epoch: 1, votedFor: null });
    const random = prng(7);
    let epoch = 1;
    for (let step = 0; step < 3000; step++) {
      if (random() < 0.01 && log.endOffset > 10) {
        const to = log.endOffset - 1 - Math.floor(random() * 5);
        const boundary = storage.entries(to, 0)[0]!.offset; // truncate at an entry boundary
        log.truncateTo(boundary);
        storage.noteTruncated(boundary);
        epoch++;
      } else {
        const count = 1 + Math.floor(random() * 3);
        const payload = Buffer.alloc(Math.floor(random() * 900), step & 0xff);
        const entry: Entry = { epoch, offset: log.endOffset, count, type: EntryType.Data, payload };
        log.append(batchOfEntry(entry, 0));
        storage.noteAppended(entry);
      }
      if (log.endOffset === 0) continue;
      const from = Math.max(log.startOffset, log.endOffset - 1 - Math.floor(random() * (recentEntriesCountMax + 200)));
      const bytesMax = [0, 500, 4096, 1 << 20][Math.floor(random() * 4)]!;
      const expected = log.read(from, bytesMax).map(entryFromBatch);
      assert.deepEqual(view(storage.entries(from, bytesMax)), view(expected), `step ${step}: from ${from}, bytesMax ${bytesMax}`);
    }
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
