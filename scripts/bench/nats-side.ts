// The peer in `make bench`: a three-node NATS JetStream cluster on 127.0.0.1 (Debian's
// nats-server, installed when missing), one stream with 3 replicas on file storage, and the
// `BenchSystem` calls the workloads use, through the `nats` npm client:
//   raw protocol   JetStream publish (one message, one PubAck once 2 of 3 hold it);
//   own client     the same call: nats.js has no batching producer, so (b) and (c) are alike;
//   reads          one pull consumer per partition subject (memory, 1 replica: like our
//                  stateless reads by offset it replicates no delivery state), fetch of a batch.
// The bench writes one config file per server and prints the first; the workload connection
// goes to the stream leader first (no extra hop through another server: the peer's best case).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, closeSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, AckPolicy, DeliverPolicy, StorageType, type NatsConnection, type JetStreamClient, type JetStreamManager, type Consumer } from 'nats';
import { reservePorts, releasePorts } from '../lib/cluster.js';
import { sleep, waitFor, progress } from './bench-lib.js';
import type { BenchSystem, Send, Target } from './workloads.js';

const stream = 'BENCH';
const requestTimeoutMs = 10_000;

function subject(target: Target, partition: number): string {
  return target === 'load' ? `bench.load.${partition}` : target === 'sequential' ? 'bench.seq' : 'bench.fail';
}

/** Finds nats-server, installing Debian's package when missing and allowed (root). */
export function ensureNatsServer(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    progress('nats-server is not installed and this is not root: the peer is skipped (apt-get install nats-server)');
    return null;
  }
  progress('installing nats-server (Debian package) for the peer measurement');
  const install = spawnSync(
    'sh',
    ['-c', 'apt-get install -y nats-server >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y nats-server >/dev/null 2>&1)'],
    { stdio: 'inherit', timeout: 300_000 },
  );
  if (install.status !== 0) {
    progress('could not install nats-server: the peer is skipped');
    return null;
  }
  return spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim() || null;
}

/** What the peer is: its version, the Debian package, and which durability settings it knows. */
export interface PeerDescription {
  binary: string;
  version: string;
  debianPackage: string;
  hasSyncInterval: boolean;
  hasSyncAlways: boolean;
}

/** Asks the binary itself: `--version`, and `-t` (check a config file) on probe configs. */
export function describePeer(binary: string): PeerDescription {
  const version = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 })
    .stdout.trim()
    .replace(/^nats-server:\s*/, '');
  const debianPackage =
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax, not a template
    spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'nats-server'], { encoding: 'utf8', timeout: 10_000 }).stdout.trim() || 'not from a Debian package';
  const dir = mkdtempSync(join(tmpdir(), 'nats-probe-'));
  try {
    const accepts = (line: string): boolean => {
      const file = join(dir, 'probe.conf');
      writeFileSync(file, `jetstream {\n  store_dir: ${JSON.stringify(join(dir, 'js'))}\n  ${line}\n}\n`);
      return spawnSync(binary, ['-t', '-c', file], { encoding: 'utf8', timeout: 10_000 }).status === 0;
    };
    return { binary, version, debianPackage, hasSyncInterval: accepts('sync_interval: "2m"'), hasSyncAlways: accepts('sync_interval: always') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The durability line the bench prints for the peer. */
export function peerDurability(peer: PeerDescription): string {
  const interval = peer.hasSyncInterval
    ? 'sync_interval "2m" (its default, written in the config): acked once 2 of 3 hold it in memory/page cache, fsync in the background'
    : 'no sync_interval setting in this version (added in 2.10): acked once 2 of 3 hold it in memory/page cache, the file store flushes on its own built-in schedule';
  const always = peer.hasSyncAlways
    ? '`sync_interval: always` exists in this version: our sync flush mode is compared with it on (a) and (b)'
    : '`sync_interval: always` does not exist in this version, so our sync flush mode has no JetStream counterpart here and is not compared';
  return `${interval}; ${always}`;
}

interface NatsNode {
  name: string;
  clientPort: number;
  clusterPort: number;
  config: string;
  process: ChildProcess | null;
}

/** The peer's durability: its default (`sync_interval` "2m" where the setting exists) or `always`. */
export type PeerSync = 'default' | 'always';

function nodeConfig(node: NatsNode, nodes: NatsNode[], dir: string, peer: PeerDescription, sync: PeerSync): string {
  const syncLine = sync === 'always' ? ['  sync_interval: always'] : peer.hasSyncInterval ? ['  sync_interval: "2m"'] : [];
  const routes = nodes.filter((n) => n !== node).map((n) => `    nats-route://127.0.0.1:${n.clusterPort}`);
  return [
    `# NATS JetStream peer of the Mamba MQ bench (nats-server ${peer.version}), server ${node.name}`,
    `server_name: ${node.name}`,
    `listen: 127.0.0.1:${node.clientPort}`,
    'jetstream {',
    `  store_dir: ${JSON.stringify(join(dir, node.name))}`,
    ...syncLine,
    '}',
    'cluster {',
    '  name: bench',
    `  listen: 127.0.0.1:${node.clusterPort}`,
    '  routes: [',
    ...routes,
    '  ]',
    '}',
    '',
  ].join('\n');
}

export class NatsSystem implements BenchSystem {
  readonly label = 'peer';
  private admin!: NatsConnection;
  private jsm!: JetStreamManager;
  private work!: NatsConnection;
  private js!: JetStreamClient;
  private readonly extraConnections: NatsConnection[] = [];
  private readonly consumers = new Map<string, Consumer>();
  private consumerGeneration = 0;
  /** The stream leader seen by the last healthy() check. */
  private streamLeaderNow = '';

  private constructor(
    readonly binary: string,
    readonly dir: string,
    readonly nodes: NatsNode[],
    readonly partitions: number,
  ) {}

  /** Writes the three config files (returns the first one's text through `onConfig`), starts them. */
  static async start(peer: PeerDescription, partitions: number, onConfig: (text: string) => void, sync: PeerSync = 'default'): Promise<NatsSystem> {
    if (sync === 'always' && !peer.hasSyncAlways) throw new Error(`nats-server ${peer.version} has no sync_interval: always`);
    // Ports claimed for this run (no other server of any run gets them) until stop().
    const ports = await reservePorts(6);
    const dir = mkdtempSync(join(tmpdir(), 'nats-bench-'));
    const nodes: NatsNode[] = [1, 2, 3].map((i) => ({
      name: `n${i}`,
      clientPort: ports[2 * i - 2]!,
      clusterPort: ports[2 * i - 1]!,
      config: join(dir, `n${i}.conf`),
      process: null,
    }));
    for (const node of nodes) writeFileSync(node.config, nodeConfig(node, nodes, dir, peer, sync));
    onConfig(nodeConfig(nodes[0]!, nodes, dir, peer, sync));
    const system = new NatsSystem(peer.binary, dir, nodes, partitions);
    try {
      for (const node of nodes) system.restart(node.name);
      await system.connect();
    } catch (error) {
      await system.stop(); // never leave servers behind
      throw error;
    }
    return system;
  }

  private async connect(): Promise<void> {
    const servers = this.nodes.map((n) => `127.0.0.1:${n.clientPort}`);
    this.admin = await waitFor('NATS to accept connections', 15_000, async () =>
      connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 50, timeout: 1000 }),
    );
    // JetStream answers only once its cluster has elected a meta leader: retry until it does.
    this.jsm = await waitFor('JetStream to be ready', 30_000, async () => this.admin.jetstreamManager({ timeout: 1000 }), 200);
    await waitFor(
      'the stream with 3 replicas',
      30_000,
      async () => {
        await this.jsm.streams.add({ name: stream, subjects: ['bench.>'], num_replicas: 3, storage: StorageType.File });
        return true;
      },
      200,
    );
    await this.healthy();
    const leader = this.nodes.find((n) => n.name === this.streamLeaderNow)!;
    const ordered = [leader, ...this.nodes.filter((n) => n !== leader)].map((n) => `127.0.0.1:${n.clientPort}`);
    this.work = await connect({ servers: ordered, noRandomize: true, maxReconnectAttempts: -1, reconnectTimeWait: 50, timeout: 1000 });
    this.js = this.work.jetstream({ timeout: requestTimeoutMs });
  }

  serverPids(): number[] {
    return this.nodes.map((n) => {
      const pid = n.process?.pid;
      if (pid === undefined) throw new Error(`nats server ${n.name} has no process`);
      return pid;
    });
  }

  rawSender(target: Target): Send {
    return async (body, partition) => {
      await this.js.publish(subject(target, partition), body);
    };
  }

  clientSender(target: Target): { send: Send; close: () => Promise<void> } {
    return {
      send: this.rawSender(target),
      close: async () => {
        await this.work.flush();
      },
    };
  }

  failoverSender(timeoutMs: number): Send {
    const servers = this.nodes.map((n) => `127.0.0.1:${n.clientPort}`);
    let js: JetStreamClient | null = null;
    return async (body) => {
      if (js === null) {
        const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 50, timeout: 1000 });
        this.extraConnections.push(nc);
        js = nc.jetstream({ timeout: timeoutMs });
      }
      await js.publish(subject('failover', 0), body, { timeout: timeoutMs });
    };
  }

  async openReaders(target: Target): Promise<void> {
    const count = target === 'load' ? this.partitions : 1;
    const generation = ++this.consumerGeneration;
    for (let partition = 0; partition < count; partition++) {
      const name = `r${generation}-${target}-${partition}`;
      await waitFor(
        `consumer ${name}`,
        30_000,
        async () => {
          await this.jsm.consumers.add(stream, {
            durable_name: name,
            ack_policy: AckPolicy.None,
            deliver_policy: DeliverPolicy.All,
            filter_subject: subject(target, partition),
            num_replicas: 1,
            mem_storage: true,
          });
          return true;
        },
        200,
      );
      this.consumers.set(`${target}/${partition}`, await this.js.consumers.get(stream, name));
    }
  }

  async fetch(target: Target, partition: number, max: number, waitMs: number): Promise<Uint8Array[]> {
    const consumer = this.consumers.get(`${target}/${partition}`);
    if (!consumer) throw new Error(`no reader open for ${target}/${partition}`);
    const bodies: Uint8Array[] = [];
    const messages = await consumer.fetch({ max_messages: max, expires: Math.max(1000, waitMs) });
    for await (const m of messages) bodies.push(m.data);
    return bodies;
  }

  async leader(): Promise<string> {
    return waitFor('a stream leader', 60_000, async () => (await this.jsm.streams.info(stream)).cluster?.leader || undefined, 20);
  }

  async kill(name: string): Promise<void> {
    const child = this.nodes.find((n) => n.name === name)?.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await Promise.race([exited, sleep(5000)]);
  }

  restart(name: string): void {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no nats server ${name}`);
    mkdirSync(join(this.dir, name), { recursive: true });
    const fd = openSync(join(this.dir, `${name}.log`), 'a');
    node.process = spawn(this.binary, ['-c', node.config], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
  }

  /** A stream leader and both other replicas current (bounded). */
  async healthy(): Promise<void> {
    this.streamLeaderNow = await waitFor(
      'every stream replica to be current',
      60_000,
      async () => {
        const info = await this.jsm.streams.info(stream);
        const replicas = info.cluster?.replicas ?? [];
        return info.cluster?.leader && replicas.length === 2 && replicas.every((r) => r.current && !r.offline) ? info.cluster.leader : undefined;
      },
      50,
    );
  }

  async stop(): Promise<void> {
    for (const nc of [this.work, ...this.extraConnections, this.admin]) await nc?.close().catch(() => undefined);
    await Promise.all(this.nodes.map((n) => this.kill(n.name)));
    releasePorts(this.nodes.flatMap((n) => [n.clientPort, n.clusterPort]));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
