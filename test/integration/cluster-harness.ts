// Real broker processes on 127.0.0.1 for integration tests: free ports, a fresh data directory,
// a cluster file, `mambamq broker` per broker, kill -9 and restart, and a full stop afterwards.
// Every wait here is bounded in time.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MambaClient, type GroupView } from './grpc-client.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

export interface BrokerProcess {
  id: string;
  group: string;
  clientAddress: string;
  peerAddress: string;
  process: ChildProcess | null;
  logFile: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
}

export interface ClusterOptions {
  groups?: number;
  /** Extra YAML lines under `settings:` (indented by the caller's two spaces). */
  settings?: Record<string, unknown>;
  /** Per-broker settings overrides, by broker id. */
  brokerSettings?: Record<string, Record<string, unknown>>;
}

export class TestCluster {
  readonly dir: string;
  readonly file: string;
  readonly brokers: BrokerProcess[] = [];
  private readonly clients = new Map<string, MambaClient>();

  private constructor(dir: string, file: string) {
    this.dir = dir;
    this.file = file;
  }

  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'mamba-it-'));
    const groups = options.groups ?? 1;
    const lines = [`cluster: it${process.pid}`, `dataDir: ${join(dir, 'data')}`, 'settings:', '  flush: { mode: async, intervalMs: 10 }'];
    for (const [key, value] of Object.entries(options.settings ?? {})) lines.push(`  ${key}: ${JSON.stringify(value)}`);
    lines.push('groups:');
    const brokers: BrokerProcess[] = [];
    for (let g = 1; g <= groups; g++) {
      lines.push(`  - id: g${g}`, '    brokers:');
      for (let b = 1; b <= 3; b++) {
        const id = `b${(g - 1) * 3 + b}`;
        const [clientPort, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
        const own = options.brokerSettings?.[id];
        lines.push(`      - { id: ${id}, host: 127.0.0.1, clientPort: ${clientPort}, peerPort: ${peerPort}, metricsPort: ${metricsPort}${own ? `, settings: ${JSON.stringify(own)}` : ''} }`);
        brokers.push({ id, group: `g${g}`, clientAddress: `127.0.0.1:${clientPort}`, peerAddress: `127.0.0.1:${peerPort}`, process: null, logFile: join(dir, `${id}.log`) });
      }
    }
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const cluster = new TestCluster(dir, file);
    cluster.brokers.push(...brokers);
    for (const broker of brokers) cluster.launch(broker.id);
    for (let g = 1; g <= groups; g++) await cluster.waitForLeader(`g${g}`, 15_000);
    return cluster;
  }

  broker(id: string): BrokerProcess {
    const broker = this.brokers.find((b) => b.id === id);
    if (!broker) throw new Error(`no broker ${id}`);
    return broker;
  }

  launch(id: string): void {
    const broker = this.broker(id);
    if (broker.process && broker.process.exitCode === null && broker.process.signalCode === null) throw new Error(`${id} is running`);
    const fd = openSync(broker.logFile, 'a');
    broker.process = spawn(process.execPath, [cliPath, 'broker', '--cluster', this.file, '--id', id], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
  }

  /** kill -9 (or another signal) and wait until the process is gone. */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.broker(id).process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await Promise.race([exited, sleep(5000)]);
  }

  /** Sends a signal without waiting (SIGSTOP / SIGCONT to pause and resume a broker). */
  signal(id: string, signal: NodeJS.Signals): void {
    this.broker(id).process?.kill(signal);
  }

  client(id: string): MambaClient {
    let client = this.clients.get(id);
    if (!client) {
      client = new MambaClient(this.broker(id).clientAddress);
      this.clients.set(id, client);
    }
    return client;
  }

  groupBrokers(group: string): BrokerProcess[] {
    return this.brokers.filter((b) => b.group === group);
  }

  isRunning(id: string): boolean {
    const child = this.broker(id).process;
    return !!child && child.exitCode === null && child.signalCode === null;
  }

  /** The group as a running broker of it describes it, once it names a leader everyone agrees on. */
  async waitForLeader(group: string, timeoutMs: number, exclude: string[] = []): Promise<GroupView> {
    return waitFor(`a leader in ${group}`, timeoutMs, async () => {
      for (const broker of this.groupBrokers(group)) {
        if (!this.isRunning(broker.id) || exclude.includes(broker.id)) continue;
        const view = await this.client(broker.id).describeGroup(group, 500).catch(() => undefined);
        if (view && view.leaderId && !exclude.includes(view.leaderId) && this.isRunning(view.leaderId)) {
          const leaderView = await this.client(view.leaderId).describeGroup(group, 500).catch(() => undefined);
          if (leaderView && leaderView.leaderId === view.leaderId) return leaderView;
        }
      }
      return undefined;
    });
  }

  async stop(): Promise<void> {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    for (const b of this.brokers) this.signal(b.id, 'SIGCONT'); // a paused broker cannot die
    await Promise.all(this.brokers.map((b) => this.kill(b.id, 'SIGKILL')));
    // MAMBA_KEEP_TEST_DIR=1 keeps data and broker logs for a post-mortem.
    if (process.env.MAMBA_KEEP_TEST_DIR) process.stderr.write(`kept ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
