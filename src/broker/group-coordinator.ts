// Consumer-group membership (held by the leader of the group that owns queue 0 of the topic):
// members heartbeat, each heartbeat says which queues the member still owns, and the answer says
// which queues it may own now. Queues are dealt over the live members in id order; a queue moves
// to its new owner only once its old owner has given it up (or its session expired), so no two
// members of a consumer group ever read one queue at the same time.
//
// The state is soft: a new coordinator (after a failover or a restart, or one that ran clear())
// learns it again from the members' claims. Until it can know every claim it deals nothing: it
// lets each member keep the queues it claims (that no other member claims). A member that read a
// queue under the previous coordinator either claims it in a heartbeat here, or stops reading it
// once it has had no answer for one session timeout (the rule a client must follow anyway, or
// session expiry would not be safe either).
// The previous coordinator answered last before this one took over, so no later than this one's
// first heartbeat: one session timeout after that, a queue nobody claims is read by nobody. (Not
// covered: a deposed leader that still answers heartbeats until its check-quorum timeout.)
// Waiting only until "every member it has heard of" heartbeats would not do: the member still
// reading a queue may be one it has not heard of yet. The cost: after a change of coordinator, a
// queue nobody reads (a new group, a member gone) waits up to one session timeout to be dealt.

import { ResourceExhaustedError } from '../errors.js';
import type { ConsumerGroupMemberView } from '../protocol/consumer-groups.js';

export interface HeartbeatResult {
  generation: number;
  assignedQueues: number[];
  members: string[];
  sessionTimeoutMs: number;
}

interface Member {
  id: string;
  lastSeenMs: number;
  /** Queues the member said it reads, at its last heartbeat. */
  owned: Set<number>;
  /** Queues the last answer allowed it: it may have started on them since. */
  granted: Set<number>;
}

interface GroupState {
  members: Map<string, Member>;
  generation: number;
  memberIds: string; // sorted ids joined, to notice membership changes
}

/** A live member as DescribeConsumerGroup shows it. */
/** A member as DescribeConsumerGroup tells it. */
export type MemberView = ConsumerGroupMemberView;

export interface GroupView {
  generation: number;
  /** In id order. */
  members: MemberView[];
}

export interface ActiveGroup {
  consumerGroup: string;
  topic: string;
  memberCount: number;
}

export const groupsTrackedMax = 10_000;
export const membersPerGroupMax = 1000;

export class GroupCoordinator {
  private readonly groups = new Map<string, GroupState>();
  /** Time of the first heartbeat since this coordinator started or was cleared; null before it. */
  private startedMs: number | null = null;

  constructor(readonly sessionTimeoutMs: number) {}

  heartbeat(consumerGroup: string, topic: string, queues: number, memberId: string, owned: number[], leave: boolean, nowMs: number): HeartbeatResult {
    const key = groupKey(consumerGroup, topic);
    this.startedMs ??= nowMs;
    let group = this.groups.get(key);
    if (!group) {
      if (this.groups.size >= groupsTrackedMax) this.expireAll(nowMs);
      if (this.groups.size >= groupsTrackedMax) throw new ResourceExhaustedError(`more than ${groupsTrackedMax} consumer groups are active`);
      this.groups.set(key, (group = { members: new Map(), generation: 0, memberIds: '' }));
    }
    this.expire(group, nowMs);
    if (leave) group.members.delete(memberId);
    else {
      let member = group.members.get(memberId);
      if (!member) {
        if (group.members.size >= membersPerGroupMax)
          throw new ResourceExhaustedError(`consumer group ${consumerGroup} has ${membersPerGroupMax} members already`);
        group.members.set(memberId, (member = { id: memberId, lastSeenMs: nowMs, owned: new Set(), granted: new Set() }));
      }
      member.lastSeenMs = nowMs;
      member.owned = new Set(owned.filter((q) => Number.isInteger(q) && q >= 0 && q < queues));
    }
    const ids = [...group.members.keys()].sort();
    if (ids.join('\u0000') !== group.memberIds) {
      group.memberIds = ids.join('\u0000');
      group.generation++;
    }
    if (group.members.size === 0) this.groups.delete(key);
    const assignedQueues = leave ? [] : this.assignment(group, ids, queues, memberId, this.learning(nowMs));
    const member = group.members.get(memberId);
    if (member) member.granted = new Set(assignedQueues);
    return { generation: group.generation, assignedQueues, members: ids, sessionTimeoutMs: this.sessionTimeoutMs };
  }

  /**
   * True while members that read under the previous coordinator may still read without having
   * claimed it here: from the first heartbeat up to one session timeout later, both ends
   * included (a member stops reading only once more than the session timeout passed since its
   * last answer, which the previous coordinator gave no later than that first heartbeat here).
   */
  private learning(nowMs: number): boolean {
    return this.startedMs !== null && nowMs - this.startedMs <= this.sessionTimeoutMs;
  }

  /**
   * Queues dealt to `memberId` that no other live member may be reading: one it reported, or
   * one it was granted and has not reported giving up yet (its claim lags a heartbeat). While
   * `learning`, not the deal but what the member claims, with the same rule: a queue nobody
   * claims may still be read by a member not heard from yet, and what a member reads stays with
   * it until the deal is made with every claim known (nothing moves twice after a failover).
   */
  private assignment(group: GroupState, ids: string[], queues: number, memberId: string, learning: boolean): number[] {
    const candidates: number[] = [];
    if (learning) candidates.push(...[...group.members.get(memberId)!.owned].sort((a, b) => a - b));
    else for (let q = ids.indexOf(memberId); q < queues; q += ids.length) candidates.push(q);
    return candidates.filter((q) => ![...group.members.values()].some((m) => m.id !== memberId && (m.owned.has(q) || m.granted.has(q))));
  }

  private expire(group: GroupState, nowMs: number): void {
    for (const [id, member] of group.members) if (nowMs - member.lastSeenMs > this.sessionTimeoutMs) group.members.delete(id);
  }

  private expireAll(nowMs: number): void {
    for (const [key, group] of this.groups) {
      this.expire(group, nowMs);
      if (group.members.size === 0) this.groups.delete(key);
    }
  }

  // ------------------------------------------------------------------ reads (nothing below changes the state)

  /**
   * The consumer group's members on `topic` whose last heartbeat is within the session timeout
   * (those a heartbeat now would not expire), or null when it has none.
   */
  describe(consumerGroup: string, topic: string, nowMs: number): GroupView | null {
    const group = this.groups.get(groupKey(consumerGroup, topic));
    if (!group) return null;
    const members = [...group.members.values()]
      .filter((m) => this.isLive(m, nowMs))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((m) => ({
        memberId: m.id,
        assignedQueues: [...m.granted].sort((a, b) => a - b),
        ownedQueues: [...m.owned].sort((a, b) => a - b),
        lastHeartbeatAgeMs: Math.max(0, nowMs - m.lastSeenMs),
      }));
    return members.length > 0 ? { generation: group.generation, members } : null;
  }

  /** Every (consumer group, topic) with a live member (at most groupsTrackedMax). */
  activeGroups(nowMs: number): ActiveGroup[] {
    const active: ActiveGroup[] = [];
    for (const [key, group] of this.groups) {
      let memberCount = 0;
      for (const m of group.members.values()) if (this.isLive(m, nowMs)) memberCount++;
      if (memberCount === 0) continue;
      const [consumerGroup, topic] = key.split(groupKeySeparator) as [string, string];
      active.push({ consumerGroup, topic, memberCount });
    }
    return active;
  }

  /** As expire() judges it: a member is gone once more than the session timeout has passed. */
  private isLive(member: Member, nowMs: number): boolean {
    return nowMs - member.lastSeenMs <= this.sessionTimeoutMs;
  }

  /** Forgets everything (this broker stopped being the coordinator); if it becomes one again, it learns the claims again first. */
  clear(): void {
    this.groups.clear();
    this.startedMs = null;
  }
}

/** Between the consumer group and the topic of a key (names admit no control character). */
const groupKeySeparator = '\u0000';

function groupKey(consumerGroup: string, topic: string): string {
  return `${consumerGroup}${groupKeySeparator}${topic}`;
}
