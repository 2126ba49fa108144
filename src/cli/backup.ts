// `mambamq backup --to DIR` and `mambamq restore --from DIR` (issue 14). The backup asks every
// group's leader for its Backup stream at once (each group is cut at its own high watermark when
// its leader takes the call), writes each group's files as they arrive (src/backup/writer.ts),
// checks them read back, then writes the manifest last; progress per group on stderr. A group
// whose stream breaks starts over (the client's retry policy); a backup that fails removes what
// it wrote. The restore is src/backup/restore.ts: every check first, then all brokers or none.
import { mkdir, open, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UnavailableError } from '../errors.js';
import { BackupError } from '../backup/errors.js';
import { encodeManifest, manifestFileName, manifestFormat, manifestVersion, type BackupManifest } from '../backup/manifest.js';
import { topicsSection } from '../backup/topics.js';
import { GroupBackupWriter, type WrittenGroup } from '../backup/writer.js';
import { applyRestore, planRestore, type RestoredGroup, type RestoreProgress } from '../backup/restore.js';
import type { BackupCall, BackupChunk, MambaClient } from '../client/client.js';
import type { ClusterMetadata } from '../protocol/messages.js';
import { isRetriable, retry, retryPolicyOf } from '../client/retry.js';
import type { ClusterConfig } from '../config/cluster.js';

/** A leader that sends nothing for this long is given up on (the group starts over). */
export const backupChunkWaitMsMax = 30_000;
/**
 * A group whose stream broke (a leader change, a log reset under it, damage in transit) starts
 * over: at most four attempts, waits of 0.5 s doubling to 5 s, none begun an hour after the first.
 */
export const backupRetryPolicy = retryPolicyOf({ attemptsMax: 4, backoffMsInitial: 500, backoffMsMax: 5000, elapsedMsMax: 3_600_000 });
/** Progress lines per group at most this often (and one when the group is done). */
const progressIntervalMs = 1000;

export interface BackupSummary {
  dir: string;
  cluster: string;
  groups: Array<{ id: string; leader: string; highWatermark: number; logStartOffset: number; snapshotEndOffset: number | null; bytes: number }>;
  topics: number;
  bytes: number;
  durationMs: number;
}

/**
 * What the groups' backups share: once one fails for good, the others stop (their calls are
 * cancelled at once) and the first failure is the one reported.
 */
interface Shared {
  failure: unknown;
  readonly calls: Set<BackupCall>;
  readonly writers: Set<GroupBackupWriter>;
  readonly chunkWaitMsMax: number;
}

export interface BackupRunOptions {
  /** Default backupChunkWaitMsMax. */
  chunkWaitMsMax?: number;
}

export async function runBackup(client: MambaClient, dir: string, progress: (line: string) => void, options: BackupRunOptions = {}): Promise<BackupSummary> {
  const startedAtMs = Date.now();
  const createdDir = await prepareDirectory(dir);
  const shared: Shared = { failure: null, calls: new Set(), writers: new Set(), chunkWaitMsMax: options.chunkWaitMsMax ?? backupChunkWaitMsMax };
  try {
    const groups = (await client.describeCluster()).map((g) => g.id);
    if (groups.length === 0) throw new UnavailableError('the cluster described no group');
    const settled = await Promise.allSettled(
      groups.map((group) =>
        backupGroup(client, dir, group, progress, shared).catch((error: unknown) => {
          if (shared.failure === null) shared.failure = error;
          for (const call of shared.calls) call.cancel();
          throw error;
        }),
      ),
    );
    if (shared.failure !== null) throw shared.failure;
    const written = settled.map((result) => (result as PromiseFulfilledResult<WrittenGroup>).value);
    // The placement of each topic (the metadata log); a cluster that does not serve it has none.
    const metadata = await Promise.resolve()
      .then(() => client.getMetadata())
      .catch(() => null);
    const manifest = manifestOf(written, groups, startedAtMs, metadata);
    await writeManifest(dir, manifest);
    const bytes = written.reduce((total, w) => total + (w.entry.snapshot?.file.bytes ?? 0) + w.entry.log.file.bytes, 0);
    return {
      dir,
      cluster: manifest.cluster,
      groups: written.map((w) => ({
        id: w.entry.id,
        leader: w.entry.leader,
        highWatermark: w.entry.highWatermark,
        logStartOffset: w.entry.log.startOffset,
        snapshotEndOffset: w.entry.snapshot?.endOffset ?? null,
        bytes: (w.entry.snapshot?.file.bytes ?? 0) + w.entry.log.file.bytes,
      })),
      topics: manifest.topics.length,
      bytes,
      durationMs: Date.now() - startedAtMs,
    };
  } catch (error) {
    // Every group's work has settled here: nothing writes into the directory any more.
    for (const writer of shared.writers) await writer.discard();
    await rm(join(dir, `${manifestFileName}.tmp`), { force: true });
    if (createdDir) await rmdir(dir).catch(() => undefined);
    throw error;
  }
}

/** The target must be new or empty (a backup never mixes with another); true when this made it. */
async function prepareDirectory(dir: string): Promise<boolean> {
  try {
    const held = await readdir(dir);
    if (held.length > 0)
      throw new BackupError(
        `--to ${dir}: the directory is not empty (${held.slice(0, 3).join(', ')}${held.length > 3 ? ', ...' : ''}); back up into a new or empty one`,
      );
    return false;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dir, { recursive: true });
  return true;
}

/** One group, from the leader's stream to checked files; started over while the retry policy allows. */
async function backupGroup(client: MambaClient, dir: string, group: string, progress: (line: string) => void, shared: Shared): Promise<WrittenGroup> {
  return retry(backupRetryPolicy, async (attempt) => {
    const writer = new GroupBackupWriter(dir, group);
    shared.writers.add(writer);
    try {
      if (attempt.index > 0) progress(`backup ${group}: starting over (attempt ${attempt.index + 1})`);
      await receive(client, writer, progress, shared);
      const written = await writer.finish();
      progress(
        `backup ${group}: done, ${sizeText(writer.progress.bytes)} (leader ${written.entry.leader}, offsets ${written.entry.log.startOffset}..${written.entry.highWatermark}${written.entry.snapshot ? `, snapshot at ${written.entry.snapshot.endOffset}` : ''})`,
      );
      return written;
    } catch (error) {
      await writer.discard();
      shared.writers.delete(writer);
      if (shared.failure !== null) return attempt.bail(error);
      if (isRetriable(error)) progress(`backup ${group}: ${(error as Error).message}`);
      throw error;
    }
  });
}

/** Takes the stream's messages into the writer, each awaited at most chunkWaitMsMax. */
async function receive(client: MambaClient, writer: GroupBackupWriter, progress: (line: string) => void, shared: Shared): Promise<void> {
  const call = await client.backup(writer.group);
  shared.calls.add(call);
  let reportedMs = 0;
  try {
    for (;;) {
      if (shared.failure !== null) throw new BackupError(`backup of group ${writer.group} stopped: another group failed`);
      const next = await nextWithin(call, shared.chunkWaitMsMax, writer.group);
      if (next.done) return;
      await writer.take(next.value);
      const nowMs = Date.now();
      if (nowMs - reportedMs >= progressIntervalMs) {
        reportedMs = nowMs;
        const { bytes, totalBytes } = writer.progress;
        const percent = totalBytes === 0 ? 100 : Math.floor((100 * bytes) / totalBytes);
        progress(`backup ${writer.group}: ${sizeText(bytes)} of ${sizeText(totalBytes)} (${percent}%)`);
      }
    }
  } finally {
    shared.calls.delete(call);
    call.cancel(); // a no-op once the call has ended
  }
}

/** The call's next chunk; a leader silent for `timeoutMs` has its call cancelled (UnavailableError: the group starts over). */
async function nextWithin(call: BackupCall, timeoutMs: number, group: string): Promise<IteratorResult<BackupChunk>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      call.cancel();
      reject(new UnavailableError(`backup of group ${group}: nothing from the leader for ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([call.chunks.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function manifestOf(written: WrittenGroup[], groups: string[], startedAtMs: number, metadata: ClusterMetadata | null): BackupManifest {
  const clusters = new Set(written.map((w) => w.start.cluster));
  if (clusters.size !== 1) throw new BackupError(`the groups' leaders name different clusters (${[...clusters].join(', ')})`);
  for (const w of written) {
    if (w.start.clusterGroups.join(',') !== groups.join(','))
      throw new BackupError(`the leader of ${w.entry.id} knows groups ${w.start.clusterGroups.join(', ')}, the cluster described ${groups.join(', ')}`);
  }
  return {
    format: manifestFormat,
    version: manifestVersion,
    cluster: written[0]!.start.cluster,
    startedAtMs,
    finishedAtMs: Date.now(),
    groups: written.map((w) => w.entry),
    topics: topicsSection(
      written.map((w) => ({ id: w.entry.id, topics: w.content.topics })),
      (name) => metadata?.topics.find((t) => t.name === name)?.placement,
    ),
  };
}

/** Written last: a temporary name, synced, renamed, the directory synced. */
async function writeManifest(dir: string, manifest: BackupManifest): Promise<void> {
  const path = join(dir, manifestFileName);
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'wx');
  try {
    await handle.writeFile(encodeManifest(manifest));
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  const directory = await open(dir, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** A byte count for a progress line: B, KiB, MiB or GiB. */
export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

// ------------------------------------------------------------------ restore

export interface RestoreSummary {
  from: string;
  cluster: string;
  backupCluster: string;
  topics: string[] | null;
  groups: RestoredGroup[];
  durationMs: number;
}

export async function runRestore(from: string, cluster: ClusterConfig, topics: string[] | null, progress: (line: string) => void): Promise<RestoreSummary> {
  const startedMs = Date.now();
  const plan = await planRestore(from, cluster, { topics });
  progress(
    `restore: ${from} checked (${plan.groups.length} groups, every file's size and sha256); writing ${plan.groups.reduce((n, g) => n + g.brokers.length, 0)} data directories`,
  );
  const groups = await applyRestore(plan, (p: RestoreProgress) =>
    progress(
      p.event === 'seeded'
        ? `restore ${p.group}: ${p.broker} written (log ${p.startOffset}..${p.endOffset})`
        : `restore ${p.group}: ${p.broker} in place at ${p.dataDir}`,
    ),
  );
  return { from, cluster: cluster.name, backupCluster: plan.manifest.cluster, topics: plan.keptTopics, groups, durationMs: Date.now() - startedMs };
}
