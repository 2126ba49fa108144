// SegmentLog.resetTo (issue 13 point 1; DESIGN §12 "Snapshots and retention"): a follower that
// installed a snapshot at S discards its log and starts an empty one at S. Checked here: offsets,
// epochs and waiters after a reset; appends, reads and reopens of a log that starts above 0; a
// process killed before every file step of a reset, and every directory a crash can leave
// (built by hand), reopen as the old log or the new one, never a mix; retention stops at the
// offset limit the driver passes (the newest snapshot).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { LogError, type SegmentLog } from '../../src/log/index.js';
import { appendBatch, captureEvents, makeBatch, openLog, readAll, temporaryDirectory } from './helpers.js';

const childPath = fileURLToPath(new URL('./reset-crash-child.js', import.meta.url));

function segmentName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.log`;
}

function indexName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.index`;
}

function segmentBaseOffsets(dir: string): number[] {
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.log'))
    .map((name) => Number(name.slice(0, 20)))
    .sort((left, right) => left - right);
}

/** What a log held before a reset, to recognise it after a crash. */
interface OldLog {
  startOffset: number;
  endOffset: number;
  batches: Buffer[];
  epochs: Array<{ epoch: number; startOffset: number }>;
  baseOffsets: number[];
}

/** 40 batches of 1..3 records in epochs 1..3 (five or six 8 KiB segments), optionally with head segments removed by retention. */
async function writeOldLog(dir: string, retainedSegmentCount: number | null): Promise<OldLog> {
  let log = await openLog(dir);
  for (let index = 0; index < 40; index++) appendBatch(log, makeBatch(index, 1 + (index % 3), 300 + (index % 4) * 60), 1 + Math.floor(index / 15));
  if (retainedSegmentCount !== null) {
    await log.close();
    const baseOffsets = segmentBaseOffsets(dir);
    log = await openLog(dir, { retention: { bytesMax: 0 } });
    log.applyRetention(Date.now(), baseOffsets[baseOffsets.length - retainedSegmentCount]!);
    assert.equal(log.stats.segmentCount, retainedSegmentCount);
  }
  const old = { startOffset: log.startOffset, endOffset: log.endOffset, batches: readAll(log), epochs: log.epochStartOffsets(), baseOffsets: [] as number[] };
  await log.close();
  old.baseOffsets = segmentBaseOffsets(dir);
  return old;
}

function assertOldLog(log: SegmentLog, old: OldLog, label: string): void {
  assert.equal(log.startOffset, old.startOffset, `${label}: old start`);
  assert.equal(log.endOffset, old.endOffset, `${label}: old end`);
  const stored = readAll(log);
  assert.equal(stored.length, old.batches.length, `${label}: old batch count`);
  stored.forEach((bytes, index) => assert.ok(bytes.equals(old.batches[index]!), `${label}: old batch ${index}`));
  assert.deepEqual(log.epochStartOffsets(), old.epochs, `${label}: old epochs`);
}

function assertNewLog(log: SegmentLog, dir: string, startOffset: number, epoch: number, label: string): void {
  assert.equal(log.startOffset, startOffset, `${label}: new start`);
  assert.equal(log.endOffset, startOffset, `${label}: new end`);
  assert.equal(log.durableOffset, startOffset, `${label}: new durable`);
  assert.equal(log.lastEpoch, epoch, `${label}: last epoch is the reset's`);
  assert.deepEqual(log.epochStartOffsets(), [], `${label}: no epoch held`);
  assert.deepEqual(log.read(startOffset, 65536), [], `${label}: nothing to read`);
  assert.deepEqual(fs.readdirSync(dir).sort(), [indexName(startOffset), segmentName(startOffset)], `${label}: only the new segment is left`);
}

interface Scenario {
  name: string;
  /** Head segments kept by retention before the reset (null: none removed). */
  retainedSegmentCount: number | null;
  startOffsetOf: (old: OldLog) => number;
  epoch: number;
}

const scenarios: Scenario[] = [
  { name: 'beyond the end (a gap)', retainedSegmentCount: null, startOffsetOf: (old) => old.endOffset + 100, epoch: 7 },
  { name: 'at the end', retainedSegmentCount: null, startOffsetOf: (old) => old.endOffset, epoch: 3 },
  { name: 'inside the log (divergent tail)', retainedSegmentCount: null, startOffsetOf: (old) => Math.floor(old.endOffset / 2) + 1, epoch: 2 },
  { name: 'at the base of a middle segment (same file name)', retainedSegmentCount: null, startOffsetOf: (old) => old.baseOffsets[2]!, epoch: 4 },
  { name: 'at the base of the first segment (offset 0)', retainedSegmentCount: null, startOffsetOf: () => 0, epoch: 1 },
  { name: 'below a start moved by retention', retainedSegmentCount: 2, startOffsetOf: () => 1, epoch: 5 },
];

describe('resetTo', () => {
  it('starts an empty log at S in every position of S; appends, reads and reopens from there', async () => {
    for (const scenario of scenarios) {
      const { dir, remove } = temporaryDirectory('reset');
      try {
        const old = await writeOldLog(dir, scenario.retainedSegmentCount);
        const startOffset = scenario.startOffsetOf(old);
        const captured = captureEvents();
        let log = await openLog(dir, { logger: captured.logger });
        log.resetTo(startOffset, scenario.epoch);
        assertNewLog(log, dir, startOffset, scenario.epoch, scenario.name);
        const reset = captured.events.find((event) => event.event === 'log.reset');
        assert.ok(reset !== undefined, `${scenario.name}: logged`);
        assert.equal(reset.startOffset, startOffset);
        assert.equal(reset.previousEndOffset, old.endOffset);
        assert.equal(reset.segmentsRemoved, old.baseOffsets.length);
        assert.throws(
          () => appendBatch(log, makeBatch(100, 1, 10), scenario.epoch - 1),
          (error: unknown) => error instanceof LogError && error.code === 'epoch_regression',
          `${scenario.name}: no batch below the snapshot's epoch`,
        );
        const appended: Buffer[] = [];
        for (let index = 0; index < 30; index++) appended.push(appendBatch(log, makeBatch(200 + index, 2, 400), scenario.epoch + Math.floor(index / 20)));
        assert.ok(log.stats.segmentCount > 1, 'rolled past the reset segment');
        await log.waitDurable(log.endOffset);
        await log.close();
        log = await openLog(dir);
        assert.equal(log.startOffset, startOffset, `${scenario.name}: start survives a reopen`);
        assert.equal(log.endOffset, startOffset + 60);
        const stored = readAll(log);
        assert.equal(stored.length, appended.length);
        stored.forEach((bytes, index) => assert.ok(bytes.equals(appended[index]!), `${scenario.name}: batch ${index}`));
        assert.deepEqual(log.epochStartOffsets(), [
          { epoch: scenario.epoch, startOffset },
          { epoch: scenario.epoch + 1, startOffset: startOffset + 40 },
        ]);
        // Truncated back to S the log is empty again and its last epoch is the snapshot's.
        log.truncateTo(startOffset);
        assert.equal(log.lastEpoch, scenario.epoch);
        await log.close();
        log = await openLog(dir);
        assert.equal(log.endOffset, startOffset);
        assert.equal(log.lastEpoch, scenario.epoch, `${scenario.name}: the reset's epoch survives a reopen of the empty log`);
        await log.close();
      } finally {
        remove();
      }
    }
  });

  it('an empty reset log reopens at S (above 0) and resets again, also to the same S', async () => {
    const { dir, remove } = temporaryDirectory('reset-empty');
    try {
      let log = await openLog(dir);
      log.resetTo(5000, 9);
      await log.close();
      log = await openLog(dir);
      assertNewLog(log, dir, 5000, 9, 'reopened');
      log.resetTo(5000, 10); // the same file name: replaced by the rename
      assertNewLog(log, dir, 5000, 10, 'same S');
      log.resetTo(70, 11); // lower than before: the reset count, not the offset, decides
      await log.close();
      log = await openLog(dir);
      assertNewLog(log, dir, 70, 11, 'lower S');
      await log.close();
    } finally {
      remove();
    }
  });

  it('resolves waiters at or below S, rejects those above with "truncated", and reports S durable', async () => {
    const { dir, remove } = temporaryDirectory('reset-waiters');
    const log = await openLog(dir, { flush: { mode: 'async', intervalMs: 60_000 } });
    try {
      for (let index = 0; index < 5; index++) appendBatch(log, makeBatch(index, 2, 50), 1);
      assert.equal(log.durableOffset, 0);
      const heard: number[] = [];
      log.onDurable((offset) => heard.push(offset));
      const below = log.waitDurable(4);
      const at = log.waitDurable(6);
      const above = log.waitDurable(10);
      log.resetTo(6, 1);
      await below;
      await at;
      await assert.rejects(above, (error: unknown) => error instanceof LogError && error.code === 'truncated');
      assert.deepEqual(heard, [6], 'durable rose to S');
      await log.waitDurable(6);
      appendBatch(log, makeBatch(9, 1, 50), 2);
      const pending = log.waitDurable(7);
      log.resetTo(2, 1); // below the durable offset: nothing to report, the waiter above goes
      await assert.rejects(pending, (error: unknown) => error instanceof LogError && error.code === 'truncated');
      assert.deepEqual(heard, [6]);
      assert.equal(log.durableOffset, 2);
    } finally {
      await log.close();
      remove();
    }
  });

  it('a closed log refuses a reset; bad arguments are bugs (assertions)', async () => {
    const { dir, remove } = temporaryDirectory('reset-args');
    const log = await openLog(dir);
    try {
      assert.throws(() => log.resetTo(-1, 1), /not an offset/);
      assert.throws(() => log.resetTo(1.5, 1), /not an offset/);
      assert.throws(() => log.resetTo(1, 2 ** 32), /out of range/);
    } finally {
      await log.close();
    }
    assert.throws(
      () => log.resetTo(1, 1),
      (error: unknown) => error instanceof LogError && error.code === 'closed',
    );
    remove();
  });
});

// ---------------------------------------------------------------- crashes
function runChild(dir: string, startOffset: number, epoch: number, killAt: number): Promise<{ killed: boolean; stepCount: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childPath, dir, String(startOffset), String(epoch), String(killAt)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      const match = /steps (\d+)/.exec(output);
      if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`child failed with code ${code}`));
      else resolve({ killed: signal === 'SIGKILL', stepCount: match === null ? null : Number(match[1]) });
    });
  });
}

describe('resetTo across crashes', () => {
  it('a process killed before any file step of a reset reopens as the old log or the new one, never a mix', async () => {
    for (const scenario of scenarios) {
      const template = temporaryDirectory('reset-template');
      try {
        const old = await writeOldLog(template.dir, scenario.retainedSegmentCount);
        const startOffset = scenario.startOffsetOf(old);
        // One step to create the new segment, one per old segment, one directory sync.
        const stepCount = old.baseOffsets.length + 2;
        for (let killAt = -1; killAt < stepCount; killAt++) {
          const label = `${scenario.name}, killed before step ${killAt}`;
          const { dir, remove } = temporaryDirectory('reset-crash');
          try {
            fs.cpSync(template.dir, dir, { recursive: true });
            const outcome = await runChild(dir, startOffset, scenario.epoch, killAt);
            assert.equal(outcome.killed, killAt >= 0, label);
            if (killAt < 0) assert.equal(outcome.stepCount, stepCount, 'steps counted as the test expects');
            const leftOver = segmentBaseOffsets(dir).filter((baseOffset) => baseOffset !== startOffset || killAt === 0).length;
            const captured = captureEvents();
            const log = await openLog(dir, { logger: captured.logger }); // refuse mode: any mix of segments fails the open
            const finished = captured.events.find((event) => event.event === 'log.recovery.reset_finished');
            if (killAt === 0) {
              assertOldLog(log, old, label);
              assert.equal(finished, undefined);
            } else {
              assertNewLog(log, dir, startOffset, scenario.epoch, label);
              if (killAt > 0) assert.equal(finished?.segmentsRemoved, leftOver > 0 ? leftOver : undefined, `${label}: recovery finished the reset`);
            }
            // Whatever was kept takes appends and reopens cleanly: no old file comes back.
            const next = appendBatch(log, makeBatch(500, 1, 80), 9);
            await log.close();
            const reopened = await openLog(dir);
            const stored = readAll(reopened);
            assert.ok(stored[stored.length - 1]!.equals(next), `${label}: the append after recovery is there`);
            assert.equal(stored.length, killAt === 0 ? old.batches.length + 1 : 1, label);
            await reopened.close();
          } finally {
            remove();
          }
        }
      } finally {
        template.remove();
      }
    }
  });

  it('every directory a crash can leave opens as the old log (before the rename) or the new one (after it)', async () => {
    // The old log and the files a finished reset makes, per scenario, built once.
    const built: Array<{ scenario: Scenario; template: string; old: OldLog; startOffset: number; segment: Buffer; index: Buffer }> = [];
    const root = temporaryDirectory('reset-states');
    try {
      for (const [position, scenario] of scenarios.entries()) {
        const template = join(root.dir, `old-${position}`);
        const old = await writeOldLog(template, scenario.retainedSegmentCount);
        const startOffset = scenario.startOffsetOf(old);
        const after = join(root.dir, `new-${position}`);
        fs.cpSync(template, after, { recursive: true });
        const log = await openLog(after);
        log.resetTo(startOffset, scenario.epoch);
        await log.close();
        const segment = fs.readFileSync(join(after, segmentName(startOffset)));
        const index = fs.readFileSync(join(after, indexName(startOffset)));
        built.push({ scenario, template, old, startOffset, segment, index });
      }
      await fc.assert(
        fc.asyncProperty(
          fc.nat({ max: built.length - 1 }),
          fc.array(fc.constantFrom('both' as const, 'segment' as const, 'none' as const), { minLength: 12, maxLength: 12 }),
          fc.constantFrom('creating' as const, 'renamed' as const, 'renamed-without-index' as const),
          fc.double({ min: 0, max: 1, noNaN: true }),
          async (which, keepOld, stage, cutAt) => {
            const { scenario, template, old, startOffset, segment, index } = built[which]!;
            const { dir, remove } = temporaryDirectory('reset-state');
            try {
              fs.cpSync(template, dir, { recursive: true });
              if (stage === 'creating') {
                // Killed while writing the new segment under its temporary name: old files all there.
                fs.writeFileSync(join(dir, `${segmentName(startOffset)}.creating`), segment.subarray(0, Math.floor(cutAt * segment.byteLength)));
              } else {
                // After the rename any subset of old segments may be left, each whole or without
                // its index (deleted first); an old segment of the new one's name was replaced.
                old.baseOffsets.forEach((baseOffset, position) => {
                  const kept = keepOld[position % keepOld.length];
                  if (kept !== 'both') fs.rmSync(join(dir, indexName(baseOffset)), { force: true });
                  if (kept === 'none') fs.rmSync(join(dir, segmentName(baseOffset)));
                });
                fs.writeFileSync(join(dir, segmentName(startOffset)), segment);
                // Killed before its index was made, the new segment may sit beside the old index of its name.
                if (stage === 'renamed') fs.writeFileSync(join(dir, indexName(startOffset)), index);
              }
              const log = await openLog(dir);
              try {
                if (stage === 'creating') assertOldLog(log, old, `${scenario.name}, ${stage}`);
                else assertNewLog(log, dir, startOffset, scenario.epoch, `${scenario.name}, ${stage}`);
              } finally {
                await log.close();
              }
            } finally {
              remove();
            }
          },
        ),
        { numRuns: 60 },
      );
    } finally {
      root.remove();
    }
  });
});

// ---------------------------------------------------------------- retention limit
describe('applyRetention with an offset limit (the newest snapshot)', () => {
  it('never deletes a segment reaching above the limit, whatever the size bound says', async () => {
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 1.1, noNaN: true }), async (at) => {
        const { dir, remove } = temporaryDirectory('retention-limit');
        try {
          await writeOldLog(dir, null);
          const log = await openLog(dir, { retention: { bytesMax: 0 } });
          try {
            const offsetLimit = Math.floor(at * log.endOffset);
            const baseOffsets = segmentBaseOffsets(dir);
            const expectedStart = baseOffsets.filter((baseOffset, position) => position === 0 || baseOffset <= offsetLimit).pop()!;
            log.applyRetention(Date.now(), offsetLimit);
            assert.ok(log.startOffset <= Math.max(offsetLimit, baseOffsets[0]!), 'nothing at or above the limit removed');
            assert.equal(log.startOffset, Math.min(expectedStart, baseOffsets[baseOffsets.length - 1]!), 'every whole segment below the limit removed');
          } finally {
            await log.close();
          }
        } finally {
          remove();
        }
      }),
      { numRuns: 20 },
    );
  });
});
