// A backup's manifest (issue 14): `manifest.json` in the backup directory, written last (to a
// temporary name, synced, renamed, the directory synced), so a directory without one holds no
// finished backup. It says what each group's files hold and how to check them, and which topics
// the groups held, in one place (`topics`, with the group of each queue as the cluster metadata
// placed it; the metadata itself is in the first group's files):
//
//   format "mamba-backup", version 1, cluster (the source's name), startedAtMs, finishedAtMs
//   groups[]  in the cluster's order (the first holds the cluster metadata), each:
//     id, leader, epoch (the leader's when it pinned the backup), highWatermark H, lastEpoch
//     (of the entry at H - 1), seedVoters, voters (in force at H), pinnedAtMs,
//     snapshot: null | { endOffset S, epoch, file }   the snapshot file as the leader stored it
//     log: { startOffset L, endOffset H, batchCount, file }   the record batches of [L, H) as
//          stored (L: the leader's log start, L <= S; 0 without a snapshot)
//     topics: the names the group's state holds at H
//     file: { name (relative to the backup directory), bytes, sha256 }
//   topics[]  by name: name, queues, createdMs, queueGroups (the group of each queue), groups
//             (those that hold the topic at their H: all of them, unless it was being created
//             or deleted while the backup ran)
//   checksum  sha256 of the manifest's JSON without this field
//
// Reading checks every field (type, range, names that stay inside the directory) and the
// checksum, and names the field that is wrong.
import { createHash } from 'node:crypto';
import { queuesPerTopicMax, topicNamePattern } from '../broker/names.js';
import { at, ConfigError, fail, readArray, readInteger, readObject, readString, type Fields, type Where } from '../validation.js';

export const manifestFileName = 'manifest.json';
export const manifestFormat = 'mamba-backup';
export const manifestVersion = 1;

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const sha256Pattern = /^[0-9a-f]{64}$/;
/** A file of a group: `<group>/snapshot` or `<group>/log`, never outside the backup directory. */
const fileNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\/(snapshot|log)$/;
const offsetMax = Number.MAX_SAFE_INTEGER;
const epochMax = 0xffff_ffff;

export interface BackupFile {
  /** Relative to the backup directory. */
  name: string;
  bytes: number;
  sha256: string;
}

export interface GroupBackup {
  id: string;
  leader: string;
  epoch: number;
  highWatermark: number;
  lastEpoch: number;
  seedVoters: string[];
  voters: string[];
  pinnedAtMs: number;
  snapshot: { endOffset: number; epoch: number; file: BackupFile } | null;
  log: { startOffset: number; endOffset: number; batchCount: number; file: BackupFile };
  topics: string[];
}

export interface TopicBackup {
  name: string;
  queues: number;
  createdMs: number;
  queueGroups: string[];
  groups: string[];
}

export interface BackupManifest {
  format: typeof manifestFormat;
  version: typeof manifestVersion;
  cluster: string;
  startedAtMs: number;
  finishedAtMs: number;
  groups: GroupBackup[];
  topics: TopicBackup[];
}

/** The file names a group's parts are stored under. */
export function groupFileNames(group: string): { snapshot: string; log: string } {
  return { snapshot: `${group}/snapshot`, log: `${group}/log` };
}

function checksumOf(content: unknown): string {
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}

/** The manifest's text: its fields in a fixed order, then the checksum over them. */
export function encodeManifest(manifest: BackupManifest): string {
  const content: BackupManifest = {
    format: manifest.format,
    version: manifest.version,
    cluster: manifest.cluster,
    startedAtMs: manifest.startedAtMs,
    finishedAtMs: manifest.finishedAtMs,
    groups: manifest.groups.map(groupContent),
    topics: manifest.topics.map((t) => ({ name: t.name, queues: t.queues, createdMs: t.createdMs, queueGroups: [...t.queueGroups], groups: [...t.groups] })),
  };
  return `${JSON.stringify({ ...content, checksum: checksumOf(content) }, null, 2)}\n`;
}

function groupContent(g: GroupBackup): GroupBackup {
  const file = (f: BackupFile): BackupFile => ({ name: f.name, bytes: f.bytes, sha256: f.sha256 });
  return {
    id: g.id,
    leader: g.leader,
    epoch: g.epoch,
    highWatermark: g.highWatermark,
    lastEpoch: g.lastEpoch,
    seedVoters: [...g.seedVoters],
    voters: [...g.voters],
    pinnedAtMs: g.pinnedAtMs,
    snapshot: g.snapshot === null ? null : { endOffset: g.snapshot.endOffset, epoch: g.snapshot.epoch, file: file(g.snapshot.file) },
    log: { startOffset: g.log.startOffset, endOffset: g.log.endOffset, batchCount: g.log.batchCount, file: file(g.log.file) },
    topics: [...g.topics],
  };
}

/** Reads a manifest's text; `source` (its path) names it in every error (ConfigError). */
export function parseManifest(text: string, source: string): BackupManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${source}: not valid JSON (${(error as Error).message}): the manifest is damaged`);
  }
  const where: Where = { source, path: '' };
  const top = readObject(parsed, where);
  const { checksum, ...content } = top;
  if (typeof checksum !== 'string' || !sha256Pattern.test(checksum)) fail(at(where, 'checksum'), 'must be 64 hex digits');
  if (checksumOf(content) !== checksum) throw new ConfigError(`${source}: fails its checksum: the manifest was changed or damaged`);
  if (top.format !== manifestFormat) fail(at(where, 'format'), `must be "${manifestFormat}", got ${JSON.stringify(top.format)}`);
  if (top.version !== manifestVersion) fail(at(where, 'version'), `this mambamq reads version ${manifestVersion}, got ${JSON.stringify(top.version)}`);
  const groups = readArray(top.groups, at(where, 'groups')).map((g, i) => readGroup(g, at(at(where, 'groups'), i)));
  if (groups.length === 0) fail(at(where, 'groups'), 'must name at least one group');
  const ids = groups.map((g) => g.id);
  ids.forEach((id, i) => {
    if (ids.indexOf(id) !== i) fail(at(at(at(where, 'groups'), i), 'id'), `group "${id}" is named twice`);
  });
  const topics = readArray(top.topics, at(where, 'topics')).map((t, i) => readTopic(t, at(at(where, 'topics'), i), ids));
  return {
    format: manifestFormat,
    version: manifestVersion,
    cluster: readString(top.cluster, at(where, 'cluster'), idPattern),
    startedAtMs: readInteger(top.startedAtMs, at(where, 'startedAtMs'), 0, offsetMax),
    finishedAtMs: readInteger(top.finishedAtMs, at(where, 'finishedAtMs'), 0, offsetMax),
    groups,
    topics,
  };
}

function readStrings(value: unknown, where: Where, pattern: RegExp): string[] {
  return readArray(value, where).map((item, i) => readString(item, at(where, i), pattern));
}

function readVoters(value: unknown, where: Where): string[] {
  const voters = readStrings(value, where, idPattern);
  if (voters.length === 0) fail(where, 'must name at least one voter');
  return voters;
}

function readFile(value: unknown, where: Where, group: string, part: 'snapshot' | 'log'): BackupFile {
  const f = readObject(value, where);
  const name = readString(f.name, at(where, 'name'), fileNamePattern);
  if (name !== groupFileNames(group)[part]) fail(at(where, 'name'), `must be "${groupFileNames(group)[part]}", got "${name}"`);
  const sha256 = readString(f.sha256, at(where, 'sha256'));
  if (!sha256Pattern.test(sha256)) fail(at(where, 'sha256'), 'must be 64 lowercase hex digits');
  return { name, bytes: readInteger(f.bytes, at(where, 'bytes'), 0, offsetMax), sha256 };
}

function readGroup(value: unknown, where: Where): GroupBackup {
  const g = readObject(value, where);
  const id = readString(g.id, at(where, 'id'), idPattern);
  const highWatermark = readInteger(g.highWatermark, at(where, 'highWatermark'), 1, offsetMax);
  const snapshot = g.snapshot === null ? null : readSnapshot(g.snapshot, at(where, 'snapshot'), id);
  const log = readObject(g.log, at(where, 'log'));
  const logWhere = at(where, 'log');
  const startOffset = readInteger(log.startOffset, at(logWhere, 'startOffset'), 0, offsetMax);
  const endOffset = readInteger(log.endOffset, at(logWhere, 'endOffset'), startOffset + 1, offsetMax);
  if (startOffset > (snapshot?.endOffset ?? 0))
    fail(at(logWhere, 'startOffset'), `must be at or below the snapshot's end (${snapshot?.endOffset ?? 'none: 0'}), got ${startOffset}`);
  if ((snapshot?.endOffset ?? 0) > highWatermark) fail(at(where, 'snapshot'), `ends at ${snapshot?.endOffset}, above the high watermark ${highWatermark}`);
  if (endOffset !== highWatermark) fail(at(logWhere, 'endOffset'), `must be the high watermark ${highWatermark}, got ${endOffset}`);
  return {
    id,
    leader: readString(g.leader, at(where, 'leader'), idPattern),
    epoch: readInteger(g.epoch, at(where, 'epoch'), 1, epochMax),
    highWatermark,
    lastEpoch: readInteger(g.lastEpoch, at(where, 'lastEpoch'), 1, epochMax),
    seedVoters: readVoters(g.seedVoters, at(where, 'seedVoters')),
    voters: readVoters(g.voters, at(where, 'voters')),
    pinnedAtMs: readInteger(g.pinnedAtMs, at(where, 'pinnedAtMs'), 0, offsetMax),
    snapshot,
    log: {
      startOffset,
      endOffset,
      batchCount: readInteger(log.batchCount, at(logWhere, 'batchCount'), 0, offsetMax),
      file: readFile(log.file, at(logWhere, 'file'), id, 'log'),
    },
    topics: readStrings(g.topics, at(where, 'topics'), topicNamePattern),
  };
}

function readSnapshot(value: unknown, where: Where, group: string): GroupBackup['snapshot'] {
  const s: Fields = readObject(value, where);
  return {
    endOffset: readInteger(s.endOffset, at(where, 'endOffset'), 1, offsetMax),
    epoch: readInteger(s.epoch, at(where, 'epoch'), 1, epochMax),
    file: readFile(s.file, at(where, 'file'), group, 'snapshot'),
  };
}

function readTopic(value: unknown, where: Where, groupIds: string[]): TopicBackup {
  const t = readObject(value, where);
  const queues = readInteger(t.queues, at(where, 'queues'), 1, queuesPerTopicMax);
  const queueGroups = readStrings(t.queueGroups, at(where, 'queueGroups'), idPattern);
  if (queueGroups.length !== queues) fail(at(where, 'queueGroups'), `must name the group of each of the ${queues} queues, got ${queueGroups.length}`);
  const groups = readStrings(t.groups, at(where, 'groups'), idPattern);
  for (const [i, g] of [...queueGroups, ...groups].entries())
    if (!groupIds.includes(g)) fail(at(where, i < queues ? 'queueGroups' : 'groups'), `names group "${g}", which the backup does not hold`);
  return {
    name: readString(t.name, at(where, 'name'), topicNamePattern),
    queues,
    createdMs: readInteger(t.createdMs, at(where, 'createdMs'), 0, offsetMax),
    queueGroups,
    groups,
  };
}
