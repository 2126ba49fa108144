// The manifest's `topics` section (issue 14): every topic some group holds at its high watermark,
// with its queue placement, in one place. Queues are dealt over the groups in the cluster's order
// (broker/layout.ts groupOfQueue: queue q in group q mod groups); a cluster-wide metadata log will
// hold this placement later, and its part of a backup goes here.
import { groupOfQueue } from '../broker/layout.js';
import type { StoredTopic } from '../broker/state-store.js';
import type { TopicBackup } from './manifest.js';

/** `groups` in the cluster's order, each with the topics it holds; a topic's incarnation is the first group's that holds it. */
export function topicsSection(groups: ReadonlyArray<{ id: string; topics: readonly StoredTopic[] }>): TopicBackup[] {
  const layout = { groups: groups.map((g) => ({ id: g.id, brokers: [] })) };
  const byName = new Map<string, TopicBackup>();
  for (const group of groups) {
    for (const topic of group.topics) {
      const known = byName.get(topic.name);
      if (known) {
        known.groups.push(group.id);
        continue;
      }
      const queueGroups = Array.from({ length: topic.queues }, (_, queue) => groupOfQueue(layout, queue).id);
      byName.set(topic.name, { name: topic.name, queues: topic.queues, createdMs: topic.createdMs, queueGroups, groups: [group.id] });
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
