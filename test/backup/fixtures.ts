// Backups built by hand for the backup tests: a group log as a leader writes it (a leader change
// in epoch 1, topics, messages: test/broker/state-fixtures.ts), its batches stored back to back
// with no snapshot (the log from 0), the manifest written as `mambamq backup` writes it; and a
// cluster file for a target cluster in a temporary directory.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGroupContent } from '../../src/backup/group-files.js';
import {
  encodeManifest,
  groupFileNames,
  manifestFileName,
  manifestFormat,
  manifestVersion,
  type BackupManifest,
  type GroupBackup,
} from '../../src/backup/manifest.js';
import { topicsSection } from '../../src/backup/topics.js';
import type { StoredTopic } from '../../src/broker/state-store.js';
import { parseClusterConfig, type ClusterConfig } from '../../src/config/cluster.js';
import type { Entry } from '../../src/raft/types.js';
import { batchOfEntry } from '../../src/replica/log-storage.js';
import { LeaderLog } from '../broker/state-fixtures.js';

export function temporaryRoot(prefix: string): { root: string; remove: () => void } {
  const root = mkdtempSync(join(tmpdir(), `mamba-${prefix}-`));
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/** A group's log: topics `a` (2 queues) and `b` (1 queue) with a few messages each. */
export function sampleLog(): LeaderLog {
  return new LeaderLog().leaderChange().create('a', 2).create('b', 1).messages('a', 0, 3).messages('a', 1, 2).messages('b', 0, 4).commitOffset('cg', 'a', 0, 2);
}

export interface HandGroup {
  id: string;
  entries: Entry[];
  seedVoters: string[];
}

/** Writes a finished backup of `groups` (logs from 0, no snapshot) into `dir`; returns its manifest. */
export async function writeBackup(dir: string, groups: HandGroup[], cluster = 'source'): Promise<BackupManifest> {
  const entries: GroupBackup[] = [];
  const held: Array<{ id: string; topics: StoredTopic[] }> = [];
  for (const group of groups) {
    const names = groupFileNames(group.id);
    mkdirSync(join(dir, group.id), { recursive: true });
    const bytes = Buffer.concat(group.entries.map((entry) => batchOfEntry(entry, 1_700_000_000_000)));
    writeFileSync(join(dir, names.log), bytes);
    const last = group.entries[group.entries.length - 1]!;
    const highWatermark = last.offset + last.count;
    const content = await readGroupContent(dir, {
      id: group.id,
      snapshot: null,
      log: { name: names.log, startOffset: 0, endOffset: highWatermark },
      lastEpoch: last.epoch,
      seedVoters: group.seedVoters,
    });
    held.push({ id: group.id, topics: content.topics });
    entries.push({
      id: group.id,
      leader: group.seedVoters[0]!,
      epoch: last.epoch,
      highWatermark,
      lastEpoch: last.epoch,
      seedVoters: group.seedVoters,
      voters: content.membership.voters,
      pinnedAtMs: 1,
      snapshot: null,
      log: {
        startOffset: 0,
        endOffset: highWatermark,
        batchCount: content.batchCount,
        file: { name: names.log, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') },
      },
      topics: content.topics.map((t) => t.name),
    });
  }
  const manifest: BackupManifest = {
    format: manifestFormat,
    version: manifestVersion,
    cluster,
    startedAtMs: 1,
    finishedAtMs: 2,
    groups: entries,
    topics: topicsSection(held),
  };
  writeFileSync(join(dir, manifestFileName), encodeManifest(manifest));
  return manifest;
}

/** A target cluster file in `root` (data under `<root>/data/<id>`): groups of three brokers b1.. named g1... */
export function targetCluster(root: string, groupCount: number, name = 'target'): ClusterConfig {
  let port = 20000;
  const groups = Array.from({ length: groupCount }, (_, g) => {
    const brokers = [1, 2, 3].map((b) => {
      const id = `b${g * 3 + b}`;
      port += 3;
      return `      - { id: ${id}, host: 127.0.0.1, clientPort: ${port}, peerPort: ${port + 1}, metricsPort: ${port + 2} }`;
    });
    return `  - id: g${g + 1}\n    brokers:\n${brokers.join('\n')}`;
  });
  const text = `cluster: ${name}\ndataDir: ${join(root, 'data')}\nsettings: { segmentBytes: 65536, messageBytesMax: 16384 }\ngroups:\n${groups.join('\n')}\n`;
  const file = join(root, 'cluster.yaml');
  writeFileSync(file, text);
  return parseClusterConfig(text, file, root);
}

/** Every path under `dir` with its size (directories end in /), to show that nothing changed. */
export function listing(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string, relative: string): void => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name);
      const stat = statSync(full);
      if (stat.isDirectory()) {
        found.push(`${relative}${name}/`);
        walk(full, `${relative}${name}/`);
      } else found.push(`${relative}${name} ${stat.size}`);
    }
  };
  walk(dir, '');
  return found;
}
