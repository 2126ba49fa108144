// The composition of the protocol gateways (src/gateway) on a broker: each listener starts when
// the broker's entry in the cluster file gives its port (mqttPort, stompPort), with the broker's
// TLS certificate when the cluster has TLS, the live keys and permissions for its own checks, and
// an in-process SDK client over every broker's client API signed with the brokers' key, with one
// idempotent producer per gateway (../gateway/common/backend.ts).
import type { Tracer } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import { brokerPath, brokerPem } from '../auth/tls.js';
import type { BrokerConfig, ClusterConfig } from '../config/cluster.js';
import { gatewayBackend, type GatewayBackendOptions } from '../gateway/common/backend.js';
import { gatewayMetrics } from '../gateway/common/metrics.js';
import { MqttGateway } from '../gateway/mqtt/server.js';
import { startStompGateway, type StompGateway } from '../gateway/stomp/server.js';
import type { Logger } from '../replica/logger.js';
import type { BrokerSecurity } from './broker-security.js';

/** Every broker's client API, this broker's first (the gateway's calls start where they are cheapest). */
function brokerAddresses(cluster: ClusterConfig, self: BrokerConfig): string[] {
  const all = cluster.groups.flatMap((g) => g.brokers).map((b) => `${b.host}:${b.clientPort}`);
  const own = `${self.host}:${self.clientPort}`;
  return [own, ...all.filter((a) => a !== own)];
}

/** How both gateways reach the cluster: every broker, the brokers' key, the cluster's CA, the broker's size limits. */
function backendOptions(cluster: ClusterConfig, config: BrokerConfig, security: BrokerSecurity): GatewayBackendOptions {
  const tls = cluster.security.tls;
  return {
    brokers: brokerAddresses(cluster, config),
    signingKey: security.brokerKey(),
    tlsCaFile: tls ? tls.caFile : null,
    // Through a leader change (a few election timeouts) before a call of the gateway gives up.
    requestTimeoutMs: Math.max(2000, 4 * config.settings.electionTimeoutMs),
    messageBytesMax: config.settings.messageBytesMax,
    requestBytesMax: config.settings.requestBytesMax,
  };
}

export async function startMqttListener(
  cluster: ClusterConfig,
  config: BrokerConfig,
  security: BrokerSecurity,
  registry: Registry,
  log: Logger,
  tracer: Tracer | null,
): Promise<MqttGateway | null> {
  if (config.mqttPort === null) return null;
  const tls = cluster.security.tls;
  const backend = gatewayBackend(backendOptions(cluster, config, security));
  try {
    return await MqttGateway.start({
      listenHost: config.listenHost,
      port: config.mqttPort,
      tls: tls ? brokerPem(tls, config.id) : null,
      backend,
      tracer,
      access: security.access,
      metrics: gatewayMetrics(registry, 'mqtt'),
      log,
      messageBytesMax: config.settings.messageBytesMax,
    });
  } catch (error) {
    await backend.close();
    throw error;
  }
}

export async function startStompListener(
  cluster: ClusterConfig,
  config: BrokerConfig,
  security: BrokerSecurity,
  registry: Registry,
  log: Logger,
  /** The broker's tracer: a span per SEND and per delivered MESSAGE; null when tracing is off. */
  tracer: Tracer | null,
): Promise<StompGateway | null> {
  if (config.stompPort === null) return null;
  const tls = cluster.security.tls;
  return startStompGateway({
    brokerId: config.id,
    listenHost: config.listenHost,
    port: config.stompPort,
    tls: tls ? { certFile: brokerPath(tls.certFile, config.id), keyFile: brokerPath(tls.keyFile, config.id) } : null,
    access: security.access,
    client: backendOptions(cluster, config, security),
    registry,
    tracer,
    log,
    limits: { bodyBytesMax: config.settings.messageBytesMax, frameBytesMax: config.settings.messageBytesMax + 64 * 1024 },
  });
}
