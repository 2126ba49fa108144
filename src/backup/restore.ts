// Restore (issue 14): a backup directory seeds a new, stopped cluster. Two steps:
//
// planRestore checks everything and writes nothing: the manifest (fields, checksum); that the
// cluster file has the backup's groups in the same order (the cluster metadata places queues on
// groups by id and lives in the first group's log, so another count or order would lose queues); that every topic --topics names is in the
// backup; that every seed broker's data directory is unused (nothing but a format record for that
// very broker, or a LOCK no live process holds); then every file: its size and SHA-256 against the
// manifest, and its content (group-files.ts: snapshot checks, every batch whole and CRC-right,
// offsets from S to H, what the manifest says the group held). Any problem is a BackupError that
// names the file, group, broker or topic.
//
// applyRestore writes each seed broker's data directory into a temporary sibling
// (`<dataDir>.restoring-<pid>`, replica/seed-directory.ts), and only once all of them are complete
// moves each into place (a directory holding only a format record is moved aside first and
// removed at the end). A failure before that removes every temporary directory; a failure while
// moving puts back what was moved. So a restore is applied to every broker or to none.
//
// What a restored group holds: the backup's snapshot and log, then the restore's own entries, the
// same on every broker of the group, all counted committed (they hold the same log): a membership
// entry when the configuration the backup was in does not name the cluster file's seed brokers
// (other ids, learners, or endpoints recorded for the old addresses), and with --topics a
// DeleteTopic entry for every other topic the group held (the state machine's own delete: gone
// once applied at the first start; their bytes stay in the log until retention removes them).
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CommandKind, encodeCommand } from '../broker/commands.js';
import type { ClusterConfig } from '../config/cluster.js';
import { fsyncDirectory, type LogLogger } from '../log/index.js';
import { encodeMembershipConfig, normalizeConfig } from '../raft/membership.js';
import { EntryType, type MembershipConfig } from '../raft/types.js';
import { lockHolder } from '../replica/data-dir-lock.js';
import { dataDirectoryUnused, formatFileName, readDirectoryFormat } from '../replica/format.js';
import { seedDataDirectory, type SeedEntry, type SeedSnapshot } from '../replica/seed-directory.js';
import { BackupError } from './errors.js';
import { batchesOfFile, hashFile, readGroupContent, type GroupContent } from './group-files.js';
import { manifestFileName, parseManifest, type BackupFile, type BackupManifest, type GroupBackup } from './manifest.js';

export interface RestoreOptions {
  /** Keep only these topics (each must be in the backup); null keeps every topic. */
  topics: readonly string[] | null;
}

export interface BrokerTarget {
  id: string;
  dataDir: string;
  segmentBytes: number;
  /** The target's format record, kept (it names this broker, group and cluster); null: a new one. */
  keptFormatFile: string | null;
}

export interface GroupRestore {
  backup: GroupBackup;
  content: GroupContent;
  brokers: BrokerTarget[];
  /** The configuration the restore appends, or null when the backup's is already the cluster file's seed. */
  membership: MembershipConfig | null;
  /** Topics the restore deletes in this group (--topics). */
  deletedTopics: string[];
  /**
   * The metadata group's (the first group's) deleted topics with their incarnations: the cluster
   * metadata drops them too, else every group's leader would create them again from it.
   */
  deletedFromMetadata: Array<{ name: string; createdMs: number }>;
}

export interface RestorePlan {
  from: string;
  /** The target cluster's name (its format records carry it). */
  cluster: string;
  manifest: BackupManifest;
  groups: GroupRestore[];
  /** The topics kept (--topics), or null for all. */
  keptTopics: string[] | null;
}

export type RestoreProgress =
  | { event: 'seeded'; group: string; broker: string; startOffset: number; endOffset: number }
  | { event: 'moved'; group: string; broker: string; dataDir: string };

// ------------------------------------------------------------------ plan (checks, writes nothing)

export async function planRestore(from: string, cluster: ClusterConfig, options: RestoreOptions): Promise<RestorePlan> {
  const manifest = readManifest(from);
  checkGroupsFit(manifest, cluster);
  const keep = checkTopicFilter(manifest, options.topics);
  const targets = cluster.groups.map((group) =>
    group.brokers
      .filter((b) => !b.joining)
      .map((b) => checkTarget({ cluster: cluster.name, group: group.id, broker: b.id, dataDir: b.dataDir }, b.settings.segmentBytes)),
  );
  const groups: GroupRestore[] = [];
  for (const [index, backup] of manifest.groups.entries()) {
    const content = await checkGroupFiles(from, backup);
    const seed = targets[index]!.map((b) => b.id);
    groups.push({
      backup,
      content,
      brokers: targets[index]!,
      membership: membershipToAppend(content.membership, seed),
      deletedTopics: keep === null ? [] : content.topics.map((t) => t.name).filter((name) => !keep.has(name)),
      deletedFromMetadata:
        keep === null || index !== 0 ? [] : content.topics.filter((t) => !keep.has(t.name)).map((t) => ({ name: t.name, createdMs: t.createdMs })),
    });
  }
  return { from, cluster: cluster.name, manifest, groups, keptTopics: keep === null ? null : [...keep].sort() };
}

function readManifest(from: string): BackupManifest {
  const path = join(from, manifestFileName);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new BackupError(`${path} is missing: ${from} holds no finished backup (the manifest is written last, once every file is checked)`);
    throw new BackupError(`${path} cannot be read: ${code ?? (error as Error).message}`);
  }
  return parseManifest(text, path);
}

/** The cluster file must have the backup's groups, in the same order: queue placement depends on both. */
export function checkGroupsFit(manifest: BackupManifest, cluster: Pick<ClusterConfig, 'source' | 'groups'>): void {
  const held = manifest.groups.map((g) => g.id);
  const target = cluster.groups.map((g) => g.id);
  if (held.length === target.length && held.every((id, i) => target[i] === id)) return;
  throw new BackupError(
    `the backup holds ${held.length} group${held.length === 1 ? '' : 's'} (${held.join(', ')}) but ${cluster.source} has ${target.length} (${target.join(', ')}): ` +
      'queues live in groups by id (the cluster metadata, in the first group), so a restore needs the same groups in the same order',
  );
}

/** The set of topics to keep, each checked to be in the backup; null for all. */
export function checkTopicFilter(manifest: BackupManifest, topics: readonly string[] | null): Set<string> | null {
  if (topics === null) return null;
  if (topics.length === 0) throw new BackupError('--topics names no topic');
  const held = manifest.topics.map((t) => t.name);
  for (const name of topics) {
    if (!held.includes(name)) throw new BackupError(`--topics: topic "${name}" is not in the backup (it holds: ${held.length ? held.join(', ') : 'no topic'})`);
  }
  return new Set(topics);
}

/**
 * A seed broker's data directory must be unused: nothing but a format record for that same
 * broker (kept) and a LOCK no live process holds. Returns the broker's target.
 */
export function checkTarget(identity: { cluster: string; group: string; broker: string; dataDir: string }, segmentBytes: number): BrokerTarget {
  const { broker, dataDir } = identity;
  const holder = lockHolder(dataDir);
  if (holder !== null) throw new BackupError(`broker ${broker} is running (process ${holder} holds ${join(dataDir, 'LOCK')}): restore into a stopped cluster`);
  if (!dataDirectoryUnused(dataDir)) {
    const held = readdirSync(dataDir).filter((name) => name !== 'LOCK' && !name.startsWith(formatFileName));
    throw new BackupError(`broker ${broker}: its data directory ${dataDir} holds data (${held.slice(0, 5).join(', ')}): a restore seeds only a new cluster`);
  }
  for (const sibling of [temporaryOf(dataDir), replacedOf(dataDir)])
    if (existsSync(sibling)) throw new BackupError(`broker ${broker}: ${sibling} exists (left by an interrupted restore?): remove it first`);
  let format: ReturnType<typeof readDirectoryFormat>;
  try {
    format = readDirectoryFormat(dataDir);
  } catch (error) {
    throw new BackupError(`broker ${broker}: ${(error as Error).message}`);
  }
  if (format !== null && (format.brokerId !== broker || format.group !== identity.group || format.cluster !== identity.cluster)) {
    throw new BackupError(
      `broker ${broker}: ${dataDir} is formatted for broker ${format.brokerId} of group ${format.group} in cluster ${format.cluster}, ` +
        `not broker ${broker} of group ${identity.group} in cluster ${identity.cluster}: is this the right cluster file?`,
    );
  }
  return { id: broker, dataDir, segmentBytes, keptFormatFile: format === null ? null : join(dataDir, formatFileName) };
}

/** Every file of a group: present, its size and SHA-256 as the manifest says, then its content. */
async function checkGroupFiles(from: string, backup: GroupBackup): Promise<GroupContent> {
  const files: BackupFile[] = backup.snapshot === null ? [backup.log.file] : [backup.snapshot.file, backup.log.file];
  for (const file of files) {
    const found = await hashFile(join(from, file.name), file.name);
    if (found.bytes !== file.bytes)
      throw new BackupError(`backup file ${file.name} has ${found.bytes} bytes; ${manifestFileName} says ${file.bytes}: it is damaged`);
    if (found.sha256 !== file.sha256)
      throw new BackupError(`backup file ${file.name} fails its checksum (sha256 ${found.sha256}, ${manifestFileName} says ${file.sha256}): it is damaged`);
  }
  const content = await readGroupContent(from, {
    id: backup.id,
    snapshot: backup.snapshot === null ? null : { endOffset: backup.snapshot.endOffset, epoch: backup.snapshot.epoch, name: backup.snapshot.file.name },
    log: { name: backup.log.file.name, startOffset: backup.log.startOffset, endOffset: backup.log.endOffset },
    lastEpoch: backup.lastEpoch,
    seedVoters: backup.seedVoters,
  });
  const topics = content.topics.map((t) => t.name);
  if (content.batchCount !== backup.log.batchCount || topics.join('\n') !== [...backup.topics].sort().join('\n'))
    throw new BackupError(
      `group ${backup.id}: its files hold ${content.batchCount} batches and topics [${topics.join(', ')}]; ${manifestFileName} says ${backup.log.batchCount} and [${backup.topics.join(', ')}]`,
    );
  return content;
}

/**
 * The configuration a restored group must be in: its seed brokers as voters, nothing else (the
 * cluster file gives their addresses). Null when the backup's is that already (no entry needed).
 */
export function membershipToAppend(inForce: MembershipConfig, seed: readonly string[]): MembershipConfig | null {
  const wanted = normalizeConfig({ voters: [...seed], learners: [], endpoints: [] });
  const held = normalizeConfig(inForce);
  const same = held.learners.length === 0 && held.endpoints.length === 0 && held.voters.join('\n') === wanted.voters.join('\n');
  return same ? null : wanted;
}

/** The entries a restore appends to a group's log, in order. */
export function appendedEntries(group: Pick<GroupRestore, 'membership' | 'deletedTopics'> & Partial<Pick<GroupRestore, 'deletedFromMetadata'>>): SeedEntry[] {
  const entries: SeedEntry[] = [];
  if (group.membership !== null) entries.push({ type: EntryType.Membership, payload: encodeMembershipConfig(group.membership) });
  for (const { name, createdMs } of group.deletedFromMetadata ?? [])
    entries.push({ type: EntryType.Data, payload: encodeCommand({ kind: CommandKind.Metadata, change: { change: 'delete-topic', name, createdMs } }) });
  for (const name of [...group.deletedTopics].sort()) entries.push({ type: EntryType.Data, payload: encodeCommand({ kind: CommandKind.DeleteTopic, name }) });
  return entries;
}

// ------------------------------------------------------------------ apply (all brokers or none)

function temporaryOf(dataDir: string): string {
  return `${dataDir}.restoring-${process.pid}`;
}

function replacedOf(dataDir: string): string {
  return `${dataDir}.replaced-${process.pid}`;
}

export interface RestoredGroup {
  id: string;
  brokers: string[];
  startOffset: number;
  endOffset: number;
  membershipRewritten: boolean;
  deletedTopics: string[];
}

export async function applyRestore(plan: RestorePlan, onProgress: (progress: RestoreProgress) => void = () => undefined): Promise<RestoredGroup[]> {
  const seeded: Array<{ group: string; target: BrokerTarget }> = [];
  const restored: RestoredGroup[] = [];
  try {
    for (const group of plan.groups) {
      let range = { startOffset: 0, endOffset: 0 };
      for (const target of group.brokers) {
        seeded.push({ group: group.backup.id, target });
        range = await seedBroker(plan, group, target);
        onProgress({ event: 'seeded', group: group.backup.id, broker: target.id, ...range });
      }
      restored.push({
        id: group.backup.id,
        brokers: group.brokers.map((b) => b.id),
        ...range,
        membershipRewritten: group.membership !== null,
        deletedTopics: group.deletedTopics,
      });
    }
  } catch (error) {
    for (const { target } of seeded) rmSync(temporaryOf(target.dataDir), { recursive: true, force: true });
    throw error;
  }
  moveIntoPlace(seeded, onProgress);
  return restored;
}

async function seedBroker(plan: RestorePlan, group: GroupRestore, target: BrokerTarget): Promise<{ startOffset: number; endOffset: number }> {
  const { backup } = group;
  const dataDir = temporaryOf(target.dataDir);
  mkdirSync(dirname(dataDir), { recursive: true });
  const snapshotHandle = backup.snapshot === null ? null : await open(join(plan.from, backup.snapshot.file.name), 'r');
  try {
    const snapshot: SeedSnapshot | null =
      backup.snapshot === null || snapshotHandle === null
        ? null
        : {
            id: { endOffset: backup.snapshot.endOffset, epoch: backup.snapshot.epoch },
            totalBytes: backup.snapshot.file.bytes,
            read: async (position, bytesMax) => {
              const buffer = Buffer.alloc(Math.min(bytesMax, backup.snapshot!.file.bytes - position));
              const { bytesRead } = await snapshotHandle.read(buffer, 0, buffer.byteLength, position);
              return buffer.subarray(0, bytesRead);
            },
          };
    const logger: LogLogger = () => undefined; // the restore reports per broker (onProgress)
    const seeded = await seedDataDirectory(
      {
        dataDir,
        identity: { cluster: plan.cluster, group: backup.id, brokerId: target.id },
        keptFormatFile: target.keptFormatFile,
        segmentBytes: target.segmentBytes,
        logger,
      },
      {
        snapshot,
        logStartOffset: backup.log.startOffset,
        logStartEpoch: logStartEpoch(group),
        batches: batchesOfFile(join(plan.from, backup.log.file.name), backup.log.file.name),
        lastEpoch: backup.lastEpoch,
        appended: appendedEntries(group),
      },
    );
    return { startOffset: seeded.startOffset, endOffset: seeded.endOffset };
  } finally {
    await snapshotHandle?.close();
  }
}

/**
 * The epoch a restored log starting at L > 0 is reset in: the snapshot's when it ends at L (the
 * entry below L is its last), else the first batch's (the entry below L is gone with the
 * leader's retention; no later batch has a lower epoch, so appends go on from it).
 */
function logStartEpoch(group: GroupRestore): number {
  const snapshot = group.backup.snapshot;
  return snapshot !== null && snapshot.endOffset === group.backup.log.startOffset ? snapshot.epoch : group.content.firstEpoch;
}

/** Each seeded directory into place; a failure puts back every directory already moved. */
function moveIntoPlace(seeded: Array<{ group: string; target: BrokerTarget }>, onProgress: (progress: RestoreProgress) => void): void {
  const moved: Array<{ target: BrokerTarget; replaced: boolean }> = [];
  try {
    for (const { target } of seeded) {
      const { dataDir } = target;
      // Checked again: nothing may have started on the directory while the restore wrote.
      if (lockHolder(dataDir) !== null || !dataDirectoryUnused(dataDir))
        throw new BackupError(`broker ${target.id}: ${dataDir} was taken while the restore ran`);
      const replaced = existsSync(dataDir);
      if (replaced) renameSync(dataDir, replacedOf(dataDir));
      moved.push({ target, replaced });
      renameSync(temporaryOf(dataDir), dataDir);
      fsyncDirectory(dirname(dataDir));
    }
  } catch (error) {
    for (const { target, replaced } of moved.reverse()) {
      if (existsSync(target.dataDir) && !existsSync(temporaryOf(target.dataDir))) renameSync(target.dataDir, temporaryOf(target.dataDir));
      if (replaced) renameSync(replacedOf(target.dataDir), target.dataDir);
    }
    for (const { target } of seeded) rmSync(temporaryOf(target.dataDir), { recursive: true, force: true });
    throw error;
  }
  for (const { group, target } of seeded) {
    rmSync(replacedOf(target.dataDir), { recursive: true, force: true });
    onProgress({ event: 'moved', group, broker: target.id, dataDir: target.dataDir });
  }
}
