// The topics a group's state holds at a log offset, worked out from stored bytes alone: a state
// snapshot's topics, then the topic commands of the committed entries after it, by the same rule
// as the apply in state.ts (a create of a name already held changes nothing: the first wins; a
// delete removes the name). A backup (src/backup) lists with it what each group holds at its high
// watermark, and a restore that keeps only some topics learns which ones to delete.
import { CommandKind, decodeEntry } from './commands.js';
import { decodeStateSnapshot } from './state-snapshot.js';
import type { StoredTopic } from './state-store.js';
import type { Entry } from '../raft/types.js';

export class TopicCatalog {
  private readonly topics = new Map<string, StoredTopic>();

  /** From a state snapshot payload taken at `endOffset` (checked as the broker checks one), or empty. */
  static fromSnapshot(snapshot: { endOffset: number; payload: Uint8Array } | null): TopicCatalog {
    const catalog = new TopicCatalog();
    if (snapshot === null) return catalog;
    for (const topic of decodeStateSnapshot(snapshot.payload, snapshot.endOffset).topics) catalog.topics.set(topic.name, { ...topic });
    return catalog;
  }

  /** A committed entry, in log order: its topic command, if it carries one, takes effect. */
  apply(entry: Entry): void {
    const command = decodeEntry(entry);
    if (command === null) return;
    if (command.kind === CommandKind.CreateTopic && !this.topics.has(command.name))
      this.topics.set(command.name, { name: command.name, queues: command.queues, createdMs: command.createdMs });
    else if (command.kind === CommandKind.DeleteTopic) this.topics.delete(command.name);
    else if (command.kind === CommandKind.GrowTopic) {
      const topic = this.topics.get(command.name);
      if (topic && topic.createdMs === command.createdMs && command.queues > topic.queues) this.topics.set(command.name, { ...topic, queues: command.queues });
    }
  }

  /** The topics held, by name. */
  list(): StoredTopic[] {
    return [...this.topics.values()].map((topic) => ({ ...topic })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
