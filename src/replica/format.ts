// A data directory's format record (issue 13.3): what makes an empty directory a new replica
// rather than a replaced disk. An empty directory cannot tell the two apart by itself (KRaft
// answers this with `kafka-storage format`, KIP-853 with a directory id per voter), so a new
// group's directories are formatted once, explicitly, before their first start
// (`mambamq storage format`, `mambamq cluster up` for a group none of whose brokers has data yet,
// the test launcher). A directory that is empty and never formatted is taken for a replaced
// disk: it opens recovering, with its former promises unknown, and never votes before it holds
// its leader's whole log (replica.ts).
//
// The record is one small JSON file, written to a temporary name, synced, renamed and the
// directory synced, so that it is either absent or whole; a checksum over its fields tells a
// damaged one from a whole one.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { crc32c, fsyncDirectory } from '../log/index.js';

export const formatFileName = 'format.json';
const formatVersion = 1;

/** Who a directory was formatted for. */
export interface DirectoryFormat {
  version: number;
  /** The cluster file's `cluster` name. */
  cluster: string;
  group: string;
  brokerId: string;
  /** Random, new at every format: tells this directory from any earlier one of the same broker. */
  directoryId: string;
  formattedAtMs: number;
}

export class FormatError extends Error {
  override name = 'FormatError';
}

/** Files a directory may hold and still count as unused (the lock a start left behind). */
const ignoredEntries = new Set(['LOCK', formatFileName]);

/** True when `dataDir` does not exist or holds nothing a replica or the broker wrote. */
export function dataDirectoryUnused(dataDir: string): boolean {
  if (!existsSync(dataDir)) return true;
  return readdirSync(dataDir).every((name) => ignoredEntries.has(name) || name.startsWith(`${formatFileName}.`));
}

/**
 * Formats `dataDir` for a new replica: refuses a directory that holds data (a replica that ran
 * there has votes and promises that a new identity would forget) or that is already formatted.
 */
export function formatDataDirectory(dataDir: string, identity: { cluster: string; group: string; brokerId: string }, nowMs = Date.now()): DirectoryFormat {
  const existing = readDirectoryFormat(dataDir);
  if (existing !== null)
    throw new FormatError(`${dataDir} is already formatted for broker ${existing.brokerId} of group ${existing.group} (directory id ${existing.directoryId})`);
  if (!dataDirectoryUnused(dataDir))
    throw new FormatError(`${dataDir} holds data: only an empty directory is formatted (a directory that ran a replica keeps its identity)`);
  const format: DirectoryFormat = { version: formatVersion, ...identity, directoryId: randomUUID(), formattedAtMs: nowMs };
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, formatFileName);
  const temporary = `${path}.${process.pid}.tmp`;
  const fd = openSync(temporary, 'w');
  try {
    writeSync(fd, `${JSON.stringify({ ...format, crc32c: checksum(format) })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  fsyncDirectory(dataDir);
  return format;
}

/** The directory's format record; null when there is none; throws when it is damaged. */
export function readDirectoryFormat(dataDir: string): DirectoryFormat | null {
  const path = join(dataDir, formatFileName);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new FormatError(`${path} is not valid JSON: the directory's identity is damaged; restore it or start on an empty directory`);
  }
  const format: DirectoryFormat = {
    version: Number(parsed.version),
    cluster: String(parsed.cluster),
    group: String(parsed.group),
    brokerId: String(parsed.brokerId),
    directoryId: String(parsed.directoryId),
    formattedAtMs: Number(parsed.formattedAtMs),
  };
  if (parsed.crc32c !== checksum(format))
    throw new FormatError(`${path} fails its checksum: the directory's identity is damaged; restore it or start on an empty directory`);
  if (format.version !== formatVersion) throw new FormatError(`${path} has format version ${format.version}; this broker reads version ${formatVersion}`);
  return format;
}

/** Refuses a format record made for another broker, group or cluster. */
export function checkDirectoryFormat(dataDir: string, format: DirectoryFormat, expected: { cluster?: string; group?: string; brokerId: string }): void {
  const mismatch = (what: string, found: string, wanted: string) =>
    new FormatError(`${dataDir} was formatted for ${what} ${found}, not ${wanted}: a data directory serves the broker it was formatted for`);
  if (format.brokerId !== expected.brokerId) throw mismatch('broker', format.brokerId, expected.brokerId);
  if (expected.group !== undefined && format.group !== expected.group) throw mismatch('group', format.group, expected.group);
  if (expected.cluster !== undefined && format.cluster !== expected.cluster) throw mismatch('cluster', format.cluster, expected.cluster);
}

function checksum(format: DirectoryFormat): number {
  const canonical = JSON.stringify([format.version, format.cluster, format.group, format.brokerId, format.directoryId, format.formattedAtMs]);
  return crc32c(Buffer.from(canonical, 'utf8')) >>> 0;
}
