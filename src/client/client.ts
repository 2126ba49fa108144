// The SDK's entry point: a Mamba client over a set of seed brokers, with admin calls, a
// producer path that routes each batch to its queue's group leader (following redirects and
// retrying with exponential backoff), and queue reads that follow the read advice.
import { createHash } from 'node:crypto';
import { InvalidArgumentError, type MambaError } from '../errors.js';
import { ConnectionPool, backoffMs, retryDefaults, sleep, type RetryPolicy, type Wire } from './connection.js';
import { Router, type GroupRoute } from './router.js';
import { resolveClientSecurity, type SecurityOptions } from './credentials.js';
import { startTracing, type Tracing, type TracingSetup } from '../observe/tracing.js';
import { ClientTracing } from '../observe/message-trace.js';
import { asBuffer, decodeRecordsRegionWith, type RecordMaker } from '../record-region.js';

/** OpenTelemetry for the client: off unless an OTLP endpoint (or, in tests, a span exporter) is given. */
export type ClientTracingOptions = Partial<Pick<TracingSetup, 'otlpEndpoint' | 'samplingRatio' | 'spanExporter' | 'serviceName'>>;

/** Access key and TLS: from these options, else MAMBA_KEY_ID/MAMBA_KEY_SECRET, MAMBA_TLS_CA, MAMBA_CREDENTIALS. */
/** What Producer and Consumer pass through to their client: credentials, TLS, tracing. */
export type ConnectionOptions = Pick<ClientOptions, 'accessKey' | 'credentialsFile' | 'tls' | 'credentialsSearch' | 'tracing'>;

export function connectionOptionsOf(options: ConnectionOptions): ConnectionOptions {
  const picked: ConnectionOptions = {};
  if (options.accessKey !== undefined) picked.accessKey = options.accessKey;
  if (options.credentialsFile !== undefined) picked.credentialsFile = options.credentialsFile;
  if (options.tls !== undefined) picked.tls = options.tls;
  if (options.credentialsSearch !== undefined) picked.credentialsSearch = options.credentialsSearch;
  if (options.tracing !== undefined) picked.tracing = options.tracing;
  return picked;
}

export interface ClientOptions extends SecurityOptions {
  brokers: string[];
  requestTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  /** Credentials files to try, in order, when neither options nor environment name a key (the CLI's defaults). */
  credentialsSearch?: string[];
  /** Producer spans with W3C traceparent in the message headers, and receive spans on reads. */
  tracing?: ClientTracingOptions;
}

export interface OutgoingMessage {
  key?: Uint8Array | string | null;
  headers?: Record<string, string | Uint8Array>;
  body: Uint8Array | string;
  timestampMs?: number;
}

export type Ack = 'none' | 'leader' | 'quorum';
const ackWire: Record<Ack, number> = { none: 1, leader: 2, quorum: 3 };

export interface SendResult {
  topic: string;
  queue: number;
  baseOffset: number;
  count: number;
}

export interface ReceivedMessage {
  offset: number;
  timestampMs: number;
  key: Buffer | null;
  headers: Record<string, Buffer>;
  body: Buffer;
}

export interface ReadResult {
  messages: ReceivedMessage[];
  nextOffset: number;
  highWatermark: number;
  startOffset: number;
  servedBy: string;
  advice: { replicaId: string; address: string; reason: string } | null;
}

function checkOptions(options: ClientOptions): Required<Pick<ClientOptions, 'brokers' | 'requestTimeoutMs'>> & { retry: RetryPolicy } {
  if (!Array.isArray(options.brokers) || options.brokers.length === 0)
    throw new InvalidArgumentError('brokers: give at least one seed broker address (host:port)');
  for (const b of options.brokers) if (!/^[^\s:]+:\d{1,5}$/.test(b)) throw new InvalidArgumentError(`brokers: "${b}" is not host:port`);
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 1 || requestTimeoutMs > 600_000)
    throw new InvalidArgumentError(`requestTimeoutMs: ${requestTimeoutMs} is out of range 1..600000`);
  const retry = { ...retryDefaults, ...options.retry };
  if (!Number.isInteger(retry.attemptsMax) || retry.attemptsMax < 1 || retry.attemptsMax > 1000)
    throw new InvalidArgumentError(`retry.attemptsMax: ${retry.attemptsMax} is out of range 1..1000`);
  if (!(retry.backoffMsInitial >= 0 && retry.backoffMsInitial <= 60_000))
    throw new InvalidArgumentError(`retry.backoffMsInitial: ${retry.backoffMsInitial} is out of range 0..60000`);
  if (!(retry.backoffMsMax >= retry.backoffMsInitial && retry.backoffMsMax <= 600_000))
    throw new InvalidArgumentError(`retry.backoffMsMax: ${retry.backoffMsMax} must be within backoffMsInitial..600000`);
  if (!(retry.multiplier >= 1 && retry.multiplier <= 10)) throw new InvalidArgumentError(`retry.multiplier: ${retry.multiplier} is out of range 1..10`);
  if (!(retry.jitter >= 0 && retry.jitter <= 1)) throw new InvalidArgumentError(`retry.jitter: ${retry.jitter} is out of range 0..1`);
  return { brokers: options.brokers, requestTimeoutMs, retry };
}

function bytes(value: Uint8Array | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

export function messageToWire(m: OutgoingMessage, traceHeaders: Record<string, string> = {}): Wire {
  return {
    key: m.key === undefined || m.key === null ? Buffer.alloc(0) : bytes(m.key),
    body: bytes(m.body),
    timestampMs: m.timestampMs ?? 0,
    headers: [
      ...Object.entries(m.headers ?? {})
        .filter(([key]) => !(key in traceHeaders))
        .map(([key, value]) => ({ key, value: bytes(value) })),
      ...Object.entries(traceHeaders).map(([key, value]) => ({ key, value: Buffer.from(value, 'latin1') })),
    ],
  };
}

/** Queue for a key: the same key always lands in the same queue (while the queue count stays). */
export function queueForKey(key: Uint8Array | string, queues: number): number {
  const digest = createHash('sha1').update(bytes(key)).digest();
  return digest.readUInt32BE(0) % queues;
}

export class MambaClient {
  readonly pool: ConnectionPool;
  readonly router: Router;
  private readonly options: ReturnType<typeof checkOptions>;
  private roundRobin = 0;
  private readonly tracingSdk: Tracing;
  /** Producer and receive spans (also used by Producer and Consumer). */
  readonly tracing: ClientTracing;

  constructor(options: ClientOptions) {
    this.options = checkOptions(options);
    this.pool = new ConnectionPool(undefined, resolveClientSecurity(options, process.env, options.credentialsSearch ?? []));
    this.router = new Router(this.pool, this.options.brokers, this.options.requestTimeoutMs);
    this.tracingSdk = startTracing({ serviceName: 'mamba-client', ...options.tracing });
    this.tracing = new ClientTracing(this.tracingSdk.tracer);
  }

  // ------------------------------------------------------------------ admin

  async createTopic(name: string, queues: number): Promise<{ name: string; queues: number }> {
    return this.withRetry(`create topic ${name}`, async () => {
      const reply = await this.onLeaderOfAnyGroup('CreateTopic', { name, queues });
      return { name: String(reply.topic.name), queues: Number(reply.topic.queues) };
    });
  }

  async deleteTopic(name: string): Promise<void> {
    await this.withRetry(`delete topic ${name}`, () => this.onLeaderOfAnyGroup('DeleteTopic', { name }));
    this.router.forgetTopic(name);
  }

  async listTopics(): Promise<Array<{ name: string; queues: number; createdMs: number }>> {
    const reply = await this.router.callAny('ListTopics', {});
    return ((reply.topics as Wire[] | undefined) ?? []).map((t) => ({ name: String(t.name), queues: Number(t.queues), createdMs: Number(t.createdMs) }));
  }

  async describeTopic(name: string): Promise<Wire> {
    return this.router.callAny('DescribeTopic', { name });
  }

  async describeCluster(): Promise<GroupRoute[]> {
    return this.router.refresh();
  }

  /** Topic changes start at a group leader, which carries them to the other groups. */
  private async onLeaderOfAnyGroup(method: string, request: Wire): Promise<Wire> {
    const groups = this.router.knownGroups.length ? this.router.knownGroups : await this.router.refresh();
    const group = groups[0]!;
    const address = await this.router.leaderOf(group.id);
    try {
      return await this.pool.call(address, method, request, this.options.requestTimeoutMs);
    } catch (error) {
      this.router.noteFailure(group.id, error as MambaError);
      throw error;
    }
  }

  // ------------------------------------------------------------------ produce

  /** Sends messages to one queue (given, by key, or round-robin) and waits for the ack level. */
  async send(topic: string, messages: OutgoingMessage[], options: { queue?: number; ack?: Ack } = {}): Promise<SendResult> {
    if (messages.length === 0) throw new InvalidArgumentError('send: give at least one message');
    const trace = this.tracing.startSend(topic, messages.length);
    const wire = messages.map((m) => messageToWire(m, trace.headers));
    try {
      const result = await this.sendWire(topic, messages, wire, options);
      trace.end(result);
      return result;
    } catch (error) {
      trace.end(null, error);
      throw error;
    }
  }

  private async sendWire(topic: string, messages: OutgoingMessage[], wire: Wire[], options: { queue?: number; ack?: Ack }): Promise<SendResult> {
    return this.withRetry(`send to ${topic}`, async () => {
      const route = await this.router.topic(topic);
      const queue = options.queue ?? (messages[0]!.key ? queueForKey(messages[0]!.key, route.queues) : this.roundRobin++ % route.queues);
      if (!Number.isInteger(queue) || queue < 0 || queue >= route.queues)
        throw new InvalidArgumentError(`queue ${queue}: topic "${topic}" has queues 0..${route.queues - 1}`);
      const group = route.queueGroups[queue]!;
      const address = await this.router.leaderOf(group);
      try {
        const reply = await this.pool.call(
          address,
          'Produce',
          { topic, queue, ack: ackWire[options.ack ?? 'quorum'], messages: wire },
          this.options.requestTimeoutMs,
        );
        return { topic, queue, baseOffset: Number(reply.baseOffset), count: Number(reply.count) };
      } catch (error) {
        this.router.noteFailure(group, error as MambaError);
        throw error;
      }
    });
  }

  // ------------------------------------------------------------------ consume

  /** Reads one batch from a queue at `offset`; `address` picks the broker (default: the leader). */
  async read(topic: string, queue: number, offset: number, options: { maxMessages?: number; maxWaitMs?: number; address?: string } = {}): Promise<ReadResult> {
    return this.withRetry(`read ${topic}/${queue}`, async (attempt) => {
      const route = await this.router.topic(topic);
      if (queue < 0 || queue >= route.queues) throw new InvalidArgumentError(`queue ${queue}: topic "${topic}" has queues 0..${route.queues - 1}`);
      const group = route.queueGroups[queue]!;
      const address = attempt === 0 && options.address ? options.address : await this.router.leaderOf(group);
      const maxWaitMs = options.maxWaitMs ?? 0;
      try {
        const reply = await this.pool.call(
          address,
          'Consume',
          { topic, queue, offset, maxMessages: options.maxMessages ?? 500, maxWaitMs, blocks: true },
          this.options.requestTimeoutMs + maxWaitMs,
        );
        const result = readResultFromWire(reply);
        this.tracing.received(topic, queue, result.messages);
        return result;
      } catch (error) {
        this.router.noteFailure(group, error as MambaError);
        throw error;
      }
    });
  }

  // ------------------------------------------------------------------ retry

  private async withRetry<T>(what: string, work: (attempt: number) => Promise<T>): Promise<T> {
    const policy = this.options.retry;
    let lastError: MambaError | null = null;
    for (let attempt = 0; attempt < policy.attemptsMax; attempt++) {
      try {
        return await work(attempt);
      } catch (error) {
        lastError = error as MambaError;
        if (!lastError.retriable || attempt === policy.attemptsMax - 1) break;
        await sleep(backoffMs(policy, attempt));
      }
    }
    throw lastError ?? new Error(`${what} failed`);
  }

  close(): void {
    this.pool.close();
    void this.tracingSdk.shutdown(); // flushes spans still buffered for export
  }
}

export function readResultFromWire(reply: Wire): ReadResult {
  const blocks = (reply.blocks as Wire[] | undefined) ?? [];
  return {
    messages:
      blocks.length > 0
        ? messagesOfBlocks(blocks)
        : ((reply.records as Wire[] | undefined) ?? []).map((r) => ({
            offset: Number(r.offset),
            timestampMs: Number(r.timestampMs),
            key: r.key?.length ? Buffer.from(r.key) : null,
            body: Buffer.from(r.body ?? []),
            headers: Object.fromEntries(((r.headers as Wire[] | undefined) ?? []).map((h) => [String(h.key), Buffer.from(h.value ?? [])])),
          })),
    nextOffset: Number(reply.nextOffset),
    highWatermark: Number(reply.highWatermark),
    startOffset: Number(reply.startOffset),
    servedBy: String(reply.servedBy ?? ''),
    advice: reply.advice ? { replicaId: String(reply.advice.replicaId), address: String(reply.advice.address), reason: String(reply.advice.reason) } : null,
  };
}

const noBytes = Buffer.alloc(0);

/**
 * The messages of a ConsumeResponse's RecordBlocks (mamba.proto), decoded with the log's own
 * record reader (src/record-region.ts). Key, body and header values are views into the response,
 * not copies; an empty key is null, an empty body or header value an empty Buffer, as in `records`.
 */
function messagesOfBlocks(blocks: Wire[]): ReceivedMessage[] {
  const messages: ReceivedMessage[] = [];
  for (const block of blocks) {
    const queueOffset = Number(block.queueOffset);
    const make: RecordMaker<ReceivedMessage> = (index, timestampMs, key, value, headerList) => {
      const headers: Record<string, Buffer> = {};
      for (const h of headerList) headers[h.name] = h.value === null ? noBytes : asBuffer(h.value);
      return { offset: queueOffset + index, timestampMs, key, body: value ?? noBytes, headers };
    };
    for (const message of decodeRecordsRegionWith(block.records ?? noBytes, Number(block.firstTimestampMs), Number(block.count), make)) messages.push(message);
  }
  return messages;
}
