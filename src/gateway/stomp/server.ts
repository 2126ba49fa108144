// The STOMP listener of one broker (`stompPort` in the cluster file): TCP, or TLS with the
// broker's own certificate when the cluster has `security.tls`. Each connection is a StompSession
// over the gateway's one backend (SDK client and idempotent producer); connections beyond connectionsMax are closed at once.
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Tracer } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import { GatewayAuth } from './auth.js';
import type { GatewayAccess } from '../common/access.js';
import { gatewayConsumer, nackPolicyDefault, stompBackend, type GatewayClientOptions, type NackPolicy } from './client.js';
import type { Destination } from './destination.js';
import { gatewayMetrics, noGatewayMetrics } from './metrics.js';
import { sessionLimitsDefault, StompSession, type GatewayLog, type SessionLimits } from './session.js';
import { gatewayTracing } from '../common/tracing.js';

export interface StompGatewayOptions {
  brokerId: string;
  listenHost: string;
  port: number;
  /** PEM files of this broker's certificate and key; null serves plain TCP. */
  tls: { certFile: string; keyFile: string } | null;
  /** The broker's live keys and permissions; null: the cluster has no access keys. */
  access: GatewayAccess | null;
  client: GatewayClientOptions;
  registry: Registry | null;
  /** The broker's tracer (a span per SEND and per delivered MESSAGE); null when tracing is off. */
  tracer: Tracer | null;
  log: GatewayLog;
  limits?: Partial<SessionLimits>;
  nack?: Partial<NackPolicy>;
  connectionsMax?: number;
}

export interface StompGateway {
  readonly port: number;
  close(): Promise<void>;
}

const connectionsMaxDefault = 1024;

export async function startStompGateway(options: StompGatewayOptions): Promise<StompGateway> {
  const limits: SessionLimits = { ...sessionLimitsDefault, ...options.limits };
  const nack: NackPolicy = { ...nackPolicyDefault, ...options.nack };
  const connectionsMax = options.connectionsMax ?? connectionsMaxDefault;
  const metrics = options.registry ? gatewayMetrics(options.registry, 'stomp') : noGatewayMetrics;
  const backend = stompBackend(options.client);
  const deps = {
    auth: new GatewayAuth(options.access),
    backend,
    consumer: (group: string, destination: Destination) => gatewayConsumer(backend.client, options.client, group, destination, nack),
    metrics,
    tracing: gatewayTracing(options.tracer, 'stomp', 'send'),
    log: options.log,
    limits,
    brokerId: options.brokerId,
  };
  const sessions = new Set<StompSession>();
  const accept = (socket: Socket): void => {
    if (sessions.size >= connectionsMax) {
      metrics.refusal('connections');
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    metrics.connectionOpened();
    const session = new StompSession(socket, deps);
    sessions.add(session);
    socket.once('close', () => {
      sessions.delete(session);
      metrics.connectionClosed();
    });
  };
  const server: Server = options.tls
    ? createTlsServer({ cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile) }, accept)
    : createTcpServer(accept);
  // A TLS handshake that fails is the client's problem: the socket is gone, the listener stays.
  server.on('tlsClientError', () => metrics.refusal('tls'));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new Error(`cannot listen for STOMP on ${options.listenHost}:${options.port}: ${error.message}`)));
      server.listen({ host: options.listenHost, port: options.port, backlog: 511 }, () => resolve());
    });
  } catch (error) {
    await backend.close();
    throw error;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  options.log.info('stomp.listening', { address: `${options.listenHost}:${port}`, tls: options.tls !== null, auth: options.access !== null });
  return {
    port,
    async close() {
      server.close();
      await Promise.all([...sessions].map((s) => s.close()));
      await backend.close();
    },
  };
}
