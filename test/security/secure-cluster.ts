// Broker processes on 127.0.0.1 with the security section on: a CA and broker certificates
// (scripts/make-certs.sh), a keys file with the brokers' key, an admin key and an app key, and a
// permissions file. Raw clients sign like the SDK does. Every wait is bounded.
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/protocol/protos.js';
import { createKey, deriveSigningKey } from '../../src/auth/keys.js';
import { signCall, type SigningKey } from '../../src/auth/signature.js';
import { stringify as toYaml } from 'yaml';
import { LocalCluster, waitFor, type BrokerProcess } from '../../scripts/lib/cluster.js';

export { cliPath, freePort, sleep, waitFor } from '../../scripts/lib/cluster.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf objects; a typed request path (issue 12.4) replaces this
export type Wire = Record<string, any>;

export type SecureBroker = BrokerProcess;

export interface SecureClusterOptions {
  groups?: number;
  tls?: boolean;
  settings?: Record<string, unknown>;
  /** More ports per broker by cluster-file key (e.g. mqttPort). */
  extraPorts?: string[];
  /** Runs after keys, permissions and certificates exist, before any broker starts (e.g. adds listeners to the cluster file). */
  beforeLaunch?: (cluster: SecureCluster) => Promise<void> | void;
}

export interface KeyPair {
  id: string;
  secret: string;
}

const MambaClientConstructor = grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba');

/** The shared launcher (scripts/lib/cluster.ts) with keys, permissions and certificates prepared. */
export class SecureCluster extends LocalCluster {
  readonly keys: Record<'admin' | 'app' | 'broker', KeyPair> = {} as never;
  tls = true;
  private readonly clients: grpc.Client[] = [];

  get certDir(): string {
    return join(this.dir, 'certs');
  }
  get keysFile(): string {
    return join(this.dir, 'keys');
  }
  get permissionsFile(): string {
    return join(this.dir, 'permissions.yaml');
  }

  static async start(options: SecureClusterOptions = {}): Promise<SecureCluster> {
    const tls = options.tls ?? true;
    const groups = options.groups ?? 1;
    const security = (dir: string): Record<string, unknown> => ({
      auth: {
        keysFile: join(dir, 'keys'),
        permissionsFile: join(dir, 'permissions.yaml'),
        brokerKeyId: 'broker',
        clockSkewMsMax: 5000,
        nonceCacheSizeMax: 100000,
      },
      ...(tls
        ? { tls: { caFile: join(dir, 'certs', 'ca.crt'), certFile: join(dir, 'certs', '{broker}.crt'), keyFile: join(dir, 'certs', '{broker}.key') } }
        : {}),
    });
    const cluster = await SecureCluster.create({ name: 'mamba-sec', groups, settings: options.settings ?? {}, security, extraPorts: options.extraPorts ?? [] });
    cluster.tls = tls;
    try {
      if (tls)
        execFileSync(join(repoRoot, 'scripts', 'make-certs.sh'), [cluster.certDir, ...cluster.brokers.map((b) => b.id), 'intruder'], { stdio: 'ignore' });
      Object.assign(cluster.keys, {
        broker: createKey(cluster.keysFile, 'broker'),
        admin: createKey(cluster.keysFile, 'admin'),
        app: createKey(cluster.keysFile),
      });
      cluster.writePermissions([
        { key: 'admin', topics: ['*'], actions: ['produce', 'consume', 'admin'] },
        { key: cluster.keys.app.id, topics: ['orders.*'], actions: ['produce'] },
      ]);
      await options.beforeLaunch?.(cluster);
      cluster.launchAll();
      for (let g = 1; g <= groups; g++) await cluster.leaderOf(`g${g}`, 20_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  writePermissions(grants: Array<{ key: string; topics: string[]; actions: string[] }>): void {
    writeFileSync(this.permissionsFile, toYaml({ grants }));
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
    const fn = (
      client as unknown as Record<string, (r: Wire, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>
    )[method]!;
    return new Promise((resolve, reject) =>
      fn.call(client, request, metadata, { deadline: Date.now() + timeoutMs }, (e, w) => (e ? reject(e) : resolve(w ?? {}))),
    );
  }

  async leaderOf(group: string, timeoutMs = 10_000): Promise<SecureBroker> {
    const admin = this.signer(this.keys.admin);
    return waitFor(
      `a leader in ${group}`,
      timeoutMs,
      async () => {
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
      },
      200,
    );
  }

  logs(): string {
    return this.brokers
      .map((b) => {
        try {
          return readFileSync(b.logFile, 'utf8');
        } catch {
          return '';
        }
      })
      .join('');
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    // MAMBA_KEEP_TEST_DIR=1 keeps data and broker logs for a post-mortem.
    await this.stopAll(!!process.env.MAMBA_KEEP_TEST_DIR);
  }
}
