// The peer in `make bench`: a three-node NATS JetStream cluster on 127.0.0.1 (Debian's
// nats-server, installed when missing), a stream with 3 replicas on file storage, and the same
// four workloads through the `nats` npm client.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, closeSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, AckPolicy, StorageType, type NatsConnection, type JetStreamClient, type JetStreamManager } from 'nats';
import { freePort, sleep, waitFor, percentile, median, round, progress, progressCounter, nowMs } from './bench-lib.js';
import type { LatencyResult, ThroughputResult, FailoverResult } from './mamba-side.js';

const stream = 'BENCH';

/** Finds nats-server, installing Debian's package when missing and allowed (root). */
export function ensureNatsServer(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    progress('nats-server is not installed and this is not root: the peer is skipped (apt-get install nats-server)');
    return null;
  }
  progress('installing nats-server (Debian package) for the peer measurement');
  const install = spawnSync('sh', ['-c', 'apt-get install -y nats-server >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y nats-server >/dev/null 2>&1)'], { stdio: 'inherit' });
  if (install.status !== 0) {
    progress('could not install nats-server: the peer is skipped');
    return null;
  }
  return spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim() || null;
}

interface NatsNode { name: string; clientPort: number; clusterPort: number; process: ChildProcess | null }

export class NatsCluster {
  nc!: NatsConnection;
  js!: JetStreamClient;
  jsm!: JetStreamManager;

  private constructor(readonly binary: string, readonly dir: string, readonly nodes: NatsNode[]) {}

  static async start(binary: string): Promise<NatsCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'nats-bench-'));
    const nodes: NatsNode[] = [];
    for (let i = 1; i <= 3; i++) nodes.push({ name: `n${i}`, clientPort: await freePort(), clusterPort: await freePort(), process: null });
    const cluster = new NatsCluster(binary, dir, nodes);
    for (const node of nodes) cluster.launch(node.name);
    try {
      await cluster.connect();
    } catch (error) {
      await cluster.stop(); // never leave servers behind
      throw error;
    }
    return cluster;
  }

  private async connect(): Promise<void> {
    this.nc = await waitFor('NATS to accept connections', 15_000, async () =>
      connect({ servers: this.nodes.map((n) => `127.0.0.1:${n.clientPort}`), maxReconnectAttempts: -1, reconnectTimeWait: 50, timeout: 1000 }));
    // JetStream answers only once its cluster has elected a meta leader: retry until it does.
    this.jsm = await waitFor('JetStream to be ready', 30_000, async () => this.nc.jetstreamManager({ timeout: 1000 }), 500);
    this.js = this.nc.jetstream({ timeout: 2000 });
    await waitFor('the JetStream stream with 3 replicas', 30_000, async () => {
      await this.jsm.streams.add({ name: stream, subjects: ['bench.>'], num_replicas: 3, storage: StorageType.File });
      return true;
    }, 500);
  }

  launch(name: string): void {
    const node = this.nodes.find((n) => n.name === name)!;
    const store = join(this.dir, name);
    mkdirSync(store, { recursive: true });
    const routes = this.nodes.filter((n) => n !== node).map((n) => `nats://127.0.0.1:${n.clusterPort}`).join(',');
    const fd = openSync(join(this.dir, `${name}.log`), 'a');
    node.process = spawn(this.binary, ['-a', '127.0.0.1', '-p', String(node.clientPort), '--server_name', name, '--cluster_name', 'bench',
      '--cluster', `nats://127.0.0.1:${node.clusterPort}`, '--routes', routes, '-js', '-sd', store], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
  }

  async kill(name: string): Promise<void> {
    const child = this.nodes.find((n) => n.name === name)?.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(5000)]);
  }

  async streamLeader(): Promise<string> {
    return waitFor('a stream leader', 60_000, async () => (await this.jsm.streams.info(stream)).cluster?.leader || undefined, 200);
  }

  async allCurrent(): Promise<void> {
    await waitFor('every stream replica to be current', 60_000, async () => {
      const info = await this.jsm.streams.info(stream);
      const replicas = info.cluster?.replicas ?? [];
      return info.cluster?.leader && replicas.length === 2 && replicas.every((r) => r.current && !r.offline) ? true : undefined;
    }, 200);
  }

  async stop(): Promise<void> {
    await this.nc?.close().catch(() => undefined);
    await Promise.all(this.nodes.map((n) => this.kill(n.name)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function natsOneAtATime(c: NatsCluster, count: number): Promise<LatencyResult> {
  const body = Buffer.alloc(1024, 0x61);
  for (let i = 0; i < 300; i++) await c.js.publish('bench.lat', body);
  const latencies: number[] = [];
  const tick = progressCounter('  peer one at a time', count);
  const start = nowMs();
  for (let i = 0; i < count; i++) {
    const t = nowMs();
    await c.js.publish('bench.lat', body);
    latencies.push(nowMs() - t);
    tick(i + 1);
  }
  const elapsedS = (nowMs() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { p50Ms: round(percentile(latencies, 50), 3), p99Ms: round(percentile(latencies, 99), 3), msgsPerS: round(count / elapsedS, 0) };
}

export async function natsPipelined(c: NatsCluster, count: number, inflightMax = 256): Promise<ThroughputResult> {
  const body = Buffer.alloc(1024, 0x61);
  const tick = progressCounter('  peer pipelined messages', count);
  let next = 0;
  let done = 0;
  const start = nowMs();
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await c.js.publish('bench.tput', body);
      tick(++done);
    }
  };
  await Promise.all(Array.from({ length: inflightMax }, worker));
  const elapsedS = (nowMs() - start) / 1000;
  return { msgsPerS: round(done / elapsedS, 0), mbPerS: round((done * body.length) / elapsedS / 1e6, 1) };
}

export async function natsConsumeAll(c: NatsCluster, subject: string): Promise<ThroughputResult & { count: number }> {
  const info = await c.jsm.streams.info(stream);
  const total = info.state.messages;
  await c.jsm.consumers.add(stream, { durable_name: 'reader', ack_policy: AckPolicy.None, filter_subject: subject });
  const consumer = await c.js.consumers.get(stream, 'reader');
  let count = 0;
  const start = nowMs();
  for (let round = 0; round < 100_000; round++) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 1000 });
    let got = 0;
    for await (const _ of batch) got++;
    count += got;
    if (got === 0) break;
  }
  const elapsedS = (nowMs() - start) / 1000;
  progress(`  peer consumed ${count} of ${total} stored messages`);
  return { count, msgsPerS: round(count / elapsedS, 0), mbPerS: round((count * 1024) / elapsedS / 1e6, 1) };
}

export async function natsFailover(c: NatsCluster, kills: number): Promise<FailoverResult> {
  const gaps: number[] = [];
  let sequence = 0;
  const acked: string[] = [];
  const send = async (): Promise<void> => {
    const text = `f${sequence++}`;
    await c.js.publish('bench.fail', Buffer.from(text));
    acked.push(text);
  };
  for (let k = 0; k < kills; k++) {
    for (let i = 0; i < 200; i++) await send();
    const leader = await c.streamLeader();
    await c.kill(leader);
    const killedAt = nowMs();
    for (let attempt = 0; attempt < 10_000; attempt++) {
      try {
        await send();
        break;
      } catch {
        await sleep(5);
      }
    }
    gaps.push(nowMs() - killedAt);
    progress(`  peer failover ${k + 1}/${kills}: ${leader} killed, next ack after ${round(gaps[gaps.length - 1]!, 0)} ms`);
    c.launch(leader);
    await c.allCurrent();
  }
  return { medianMs: round(median(gaps), 0), maxMs: round(Math.max(...gaps), 0), ackedMissing: -1, acked: acked.length };
}
