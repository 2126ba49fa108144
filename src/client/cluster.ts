// The SDK's one request path (kafkajs's cluster/ in our shape): find where a request must go,
// call, and learn from a failure. Every call the client, producer and consumer make goes through
// one of three doors:
//   - `callAny`: the first seed (or known) broker that answers, for reads any broker serves
//     (DescribeCluster, DescribeTopic, ListTopics); a retriable failure moves on to the next.
//   - `onGroupLeader` / `onQueueLeader`: the leader of a group (or of the group holding a queue
//     of a topic). In order: the route (cached, else DescribeTopic), the leader (the hint learned
//     from the last description or redirect, else DescribeCluster), the call; on failure the
//     router learns from the error (a redirect's leader becomes the hint; "not the leader",
//     unreachable and timeouts forget it, so the next call describes the cluster again) and the
//     error is rethrown for the caller's retrier (retry.ts) to judge.
//   - `callGroupLeader` / `callQueueLeader` / `callTopicAdmin`: the same with a unary RPC.
// Retrying is the caller's: the path makes one attempt and leaves the route ready for the next.
//
// Order: with the route and the leader known, `send` runs synchronously inside the call (no
// await before it), so a producer that writes batches to a stream in order keeps that order.
import { InvalidArgumentError, MambaError, NotFoundError, UnavailableError } from '../errors.js';
import type { MethodName, RequestOf, ResponseOf } from '../protocol/messages.js';
import type { Transport } from './connection.js';
import { Router, bestViews, groupFromWire, type GroupRoute, type TopicRoute } from './router.js';

/** Brokers asked at most in one refresh when the first answer lacks a leader. */
const refreshAddressesMax = 16;
/** The bound on each of those extra DescribeCluster calls. */
const refreshExtraTimeoutMsMax = 1000;

export interface LeaderCallOptions {
  /** Call this broker instead of the leader (a read advised to a follower); its failure teaches the router nothing. */
  address?: string | undefined;
  /** Default: the cluster's requestTimeoutMs. */
  timeoutMs?: number;
}

export class Cluster {
  readonly router = new Router();
  /** The newest cluster metadata version seen in an answer (noteMetadataVersion). */
  private metadataVersion = 0;

  constructor(
    private readonly transport: Transport,
    private readonly seeds: readonly string[],
    readonly requestTimeoutMs: number,
  ) {
    if (seeds.length === 0) throw new InvalidArgumentError('brokers: at least one seed broker address is required');
    // Every answer's metadata version: routes read from an older one are asked for again.
    transport.onMetadataVersion = (version) => this.noteMetadataVersion(version);
  }

  // ------------------------------------------------------------------ any broker

  /** Calls the first seed (or known broker) that answers. */
  async callAny<M extends MethodName>(method: M, request: RequestOf<M>): Promise<ResponseOf<M>> {
    const addresses = [...new Set([...this.seeds, ...this.router.knownAddresses()])];
    let lastError: MambaError | null = null;
    for (const address of addresses) {
      try {
        return await this.transport.call(address, method, request, this.requestTimeoutMs);
      } catch (error) {
        if (!(error instanceof MambaError) || !error.retriable) throw error;
        lastError = error;
      }
    }
    throw new UnavailableError(`cannot reach the cluster (tried ${addresses.join(', ')})${lastError ? `: ${lastError.message.split('\n')[0]}` : ''}`);
  }

  /**
   * Asks the first broker that answers for the cluster; when that answer lacks a leader for some
   * group (the broker may be an old leader cut off from its group), asks the other known brokers
   * too and keeps, per group, the view with a leader in the highest epoch.
   */
  async refresh(): Promise<GroupRoute[]> {
    const described = await this.callAny('DescribeCluster', {});
    this.noteMetadataVersion(Number(described.metadataVersion ?? 0));
    const first = described.groups.map(groupFromWire);
    let groups = first;
    if (first.some((g) => !g.leaderId)) {
      const addresses = [...new Set([...this.seeds, ...first.flatMap((g) => g.replicas.map((r) => r.address))])].slice(0, refreshAddressesMax);
      const timeoutMs = Math.min(this.requestTimeoutMs, refreshExtraTimeoutMsMax);
      const answers = await Promise.all(
        addresses.map((address) =>
          this.transport.call(address, 'DescribeCluster', {}, timeoutMs).then(
            (reply) => reply.groups.map(groupFromWire),
            () => [] as GroupRoute[],
          ),
        ),
      );
      groups = bestViews(first, answers.flat());
    }
    this.router.setGroups(groups);
    return groups;
  }

  /** The groups of the last description, or a fresh one when there is none yet. */
  async groups(): Promise<GroupRoute[]> {
    return this.router.knownGroups.length > 0 ? this.router.knownGroups : this.refresh();
  }

  // ------------------------------------------------------------------ routes

  /** A topic's route: which group holds each queue (cached after the first lookup). */
  async topic(name: string, forceRefresh = false): Promise<TopicRoute> {
    const cached = this.router.topic(name);
    if (cached && !forceRefresh && cached.metadataVersion >= this.metadataVersion) return cached;
    const reply = await this.callAny('DescribeTopic', { name }).catch((error: unknown) => {
      if (!(error instanceof NotFoundError)) throw error;
      // A follower may not have applied a topic its leader just committed: ask a leader.
      return this.callTopicAdmin('DescribeTopic', { name });
    });
    if (!reply.topic) throw new NotFoundError(`topic "${name}" does not exist`);
    const metadataVersion = Number(reply.metadataVersion ?? 0);
    this.noteMetadataVersion(metadataVersion);
    const route: TopicRoute = { name, queues: reply.topic.queues, queueGroups: reply.queues.map((q) => q.group), metadataVersion };
    this.router.setTopic(route);
    return route;
  }

  /** The topic's route when it is known already and not older than the metadata seen (no call). */
  cachedTopic(name: string): TopicRoute | undefined {
    const cached = this.router.topic(name);
    return cached && cached.metadataVersion >= this.metadataVersion ? cached : undefined;
  }

  /**
   * The newest cluster metadata version a broker's answer carried (issue 14.1): topic routes read
   * from an older one are stale (a topic grew, or was made again) and are asked for again.
   */
  noteMetadataVersion(version: number): void {
    if (Number.isSafeInteger(version) && version > this.metadataVersion) this.metadataVersion = version;
  }

  forgetTopic(name: string): void {
    this.router.forgetTopic(name);
  }

  /** The client address of a group's leader (or, when unknown, any of its brokers in turn). */
  async leaderOf(groupId: string): Promise<string> {
    const hint = this.router.leaderHint(groupId);
    if (hint) return hint;
    await this.refresh();
    if (!this.router.group(groupId)) throw new NotFoundError(`the cluster has no group ${groupId}`);
    const address = this.router.addressFromDescription(groupId);
    if (!address) throw new UnavailableError(`group ${groupId} has no brokers`);
    return address;
  }

  // ------------------------------------------------------------------ leaders

  /** `send` to the leader of a group (see the header for the steps and the order guarantee). */
  async onGroupLeader<T>(groupId: string, send: (address: string) => Promise<T>, options: LeaderCallOptions = {}): Promise<T> {
    const advised = options.address;
    const address = advised ?? this.router.leaderHint(groupId) ?? (await this.leaderOf(groupId));
    try {
      return await send(address);
    } catch (error) {
      if (advised === undefined && error instanceof MambaError) this.router.noteFailure(groupId, error);
      throw error;
    }
  }

  /** `send` to the leader of the group that holds `queue` of `topic`; the queue is checked against the route. */
  async onQueueLeader<T>(topic: string, queue: number, send: (address: string) => Promise<T>, options: LeaderCallOptions = {}): Promise<T> {
    const route = this.cachedTopic(topic) ?? (await this.topic(topic));
    const groupId = route.queueGroups[queue];
    if (!Number.isInteger(queue) || groupId === undefined) throw new InvalidArgumentError(`queue ${queue}: topic "${topic}" has queues 0..${route.queues - 1}`);
    return this.onGroupLeader(groupId, send, options);
  }

  callGroupLeader<M extends MethodName>(groupId: string, method: M, request: RequestOf<M>, options: LeaderCallOptions = {}): Promise<ResponseOf<M>> {
    return this.onGroupLeader(groupId, (address) => this.transport.call(address, method, request, options.timeoutMs ?? this.requestTimeoutMs), options);
  }

  callQueueLeader<M extends MethodName>(
    topic: string,
    queue: number,
    method: M,
    request: RequestOf<M>,
    options: LeaderCallOptions = {},
  ): Promise<ResponseOf<M>> {
    return this.onQueueLeader(topic, queue, (address) => this.transport.call(address, method, request, options.timeoutMs ?? this.requestTimeoutMs), options);
  }

  /** Topic changes (and reads that must see them) go to a group leader, which carries them to the other groups. */
  async callTopicAdmin<M extends MethodName>(method: M, request: RequestOf<M>): Promise<ResponseOf<M>> {
    const first = (await this.groups())[0];
    if (!first) throw new UnavailableError('the cluster described no group');
    return this.callGroupLeader(first.id, method, request);
  }
}
