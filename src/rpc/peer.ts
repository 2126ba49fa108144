// The peer API over gRPC: turns the Raft core's messages into RaftPeer calls and back.
// Fetches travel on one long-lived FetchStream per follower and leader; the other requests go
// out as unary calls. Answers come back into the core as messages. Incoming requests are checked
// against the group's membership (and, under mutual TLS, the certificate) before they reach
// the core, each request of a stream as each unary call. FetchSnapshot (KIP-630) is not a core
// message: the replica serves it from its snapshot files, behind the same checks.
import * as grpc from '@grpc/grpc-js';
import type { Entry, Message, FetchError, FetchRequest, FetchResponse, ReplicaId, SnapshotId } from '../raft/types.js';
import type { FetchSnapshotError, FetchSnapshotRequest, FetchSnapshotResponse } from '../replica/replica.js';
import { MalformedRequest, serviceDefinition } from '../protocol/protos.js';
import { toStatus } from '../protocol/status.js';
import { InvariantError } from '../assert.js';
import { MambaError } from '../errors.js';

/** proto FetchError, by number. */
const fetchErrors: Array<FetchError | undefined> = [undefined, 'NOT_LEADER', 'FENCED_EPOCH', 'UNKNOWN_EPOCH', 'NOT_VOTER'];
/** proto FetchSnapshotError, by number. */
const fetchSnapshotErrors: Array<FetchSnapshotError | undefined> = [
  undefined,
  'SNAPSHOT_NOT_FOUND',
  'POSITION_OUT_OF_RANGE',
  'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH',
  'NOT_LEADER',
];

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

/**
 * Identifies one FetchStream to the replica: the Fetches it parks for a stream are superseded by
 * the stream's next request and dropped when the stream ends. Unary Fetches have none.
 */
export type FetchChannel = object;

/** What the replica offers the peer server: one request in, the core's answer out. */
export interface PeerRequestHandler {
  isMember(replicaId: ReplicaId): boolean;
  /** With mutual TLS: the sender must hold a certificate whose common name is its replica id. */
  requireCertificate?: boolean;
  /**
   * Resolves with the core's answer to `request` (a Fetch may be held for `waitMsMax`), or null
   * when the replica is shutting down; rejects with InvariantError on a request that contradicts
   * the replica's state.
   */
  handle(request: Message, waitMsMax: number, channel?: FetchChannel): Promise<Message | null>;
  /** The stream `channel` ended: forget every Fetch of it that still waits. */
  dropChannel?(channel: FetchChannel): void;
  /**
   * KIP-630 FetchSnapshot: a chunk of a snapshot this replica holds (errors as codes in the
   * answer), or null while shutting down. Absent: the call is answered UNIMPLEMENTED.
   */
  fetchSnapshot?(request: FetchSnapshotRequest): Promise<FetchSnapshotResponse | null>;
}

/** Unanswered Fetches allowed on one stream, enforced on both ends (the core keeps one in flight, plus its retries). */
export const fetchStreamInflightMax = 8;

type Wire = Record<string, unknown>;
type UnaryHandler = (call: grpc.ServerUnaryCall<Wire, Wire>, callback: grpc.sendUnaryData<Wire>) => void;
type Refusal = { code: grpc.status; details: string };

export function addPeerService(server: grpc.Server, self: PeerIdentity, codec: EntryWireCodec, handler: PeerRequestHandler): void {
  /** The membership and certificate checks of every request; `certified` is the certificate's name, read once per call. */
  const refusalOf = (request: Wire, certified: () => unknown): Refusal | null => {
    const sender = (request.sender ?? {}) as Wire;
    const from = String(sender.replicaId ?? '');
    if (sender.cluster !== self.cluster || sender.group !== self.group || !handler.isMember(from)) {
      return {
        code: grpc.status.PERMISSION_DENIED,
        details: `replica "${from}" of ${String(sender.cluster)}/${String(sender.group)} is not a member of group ${self.cluster}/${self.group}`,
      };
    }
    const name = handler.requireCertificate ? certified() : from;
    if (name !== from) return { code: grpc.status.PERMISSION_DENIED, details: `the certificate of "${String(name)}" cannot speak for replica "${from}"` };
    return null;
  };
  const certificateName = (call: Pick<grpc.ServerUnaryCall<Wire, Wire>, 'getAuthContext'>): (() => unknown) => {
    let name: { value: unknown } | null = null;
    return () => (name ??= { value: call.getAuthContext().sslPeerCertificate?.subject?.CN }).value;
  };
  /** Every unary call: membership and certificate, then decoding, then `serve`. */
  const checked =
    <R, A>(decode: (w: Wire) => R, serve: (request: R, wire: Wire) => Promise<A | null>, toWire: (answer: A) => Wire): UnaryHandler =>
    (call, callback) => {
      const refusal = refusalOf(call.request, certificateName(call));
      if (refusal) return callback(refusal);
      let request: R;
      try {
        request = decode(call.request);
      } catch (error) {
        return callback(malformed(error));
      }
      serve(request, call.request).then(
        (answer) => (answer ? callback(null, toWire(answer)) : callback(shuttingDown)),
        (error: Error) => callback(contradiction(error)),
      );
    };
  const unary = (toMessage: (w: Wire) => Message, toWire: (m: Message) => Wire): UnaryHandler =>
    checked(toMessage, (message, wire) => handler.handle(message, Number(wire.waitMsMax ?? 0)), toWire);
  const to = self.replicaId;
  const toFetch = (w: Wire): FetchRequest => ({
    type: 'FetchRequest',
    from: senderOf(w),
    to,
    epoch: num(w.epoch),
    fetchOffset: num(w.fetchOffset),
    lastFetchedEpoch: num(w.lastFetchedEpoch),
    bytesMax: num(w.bytesMax),
    requestId: num(w.requestId),
    ...(w.recovering ? { recovering: true } : {}),
  });
  server.addService(serviceDefinition('mamba.raft.v1.RaftPeer'), {
    PreVote: unary(
      (w) => ({ type: 'PreVoteRequest', from: senderOf(w), to, epoch: num(w.epoch), lastEpoch: num(w.lastEpoch), lastOffset: num(w.lastOffset) }),
      voteResponseWire,
    ),
    Vote: unary(
      (w) => ({ type: 'VoteRequest', from: senderOf(w), to, epoch: num(w.epoch), lastEpoch: num(w.lastEpoch), lastOffset: num(w.lastOffset) }),
      voteResponseWire,
    ),
    BeginQuorumEpoch: unary(
      (w) => ({ type: 'BeginQuorumEpoch', from: senderOf(w), to, epoch: num(w.epoch) }),
      (m) => ({ from: m.from, epoch: m.epoch }),
    ),
    Fetch: unary(toFetch, (m) => fetchResponseWire(m, codec)),
    FetchStream: (call: grpc.ServerDuplexStream<Wire, Wire>) => {
      const certified = certificateName(call); // one connection, one certificate
      serveFetchStream(call, { refusalOf: (w) => refusalOf(w, certified), toFetch, codec, handler });
    },
    TransferLeadership: unary(
      (w) => ({ type: 'TimeoutNow', from: senderOf(w), to, epoch: num(w.epoch) }),
      () => ({}),
    ),
    FetchSnapshot: checked(
      (w) => fetchSnapshotRequestOf(w, to),
      (request) => (handler.fetchSnapshot ? handler.fetchSnapshot(request) : Promise.reject(unimplemented('FetchSnapshot'))),
      fetchSnapshotResponseWire,
    ),
  });
}

class Unimplemented extends Error {}

function unimplemented(rpc: string): Unimplemented {
  return new Unimplemented(`${rpc} is not served by this replica`);
}

/** The follower's FetchSnapshotRequest as the replica takes it (bounded and checked by it). */
export function fetchSnapshotRequestOf(w: Wire, to: ReplicaId): FetchSnapshotRequest {
  return {
    from: senderOf(w),
    to,
    leaderEpoch: num(w.leaderEpoch),
    snapshot: snapshotIdOf(w.snapshotId as Wire | null | undefined, 'snapshotId'),
    position: num(w.position),
    bytesMax: num(w.bytesMax),
  };
}

function snapshotIdOf(w: Wire | null | undefined, field: string): SnapshotId {
  if (!w) throw new Error(`${field} is missing`);
  return { endOffset: num(w.endOffset), epoch: num(w.epoch) };
}

export function fetchSnapshotResponseWire(m: FetchSnapshotResponse): Wire {
  return {
    from: m.from,
    epoch: m.epoch,
    error: m.error ? fetchSnapshotErrors.indexOf(m.error) : 0,
    leaderId: m.leaderId ?? '',
    snapshotId: { endOffset: m.snapshot.endOffset, epoch: m.snapshot.epoch },
    sizeBytes: m.sizeBytes,
    position: m.position,
    bytes: m.bytes,
    chunkCrc: m.chunkCrc,
  };
}

/** The leader's FetchSnapshotResponse as the follower's transfer takes it. */
export function fetchSnapshotResponseOf(w: Wire): FetchSnapshotResponse {
  const errorIndex = Number(w.error ?? 0);
  if (!Number.isInteger(errorIndex) || errorIndex < 0 || errorIndex >= fetchSnapshotErrors.length) throw new Error(`unknown FetchSnapshot error ${errorIndex}`);
  const error = fetchSnapshotErrors[errorIndex];
  const bytes = (w.bytes as Uint8Array | undefined) ?? new Uint8Array(0);
  return {
    from: String(w.from ?? ''),
    epoch: num(w.epoch),
    ...(error ? { error } : {}),
    leaderId: w.leaderId ? String(w.leaderId) : null,
    snapshot: snapshotIdOf(w.snapshotId as Wire | null | undefined, 'snapshotId'),
    sizeBytes: num(w.sizeBytes),
    position: num(w.position),
    bytes,
    chunkCrc: num(w.chunkCrc),
  };
}

const shuttingDown: Refusal = { code: grpc.status.UNAVAILABLE, details: 'replica is shutting down' };

function malformed(error: unknown): Refusal {
  return { code: grpc.status.INVALID_ARGUMENT, details: `malformed peer request: ${(error as Error).message}` };
}

// The core checks a request against its state before changing anything; a request that
// contradicts it (a second leader claiming this epoch) can come from a faulty or hostile member,
// so it is refused with a status instead of stopping the broker.
function contradiction(error: Error): Refusal {
  if (error instanceof InvariantError)
    return { code: grpc.status.FAILED_PRECONDITION, details: `refused: the request contradicts this replica's state (${error.message})` };
  if (error instanceof Unimplemented) return { code: grpc.status.UNIMPLEMENTED, details: error.message };
  if (error instanceof MambaError) {
    const mapped = toStatus(error); // the one table of kinds to codes (a full chunk-read bound: RESOURCE_EXHAUSTED)
    return { code: mapped.code, details: mapped.details };
  }
  return { code: grpc.status.INTERNAL, details: error.message };
}

interface FetchStreamServing {
  refusalOf(request: Wire): Refusal | null;
  toFetch(request: Wire): FetchRequest;
  codec: EntryWireCodec;
  handler: PeerRequestHandler;
}

/**
 * One follower's FetchStream on the leader: each request is checked as a unary Fetch is and
 * handed to the replica; each answer is written when the replica has it. A refusal ends the
 * stream with its status; however the stream ends, the replica drops what it still parks for it.
 */
function serveFetchStream(call: grpc.ServerDuplexStream<Wire, Wire>, serving: FetchStreamServing): void {
  const channel: FetchChannel = {};
  let unansweredCount = 0;
  let open = true;
  const finish = (refusal: Refusal | null): void => {
    if (!open) return;
    open = false;
    serving.handler.dropChannel?.(channel);
    if (refusal) call.emit('error', refusal);
    else call.end();
  };
  call.on('data', (request: Wire | MalformedRequest) => {
    if (!open) return;
    if (request instanceof MalformedRequest) return finish(malformed(new Error(`not a FetchRequest: ${request.reason.slice(0, 200)}`)));
    const refusal = serving.refusalOf(request);
    if (refusal) return finish(refusal);
    let message: FetchRequest;
    try {
      message = serving.toFetch(request);
    } catch (error) {
      return finish(malformed(error));
    }
    if (unansweredCount >= fetchStreamInflightMax) {
      return finish({ code: grpc.status.RESOURCE_EXHAUSTED, details: `more than ${fetchStreamInflightMax} Fetches unanswered on one stream` });
    }
    unansweredCount++;
    serving.handler.handle(message, Number(request.waitMsMax ?? 0), channel).then(
      (answer) => {
        unansweredCount--;
        if (!open) return;
        if (answer) call.write(fetchResponseWire(answer, serving.codec));
        else finish(shuttingDown);
      },
      (error: Error) => finish(contradiction(error)),
    );
  });
  call.on('end', () => finish(null)); // the follower closed its side (it fetches elsewhere now)
  const gone = (): void => {
    if (!open) return;
    open = false;
    serving.handler.dropChannel?.(channel);
  };
  call.on('cancelled', gone);
  call.on('close', gone);
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

/** The core's FetchResponse on the wire; every field of it travels (fetchResponseOf reads them back). */
export function fetchResponseWire(m: Message, codec: EntryWireCodec): Wire {
  if (m.type !== 'FetchResponse') throw new Error(`core answered a Fetch with ${m.type}`);
  return {
    from: m.from,
    epoch: m.epoch,
    error: m.error ? fetchErrors.indexOf(m.error) : 0,
    leaderId: m.leaderId ?? '',
    divergingEpoch: m.divergingEpoch ? { epoch: m.divergingEpoch.epoch, endOffset: m.divergingEpoch.endOffset } : null,
    snapshotId: m.snapshotNeeded ? { endOffset: m.snapshotNeeded.endOffset, epoch: m.snapshotNeeded.epoch } : null,
    fetchOffset: m.fetchOffset,
    lastFetchedEpoch: m.lastFetchedEpoch,
    requestId: m.requestId,
    highWatermark: m.highWatermark,
    batches: m.entries.map((e) => codec.toBatch(e)),
    votersFetchedSinceRecovering: m.votersFetchedSinceRecovering === true,
  };
}

interface PeerEndpoint {
  id: ReplicaId;
  address: string; // host:port of its peer listener
}

type RpcName = 'PreVote' | 'Vote' | 'BeginQuorumEpoch' | 'TransferLeadership';

/** The follower's end of its FetchStream to one leader. */
interface FetchStreamClient {
  peer: ReplicaId;
  call: grpc.ClientDuplexStream<Wire, Wire>;
  /** Request id → when it was written (ms); answers remove theirs. At most fetchStreamInflightMax. */
  unanswered: Map<number, number>;
}

/**
 * A peer addressed by a DNS name (a Kubernetes pod's stable name) comes back from a restart at
 * a new address: grpc-js looks the name up again when a connection fails, but by default not
 * within 30 s of the last look-up, which may have returned the old address while the pod was
 * being replaced. One second keeps a rejoining peer's wait near the election timeout; a look-up
 * happens only after a failed connection, so a stable group asks nothing.
 */
export const peerDnsResolutionMsMin = 1000;

/**
 * Clients to the other replicas of the group. `send` maps a core request to its RPC and hands
 * the answer back through `deliver`; a failed call is dropped (the core retries on its ticks).
 * Fetches go on one stream to the current leader: opened on the first Fetch to it, closed when
 * the core fetches from another replica, and replaced when it breaks, when an answer is overdue
 * (fetchWaitMsMax + requestTimeoutMs, the unary call's deadline) or when it is full.
 */
export class PeerClients {
  /** Peer clients by replica id, with the address each was made for. */
  private readonly clients = new Map<ReplicaId, { address: string; client: grpc.Client }>();
  /** The cluster file's peer addresses of the group (they win over the log's). */
  private readonly fileAddresses = new Map<ReplicaId, string>();
  private readonly Client = grpc.makeGenericClientConstructor(serviceDefinition('mamba.raft.v1.RaftPeer'), 'RaftPeer');
  private fetchStream: FetchStreamClient | null = null;
  private closed = false;

  /**
   * The address book: `peers` (the cluster file's brokers of the group) first, then `resolve` for
   * any other id (the members the log added, with the peer address their membership entry carries).
   * A client is made on the first message to a peer and kept; one whose resolved address changed
   * (a member removed and added again elsewhere) is replaced.
   */
  constructor(
    private readonly self: PeerIdentity,
    peers: PeerEndpoint[],
    private readonly codec: EntryWireCodec,
    private readonly deliver: (answer: Message) => void,
    private readonly timing: { fetchWaitMsMax: number; requestTimeoutMs: number },
    private readonly onError: (peer: ReplicaId, rpc: string, error: grpc.ServiceError) => void,
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
    private readonly resolve: (id: ReplicaId) => string | null = () => null,
  ) {
    for (const peer of peers) if (peer.id !== self.replicaId) this.fileAddresses.set(peer.id, peer.address);
  }

  /** The client for `id`, made on first use from the address book; null when no address is known. */
  private clientOf(id: ReplicaId): grpc.Client | null {
    if (id === this.self.replicaId) return null;
    const address = this.fileAddresses.get(id) ?? this.resolve(id);
    const known = this.clients.get(id);
    if (known && (address === null || known.address === address)) return known.client;
    if (address === null) return null;
    if (known) {
      if (this.fetchStream?.peer === id) this.closeFetchStream(this.fetchStream);
      known.client.close();
    }
    const client = new this.Client(address, this.credentials, {
      'grpc.max_receive_message_length': 512 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': 50,
      'grpc.max_reconnect_backoff_ms': 250,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.dns_min_time_between_resolutions_ms': peerDnsResolutionMsMin,
      // No transparent retries: the core retries on its own, and a retrying call keeps a copy of
      // every message written on a long-lived FetchStream until the stream commits.
      'grpc.enable_retries': 0,
    });
    this.clients.set(id, { address, client });
    return client;
  }

  send(message: Message): void {
    if (this.closed) return;
    const client = this.clientOf(message.to);
    if (!client) return;
    const sender = { cluster: this.self.cluster, group: this.self.group, replicaId: this.self.replicaId };
    switch (message.type) {
      case 'PreVoteRequest':
      case 'VoteRequest':
        this.call(
          client,
          message.type === 'PreVoteRequest' ? 'PreVote' : 'Vote',
          message.to,
          {
            sender,
            to: message.to,
            epoch: message.epoch,
            lastEpoch: message.lastEpoch,
            lastOffset: message.lastOffset,
          },
          (w) => ({
            type: message.type === 'PreVoteRequest' ? 'PreVoteResponse' : 'VoteResponse',
            from: message.to,
            to: this.self.replicaId,
            epoch: num(w.epoch),
            granted: !!w.granted,
          }),
        );
        return;
      case 'BeginQuorumEpoch':
        this.call(client, 'BeginQuorumEpoch', message.to, { sender, to: message.to, epoch: message.epoch }, (w) => ({
          type: 'BeginQuorumEpochResponse',
          from: message.to,
          to: this.self.replicaId,
          epoch: num(w.epoch),
        }));
        return;
      case 'FetchRequest':
        this.sendFetch(client, message, {
          sender,
          to: message.to,
          epoch: message.epoch,
          fetchOffset: message.fetchOffset,
          lastFetchedEpoch: message.lastFetchedEpoch,
          bytesMax: message.bytesMax,
          waitMsMax: this.timing.fetchWaitMsMax,
          requestId: message.requestId,
          recovering: message.recovering === true,
        });
        return;
      case 'TimeoutNow':
        this.call(client, 'TransferLeadership', message.to, { sender, to: message.to, epoch: message.epoch }, () => null);
        return;
      default:
        // Answers to incoming requests travel back on their own calls, never through here.
        return;
    }
  }

  private sendFetch(client: grpc.Client, message: FetchRequest, request: Wire): void {
    const nowMs = Date.now();
    let stream = this.fetchStream;
    if (stream && (stream.peer !== message.to || stream.unanswered.size >= fetchStreamInflightMax || this.overdue(stream, nowMs))) {
      this.closeFetchStream(stream);
      stream = null;
    }
    stream ??= this.openFetchStream(client, message.to);
    stream.unanswered.set(message.requestId, nowMs);
    stream.call.write(request);
  }

  private overdue(stream: FetchStreamClient, nowMs: number): boolean {
    const limitMs = this.timing.fetchWaitMsMax + this.timing.requestTimeoutMs;
    for (const sentMs of stream.unanswered.values()) if (nowMs - sentMs > limitMs) return true;
    return false;
  }

  private openFetchStream(client: grpc.Client, peer: ReplicaId): FetchStreamClient {
    const call = (client as unknown as { FetchStream(options: grpc.CallOptions): grpc.ClientDuplexStream<Wire, Wire> }).FetchStream({});
    const stream: FetchStreamClient = { peer, call, unanswered: new Map() };
    this.fetchStream = stream;
    call.on('data', (wire: Wire) => {
      if (this.closed || this.fetchStream !== stream) return;
      let answer: Message;
      try {
        answer = this.fetchResponse(wire, peer);
      } catch (e) {
        this.onError(peer, 'FetchStream', internalError((e as Error).message));
        return;
      }
      stream.unanswered.delete(answer.type === 'FetchResponse' ? answer.requestId : -1);
      this.deliver(answer);
    });
    // A broken stream is forgotten; the core's next Fetch (at once, or its retry) opens another.
    call.on('error', (error: grpc.ServiceError) => {
      if (this.fetchStream !== stream) return; // closed by us
      this.fetchStream = null;
      if (!this.closed) this.onError(peer, 'FetchStream', error);
    });
    call.on('end', () => {
      if (this.fetchStream === stream) this.fetchStream = null;
    });
    return stream;
  }

  private closeFetchStream(stream: FetchStreamClient): void {
    if (this.fetchStream === stream) this.fetchStream = null;
    stream.call.cancel();
  }

  private fetchResponse(w: Wire, from: ReplicaId): Message {
    return fetchResponseOf(w, from, this.self.replicaId, this.codec);
  }

  /**
   * One FetchSnapshot call (KIP-630) to `request.to`, with the unary deadline or at least
   * snapshotCallTimeoutMsMin (a chunk is up to 1 MiB); rejects when the call fails.
   */
  fetchSnapshot(request: FetchSnapshotRequest): Promise<FetchSnapshotResponse> {
    const client = this.closed ? null : this.clientOf(request.to);
    if (this.closed || !client) return Promise.reject(new Error(`no peer client for ${request.to}`));
    const wire: Wire = {
      sender: { cluster: this.self.cluster, group: this.self.group, replicaId: this.self.replicaId },
      to: request.to,
      leaderEpoch: request.leaderEpoch,
      snapshotId: { endOffset: request.snapshot.endOffset, epoch: request.snapshot.epoch },
      position: request.position,
      bytesMax: request.bytesMax,
    };
    const method = (
      client as unknown as Record<'FetchSnapshot', (req: Wire, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>
    ).FetchSnapshot;
    const deadline = Date.now() + Math.max(this.timing.requestTimeoutMs, snapshotCallTimeoutMsMin);
    return new Promise((resolve, reject) => {
      method.call(client, wire, { deadline }, (error, answer) => {
        if (error || !answer) {
          if (error && !this.closed) this.onError(request.to, 'FetchSnapshot', error);
          return reject(error ?? new Error('FetchSnapshot answered nothing'));
        }
        try {
          resolve(fetchSnapshotResponseOf(answer));
        } catch (e) {
          this.onError(request.to, 'FetchSnapshot', internalError((e as Error).message));
          reject(e);
        }
      });
    });
  }

  private call(
    client: grpc.Client,
    rpc: RpcName,
    peer: ReplicaId,
    request: Wire,
    answer: (w: Wire) => Message | null,
    timeoutMs = this.timing.requestTimeoutMs,
  ): void {
    const method = (client as unknown as Record<RpcName, (req: Wire, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void>)[
      rpc
    ];
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
        this.onError(peer, rpc, internalError((e as Error).message));
        return;
      }
      if (message) this.deliver(message);
    });
  }

  close(): void {
    this.closed = true;
    if (this.fetchStream) this.closeFetchStream(this.fetchStream);
    for (const { client } of this.clients.values()) client.close();
  }
}

/** The deadline of a FetchSnapshot call is the unary one, but never below this. */
export const snapshotCallTimeoutMsMin = 5000;

/** A FetchResponse off the wire, every field of fetchResponseWire back (snapshotNeeded included). */
export function fetchResponseOf(w: Wire, from: ReplicaId, to: ReplicaId, codec: EntryWireCodec): FetchResponse {
  const errorIndex = Number(w.error ?? 0);
  const error = fetchErrors[errorIndex];
  const diverging = w.divergingEpoch as Wire | null | undefined;
  const snapshot = w.snapshotId as Wire | null | undefined;
  return {
    type: 'FetchResponse',
    from,
    to,
    epoch: num(w.epoch),
    ...(error ? { error } : {}),
    leaderId: w.leaderId ? String(w.leaderId) : null,
    ...(diverging ? { divergingEpoch: { epoch: num(diverging.epoch), endOffset: num(diverging.endOffset) } } : {}),
    ...(snapshot ? { snapshotNeeded: { endOffset: num(snapshot.endOffset), epoch: num(snapshot.epoch) } } : {}),
    fetchOffset: num(w.fetchOffset),
    lastFetchedEpoch: num(w.lastFetchedEpoch),
    requestId: num(w.requestId),
    entries: codec.fromBatches((w.batches as Buffer[] | undefined) ?? []),
    highWatermark: num(w.highWatermark),
    ...(w.votersFetchedSinceRecovering === true ? { votersFetchedSinceRecovering: true } : {}),
  };
}

function internalError(details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code: grpc.status.INTERNAL, details, metadata: new grpc.Metadata() });
}
