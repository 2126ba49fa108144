// Connections to brokers' client API: one gRPC channel per address, typed calls as promises
// (src/protocol/messages.ts), every failure turned into the product's error classes (with their
// `retriable` flag).
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, type MambaError } from '../errors.js';
import { serviceDefinition } from '../protocol/protos.js';
import { fromServiceError } from '../protocol/status.js';
import {
  clientServiceName,
  type MethodName,
  type RequestOf,
  type ResponseOf,
  type StreamMethods,
  type ProduceStreamRequest,
  type ProduceStreamResponse,
  type SubscribeRequest,
  type ConsumeResponse,
  type BackupChunk,
  type BackupRequest,
} from '../protocol/messages.js';
import { signCall } from '../auth/signature.js';
import { clientTls } from '../auth/tls.js';
import type { ClientSecurity } from './credentials.js';

/** An open Backup call: its chunks in order, and a way to end it early. */
export interface BackupCall {
  chunks: AsyncGenerator<BackupChunk>;
  cancel(): void;
}

/** What the request path (cluster.ts) needs from the network: one typed call to one broker. */
export interface Transport {
  /** Rejects with a MambaError (the status table's class for the gRPC status). */
  call<M extends MethodName>(address: string, method: M, request: RequestOf<M>, timeoutMs: number): Promise<ResponseOf<M>>;
  /** Told the cluster metadata version every answer carries (issue 14.1), when the transport reads it. */
  onMetadataVersion?: ((version: number) => void) | undefined;
}

/** The trailing metadata key of the cluster metadata version (src/rpc/client-service.ts). */
const metadataVersionKey = 'mamba-metadata-version';

const GenericClient = grpc.makeGenericClientConstructor(serviceDefinition(clientServiceName), 'Mamba');

/**
 * The generic client's method for an RPC. Its codecs are protobufjs's types of that RPC's
 * request and answer (protos.ts), which is what makes the types in messages.ts hold: this is the
 * one place where grpc-js's untyped methods meet them.
 */
type UnaryFunction = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, reply?: unknown) => void,
) => grpc.ClientUnaryCall;
type ServerStreamFunction = (request: unknown, metadata: grpc.Metadata) => grpc.ClientReadableStream<unknown>;
type DuplexFunction = (metadata: grpc.Metadata) => grpc.ClientDuplexStream<unknown, unknown>;

function methodOf<F>(client: grpc.Client, method: string): F {
  const fn = (client as unknown as { [name: string]: F | undefined })[method];
  if (!fn) throw new Error(`the client API has no method ${method}`);
  return fn;
}

export class ConnectionPool implements Transport {
  private readonly clients = new Map<string, grpc.Client>();
  private closed = false;
  onMetadataVersion: ((version: number) => void) | undefined = undefined;

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
    if (this.security.key) signCall(metadata, this.security.key, `/${clientServiceName}/${method}`);
    return metadata;
  }

  private client(address: string): grpc.Client {
    if (this.closed) throw new UnavailableError('client is closed');
    let client = this.clients.get(address);
    if (!client) {
      client = new GenericClient(address, this.channelCredentials, {
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
  call<M extends MethodName>(address: string, method: M, request: RequestOf<M>, timeoutMs: number): Promise<ResponseOf<M>> {
    let client: grpc.Client;
    let fn: UnaryFunction;
    try {
      client = this.client(address);
      fn = methodOf<UnaryFunction>(client, method);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const call = fn.call(client, request, this.metadata(method), { deadline: Date.now() + timeoutMs }, (error, reply) => {
        if (error) reject(withAddress(fromServiceError(error), address));
        else resolve(reply as ResponseOf<M>);
      });
      const listener = this.onMetadataVersion;
      if (listener)
        call.on('status', (status: grpc.StatusObject) => {
          const version = Number(status.metadata.get(metadataVersionKey)[0] ?? Number.NaN);
          if (Number.isSafeInteger(version)) listener(version);
        });
    });
  }

  /** A Subscribe server stream. */
  subscribe(address: string, request: SubscribeRequest): grpc.ClientReadableStream<ConsumeResponse> {
    const client = this.client(address);
    const stream = methodOf<ServerStreamFunction>(client, 'Subscribe').call(client, request, this.metadata('Subscribe'));
    return stream as grpc.ClientReadableStream<StreamMethods['Subscribe']['response']>;
  }

  /**
   * A Backup server stream (issue 14): its chunks as they arrive (a failure is thrown as the
   * product's error class) and a cancel that ends the call at once, also while a chunk is awaited
   * (the leader then releases what it pinned). No deadline: the caller bounds the wait for each chunk.
   */
  backup(address: string, request: BackupRequest): BackupCall {
    const client = this.client(address);
    const stream = methodOf<ServerStreamFunction>(client, 'Backup').call(client, request, this.metadata('Backup')) as grpc.ClientReadableStream<
      StreamMethods['Backup']['response']
    >;
    async function* chunks(): AsyncGenerator<BackupChunk> {
      try {
        for await (const chunk of stream) yield chunk as BackupChunk;
      } catch (error) {
        throw isServiceError(error) ? withAddress(fromServiceError(error), address) : error;
      } finally {
        stream.cancel();
      }
    }
    return { chunks: chunks(), cancel: () => stream.cancel() };
  }

  /** A ProduceStream (both ways), signed like a call when the pool has an access key. */
  produceStream(address: string): grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse> {
    const client = this.client(address);
    const stream = methodOf<DuplexFunction>(client, 'ProduceStream').call(client, this.metadata('ProduceStream'));
    return stream as grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse>;
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number' && 'metadata' in error;
}

function withAddress(error: MambaError, address: string): MambaError {
  if (error.kind === 'unavailable' || error.kind === 'timeout') error.message = `${address}: ${error.message}`;
  return error;
}
