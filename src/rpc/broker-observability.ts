// A broker's observability, assembled in one place beside the rest of the broker process's
// wiring (observe/ holds the parts and knows the broker only through its observer interfaces): the metrics registry and its HTTP endpoint
// (`GET /metrics` on the broker's metricsPort), the trace SDK from the `tracing` settings, and
// the alert evaluator with its notifiers from the `alerts` settings. The same HTTP server answers
// the probes of an orchestrator: `GET /healthz` (the process answers) and `GET /readyz` (see
// readiness.ts); it listens before the replica opens, so a long recovery is alive and not ready.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { directoryState, type DirectoryState } from './storage-format.js';
import { resolve } from 'node:path';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { BrokerConfig } from '../config/cluster.js';
import type { Broker } from '../broker/broker.js';
import type { Replica } from '../replica/replica.js';
import type { Logger } from '../replica/logger.js';
import { BrokerMetrics } from '../observe/metrics.js';
import { startTracing, type Tracing } from '../observe/tracing.js';
import { BrokerTracing } from '../observe/message-trace.js';
import { AlertEvaluator } from '../observe/alerts/evaluator.js';
import { defaultRules, loadRules } from '../observe/alerts/rules.js';
import { EmailNotifier, LogNotifier, WebhookNotifier, type AlertNotifier } from '../observe/alerts/notifiers.js';
import { readiness, type Readiness } from './readiness.js';

export interface ObservabilityOptions {
  /** The cluster's name, for GET /directory. */
  clusterName?: string;
  /** Export spans here instead of the OTLP endpoint of the settings (tests). */
  spanExporter?: SpanExporter;
}

export class BrokerObservability {
  readonly metrics: BrokerMetrics;
  readonly tracing: Tracing;
  readonly brokerTracing: BrokerTracing;
  alerts: AlertEvaluator | null = null;
  private server: Server | null = null;
  private email: EmailNotifier | null = null;
  /** Set by start(): /readyz reads it. */
  private replica: Replica | null = null;
  private replicaOpening = false;
  private stopping = false;
  /** The last /readyz answer's verdict, to log its changes once. */
  private lastReady: boolean | null = null;

  private readonly clusterName: string;

  constructor(
    private readonly config: BrokerConfig,
    private readonly logger: Logger,
    options: ObservabilityOptions = {},
  ) {
    this.clusterName = options.clusterName ?? '';
    const identity = { broker: config.id, group: config.group };
    this.metrics = new BrokerMetrics(identity);
    this.tracing = startTracing({
      ...config.settings.tracing,
      serviceName: 'mamba-broker',
      attributes: { 'service.instance.id': config.id, 'mamba.group': config.group },
      ...(options.spanExporter ? { spanExporter: options.spanExporter } : {}),
    });
    this.brokerTracing = new BrokerTracing(this.tracing.tracer, identity);
  }

  /**
   * Serves /metrics, /healthz and /readyz on the metrics port. Called before the replica opens:
   * until start(), /readyz answers 503 (not started) and the gauges have no broker to read.
   */
  async listen(): Promise<void> {
    if (this.server === null) this.server = await this.serveHttp();
  }

  /** Binds /readyz and the gauges to the running broker and starts evaluating alerts. */
  async start(broker: Broker, replica: Replica): Promise<void> {
    const s = this.config.settings;
    await this.listen();
    this.replica = replica;
    this.metrics.watch({
      dataDir: this.config.dataDir,
      memoryBytesMax: s.alerts.memoryBytesMax,
      highWatermark: () => replica.committedOffset,
      logEndOffset: () => replica.logEndOffset,
      epoch: () => replica.currentEpoch,
      isLeader: () => replica.isLeader,
      leaderId: () => replica.currentLeaderId,
      leaderGroupView: () => (replica.isLeader ? broker.localGroupInfo() : null),
      consumerBacklogs: () => broker.consumerBacklogs(),
      logStats: () => replica.logStats,
    });
    if (s.alerts.enabled) {
      this.alerts = new AlertEvaluator(this.metrics.registry, {
        rules: s.alerts.rulesFile ? loadRules(resolve(s.alerts.rulesFile)) : defaultRules(s.alerts.memoryBytesMax),
        evaluationIntervalMs: s.alerts.evaluationIntervalMs,
        repeatIntervalMs: s.alerts.repeatIntervalMs,
        notifiers: this.notifiers(),
        logger: this.logger,
        identity: { broker: this.config.id, group: this.config.group },
      });
      this.alerts.start();
    }
    const tracing = s.tracing.otlpEndpoint ? { otlpEndpoint: s.tracing.otlpEndpoint, samplingRatio: s.tracing.samplingRatio } : 'off';
    this.logger.info('observability.started', {
      metrics: `http://${this.config.host}:${this.config.metricsPort}/metrics`,
      probes: ['/healthz', '/readyz'],
      tracing,
      alerts: this.alerts ? this.alerts.engine.rules.map((r) => r.name) : 'off',
    });
  }

  private notifiers(): AlertNotifier[] {
    const a = this.config.settings.alerts;
    const list: AlertNotifier[] = [new LogNotifier(this.logger)];
    if (a.webhookUrl) list.push(new WebhookNotifier(a.webhookUrl, a.notifyTimeoutMs));
    if (a.smtp.host) {
      this.email = new EmailNotifier({ ...a.smtp, password: a.smtp.passwordEnv ? (process.env[a.smtp.passwordEnv] ?? '') : '', timeoutMs: a.notifyTimeoutMs });
      list.push(this.email);
    }
    return list;
  }

  /** The replica is opening: its directory holds files, but what they say is not known yet. */
  noteReplicaOpening(): void {
    this.replicaOpening = true;
  }

  /**
   * What this broker's directory holds, for a group member deciding whether its group is new:
   * history only once a vote or an entry exists (an epoch above 0, a log), so that brokers of a
   * new group that formatted and started first do not look like a group with history.
   */
  private directory(): DirectoryState {
    const replica = this.replica;
    if (replica !== null) return replica.currentEpoch > 0 || replica.logEndOffset > 0 ? 'data' : 'formatted-unused';
    if (this.replicaOpening) return 'starting';
    return directoryState(this.config.dataDir);
  }

  /** From now on /readyz answers 503 (the broker is shutting down); /healthz still answers. */
  markStopping(): void {
    this.stopping = true;
  }

  /** The /readyz verdict now (readiness.ts), from the replica once started. */
  readiness(): Readiness {
    const replica = this.replica;
    // The replica stamps fetch answers with performance.now(): the same clock here.
    const common = { stopping: this.stopping, nowMs: performance.now(), electionTimeoutMs: this.config.settings.electionTimeoutMs };
    if (replica === null)
      return readiness({
        ...common,
        started: false,
        role: 'follower',
        leaderId: null,
        recovering: false,
        recoveryMarkOffset: null,
        logEndOffset: 0,
        refusedLeaderId: null,
        lastLeaderFetchAnswerAtMs: null,
      });
    const recovery = replica.recoveryState();
    return readiness({
      ...common,
      started: replica.started,
      role: replica.currentRole,
      leaderId: replica.currentLeaderId,
      recovering: recovery.recovering,
      recoveryMarkOffset: recovery.recoveryMarkOffset,
      logEndOffset: replica.logEndOffset,
      refusedLeaderId: recovery.divergence?.leaderId ?? null,
      lastLeaderFetchAnswerAtMs: replica.lastLeaderFetchAnswerAtMs,
    });
  }

  private serveHttp(): Promise<Server> {
    const server = createServer((request, response) => this.answer(request, response));
    const address = `${this.config.listenHost}:${this.config.metricsPort}`;
    return new Promise((done, fail) => {
      server.once('error', (error) => fail(new Error(`cannot serve metrics on ${address}: ${error.message}`)));
      server.listen(this.config.metricsPort, this.config.listenHost, () => done(server));
    });
  }

  private answer(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET') {
      response.writeHead(405, { 'content-type': 'text/plain', allow: 'GET' }).end('only GET: /metrics, /healthz, /readyz\n');
      return;
    }
    switch (path) {
      case '/metrics':
        this.metrics.text().then(
          (text) => response.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text),
          (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${error.message}\n`),
        );
        return;
      case '/healthz':
        sendJson(response, 200, { up: true, broker: this.config.id, group: this.config.group, uptimeMs: Math.round(process.uptime() * 1000) });
        return;
      case '/directory':
        // For the group's other brokers starting on empty directories (storage-format.ts).
        sendJson(response, 200, { cluster: this.clusterName, group: this.config.group, broker: this.config.id, state: this.directory() });
        return;
      case '/readyz': {
        const verdict = this.readiness();
        if (verdict.ready !== this.lastReady) {
          this.lastReady = verdict.ready;
          this.logger.info('broker.readiness', { ready: verdict.ready, reason: verdict.reason ?? null, role: verdict.role, leader: verdict.leader });
        }
        sendJson(response, verdict.ready ? 200 : 503, verdict);
        return;
      }
      default:
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics, /healthz or /readyz\n');
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.alerts?.stop();
    this.email?.close();
    if (this.server) {
      const server = this.server;
      this.server = null;
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    }
    await this.tracing.shutdown().catch((error: Error) => this.logger.warn('tracing.shutdown.failed', { error: error.message }));
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
}
