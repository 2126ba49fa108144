// The messages of the client API (proto/mamba.proto, service mamba.v1.Mamba) as TypeScript types,
// written by hand to match what protos.ts's codecs really take and give:
//
//   - Both directions go through protobufjs message types (protos.ts: `encode` to send, `decode`
//     on receipt; @grpc/proto-loader only feeds server reflection). Field names are camelCase
//     (protobufjs's default; no keepCase), `consumer_group` is `consumerGroup`.
//   - 64-bit integers (uint64, int64) are plain numbers: protos.ts turns protobufjs's Long off, so
//     a value at or above 2^53 loses precision (offsets and ids stay below it, asserted where made).
//   - Enums are numbers on the wire and in both directions (`encode` does not read enum names).
//   - Decoded messages read every field: unset scalars read their proto3 default (0, '', false)
//     from the message's prototype, an unset sub-message reads null, an unset repeated field an
//     empty array, and an unset `bytes` field a frozen empty array (not a Buffer): `WireBytes`.
//     A set `bytes` field is a Buffer.
//   - What is sent may leave any field out: the encoder skips undefined and null (proto3 default).
//
// So there are two shapes: requests (`…Request`, and the parts only requests carry) with every
// field optional, and answers with every field present. The method tables at the end tie each RPC
// name to its request and answer; src/client's transport is typed by them.

// ------------------------------------------------------------------ scalars

/** A decoded `bytes` field: a Buffer when set, protobufjs's frozen empty array when not. */
export type WireBytes = Buffer | readonly [];

/** The bytes of a decoded `bytes` field as a Buffer (a view, never a copy). */
export function bytesOf(value: WireBytes): Buffer {
  return Buffer.isBuffer(value) ? value : emptyBytes;
}

const emptyBytes = Buffer.alloc(0);

/** A message without fields (proto3 `{}`). */
export type Empty = Readonly<Record<string, never>>;

// ------------------------------------------------------------------ ack levels

/** The AckLevel enum of mamba.proto, by its wire numbers. */
export const AckLevel = {
  /** ACK_DEFAULT: unset, which means quorum. */
  default: 0,
  none: 1,
  leader: 2,
  quorum: 3,
} as const;
export type AckLevel = (typeof AckLevel)[keyof typeof AckLevel];

/** The ack levels as the SDK and the CLI name them (DESIGN §6). */
export type Ack = 'none' | 'leader' | 'quorum';
export const acks: readonly Ack[] = ['none', 'leader', 'quorum'];

/** The one mapping from Ack to the wire enum and back. */
const ackLevelOf: Readonly<Record<Ack, AckLevel>> = { none: AckLevel.none, leader: AckLevel.leader, quorum: AckLevel.quorum };
const ackOfLevel: ReadonlyMap<number, Ack> = new Map<number, Ack>([
  [AckLevel.default, 'quorum'],
  [AckLevel.none, 'none'],
  [AckLevel.leader, 'leader'],
  [AckLevel.quorum, 'quorum'],
]);

export function isAck(value: unknown): value is Ack {
  return typeof value === 'string' && (acks as readonly string[]).includes(value);
}

export function ackToWire(ack: Ack): AckLevel {
  return ackLevelOf[ack];
}

/** The Ack of a wire AckLevel (ACK_DEFAULT is quorum), or null for a number the enum lacks. */
export function ackFromWire(level: number): Ack | null {
  return ackOfLevel.get(level) ?? null;
}

// ------------------------------------------------------------------ produce

/** A Header as sent. */
export interface HeaderRequest {
  key?: string;
  value?: Uint8Array;
}

export interface Header {
  key: string;
  value: WireBytes;
}

/** A Message (of a ProduceRequest) as sent. */
export interface MessageRequest {
  key?: Uint8Array;
  headers?: readonly HeaderRequest[];
  body?: Uint8Array;
  /** Milliseconds since the epoch; 0 or unset: the broker's clock on arrival. */
  timestampMs?: number;
}

export interface ProduceRequest {
  topic?: string;
  queue?: number;
  messages?: readonly MessageRequest[];
  ack?: AckLevel;
  /** 0 or unset: not idempotent. */
  producerId?: number;
  sequence?: number;
}

export interface ProduceResponse {
  topic: string;
  queue: number;
  baseOffset: number;
  count: number;
  duplicate: boolean;
}

export interface ProduceStreamRequest {
  clientSequence?: number;
  request?: ProduceRequest;
}

export interface ProduceError {
  /** The gRPC status code the unary Produce would have ended with. */
  code: number;
  details: string;
  leaderId: string;
  leaderAddress: string;
  sequenceGap: boolean;
}

/** Exactly one of result and error is set (the other reads null). */
export interface ProduceStreamResponse {
  clientSequence: number;
  result: ProduceResponse | null;
  error: ProduceError | null;
}

// ------------------------------------------------------------------ consume

export interface ReadAdvice {
  replicaId: string;
  address: string;
  reason: string;
}

export interface ConsumeRequest {
  topic?: string;
  queue?: number;
  offset?: number;
  consumerGroup?: string;
  useCommitted?: boolean;
  messagesMax?: number;
  bytesMax?: number;
  waitMsMax?: number;
  blocks?: boolean;
}

/** mamba.proto's Record (renamed: `Record` is TypeScript's). */
export interface RecordMessage {
  offset: number;
  timestampMs: number;
  key: WireBytes;
  headers: readonly Header[];
  body: WireBytes;
}

export interface RecordBlock {
  queueOffset: number;
  count: number;
  firstTimestampMs: number;
  records: WireBytes;
}

export interface ConsumeResponse {
  topic: string;
  queue: number;
  records: readonly RecordMessage[];
  nextOffset: number;
  highWatermark: number;
  startOffset: number;
  advice: ReadAdvice | null;
  servedBy: string;
  blocks: readonly RecordBlock[];
}

export interface SubscribeRequest {
  topic?: string;
  queue?: number;
  offset?: number;
  consumerGroup?: string;
  useCommitted?: boolean;
  messagesMax?: number;
  bytesMax?: number;
  blocks?: boolean;
}

// ------------------------------------------------------------------ consumer offsets and groups

export interface CommitOffsetRequest {
  topic?: string;
  queue?: number;
  consumerGroup?: string;
  offset?: number;
}

export type CommitOffsetResponse = Empty;

export interface FetchOffsetRequest {
  topic?: string;
  queue?: number;
  consumerGroup?: string;
}

export interface FetchOffsetResponse {
  found: boolean;
  offset: number;
}

export interface HeartbeatRequest {
  consumerGroup?: string;
  topic?: string;
  memberId?: string;
  ownedQueues?: readonly number[];
  leave?: boolean;
}

export interface HeartbeatResponse {
  generation: number;
  assignedQueues: readonly number[];
  members: readonly string[];
  sessionTimeoutMs: number;
}

// ------------------------------------------------------------------ consumer-group lag

export type ListConsumerGroupsRequest = Empty;

export interface ConsumerGroupListing {
  consumerGroup: string;
  topic: string;
  memberCount: number;
  committedQueueCount: number;
}

export interface ListConsumerGroupsResponse {
  consumerGroups: readonly ConsumerGroupListing[];
  groupsUnreachable: readonly string[];
  truncated: boolean;
}

export interface DescribeConsumerGroupRequest {
  consumerGroup?: string;
  topic?: string;
}

export interface ConsumerGroupMember {
  memberId: string;
  assignedQueues: readonly number[];
  ownedQueues: readonly number[];
  lastHeartbeatAgeMs: number;
}

export interface ConsumerGroupQueue {
  queue: number;
  group: string;
  /** False: nothing committed on this queue (committedOffset reads 0). */
  committed: boolean;
  committedOffset: number;
  startOffset: number;
  endOffset: number;
  lagMessages: number;
  /** '' when no member is assigned the queue. */
  memberId: string;
}

export interface DescribeConsumerGroupResponse {
  consumerGroup: string;
  topic: string;
  members: readonly ConsumerGroupMember[];
  queues: readonly ConsumerGroupQueue[];
  lagMessages: number;
  generation: number;
  sessionTimeoutMs: number;
  groupsUnreachable: readonly string[];
}

// ------------------------------------------------------------------ topics

export interface TopicInfo {
  name: string;
  queues: number;
  createdMs: number;
}

export interface QueueInfo {
  queue: number;
  group: string;
  leaderId: string;
  startOffset: number;
  highWatermark: number;
}

export interface CreateTopicRequest {
  name?: string;
  queues?: number;
}

export interface CreateTopicResponse {
  topic: TopicInfo | null;
  metadataVersion: number;
}

export interface DeleteTopicRequest {
  name?: string;
}

export type DeleteTopicResponse = Empty;

export type ListTopicsRequest = Empty;

export interface ListTopicsResponse {
  topics: readonly TopicInfo[];
}

export interface DescribeTopicRequest {
  name?: string;
}

export interface DescribeTopicResponse {
  topic: TopicInfo | null;
  queues: readonly QueueInfo[];
  /** The metadata version the placement was read from (0: before the metadata log). */
  metadataVersion: number;
}

// ------------------------------------------------------------------ cluster

export type DescribeClusterRequest = Empty;

export interface ReplicaInfo {
  id: string;
  address: string;
  role: string;
  endOffset: number;
  lagOffsets: number;
  lagMs: number;
  /** -1 when unknown. */
  lastFetchAgeMs: number;
  reachable: boolean;
}

export interface GroupInfo {
  id: string;
  leaderId: string;
  epoch: number;
  highWatermark: number;
  replicas: readonly ReplicaInfo[];
  advice: ReadAdvice | null;
}

export interface DescribeClusterResponse {
  groups: readonly GroupInfo[];
  metadataVersion: number;
}

// ------------------------------------------------------------------ cluster metadata (issue 14.1)

export interface MetadataBroker {
  id: string;
  host: string;
  clientPort: number;
}

export interface MetadataGroup {
  id: string;
  brokers: readonly MetadataBroker[];
}

export interface MetadataTopic {
  name: string;
  createdMs: number;
  placement: readonly string[];
  legacy: boolean;
}

export interface ClusterMetadata {
  version: number;
  groups: readonly MetadataGroup[];
  topics: readonly MetadataTopic[];
}

export interface GetMetadataRequest {
  knownVersion?: number;
  waitMsMax?: number;
}

export interface GetMetadataResponse {
  metadata: ClusterMetadata | null;
}

export interface AddGroupRequest {
  group?: MetadataGroup;
}

export interface AddGroupResponse {
  metadata: ClusterMetadata | null;
}

export interface AddQueuesRequest {
  topic?: string;
  count?: number;
}

export interface AddQueuesResponse {
  topic: TopicInfo | null;
  placement: readonly string[];
  metadataVersion: number;
}

// ------------------------------------------------------------------ membership and leadership (issue 13.4)

export interface ReplicaMember {
  id: string;
  /** 'voter' | 'learner'. */
  role: string;
  clientAddress: string;
  peerAddress: string;
}

export interface AddReplicaRequest {
  group?: string;
  id?: string;
  clientAddress?: string;
  peerAddress?: string;
  /** 0 = 30000. */
  waitMsMax?: number;
}

export interface AddReplicaResponse {
  group: string;
  /** -1 when it was a learner already. */
  learnerOffset: number;
  promotedOffset: number;
  members: readonly ReplicaMember[];
}

export interface RemoveReplicaRequest {
  group?: string;
  id?: string;
  force?: boolean;
  waitMsMax?: number;
}

export interface RemoveReplicaResponse {
  group: string;
  offset: number;
  members: readonly ReplicaMember[];
}

export interface TransferLeaderRequest {
  group?: string;
  /** '' = the best voter. */
  to?: string;
  waitMsMax?: number;
}

export interface TransferLeaderResponse {
  group: string;
  previousLeaderId: string;
  leaderId: string;
  epoch: number;
}

// ------------------------------------------------------------------ backup (issue 14)

export interface BackupRequest {
  group?: string;
}

export interface BackupStart {
  cluster: string;
  group: string;
  leaderId: string;
  epoch: number;
  highWatermark: number;
  logStartOffset: number;
  logBytes: number;
  lastEpoch: number;
  hasSnapshot: boolean;
  snapshotEndOffset: number;
  snapshotEpoch: number;
  snapshotBytes: number;
  seedVoters: readonly string[];
  clusterGroups: readonly string[];
}

/** The BackupPart enum of mamba.proto, by its wire numbers. */
export const BackupPart = { unset: 0, snapshot: 1, log: 2 } as const;
export type BackupPart = (typeof BackupPart)[keyof typeof BackupPart];

export interface BackupData {
  part: number;
  position: number;
  bytes: WireBytes;
  crc32c: number;
}

export interface BackupEnd {
  snapshotBytes: number;
  logBytes: number;
  batchCount: number;
}

/** One message of a Backup stream as received: exactly one of start, data, end is set. */
export interface BackupChunk {
  start: BackupStart | null;
  data: BackupData | null;
  end: BackupEnd | null;
}

// ------------------------------------------------------------------ methods

/** The package-qualified name of the client API service (the path prefix of every call). */
export const clientServiceName = 'mamba.v1.Mamba';

/** Every unary RPC of mamba.v1.Mamba: its request and its answer. */
export interface UnaryMethods {
  Produce: { request: ProduceRequest; response: ProduceResponse };
  Consume: { request: ConsumeRequest; response: ConsumeResponse };
  CommitOffset: { request: CommitOffsetRequest; response: CommitOffsetResponse };
  FetchOffset: { request: FetchOffsetRequest; response: FetchOffsetResponse };
  CreateTopic: { request: CreateTopicRequest; response: CreateTopicResponse };
  DeleteTopic: { request: DeleteTopicRequest; response: DeleteTopicResponse };
  ListTopics: { request: ListTopicsRequest; response: ListTopicsResponse };
  DescribeTopic: { request: DescribeTopicRequest; response: DescribeTopicResponse };
  DescribeCluster: { request: DescribeClusterRequest; response: DescribeClusterResponse };
  Heartbeat: { request: HeartbeatRequest; response: HeartbeatResponse };
  ListConsumerGroups: { request: ListConsumerGroupsRequest; response: ListConsumerGroupsResponse };
  DescribeConsumerGroup: { request: DescribeConsumerGroupRequest; response: DescribeConsumerGroupResponse };
  AddReplica: { request: AddReplicaRequest; response: AddReplicaResponse };
  RemoveReplica: { request: RemoveReplicaRequest; response: RemoveReplicaResponse };
  TransferLeader: { request: TransferLeaderRequest; response: TransferLeaderResponse };
  GetMetadata: { request: GetMetadataRequest; response: GetMetadataResponse };
  AddGroup: { request: AddGroupRequest; response: AddGroupResponse };
  AddQueues: { request: AddQueuesRequest; response: AddQueuesResponse };
}

export type MethodName = keyof UnaryMethods;
export type RequestOf<M extends MethodName> = UnaryMethods[M]['request'];
export type ResponseOf<M extends MethodName> = UnaryMethods[M]['response'];

/** The streaming RPCs: Subscribe and Backup (server streams), ProduceStream (both ways). */
export interface StreamMethods {
  Subscribe: { request: SubscribeRequest; response: ConsumeResponse };
  Backup: { request: BackupRequest; response: BackupChunk };
  ProduceStream: { request: ProduceStreamRequest; response: ProduceStreamResponse };
}

export const unaryMethodNames: readonly MethodName[] = [
  'Produce',
  'Consume',
  'CommitOffset',
  'FetchOffset',
  'CreateTopic',
  'DeleteTopic',
  'ListTopics',
  'DescribeTopic',
  'DescribeCluster',
  'Heartbeat',
  'ListConsumerGroups',
  'DescribeConsumerGroup',
  'AddReplica',
  'RemoveReplica',
  'TransferLeader',
  'GetMetadata',
  'AddGroup',
  'AddQueues',
];
