// The STOMP gateway's way into the cluster: the gateways' backend (../common/backend.ts: one SDK
// client, and one idempotent producer for SENDs, so a retry inside the gateway never stores a
// message twice), and per subscription a consumer (a consumer-group member, or a
// fixed reader of one queue) that follows the read advice. Every subscription works through that one client (its connections, routes and retry
// policy), so a subscription costs no connections of its own. The gateway has checked the STOMP
// login's own permission before it calls any of this.
import type { SigningKey } from '../../auth/signature.js';
import type { MambaClient } from '../../client/client.js';
import { gatewayBackend, gatewayBatchBytesMax, type GatewayBackend } from '../common/backend.js';
import { Consumer } from '../../client/consumer.js';
import type { Destination } from './destination.js';

export interface GatewayClientOptions {
  /** Client API addresses (host:port), this broker's first. */
  brokers: string[];
  /** The brokers' key, derived (from the keys file); null without access keys. */
  signingKey: SigningKey | null;
  /** TLS towards the brokers: the cluster's CA file; null in the clear. */
  tlsCaFile: string | null;
  requestTimeoutMs?: number;
  /** The broker's largest message and request (messageBytesMax, requestBytesMax): the producer's batches fit both. */
  messageBytesMax: number;
  requestBytesMax: number;
}

/** What a subscription's consumer does with a message it could not deliver or that was NACKed. */
export interface NackPolicy {
  attemptsMax: number;
  delayMsInitial: number;
  delayMsMax: number;
}

export const nackPolicyDefault: Readonly<NackPolicy> = { attemptsMax: 3, delayMsInitial: 1000, delayMsMax: 60_000 };

export function stompBackend(options: GatewayClientOptions): GatewayBackend {
  return gatewayBackend({ ...options, requestTimeoutMs: options.requestTimeoutMs ?? 10_000 });
}

/**
 * A consumer working through `client` (the gateway's; the consumer leaves it open): a member of
 * `group` dealt queues of the topic, or, for one queue, that queue by a fixed assignment with the
 * group's offsets.
 */
export function gatewayConsumer(client: MambaClient, options: GatewayClientOptions, group: string, destination: Destination, nack: NackPolicy): Consumer {
  return new Consumer({
    client,
    brokers: options.brokers,
    group,
    topic: destination.topic,
    ...(destination.queue === null ? {} : { assignment: [destination.queue] }),
    autoCommitIntervalMs: 500,
    heartbeatIntervalMs: 1000,
    waitMsMax: 500,
    messagesMax: 100,
    nack,
    // A NACKed message as large as the broker takes must fit the retry producer's batch.
    retryBatchBytesMax: gatewayBatchBytesMax(options),
  });
}
