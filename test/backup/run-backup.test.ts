// `mambamq backup`'s orchestration (issue 14; src/cli/backup.ts runBackup) against scripted
// leaders: every group's stream at once; a stream that breaks, carries a piece damaged in transit
// or goes silent is started over and the backup still comes out whole; a group that fails for
// good stops the others (their calls cancelled) and leaves nothing behind; the target must be
// new or empty.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseManifest } from '../../src/backup/manifest.js';
import { runBackup } from '../../src/cli/backup.js';
import type { BackupCall, BackupChunk, MambaClient } from '../../src/client/client.js';
import { PermissionDeniedError, UnavailableError } from '../../src/errors.js';
import { crc32c } from '../../src/log/index.js';
import { BackupPart } from '../../src/protocol/messages.js';
import { batchOfEntry } from '../../src/replica/log-storage.js';
import { sampleLog, temporaryRoot } from './fixtures.js';

const groups = ['g1', 'g2'];
const seedVoters: Record<string, string[]> = { g1: ['b1', 'b2', 'b3'], g2: ['b4', 'b5', 'b6'] };

/** What a leader of `group` would send: its log (no snapshot) in pieces of `pieceBytes`. */
function chunksOf(group: string, pieceBytes = 100): BackupChunk[] {
  const entries = sampleLog().entries;
  const log = Buffer.concat(entries.map((entry) => batchOfEntry(entry, 1_700_000_000_000)));
  const last = entries[entries.length - 1]!;
  const start = {
    cluster: 'source',
    group,
    leaderId: seedVoters[group]![0]!,
    epoch: 1,
    highWatermark: last.offset + last.count,
    logStartOffset: 0,
    logBytes: log.byteLength,
    lastEpoch: 1,
    hasSnapshot: false,
    snapshotEndOffset: 0,
    snapshotEpoch: 0,
    snapshotBytes: 0,
    seedVoters: seedVoters[group]!,
    clusterGroups: groups,
  };
  const chunks: BackupChunk[] = [{ start, data: null, end: null }];
  for (let position = 0; position < log.byteLength; position += pieceBytes) {
    const bytes = log.subarray(position, position + pieceBytes);
    chunks.push({ start: null, data: { part: BackupPart.log, position, bytes, crc32c: crc32c(bytes) >>> 0 }, end: null });
  }
  chunks.push({ start: null, data: null, end: { snapshotBytes: 0, logBytes: log.byteLength, batchCount: entries.length } });
  return chunks;
}

/** How one attempt of a group's stream goes: sends `chunks`, then ends, fails, or waits for a cancel. */
type Script = { chunks: BackupChunk[]; after: 'end' | Error | 'silence' };

/** A client whose leaders follow `scripts[group][attempt]`; the calls cancelled are counted. */
function scriptedClient(scripts: Record<string, Script[]>): { client: MambaClient; cancelled: string[]; attempts: Record<string, number> } {
  const cancelled: string[] = [];
  const attempts: Record<string, number> = {};
  const client = {
    describeCluster: async () => groups.map((id) => ({ id })),
    backup: async (group: string): Promise<BackupCall> => {
      const attempt = attempts[group] ?? 0;
      attempts[group] = attempt + 1;
      const script = scripts[group]![attempt]!;
      let onCancel: (() => void) | null = null;
      let isCancelled = false;
      async function* chunks(): AsyncGenerator<BackupChunk> {
        for (const chunk of script.chunks) {
          if (isCancelled) throw new UnavailableError('cancelled');
          yield chunk;
        }
        if (script.after === 'end') return;
        if (script.after === 'silence') {
          await new Promise<void>((resolve) => {
            onCancel = resolve;
            if (isCancelled) resolve();
          });
          throw new UnavailableError('cancelled');
        }
        throw script.after;
      }
      return {
        chunks: chunks(),
        cancel: () => {
          if (isCancelled) return;
          isCancelled = true;
          cancelled.push(group);
          (onCancel as (() => void) | null)?.();
        },
      };
    },
  } as unknown as MambaClient;
  return { client, cancelled, attempts };
}

describe('mambamq backup: orchestration', { timeout: 60_000 }, () => {
  test('a broken stream, a piece damaged in transit and a silent leader each start their group over; the backup comes out whole', async () => {
    const { root, remove } = temporaryRoot('run-backup');
    try {
      const g1 = chunksOf('g1');
      const damaged = chunksOf('g1');
      damaged[2] = { ...damaged[2]!, data: { ...damaged[2]!.data!, crc32c: (damaged[2]!.data!.crc32c + 1) >>> 0 } };
      const { client, attempts } = scriptedClient({
        g1: [
          { chunks: g1.slice(0, 3), after: new UnavailableError('leader b1 went away') },
          { chunks: damaged, after: 'end' },
          { chunks: g1.slice(0, 2), after: 'silence' },
          { chunks: g1, after: 'end' },
        ],
        g2: [{ chunks: chunksOf('g2', 37), after: 'end' }],
      });
      const lines: string[] = [];
      const dir = join(root, 'backup');
      const summary = await runBackup(client, dir, (line) => lines.push(line), { chunkWaitMsMax: 300 });
      assert.deepEqual(attempts, { g1: 4, g2: 1 });
      assert.ok(lines.some((line) => /backup g1: .*leader b1 went away/.test(line)));
      assert.ok(lines.some((line) => /backup g1: .*fails its CRC32C \(damaged in transit\)/.test(line)));
      assert.ok(lines.some((line) => /backup g1: .*nothing from the leader for 300 ms/.test(line)));
      assert.ok(lines.some((line) => line === 'backup g1: starting over (attempt 4)'));
      assert.ok(lines.some((line) => /^backup g2: done/.test(line)));
      const manifest = parseManifest(readFileSync(join(dir, 'manifest.json'), 'utf8'), 'manifest.json');
      assert.deepEqual(
        manifest.groups.map((g) => [g.id, g.leader, g.log.batchCount, g.topics]),
        [
          ['g1', 'b1', sampleLog().entries.length, ['a', 'b']],
          ['g2', 'b4', sampleLog().entries.length, ['a', 'b']],
        ],
      );
      assert.deepEqual(
        summary.groups.map((g) => g.id),
        ['g1', 'g2'],
      );
    } finally {
      remove();
    }
  });

  test('a group that fails for good stops the others and leaves nothing behind', async () => {
    const { root, remove } = temporaryRoot('run-backup-fail');
    try {
      const { client, cancelled } = scriptedClient({
        g1: [{ chunks: chunksOf('g1').slice(0, 2), after: 'silence' }],
        g2: [{ chunks: chunksOf('g2').slice(0, 3), after: new PermissionDeniedError('access key "k" may not administer topic "*"') }],
      });
      const dir = join(root, 'backup');
      await assert.rejects(
        runBackup(client, dir, () => undefined, { chunkWaitMsMax: 30_000 }),
        (error: Error) => error instanceof PermissionDeniedError,
      );
      assert.ok(cancelled.includes('g1'), 'the silent group was cancelled at once');
      assert.equal(existsSync(dir), false, 'the directory it made is removed');

      mkdirSync(dir);
      writeFileSync(join(dir, 'keep'), 'x');
      await assert.rejects(
        runBackup(client, dir, () => undefined),
        /--to .*backup: the directory is not empty \(keep\)/,
      );
      assert.equal(readFileSync(join(dir, 'keep'), 'utf8'), 'x');
    } finally {
      remove();
    }
  });
});
