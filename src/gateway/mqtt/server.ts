// A broker's MQTT listener (`mqttPort` in the cluster file): plain TCP, or TLS with the broker's
// certificate when the cluster has TLS. Bounded connections; each one an MqttConnection over
// the gateway's backend (../common/backend.ts: an in-process SDK client and one idempotent
// producer). Stopping ends every connection as the server shutting down (their wills go), then
// closes the backend.
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { GatewayAccess } from '../common/access.js';
import type { Tracer } from '@opentelemetry/api';
import type { GatewayBackend } from '../common/backend.js';
import { gatewayTracing } from '../common/tracing.js';
import type { GatewayLog, GatewayMetrics } from '../common/metrics.js';
import { MqttConnection, type MqttLimits } from './connection.js';
import { SessionStore } from './session-store.js';

export interface MqttGatewayOptions {
  listenHost: string;
  port: number;
  /** The broker's PEM material when the cluster has TLS. */
  tls: { cert: Buffer; key: Buffer } | null;
  backend: GatewayBackend;
  /** The broker's tracer (null: tracing is off). */
  tracer: Tracer | null;
  access: GatewayAccess | null;
  metrics: GatewayMetrics;
  log: GatewayLog;
  /** The broker's largest message (messageBytesMax): a PUBLISH may carry that much payload. */
  messageBytesMax: number;
  connectionsMax?: number;
  limits?: Partial<MqttLimits>;
}

/** Room in a packet for the topic name and properties beyond the payload. */
const packetOverheadBytes = 64 * 1024;
const topicsCacheMs = 1000;
/** How long stopping waits for the wills (those of the connections it ends, and the delayed ones) to be stored. */
const willsOnStopWaitMsMax = 3000;

export const mqttLimitDefaults: Omit<MqttLimits, 'packetBytesMax'> = {
  receiveMax: 64,
  sendWindowMax: 64,
  connectTimeoutMs: 10_000,
  sourcesMax: 4096,
  sessionExpiryMsMax: 24 * 3600 * 1000,
  refreshMs: 5000,
};

export class MqttGateway {
  private readonly server: Server;
  private readonly connections = new Set<MqttConnection>();
  private readonly sessions = new SessionStore(10_000);
  private topicsCache: { atMs: number; topics: Promise<Array<{ name: string; queues: number }>> } | null = null;

  private constructor(private readonly options: MqttGatewayOptions) {
    const limits: MqttLimits = { packetBytesMax: options.messageBytesMax + packetOverheadBytes, ...mqttLimitDefaults, ...options.limits };
    const connectionsMax = options.connectionsMax ?? 10_000;
    const context = {
      backend: options.backend,
      tracing: gatewayTracing(options.tracer, 'mqtt'),
      access: options.access,
      metrics: options.metrics,
      log: options.log,
      limits,
      sessions: this.sessions,
      topics: () => this.topics(),
    };
    const accept = (socket: Socket): void => {
      if (this.connections.size >= connectionsMax) {
        options.metrics.refusal('connections_max');
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      options.metrics.connectionOpened();
      const connection = new MqttConnection(socket, context);
      this.connections.add(connection);
      socket.once('close', () => {
        this.connections.delete(connection);
        options.metrics.connectionClosed();
      });
    };
    this.server = options.tls ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, accept) : createTcpServer(accept);
    // A failed TLS handshake is the client's problem: count it, keep serving.
    this.server.on('tlsClientError', () => options.metrics.refusal('tls_handshake'));
  }

  static async start(options: MqttGatewayOptions): Promise<MqttGateway> {
    const gateway = new MqttGateway(options);
    await new Promise<void>((resolve, reject) => {
      gateway.server.once('error', reject);
      gateway.server.listen(options.port, options.listenHost, () => {
        gateway.server.off('error', reject);
        resolve();
      });
    });
    options.log.info('mqtt.listening', { address: `${options.listenHost}:${options.port}`, tls: options.tls !== null, auth: options.access !== null });
    return gateway;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  private topics(): Promise<Array<{ name: string; queues: number }>> {
    const nowMs = Date.now();
    if (!this.topicsCache || nowMs - this.topicsCache.atMs > topicsCacheMs) {
      const topics = this.options.backend.client.listTopics().then((list) => list.map((t) => ({ name: t.name, queues: t.queues })));
      topics.catch(() => {
        this.topicsCache = null;
      });
      this.topicsCache = { atMs: nowMs, topics };
    }
    return this.topicsCache.topics;
  }

  async stop(): Promise<void> {
    // The server ends each connection (not a normal DISCONNECT): their wills go.
    const wills = [...this.connections].map((connection) => connection.shutDown());
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Sessions end with the listener: wills still waiting for their delay go now too, and all are
    // stored before the producer closes (waited for at most a few seconds: a shutdown does not
    // wait out retries).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...wills, this.sessions.publishDelayedWills()]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, willsOnStopWaitMsMax);
      }),
    ]);
    clearTimeout(timer);
    await this.options.backend.close();
  }
}
