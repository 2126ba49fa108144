// Route discovery: which group holds each queue of a topic and which broker leads each group,
// learned from any seed broker and refreshed on errors.
import { UnavailableError, NotLeaderError, NotFoundError, type MambaError } from '../errors.js';
import type { ConnectionPool, Wire } from './connection.js';

export interface ReplicaRoute {
  id: string;
  address: string;
  role: string;
  endOffset: number;
  lagOffsets: number;
  lagMs: number;
  lastFetchAgeMs: number;
  reachable: boolean;
}

export interface GroupRoute {
  id: string;
  leaderId: string;
  epoch: number;
  highWatermark: number;
  replicas: ReplicaRoute[];
  advice: { replicaId: string; address: string; reason: string } | null;
}

export interface TopicRoute {
  name: string;
  queues: number;
  queueGroups: string[]; // queue → group id
}

export function groupFromWire(g: Wire): GroupRoute {
  return {
    id: String(g.id),
    leaderId: String(g.leaderId ?? ''),
    epoch: Number(g.epoch ?? 0),
    highWatermark: Number(g.highWatermark ?? 0),
    replicas: ((g.replicas as Wire[] | undefined) ?? []).map((r) => ({
      id: String(r.id),
      address: String(r.address),
      role: String(r.role),
      endOffset: Number(r.endOffset ?? 0),
      lagOffsets: Number(r.lagOffsets ?? 0),
      lagMs: Number(r.lagMs ?? 0),
      lastFetchAgeMs: Number(r.lastFetchAgeMs ?? 0),
      reachable: !!r.reachable,
    })),
    advice: g.advice ? { replicaId: String(g.advice.replicaId), address: String(g.advice.address), reason: String(g.advice.reason) } : null,
  };
}

/** Brokers asked at most in one refresh when the first answer lacks a leader. */
const refreshAddressesMax = 16;

export class Router {
  private groups: GroupRoute[] = [];
  private readonly topics = new Map<string, TopicRoute>();
  private readonly leaderHints = new Map<string, string>(); // group → leader address learned from redirects
  private fallbackTurn = 0;

  constructor(
    private readonly pool: ConnectionPool,
    private readonly seeds: string[],
    private readonly requestTimeoutMs: number,
  ) {
    if (seeds.length === 0) throw new Error('brokers: at least one seed broker address is required');
  }

  /** Calls the first seed (or known broker) that answers. */
  async callAny(method: string, request: Wire): Promise<Wire> {
    const known = this.groups.flatMap((g) => g.replicas.map((r) => r.address));
    const addresses = [...new Set([...this.seeds, ...known])];
    let lastError: MambaError | null = null;
    for (const address of addresses) {
      try {
        return await this.pool.call(address, method, request, this.requestTimeoutMs);
      } catch (error) {
        lastError = error as MambaError;
        if (!lastError.retriable) throw lastError;
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
    const first = (((await this.callAny('DescribeCluster', {})).groups as Wire[] | undefined) ?? []).map(groupFromWire);
    let groups = first;
    if (first.some((g) => !g.leaderId)) {
      const addresses = [...new Set([...this.seeds, ...first.flatMap((g) => g.replicas.map((r) => r.address))])].slice(0, refreshAddressesMax);
      const answers = await Promise.all(
        addresses.map((address) =>
          this.pool.call(address, 'DescribeCluster', {}, Math.min(this.requestTimeoutMs, 1000)).then(
            (r) => ((r.groups as Wire[] | undefined) ?? []).map(groupFromWire),
            () => [] as GroupRoute[],
          ),
        ),
      );
      groups = first.map((g) =>
        [g, ...answers.flat().filter((other) => other.id === g.id)].reduce((best, other) =>
          other.leaderId && (!best.leaderId || other.epoch > best.epoch) ? other : best,
        ),
      );
    }
    this.groups = groups;
    for (const g of this.groups) {
      const leader = g.replicas.find((r) => r.id === g.leaderId);
      if (leader) this.leaderHints.set(g.id, leader.address);
    }
    return this.groups;
  }

  get knownGroups(): GroupRoute[] {
    return this.groups;
  }

  async topic(name: string, forceRefresh = false): Promise<TopicRoute> {
    const cached = this.topics.get(name);
    if (cached && !forceRefresh) return cached;
    const reply = await this.callAny('DescribeTopic', { name }).catch((error: MambaError) => {
      if (!(error instanceof NotFoundError)) throw error;
      // A follower may not have applied a topic its leader just committed: ask the leader.
      return this.callLeader(name);
    });
    const route = { name, queues: Number(reply.topic.queues), queueGroups: (reply.queues as Wire[]).map((q) => String(q.group)) };
    this.topics.set(name, route);
    return route;
  }

  private async callLeader(name: string): Promise<Wire> {
    const groups = await this.refresh();
    const first = groups[0];
    if (!first) throw new NotFoundError(`topic "${name}" does not exist (the cluster described no group)`);
    return this.pool.call(await this.leaderOf(first.id), 'DescribeTopic', { name }, this.requestTimeoutMs);
  }

  /** The topic's route when it is known already (no call), for paths that must stay synchronous. */
  cachedTopic(name: string): TopicRoute | undefined {
    return this.topics.get(name);
  }

  /** The leader address learned for a group, when there is one (no call). */
  leaderHint(groupId: string): string | undefined {
    return this.leaderHints.get(groupId);
  }

  forgetTopic(name: string): void {
    this.topics.delete(name);
  }

  /** The client address of a group's leader (or, when unknown, any of its brokers). */
  async leaderOf(groupId: string): Promise<string> {
    const hint = this.leaderHints.get(groupId);
    if (hint) return hint;
    await this.refresh();
    const group = this.groups.find((g) => g.id === groupId);
    if (!group) throw new NotFoundError(`the cluster has no group ${groupId}`);
    // No leader known yet: any broker of the group (in turn) redirects to the leader once it knows.
    const leader = group.replicas.find((r) => r.id === group.leaderId) ?? group.replicas[this.fallbackTurn++ % Math.max(1, group.replicas.length)];
    if (!leader) throw new UnavailableError(`group ${groupId} has no brokers`);
    return leader.address;
  }

  /** Learns from an error: a redirect names the new leader, anything else forgets the hint. */
  noteFailure(groupId: string, error: MambaError): void {
    if (error instanceof NotLeaderError && error.leaderAddress) this.leaderHints.set(groupId, error.leaderAddress);
    else this.leaderHints.delete(groupId);
  }

  /** Other brokers of the group, to try when the leader is unreachable. */
  groupAddresses(groupId: string): string[] {
    return this.groups.find((g) => g.id === groupId)?.replicas.map((r) => r.address) ?? [];
  }
}
