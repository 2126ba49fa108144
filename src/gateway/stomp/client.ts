// The gateway's way into the cluster: an in-process SDK client (src/client) on the cluster's
// client listeners, signed with the brokers' own key when the cluster has keys. Sends go to their
// queue's leader wherever it is, and subscriptions are consumer-group members that follow the read
// advice, all through the normal gRPC path with its limits, metrics and tracing. The gateway has
// checked the STOMP login's own permission before it calls any of this. Written to move into a
// shared gateway module (MQTT needs the same).
import type { SigningKey } from '../../auth/signature.js';
import { MambaClient } from '../../client/client.js';
import { Consumer } from '../../client/consumer.js';

export interface GatewayClientOptions {
  /** Client API addresses (host:port), this broker's first. */
  brokers: string[];
  /** The brokers' key, derived (from the keys file); null without access keys. */
  signingKey: SigningKey | null;
  /** TLS towards the brokers: the cluster's CA file; null in the clear. */
  tlsCaFile: string | null;
  requestTimeoutMs?: number;
}

/** What a subscription's consumer does with a message it could not deliver or that was NACKed. */
export interface NackPolicy {
  attemptsMax: number;
  delayMsInitial: number;
  delayMsMax: number;
}

export const nackPolicyDefault: Readonly<NackPolicy> = { attemptsMax: 3, delayMsInitial: 1000, delayMsMax: 60_000 };

function connection(options: GatewayClientOptions): { signingKey?: SigningKey; tls: false | { caFile: string } } {
  return { ...(options.signingKey ? { signingKey: options.signingKey } : {}), tls: options.tlsCaFile === null ? false : { caFile: options.tlsCaFile } };
}

export function gatewayClient(options: GatewayClientOptions): MambaClient {
  return new MambaClient({ brokers: options.brokers, requestTimeoutMs: options.requestTimeoutMs ?? 10_000, ...connection(options) });
}

export function gatewayConsumer(options: GatewayClientOptions, group: string, topic: string, nack: NackPolicy): Consumer {
  return new Consumer({
    brokers: options.brokers,
    group,
    topic,
    autoCommitIntervalMs: 500,
    heartbeatIntervalMs: 1000,
    waitMsMax: 500,
    messagesMax: 100,
    nack,
    ...connection(options),
  });
}
