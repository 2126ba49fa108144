// The protocol gateways a broker serves beside its gRPC listeners (issue 13), built from its
// cluster file entry: STOMP on `stompPort` when set. The gateway reaches the cluster through the
// client listeners, its own broker's first, signed with the brokers' key and over the cluster's TLS.
import type { Registry } from 'prom-client';
import type { BrokerConfig, ClusterConfig } from '../config/cluster.js';
import { brokerPath } from '../auth/tls.js';
import type { Logger } from '../replica/logger.js';
import { startStompGateway, type StompGateway } from '../gateway/stomp/server.js';
import type { BrokerSecurity } from './broker-security.js';

/** The client API addresses of every broker of the cluster file, `first`'s own first. */
function clientAddresses(cluster: ClusterConfig, first: BrokerConfig): string[] {
  const all = cluster.groups.flatMap((g) => g.brokers).filter((b) => b.id !== first.id);
  return [first, ...all].map((b) => `${b.host}:${b.clientPort}`);
}

export async function startStompListener(
  cluster: ClusterConfig,
  config: BrokerConfig,
  security: BrokerSecurity,
  registry: Registry,
  log: Logger,
): Promise<StompGateway | null> {
  if (config.stompPort === null) return null;
  const { auth, tls } = cluster.security;
  const brokerKey = auth ? (security.keys?.().get(auth.brokerKeyId) ?? null) : null;
  return startStompGateway({
    brokerId: config.id,
    listenHost: config.listenHost,
    port: config.stompPort,
    tls: tls ? { certFile: brokerPath(tls.certFile, config.id), keyFile: brokerPath(tls.keyFile, config.id) } : null,
    auth: { keys: security.keys, permissions: security.permissions },
    client: {
      brokers: clientAddresses(cluster, config),
      signingKey: brokerKey ? { keyId: brokerKey.id, signingKey: brokerKey.signingKey } : null,
      tlsCaFile: tls ? tls.caFile : null,
    },
    registry,
    log,
    limits: { bodyBytesMax: config.settings.messageBytesMax, frameBytesMax: config.settings.messageBytesMax + 64 * 1024 },
  });
}
