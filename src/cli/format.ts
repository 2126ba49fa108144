// How `mambamq status` prints the cluster, and `mambamq consumer-group list | describe` the
// consumer groups: a fixed JSON shape for scripts, a table for people.
import type { ConsumerGroupDescription, ConsumerGroupList } from '../client/consumer-groups.js';
import type { GroupRoute } from '../client/router.js';

export function statusJson(groups: GroupRoute[]): unknown {
  return {
    groups: groups.map((g) => ({
      id: g.id,
      leader: g.leaderId || null,
      epoch: g.epoch,
      highWatermark: g.highWatermark,
      replicas: g.replicas.map((r) => ({
        id: r.id,
        role: r.role,
        endOffset: r.endOffset,
        lagOffsets: r.lagOffsets,
        lagMs: r.lagMs,
        lastFetchAgeMs: r.lastFetchAgeMs,
      })),
      advice: g.advice ? { replica: g.advice.replicaId, reason: g.advice.reason } : null,
    })),
  };
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

export function statusText(groups: GroupRoute[]): string {
  const lines: string[] = [];
  for (const g of groups) {
    lines.push(`group ${g.id}  leader ${g.leaderId || '(none)'}  epoch ${g.epoch}  high watermark ${g.highWatermark}`);
    lines.push(`  ${pad('replica', 9)}${pad('role', 12)}${pad('end offset', 12)}${pad('lag', 10)}${pad('lag ms', 9)}${pad('last fetch', 11)}address`);
    for (const r of g.replicas) {
      const fetchAge = r.role === 'leader' ? '-' : r.lastFetchAgeMs < 0 ? 'never' : `${r.lastFetchAgeMs} ms`;
      lines.push(
        `  ${pad(r.id, 9)}${pad(r.role, 12)}${pad(String(r.endOffset), 12)}${pad(String(r.lagOffsets), 10)}${pad(String(r.lagMs), 9)}${pad(fetchAge, 11)}${r.address}`,
      );
    }
    const learners = g.replicas.filter((r) => r.role === 'learner' || r.role === 'recovering');
    if (learners.length > 0) {
      lines.push(`  catching up: ${learners.map((r) => `${r.id} (${r.role}, holds ${r.endOffset} of ${g.highWatermark}, lag ${r.lagOffsets})`).join(', ')}`);
    }
    lines.push(g.advice ? `  read advice: ${g.advice.replicaId} (${g.advice.reason})` : '  read advice: (no leader)');
  }
  return lines.join('\n');
}

/** Rows under a header line, each column as wide as its widest cell plus two spaces. */
function table(header: string[], rows: string[][], indent = '  '): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)) + 2);
  const line = (cells: string[]): string => `${indent}${cells.map((c, i) => (i === cells.length - 1 ? c : pad(c, widths[i]!))).join('')}`;
  return [line(header), ...rows.map(line)];
}

function unreachableLine(groups: string[]): string[] {
  return groups.length > 0 ? [`warning: group${groups.length > 1 ? 's' : ''} ${groups.join(', ')} did not answer: what they hold is missing`] : [];
}

export function consumerGroupListJson(list: ConsumerGroupList): unknown {
  return {
    consumerGroups: list.consumerGroups.map((l) => ({
      consumerGroup: l.consumerGroup,
      topic: l.topic,
      memberCount: l.memberCount,
      committedQueueCount: l.committedQueueCount,
    })),
    groupsUnreachable: list.groupsUnreachable,
    truncated: list.truncated,
  };
}

export function consumerGroupListText(list: ConsumerGroupList): string {
  if (list.consumerGroups.length === 0) return ['(no consumer groups)', ...unreachableLine(list.groupsUnreachable)].join('\n');
  const rows = list.consumerGroups.map((l) => [l.consumerGroup, l.topic, String(l.memberCount), String(l.committedQueueCount)]);
  return [
    ...table(['consumer group', 'topic', 'members', 'committed queues'], rows, ''),
    ...(list.truncated ? ['(more consumer groups than one answer carries: the list is cut)'] : []),
    ...unreachableLine(list.groupsUnreachable),
  ].join('\n');
}

export function consumerGroupJson(d: ConsumerGroupDescription): unknown {
  return {
    consumerGroup: d.consumerGroup,
    topic: d.topic,
    generation: d.generation,
    sessionTimeoutMs: d.sessionTimeoutMs,
    members: d.members.map((m) => ({
      memberId: m.memberId,
      assignedQueues: m.assignedQueues,
      ownedQueues: m.ownedQueues,
      lastHeartbeatAgeMs: m.lastHeartbeatAgeMs,
    })),
    queues: d.queues.map((q) => ({
      queue: q.queue,
      group: q.group,
      memberId: q.memberId,
      committedOffset: q.committedOffset,
      startOffset: q.startOffset,
      endOffset: q.endOffset,
      lagMessages: q.lagMessages,
    })),
    lagMessages: d.lagMessages,
    groupsUnreachable: d.groupsUnreachable,
  };
}

function queueList(queues: number[]): string {
  return queues.length > 0 ? queues.join(',') : '-';
}

export function consumerGroupText(d: ConsumerGroupDescription): string {
  // assigned: what the coordinator's last answer gave the member; reading: what it said it reads.
  const memberRows = d.members.map((m) => [m.memberId, queueList(m.assignedQueues), queueList(m.ownedQueues), `${m.lastHeartbeatAgeMs} ms ago`]);
  const queueRows = d.queues.map((q) => [
    String(q.queue),
    q.group,
    q.memberId ?? '-',
    q.committedOffset === null ? '-' : String(q.committedOffset),
    String(q.startOffset),
    String(q.endOffset),
    String(q.lagMessages),
  ]);
  const members = d.members.length === 1 ? '1 member' : `${d.members.length} members`;
  return [
    `consumer group ${d.consumerGroup}  topic ${d.topic}  ${members}  generation ${d.generation}  lag ${d.lagMessages}`,
    ...(d.members.length > 0 ? table(['member', 'assigned', 'reading', 'last heartbeat'], memberRows) : ['  (no live member)']),
    ...table(['queue', 'group', 'member', 'committed', 'start', 'end', 'lag'], queueRows),
    `  total lag ${d.lagMessages}`,
    ...unreachableLine(d.groupsUnreachable),
  ].join('\n');
}
