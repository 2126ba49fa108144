// Damage on disk: cut or torn last segment, flipped bytes, deleted or garbled index files.
// Every batch before the damage survives with its exact bytes; nothing damaged is ever served.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { LogError, type SegmentLog } from '../../src/log/index.js';
import { appendBatch, captureEvents, makeBatch, openLog, readAll, temporaryDirectory } from './helpers.js';

const segmentBytes = 8192;
const segmentHeaderBytes = 64;

interface Written {
  dir: string;
  remove: () => void;
  batches: Buffer[];
}

async function writeLog(batchCount: number): Promise<Written> {
  const { dir, remove } = temporaryDirectory('damage');
  const log = await openLog(dir, { segmentBytes });
  const batches: Buffer[] = [];
  for (let index = 0; index < batchCount; index++) batches.push(appendBatch(log, makeBatch(index, 1 + (index % 3), 150 + (index % 5) * 40), 1 + (index >> 4)));
  await log.close();
  return { dir, remove, batches };
}

function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.log'))
    .sort()
    .map((name) => join(dir, name));
}

/** Reads batch by batch; a damaged one must throw a corrupt error, never be returned. */
function readServable(log: SegmentLog): { served: Buffer[]; refused: number } {
  const served: Buffer[] = [];
  let refused = 0;
  let offset = log.startOffset;
  while (offset < log.endOffset) {
    try {
      const [batch] = log.read(offset, 1);
      served.push(Buffer.from(batch!));
      offset += batch!.readUInt32LE(24);
    } catch (error) {
      assert.ok(error instanceof LogError && error.code === 'corrupt', `unexpected ${String(error)}`);
      refused++;
      break;
    }
  }
  return { served, refused };
}

/** Position within its segment file of each batch of the last segment (from the start of the data). */
function lastSegmentLayout(written: Written): { file: string; batchIndexes: number[]; positions: number[] } {
  const files = segmentFiles(written.dir);
  const file = files[files.length - 1]!;
  const baseOffset = Number(file.slice(-24, -4));
  let offset = 0;
  let position = segmentHeaderBytes;
  const batchIndexes: number[] = [];
  const positions: number[] = [];
  written.batches.forEach((batch, index) => {
    if (offset >= baseOffset) {
      batchIndexes.push(index);
      positions.push(position);
      position += batch.byteLength;
    }
    offset += batch.readUInt32LE(24);
  });
  return { file, batchIndexes, positions };
}

describe('recovery from damage', () => {
  it('a last segment cut or torn at any point keeps every whole batch before the cut', async () => {
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), async (at, shortenFile) => {
        const written = await writeLog(40);
        try {
          const { file, batchIndexes, positions } = lastSegmentLayout(written);
          const dataEnd = positions[positions.length - 1]! + written.batches[batchIndexes[batchIndexes.length - 1]!]!.byteLength;
          const cut = segmentHeaderBytes + Math.floor(at * (dataEnd - segmentHeaderBytes));
          if (shortenFile) fs.truncateSync(file, cut);
          if (!shortenFile) {
            const fd = fs.openSync(file, 'r+');
            fs.writeSync(fd, Buffer.alloc(dataEnd - cut), 0, dataEnd - cut, cut);
            fs.closeSync(fd);
          }
          const whole = batchIndexes.filter((index, i) => positions[i]! + written.batches[index]!.byteLength <= cut);
          const keptCount = (whole.length > 0 ? whole[whole.length - 1]! : batchIndexes[0]! - 1) + 1;
          const captured = captureEvents();
          const log = await openLog(written.dir, { segmentBytes, logger: captured.logger });
          const stored = readAll(log);
          assert.equal(stored.length, keptCount);
          stored.forEach((bytes, index) => assert.ok(bytes.equals(written.batches[index]!)));
          if (keptCount < written.batches.length && cut > positions[whole.length]!) {
            assert.ok(
              captured.events.some((event) => event.event === 'log.truncated'),
              'truncation logged',
            );
          }
          // The cut stays cut: appending again and reopening serves only new bytes.
          const next = appendBatch(log, makeBatch(999, 2, 64), 9);
          await log.close();
          const reopened = await openLog(written.dir, { segmentBytes });
          const again = readAll(reopened);
          assert.equal(again.length, keptCount + 1);
          assert.ok(again[keptCount]!.equals(next));
          await reopened.close();
        } finally {
          written.remove();
        }
      }),
      { numRuns: 25 },
    );
  });

  it('flipped bytes are never served; batches before the damage are kept', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 3 }), fc.boolean(), async (spots, lastOnly) => {
        const written = await writeLog(40);
        try {
          const files = segmentFiles(written.dir);
          const targets = lastOnly ? [files[files.length - 1]!] : files;
          let firstDamagedOffset = Infinity;
          for (const spot of spots) {
            const file = targets[Math.floor(spot * targets.length) % targets.length]!;
            const bytes = fs.readFileSync(file);
            const position = segmentHeaderBytes + (Math.floor(spot * 7919) % (4096 - segmentHeaderBytes));
            bytes[position]! ^= 0x5a;
            fs.writeFileSync(file, bytes);
            firstDamagedOffset = Math.min(firstDamagedOffset, Number(file.slice(-24, -4)));
          }
          let log: SegmentLog;
          try {
            log = await openLog(written.dir, { segmentBytes });
          } catch (error) {
            // Damage in an older, synced segment is reported, not repaired by deleting data.
            assert.ok(error instanceof LogError && error.code === 'corrupt', String(error));
            assert.match(error.message, /\.log/);
            return;
          }
          const { served } = readServable(log);
          served.forEach((bytes, index) => assert.ok(bytes.equals(written.batches[index]!), `batch ${index} served altered`));
          let offset = 0;
          const beforeDamage = written.batches.filter((batch) => {
            const keep = offset + batch.readUInt32LE(24) <= firstDamagedOffset;
            offset += batch.readUInt32LE(24);
            return keep;
          });
          assert.ok(served.length >= beforeDamage.length, 'batches before the damaged segment are kept');
          await log.close();
        } finally {
          written.remove();
        }
      }),
      { numRuns: 25 },
    );
  });

  it('deleted or garbled index files are rebuilt and every batch stays readable', async () => {
    for (const damage of ['delete', 'garble-header', 'garble-entries', 'truncate'] as const) {
      const written = await writeLog(40);
      try {
        const indexes = fs
          .readdirSync(written.dir)
          .filter((name) => name.endsWith('.index'))
          .map((name) => join(written.dir, name));
        for (const file of indexes) {
          if (damage === 'delete') fs.rmSync(file);
          if (damage === 'truncate') fs.truncateSync(file, 10);
          if (damage === 'garble-header' || damage === 'garble-entries') {
            const bytes = fs.readFileSync(file);
            const from = damage === 'garble-header' ? 0 : 64 + 24;
            for (let position = from; position < from + 40; position++) bytes[position] = (position * 97) & 0xff;
            fs.writeFileSync(file, bytes);
          }
        }
        const captured = captureEvents();
        const log = await openLog(written.dir, { segmentBytes, logger: captured.logger });
        const stored = readAll(log);
        assert.equal(stored.length, written.batches.length, damage);
        stored.forEach((bytes, index) => assert.ok(bytes.equals(written.batches[index]!), `${damage}: batch ${index}`));
        assert.ok(
          captured.events.some((event) => event.event === 'log.index.rebuilt'),
          `${damage}: rebuild logged`,
        );
        assert.deepEqual(
          log.epochStartOffsets().map((entry) => entry.epoch),
          [1, 2, 3],
        );
        await log.close();
      } finally {
        written.remove();
      }
    }
  });
});
