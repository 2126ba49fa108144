// The promise file (src/replica/promise-file.ts; DESIGN §12): the promised offset survives a
// reopen, rises and falls as asked, group-commits (one write covers every value wanted while the
// previous one ran) and keeps the older slot readable when the newer one is torn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PromiseFile, readPromiseFile } from '../../src/replica/promise-file.js';

function temporaryFile(): { path: string; remove: () => void } {
  const dir = fs.mkdtempSync(join(tmpdir(), 'mamba-promise-'));
  return { path: join(dir, 'promise'), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

async function durable(file: PromiseFile, offset: number): Promise<void> {
  for (let round = 0; round < 1000 && !(file.settled && file.durableOffset === offset); round++) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal(file.durableOffset, offset);
}

test('promise file: nothing is stored until a value is; stored values survive a reopen, lower ones too', async () => {
  const { path, remove } = temporaryFile();
  try {
    const file = PromiseFile.open(path, 7);
    assert.equal(file.durableOffset, 7, 'the fallback stands');
    assert.equal(readPromiseFile(path), null, 'no promise on disk yet (an old directory keeps its commit-mark fallback)');
    file.store(100);
    await durable(file, 100);
    file.store(40); // a legitimate truncation lowers it
    await durable(file, 40);
    file.close();
    assert.equal(readPromiseFile(path)?.offset, 40);
    const again = PromiseFile.open(path, 0);
    assert.equal(again.durableOffset, 40, 'the file wins over the fallback');
    again.close();
  } finally {
    remove();
  }
});

test('promise file: group commit: values wanted while a write runs are covered by one more write', async () => {
  const { path, remove } = temporaryFile();
  try {
    const file = PromiseFile.open(path, 0);
    const heard: number[] = [];
    file.onDurable((offset) => heard.push(offset));
    for (let offset = 1; offset <= 100; offset++) file.store(offset);
    await durable(file, 100);
    assert.ok(file.writesCount <= 2, `${file.writesCount} writes for 100 values`);
    assert.deepEqual(heard[heard.length - 1], 100);
    file.close();
  } finally {
    remove();
  }
});

test('promise file: a torn newest slot leaves the older value (two slots, checksummed)', async () => {
  const { path, remove } = temporaryFile();
  try {
    const file = PromiseFile.open(path, 0);
    file.store(10);
    await durable(file, 10);
    file.store(20);
    await durable(file, 20);
    file.close();
    // Find the slot holding 20 (the newer) and tear it.
    const bytes = fs.readFileSync(path);
    const slotOf20 = bytes.readBigUInt64LE(12) === 20n ? 0 : 4096;
    const fd = fs.openSync(path, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0xff]), 0, 2, slotOf20 + 14);
    fs.closeSync(fd);
    assert.equal(readPromiseFile(path)?.offset, 10, 'the older slot stands');
  } finally {
    remove();
  }
});
