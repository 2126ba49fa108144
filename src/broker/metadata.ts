// Cluster metadata (issue 14.1; KRaft's metadata log, DESIGN §12): the groups and their brokers,
// the topics, and the group of each queue. It lives in one replicated place: the log of the
// metadata group (the cluster file's first group), as commands its state applies in log order;
// so a topic's creation or deletion is one entry, atomic. Every other broker keeps a copy fetched
// from the metadata group (metadata-sync.ts). The version is one past the log offset of the last
// metadata command applied: 0 means none yet (the metadata group has not bootstrapped).
//
// Pure code: what a command does to the metadata, where new queues go, and the checks of a
// metadata document read from the wire or a store.
import type { BrokerEndpoint } from './layout.js';
import { checkTopicName, queuesPerTopicMax } from './names.js';

export interface MetadataGroup {
  id: string;
  brokers: BrokerEndpoint[];
}

export interface MetadataTopic {
  name: string;
  /** The incarnation: a topic deleted and created again gets another one. */
  createdMs: number;
  /** placement[q] is the group that holds queue q; its length is the queue count. */
  placement: string[];
  /**
   * Made before the metadata log: each group created it on its own, under its own createdMs (the
   * metadata has the metadata group's), so another group's copy is the same incarnation whatever
   * its createdMs.
   */
  legacy?: boolean;
}

export interface ClusterMetadata {
  version: number;
  groups: MetadataGroup[];
  topics: MetadataTopic[];
}

export const emptyMetadata: ClusterMetadata = { version: 0, groups: [], topics: [] };

/** What a metadata command changes (commands.ts carries these as JSON). */
export type MetadataChange =
  /** The metadata group's first entry: the seed groups, and topics from before the metadata log. */
  | { change: 'bootstrap'; groups: MetadataGroup[]; topics: MetadataTopic[] }
  | { change: 'add-group'; group: MetadataGroup }
  /** Creates the topic, or grows it (same createdMs, a longer placement that keeps the old one). */
  | { change: 'place-topic'; topic: MetadataTopic }
  | { change: 'delete-topic'; name: string; createdMs: number };

export class MetadataError extends Error {
  override readonly name = 'MetadataError';
}

/**
 * The metadata after `change`, applied at `logOffset`. A change that no longer fits (a retried
 * proposal whose first copy already applied) leaves it as it is, except for the version: a later
 * state must not apply the same entry twice, and the version says how far it got.
 */
export function applyMetadataChange(metadata: ClusterMetadata, change: MetadataChange, logOffset: number): ClusterMetadata {
  const version = logOffset + 1;
  if (version <= metadata.version) return metadata; // applied already (a replay)
  switch (change.change) {
    case 'bootstrap':
      if (metadata.groups.length > 0) return { ...metadata, version };
      return { version, groups: change.groups.map(copyGroup), topics: change.topics.map(copyTopic) };
    case 'add-group':
      if (metadata.groups.some((g) => g.id === change.group.id)) return { ...metadata, version };
      return { ...metadata, version, groups: [...metadata.groups, copyGroup(change.group)] };
    case 'place-topic': {
      const existing = metadata.topics.find((t) => t.name === change.topic.name);
      if (existing && !grows(existing, change.topic)) return { ...metadata, version };
      const topics = metadata.topics.filter((t) => t.name !== change.topic.name);
      return { ...metadata, version, topics: [...topics, copyTopic(change.topic)].sort((a, b) => a.name.localeCompare(b.name)) };
    }
    case 'delete-topic':
      return { ...metadata, version, topics: metadata.topics.filter((t) => !(t.name === change.name && t.createdMs === change.createdMs)) };
  }
}

/** Whether `next` is `existing` grown: the same incarnation with more queues, the old ones where they were. */
export function grows(existing: MetadataTopic, next: MetadataTopic): boolean {
  return (
    existing.createdMs === next.createdMs &&
    next.placement.length > existing.placement.length &&
    existing.placement.every((group, queue) => next.placement[queue] === group)
  );
}

/**
 * Groups for `count` new queues, by load: each goes to the group holding the fewest queues so far
 * (of every topic), ties broken by `storedOf` (less stored first: the caller's measure), then by
 * group order.
 */
export function placeQueues(metadata: ClusterMetadata, count: number, storedOf: (group: string) => number = () => 0): string[] {
  if (metadata.groups.length === 0) throw new MetadataError('no group is registered in the cluster metadata');
  const queues = new Map(metadata.groups.map((g) => [g.id, 0]));
  for (const topic of metadata.topics) for (const group of topic.placement) if (queues.has(group)) queues.set(group, queues.get(group)! + 1);
  const order = metadata.groups.map((g, index) => ({ id: g.id, index, stored: storedOf(g.id) }));
  const placed: string[] = [];
  for (let i = 0; i < count; i++) {
    order.sort((a, b) => queues.get(a.id)! - queues.get(b.id)! || a.stored - b.stored || a.index - b.index);
    const chosen = order[0]!;
    placed.push(chosen.id);
    queues.set(chosen.id, queues.get(chosen.id)! + 1);
  }
  return placed;
}

/** Queues dealt over groups in order: the placement of every topic made before the metadata log. */
export function legacyPlacement(groups: readonly { id: string }[], queues: number): string[] {
  return Array.from({ length: queues }, (_, q) => groups[q % groups.length]!.id);
}

export function topicOf(metadata: ClusterMetadata, name: string): MetadataTopic | undefined {
  return metadata.topics.find((t) => t.name === name);
}

export function groupOfMetadata(metadata: ClusterMetadata, id: string): MetadataGroup | undefined {
  return metadata.groups.find((g) => g.id === id);
}

// ------------------------------------------------------------------ checks of what is read

/** A metadata change as decoded from a command's JSON; throws MetadataError naming what is wrong. */
export function checkMetadataChange(value: unknown): MetadataChange {
  const v = object(value, 'metadata change');
  switch (v.change) {
    case 'bootstrap':
      return { change: 'bootstrap', groups: array(v.groups, 'groups').map(checkGroup), topics: array(v.topics, 'topics').map(checkTopic) };
    case 'add-group':
      return { change: 'add-group', group: checkGroup(v.group) };
    case 'place-topic':
      return { change: 'place-topic', topic: checkTopic(v.topic) };
    case 'delete-topic':
      return { change: 'delete-topic', name: topicName(v.name), createdMs: nonNegative(v.createdMs, 'createdMs') };
    default:
      throw new MetadataError(`unknown metadata change ${JSON.stringify(v.change)}`);
  }
}

/** A whole metadata document (the wire, the store, a snapshot). */
export function checkMetadata(value: unknown): ClusterMetadata {
  const v = object(value, 'metadata');
  const metadata = {
    version: nonNegative(v.version, 'version'),
    groups: array(v.groups, 'groups').map(checkGroup),
    topics: array(v.topics, 'topics').map(checkTopic),
  };
  const groups = new Set<string>();
  for (const group of metadata.groups) {
    if (groups.has(group.id)) throw new MetadataError(`group ${group.id} appears twice`);
    groups.add(group.id);
  }
  const names = new Set<string>();
  for (const topic of metadata.topics) {
    if (names.has(topic.name)) throw new MetadataError(`topic "${topic.name}" appears twice`);
    names.add(topic.name);
    const unknown = topic.placement.find((g) => !groups.has(g));
    if (unknown !== undefined) throw new MetadataError(`topic "${topic.name}" places a queue on group ${unknown}, which the metadata does not have`);
  }
  return metadata;
}

function checkGroup(value: unknown): MetadataGroup {
  const v = object(value, 'group');
  const id = string(v.id, 'group id');
  const brokers = array(v.brokers, `brokers of group ${id}`).map((b) => {
    const broker = object(b, `broker of group ${id}`);
    return { id: string(broker.id, 'broker id'), host: string(broker.host, 'broker host'), clientPort: port(broker.clientPort) };
  });
  if (brokers.length === 0) throw new MetadataError(`group ${id} has no broker`);
  return { id, brokers };
}

function checkTopic(value: unknown): MetadataTopic {
  const v = object(value, 'topic');
  const name = topicName(v.name);
  const placement = array(v.placement, `placement of topic "${name}"`).map((g) => string(g, 'group id'));
  if (placement.length < 1 || placement.length > queuesPerTopicMax) throw new MetadataError(`topic "${name}" has ${placement.length} queues`);
  if (v.legacy !== undefined && typeof v.legacy !== 'boolean') throw new MetadataError(`legacy of topic "${name}" is not a boolean`);
  return { name, createdMs: nonNegative(v.createdMs, 'createdMs'), placement, ...(v.legacy === true ? { legacy: true } : {}) };
}

function topicName(value: unknown): string {
  const name = string(value, 'topic name');
  try {
    checkTopicName(name);
  } catch (error) {
    throw new MetadataError((error as Error).message);
  }
  return name;
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MetadataError(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new MetadataError(`${what} is not a list`);
  return value;
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) throw new MetadataError(`${what} is not a non-empty string`);
  return value;
}

function nonNegative(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new MetadataError(`${what} is not a non-negative integer`);
  return value;
}

function port(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) throw new MetadataError(`port ${String(value)} is out of range`);
  return value;
}

function copyGroup(group: MetadataGroup): MetadataGroup {
  return { id: group.id, brokers: group.brokers.map((b) => ({ id: b.id, host: b.host, clientPort: b.clientPort })) };
}

function copyTopic(topic: MetadataTopic): MetadataTopic {
  return { name: topic.name, createdMs: topic.createdMs, placement: [...topic.placement], ...(topic.legacy ? { legacy: true } : {}) };
}
