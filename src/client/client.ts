// The SDK's entry point: a Mamba client over a set of seed brokers, with admin calls, sends
// routed to their queue's group leader and reads that follow the read advice. Every call goes
// through the one request path (cluster.ts) and, when it may be repeated, the one retrier
// (retry.ts).
import { createHash } from 'node:crypto';
import { AbortedError, InvalidArgumentError, MambaError, NotLeaderError } from '../errors.js';
import {
  ackToWire,
  type Ack,
  type AddQueuesResponse,
  type AddReplicaResponse,
  type BackupChunk,
  type ClusterMetadata,
  type MetadataGroup,
  type DescribeTopicResponse,
  type MethodName,
  type RemoveReplicaResponse,
  type RequestOf,
  type ResponseOf,
  type TransferLeaderResponse,
} from '../protocol/messages.js';
import { ConnectionPool, type BackupCall, type Transport } from './connection.js';
import { consumerGroupFromWire, consumerGroupListFromWire, type ConsumerGroupDescription, type ConsumerGroupList } from './consumer-groups.js';
import { Cluster } from './cluster.js';
import { metadataFromWire } from '../protocol/metadata.js';
import type { GroupRoute } from './router.js';
import { retry, retryPolicyOf, type RetryAttempt, type RetryPolicy } from './retry.js';
import { bytes, messageToWire, readResultFromWire, type OutgoingMessage, type ReadResult, type WireMessage } from './wire.js';
import { resolveClientSecurity, type SecurityOptions } from './credentials.js';
import { startTracing, type Tracing, type TracingSetup } from '../observe/tracing.js';
import { ClientTracing } from '../observe/message-trace.js';

export type { Ack, AddReplicaResponse, BackupChunk, RemoveReplicaResponse, ReplicaMember, TransferLeaderResponse } from '../protocol/messages.js';
export { BackupPart } from '../protocol/messages.js';
export type { BackupCall } from './connection.js';
export type { RetryPolicy } from './retry.js';
export { messageToWire, readResultFromWire, type OutgoingMessage, type ReadResult, type ReceivedMessage } from './wire.js';
export type { ConsumerGroupDescription, ConsumerGroupList, ConsumerGroupListing, ConsumerGroupMember, ConsumerGroupQueue } from './consumer-groups.js';

/** OpenTelemetry for the client: off unless an OTLP endpoint (or, in tests, a span exporter) is given. */
export type ClientTracingOptions = Partial<Pick<TracingSetup, 'otlpEndpoint' | 'samplingRatio' | 'spanExporter' | 'serviceName'>>;

/** Access key and TLS: from these options, else MAMBA_KEY_ID/MAMBA_KEY_SECRET, MAMBA_TLS_CA, MAMBA_CREDENTIALS. */
/** What Producer and Consumer pass through to their client: credentials, TLS, tracing. */
export type ConnectionOptions = Pick<ClientOptions, 'accessKey' | 'signingKey' | 'credentialsFile' | 'tls' | 'credentialsSearch' | 'tracing'>;

export function connectionOptionsOf(options: ConnectionOptions): ConnectionOptions {
  const picked: ConnectionOptions = {};
  if (options.accessKey !== undefined) picked.accessKey = options.accessKey;
  if (options.signingKey !== undefined) picked.signingKey = options.signingKey;
  if (options.credentialsFile !== undefined) picked.credentialsFile = options.credentialsFile;
  if (options.tls !== undefined) picked.tls = options.tls;
  if (options.credentialsSearch !== undefined) picked.credentialsSearch = options.credentialsSearch;
  if (options.tracing !== undefined) picked.tracing = options.tracing;
  return picked;
}

export interface ClientOptions extends SecurityOptions {
  brokers: string[];
  requestTimeoutMs?: number;
  /** Over retryDefaults (retry.ts); checked, errors name `retry.<field>`. */
  retry?: Partial<RetryPolicy>;
  /** Credentials files to try, in order, when neither options nor environment name a key (the CLI's defaults). */
  credentialsSearch?: string[];
  /** Producer spans with W3C traceparent in the message headers, and receive spans on reads. */
  tracing?: ClientTracingOptions;
  /** Unary calls go here instead of the gRPC connections (tests: scripted brokers). */
  transport?: Transport;
}

export interface SendResult {
  topic: string;
  queue: number;
  baseOffset: number;
  count: number;
}

const requestTimeoutMsMax = 600_000;
/** A membership call waits up to its waitMs on the leader; the call's deadline adds this. */
const membershipCallMarginMs = 5000;
/** What the broker waits when a membership call names no wait (membershipWaitMsDefault there). */
const membershipWaitMsDefault = 30_000;

export interface AddReplicaOptions {
  /** The new broker's client listener, HOST:PORT. */
  clientAddress: string;
  /** Its peer listener, HOST:PORT. */
  peerAddress: string;
  /** How long the leader waits for it to catch up and be promoted (default 30 s); a learner that does not is removed again. */
  waitMs?: number;
}

function checkOptions(options: ClientOptions): { brokers: string[]; requestTimeoutMs: number; retry: RetryPolicy } {
  if (!Array.isArray(options.brokers) || options.brokers.length === 0)
    throw new InvalidArgumentError('brokers: give at least one seed broker address (host:port)');
  for (const b of options.brokers) if (!/^[^\s:]+:\d{1,5}$/.test(b)) throw new InvalidArgumentError(`brokers: "${b}" is not host:port`);
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 1 || requestTimeoutMs > requestTimeoutMsMax)
    throw new InvalidArgumentError(`requestTimeoutMs: ${requestTimeoutMs} is out of range 1..${requestTimeoutMsMax}`);
  return { brokers: options.brokers, requestTimeoutMs, retry: retryPolicyOf(options.retry) };
}

/** Queue for a key: the same key always lands in the same queue (while the queue count stays). */
export function queueForKey(key: Uint8Array | string, queues: number): number {
  const digest = createHash('sha1').update(bytes(key)).digest();
  return digest.readUInt32BE(0) % queues;
}

export class MambaClient {
  readonly pool: ConnectionPool;
  /** The request path: routes, leaders, and what failures teach about them. */
  readonly cluster: Cluster;
  /** The checked retry policy (ClientOptions.retry over retryDefaults). */
  readonly retryPolicy: RetryPolicy;
  private readonly requestTimeoutMs: number;
  private roundRobin = 0;
  private readonly tracingSdk: Tracing;
  /** Producer and receive spans (also used by Producer and Consumer). */
  readonly tracing: ClientTracing;
  /** Aborted by close(). */
  private readonly closing = new AbortController();

  constructor(options: ClientOptions) {
    const checked = checkOptions(options);
    this.retryPolicy = checked.retry;
    this.requestTimeoutMs = checked.requestTimeoutMs;
    this.pool = new ConnectionPool(undefined, resolveClientSecurity(options, process.env, options.credentialsSearch ?? []));
    this.cluster = new Cluster(options.transport ?? this.pool, checked.brokers, checked.requestTimeoutMs);
    this.tracingSdk = startTracing({ serviceName: 'mamba-client', ...options.tracing });
    this.tracing = new ClientTracing(this.tracingSdk.tracer);
  }

  /** `work` under the client's retry policy (retry.ts). */
  retry<T>(work: (attempt: RetryAttempt) => Promise<T>): Promise<T> {
    return retry(this.retryPolicy, work, { signal: this.closing.signal });
  }

  // ------------------------------------------------------------------ admin

  async createTopic(name: string, queues: number): Promise<{ name: string; queues: number }> {
    const reply = await this.retry(() => this.cluster.callTopicAdmin('CreateTopic', { name, queues }));
    return { name: reply.topic?.name ?? name, queues: reply.topic?.queues ?? queues };
  }

  async deleteTopic(name: string): Promise<void> {
    await this.retry(() => this.cluster.callTopicAdmin('DeleteTopic', { name }));
    this.cluster.forgetTopic(name);
  }

  async listTopics(): Promise<Array<{ name: string; queues: number; createdMs: number }>> {
    const reply = await this.cluster.callAny('ListTopics', {});
    return reply.topics.map((t) => ({ name: t.name, queues: t.queues, createdMs: t.createdMs }));
  }

  /** The topic and, per queue, its group, leader, start offset and high watermark, as a broker describes them. */
  async describeTopic(name: string): Promise<DescribeTopicResponse> {
    return this.cluster.callAny('DescribeTopic', { name });
  }

  /**
   * Every consumer group with a committed offset or live members, per topic, across the cluster
   * (the broker asked collects it from every group's leader).
   */
  async listConsumerGroups(): Promise<ConsumerGroupList> {
    return consumerGroupListFromWire(await this.cluster.callAny('ListConsumerGroups', {}));
  }

  /**
   * A consumer group on a topic: its live members and their queues, and per queue the committed,
   * start and end offsets and the lag, with the total. NotFoundError for an unknown topic, or a
   * consumer group with neither a committed offset on the topic nor a live member.
   */
  async describeConsumerGroup(consumerGroup: string, topic: string): Promise<ConsumerGroupDescription> {
    return consumerGroupFromWire(await this.cluster.callAny('DescribeConsumerGroup', { consumerGroup, topic }));
  }

  async describeCluster(): Promise<GroupRoute[]> {
    return this.cluster.refresh();
  }

  // ------------------------------------------------------------------ membership and leadership (issue 13.4)
  // On the group's leader; retried only when the leader moved (NotLeaderError) or the change met
  // another one (AbortedError). Refusals: AlreadyExistsError, NotFoundError, FailedPreconditionError
  // (e.g. fewer than three voters without `force`), UnavailableError, TimeoutError.

  /** Adds broker `id` to `group`: a learner, then a voter once caught up; answers once promoted. */
  async addReplica(group: string, id: string, options: AddReplicaOptions): Promise<AddReplicaResponse> {
    const waitMs = options.waitMs ?? membershipWaitMsDefault;
    const request = { group, id, clientAddress: options.clientAddress, peerAddress: options.peerAddress, waitMsMax: waitMs };
    return this.membershipCall(group, 'AddReplica', request, waitMs);
  }

  /** Removes voter or learner `id` from `group`; `force` allows fewer than three voters. */
  async removeReplica(group: string, id: string, options: { force?: boolean; waitMs?: number } = {}): Promise<RemoveReplicaResponse> {
    const waitMs = options.waitMs ?? membershipWaitMsDefault;
    return this.membershipCall(group, 'RemoveReplica', { group, id, force: options.force === true, waitMsMax: waitMs }, waitMs);
  }

  /** Hands `group`'s leadership to `to` (default: the best voter); answers once the new leader serves. */
  async transferLeader(group: string, options: { to?: string; waitMs?: number } = {}): Promise<TransferLeaderResponse> {
    const waitMs = options.waitMs ?? membershipWaitMsDefault;
    const reply = await this.membershipCall(group, 'TransferLeader', { group, to: options.to ?? '', waitMsMax: waitMs }, waitMs);
    await this.cluster.refresh().catch(() => undefined); // the leader changed: forget the old hint
    return reply;
  }

  private membershipCall<M extends MethodName>(group: string, method: M, request: RequestOf<M>, waitMs: number): Promise<ResponseOf<M>> {
    return this.retry(async (attempt) => {
      try {
        return await this.cluster.callGroupLeader(group, method, request, { timeoutMs: waitMs + membershipCallMarginMs });
      } catch (error) {
        if (error instanceof NotLeaderError || error instanceof AbortedError) throw error;
        return attempt.bail(error);
      }
    });
  }

  // ------------------------------------------------------------------ cluster metadata (issue 14.1)

  /** The cluster metadata: groups and their brokers, topics and the group of each queue. */
  async getMetadata(): Promise<ClusterMetadata> {
    const reply = await this.cluster.callAny('GetMetadata', { knownVersion: 0, waitMsMax: 0 });
    const metadata = metadataFromWire(reply.metadata as unknown as Record<string, unknown> | null);
    this.cluster.noteMetadataVersion(metadata.version);
    return metadata;
  }

  /**
   * Registers a group of brokers (started with a cluster file that names it) in the cluster
   * metadata. AlreadyExistsError, InvalidArgumentError (an id or address in use),
   * FailedPreconditionError (the group does not answer or has no leader).
   */
  async addGroup(group: MetadataGroup): Promise<ClusterMetadata> {
    const reply = await this.retry(async (attempt) => {
      try {
        return await this.cluster.callTopicAdmin('AddGroup', { group });
      } catch (error) {
        if (error instanceof NotLeaderError) throw error;
        return attempt.bail(error);
      }
    });
    const metadata = metadataFromWire(reply.metadata as unknown as Record<string, unknown> | null);
    this.cluster.noteMetadataVersion(metadata.version);
    await this.cluster.refresh().catch(() => undefined);
    return metadata;
  }

  /** Grows `topic` by `count` queues, placed by load; the existing queues stay where they are. */
  async addQueues(topic: string, count: number): Promise<AddQueuesResponse> {
    const reply = await this.retry(async (attempt) => {
      try {
        return await this.cluster.callTopicAdmin('AddQueues', { topic, count });
      } catch (error) {
        if (error instanceof NotLeaderError) throw error;
        return attempt.bail(error);
      }
    });
    this.cluster.noteMetadataVersion(Number(reply.metadataVersion ?? 0));
    this.cluster.forgetTopic(topic);
    return { topic: reply.topic, placement: [...reply.placement], metadataVersion: Number(reply.metadataVersion ?? 0) };
  }

  // ------------------------------------------------------------------ backup (issue 14)

  /**
   * Opens the Backup stream of `group` on its leader (the contract is on the rpc in
   * proto/mamba.proto): its chunks in order, and a cancel. One attempt: a refusal or a broken
   * stream is thrown while reading as the product's error class, after the router learnt from it
   * (a redirect names the leader for the next attempt); whether to start the group over is the
   * caller's call.
   */
  async backup(group: string): Promise<BackupCall> {
    const address = await this.cluster.leaderOf(group);
    const call = this.pool.backup(address, { group });
    const router = this.cluster.router;
    async function* chunks(): AsyncGenerator<BackupChunk> {
      try {
        yield* call.chunks;
      } catch (error) {
        if (error instanceof MambaError) router.noteFailure(group, error);
        throw error;
      }
    }
    return { chunks: chunks(), cancel: call.cancel };
  }

  // ------------------------------------------------------------------ produce

  /** Sends messages to one queue (given, by key, or round-robin) and waits for the ack level. */
  async send(topic: string, messages: OutgoingMessage[], options: { queue?: number; ack?: Ack } = {}): Promise<SendResult> {
    if (messages.length === 0) throw new InvalidArgumentError('send: give at least one message');
    const trace = this.tracing.startSend(topic, messages.length);
    const wire = messages.map((m) => messageToWire(m, trace.headers));
    try {
      const result = await this.retry(() => this.sendOnce(topic, messages[0]!.key, wire, options));
      trace.end(result);
      return result;
    } catch (error) {
      trace.end(null, error);
      throw error;
    }
  }

  /** One attempt; a round-robin send takes the next queue on every attempt (so a retry may reach another group). */
  private async sendOnce(topic: string, key: OutgoingMessage['key'], wire: WireMessage[], options: { queue?: number; ack?: Ack }): Promise<SendResult> {
    const route = await this.cluster.topic(topic);
    const queue = options.queue ?? (key ? queueForKey(key, route.queues) : this.roundRobin++ % route.queues);
    const request = { topic, queue, ack: ackToWire(options.ack ?? 'quorum'), messages: wire };
    const reply = await this.cluster.callQueueLeader(topic, queue, 'Produce', request);
    return { topic, queue, baseOffset: reply.baseOffset, count: reply.count };
  }

  // ------------------------------------------------------------------ consume

  /** Reads one batch from a queue at `offset`; `address` picks the broker for the first attempt (default: the leader). */
  async read(topic: string, queue: number, offset: number, options: { messagesMax?: number; waitMsMax?: number; address?: string } = {}): Promise<ReadResult> {
    const waitMsMax = options.waitMsMax ?? 0;
    const request = { topic, queue, offset, messagesMax: options.messagesMax ?? 500, waitMsMax, blocks: true };
    const reply = await this.retry((attempt) =>
      this.cluster.callQueueLeader(topic, queue, 'Consume', request, {
        address: attempt.index === 0 ? options.address : undefined,
        timeoutMs: this.requestTimeoutMs + waitMsMax,
      }),
    );
    const result = readResultFromWire(reply);
    this.tracing.received(topic, queue, result.messages);
    return result;
  }

  close(): void {
    this.closing.abort(); // calls still retrying end with their last error instead of retrying a closed pool
    this.pool.close();
    void this.tracingSdk.shutdown(); // flushes spans still buffered for export
  }
}
