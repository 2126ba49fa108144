// The ListConsumerGroups and DescribeConsumerGroup answers as plain objects, decoded once for both
// sides that read them: the SDK's Admin calls and a broker gathering other groups' parts
// (src/rpc/forwarder.ts). A committed offset that is not there becomes null rather than a flag
// beside a 0; a queue no member is assigned keeps the wire's '' (the SDK turns it into null).
import type { DescribeConsumerGroupResponse, ListConsumerGroupsResponse } from './messages.js';

export interface ConsumerGroupListingView {
  consumerGroup: string;
  topic: string;
  /** Members whose last heartbeat is within the session timeout. */
  memberCount: number;
  /** Queues of the topic with a committed offset of the consumer group. */
  committedQueueCount: number;
}

/** Consumer groups in (consumer group, topic) order: cluster-wide, or what one group's leader knows. */
export interface ConsumerGroupListView {
  consumerGroups: ConsumerGroupListingView[];
  /** Groups (of brokers) whose leader did not answer: what they hold is missing. */
  groupsUnreachable: string[];
  /** Cut at consumerGroupListingsMax. */
  truncated: boolean;
}

export interface ConsumerGroupMemberView {
  memberId: string;
  /** What the coordinator's last answer allowed it, in queue order. */
  assignedQueues: number[];
  /** What it claimed in its last heartbeat, in queue order. */
  ownedQueues: number[];
  lastHeartbeatAgeMs: number;
}

/** One queue of a topic as a consumer group stands on it; offsets are queue offsets. */
export interface ConsumerGroupQueueView {
  queue: number;
  /** The group (of brokers) that holds the queue. */
  group: string;
  /** Null: the consumer group has committed nothing on this queue. */
  committedOffset: number | null;
  startOffset: number;
  /** One past the queue's last committed message. */
  endOffset: number;
  /** end - max(committed, start), or end - start when nothing is committed (consumerLagMessages). */
  lagMessages: number;
  /** The member the coordinator assigned the queue to; '' when none (or not known here). */
  memberId: string;
}

/**
 * A consumer group on a topic: cluster-wide, or (from one group's leader, a "part") only the
 * queues that group holds and, when it holds queue 0 of the topic, the membership.
 */
export interface ConsumerGroupView {
  consumerGroup: string;
  topic: string;
  /** Live members, in id order. */
  members: ConsumerGroupMemberView[];
  /** In queue order. */
  queues: ConsumerGroupQueueView[];
  /** The sum over `queues`. */
  lagMessages: number;
  /** 0 when no member is live. */
  generation: number;
  sessionTimeoutMs: number;
  /** Groups whose leader did not answer (their queues are missing); empty in a part. */
  groupsUnreachable: string[];
}

export function consumerGroupListFromWire(reply: ListConsumerGroupsResponse): ConsumerGroupListView {
  return {
    consumerGroups: reply.consumerGroups.map((l) => ({
      consumerGroup: l.consumerGroup,
      topic: l.topic,
      memberCount: l.memberCount,
      committedQueueCount: l.committedQueueCount,
    })),
    groupsUnreachable: [...reply.groupsUnreachable],
    truncated: reply.truncated,
  };
}

export function consumerGroupFromWire(reply: DescribeConsumerGroupResponse): ConsumerGroupView {
  return {
    consumerGroup: reply.consumerGroup,
    topic: reply.topic,
    members: reply.members.map((m) => ({
      memberId: m.memberId,
      assignedQueues: [...m.assignedQueues],
      ownedQueues: [...m.ownedQueues],
      lastHeartbeatAgeMs: m.lastHeartbeatAgeMs,
    })),
    queues: reply.queues.map((q) => ({
      queue: q.queue,
      group: q.group,
      committedOffset: q.committed ? q.committedOffset : null,
      startOffset: q.startOffset,
      endOffset: q.endOffset,
      lagMessages: q.lagMessages,
      memberId: q.memberId,
    })),
    lagMessages: reply.lagMessages,
    generation: reply.generation,
    sessionTimeoutMs: reply.sessionTimeoutMs,
    groupsUnreachable: [...reply.groupsUnreachable],
  };
}
