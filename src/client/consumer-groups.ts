// Consumer groups as the SDK's Admin calls give them (ListConsumerGroups, DescribeConsumerGroup):
// the protocol's answers (decoded in src/protocol/consumer-groups.ts), a queue no member is
// assigned as null.
import type { DescribeConsumerGroupResponse, ListConsumerGroupsResponse } from '../protocol/messages.js';
import { consumerGroupFromWire as describedFromWire, consumerGroupListFromWire as listFromWire } from '../protocol/consumer-groups.js';

export interface ConsumerGroupListing {
  consumerGroup: string;
  topic: string;
  /** Members whose last heartbeat is within the session timeout. */
  memberCount: number;
  /** Queues of the topic with a committed offset of the consumer group. */
  committedQueueCount: number;
}

export interface ConsumerGroupList {
  /** In (consumer group, topic) order. */
  consumerGroups: ConsumerGroupListing[];
  /** Groups (of brokers) whose leader did not answer: what they hold is missing. */
  groupsUnreachable: string[];
  /** The cluster knows more consumer groups than one answer carries. */
  truncated: boolean;
}

export interface ConsumerGroupMember {
  memberId: string;
  /** What the coordinator's last answer gave it. */
  assignedQueues: number[];
  /** What it said it reads in its last heartbeat. */
  ownedQueues: number[];
  lastHeartbeatAgeMs: number;
}

/** One queue as the consumer group stands on it (queue offsets). */
export interface ConsumerGroupQueue {
  queue: number;
  /** The group (of brokers) that holds the queue. */
  group: string;
  /** Null: nothing committed on this queue. */
  committedOffset: number | null;
  startOffset: number;
  endOffset: number;
  /** end - max(committed, start), or end - start when nothing is committed. */
  lagMessages: number;
  /** The member assigned the queue, or null. */
  memberId: string | null;
}

export interface ConsumerGroupDescription {
  consumerGroup: string;
  topic: string;
  /** In member id order. */
  members: ConsumerGroupMember[];
  /** In queue order; the queues of an unreachable group are missing. */
  queues: ConsumerGroupQueue[];
  /** The sum over `queues`. */
  lagMessages: number;
  generation: number;
  sessionTimeoutMs: number;
  groupsUnreachable: string[];
}

export function consumerGroupListFromWire(reply: ListConsumerGroupsResponse): ConsumerGroupList {
  return listFromWire(reply);
}

export function consumerGroupFromWire(reply: DescribeConsumerGroupResponse): ConsumerGroupDescription {
  const view = describedFromWire(reply);
  return { ...view, queues: view.queues.map((q) => ({ ...q, memberId: q.memberId || null })) };
}
