// The manifest's `topics` section (issue 14): every topic some group holds at its high watermark,
// with its queue placement, in one place. The placement is the cluster metadata's (the metadata
// group's log, whose copy in the backup restores it); a topic the metadata does not name (a
// cluster from before the metadata log) has its queues dealt over the groups in order.
import { groupOfQueue } from '../broker/layout.js';
import type { StoredTopic } from '../broker/state-store.js';
import type { TopicBackup } from './manifest.js';

/** `groups` in the cluster's order, each with the topics it holds; a topic's incarnation is the first group's that holds it. */
export function topicsSection(
  groups: ReadonlyArray<{ id: string; topics: readonly StoredTopic[] }>,
  placementOf: (topic: string) => readonly string[] | undefined = () => undefined,
): TopicBackup[] {
  const layout = { groups: groups.map((g) => ({ id: g.id, brokers: [] })) };
  const byName = new Map<string, TopicBackup>();
  for (const group of groups) {
    for (const topic of group.topics) {
      const known = byName.get(topic.name);
      if (known) {
        known.groups.push(group.id);
        continue;
      }
      const placed = placementOf(topic.name);
      const queueGroups =
        placed !== undefined && placed.length === topic.queues
          ? [...placed]
          : Array.from({ length: topic.queues }, (_, queue) => groupOfQueue(layout, queue).id);
      byName.set(topic.name, { name: topic.name, queues: topic.queues, createdMs: topic.createdMs, queueGroups, groups: [group.id] });
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
