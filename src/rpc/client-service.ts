// The client API (mamba.v1.Mamba) over gRPC: decodes requests into the broker's typed calls and
// maps every error through the one status table (status.ts).
import type * as grpc from '@grpc/grpc-js';
import { Metadata as GrpcMetadata } from '@grpc/grpc-js';
import { InvalidArgumentError } from '../errors.js';
import {
  recordsOfBlocks,
  type AckLevel,
  type Broker,
  type ConsumeResult,
  type AddReplicaResult,
  type ConsumerGroupDescription,
  type GroupInfo,
  type MemberInfo,
  type MembershipChange,
  type TransferLeaderResult,
  type ProduceMessage,
  type ProduceRequest,
} from '../broker/broker.js';
import { ProduceStreamSession, type ProduceStreamLimits } from './produce-stream.js';
import { serveBackup, type BackupStreamIdentity } from './backup-stream.js';
import { serviceDefinition } from '../protocol/protos.js';
import { metadataToWire } from '../protocol/metadata.js';
import { toStatus } from '../protocol/status.js';

type Wire = Record<string, unknown>;

/** Metadata a broker sets when it forwards a request to another group (no further forwarding). */
export const forwardedKey = 'mamba-forwarded';
/** DescribeCluster with this metadata describes only the callee's own group. */
export const scopeKey = 'mamba-scope';

/** AckLevel enum of mamba.proto → the broker's ack level (ACK_DEFAULT means quorum). */
const ackLevels: ReadonlyMap<number, AckLevel> = new Map([
  [0, 'quorum'],
  [1, 'none'],
  [2, 'leader'],
  [3, 'quorum'],
]);
/** A ProduceStream holds at most this many times requestBytesMax in flight. */
const produceStreamRequestsOfBytes = 4;
const subscribeWaitMs = 1000;

function str(value: unknown, field: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new InvalidArgumentError(`${field} must be a string`);
  return value;
}

function int(value: unknown, field: string): number {
  const n = Number(value ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${field} must be a non-negative integer below 2^53, got ${String(value)}`);
  return n;
}

function required(value: string, field: string): string {
  if (value.length === 0) throw new InvalidArgumentError(`${field} is required`);
  return value;
}

function ackOf(value: unknown): AckLevel {
  const ack = ackLevels.get(Number(value ?? 0));
  if (!ack) throw new InvalidArgumentError(`ack ${String(value)} is not a known level (0..3)`);
  return ack;
}

/**
 * The one decoder of a ProduceRequest (unary Produce and every request of a ProduceStream). The
 * messages go to the broker as protobufjs decoded them: their field types are fixed by the schema
 * (protos.ts), and the broker checks and encodes them in one pass (broker/produce-encoding.ts).
 */
export function produceRequestOf(w: Wire): ProduceRequest {
  return {
    topic: required(str(w.topic, 'topic'), 'topic'),
    queue: int(w.queue, 'queue'),
    messages: Array.isArray(w.messages) ? (w.messages as ProduceMessage[]) : [],
    ack: ackOf(w.ack),
    producerId: int(w.producerId, 'producer_id'),
    sequence: int(w.sequence, 'sequence'),
  };
}

/**
 * A ConsumeResponse: the stored blocks as they are when the client asked for blocks (nothing per
 * message), else one Record per message.
 */
function consumeWire(r: ConsumeResult, blocks: boolean): Wire {
  return {
    topic: r.topic,
    queue: r.queue,
    nextOffset: r.nextOffset,
    highWatermark: r.highWatermark,
    startOffset: r.startOffset,
    servedBy: r.servedBy,
    advice: r.advice ? { replicaId: r.advice.replicaId, address: r.advice.address, reason: r.advice.reason } : null,
    records: blocks
      ? []
      : recordsOfBlocks(r.blocks).map((x) => ({
          offset: x.offset,
          timestampMs: x.timestampMs,
          key: x.key ?? Buffer.alloc(0),
          body: x.body ?? Buffer.alloc(0),
          headers: x.headers.map((h) => ({ key: h.key, value: h.value ?? Buffer.alloc(0) })),
        })),
    blocks: blocks ? r.blocks : [],
  };
}

export function groupWire(g: GroupInfo): Wire {
  return {
    id: g.id,
    leaderId: g.leaderId,
    epoch: g.epoch,
    highWatermark: g.highWatermark,
    replicas: g.replicas.map((r) => ({ ...r })),
    advice: g.advice ? { ...g.advice } : null,
  };
}

/** A DescribeConsumerGroupResponse: a committed offset of null is `committed: false`. */
export function consumerGroupWire(d: ConsumerGroupDescription): Wire {
  return {
    consumerGroup: d.consumerGroup,
    topic: d.topic,
    members: d.members.map((m) => ({ ...m })),
    queues: d.queues.map(({ committedOffset, ...q }) => ({ ...q, committed: committedOffset !== null, committedOffset: committedOffset ?? 0 })),
    lagMessages: d.lagMessages,
    generation: d.generation,
    sessionTimeoutMs: d.sessionTimeoutMs,
    groupsUnreachable: d.groupsUnreachable,
  };
}

/** A ReplicaMember list of mamba.proto. */
function membersWire(members: readonly MemberInfo[]): Wire[] {
  return members.map((m) => ({ id: m.id, role: m.role, clientAddress: m.clientAddress, peerAddress: m.peerAddress }));
}

export function addReplicaWire(r: AddReplicaResult): Wire {
  return { group: r.group, learnerOffset: r.learnerOffset, promotedOffset: r.promotedOffset, members: membersWire(r.members) };
}

export function removeReplicaWire(r: MembershipChange): Wire {
  return { group: r.group, offset: r.offset, members: membersWire(r.members) };
}

export function transferLeaderWire(r: TransferLeaderResult): Wire {
  return { group: r.group, previousLeaderId: r.previousLeaderId, leaderId: r.leaderId, epoch: r.epoch };
}

export const metadataVersionKey = 'mamba-metadata-version';

function metadataVersionTrailer(version: number): grpc.Metadata {
  const trailer = new GrpcMetadata();
  trailer.set(metadataVersionKey, String(version));
  return trailer;
}

function portOf(value: unknown): number {
  const port = Number(value ?? 0);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new InvalidArgumentError(`group.brokers.client_port ${String(value)} is out of range [1, 65535]`);
  return port;
}

function isForwarded(call: { metadata: grpc.Metadata }): boolean {
  return call.metadata.get(forwardedKey).length > 0;
}

type Unary = (request: Wire, call: grpc.ServerUnaryCall<Wire, Wire>) => Promise<Wire>;

/** The settings the client API reads (config's BrokerSettings has them). */
export interface ClientServiceSettings {
  inflightPerConnectionMax: number;
  requestBytesMax: number;
}

export function addClientService(server: grpc.Server, broker: Broker, settings: ClientServiceSettings, identity: BackupStreamIdentity): void {
  const unary =
    (handler: Unary): grpc.handleUnaryCall<Wire, Wire> =>
    (call, callback) => {
      broker
        .track(() => handler(call.request, call))
        .then(
          // Every answer carries the cluster metadata version: a client holding an older one refreshes.
          (reply) => callback(null, reply, metadataVersionTrailer(broker.metadataVersion)),
          (error: unknown) => {
            const s = toStatus(error);
            callback({ code: s.code, details: s.details, metadata: s.metadata });
          },
        );
    };
  // A stream may hold as many requests as a connection may hold calls (the guard's bound).
  const streamLimits: ProduceStreamLimits = {
    inflightMax: settings.inflightPerConnectionMax,
    inflightBytesMax: produceStreamRequestsOfBytes * settings.requestBytesMax,
  };
  server.addService(serviceDefinition('mamba.v1.Mamba'), {
    Produce: unary(async (w) => ({ ...(await broker.produce(produceRequestOf(w))) })),
    ProduceStream: (call: grpc.ServerDuplexStream<Wire, Wire>) => {
      new ProduceStreamSession(call, broker, produceRequestOf, streamLimits);
    },
    Consume: unary(async (w, call) =>
      consumeWire(
        await broker.consume(
          {
            topic: required(str(w.topic, 'topic'), 'topic'),
            queue: int(w.queue, 'queue'),
            offset: int(w.offset, 'offset'),
            consumerGroup: str(w.consumerGroup, 'consumer_group'),
            useCommitted: !!w.useCommitted,
            messagesMax: int(w.messagesMax, 'messages_max'),
            bytesMax: int(w.bytesMax, 'bytes_max'),
            waitMsMax: int(w.waitMsMax, 'wait_ms_max'),
          },
          () => call.cancelled,
        ),
        !!w.blocks,
      ),
    ),
    Subscribe: (call: grpc.ServerWritableStream<Wire, Wire>) => {
      void subscribe(broker, call);
    },
    CommitOffset: unary(async (w) => {
      await broker.commitOffset(
        required(str(w.consumerGroup, 'consumer_group'), 'consumer_group'),
        required(str(w.topic, 'topic'), 'topic'),
        int(w.queue, 'queue'),
        int(w.offset, 'offset'),
      );
      return {};
    }),
    FetchOffset: unary(async (w) => {
      const offset = broker.fetchOffset(
        required(str(w.consumerGroup, 'consumer_group'), 'consumer_group'),
        required(str(w.topic, 'topic'), 'topic'),
        int(w.queue, 'queue'),
      );
      return offset === null ? { found: false, offset: 0 } : { found: true, offset };
    }),
    CreateTopic: unary(async (w, call) => ({
      topic: await broker.createTopic(required(str(w.name, 'name'), 'name'), int(w.queues, 'queues'), isForwarded(call)),
      metadataVersion: broker.metadataVersion,
    })),
    DeleteTopic: unary(async (w, call) => {
      await broker.deleteTopic(required(str(w.name, 'name'), 'name'), isForwarded(call));
      return {};
    }),
    ListTopics: unary(async () => ({ topics: broker.listTopics() })),
    DescribeTopic: unary(async (w) => {
      const name = required(str(w.name, 'name'), 'name');
      broker.describeTopic(name, []); // NOT_FOUND before asking the other groups
      const described = broker.describeTopic(name, await broker.describeCluster());
      return { topic: described.topic, queues: described.queues, metadataVersion: broker.metadataVersion };
    }),
    Heartbeat: unary(async (w) => {
      const owned = Array.isArray(w.ownedQueues) ? (w.ownedQueues as unknown[]).map((q) => int(q, 'owned_queues')) : [];
      const r = broker.heartbeat(
        required(str(w.consumerGroup, 'consumer_group'), 'consumer_group'),
        required(str(w.topic, 'topic'), 'topic'),
        required(str(w.memberId, 'member_id'), 'member_id'),
        owned,
        !!w.leave,
      );
      return { ...r };
    }),
    ListConsumerGroups: unary(async (_w, call) => ({ ...(await broker.listConsumerGroups(isForwarded(call))) })),
    DescribeConsumerGroup: unary(async (w, call) =>
      consumerGroupWire(
        await broker.describeConsumerGroup(
          required(str(w.consumerGroup, 'consumer_group'), 'consumer_group'),
          required(str(w.topic, 'topic'), 'topic'),
          isForwarded(call),
        ),
      ),
    ),
    AddReplica: unary(async (w, call) =>
      addReplicaWire(
        await broker.addReplica(
          {
            group: required(str(w.group, 'group'), 'group'),
            id: required(str(w.id, 'id'), 'id'),
            clientAddress: required(str(w.clientAddress, 'client_address'), 'client_address'),
            peerAddress: required(str(w.peerAddress, 'peer_address'), 'peer_address'),
            waitMsMax: int(w.waitMsMax, 'wait_ms_max'),
          },
          isForwarded(call),
        ),
      ),
    ),
    RemoveReplica: unary(async (w, call) =>
      removeReplicaWire(
        await broker.removeReplica(
          {
            group: required(str(w.group, 'group'), 'group'),
            id: required(str(w.id, 'id'), 'id'),
            force: !!w.force,
            waitMsMax: int(w.waitMsMax, 'wait_ms_max'),
          },
          isForwarded(call),
        ),
      ),
    ),
    TransferLeader: unary(async (w, call) =>
      transferLeaderWire(
        await broker.transferLeader(
          { group: required(str(w.group, 'group'), 'group'), to: str(w.to, 'to'), waitMsMax: int(w.waitMsMax, 'wait_ms_max') },
          isForwarded(call),
        ),
      ),
    ),
    Backup: (call: grpc.ServerWritableStream<Wire, Wire>) => {
      void serveBackup(broker, identity, call);
    },
    DescribeCluster: unary(async (_w, call) => {
      if (call.metadata.get(scopeKey)[0] === 'group')
        return { groups: [groupWire(await broker.describeOwnGroup(true))], metadataVersion: broker.metadataVersion };
      return { groups: (await broker.describeCluster()).map(groupWire), metadataVersion: broker.metadataVersion };
    }),
    GetMetadata: unary(async (w) => ({
      metadata: metadataToWire(await broker.metadata(int(w.knownVersion, 'known_version'), int(w.waitMsMax, 'wait_ms_max'))),
    })),
    AddGroup: unary(async (w) => {
      const group = w.group as Record<string, unknown> | undefined;
      if (!group) throw new InvalidArgumentError('group is required');
      const brokers = Array.isArray(group.brokers) ? (group.brokers as Wire[]) : [];
      return {
        metadata: metadataToWire(
          await broker.addGroup({
            id: required(str(group.id, 'group.id'), 'group.id'),
            brokers: brokers.map((b) => ({
              id: required(str(b.id, 'group.brokers.id'), 'group.brokers.id'),
              host: required(str(b.host, 'group.brokers.host'), 'group.brokers.host'),
              clientPort: portOf(b.clientPort),
            })),
          }),
        ),
      };
    }),
    AddQueues: unary(async (w) => {
      const result = await broker.addQueues(required(str(w.topic, 'topic'), 'topic'), int(w.count, 'count'));
      return { topic: result.topic, placement: result.placement, metadataVersion: result.metadataVersion };
    }),
  });
}

/** A server stream of Consume replies; ends when the client cancels or on the first error. */
async function subscribe(broker: Broker, call: grpc.ServerWritableStream<Wire, Wire>): Promise<void> {
  const w = call.request;
  try {
    const topic = required(str(w.topic, 'topic'), 'topic');
    const queue = int(w.queue, 'queue');
    const consumerGroup = str(w.consumerGroup, 'consumer_group');
    let offset = int(w.offset, 'offset');
    let useCommitted = !!w.useCommitted;
    const blocks = !!w.blocks;
    // Bounded by the call: every round waits up to subscribeWaitMs, and a cancelled call stops it.
    while (!call.cancelled) {
      const result = await broker.consume(
        {
          topic,
          queue,
          offset,
          consumerGroup,
          useCommitted,
          messagesMax: int(w.messagesMax, 'messages_max'),
          bytesMax: int(w.bytesMax, 'bytes_max'),
          waitMsMax: subscribeWaitMs,
        },
        () => call.cancelled,
      );
      useCommitted = false;
      offset = result.nextOffset;
      if (result.messageCount === 0 || call.cancelled) continue;
      if (!call.write(consumeWire(result, blocks))) await new Promise<void>((resolve) => call.once('drain', resolve));
    }
    call.end();
  } catch (error) {
    const s = toStatus(error);
    call.destroy(Object.assign(new Error(s.details), { code: s.code, details: s.details, metadata: s.metadata }));
  }
}
