// make bench-log: segment-log throughput against raw file writes measured in the same run.
// 1 KiB records in batches of 64, ~5 s per mode; progress on stderr, one JSON line last on stdout.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { SegmentLog, encodeBatch, stampBatch, type FlushPolicy } from '../../src/log/index.js';

const recordBytes = 1024;
const recordsPerBatch = 64;
const phaseMs = Number(process.env.BENCH_PHASE_MS ?? 5000);
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

async function appendPhase(dir: string, flush: FlushPolicy, template: Buffer): Promise<PhaseResult> {
  const log = await SegmentLog.open({ dir, flush, logger: () => {} });
  const startedMs = performance.now();
  let batchCount = 0;
  while (performance.now() - startedMs < phaseMs) {
    // Async: append for a slice of time, then yield so the flush timer runs.
    // Sync: keep a bounded window of non-durable batches, as acknowledging producers would.
    const sliceEndMs = performance.now() + 20;
    while (performance.now() < sliceEndMs) {
      stampBatch(template, log.endOffset, 1);
      log.append(template);
      batchCount++;
      if (flush.mode === 'sync' && log.endOffset - log.durableOffset >= syncWindowBatches * recordsPerBatch) {
        await log.waitDurable(log.endOffset - (syncWindowBatches / 2) * recordsPerBatch);
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (flush.mode === 'sync') await log.waitDurable(log.endOffset);
  const elapsedMs = performance.now() - startedMs;
  const flushCount = log.stats.flushCount;
  await log.close();
  return { byteCount: batchCount * template.byteLength, elapsedMs, batchCount, flushCount };
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

async function main(): Promise<void> {
  const root = fs.mkdtempSync(join(os.tmpdir(), 'mamba-bench-log-'));
  try {
    const template = templateBatch();
    progress(`batch ${template.byteLength} bytes (${recordsPerBatch} x ${recordBytes} B records), ${phaseMs} ms per phase`);

    progress('async append ...');
    const asyncRun = await appendPhase(join(root, 'async'), { mode: 'async', intervalMs: asyncFlushIntervalMs }, template);
    const asyncMBps = megabytesPerSecond(asyncRun.byteCount, asyncRun.elapsedMs);
    progress(`async: ${asyncMBps} MB/s, ${asyncRun.batchCount} batches, ${asyncRun.flushCount} flushes`);

    progress('raw writeSync of the same bytes ...');
    const raw = rawPhase(join(root, 'raw.bin'), template, asyncRun.batchCount, null);
    const rawMBps = megabytesPerSecond(raw.byteCount, raw.elapsedMs);
    progress(`raw: ${rawMBps} MB/s`);

    progress('read everything back ...');
    const read = await readPhase(join(root, 'async'));
    const readMBps = megabytesPerSecond(read.byteCount, read.elapsedMs);
    progress(`read: ${readMBps} MB/s over ${read.byteCount} bytes (CRC verified)`);
    fs.rmSync(join(root, 'async'), { recursive: true });

    progress('sync append (group commit) ...');
    const syncRun = await appendPhase(join(root, 'sync'), { mode: 'sync' }, template);
    const syncMBps = megabytesPerSecond(syncRun.byteCount, syncRun.elapsedMs);
    const groupBatches = Math.max(1, Math.round(syncRun.batchCount / syncRun.flushCount));
    progress(`sync: ${syncMBps} MB/s, ${syncRun.batchCount} batches, ${syncRun.flushCount} flushes (~${groupBatches} batches each)`);
    fs.rmSync(join(root, 'sync'), { recursive: true });

    progress(`raw writeSync + fdatasync every ${groupBatches} batches ...`);
    const rawSync = rawPhase(join(root, 'raw-sync.bin'), template, syncRun.batchCount, groupBatches);
    const rawSyncMBps = megabytesPerSecond(rawSync.byteCount, rawSync.elapsedMs);
    progress(`raw sync: ${rawSyncMBps} MB/s, ${rawSync.flushCount} flushes`);

    const ratio = (value: number, base: number): number => Math.round((value / base) * 100) / 100;
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
