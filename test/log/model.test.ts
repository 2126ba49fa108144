// The log against an in-memory model over random sequences of append, read, truncateTo,
// close + reopen, retention and resetTo, with segments small enough that most runs cross several.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import fc from 'fast-check';
import type { SegmentLog } from '../../src/log/index.js';
import { appendBatch, batchBaseOffset, makeBatch, openLog, readAll, temporaryDirectory } from './helpers.js';

interface ModelBatch {
  baseOffset: number;
  recordCount: number;
  epoch: number;
  bytes: Buffer;
}

type Command =
  | { kind: 'append'; recordCount: number; valueBytes: number; epochBump: boolean }
  | { kind: 'read'; at: number; bytesMax: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'reopen' }
  | { kind: 'retention'; bytesMax: number }
  | { kind: 'reset'; at: number; toSegmentBase: boolean; epochBump: boolean };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      recordCount: fc.integer({ min: 1, max: 4 }),
      valueBytes: fc.integer({ min: 0, max: 700 }),
      epochBump: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('read' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), bytesMax: fc.integer({ min: 1, max: 6000 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('retention' as const), bytesMax: fc.integer({ min: 0, max: 30000 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('reset' as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      toSegmentBase: fc.boolean(),
      epochBump: fc.boolean(),
    }),
  },
);

/** Where the last reset started the log and with which epoch (0 and 0 before any reset). */
interface ResetMark {
  startOffset: number;
  epoch: number;
}

/** A reset target: the base of an existing segment (same file name), or anywhere in [0, end + 200). */
function resetOffset(dir: string, step: { at: number; toSegmentBase: boolean }, endOffset: number): number {
  if (!step.toSegmentBase) return Math.floor(step.at * (endOffset + 200));
  const baseOffsets = fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.log'))
    .map((name) => Number(name.slice(0, 20)));
  return baseOffsets[Math.floor(step.at * baseOffsets.length) % baseOffsets.length]!;
}

function expectedEpochHistory(model: ModelBatch[]): Array<{ epoch: number; startOffset: number }> {
  const history: Array<{ epoch: number; startOffset: number }> = [];
  for (const batch of model) {
    if (history[history.length - 1]?.epoch !== batch.epoch) history.push({ epoch: batch.epoch, startOffset: batch.baseOffset });
  }
  return history;
}

function checkAgainstModel(log: SegmentLog, model: ModelBatch[], startOffset: number, endOffset: number, reset: ResetMark): void {
  assert.equal(log.startOffset, startOffset, 'startOffset');
  assert.equal(log.endOffset, endOffset, 'endOffset');
  assert.ok(log.durableOffset <= log.endOffset, 'durable never ahead of written');
  const stored = readAll(log);
  assert.equal(stored.length, model.length, 'batch count');
  stored.forEach((bytes, index) => assert.ok(bytes.equals(model[index]!.bytes), `batch ${index} bytes`));
  const history = expectedEpochHistory(model);
  if (history.length > 0) history[0]!.startOffset = Math.max(history[0]!.startOffset, startOffset);
  assert.deepEqual(log.epochStartOffsets(), history, 'epoch history');
  // Empty, the log reports the epoch of the reset that started it while its first segment is the reset's.
  const emptyEpoch = startOffset === reset.startOffset ? reset.epoch : 0;
  assert.equal(log.lastEpoch, model[model.length - 1]?.epoch ?? emptyEpoch, 'lastEpoch');
}

async function runCommands(commands: Command[], segmentBytes: number): Promise<void> {
  const { dir, remove } = temporaryDirectory('model');
  const options = { segmentBytes, retention: { bytesMax: 0 } };
  let log = await openLog(dir, options);
  let model: ModelBatch[] = [];
  let startOffset = 0;
  let epoch = 1;
  let seed = 0;
  let reset: ResetMark = { startOffset: 0, epoch: 0 };
  try {
    for (const step of commands) {
      const endOffset = log.endOffset;
      if (step.kind === 'append') {
        if (step.epochBump) epoch++;
        const bytes = appendBatch(log, makeBatch(seed++, step.recordCount, step.valueBytes), epoch);
        model.push({ baseOffset: endOffset, recordCount: step.recordCount, epoch, bytes });
      } else if (step.kind === 'read' && model.length > 0) {
        const target = model[Math.min(model.length - 1, Math.floor(step.at * model.length))]!;
        const offset = target.baseOffset + (Math.floor(step.at * 1000) % target.recordCount);
        const batches = log.read(offset, step.bytesMax);
        const first = model.indexOf(target);
        assert.ok(batches.length >= 1, 'at least one batch');
        batches.forEach((batch, index) => assert.ok(batch.equals(model[first + index]!.bytes), 'read bytes'));
        const total = batches.reduce((sum, batch) => sum + batch.byteLength, 0);
        assert.ok(batches.length === 1 || total <= step.bytesMax, 'bytesMax respected');
        assert.equal(batchBaseOffset(batches[0]!), target.baseOffset);
      } else if (step.kind === 'truncate' && model.length > 0) {
        const keep = Math.floor(step.at * model.length);
        const offset = keep < model.length ? model[keep]!.baseOffset : endOffset;
        log.truncateTo(offset);
        model = model.slice(0, keep);
      } else if (step.kind === 'reopen') {
        await log.close();
        log = await openLog(dir, options);
      } else if (step.kind === 'retention') {
        await log.close();
        log = await openLog(dir, { segmentBytes, retention: { bytesMax: step.bytesMax } });
        const sizeBefore = log.sizeBytes;
        const deleted = log.applyRetention();
        if (deleted > 0) assert.ok(log.sizeBytes >= step.bytesMax && log.sizeBytes < sizeBefore, 'retention by size');
        startOffset = log.startOffset;
        model = model.filter((batch) => batch.baseOffset >= startOffset);
        assert.ok(model.length === 0 ? startOffset === log.endOffset || startOffset === endOffset : model[0]!.baseOffset === startOffset, 'start at a batch');
      } else if (step.kind === 'reset') {
        const offset = resetOffset(dir, step, endOffset);
        if (step.epochBump) epoch++;
        log.resetTo(offset, epoch);
        assert.equal(log.endOffset, offset, 'reset: end');
        assert.equal(log.durableOffset, offset, 'reset: durable');
        assert.equal(log.stats.segmentCount, 1, 'reset: one segment');
        model = [];
        startOffset = offset;
        reset = { startOffset: offset, epoch };
      }
      checkAgainstModel(
        log,
        model,
        startOffset,
        model.length > 0 ? model[model.length - 1]!.baseOffset + model[model.length - 1]!.recordCount : log.endOffset,
        reset,
      );
    }
  } finally {
    await log.close();
    remove();
  }
}

describe('segment log against a model', () => {
  it('agrees on offsets, bytes, reads and epoch history over random operation sequences', async () => {
    await fc.assert(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 80, size: 'max' }), fc.constantFrom(4096, 8192, 16384), runCommands), {
      numRuns: 60,
    });
  });

  it('waitDurable and onDurable report every sync-mode append as durable', async () => {
    const { dir, remove } = temporaryDirectory('durable');
    const log = await openLog(dir);
    try {
      const seen: number[] = [];
      const unsubscribe = log.onDurable((offset) => seen.push(offset));
      for (let index = 0; index < 20; index++) appendBatch(log, makeBatch(index, 2, 100), 1);
      assert.equal(log.writtenOffset, 40);
      await log.waitDurable(40);
      assert.equal(log.durableOffset, 40);
      assert.deepEqual(
        seen,
        [...seen].sort((a, b) => a - b),
        'monotonic',
      );
      assert.equal(seen[seen.length - 1], 40);
      assert.ok(log.stats.flushCount < 20, 'appends in one run share flushes (group commit)');
      unsubscribe();
    } finally {
      await log.close();
      remove();
    }
  });

  it('async mode makes appends durable on its interval, and close makes everything durable', async () => {
    const { dir, remove } = temporaryDirectory('async');
    const log = await openLog(dir, { flush: { mode: 'async', intervalMs: 20 } });
    try {
      appendBatch(log, makeBatch(1, 3, 50), 1);
      assert.equal(log.durableOffset, 0, 'not durable before the interval');
      const startedMs = Date.now();
      await log.waitDurable(3);
      assert.ok(Date.now() - startedMs < 2000);
      appendBatch(log, makeBatch(2, 3, 50), 1);
    } finally {
      await log.close();
      assert.equal(log.durableOffset, 6);
      remove();
    }
  });

  it('truncateTo rejects waiters for offsets it removed', async () => {
    const { dir, remove } = temporaryDirectory('truncwait');
    const log = await openLog(dir, { flush: { mode: 'async', intervalMs: 60_000 } });
    try {
      appendBatch(log, makeBatch(1, 2, 10), 1);
      appendBatch(log, makeBatch(2, 2, 10), 1);
      const waiting = log.waitDurable(4);
      log.truncateTo(2);
      await assert.rejects(waiting, (error: unknown) => (error as { code?: string }).code === 'truncated');
      assert.deepEqual(log.endOffsetForEpoch(1), { epoch: 1, endOffset: 2 });
    } finally {
      await log.close();
      remove();
    }
  });

  it('endOffsetForEpoch answers the divergence lookup (largest epoch <= asked, where it ends)', async () => {
    const { dir, remove } = temporaryDirectory('epochs');
    const log = await openLog(dir);
    try {
      appendBatch(log, makeBatch(1, 2, 10), 2);
      appendBatch(log, makeBatch(2, 2, 10), 2);
      appendBatch(log, makeBatch(3, 1, 10), 5);
      assert.equal(log.endOffsetForEpoch(1), null);
      assert.deepEqual(log.endOffsetForEpoch(2), { epoch: 2, endOffset: 4 });
      assert.deepEqual(log.endOffsetForEpoch(4), { epoch: 2, endOffset: 4 });
      assert.deepEqual(log.endOffsetForEpoch(9), { epoch: 5, endOffset: 5 });
    } finally {
      await log.close();
      remove();
    }
  });
});
