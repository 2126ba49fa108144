// Our side of `make bench`: three brokers on 127.0.0.1 in a temporary directory, and the four
// workloads (one at a time, pipelined, consume, failover) driven through the SDK client.
import { MambaClient } from '../../src/client/client.js';
import { LocalCluster } from '../lib/cluster.js';
import { sleep, waitFor, percentile, median, round, progress, progressCounter, nowMs } from './bench-lib.js';

export const body = Buffer.alloc(1024, 0x61);

export interface LatencyResult { p50Ms: number; p99Ms: number; msgsPerS: number }
export interface ThroughputResult { msgsPerS: number; mbPerS: number }
export interface FailoverResult { medianMs: number; maxMs: number; ackedMissing: number; acked: number }

/** The shared launcher's three brokers on 127.0.0.1 and one SDK client over them. */
export class MambaCluster {
  readonly client: MambaClient;

  private constructor(private readonly local: LocalCluster) {
    this.client = new MambaClient({ brokers: local.brokers.map((b) => b.clientAddress), requestTimeoutMs: 2000, retry: { attemptsMax: 200, backoffMsInitial: 2, backoffMsMax: 50, multiplier: 2, jitter: 0.2 } });
  }

  static async start(flushMode: 'async' | 'sync'): Promise<MambaCluster> {
    const local = await LocalCluster.create({ name: 'mamba-bench', settings: flushMode === 'sync' ? { flush: { mode: 'sync' } } : {} });
    const cluster = new MambaCluster(local);
    local.launchAll();
    await cluster.leader(15_000);
    return cluster;
  }

  launch(id: string): void {
    this.local.launch(id);
  }

  async kill(id: string): Promise<void> {
    await this.local.kill(id);
  }

  async leader(timeoutMs: number, exclude?: string): Promise<string> {
    return waitFor('a leader', timeoutMs, async () => {
      const groups = await this.client.describeCluster();
      const id = groups[0]?.leaderId;
      return id && id !== exclude ? id : undefined;
    });
  }

  async allCaughtUp(timeoutMs: number): Promise<void> {
    await waitFor('every replica to catch up', timeoutMs, async () => {
      const g = (await this.client.describeCluster())[0];
      return g && g.leaderId && g.replicas.every((r) => r.reachable && r.endOffset >= g.highWatermark) ? true : undefined;
    }, 100);
  }

  async stop(): Promise<void> {
    this.client.close();
    await this.local.stopAll();
  }
}

/** (a) One message at a time, each waiting for its quorum ack. */
export async function oneAtATime(cluster: MambaCluster, topic: string, count: number): Promise<LatencyResult> {
  for (let i = 0; i < 300; i++) await cluster.client.send(topic, [{ body }], { queue: 0 });
  const latencies: number[] = [];
  const tick = progressCounter('  one at a time', count);
  const start = nowMs();
  for (let i = 0; i < count; i++) {
    const t = nowMs();
    await cluster.client.send(topic, [{ body }], { queue: 0 });
    latencies.push(nowMs() - t);
    tick(i + 1);
  }
  const elapsedS = (nowMs() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { p50Ms: round(percentile(latencies, 50), 3), p99Ms: round(percentile(latencies, 99), 3), msgsPerS: round(count / elapsedS, 0) };
}

/** (b) As fast as possible: batches of `batchSize` over the topic's queues, `inflightMax` at once. */
export async function pipelined(cluster: MambaCluster, topic: string, queues: number, count: number, batchSize = 256, inflightMax = 8): Promise<ThroughputResult> {
  const messages = Array.from({ length: batchSize }, () => ({ body }));
  const batches = Math.ceil(count / batchSize);
  let next = 0;
  let done = 0;
  const tick = progressCounter('  pipelined messages', batches * batchSize);
  const start = nowMs();
  const worker = async (): Promise<void> => {
    while (next < batches) {
      const n = next++;
      await cluster.client.send(topic, messages, { queue: n % queues });
      done += batchSize;
      tick(done);
    }
  };
  await Promise.all(Array.from({ length: inflightMax }, worker));
  const elapsedS = (nowMs() - start) / 1000;
  return { msgsPerS: round(done / elapsedS, 0), mbPerS: round((done * body.length) / elapsedS / 1e6, 1) };
}

/** (c) Reads every queue of the topic from 0 to its end, batches of 5,000, queues in parallel. */
export async function consumeAll(cluster: MambaCluster, topic: string, queues: number): Promise<ThroughputResult & { count: number }> {
  let count = 0;
  const start = nowMs();
  await Promise.all(Array.from({ length: queues }, async (_, queue) => {
    let offset = 0;
    for (let round = 0; round < 100_000; round++) {
      const r = await cluster.client.read(topic, queue, offset, { maxMessages: 5000 });
      if (r.messages.length === 0) break;
      count += r.messages.length;
      offset = r.nextOffset;
    }
  }));
  const elapsedS = (nowMs() - start) / 1000;
  return { count, msgsPerS: round(count / elapsedS, 0), mbPerS: round((count * body.length) / elapsedS / 1e6, 1) };
}

/** (d) One-at-a-time produce while the leader is killed `kills` times; then count acked losses. */
export async function failover(cluster: MambaCluster, topic: string, kills: number): Promise<FailoverResult> {
  const acked: string[] = [];
  const gaps: number[] = [];
  let sequence = 0;
  const send = async (): Promise<void> => {
    const text = `f${sequence++}`;
    await cluster.client.send(topic, [{ body: text }], { queue: 0 });
    acked.push(text);
  };
  for (let k = 0; k < kills; k++) {
    for (let i = 0; i < 200; i++) await send();
    const leader = await cluster.leader(10_000);
    await cluster.kill(leader);
    const killedAt = nowMs();
    for (let attempt = 0; attempt < 1000; attempt++) {
      try {
        await send();
        break;
      } catch {
        await sleep(5);
      }
    }
    gaps.push(nowMs() - killedAt);
    progress(`  failover ${k + 1}/${kills}: leader ${leader} killed, next ack after ${round(gaps[gaps.length - 1]!, 0)} ms`);
    cluster.launch(leader);
    await cluster.allCaughtUp(30_000);
  }
  for (let i = 0; i < 200; i++) await send();
  const stored = new Set<string>();
  let offset = 0;
  for (let round = 0; round < 100_000; round++) {
    const r = await cluster.client.read(topic, 0, offset, { maxMessages: 5000 });
    if (r.messages.length === 0) break;
    for (const m of r.messages) stored.add(m.body.toString());
    offset = r.nextOffset;
  }
  const ackedMissing = acked.filter((a) => !stored.has(a)).length;
  return { medianMs: round(median(gaps), 0), maxMs: round(Math.max(...gaps), 0), ackedMissing, acked: acked.length };
}
