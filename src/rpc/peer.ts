// The peer API over gRPC: turns the Raft core's messages into RaftPeer calls and back.
// Requests go out as unary calls; the answer comes back into the core as a message. Incoming
// requests are checked against the group's membership before they reach the core.
import * as grpc from '@grpc/grpc-js';
import type { Entry, Message, FetchError, ReplicaId } from '../raft/types.js';
import { serviceDefinition } from './protos.js';
import { InvariantError } from '../assert.js';

const fetchErrors: Array<FetchError | undefined> = [undefined, 'NOT_LEADER', 'FENCED_EPOCH', 'UNKNOWN_EPOCH', 'NOT_VOTER'];

/** How Fetch answers carry entries: as stored record batches (with their CRCs), byte for byte. */
export interface EntryWireCodec {
  toBatch(entry: Entry): Buffer;
  /** Throws on a batch that fails its checks; the whole answer is then dropped. */
  fromBatches(batches: Buffer[]): Entry[];
}

export interface PeerIdentity {
  cluster: string;
  group: string;
  replicaId: ReplicaId;
}

/** What the replica offers the peer server: one request in, the core's answer out. */
export interface PeerRequestHandler {
  isMember(replicaId: ReplicaId): boolean;
  /** With mutual TLS: the sender must hold a certificate whose common name is its replica id. */
  requireCertificate?: boolean;
  /** Resolves with the core's answer to `request` (a Fetch may be held for `maxWaitMs`). */
  handle(request: Message, maxWaitMs: number): Promise<Message | null>;
}

type Wire = Record<string, unknown>;
type UnaryHandler = (call: grpc.ServerUnaryCall<Wire, Wire>, callback: grpc.sendUnaryData<Wire>) => void;

export function addPeerService(server: grpc.Server, self: PeerIdentity, codec: EntryWireCodec, handler: PeerRequestHandler): void {
  const unary = (toMessage: (w: Wire) => Message, toWire: (m: Message) => Wire): UnaryHandler => (call, callback) => {
    const sender = (call.request.sender ?? {}) as Wire;
    const from = String(sender.replicaId ?? '');
    if (sender.cluster !== self.cluster || sender.group !== self.group || !handler.isMember(from)) {
      callback({ code: grpc.status.PERMISSION_DENIED, details: `replica "${from}" of ${String(sender.cluster)}/${String(sender.group)} is not a member of group ${self.cluster}/${self.group}` });
      return;
    }
    const certified = handler.requireCertificate ? call.getAuthContext().sslPeerCertificate?.subject?.CN : from;
    if (certified !== from) {
      callback({ code: grpc.status.PERMISSION_DENIED, details: `the certificate of "${String(certified)}" cannot speak for replica "${from}"` });
      return;
    }
    let message: Message;
    try {
      message = toMessage(call.request);
    } catch (error) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `malformed peer request: ${(error as Error).message}` });
      return;
    }
    const maxWaitMs = Number(call.request.maxWaitMs ?? 0);
    handler.handle(message, maxWaitMs).then(
      (answer) => answer ? callback(null, toWire(answer)) : callback({ code: grpc.status.UNAVAILABLE, details: 'replica is shutting down' }),
      // The core checks a request against its state before changing anything; a request that
      // contradicts it (a second leader claiming this epoch) can come from a faulty or hostile
      // member, so it is refused with a status instead of stopping the broker.
      (error: Error) => callback(error instanceof InvariantError
        ? { code: grpc.status.FAILED_PRECONDITION, details: `refused: the request contradicts this replica's state (${error.message})` }
        : { code: grpc.status.INTERNAL, details: error.message }),
    );
  };
  const to = self.replicaId;
  server.addService(serviceDefinition('mamba.raft.v1.RaftPeer'), {
    PreVote: unary((w) => ({ type: 'PreVoteRequest', from: senderOf(w), to, epoch: num(w.epoch), lastEpoch: num(w.lastEpoch), lastOffset: num(w.lastOffset) }), voteResponseWire),
    Vote: unary((w) => ({ type: 'VoteRequest', from: senderOf(w), to, epoch: num(w.epoch), lastEpoch: num(w.lastEpoch), lastOffset: num(w.lastOffset) }), voteResponseWire),
    BeginQuorumEpoch: unary((w) => ({ type: 'BeginQuorumEpoch', from: senderOf(w), to, epoch: num(w.epoch) }), (m) => ({ from: m.from, epoch: m.epoch })),
    Fetch: unary((w) => ({
      type: 'FetchRequest', from: senderOf(w), to, epoch: num(w.epoch), fetchOffset: num(w.fetchOffset),
      lastFetchedEpoch: num(w.lastFetchedEpoch), maxBytes: num(w.maxBytes), requestId: num(w.requestId),
    }), (m) => fetchResponseWire(m, codec)),
    TransferLeadership: unary((w) => ({ type: 'TimeoutNow', from: senderOf(w), to, epoch: num(w.epoch) }), () => ({})),
  });
}

function senderOf(w: Wire): string {
  return String((w.sender as Wire).replicaId);
}

function num(value: unknown): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`field value ${String(value)} is not a non-negative safe integer`);
  return n;
}

function voteResponseWire(m: Message): Wire {
  return { from: m.from, epoch: m.epoch, granted: m.type === 'VoteResponse' || m.type === 'PreVoteResponse' ? m.granted : false };
}

function fetchResponseWire(m: Message, codec: EntryWireCodec): Wire {
  if (m.type !== 'FetchResponse') throw new Error(`core answered a Fetch with ${m.type}`);
  return {
    from: m.from,
    epoch: m.epoch,
    error: m.error ? fetchErrors.indexOf(m.error) : 0,
    leaderId: m.leaderId ?? '',
    divergingEpoch: m.divergingEpoch ? { epoch: m.divergingEpoch.epoch, endOffset: m.divergingEpoch.endOffset } : null,
    fetchOffset: m.fetchOffset,
    lastFetchedEpoch: m.lastFetchedEpoch,
    requestId: m.requestId,
    highWatermark: m.highWatermark,
    batches: m.entries.map((e) => codec.toBatch(e)),
  };
}

interface PeerEndpoint {
  id: ReplicaId;
  address: string; // host:port of its peer listener
}

type RpcName = 'PreVote' | 'Vote' | 'BeginQuorumEpoch' | 'Fetch' | 'TransferLeadership';

/**
 * Clients to the other replicas of the group. `send` maps a core request to its RPC and hands
 * the answer back through `deliver`; a failed call is dropped (the core retries on its ticks).
 */
export class PeerClients {
  private readonly clients = new Map<ReplicaId, grpc.Client>();
  private readonly Client = grpc.makeGenericClientConstructor(serviceDefinition('mamba.raft.v1.RaftPeer'), 'RaftPeer');
  private closed = false;

  constructor(
    private readonly self: PeerIdentity,
    peers: PeerEndpoint[],
    private readonly codec: EntryWireCodec,
    private readonly deliver: (answer: Message) => void,
    private readonly timing: { fetchMaxWaitMs: number; requestTimeoutMs: number },
    private readonly onError: (peer: ReplicaId, rpc: string, error: grpc.ServiceError) => void,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    for (const peer of peers) {
      if (peer.id === self.replicaId) continue;
      this.clients.set(peer.id, new this.Client(peer.address, credentials, {
        'grpc.max_receive_message_length': 512 * 1024 * 1024,
        'grpc.initial_reconnect_backoff_ms': 50,
        'grpc.max_reconnect_backoff_ms': 250,
        'grpc.keepalive_time_ms': 10_000,
      }));
    }
  }

  send(message: Message): void {
    if (this.closed) return;
    const client = this.clients.get(message.to);
    if (!client) return;
    const sender = { cluster: this.self.cluster, group: this.self.group, replicaId: this.self.replicaId };
    switch (message.type) {
      case 'PreVoteRequest':
      case 'VoteRequest':
        this.call(client, message.type === 'PreVoteRequest' ? 'PreVote' : 'Vote', message.to, {
          sender, to: message.to, epoch: message.epoch, lastEpoch: message.lastEpoch, lastOffset: message.lastOffset,
        }, (w) => ({ type: message.type === 'PreVoteRequest' ? 'PreVoteResponse' : 'VoteResponse', from: message.to, to: this.self.replicaId, epoch: num(w.epoch), granted: !!w.granted }));
        return;
      case 'BeginQuorumEpoch':
        this.call(client, 'BeginQuorumEpoch', message.to, { sender, to: message.to, epoch: message.epoch },
          (w) => ({ type: 'BeginQuorumEpochResponse', from: message.to, to: this.self.replicaId, epoch: num(w.epoch) }));
        return;
      case 'FetchRequest':
        this.call(client, 'Fetch', message.to, {
          sender, to: message.to, epoch: message.epoch, fetchOffset: message.fetchOffset, lastFetchedEpoch: message.lastFetchedEpoch,
          maxBytes: message.maxBytes, maxWaitMs: this.timing.fetchMaxWaitMs, requestId: message.requestId,
        }, (w) => this.fetchResponse(w, message.to), this.timing.fetchMaxWaitMs + this.timing.requestTimeoutMs);
        return;
      case 'TimeoutNow':
        this.call(client, 'TransferLeadership', message.to, { sender, to: message.to, epoch: message.epoch }, () => null);
        return;
      default:
        // Answers to incoming requests travel back on their own calls, never through here.
        return;
    }
  }

  private fetchResponse(w: Wire, from: ReplicaId): Message {
    const errorIndex = Number(w.error ?? 0);
    const error = fetchErrors[errorIndex];
    const diverging = w.divergingEpoch as Wire | null | undefined;
    return {
      type: 'FetchResponse', from, to: this.self.replicaId, epoch: num(w.epoch),
      ...(error ? { error } : {}),
      leaderId: w.leaderId ? String(w.leaderId) : null,
      ...(diverging ? { divergingEpoch: { epoch: num(diverging.epoch), endOffset: num(diverging.endOffset) } } : {}),
      fetchOffset: num(w.fetchOffset),
      lastFetchedEpoch: num(w.lastFetchedEpoch),
      requestId: num(w.requestId),
      entries: this.codec.fromBatches((w.batches as Buffer[] | undefined) ?? []),
      highWatermark: num(w.highWatermark),
    };
  }

  private call(client: grpc.Client, rpc: RpcName, peer: ReplicaId, request: Wire, answer: (w: Wire) => Message | null, timeoutMs = this.timing.requestTimeoutMs): void {
    const method = (client as unknown as Record<RpcName, (req: Wire, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>)[rpc];
    method.call(client, request, { deadline: Date.now() + timeoutMs }, (error, wire) => {
      if (this.closed) return;
      if (error || !wire) {
        if (error) this.onError(peer, rpc, error);
        return;
      }
      let message: Message | null;
      try {
        message = answer(wire);
      } catch (e) {
        this.onError(peer, rpc, Object.assign(new Error((e as Error).message), { code: grpc.status.INTERNAL, details: (e as Error).message, metadata: new grpc.Metadata() }));
        return;
      }
      if (message) this.deliver(message);
    });
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
  }
}
