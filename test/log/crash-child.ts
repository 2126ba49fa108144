// Child process for crash.test: appends deterministic batches to a sync-mode log and prints
// "durable <offset>" each time the durable offset advances, until it is killed.
// Usage: node crash-child.js <dir>
import { SegmentLog } from '../../src/log/index.js';
import { appendBatch, makeBatch } from './helpers.js';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: crash-child.js <dir>');
const log = await SegmentLog.open({ dir, segmentBytes: 64 * 1024, indexIntervalBytes: 1024, flush: { mode: 'sync' }, logger: () => {} });
log.onDurable((offset) => process.stdout.write(`durable ${offset}\n`));
process.stdout.write('ready\n');
const batchesMax = 200_000; // bounded: the parent kills the child long before this
for (let index = 0; index < batchesMax; index++) {
  appendBatch(log, makeBatch(index, 1 + (index % 4), 100 + (index % 7) * 150), 1 + Math.floor(index / 50));
  if (index % 8 === 7) await new Promise((resolve) => setImmediate(resolve));
}
await log.close();
