// How a broker reaches other groups (topic creation spans every group; consumer groups are
// described from every group's leader) and its own leader (a follower describing its group): the
// client API, with a bounded walk over the group's brokers that follows "not leader" redirects.
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, NotLeaderError, type MambaError } from '../errors.js';
import {
  checkMetadata,
  clientAddress,
  type AddQueuesResult,
  type ClusterMetadata,
  type MetadataGroup,
  type TopicCallMode,
  type TopicInfo,
  type ClusterForwarder,
  type ConsumerGroupDescription,
  type AddReplicaRequest,
  type AddReplicaResult,
  type ConsumerGroupList,
  type GroupInfo,
  type GroupLayout,
  type MemberInfo,
  type MembershipChange,
  type RemoveReplicaRequest,
  type TransferLeaderRequest,
  type TransferLeaderResult,
} from '../broker/broker.js';
import type {
  AddReplicaResponse,
  DescribeConsumerGroupResponse,
  ListConsumerGroupsResponse,
  RemoveReplicaResponse,
  ReplicaMember,
  TransferLeaderResponse,
} from '../protocol/messages.js';
import { consumerGroupFromWire, consumerGroupListFromWire } from '../protocol/consumer-groups.js';
import { metadataFromWire, metadataToWire } from '../protocol/metadata.js';
import { serviceDefinition } from '../protocol/protos.js';
import { fromServiceError } from '../protocol/status.js';
import { forwardedKey, scopeKey } from './client-service.js';
import { peerDnsResolutionMsMin } from './peer.js';

type Wire = Record<string, unknown>;
type Method = (request: Wire, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply?: Wire) => void) => void;

const attemptsMax = 6;
const callTimeoutMs = 5000;
/** Describing another group is best effort (a down group is reported as unreachable): keep it short. */
const describeAttemptsMax = 3;
const describeTimeoutMs = 1000;

export class GrpcForwarder implements ClusterForwarder {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly Client = grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba');

  /**
   * `credentials`: TLS towards the other brokers' client listeners when the cluster has it.
   * `sign`: adds the brokers' own access key signature to a call of a method path (when the
   * cluster has access keys), so other brokers accept forwarded calls like any signed call.
   */
  constructor(
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
    private readonly sign: ((methodPath: string, metadata: grpc.Metadata) => void) | null = null,
  ) {}

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (!client) {
      // Another group's broker by DNS name: looked up again soon after it moved (see peer.ts).
      client = new this.Client(address, this.credentials, { 'grpc.dns_min_time_between_resolutions_ms': peerDnsResolutionMsMin });
      this.clients.set(address, client);
    }
    return client;
  }

  /** Calls `method` on the group's leader: tries its brokers in turn, following redirects. */
  private async callGroup(
    group: GroupLayout,
    method: string,
    request: Wire,
    metadata: Record<string, string>,
    attempts = attemptsMax,
    timeoutMs = callTimeoutMs,
    movesOn: (error: MambaError) => boolean = (error) => error.retriable,
  ): Promise<Wire> {
    const addresses = group.brokers.map(clientAddress);
    let next = addresses[0]!;
    let lastError: MambaError | null = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      try {
        return await this.callOne(next, method, request, metadata, timeoutMs);
      } catch (error) {
        lastError = error as MambaError;
        if (lastError instanceof NotLeaderError && lastError.leaderAddress) next = lastError.leaderAddress;
        else if (movesOn(lastError)) next = addresses[(addresses.indexOf(next) + 1) % addresses.length]!;
        else throw lastError;
        await new Promise((resolve) => setTimeout(resolve, 50 * (attempt + 1)));
      }
    }
    throw new UnavailableError(`group ${group.id} did not answer ${method} (tried ${addresses.join(', ')}): ${lastError?.message ?? 'no answer'}`);
  }

  private callOne(address: string, method: string, request: Wire, metadata: Record<string, string>, timeoutMs: number): Promise<Wire> {
    const client = this.client(address) as unknown as Record<string, Method>;
    const md = new grpc.Metadata();
    for (const [key, value] of Object.entries(metadata)) md.set(key, value);
    this.sign?.(`/mamba.v1.Mamba/${method}`, md);
    return new Promise((resolve, reject) => {
      client[method]!.call(client, request, md, { deadline: Date.now() + timeoutMs }, (error, reply) => {
        if (error) reject(fromServiceError(error));
        else resolve(reply ?? {});
      });
    });
  }

  async createTopic(group: GroupLayout, name: string, queues: number, mode: TopicCallMode): Promise<TopicInfo | null> {
    const reply = await this.callGroup(group, 'CreateTopic', { name, queues }, mode === 'materialize' ? { [forwardedKey]: '1' } : {});
    const topic = reply.topic as { name: string; queues: number; createdMs: unknown } | null | undefined;
    return topic ? { name: topic.name, queues: topic.queues, createdMs: Number(topic.createdMs) } : null;
  }

  async deleteTopic(group: GroupLayout, name: string, mode: TopicCallMode): Promise<void> {
    await this.callGroup(group, 'DeleteTopic', { name }, mode === 'materialize' ? { [forwardedKey]: '1' } : {});
  }

  async fetchMetadata(group: GroupLayout, knownVersion: number, waitMs: number): Promise<ClusterMetadata> {
    // Any broker of the metadata group answers from what it applied: no leader needed.
    const reply = await this.callGroup(
      group,
      'GetMetadata',
      { knownVersion, waitMsMax: waitMs },
      { [forwardedKey]: '1' },
      group.brokers.length,
      waitMs + callTimeoutMs,
    );
    return checkMetadata(metadataFromWire(reply.metadata as Record<string, unknown> | undefined));
  }

  async addGroup(metadataGroup: GroupLayout, group: MetadataGroup): Promise<ClusterMetadata> {
    const reply = await this.callGroup(metadataGroup, 'AddGroup', { group: metadataToWire({ version: 0, groups: [group], topics: [] }).groups[0] }, {});
    return checkMetadata(metadataFromWire(reply.metadata as Record<string, unknown> | undefined));
  }

  async addQueues(metadataGroup: GroupLayout, topic: string, count: number): Promise<AddQueuesResult> {
    const reply = await this.callGroup(metadataGroup, 'AddQueues', { topic, count }, {});
    const grown = reply.topic as { name: string; queues: number; createdMs: unknown };
    return {
      topic: { name: grown.name, queues: grown.queues, createdMs: Number(grown.createdMs) },
      placement: ((reply.placement as unknown[] | undefined) ?? []).map(String),
      metadataVersion: Number(reply.metadataVersion ?? 0),
    };
  }

  async describeGroup(group: GroupLayout): Promise<GroupInfo> {
    const reply = await this.callGroup(group, 'DescribeCluster', {}, { [scopeKey]: 'group', [forwardedKey]: '1' }, describeAttemptsMax, describeTimeoutMs);
    const groups = (reply.groups as GroupInfo[] | undefined) ?? [];
    const info = groups.find((g) => g.id === group.id);
    if (!info) throw new UnavailableError(`group ${group.id} answered without describing itself`);
    return {
      ...info,
      epoch: Number(info.epoch),
      highWatermark: Number(info.highWatermark),
      replicas: info.replicas.map((r) => ({
        ...r,
        endOffset: Number(r.endOffset),
        lagOffsets: Number(r.lagOffsets),
        lagMs: Number(r.lagMs),
        lastFetchAgeMs: Number(r.lastFetchAgeMs),
      })),
      advice: info.advice ? { replicaId: info.advice.replicaId, address: info.advice.address, reason: info.advice.reason } : null,
    };
  }

  /** Best effort like describeGroup: a group that does not answer is reported, not waited for. */
  async describeConsumerGroup(group: GroupLayout, consumerGroup: string, topic: string): Promise<ConsumerGroupDescription> {
    const reply = (await this.callGroup(
      group,
      'DescribeConsumerGroup',
      { consumerGroup, topic },
      { [forwardedKey]: '1' },
      describeAttemptsMax,
      describeTimeoutMs,
    )) as unknown as DescribeConsumerGroupResponse;
    return consumerGroupFromWire(reply);
  }

  async listConsumerGroups(group: GroupLayout): Promise<ConsumerGroupList> {
    const reply = (await this.callGroup(
      group,
      'ListConsumerGroups',
      {},
      { [forwardedKey]: '1' },
      describeAttemptsMax,
      describeTimeoutMs,
    )) as unknown as ListConsumerGroupsResponse;
    return consumerGroupListFromWire(reply);
  }

  // ------------------------------------------------------------------ membership and leadership
  // Sent to the group's leader only: a redirect is followed, an unreachable broker skipped, but any
  // other refusal (ABORTED included) is the answer: a change is never sent twice from here.

  async addReplica(group: GroupLayout, request: AddReplicaRequest, timeoutMs: number): Promise<AddReplicaResult> {
    const reply = (await this.callLeaderOnce(group, 'AddReplica', { ...request }, timeoutMs)) as unknown as AddReplicaResponse;
    return {
      group: reply.group,
      offset: Number(reply.promotedOffset),
      learnerOffset: Number(reply.learnerOffset),
      promotedOffset: Number(reply.promotedOffset),
      members: membersOf(reply.members),
    };
  }

  async removeReplica(group: GroupLayout, request: RemoveReplicaRequest, timeoutMs: number): Promise<MembershipChange> {
    const reply = (await this.callLeaderOnce(group, 'RemoveReplica', { ...request }, timeoutMs)) as unknown as RemoveReplicaResponse;
    return { group: reply.group, offset: Number(reply.offset), members: membersOf(reply.members) };
  }

  async transferLeader(group: GroupLayout, request: TransferLeaderRequest, timeoutMs: number): Promise<TransferLeaderResult> {
    const reply = (await this.callLeaderOnce(group, 'TransferLeader', { ...request }, timeoutMs)) as unknown as TransferLeaderResponse;
    return { group: reply.group, previousLeaderId: reply.previousLeaderId, leaderId: reply.leaderId, epoch: Number(reply.epoch) };
  }

  private callLeaderOnce(group: GroupLayout, method: string, request: Wire, timeoutMs: number): Promise<Wire> {
    return this.callGroup(group, method, request, { [forwardedKey]: '1' }, attemptsMax, timeoutMs, isUnreachable);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }
}

/** The broker did not take the call at all (connection refused or lost before an answer). */
function isUnreachable(error: MambaError): boolean {
  return error instanceof UnavailableError && /No connection established|ECONNREFUSED|Connection dropped/i.test(error.message);
}

function membersOf(members: readonly ReplicaMember[]): MemberInfo[] {
  return members.map((m) => ({ id: m.id, role: m.role, clientAddress: m.clientAddress, peerAddress: m.peerAddress }));
}
