// Connections to brokers' client API: one gRPC channel per address, calls as promises, every
// failure turned into the product's error classes (with their `retriable` flag).
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, type MambaError } from '../errors.js';
import { serviceDefinition } from '../protocol/protos.js';
import { fromServiceError } from '../protocol/status.js';
import { signCall } from '../auth/signature.js';
import { clientTls } from '../auth/tls.js';
import type { ClientSecurity } from './credentials.js';

// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf objects; a typed request path (issue 12.4) replaces this
export type Wire = Record<string, any>;

const MambaClient = grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba');

type UnaryMethod = (
  request: Wire,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, reply?: Wire) => void,
) => void;

export class ConnectionPool {
  private readonly clients = new Map<string, grpc.Client>();
  private closed = false;

  private readonly channelCredentials: grpc.ChannelCredentials;

  constructor(
    private readonly requestBytesMax = 64 * 1024 * 1024,
    private readonly security: ClientSecurity = { key: null, tlsCaFile: null, keySource: null },
  ) {
    this.channelCredentials = security.tlsCaFile === null ? grpc.credentials.createInsecure() : clientTls(security.tlsCaFile || null);
  }

  /** Call metadata, signed with the access key when there is one. */
  private metadata(method: string): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.security.key) signCall(metadata, this.security.key, `/mamba.v1.Mamba/${method}`);
    return metadata;
  }

  client(address: string): grpc.Client {
    if (this.closed) throw new UnavailableError('client is closed');
    let client = this.clients.get(address);
    if (!client) {
      client = new MambaClient(address, this.channelCredentials, {
        'grpc.max_receive_message_length': this.requestBytesMax,
        'grpc.max_send_message_length': this.requestBytesMax,
        // TLS to a loopback address: verify the certificate's "localhost" name (a TLS server
        // name may not be an IP address).
        ...(this.security.tlsCaFile !== null && /^(127\.\d+\.\d+\.\d+|\[::1\]):\d+$/.test(address) ? { 'grpc.ssl_target_name_override': 'localhost' } : {}),
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
      });
      this.clients.set(address, client);
    }
    return client;
  }

  /** One call to one broker; rejects with a MambaError. */
  call(address: string, method: string, request: Wire, timeoutMs: number): Promise<Wire> {
    const client = this.client(address);
    const fn = (client as unknown as Record<string, UnaryMethod>)[method];
    if (!fn) return Promise.reject(new Error(`no method ${method}`));
    return new Promise((resolve, reject) => {
      fn.call(client, request, this.metadata(method), { deadline: Date.now() + timeoutMs }, (error, reply) => {
        if (error) reject(withAddress(fromServiceError(error), address));
        else resolve(reply ?? {});
      });
    });
  }

  /** A server stream (Subscribe). */
  stream(address: string, method: string, request: Wire): grpc.ClientReadableStream<Wire> {
    const client = this.client(address) as unknown as Record<string, (r: Wire) => grpc.ClientReadableStream<Wire>>;
    return (client[method] as unknown as (r: Wire, m: grpc.Metadata) => grpc.ClientReadableStream<Wire>).call(
      this.client(address),
      request,
      this.metadata(method),
    );
  }

  /** A bidirectional stream (ProduceStream), signed like a call when the pool has an access key. */
  duplex(address: string, method: string): grpc.ClientDuplexStream<Wire, Wire> {
    const client = this.client(address) as unknown as Record<string, (m: grpc.Metadata) => grpc.ClientDuplexStream<Wire, Wire>>;
    const fn = client[method];
    if (!fn) throw new Error(`no method ${method}`);
    return fn.call(client, this.metadata(method));
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

function withAddress(error: MambaError, address: string): MambaError {
  if (error.kind === 'unavailable' || error.kind === 'timeout') error.message = `${address}: ${error.message}`;
  return error;
}

/** Retry policy with exponential backoff and jitter (kafkajs-style named defaults). */
export interface RetryPolicy {
  attemptsMax: number;
  backoffMsInitial: number;
  backoffMsMax: number;
  multiplier: number;
  /** 0..1: the share of each backoff drawn at random. */
  jitter: number;
}

export const retryDefaults: RetryPolicy = { attemptsMax: 8, backoffMsInitial: 50, backoffMsMax: 2000, multiplier: 2, jitter: 0.2 };

export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.backoffMsMax, policy.backoffMsInitial * policy.multiplier ** attempt);
  return Math.round(base * (1 - policy.jitter + policy.jitter * 2 * random()));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
