// make bench-log: segment-log append throughput against raw file writes of the same I/O shape,
// measured in the same run. 1 KiB records in batches of 64; progress on stderr, one JSON line last
// on stdout.
//
// Both sides run the same driver (`runPhase`) against a `Writer`:
//   log   SegmentLog with the broker's default segment size and, in async mode, the broker's
//         default flush interval;
//   raw   the same I/O without the log: pwrite of the same bytes at increasing positions into
//         files preallocated (ftruncate) to the same segment size, rolled the same way (the sealed
//         file's fdatasync overlapping the next writes), and fdatasync on the thread pool either
//         every flush interval (async) or as a group commit (sync: one fdatasync in flight,
//         the next one covering everything written meanwhile).
// In sync mode the driver keeps at most `syncWindowBatches` batches not yet durable (as
// acknowledging producers would), then waits for half of them, on both sides alike. Rounds
// alternate which side runs first, so the noise of a shared machine hits both alike.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { SegmentLog, crc32c, crc32cJs, crc32cSoftware, encodeBatch, stampBatch, type FlushPolicy } from '../../src/log/index.js';
import { segmentHeaderBytes } from '../../src/log/segment-files.js';
import { defaultBrokerSettings } from '../../src/config/cluster.js';

const recordBytes = 1024;
const recordsPerBatch = 64;
const phaseMs = Number(process.env.BENCH_PHASE_MS ?? 5000);
const roundCount = 6;
/** Sync mode: a producer keeps at most this many batches not yet durable (then waits). */
const syncWindowBatches = 32;
const segmentBytes = defaultBrokerSettings.segmentBytes;
const brokerFlush = defaultBrokerSettings.flush;
const asyncFlushIntervalMs = brokerFlush.mode === 'async' ? brokerFlush.intervalMs : 10;
const sliceMs = 20;
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

/** What the driver needs from either side; counts are in batches. */
interface Writer {
  append(batch: Buffer): void;
  readonly appendedBatches: number;
  readonly durableBatches: number;
  readonly flushCount: number;
  /** Resolves once at least `batches` batches are durable. */
  waitDurable(batches: number): Promise<void>;
  /** Flushes everything now and waits for it. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

class LogWriter implements Writer {
  private constructor(private readonly log: SegmentLog) {}

  static async open(dir: string, flush: FlushPolicy): Promise<LogWriter> {
    return new LogWriter(await SegmentLog.open({ dir, flush, segmentBytes, logger: () => {} }));
  }

  append(batch: Buffer): void {
    stampBatch(batch, this.log.endOffset, 1);
    this.log.append(batch);
  }

  get appendedBatches(): number {
    return this.log.endOffset / recordsPerBatch;
  }

  get durableBatches(): number {
    return Math.floor(this.log.durableOffset / recordsPerBatch);
  }

  get flushCount(): number {
    return this.log.stats.flushCount;
  }

  waitDurable(batches: number): Promise<void> {
    return this.log.waitDurable(batches * recordsPerBatch);
  }

  flush(): Promise<void> {
    return this.log.flush();
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

/** The log's I/O without the log (see the file comment). */
class RawWriter implements Writer {
  appendedBatches = 0;
  durableBatches = 0;
  flushCount = 0;
  private fd: number;
  private fileCount = 0;
  private position = segmentHeaderBytes;
  private sealedSync: Promise<void> | null = null;
  private flushInFlight = false;
  private flushRequested = false;
  private flushQueued = false;
  private readonly waiters: Array<{ batches: number; resolve: () => void }> = [];
  private readonly timer: NodeJS.Timeout | null;

  constructor(
    private readonly dir: string,
    private readonly mode: FlushPolicy['mode'],
  ) {
    fs.mkdirSync(dir, { recursive: true });
    this.fd = this.createFile();
    this.timer = mode === 'async' ? setInterval(() => this.startFlush(), asyncFlushIntervalMs) : null;
  }

  /** Like the log's segment creation: header, ftruncate to the full size, synced with its directory. */
  private createFile(): number {
    const path = join(this.dir, `${String(this.fileCount++).padStart(20, '0')}.raw`);
    const fd = fs.openSync(path, 'w+');
    fs.writeSync(fd, Buffer.alloc(segmentHeaderBytes), 0, segmentHeaderBytes, 0);
    fs.ftruncateSync(fd, segmentBytes);
    fs.fdatasyncSync(fd);
    const dirFd = fs.openSync(this.dir, 'r');
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
    return fd;
  }

  append(batch: Buffer): void {
    if (this.position + batch.byteLength > segmentBytes) this.roll();
    const written = fs.writeSync(this.fd, batch, 0, batch.byteLength, this.position);
    if (written !== batch.byteLength) throw new Error(`short write (${written} of ${batch.byteLength} bytes)`);
    this.position += written;
    this.appendedBatches++;
    if (this.mode === 'sync') this.requestFlush();
  }

  /** As the log: the sealed file's fdatasync runs on the thread pool while writing goes on. */
  private roll(): void {
    const sealedFd = this.fd;
    const previous = this.sealedSync;
    this.sealedSync = Promise.all([previous, datasync(sealedFd)]).then(() => fs.closeSync(sealedFd));
    this.fd = this.createFile();
    this.position = segmentHeaderBytes;
  }

  private requestFlush(): void {
    if (this.flushInFlight) {
      this.flushRequested = true;
      return;
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.startFlush();
    });
  }

  private startFlush(): void {
    if (this.flushInFlight || this.appendedBatches <= this.durableBatches) return;
    const target = this.appendedBatches;
    this.flushInFlight = true;
    void Promise.all([datasync(this.fd), this.sealedSync]).then(() => {
      this.flushInFlight = false;
      this.flushCount++;
      this.durableBatches = Math.max(this.durableBatches, target);
      this.releaseWaiters();
      if (this.flushRequested) {
        this.flushRequested = false;
        this.startFlush();
      }
    });
  }

  private releaseWaiters(): void {
    let kept = 0;
    for (const waiter of this.waiters) {
      if (waiter.batches <= this.durableBatches) waiter.resolve();
      else this.waiters[kept++] = waiter;
    }
    this.waiters.length = kept;
  }

  waitDurable(batches: number): Promise<void> {
    if (batches <= this.durableBatches) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ batches, resolve }));
  }

  flush(): Promise<void> {
    const target = this.appendedBatches;
    if (this.flushInFlight) this.flushRequested = true;
    else this.startFlush();
    return this.waitDurable(target);
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.timer) clearInterval(this.timer);
    await this.sealedSync;
    fs.closeSync(this.fd);
  }
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve())));
}

interface PhaseResult {
  byteCount: number;
  elapsedMs: number;
  batchCount: number;
  flushCount: number;
}

function emptyResult(): PhaseResult {
  return { byteCount: 0, elapsedMs: 0, batchCount: 0, flushCount: 0 };
}

function addResult(total: PhaseResult, part: PhaseResult): void {
  total.byteCount += part.byteCount;
  total.elapsedMs += part.elapsedMs;
  total.batchCount += part.batchCount;
  total.flushCount += part.flushCount;
}

/**
 * Appends for `durationMs` (in slices of `sliceMs`, yielding between them so flushes complete);
 * sync mode keeps the window of non-durable batches bounded and ends once all is durable. The
 * time to settle afterwards (an untimed flush) is not counted.
 */
async function runPhase(writer: Writer, mode: FlushPolicy['mode'], template: Buffer, durationMs: number): Promise<PhaseResult> {
  const flushCountBefore = writer.flushCount;
  const batchesBefore = writer.appendedBatches;
  const startedMs = performance.now();
  while (performance.now() - startedMs < durationMs) {
    const sliceEndMs = performance.now() + sliceMs;
    while (performance.now() < sliceEndMs) {
      writer.append(template);
      if (mode === 'sync' && writer.appendedBatches - writer.durableBatches >= syncWindowBatches) {
        await writer.waitDurable(writer.appendedBatches - syncWindowBatches / 2);
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (mode === 'sync') await writer.waitDurable(writer.appendedBatches);
  const elapsedMs = performance.now() - startedMs;
  await writer.flush(); // leave no dirty pages behind to slow the next measurement
  const batchCount = writer.appendedBatches - batchesBefore;
  return { byteCount: batchCount * template.byteLength, elapsedMs, batchCount, flushCount: writer.flushCount - flushCountBefore };
}

async function readPhase(dir: string): Promise<{ byteCount: number; elapsedMs: number }> {
  const log = await SegmentLog.open({ dir, flush: { mode: 'async', intervalMs: asyncFlushIntervalMs }, segmentBytes, logger: () => {} });
  const startedMs = performance.now();
  let offset = log.startOffset;
  let byteCount = 0;
  for (let round = 0; offset < log.endOffset && round < 10_000_000; round++) {
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

/** Per-batch CRC32C speed of each implementation, for the record (stderr only). */
function measureCrc(template: Buffer): void {
  const rounds = 500;
  for (const [name, crc] of [
    ['hardware', crc32c],
    ['slicing-by-8', crc32cSoftware],
    ['pure JS', crc32cJs],
  ] as const) {
    const count = name === 'pure JS' ? rounds / 10 : rounds;
    const startedMs = performance.now();
    for (let round = 0; round < count; round++) crc(template);
    progress(`crc32c ${name}: ${megabytesPerSecond(count * template.byteLength, performance.now() - startedMs)} MB/s`);
  }
}

type Side = 'log' | 'raw';

/** One mode's pair of phases in a round, in the given order. */
async function runPair(
  writers: Record<Side, Writer>,
  mode: FlushPolicy['mode'],
  template: Buffer,
  order: Side[],
  totals: Record<Side, PhaseResult>,
): Promise<Record<Side, PhaseResult>> {
  const parts = { log: emptyResult(), raw: emptyResult() };
  for (const side of order) {
    parts[side] = await runPhase(writers[side], mode, template, phaseMs / roundCount);
    addResult(totals[side], parts[side]);
  }
  return parts;
}

function describePair(mode: string, parts: Record<Side, PhaseResult>): string {
  const flushes = (p: PhaseResult): string => `${p.flushCount} flushes, ~${Math.round(p.batchCount / Math.max(1, p.flushCount))} batches each`;
  return (
    `${mode} log ${megabytesPerSecond(parts.log.byteCount, parts.log.elapsedMs)} vs raw ${megabytesPerSecond(parts.raw.byteCount, parts.raw.elapsedMs)} MB/s ` +
    `(log ${flushes(parts.log)}; raw ${flushes(parts.raw)})`
  );
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(join(os.tmpdir(), 'mamba-bench-log-'));
  const ratio = (value: number, base: number): number => Math.round((value / base) * 100) / 100;
  const startedMs = performance.now();
  try {
    const template = templateBatch();
    progress(`batch ${template.byteLength} bytes (${recordsPerBatch} x ${recordBytes} B records), ${phaseMs} ms per side and mode in ${roundCount} rounds`);
    progress(`segments of ${segmentBytes} bytes; async flush every ${asyncFlushIntervalMs} ms (broker default); sync window ${syncWindowBatches} batches`);
    measureCrc(template);
    const asyncWriters: Record<Side, Writer> = {
      log: await LogWriter.open(join(root, 'async'), { mode: 'async', intervalMs: asyncFlushIntervalMs }),
      raw: new RawWriter(join(root, 'raw-async'), 'async'),
    };
    const syncWriters: Record<Side, Writer> = {
      log: await LogWriter.open(join(root, 'sync'), { mode: 'sync' }),
      raw: new RawWriter(join(root, 'raw-sync'), 'sync'),
    };
    const asyncTotals = { log: emptyResult(), raw: emptyResult() };
    const syncTotals = { log: emptyResult(), raw: emptyResult() };
    for (let round = 1; round <= roundCount; round++) {
      const order: Side[] = round % 2 === 1 ? ['log', 'raw'] : ['raw', 'log'];
      const asyncParts = await runPair(asyncWriters, 'async', template, order, asyncTotals);
      const syncParts = await runPair(syncWriters, 'sync', template, order, syncTotals);
      progress(`round ${round}/${roundCount} (${order[0]} first): ${describePair('async', asyncParts)}; ${describePair('sync', syncParts)}`);
    }
    for (const writer of [asyncWriters.log, asyncWriters.raw, syncWriters.log, syncWriters.raw]) await writer.close();
    for (const dir of ['sync', 'raw-async', 'raw-sync']) fs.rmSync(join(root, dir), { recursive: true });

    progress('read everything back ...');
    const read = await readPhase(join(root, 'async'));
    const readMBps = megabytesPerSecond(read.byteCount, read.elapsedMs);
    progress(`read: ${readMBps} MB/s over ${read.byteCount} bytes, every batch CRC-verified`);
    progress(`bench-log took ${Math.round((performance.now() - startedMs) / 1000)} s`);

    const asyncMBps = megabytesPerSecond(asyncTotals.log.byteCount, asyncTotals.log.elapsedMs);
    const rawMBps = megabytesPerSecond(asyncTotals.raw.byteCount, asyncTotals.raw.elapsedMs);
    const syncMBps = megabytesPerSecond(syncTotals.log.byteCount, syncTotals.log.elapsedMs);
    const rawSyncMBps = megabytesPerSecond(syncTotals.raw.byteCount, syncTotals.raw.elapsedMs);
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
