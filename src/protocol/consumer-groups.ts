// The ListConsumerGroups and DescribeConsumerGroup answers as plain objects, decoded once for both
// sides that read them: the SDK's Admin calls and a broker gathering other groups' parts
// (src/rpc/forwarder.ts). A committed offset that is not there becomes null rather than a flag
// beside a 0; a queue no member is assigned keeps the wire's '' (the SDK turns it into null).
import type { DescribeConsumerGroupResponse, ListConsumerGroupsResponse } from './messages.js';

export interface ConsumerGroupListView {
  consumerGroups: Array<{ consumerGroup: string; topic: string; memberCount: number; committedQueueCount: number }>;
  groupsUnreachable: string[];
  truncated: boolean;
}

export interface ConsumerGroupView {
  consumerGroup: string;
  topic: string;
  members: Array<{ memberId: string; assignedQueues: number[]; ownedQueues: number[]; lastHeartbeatAgeMs: number }>;
  queues: Array<{
    queue: number;
    group: string;
    committedOffset: number | null;
    startOffset: number;
    endOffset: number;
    lagMessages: number;
    /** '' when no member is assigned the queue. */
    memberId: string;
  }>;
  lagMessages: number;
  generation: number;
  sessionTimeoutMs: number;
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
