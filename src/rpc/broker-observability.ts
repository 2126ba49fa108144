// A broker's observability, assembled in one place beside the rest of the broker process's
// wiring (observe/ holds the parts and knows the broker only through its observer interfaces): the metrics registry and its HTTP endpoint
// (`GET /metrics` on the broker's metricsPort), the trace SDK from the `tracing` settings, and
// the alert evaluator with its notifiers from the `alerts` settings.
import { createServer, type Server } from 'node:http';
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

export interface ObservabilityOptions {
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

  constructor(
    private readonly config: BrokerConfig,
    private readonly logger: Logger,
    options: ObservabilityOptions = {},
  ) {
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

  /** Serves /metrics and starts evaluating alerts over the running broker. */
  async start(broker: Broker, replica: Replica): Promise<void> {
    const s = this.config.settings;
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
    this.server = await this.serveMetrics();
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

  private serveMetrics(): Promise<Server> {
    const server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (request.method !== 'GET' || path !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at GET /metrics\n');
        return;
      }
      this.metrics.text().then(
        (text) => response.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text),
        (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${error.message}\n`),
      );
    });
    const address = `${this.config.host}:${this.config.metricsPort}`;
    return new Promise((done, fail) => {
      server.once('error', (error) => fail(new Error(`cannot serve metrics on ${address}: ${error.message}`)));
      server.listen(this.config.metricsPort, this.config.host, () => done(server));
    });
  }

  async stop(): Promise<void> {
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
