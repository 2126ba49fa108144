// Prometheus metrics of one broker: a registry of its own (labelled with the broker and its
// group), counters and histograms fed by small hooks on the hot paths, and gauges read from the
// broker and its replica when scraped (so an idle broker costs nothing between scrapes).
import { statfs } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BrokerObserver, ConsumedRecord, ConsumerBacklog, GroupInfo } from '../broker/broker.js';
import type { RecoveryState, ReplicaObserver } from '../replica/replica.js';
import type { ReplicaId, Role } from '../raft/types.js';

export const metricPrefix = 'mamba_';

/** What the scrape-time gauges read; the composition root hands in the live broker and replica. */
export interface MetricsSource {
  dataDir: string;
  memoryBytesMax: number;
  highWatermark(): number;
  logEndOffset(): number;
  epoch(): number;
  isLeader(): boolean;
  leaderId(): ReplicaId | null;
  /** The leader's view of its group (followers' lag); null on a follower. */
  leaderGroupView(): GroupInfo | null;
  consumerBacklogs(): ConsumerBacklog[];
  logStats(): { segmentCount: number; sizeBytes: number };
}

const latencyBuckets = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** One statfs serves every disk gauge of a scrape. */
const diskReadReuseMs = 500;
const delayBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

export class BrokerMetrics implements BrokerObserver, ReplicaObserver {
  readonly registry = new Registry();
  private source: MetricsSource | null = null;
  private lastLeaderId: ReplicaId | null = null;
  private diskRead: { atMs: number; result: Promise<{ freeBytes: number; sizeBytes: number }> } | null = null;

  private readonly producedMessages = this.counter('produced_messages_total', 'Messages appended by produce requests on this leader', ['topic']);
  private readonly producedBytes = this.counter('produced_bytes_total', 'Bytes of produce batches appended on this leader', ['topic']);
  private readonly consumedMessages = this.counter('consumed_messages_total', 'Messages delivered to consumers by this broker', ['topic']);
  private readonly consumedBytes = this.counter('consumed_bytes_total', 'Key and body bytes delivered to consumers by this broker', ['topic']);
  private readonly receivedBytes = this.counter('network_received_bytes_total', 'gRPC request message bytes received', ['api']);
  private readonly sentBytes = this.counter('network_sent_bytes_total', 'gRPC response message bytes sent', ['api']);
  private readonly grpcRequests = this.counter('grpc_requests_total', 'gRPC requests served, by method and status code', ['api', 'method', 'code']);
  private readonly grpcStreamMessages = this.counter(
    'grpc_stream_messages_received_total',
    'Request messages received on client and bidirectional streams (FetchStream, ProduceStream), by method',
    ['api', 'method'],
  );
  private readonly consumerOffsetResets = this.counter(
    'consumer_offset_resets_total',
    "Times a consumer group's committed offset was below its queue's start (retention) and reading resumed from the start",
    ['consumer_group', 'topic'],
  );
  private readonly consumerSkippedMessages = this.counter(
    'consumer_skipped_messages_total',
    'Messages retention removed before a consumer group read them (counted when its reading resumed from the queue start)',
    ['consumer_group', 'topic'],
  );
  private readonly leaderChanges = this.counter('leader_changes_total', 'Times this broker saw its group change to a new leader', []);
  private readonly elections = this.counter('elections_total', 'Times this broker became a candidate (started an election)', []);
  private readonly quarantinedSegments = this.counter(
    'log_quarantined_segments_total',
    'Damaged segment files recovery moved into quarantine/ (never deleted)',
    [],
  );
  private readonly refusedMessages = this.counter(
    'raft_messages_refused_total',
    'Peer messages refused because no correct replica could send them (a faulty or hostile member)',
    ['type'],
  );
  private readonly recovering = this.plainGauge(
    'replica_recovering',
    "1 while this replica's log ends below what it promised: it grants no vote, never campaigns, and fetches",
    [],
  );
  private readonly recoveryMarkOffset = this.plainGauge(
    'replica_recovery_mark_offset',
    'The offset a recovering replica must fetch up to (0 when not recovering)',
    [],
  );
  private readonly promisedOffset = this.plainGauge(
    'replica_promised_offset',
    'The highest offset this replica has durably promised to hold (reported durable to a leader)',
    [],
  );
  private readonly recoveringFollowers = this.plainGauge('replica_recovering_followers', 'Followers whose Fetches say they are recovering (leader only)', []);
  private readonly divergence = this.plainGauge(
    'replica_committed_data_divergence',
    '1 while this replica refuses a leader that asked it to truncate committed entries (labels: the leader, its epoch and both offsets)',
    ['leader', 'leader_epoch', 'requested_end_offset', 'committed_offset'],
  );
  private readonly appendSeconds = new Histogram({
    name: `${metricPrefix}log_append_seconds`,
    help: 'Time to append one Ready batch of entries to the segment log',
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly commitSeconds = new Histogram({
    name: `${metricPrefix}commit_latency_seconds`,
    help: 'Time from proposing an entry on the leader until the high watermark passes it',
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly endToEndSeconds = new Histogram({
    name: `${metricPrefix}end_to_end_delay_seconds`,
    help: 'Delivery time minus the message timestamp',
    labelNames: ['topic'],
    buckets: delayBuckets,
    registers: [this.registry],
  });
  private readonly grpcSeconds = new Histogram({
    name: `${metricPrefix}grpc_request_duration_seconds`,
    help: 'gRPC request handling time, by method',
    labelNames: ['api', 'method'],
    buckets: latencyBuckets,
    registers: [this.registry],
  });

  constructor(labels: { broker: string; group: string }) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry, prefix: metricPrefix });
    // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool
    // check metrics flags them); the broker does without them.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])
      this.registry.removeSingleMetric(`${metricPrefix}${name}`);
    this.scrapeGauges();
  }

  /** Starts reading the broker and replica at scrape time. */
  watch(source: MetricsSource): void {
    this.source = source;
  }

  // ------------------------------------------------------------------ hooks (hot paths)

  produced(topic: string, messageCount: number, bytes: number): void {
    this.producedMessages.inc({ topic }, messageCount);
    this.producedBytes.inc({ topic }, bytes);
  }

  committed(latencySeconds: number): void {
    this.commitSeconds.observe(latencySeconds);
  }

  consumed(topic: string, records: readonly ConsumedRecord[], nowMs: number): void {
    let bytes = 0;
    for (const r of records) {
      bytes += (r.key?.byteLength ?? 0) + (r.body?.byteLength ?? 0);
      this.endToEndSeconds.observe({ topic }, Math.max(0, nowMs - r.timestampMs) / 1000);
    }
    this.consumedMessages.inc({ topic }, records.length);
    this.consumedBytes.inc({ topic }, bytes);
  }

  consumerOffsetReset(consumerGroup: string, topic: string, _queue: number, skippedMessages: number): void {
    this.consumerOffsetResets.inc({ consumer_group: consumerGroup, topic });
    this.consumerSkippedMessages.inc({ consumer_group: consumerGroup, topic }, skippedMessages);
  }

  roleChanged(role: Role, _epoch: number, leaderId: ReplicaId | null): void {
    if (role === 'candidate') this.elections.inc();
    if (leaderId !== null && leaderId !== this.lastLeaderId) this.leaderChanges.inc();
    if (leaderId !== null) this.lastLeaderId = leaderId;
  }

  appended(durationSeconds: number): void {
    this.appendSeconds.observe(durationSeconds);
  }

  recoveryChanged(state: RecoveryState): void {
    this.recovering.set(state.recovering ? 1 : 0);
    this.recoveryMarkOffset.set(state.recoveryMarkOffset ?? 0);
    this.promisedOffset.set(state.promisedOffset);
    this.recoveringFollowers.set(state.recoveringFollowers.length);
    this.divergence.reset();
    const d = state.divergence;
    if (d) {
      this.divergence.set(
        { leader: d.leaderId, leader_epoch: String(d.epoch), requested_end_offset: String(d.requestedEndOffset), committed_offset: String(d.committedOffset) },
        1,
      );
    }
  }

  segmentsQuarantined(count: number): void {
    this.quarantinedSegments.inc(count);
  }

  messageRefused(messageType: string): void {
    this.refusedMessages.inc({ type: messageType });
  }

  networkBytes(api: string, receivedBytes: number, sentBytes: number): void {
    if (receivedBytes > 0) this.receivedBytes.inc({ api }, receivedBytes);
    if (sentBytes > 0) this.sentBytes.inc({ api }, sentBytes);
  }

  grpcStreamMessage(api: string, method: string): void {
    this.grpcStreamMessages.inc({ api, method });
  }

  grpcRequest(api: string, method: string, code: string, durationSeconds: number): void {
    this.grpcRequests.inc({ api, method, code });
    this.grpcSeconds.observe({ api, method }, durationSeconds);
  }

  /** The text a Prometheus server scrapes. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  // ------------------------------------------------------------------ scrape-time gauges

  /** A gauge set by hooks (not read at scrape time). */
  private plainGauge(name: string, help: string, labelNames: string[]): Gauge<string> {
    return new Gauge({ name: `${metricPrefix}${name}`, help, labelNames, registers: [this.registry] });
  }

  private counter(name: string, help: string, labelNames: string[]): Counter<string> {
    return new Counter({ name: `${metricPrefix}${name}`, help, labelNames, registers: [this.registry] });
  }

  private gauge(name: string, help: string, labelNames: string[], collect: (gauge: Gauge<string>, source: MetricsSource) => void | Promise<void>): void {
    const metrics = this;
    new Gauge({
      name: `${metricPrefix}${name}`,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        if (metrics.source) await collect(this, metrics.source);
      },
    });
  }

  private scrapeGauges(): void {
    this.gauge('high_watermark', 'Group log offset below which entries are committed, as this broker knows it', [], (g, s) => g.set(s.highWatermark()));
    this.gauge('log_end_offset', "End offset of this broker's copy of the group log", [], (g, s) => g.set(s.logEndOffset()));
    this.gauge('leader_epoch', 'Current leader epoch (Raft term) seen by this broker', [], (g, s) => g.set(s.epoch()));
    this.gauge('is_leader', '1 when this broker leads its group', [], (g, s) => g.set(s.isLeader() ? 1 : 0));
    this.gauge('group_leader_known', '1 when this broker knows a leader of its group, 0 while the group has none', [], (g, s) => g.set(s.leaderId() ? 1 : 0));
    this.gauge('replication_lag_offsets', 'Offsets a follower is behind the high watermark (leader only)', ['follower'], (g, s) => this.lag(g, s, 'offsets'));
    this.gauge('replication_lag_seconds', 'Time since a follower last reached the high watermark (leader only)', ['follower'], (g, s) =>
      this.lag(g, s, 'seconds'),
    );
    // Two views of one read (consumerBacklogs): the backlog, kept as documented and alerted on,
    // covers only queues with a committed offset; the lag is what DescribeConsumerGroup and
    // `mambamq consumer-group describe` show, also for the queues a known consumer group has not
    // committed on yet (counted from the queue's start).
    this.gauge('consumer_backlog_messages', "Committed messages after a consumer group's committed offset", ['consumer_group', 'topic', 'queue'], (g, s) =>
      this.backlogs(g, s, 'backlog'),
    );
    this.gauge(
      'consumer_group_lag_messages',
      "Messages a consumer group has still to read on a queue: the queue's committed end minus the group's committed offset (or the queue's start when it committed none)",
      ['consumer_group', 'topic', 'queue'],
      (g, s) => this.backlogs(g, s, 'lag'),
    );
    this.gauge('log_segments', "Segments in this broker's log", [], (g, s) => g.set(s.logStats().segmentCount));
    this.gauge('log_size_bytes', "Bytes of this broker's log segments", [], (g, s) => g.set(s.logStats().sizeBytes));
    this.gauge('memory_limit_bytes', 'Resident memory this broker is allowed (alerting threshold)', [], (g, s) => g.set(s.memoryBytesMax));
    // Metrics are collected concurrently: the three disk gauges share one statfs per scrape.
    this.gauge('disk_size_bytes', 'Size of the file system holding the data directory', [], async (g, s) => g.set((await this.disk(s)).sizeBytes));
    this.gauge('disk_free_bytes', "Bytes available to the broker on the data directory's file system", [], async (g, s) =>
      g.set((await this.disk(s)).freeBytes),
    );
    this.gauge('disk_used_ratio', "Share of the data directory's file system in use (0..1)", [], async (g, s) => {
      const d = await this.disk(s);
      g.set(d.sizeBytes > 0 ? 1 - d.freeBytes / d.sizeBytes : 0);
    });
  }

  private disk(source: MetricsSource): Promise<{ freeBytes: number; sizeBytes: number }> {
    const nowMs = Date.now();
    if (this.diskRead && nowMs - this.diskRead.atMs < diskReadReuseMs) return this.diskRead.result;
    const result = statfs(source.dataDir).then((fs) => ({ freeBytes: fs.bavail * fs.bsize, sizeBytes: fs.blocks * fs.bsize }));
    this.diskRead = { atMs: nowMs, result };
    return result;
  }

  private backlogs(gauge: Gauge<string>, source: MetricsSource, view: 'backlog' | 'lag'): void {
    gauge.reset();
    for (const b of source.consumerBacklogs()) {
      const value = view === 'backlog' ? b.backlogMessages : b.lagMessages;
      if (value !== null) gauge.set({ consumer_group: b.consumerGroup, topic: b.topic, queue: String(b.queue) }, value);
    }
  }

  private lag(gauge: Gauge<string>, source: MetricsSource, unit: 'offsets' | 'seconds'): void {
    gauge.reset();
    const view = source.leaderGroupView();
    if (!view) return;
    for (const r of view.replicas) {
      if (r.role !== 'follower' && r.role !== 'recovering') continue; // a recovering follower lags too
      gauge.set({ follower: r.id }, unit === 'offsets' ? r.lagOffsets : r.lagMs / 1000);
    }
  }
}
