// Real broker processes for integration tests, benchmarks and chaos runs: reserved ports,
// bounded waits, a fresh data directory with its cluster file, one `mambamq broker` process per
// broker (optionally inside a network namespace), signals, kill -9 and restart, and a full stop.
// Every wait here is bounded in time, and every wait fails at once, with the broker's last log
// lines, when a broker of a running cluster exits without having been asked to.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync, closeSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as fromYaml, stringify as toYaml } from 'yaml';
import { reservePorts, releasePorts } from './ports.js';
import { loadClusterConfig } from '../../src/config/cluster.js';
import { formatBrokerDirectory, formatNewGroups } from '../../src/rpc/storage-format.js';

export { freePort, reservePorts, releasePorts } from './ports.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

/** How many of a broker's last log lines an unexpected exit reports. */
const exitReportLinesMax = 15;

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Clusters started and not yet stopped: every `waitFor` fails fast when one of their brokers dies. */
const runningClusters = new Set<LocalCluster>();

/**
 * Polls `check` until it returns a value (not undefined) or `timeoutMs` passes. Before each
 * poll, a broker of a running cluster that exited on its own ends the wait with its last log lines.
 */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    for (const cluster of runningClusters) cluster.assertNoUnexpectedExit(what);
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
}

/**
 * Asserts that `holds` stays true for `windowMs`, polling it: for claims of absence (no repeat
 * notification, no acknowledgement while every broker is down) that no event can signal.
 */
export async function assertHoldsFor(what: string, windowMs: number, holds: () => boolean, intervalMs = 25): Promise<void> {
  const end = Date.now() + windowMs;
  for (;;) {
    for (const cluster of runningClusters) cluster.assertNoUnexpectedExit(what);
    if (!holds()) throw new Error(`${what}: broken after ${windowMs - Math.max(0, end - Date.now())} ms of ${windowMs} ms`);
    if (Date.now() >= end) return;
    await sleep(Math.min(intervalMs, Math.max(1, end - Date.now())));
  }
}

/** The last `count` lines of a broker's log file, or a note that it has none. */
export function lastLogLines(file: string, count = exitReportLinesMax): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '(no log file)';
  }
}

export interface BrokerProcess {
  id: string;
  group: string;
  host: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  clientAddress: string;
  peerAddress: string;
  /** The broker's own data directory (`<dataDir>/<id>`). */
  dataDir: string;
  /** Network namespace the broker runs in (`ip netns exec`), or null for the caller's own. */
  namespace: string | null;
  process: ChildProcess | null;
  logFile: string;
  /** The ports of ClusterOptions.extraPorts, by key. */
  extraPorts: Record<string, number>;
}

export interface ClusterOptions {
  /** Prefix of the temporary directory and of the cluster name. */
  name?: string;
  groups?: number;
  /** Cluster-wide settings (`settings:` in the cluster file); `flush` defaults to async every 10 ms. */
  settings?: Record<string, unknown>;
  /** Per-broker settings overrides, by broker id. */
  brokerSettings?: Record<string, Record<string, unknown>>;
  /** The cluster file's `security:` section from the cluster's directory (none when absent). */
  security?: (dir: string) => Record<string, unknown>;
  /** More ports per broker, by cluster-file key (e.g. `mqttPort`): reserved with the others, written into each broker's entry. */
  extraPorts?: string[];
  /** Where each broker listens: its host (default 127.0.0.1) and network namespace (default none). */
  placement?: (id: string) => { host: string; namespace: string | null };
}

/** A broker process that ended without the launcher having signalled it. */
interface UnexpectedExit {
  id: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A cluster file in a fresh temporary directory and the broker processes started from it. */
export class LocalCluster {
  readonly brokers: BrokerProcess[] = [];
  private readonly ports: number[] = [];
  /** Brokers the launcher has signalled since their last launch: their exit is expected. */
  private readonly signalled = new Set<string>();
  private readonly unexpectedExits: UnexpectedExit[] = [];

  constructor(
    readonly dir: string,
    readonly file: string,
  ) {}

  /** Writes the cluster file for `groups` groups of three brokers; starts nothing. */
  static async create<C extends LocalCluster>(this: new (dir: string, file: string) => C, options: ClusterOptions = {}): Promise<C> {
    const name = options.name ?? 'mamba';
    const dir = mkdtempSync(join(tmpdir(), `${name}-`));
    const groupCount = options.groups ?? 1;
    // All of the cluster's ports at once: three (and the extra ones) per broker, none of them shared with anyone.
    const extraKeys = options.extraPorts ?? [];
    const perBroker = 3 + extraKeys.length;
    const ports = await reservePorts(groupCount * 3 * perBroker);
    const brokers: BrokerProcess[] = [];
    const groups: Array<{ id: string; brokers: Array<Record<string, unknown>> }> = [];
    for (let g = 1; g <= groupCount; g++) {
      const entries: Array<Record<string, unknown>> = [];
      for (let b = 1; b <= 3; b++) {
        const id = `b${(g - 1) * 3 + b}`;
        const { host, namespace } = options.placement?.(id) ?? { host: '127.0.0.1', namespace: null };
        const base = ((g - 1) * 3 + (b - 1)) * perBroker;
        const [clientPort, peerPort, metricsPort] = [ports[base], ports[base + 1], ports[base + 2]] as [number, number, number];
        const extraPorts = Object.fromEntries(extraKeys.map((key, i) => [key, ports[base + 3 + i]!]));
        const own = options.brokerSettings?.[id];
        entries.push({ id, host, clientPort, peerPort, metricsPort, ...extraPorts, ...(own ? { settings: own } : {}) });
        brokers.push({
          id,
          group: `g${g}`,
          host,
          clientPort,
          peerPort,
          metricsPort,
          clientAddress: `${host}:${clientPort}`,
          peerAddress: `${host}:${peerPort}`,
          dataDir: join(dir, 'data', id),
          namespace,
          process: null,
          logFile: join(dir, `${id}.log`),
          extraPorts,
        });
      }
      groups.push({ id: `g${g}`, brokers: entries });
    }
    const document = {
      cluster: `${name}${process.pid}`,
      dataDir: join(dir, 'data'),
      settings: { flush: { mode: 'async', intervalMs: 10 }, ...options.settings },
      ...(options.security ? { security: options.security(dir) } : {}),
      groups,
    };
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, toYaml(document));
    // A new cluster's seed brokers are formatted now, as an operator would before the first start;
    // a test that empties a broker's directory later restarts it as a replaced disk.
    formatNewGroups(loadClusterConfig(file));
    const cluster = new this(dir, file);
    cluster.brokers.push(...brokers);
    cluster.ports.push(...ports);
    return cluster;
  }

  broker(id: string): BrokerProcess {
    const broker = this.brokers.find((b) => b.id === id);
    if (!broker) throw new Error(`no broker ${id}`);
    return broker;
  }

  /**
   * Adds a broker to `group` in the cluster file with `joining: true` (it starts on a newly
   * formatted data directory and is not a seed voter; `mambamq replica add` makes it a member),
   * on three newly reserved ports; starts nothing. Brokers already running keep the file they read.
   */
  async addBroker(group: string, id: string): Promise<BrokerProcess> {
    if (this.brokers.some((b) => b.id === id)) throw new Error(`broker ${id} exists`);
    const [clientPort, peerPort, metricsPort] = (await reservePorts(3)) as [number, number, number];
    this.ports.push(clientPort, peerPort, metricsPort);
    const host = this.groupBrokers(group)[0]?.host ?? '127.0.0.1';
    const document = fromYaml(readFileSync(this.file, 'utf8')) as { groups: Array<{ id: string; brokers: Array<Record<string, unknown>> }> };
    const entry = document.groups.find((g) => g.id === group);
    if (!entry) throw new Error(`no group ${group}`);
    entry.brokers.push({ id, host, clientPort, peerPort, metricsPort, joining: true });
    writeFileSync(this.file, toYaml(document));
    // A new broker gets a new identity: its directory is formatted, as the README's procedure says.
    formatBrokerDirectory(loadClusterConfig(this.file), id);
    const broker: BrokerProcess = {
      id,
      group,
      host,
      clientPort,
      peerPort,
      metricsPort,
      clientAddress: `${host}:${clientPort}`,
      peerAddress: `${host}:${peerPort}`,
      dataDir: join(this.dir, 'data', id),
      namespace: null,
      process: null,
      logFile: join(this.dir, `${id}.log`),
      extraPorts: {},
    };
    this.brokers.push(broker);
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
    const child = broker.namespace
      ? spawn('ip', ['netns', 'exec', broker.namespace, process.execPath, ...args], { stdio: ['ignore', fd, fd] })
      : spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.signalled.delete(id);
    broker.process = child;
    runningClusters.add(this);
    child.once('exit', (code, signal) => {
      // Exited on its own or killed by a signal the launcher did not send (the OOM killer):
      // nobody asked for it, so every wait should stop and say so.
      if (broker.process === child && !this.signalled.has(id)) {
        this.unexpectedExits.push({ id, code, signal });
      }
    });
  }

  launchAll(): void {
    for (const broker of this.brokers) this.launch(broker.id);
  }

  isRunning(id: string): boolean {
    const child = this.broker(id).process;
    return !!child && child.exitCode === null && child.signalCode === null;
  }

  /** Throws, naming the broker and its last log lines, when one exited without being signalled. */
  assertNoUnexpectedExit(what = 'the cluster'): void {
    const exit = this.unexpectedExits[0];
    if (!exit) return;
    const how = exit.code !== null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
    throw new Error(`broker ${exit.id} exited (${how}) while waiting for ${what}; its last log lines:\n${lastLogLines(this.broker(exit.id).logFile)}`);
  }

  /** kill -9 (or another signal) and wait until the process is gone (at most 5 s). */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.broker(id).process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.signalled.add(id);
    child.kill(signal);
    await Promise.race([exited, sleep(5000)]);
  }

  /** Sends a signal without waiting (SIGSTOP / SIGCONT to pause and resume a broker). */
  signal(id: string, signal: NodeJS.Signals): void {
    if (!this.isRunning(id)) return;
    if (signal !== 'SIGSTOP' && signal !== 'SIGCONT') this.signalled.add(id);
    this.broker(id).process?.kill(signal);
  }

  /** Kills every broker (resuming paused ones first) and removes the directory unless `keep`. */
  async stopAll(keep = false): Promise<void> {
    runningClusters.delete(this);
    for (const b of this.brokers) this.signal(b.id, 'SIGCONT'); // a paused broker cannot die
    await Promise.all(this.brokers.map((b) => this.kill(b.id, 'SIGKILL')));
    releasePorts(this.ports);
    if (keep) process.stderr.write(`kept ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
