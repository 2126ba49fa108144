// Consumer-group membership (held by the leader of the group that owns queue 0 of the topic):
// members heartbeat, each heartbeat says which queues the member still owns, and the answer says
// which queues it may own now. Queues are dealt over the live members in id order; a queue moves
// to its new owner only once its old owner has given it up (or its session expired), so no two
// members of a consumer group ever read one queue at the same time.
//
// The state is soft: a new coordinator (after a failover) learns it again within one heartbeat
// interval from the members' claims.

import { ResourceExhaustedError } from '../errors.js';

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

export const groupsTrackedMax = 10_000;
export const membersPerGroupMax = 1000;

export class GroupCoordinator {
  private readonly groups = new Map<string, GroupState>();

  constructor(readonly sessionTimeoutMs: number) {}

  heartbeat(consumerGroup: string, topic: string, queues: number, memberId: string, owned: number[], leave: boolean, nowMs: number): HeartbeatResult {
    const key = `${consumerGroup}\u0000${topic}`;
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
    const assignedQueues = leave ? [] : this.assignment(group, ids, queues, memberId);
    const member = group.members.get(memberId);
    if (member) member.granted = new Set(assignedQueues);
    return { generation: group.generation, assignedQueues, members: ids, sessionTimeoutMs: this.sessionTimeoutMs };
  }

  /**
   * Queues dealt to `memberId` that no other live member may be reading: one it reported, or
   * one it was granted and has not reported giving up yet (its claim lags a heartbeat).
   */
  private assignment(group: GroupState, ids: string[], queues: number, memberId: string): number[] {
    const index = ids.indexOf(memberId);
    const assigned: number[] = [];
    for (let q = index; q < queues; q += ids.length) {
      const heldElsewhere = [...group.members.values()].some((m) => m.id !== memberId && (m.owned.has(q) || m.granted.has(q)));
      if (!heldElsewhere) assigned.push(q);
    }
    return assigned;
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

  /** Forgets everything (this broker stopped being the coordinator). */
  clear(): void {
    this.groups.clear();
  }
}
