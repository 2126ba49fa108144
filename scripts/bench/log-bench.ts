// make bench-log: segment-log throughput against raw file writes measured in the same run.
// 1 KiB records in batches of 64, ~5 s per mode; progress on stderr, one JSON line last on stdout.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { SegmentLog, crc32c, crc32cJs, crc32cSoftware, encodeBatch, stampBatch, type FlushPolicy } from '../../src/log/index.js';

const recordBytes = 1024;
const recordsPerBatch = 64;
const phaseMs = Number(process.env.BENCH_PHASE_MS ?? 5000);
const roundCount = 5;
/** Sync mode: a producer keeps at most this many batches not yet durable (then waits). */
const syncWindowBatches = 32;
const asyncFlushIntervalMs = 1000;
const megabyte = 1024 * 1024;

function progress(message: string): void {
  process.stderr.write(`[bench-log] ${message}\n`);
}

function templateBatch(): Buffer {
  const value = Buffer.alloc(recordBytes, 0x61);
  const records = Array.from({ length: recordsPerBatch }, (_, index) => ({ key: null, value, headers: [], timestampMs: Date.now() + index }));
  return encodeBatch({ records });
}

function megabytesPerSecond(byteCount: number, elapsedMs: number): number {
  return Math.round((byteCount / megabyte / (elapsedMs / 1000)) * 10) / 10;
}

interface PhaseResult {
  byteCount: number;
  elapsedMs: number;
  batchCount: number;
  flushCount: number;
}

function addResult(total: PhaseResult, part: PhaseResult): void {
  total.byteCount += part.byteCount;
  total.elapsedMs += part.elapsedMs;
  total.batchCount += part.batchCount;
  total.flushCount += part.flushCount;
}

function emptyResult(): PhaseResult {
  return { byteCount: 0, elapsedMs: 0, batchCount: 0, flushCount: 0 };
}

/** Appends for `durationMs` to an open log; the time to settle afterwards is not counted. */
async function appendSlice(log: SegmentLog, mode: FlushPolicy['mode'], template: Buffer, durationMs: number): Promise<PhaseResult> {
  const sync = mode === 'sync';
  const flushCountBefore = log.stats.flushCount;
  const startedMs = performance.now();
  let batchCount = 0;
  while (performance.now() - startedMs < durationMs) {
    // Async: append for a slice of time, then yield so the flush timer runs.
    // Sync: keep a bounded window of non-durable batches, as acknowledging producers would.
    const sliceEndMs = performance.now() + 20;
    while (performance.now() < sliceEndMs) {
      stampBatch(template, log.endOffset, 1);
      log.append(template);
      batchCount++;
      if (sync && log.endOffset - log.durableOffset >= syncWindowBatches * recordsPerBatch) {
        await log.waitDurable(log.endOffset - (syncWindowBatches / 2) * recordsPerBatch);
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (sync) await log.waitDurable(log.endOffset);
  const elapsedMs = performance.now() - startedMs;
  await log.flush(); // leave no dirty pages behind to slow the next measurement
  return { byteCount: batchCount * template.byteLength, elapsedMs, batchCount, flushCount: log.stats.flushCount - flushCountBefore };
}

async function openBenchLog(dir: string, flush: FlushPolicy): Promise<SegmentLog> {
  return SegmentLog.open({ dir, flush, logger: () => {} });
}

async function readPhase(dir: string): Promise<{ byteCount: number; elapsedMs: number }> {
  const log = await SegmentLog.open({ dir, flush: { mode: 'async', intervalMs: asyncFlushIntervalMs }, logger: () => {} });
  const startedMs = performance.now();
  let offset = log.startOffset;
  let byteCount = 0;
  while (offset < log.endOffset) {
    const batches = log.read(offset, 1024 * 1024);
    for (const batch of batches) byteCount += batch.byteLength;
    offset = batchEnd(batches[batches.length - 1]!);
  }
  const elapsedMs = performance.now() - startedMs;
  await log.close();
  return { byteCount, elapsedMs };
}

function batchEnd(batch: Buffer): number {
  return batch.readUInt32LE(16) + batch.readUInt32LE(20) * 2 ** 32 + batch.readUInt32LE(24);
}

/** Plain sequential writes of the same bytes; with `groupBatches`, one fdatasync per group. */
function rawPhase(path: string, template: Buffer, batchCount: number, groupBatches: number | null): PhaseResult {
  const fd = fs.openSync(path, 'w');
  const startedMs = performance.now();
  let flushCount = 0;
  for (let index = 1; index <= batchCount; index++) {
    fs.writeSync(fd, template);
    if (groupBatches !== null && (index % groupBatches === 0 || index === batchCount)) {
      fs.fdatasyncSync(fd);
      flushCount++;
    }
  }
  const elapsedMs = performance.now() - startedMs;
  fs.closeSync(fd);
  fs.rmSync(path);
  return { byteCount: batchCount * template.byteLength, elapsedMs, batchCount, flushCount };
}

/** Per-batch CRC32C speed of each implementation, for the record (stderr only). */
function measureCrc(template: Buffer): void {
  const rounds = 500;
  for (const [name, crc] of [['hardware', crc32c], ['slicing-by-8', crc32cSoftware], ['pure JS', crc32cJs]] as const) {
    const count = name === 'pure JS' ? rounds / 10 : rounds;
    const startedMs = performance.now();
    for (let round = 0; round < count; round++) crc(template);
    progress(`crc32c ${name}: ${megabytesPerSecond(count * template.byteLength, performance.now() - startedMs)} MB/s`);
  }
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(join(os.tmpdir(), 'mamba-bench-log-'));
  const ratio = (value: number, base: number): number => Math.round((value / base) * 100) / 100;
  try {
    const template = templateBatch();
    progress(`batch ${template.byteLength} bytes (${recordsPerBatch} x ${recordBytes} B records), ${phaseMs} ms per mode in ${roundCount} interleaved rounds`);
    measureCrc(template);
    const asyncLog = await openBenchLog(join(root, 'async'), { mode: 'async', intervalMs: asyncFlushIntervalMs });
    const syncLog = await openBenchLog(join(root, 'sync'), { mode: 'sync' });
    const totals = { async: emptyResult(), raw: emptyResult(), sync: emptyResult(), rawSync: emptyResult() };
    // Rounds alternate log and raw phases so that the noise of a shared machine hits both alike.
    for (let round = 1; round <= roundCount; round++) {
      const asyncPart = await appendSlice(asyncLog, 'async', template, phaseMs / roundCount);
      const rawPart = rawPhase(join(root, 'raw.bin'), template, asyncPart.batchCount, null);
      const syncPart = await appendSlice(syncLog, 'sync', template, phaseMs / roundCount);
      const groupBatches = Math.max(1, Math.round(syncPart.batchCount / Math.max(1, syncPart.flushCount)));
      const rawSyncPart = rawPhase(join(root, 'raw-sync.bin'), template, syncPart.batchCount, groupBatches);
      addResult(totals.async, asyncPart);
      addResult(totals.raw, rawPart);
      addResult(totals.sync, syncPart);
      addResult(totals.rawSync, rawSyncPart);
      progress(
        `round ${round}/${roundCount}: async ${megabytesPerSecond(asyncPart.byteCount, asyncPart.elapsedMs)} vs raw ${megabytesPerSecond(rawPart.byteCount, rawPart.elapsedMs)} MB/s; ` +
          `sync ${megabytesPerSecond(syncPart.byteCount, syncPart.elapsedMs)} vs raw+fdatasync ${megabytesPerSecond(rawSyncPart.byteCount, rawSyncPart.elapsedMs)} MB/s ` +
          `(${syncPart.flushCount} flushes, ~${groupBatches} batches each)`,
      );
    }
    await asyncLog.close();
    await syncLog.close();
    fs.rmSync(join(root, 'sync'), { recursive: true });

    progress('read everything back ...');
    const read = await readPhase(join(root, 'async'));
    const readMBps = megabytesPerSecond(read.byteCount, read.elapsedMs);
    progress(`read: ${readMBps} MB/s over ${read.byteCount} bytes, every batch CRC-verified`);

    const asyncMBps = megabytesPerSecond(totals.async.byteCount, totals.async.elapsedMs);
    const rawMBps = megabytesPerSecond(totals.raw.byteCount, totals.raw.elapsedMs);
    const syncMBps = megabytesPerSecond(totals.sync.byteCount, totals.sync.elapsedMs);
    const rawSyncMBps = megabytesPerSecond(totals.rawSync.byteCount, totals.rawSync.elapsedMs);
    console.log(
      JSON.stringify({
        bench: 'log',
        async_MBps: asyncMBps,
        raw_MBps: rawMBps,
        async_ratio: ratio(asyncMBps, rawMBps),
        sync_MBps: syncMBps,
        raw_sync_MBps: rawSyncMBps,
        sync_ratio: ratio(syncMBps, rawSyncMBps),
        read_MBps: readMBps,
      }),
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
