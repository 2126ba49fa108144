// Bad input: foreign files, damaged segment headers, absurd options and invalid batches all
// get a clear error naming the file or key; nothing is deleted.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { InvariantError } from '../../src/assert.js';
import { OutOfRangeError } from '../../src/errors.js';
import { LogError, SegmentLog, encodeBatch, stampBatch } from '../../src/log/index.js';
import { appendBatch, makeBatch, openLog, temporaryDirectory } from './helpers.js';

function isLogError(code: string, pattern: RegExp): (error: unknown) => boolean {
  return (error) => error instanceof LogError && error.code === code && pattern.test(error.message);
}

describe('bad input', () => {
  it('refuses a directory holding a foreign file, naming it, and deletes nothing', async () => {
    const { dir, remove } = temporaryDirectory('foreign');
    try {
      const log = await openLog(dir);
      appendBatch(log, makeBatch(1, 1, 10), 1);
      await log.close();
      fs.writeFileSync(join(dir, 'notes.txt'), 'hello');
      await assert.rejects(openLog(dir), isLogError('foreign_file', /notes\.txt/));
      assert.deepEqual(fs.readdirSync(dir).sort(), ['00000000000000000000.index', '00000000000000000000.log', 'notes.txt']);
    } finally {
      remove();
    }
  });

  it('refuses a segment with a damaged header, naming the file', async () => {
    const { dir, remove } = temporaryDirectory('header');
    try {
      const log = await openLog(dir);
      appendBatch(log, makeBatch(1, 1, 10), 1);
      await log.close();
      const file = join(dir, '00000000000000000000.log');
      const bytes = fs.readFileSync(file);
      bytes[3]! ^= 0xff;
      fs.writeFileSync(file, bytes);
      await assert.rejects(openLog(dir), isLogError('bad_segment_header', /00000000000000000000\.log: wrong magic/));
      fs.renameSync(file, join(dir, '00000000000000000007.log'));
      fs.rmSync(join(dir, '00000000000000000000.index'));
      bytes[3]! ^= 0xff;
      fs.writeFileSync(join(dir, '00000000000000000007.log'), bytes);
      await assert.rejects(openLog(dir), isLogError('bad_segment_header', /differs from the file name/));
    } finally {
      remove();
    }
  });

  it('refuses negative, fractional or absurd options, naming the key', async () => {
    const { dir, remove } = temporaryDirectory('options');
    try {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ segmentBytes: -1 }, 'segmentBytes'],
        [{ segmentBytes: 10 * 1024 ** 4 }, 'segmentBytes'],
        [{ segmentBytes: 5000.5 }, 'segmentBytes'],
        [{ indexIntervalBytes: 0 }, 'indexIntervalBytes'],
        [{ indexIntervalBytes: 1 << 20, segmentBytes: 65536 }, 'indexIntervalBytes'],
        [{ flush: { mode: 'sometimes' } }, 'flush.mode'],
        [{ flush: { mode: 'async', intervalMs: -5 } }, 'flush.intervalMs'],
        [{ retention: { bytesMax: -1 } }, 'retention.bytesMax'],
        [{ retention: { ageMsMax: Number.NaN } }, 'retention.ageMsMax'],
        [{ dir: '' }, 'dir'],
      ];
      for (const [options, key] of cases) {
        await assert.rejects(
          SegmentLog.open({ dir, flush: { mode: 'sync' }, ...options } as Parameters<typeof SegmentLog.open>[0]),
          (error: unknown) => error instanceof LogError && error.code === 'bad_config' && error.details.key === key && error.message.includes(key),
          key,
        );
      }
      assert.deepEqual(fs.readdirSync(dir), [], 'nothing created for refused options');
    } finally {
      remove();
    }
  });

  it('refuses invalid batches on append without changing the log', async () => {
    const { dir, remove } = temporaryDirectory('append');
    const log = await openLog(dir);
    try {
      appendBatch(log, makeBatch(1, 2, 10), 3);
      const wrongOffset = makeBatch(2, 1, 10);
      stampBatch(wrongOffset, 5, 3);
      assert.throws(() => log.append(wrongOffset), isLogError('offset_mismatch', /starts at offset 5, log end is 2/));
      const olderEpoch = makeBatch(3, 1, 10);
      stampBatch(olderEpoch, 2, 2);
      assert.throws(() => log.append(olderEpoch), isLogError('epoch_regression', /epoch 2/));
      const damaged = makeBatch(4, 1, 10);
      stampBatch(damaged, 2, 3);
      damaged[damaged.length - 1]! ^= 1;
      assert.throws(() => log.append(damaged), isLogError('bad_batch', /crc mismatch/));
      const huge = encodeBatch({ records: [{ key: null, value: Buffer.alloc(9000), headers: [], timestampMs: 0 }] });
      stampBatch(huge, 2, 3);
      assert.throws(() => log.append(huge), isLogError('batch_too_large', /9[0-9]{3} bytes/));
      assert.equal(log.endOffset, 2);
      assert.throws(() => log.read(3, 100), OutOfRangeError);
      assert.deepEqual(log.read(2, 100), []);
      appendBatch(log, makeBatch(5, 2, 10), 3);
      assert.throws(() => log.truncateTo(3), InvariantError, 'truncation inside a batch is a caller bug');
      await log.close();
      assert.throws(() => log.append(makeBatch(6, 1, 1)), isLogError('closed', /closed/));
    } finally {
      await log.close();
      remove();
    }
  });
});
