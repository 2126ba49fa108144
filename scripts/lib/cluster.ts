// Real broker processes for integration tests, benchmarks and chaos runs: free ports, bounded
// waits, a fresh data directory with its cluster file, one `mambamq broker` process per broker
// (optionally inside a network namespace), signals, kill -9 and restart, and a full stop.
// Every wait here is bounded in time.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

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

export interface BrokerProcess {
  id: string;
  group: string;
  host: string;
  clientAddress: string;
  peerAddress: string;
  /** The broker's own data directory (`<dataDir>/<id>`). */
  dataDir: string;
  /** Network namespace the broker runs in (`ip netns exec`), or null for the caller's own. */
  namespace: string | null;
  process: ChildProcess | null;
  logFile: string;
}

export interface ClusterOptions {
  /** Prefix of the temporary directory and of the cluster name. */
  name?: string;
  groups?: number;
  /** Cluster-wide settings (`settings:` in the cluster file); `flush` defaults to async every 10 ms. */
  settings?: Record<string, unknown>;
  /** Per-broker settings overrides, by broker id. */
  brokerSettings?: Record<string, Record<string, unknown>>;
  /** Where each broker listens: its host (default 127.0.0.1) and network namespace (default none). */
  placement?: (id: string) => { host: string; namespace: string | null };
}

/** A cluster file in a fresh temporary directory and the broker processes started from it. */
export class LocalCluster {
  readonly brokers: BrokerProcess[] = [];

  constructor(readonly dir: string, readonly file: string) {}

  /** Writes the cluster file for `groups` groups of three brokers; starts nothing. */
  static async create<C extends LocalCluster>(this: new (dir: string, file: string) => C, options: ClusterOptions = {}): Promise<C> {
    const name = options.name ?? 'mamba';
    const dir = mkdtempSync(join(tmpdir(), `${name}-`));
    const groups = options.groups ?? 1;
    const settings = { flush: { mode: 'async', intervalMs: 10 }, ...options.settings };
    const lines = [`cluster: ${name}${process.pid}`, `dataDir: ${join(dir, 'data')}`, 'settings:'];
    for (const [key, value] of Object.entries(settings)) lines.push(`  ${key}: ${JSON.stringify(value)}`);
    lines.push('groups:');
    const brokers: BrokerProcess[] = [];
    for (let g = 1; g <= groups; g++) {
      lines.push(`  - id: g${g}`, '    brokers:');
      for (let b = 1; b <= 3; b++) {
        const id = `b${(g - 1) * 3 + b}`;
        const { host, namespace } = options.placement?.(id) ?? { host: '127.0.0.1', namespace: null };
        const [clientPort, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
        const own = options.brokerSettings?.[id];
        lines.push(`      - { id: ${id}, host: ${host}, clientPort: ${clientPort}, peerPort: ${peerPort}, metricsPort: ${metricsPort}${own ? `, settings: ${JSON.stringify(own)}` : ''} }`);
        brokers.push({
          id, group: `g${g}`, host, clientAddress: `${host}:${clientPort}`, peerAddress: `${host}:${peerPort}`,
          dataDir: join(dir, 'data', id), namespace, process: null, logFile: join(dir, `${id}.log`),
        });
      }
    }
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const cluster = new this(dir, file);
    cluster.brokers.push(...brokers);
    return cluster;
  }

  broker(id: string): BrokerProcess {
    const broker = this.brokers.find((b) => b.id === id);
    if (!broker) throw new Error(`no broker ${id}`);
    return broker;
  }

  groupBrokers(group: string): BrokerProcess[] {
    return this.brokers.filter((b) => b.group === group);
  }

  launch(id: string): void {
    const broker = this.broker(id);
    if (this.isRunning(id)) throw new Error(`${id} is running`);
    const fd = openSync(broker.logFile, 'a');
    // MAMBA_BROKER_NODE_ARGS passes Node flags to the brokers (e.g. --cpu-prof for profiling).
    const nodeArgs = (process.env.MAMBA_BROKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const args = [...nodeArgs, cliPath, '--cluster', this.file, 'broker', '--id', id];
    // `ip netns exec` execs the command in place, so the child's pid is the broker's own.
    broker.process = broker.namespace
      ? spawn('ip', ['netns', 'exec', broker.namespace, process.execPath, ...args], { stdio: ['ignore', fd, fd] })
      : spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
  }

  launchAll(): void {
    for (const broker of this.brokers) this.launch(broker.id);
  }

  isRunning(id: string): boolean {
    const child = this.broker(id).process;
    return !!child && child.exitCode === null && child.signalCode === null;
  }

  /** kill -9 (or another signal) and wait until the process is gone (at most 5 s). */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.broker(id).process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await Promise.race([exited, sleep(5000)]);
  }

  /** Sends a signal without waiting (SIGSTOP / SIGCONT to pause and resume a broker). */
  signal(id: string, signal: NodeJS.Signals): void {
    if (this.isRunning(id)) this.broker(id).process?.kill(signal);
  }

  /** Kills every broker (resuming paused ones first) and removes the directory unless `keep`. */
  async stopAll(keep = false): Promise<void> {
    for (const b of this.brokers) this.signal(b.id, 'SIGCONT'); // a paused broker cannot die
    await Promise.all(this.brokers.map((b) => this.kill(b.id, 'SIGKILL')));
    if (keep) process.stderr.write(`kept ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
