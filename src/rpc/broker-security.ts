// What a broker needs for security, built from its cluster file: TLS credentials, the access keys
// and permissions (reloaded on change), the call guards of both listeners, the connection
// limiter, and the signature brokers put on the calls they forward to each other.
import type * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import { Authenticator } from '../auth/authenticator.js';
import { loadKeysFile, parseKeysFile, type StoredKey } from '../auth/keys.js';
import { parsePermissions, type Permissions } from '../auth/permissions.js';
import { signCall } from '../auth/signature.js';
import { brokerTls, type BrokerTls } from '../auth/tls.js';
import { WatchedFile } from '../auth/watched-file.js';
import type { BrokerSettings, ClusterConfig } from '../config/cluster.js';
import { ConfigError } from '../validation.js';
import type { Logger } from '../replica/logger.js';
import { ConnectionLimiter } from './listener.js';
import { CallGuard } from './security-interceptor.js';

export interface BrokerSecurity {
  tls: BrokerTls | null;
  limiter: ConnectionLimiter;
  clientGuard: CallGuard;
  peerGuard: CallGuard;
  /** Signs a forwarded call with the brokers' key; null without access keys. */
  signForward: ((methodPath: string, metadata: grpc.Metadata) => void) | null;
  /** The loaded access keys and permissions (reloaded on change), for the gateways; null without access keys. */
  keys: (() => ReadonlyMap<string, StoredKey>) | null;
  permissions: (() => Permissions) | null;
  close(): void;
}

/**
 * Security counters on a broker's metrics registry (reasons and actions only, never key material):
 * mamba_auth_failures_total{reason} and mamba_calls_refused_total{api,code,action}.
 */
export interface SecurityMetrics {
  authFailure(reason: string): void;
  refusal(api: string, code: string, action: string): void;
}

export function securityMetrics(registry: Registry): SecurityMetrics {
  const failures = new Counter({
    name: 'mamba_auth_failures_total',
    help: 'Calls refused UNAUTHENTICATED, by reason (missing, malformed, unknown_key, bad_signature, stale, replayed)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const refusals = new Counter({
    name: 'mamba_calls_refused_total',
    help: 'Calls the security guard refused before any handler ran, by status code and permission action',
    labelNames: ['api', 'code', 'action'],
    registers: [registry],
  });
  return {
    authFailure: (reason) => failures.inc({ reason }),
    refusal: (api, code, action) => refusals.inc({ api, code, action }),
  };
}

export function openBrokerSecurity(
  cluster: ClusterConfig,
  brokerId: string,
  settings: BrokerSettings,
  log: Logger,
  metrics: SecurityMetrics | null = null,
): BrokerSecurity {
  const { auth, tls } = cluster.security;
  const groupBrokerIds = new Set(cluster.groups.find((g) => g.brokers.some((b) => b.id === brokerId))?.brokers.map((b) => b.id) ?? []);
  const limiter = new ConnectionLimiter(settings.connectionsPerClientMax);
  const files: Array<WatchedFile<unknown>> = [];
  let authenticator: Authenticator | null = null;
  let permissions: (() => Permissions) | null = null;
  let signForward: BrokerSecurity['signForward'] = null;
  let keyMap: BrokerSecurity['keys'] = null;
  if (auth) {
    const events = {
      onReload: (file: string) => log.info('auth.file.reloaded', { file }),
      onError: (file: string, message: string) => log.error('auth.file.rejected', { file, problem: message, kept: 'the last good version' }),
    };
    const keys = new WatchedFile<Map<string, StoredKey>>(auth.keysFile, parseKeysFile, events);
    const grants = new WatchedFile<Permissions>(auth.permissionsFile, parsePermissions, events);
    files.push(keys, grants);
    if (!keys.value.has(auth.brokerKeyId)) {
      for (const f of files) f.close();
      throw new ConfigError(`${cluster.source}: security.auth.brokerKeyId: key "${auth.brokerKeyId}" is not in ${auth.keysFile}`);
    }
    authenticator = new Authenticator(() => keys.value, {
      clockSkewMsMax: auth.clockSkewMsMax,
      nonceCacheSizeMax: auth.nonceCacheSizeMax,
      onFailure: (reason) => metrics?.authFailure(reason),
    });
    permissions = () => grants.value;
    keyMap = () => keys.value;
    signForward = (methodPath, metadata) => {
      const key = keys.value.get(auth.brokerKeyId) ?? loadKeysFile(auth.keysFile).get(auth.brokerKeyId);
      if (key) signCall(metadata, { keyId: key.id, signingKey: key.signingKey }, methodPath);
    };
    log.info('auth.enabled', { keys: keys.value.size, grants: grants.value.grantCount, keysFile: auth.keysFile, permissionsFile: auth.permissionsFile });
  }
  const clientGuard = new CallGuard({
    authenticator,
    permissions,
    brokerKeyId: auth?.brokerKeyId ?? null,
    limiter,
    inflightPerConnectionMax: settings.inflightPerConnectionMax,
    logger: log,
    onRefusal: (code, action) => metrics?.refusal('client', code, action),
  });
  // The peer API is guarded by mutual TLS and the membership check in peer.ts; its guard
  // answers malformed frames and bounds the calls in flight per connection.
  const peerGuard = new CallGuard({
    authenticator: null,
    permissions: null,
    brokerKeyId: null,
    limiter: null,
    inflightPerConnectionMax: 1024,
    logger: log,
    ...(tls ? { certificateAllowed: (name: string | undefined) => name !== undefined && name !== brokerId && groupBrokerIds.has(name) } : {}),
    onRefusal: (code, action) => metrics?.refusal('peer', code, action),
  });
  return {
    tls: tls ? brokerTls(tls, brokerId) : null,
    limiter,
    clientGuard,
    peerGuard,
    signForward,
    keys: keyMap,
    permissions,
    close() {
      for (const f of files) f.close();
    },
  };
}
