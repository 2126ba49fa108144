// Recovery in quarantine mode (issue 11 §2, DESIGN §12 "Damaged segments are moved to
// quarantine/ with a log line, never deleted"): a segment with a bad header, or with CRC errors
// before the tail, is moved (or copied, when its good prefix stays) into `quarantine/` beside the
// log directory; the log opens ending at the last good offset. The default mode still refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { LogError, quarantineDirOf, type SegmentLog } from '../../src/log/index.js';
import { appendBatch, captureEvents, makeBatch, openLog, temporaryDirectory } from './helpers.js';

/** A log of `count` one-record batches of ~600 bytes (several 8 KiB segments), closed. */
async function filledLog(dir: string, count: number): Promise<void> {
  const log = await openLog(dir);
  for (let i = 0; i < count; i++) appendBatch(log, makeBatch(i, 1, 500), 1);
  await log.close();
}

function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.log'))
    .sort();
}

function flipBit(file: string, position: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, position);
    byte[0] = byte[0]! ^ 0x10;
    fs.writeSync(fd, byte, 0, 1, position);
  } finally {
    fs.closeSync(fd);
  }
}

test('quarantine: the only segment with a zeroed header is moved aside and the log opens empty at its base (no "wrong magic" refusal)', async () => {
  const { dir: root, remove } = temporaryDirectory('quarantine-header');
  const dir = join(root, 'log');
  let log: SegmentLog | null = null;
  try {
    await filledLog(dir, 5);
    const [only] = segmentFiles(dir);
    const fd = fs.openSync(join(dir, only!), 'r+');
    fs.writeSync(fd, Buffer.alloc(64), 0, 64, 0);
    fs.closeSync(fd);
    await assert.rejects(openLog(dir), (error: Error) => error instanceof LogError && /wrong magic/.test(error.message), 'default mode refuses');
    const captured = captureEvents();
    log = await openLog(dir, { onDamage: 'quarantine', logger: captured.logger });
    assert.equal(log.endOffset, 0);
    assert.equal(log.quarantined.length, 1);
    const moved = fs.readdirSync(quarantineDirOf(dir));
    assert.equal(moved.length, 1, 'moved, never deleted');
    assert.ok(moved[0]!.endsWith(only!));
    const line = captured.events.find((e) => e.event === 'log.quarantined');
    assert.ok(line && line.file === join(dir, only!) && line.lastGoodOffset === 0, 'a log line names the file and the offset');
  } finally {
    await log?.close();
    remove();
  }
});

test('quarantine: CRC damage in an older segment cuts the log at the last good batch; that segment is copied and the later ones moved into quarantine', async () => {
  const { dir: root, remove } = temporaryDirectory('quarantine-crc');
  const dir = join(root, 'log');
  let log: SegmentLog | null = null;
  try {
    await filledLog(dir, 60);
    const before = segmentFiles(dir);
    assert.ok(before.length >= 3, `${before.length} segments`);
    const damaged = before[1]!;
    const damagedBase = Number(damaged.slice(0, 20));
    flipBit(join(dir, damaged), 64 + 600 + 300); // inside the second batch's records
    // (The default mode checks older segments only from their last sound index entry.)
    log = await openLog(dir, { onDamage: 'quarantine' });
    assert.equal(log.endOffset, damagedBase + 1, 'ends after the last good batch');
    assert.deepEqual(segmentFiles(dir), before.slice(0, 2), 'later segments moved out of the log');
    const moved = fs.readdirSync(quarantineDirOf(dir));
    assert.equal(moved.length, before.length - 1, 'the damaged one copied, the later ones moved');
    for (const record of log.quarantined) assert.equal(record.lastGoodOffset, damagedBase + 1);
  } finally {
    await log?.close();
    remove();
  }
});

test('quarantine: an undamaged log opens unchanged and quarantines nothing', async () => {
  const { dir: root, remove } = temporaryDirectory('quarantine-clean');
  const dir = join(root, 'log');
  let log: SegmentLog | null = null;
  try {
    await filledLog(dir, 30);
    log = await openLog(dir, { onDamage: 'quarantine' });
    assert.equal(log.endOffset, 30);
    assert.equal(log.quarantined.length, 0);
    assert.equal(fs.existsSync(quarantineDirOf(dir)), false);
  } finally {
    await log?.close();
    remove();
  }
});
