// When a topic's in-memory content (its queues in the queue index, its producers in the producer
// table) ends, in log order. A topic deleted and created again under the same name is a new
// incarnation numbered from queue offset 0: the old one's content must be gone before the new
// one's first batch is indexed, on every replica, whatever it knows of the commit yet. What the
// leader did fixes it: it drops a topic's content when it applies the DeleteTopic, appends the
// topic's batches until then, none after, and proposes a CreateTopic only once its applied state
// lacks the topic. Hence, in log order:
//   1. A DeleteTopic applied drops the content. Batches of the topic appended later and before a
//      CreateTopic of the name (a follower that applied the delete before it received them) were
//      appended by a leader that had not applied it yet: they are not indexed.
//   2. A CreateTopic that starts a new incarnation (the last topic command before it deletes the
//      topic, or none is pending and the applied state lacks the topic) drops what is left of the
//      old one when it is appended, committed or not: the delete before it is committed (its
//      proposer had applied it), and no batch of the old incarnation follows it.
//   3. A DeleteTopic applied after such a create was appended drops nothing: what is there now is
//      the new incarnation's.
// Entries below the applied offset (a start-up replay) are known committed, but the applied state
// is past them: there the last topic command of the replay says it (a delete drops at once, a
// create after it starts a new incarnation); for a topic the replay saw no command of yet, the
// applied state does (a batch of a topic that is gone is not indexed; a create whose createdMs is
// the topic's now started it). One case stays open: a log that starts between a delete and the
// leader's apply of it, whose replay then meets a create of a later, also deleted, incarnation
// first; the index's contiguity assert names it rather than number wrongly.
import { assert } from '../assert.js';
import { CommandKind, type CreateTopicCommand, type DeleteTopicCommand } from './commands.js';
import type { StoredTopic } from './state-store.js';

export type TopicCommand = CreateTopicCommand | DeleteTopicCommand;

interface PendingTopicCommand {
  logOffset: number;
  command: TopicCommand;
  /** A create that started a new incarnation when appended (it dropped the old one's content). */
  newIncarnation: boolean;
}

export class TopicLifecycle {
  /**
   * Topic commands appended at or above the applied offset and not applied yet, in log order.
   * Bounded by the log: one entry per admin request not yet applied (each waits for its commit).
   */
  private readonly pending: PendingTopicCommand[] = [];
  /** During a replay below the applied offset: the last topic command seen per topic (then cleared). */
  private readonly replayed = new Map<string, CommandKind.CreateTopic | CommandKind.DeleteTopic>();

  /**
   * A topic command was appended at `logOffset`; `knownApplied`: below the applied offset (a
   * replay). `current`: the topic in the applied state. True when the topic's content goes now.
   */
  appended(command: TopicCommand, logOffset: number, knownApplied: boolean, current: StoredTopic | undefined): boolean {
    if (knownApplied) return this.replayedCommand(command, current);
    const last = this.lastPending(command.name);
    const newIncarnation = command.kind === CommandKind.CreateTopic && (last ? last.command.kind === CommandKind.DeleteTopic : current === undefined);
    const previous = this.pending[this.pending.length - 1];
    assert(!previous || previous.logOffset < logOffset, `topic command at ${logOffset} appended after one at ${previous?.logOffset}`);
    this.pending.push({ logOffset, command, newIncarnation });
    return newIncarnation;
  }

  /** Whether a batch of `topic` appended now belongs to a live incarnation (rule 1); `exists`: in the applied state. */
  indexes(topic: string, knownApplied: boolean, exists: boolean): boolean {
    if (knownApplied) {
      const last = this.replayed.get(topic);
      // No command of the topic replayed yet: a topic gone now was deleted later in the log
      // (which drops this batch there) or before it (this batch is the deleted one's).
      return last === undefined ? exists : last === CommandKind.CreateTopic;
    }
    return exists || this.pending.some((p) => p.command.kind === CommandKind.CreateTopic && p.command.name === topic);
  }

  /** A topic command is applied (log order). True when a delete drops the topic's content now (rules 1, 3). */
  committed(command: TopicCommand, logOffset: number): boolean {
    const head = this.pending.shift();
    assert(head?.logOffset === logOffset, `topic command at ${logOffset} applied, but the first one appended and not applied is at ${head?.logOffset}`);
    if (command.kind === CommandKind.CreateTopic) return false;
    return !this.recreating(command.name);
  }

  /** A create that starts a new incarnation of `topic` is appended, not applied: the content is that one's. */
  recreating(topic: string): boolean {
    return this.pending.some((p) => p.newIncarnation && p.command.name === topic);
  }

  truncateFrom(logOffset: number): void {
    while (this.pending.length > 0 && this.pending[this.pending.length - 1]!.logOffset >= logOffset) this.pending.pop();
  }

  /** The replay below the applied offset is over: nothing below it is appended again. */
  replayDone(): void {
    if (this.replayed.size > 0) this.replayed.clear();
  }

  clear(): void {
    this.pending.length = 0;
    this.replayed.clear();
  }

  private replayedCommand(command: TopicCommand, current: StoredTopic | undefined): boolean {
    const last = this.replayed.get(command.name);
    this.replayed.set(command.name, command.kind);
    if (command.kind === CommandKind.DeleteTopic) return true;
    // No command of the topic seen yet: the create of the incarnation now applied starts it (a
    // retried create of it carries another createdMs and is no new incarnation).
    return last === CommandKind.DeleteTopic || (last === undefined && current?.createdMs === command.createdMs);
  }

  private lastPending(topic: string): PendingTopicCommand | undefined {
    for (let i = this.pending.length - 1; i >= 0; i--) if (this.pending[i]!.command.name === topic) return this.pending[i];
    return undefined;
  }
}
