// Broker processes on 127.0.0.1 with the security section on: a CA and broker certificates
// (scripts/make-certs.sh), a keys file with the brokers' key, an admin key and an app key, and a
// permissions file. Raw clients sign like the SDK does. Every wait is bounded.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/rpc/protos.js';
import { createKey, deriveSigningKey } from '../../src/auth/keys.js';
import { signCall, type SigningKey } from '../../src/auth/signature.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
export type Wire = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

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

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export interface SecureBroker {
  id: string;
  group: string;
  clientAddress: string;
  peerAddress: string;
  logFile: string;
  process: ChildProcess | null;
}

export interface SecureClusterOptions {
  groups?: number;
  tls?: boolean;
  settings?: Record<string, unknown>;
}

export interface KeyPair {
  id: string;
  secret: string;
}

const MambaClientConstructor = grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba');

export class SecureCluster {
  readonly brokers: SecureBroker[] = [];
  readonly keys: Record<'admin' | 'app' | 'broker', KeyPair> = {} as never;
  readonly certDir: string;
  readonly keysFile: string;
  readonly permissionsFile: string;
  readonly file: string;
  private readonly clients: grpc.Client[] = [];

  private constructor(readonly dir: string, readonly tls: boolean) {
    this.certDir = join(dir, 'certs');
    this.keysFile = join(dir, 'keys');
    this.permissionsFile = join(dir, 'permissions.yaml');
    this.file = join(dir, 'cluster.yaml');
  }

  static async start(options: SecureClusterOptions = {}): Promise<SecureCluster> {
    const cluster = new SecureCluster(mkdtempSync(join(tmpdir(), 'mamba-sec-')), options.tls ?? true);
    const groups = options.groups ?? 1;
    const ids = Array.from({ length: groups * 3 }, (_, i) => `b${i + 1}`);
    if (cluster.tls) execFileSync(join(repoRoot, 'scripts', 'make-certs.sh'), [cluster.certDir, ...ids, 'intruder'], { stdio: 'ignore' });
    cluster.keys.broker = createKey(cluster.keysFile, 'broker');
    cluster.keys.admin = createKey(cluster.keysFile, 'admin');
    cluster.keys.app = createKey(cluster.keysFile);
    cluster.writePermissions([
      { key: 'admin', topics: ['*'], actions: ['produce', 'consume', 'admin'] },
      { key: cluster.keys.app.id, topics: ['orders.*'], actions: ['produce'] },
    ]);
    const lines = [`cluster: sec${process.pid}`, `dataDir: ${join(cluster.dir, 'data')}`, 'settings:', '  flush: { mode: async, intervalMs: 10 }'];
    for (const [key, value] of Object.entries(options.settings ?? {})) lines.push(`  ${key}: ${JSON.stringify(value)}`);
    lines.push('security:', '  auth:', `    keysFile: ${cluster.keysFile}`, `    permissionsFile: ${cluster.permissionsFile}`, '    brokerKeyId: broker', '    clockSkewMsMax: 5000', '    nonceCacheSizeMax: 100000');
    if (cluster.tls) lines.push('  tls:', `    caFile: ${join(cluster.certDir, 'ca.crt')}`, `    certFile: ${join(cluster.certDir, '{broker}.crt')}`, `    keyFile: ${join(cluster.certDir, '{broker}.key')}`);
    lines.push('groups:');
    for (let g = 1; g <= groups; g++) {
      lines.push(`  - id: g${g}`, '    brokers:');
      for (let b = 1; b <= 3; b++) {
        const id = `b${(g - 1) * 3 + b}`;
        const [clientPort, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
        lines.push(`      - { id: ${id}, host: 127.0.0.1, clientPort: ${clientPort}, peerPort: ${peerPort}, metricsPort: ${metricsPort} }`);
        cluster.brokers.push({ id, group: `g${g}`, clientAddress: `127.0.0.1:${clientPort}`, peerAddress: `127.0.0.1:${peerPort}`, logFile: join(cluster.dir, `${id}.log`), process: null });
      }
    }
    writeFileSync(cluster.file, `${lines.join('\n')}\n`);
    for (const b of cluster.brokers) cluster.launch(b.id);
    for (let g = 1; g <= groups; g++) await cluster.leaderOf(`g${g}`, 20_000);
    return cluster;
  }

  writePermissions(grants: Array<{ key: string; topics: string[]; actions: string[] }>): void {
    writeFileSync(this.permissionsFile, `grants:\n${grants.map((g) => `  - { key: "${g.key}", topics: ${JSON.stringify(g.topics)}, actions: ${JSON.stringify(g.actions)} }`).join('\n')}\n`);
  }

  broker(id: string): SecureBroker {
    const b = this.brokers.find((x) => x.id === id);
    if (!b) throw new Error(`no broker ${id}`);
    return b;
  }

  launch(id: string): void {
    const b = this.broker(id);
    const fd = openSync(b.logFile, 'a');
    b.process = spawn(process.execPath, [cliPath, 'broker', '--cluster', this.file, '--id', id], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
  }

  isRunning(id: string): boolean {
    const p = this.broker(id).process;
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  channelCredentials(certName: string | null = null): grpc.ChannelCredentials {
    if (!this.tls) return grpc.credentials.createInsecure();
    const ca = readFileSync(join(this.certDir, 'ca.crt'));
    if (!certName) return grpc.credentials.createSsl(ca);
    return grpc.credentials.createSsl(ca, readFileSync(join(this.certDir, `${certName}.key`)), readFileSync(join(this.certDir, `${certName}.crt`)));
  }

  /** A raw client API client; `options` are channel options (e.g. a distinct channel per client). */
  rawClient(address: string, options: grpc.ChannelOptions = {}): grpc.Client {
    const client = new MambaClientConstructor(address, this.channelCredentials(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024, ...options });
    this.clients.push(client);
    return client;
  }

  signer(key: KeyPair): SigningKey {
    return { keyId: key.id, signingKey: deriveSigningKey(key.id, key.secret) };
  }

  /** One client API call; signed with `key` unless null; rejects with the ServiceError. */
  call(client: grpc.Client, method: string, request: Wire, key: SigningKey | null, metadata = new grpc.Metadata(), timeoutMs = 5000): Promise<Wire> {
    if (key) signCall(metadata, key, `/mamba.v1.Mamba/${method}`);
    const fn = (client as unknown as Record<string, (r: Wire, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>)[method]!;
    return new Promise((resolve, reject) => fn.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (e, w) => (e ? reject(e) : resolve(w ?? {}))));
  }

  async leaderOf(group: string, timeoutMs = 10_000): Promise<SecureBroker> {
    const admin = this.signer(this.keys.admin);
    return waitFor(`a leader in ${group}`, timeoutMs, async () => {
      for (const b of this.brokers.filter((x) => x.group === group && this.isRunning(x.id))) {
        const client = this.rawClient(b.clientAddress);
        try {
          const reply = await this.call(client, 'DescribeCluster', {}, admin, new grpc.Metadata(), 1000);
          const g = (reply.groups as Wire[]).find((x) => x.id === group);
          if (g?.leaderId) return this.broker(String(g.leaderId));
        } catch {
          // not up yet
        } finally {
          client.close();
        }
      }
      return undefined;
    }, 200);
  }

  logs(): string {
    return this.brokers.map((b) => { try { return readFileSync(b.logFile, 'utf8'); } catch { return ''; } }).join('');
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await Promise.all(this.brokers.map(async (b) => {
      const p = b.process;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      p.kill('SIGKILL');
      await Promise.race([exited, sleep(5000)]);
    }));
    if (process.env.MAMBA_KEEP_TEST_DIR) process.stderr.write(`kept ${this.dir}\n`);
    else rmSync(this.dir, { recursive: true, force: true });
  }
}
