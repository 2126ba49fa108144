// What the SDK knows of the cluster's routes, with no I/O (cluster.ts asks the brokers and feeds
// the answers in here): which group holds each queue of a topic, which broker leads each group,
// and the leader addresses learned from "not the leader" redirects.
import { NotLeaderError, type MambaError } from '../errors.js';
import type { GroupInfo, ReadAdvice, ReplicaInfo } from '../protocol/messages.js';

/** A replica as DescribeCluster tells it (the wire's shape). */
export type ReplicaRoute = ReplicaInfo;

export interface GroupRoute {
  id: string;
  leaderId: string;
  epoch: number;
  highWatermark: number;
  replicas: ReplicaRoute[];
  advice: ReadAdvice | null;
}

export interface TopicRoute {
  name: string;
  queues: number;
  queueGroups: string[]; // queue → group id
  /** The cluster metadata version it was read from: a newer one seen since makes it stale. */
  metadataVersion: number;
}

/** A group of a DescribeCluster answer as the SDK keeps (and the CLI prints) it. */
export function groupFromWire(g: GroupInfo): GroupRoute {
  return {
    id: g.id,
    leaderId: g.leaderId,
    epoch: g.epoch,
    highWatermark: g.highWatermark,
    replicas: g.replicas.map((r) => ({
      id: r.id,
      address: r.address,
      role: r.role,
      endOffset: r.endOffset,
      lagOffsets: r.lagOffsets,
      lagMs: r.lagMs,
      lastFetchAgeMs: r.lastFetchAgeMs,
      reachable: r.reachable,
    })),
    advice: g.advice ? { replicaId: g.advice.replicaId, address: g.advice.address, reason: g.advice.reason } : null,
  };
}

/**
 * Per group of `first` (the answer whose group list is kept), the view with a leader in the
 * highest epoch among it and `others` (other brokers' answers).
 */
export function bestViews(first: readonly GroupRoute[], others: readonly GroupRoute[]): GroupRoute[] {
  return first.map((g) =>
    [g, ...others.filter((other) => other.id === g.id)].reduce((best, other) =>
      other.leaderId && (!best.leaderId || other.epoch > best.epoch) ? other : best,
    ),
  );
}

/** Errors that say the route to a group's leader is wrong or gone (others leave it as it is). */
function isRouteError(error: MambaError): boolean {
  return error.kind === 'not_leader' || error.kind === 'unavailable' || error.kind === 'timeout';
}

export class Router {
  private groups: GroupRoute[] = [];
  private readonly topics = new Map<string, TopicRoute>();
  private readonly leaderHints = new Map<string, string>(); // group → leader address
  private fallbackTurn = 0;

  get knownGroups(): GroupRoute[] {
    return this.groups;
  }

  /** Every broker address known from the last cluster description. */
  knownAddresses(): string[] {
    return this.groups.flatMap((g) => g.replicas.map((r) => r.address));
  }

  /** A fresh cluster description: it replaces the groups, and each named leader becomes the hint. */
  setGroups(groups: GroupRoute[]): void {
    this.groups = groups;
    for (const g of groups) {
      const leader = g.replicas.find((r) => r.id === g.leaderId);
      if (leader) this.leaderHints.set(g.id, leader.address);
    }
  }

  group(groupId: string): GroupRoute | undefined {
    return this.groups.find((g) => g.id === groupId);
  }

  /**
   * The address to try for a group from the known description: its leader, or when none is
   * known any of its brokers in turn (which redirects to the leader once it knows it).
   */
  addressFromDescription(groupId: string): string | undefined {
    const group = this.group(groupId);
    if (!group) return undefined;
    const leader = group.replicas.find((r) => r.id === group.leaderId) ?? group.replicas[this.fallbackTurn++ % Math.max(1, group.replicas.length)];
    return leader?.address;
  }

  topic(name: string): TopicRoute | undefined {
    return this.topics.get(name);
  }

  setTopic(route: TopicRoute): void {
    this.topics.set(route.name, route);
  }

  forgetTopic(name: string): void {
    this.topics.delete(name);
  }

  /** The leader address learned for a group, when there is one. */
  leaderHint(groupId: string): string | undefined {
    return this.leaderHints.get(groupId);
  }

  /**
   * Learns from a failed call to a group's leader: a redirect names the new leader; an error that
   * says the route is wrong (not the leader, unreachable, no answer) forgets the hint, so the
   * next call describes the cluster again; any other error (a refusal) keeps it.
   */
  noteFailure(groupId: string, error: MambaError): void {
    if (error instanceof NotLeaderError && error.leaderAddress) this.leaderHints.set(groupId, error.leaderAddress);
    else if (isRouteError(error)) this.leaderHints.delete(groupId);
  }
}
