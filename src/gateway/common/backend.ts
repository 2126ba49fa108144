// The cluster as a gateway reaches it: an in-process SDK client (src/client) over every broker's
// client API, signed with the brokers' own key when the cluster has access keys. Produce and
// consume then take the normal gRPC path (forwarding to the queue's leader, read advice, limits,
// metrics and the broker's spans); the gateway checks its own user's permissions first, since
// the brokers' key passes every permission check.
import type { SigningKey } from '../../auth/signature.js';
import { MambaClient } from '../../client/client.js';
import { Producer, type SendOptions, type SentMessage } from '../../client/producer.js';
import type { OutgoingMessage } from '../../client/wire.js';

export interface BackendOptions {
  /** host:port of every broker's client API (this broker's first). */
  brokers: string[];
  /** The brokers' key (null: the cluster has no access keys). */
  signingKey: SigningKey | null;
  /** The CA that signed the brokers' certificates (null: plain text). */
  tlsCaFile: string | null;
  requestTimeoutMs: number;
}

/** Through a leader change (election timeout and a little) before a gateway client sees an error. */
const gatewayRetry = { attemptsMax: 30, backoffMsInitial: 20, backoffMsMax: 500 };

export function backendClient(options: BackendOptions): MambaClient {
  return new MambaClient({
    brokers: options.brokers,
    requestTimeoutMs: options.requestTimeoutMs,
    tls: options.tlsCaFile === null ? false : { caFile: options.tlsCaFile },
    ...(options.signingKey ? { signingKey: options.signingKey } : {}),
    retry: gatewayRetry,
  });
}

export interface GatewayBackendOptions extends BackendOptions {
  /** The broker's largest message (messageBytesMax): the gateway's batches must hold one. */
  messageBytesMax: number;
  /** The broker's largest request (requestBytesMax): no batch may be larger. */
  requestBytesMax: number;
}

/**
 * What a gateway stores and reads through. `publish` goes through the gateway's one idempotent
 * Producer (src/client/producer.ts): every message of every connection to one queue takes that
 * queue's lane, numbered under the producer's id, so a retry after an attempt whose outcome was
 * unknown (a leader that lost its term before the commit) is answered by the broker as a duplicate
 * instead of being stored twice. It resolves once the quorum has the message; messages published
 * to one queue are stored in the order `publish` was called.
 */
export interface GatewayBackend {
  /** Routes, reads, consumer offsets and topic listings (the producer's own client). */
  readonly client: MambaClient;
  /**
   * Stores one message (in `options.queue`, else by key, else round-robin). Rejects with the
   * SDK's errors once the retries are spent: OutcomeUnknownError when the message may or may not
   * be stored (publishing it again may store it twice), DroppedError or a refusal when it is not.
   */
  publish(topic: string, message: OutgoingMessage, options: SendOptions): Promise<SentMessage>;
  /** Waits (bounded) for what is being stored, refuses what is left, closes the connections. */
  close(): Promise<void>;
}

/** Room in a batch beside the largest message: its key, headers and topic name. */
const batchOverheadBytes = 64 * 1024;
/** Batches need not be larger than this for throughput (the SDK's default). */
const batchBytesPreferred = 1024 * 1024;
/** Messages waiting for their quorum across all connections of a gateway; publish waits beyond it. */
const publishBufferBytesMax = 64 * 1024 * 1024;
const closeFlushMs = 2000;

/** The largest batch a gateway's producers send: room for the broker's largest message, within its largest request. */
export function gatewayBatchBytesMax(limits: { messageBytesMax: number; requestBytesMax: number }): number {
  return Math.min(limits.requestBytesMax, Math.max(batchBytesPreferred, limits.messageBytesMax + batchOverheadBytes));
}

export function gatewayBackend(options: GatewayBackendOptions): GatewayBackend {
  const batchBytesMax = gatewayBatchBytesMax(options);
  const producer = new Producer({
    brokers: options.brokers,
    requestTimeoutMs: options.requestTimeoutMs,
    tls: options.tlsCaFile === null ? false : { caFile: options.tlsCaFile },
    ...(options.signingKey ? { signingKey: options.signingKey } : {}),
    retry: gatewayRetry,
    ack: 'quorum',
    idempotent: true,
    // A message no group took comes back to the gateway (which refuses the PUBLISH) instead of
    // waiting in the producer for as long as the cluster is down.
    whenUnavailable: 'drop',
    batchBytesMax,
    bufferBytesMax: Math.max(publishBufferBytesMax, 2 * batchBytesMax),
    // No tracing here: a producer span would replace the traceparent the gateway stores.
  });
  return {
    client: producer.client,
    publish: (topic, message, sendOptions) => producer.send(topic, message, sendOptions),
    close: () => producer.close(closeFlushMs),
  };
}
