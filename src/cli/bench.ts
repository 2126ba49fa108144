// `mambamq bench`: a producer run against a live cluster with a progress bar on stderr.
import { Producer } from '../client/producer.js';
import { MambaClient, connectionOptionsOf, type Ack, type ConnectionOptions } from '../client/client.js';
import type { MambaError } from '../errors.js';

export interface BenchOptions extends ConnectionOptions {
  brokers: string[];
  topic: string;
  messages: number;
  size: number;
  inflight: number;
  ack: Ack;
  progress: boolean;
}

export interface BenchResult {
  messages: number;
  sizeBytes: number;
  seconds: number;
  msgsPerS: number;
  mbPerS: number;
  p50Ms: number;
  p99Ms: number;
  failed: number;
}

function bar(done: number, total: number, startMs: number): string {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const rate = Math.round(done / Math.max(0.001, (Date.now() - startMs) / 1000));
  return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${rate} msg/s`;
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  if (options.messages < 1 || options.size < 1 || options.inflight < 1) throw new Error('--messages, --size and --inflight must be at least 1');
  const admin = new MambaClient({ brokers: options.brokers, requestTimeoutMs: 5000, retry: { attemptsMax: 3 }, ...connectionOptionsOf(options) });
  try {
    await admin.createTopic(options.topic, 4).catch((e: MambaError) => {
      if (e.kind !== 'already_exists') throw e;
    });
  } finally {
    admin.close();
  }
  const producer = new Producer({ brokers: options.brokers, ack: options.ack, whenUnavailable: 'drop', ...connectionOptionsOf(options) });
  const body = Buffer.alloc(options.size, 0x6d);
  const latencies: number[] = [];
  let sent = 0;
  let done = 0;
  let failed = 0;
  const startMs = Date.now();
  let lastDrawMs = 0;
  const draw = (): void => {
    if (!options.progress || (Date.now() - lastDrawMs < 200 && done < options.messages)) return;
    lastDrawMs = Date.now();
    process.stderr.write(bar(done, options.messages, startMs));
  };
  const worker = async (): Promise<void> => {
    while (sent < options.messages) {
      sent++;
      const t = performance.now();
      await producer.send(options.topic, { body }).then(
        () => latencies.push(performance.now() - t),
        () => {
          failed++;
        },
      );
      done++;
      draw();
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.inflight, options.messages) }, worker));
  } finally {
    await producer.close();
  }
  if (options.progress) process.stderr.write('\n');
  const seconds = (Date.now() - startMs) / 1000;
  latencies.sort((a, b) => a - b);
  const pick = (p: number): number => Math.round((latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN) * 1000) / 1000;
  const ok = done - failed;
  return {
    messages: ok,
    sizeBytes: options.size,
    seconds: Math.round(seconds * 100) / 100,
    msgsPerS: Math.round(ok / seconds),
    mbPerS: Math.round(((ok * options.size) / seconds / 1e6) * 10) / 10,
    p50Ms: pick(0.5),
    p99Ms: pick(0.99),
    failed,
  };
}
