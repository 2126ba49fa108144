// The backup manifest (issue 14; src/backup/manifest.ts): written as it is read back; a change to
// any field without its checksum is refused as damage; a field that is wrong is named, including
// file names that would leave the backup directory; the topics section takes each queue's group
// from the cluster metadata, or deals them over the groups in order for a topic it does not name.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeManifest, manifestFileName, parseManifest, type BackupManifest } from '../../src/backup/manifest.js';
import { topicsSection } from '../../src/backup/topics.js';
import { sampleLog, temporaryRoot, writeBackup } from './fixtures.js';

/** The manifest text with `edit` applied and the checksum made right again. */
function resealed<T>(text: string, edit: (manifest: T) => void): string {
  const parsed = JSON.parse(text) as T & { checksum?: string };
  delete parsed.checksum;
  edit(parsed);
  return JSON.stringify({ ...parsed, checksum: createHash('sha256').update(JSON.stringify(parsed)).digest('hex') });
}

async function sampleManifestText(): Promise<string> {
  const { root, remove } = temporaryRoot('manifest');
  try {
    const log = sampleLog();
    await writeBackup(root, [
      { id: 'g1', entries: log.entries, seedVoters: ['b1', 'b2', 'b3'] },
      { id: 'g2', entries: sampleLog().entries, seedVoters: ['b4', 'b5', 'b6'] },
    ]);
    return readFileSync(join(root, manifestFileName), 'utf8');
  } finally {
    remove();
  }
}

describe('backup manifest', () => {
  test('reads back what was written, and writes the same text again', async () => {
    const text = await sampleManifestText();
    const manifest = parseManifest(text, 'manifest.json');
    assert.equal(manifest.cluster, 'source');
    assert.deepEqual(
      manifest.groups.map((g) => [g.id, g.log.file.name, g.log.startOffset, g.highWatermark, g.topics]),
      [
        ['g1', 'g1/log', 0, manifest.groups[0]!.log.endOffset, ['a', 'b']],
        ['g2', 'g2/log', 0, manifest.groups[1]!.log.endOffset, ['a', 'b']],
      ],
    );
    assert.deepEqual(manifest.topics, [
      { name: 'a', queues: 2, createdMs: 1, queueGroups: ['g1', 'g2'], groups: ['g1', 'g2'] },
      { name: 'b', queues: 1, createdMs: 2, queueGroups: ['g1'], groups: ['g1', 'g2'] },
    ]);
    assert.equal(encodeManifest(manifest), text);
  });

  test('a field changed without its checksum is damage', async () => {
    const text = await sampleManifestText();
    const changed = text.replace('"cluster": "source"', '"cluster": "sourcf"');
    assert.notEqual(changed, text);
    assert.throws(() => parseManifest(changed, 'b/manifest.json'), /b\/manifest.json: fails its checksum/);
    assert.throws(() => parseManifest(text.slice(0, 100), 'b/manifest.json'), /b\/manifest.json: not valid JSON/);
    assert.throws(() => parseManifest(text.replace(/"checksum": "[0-9a-f]+"/, '"checksum": "x"'), 'm'), /m: checksum: must be 64 hex digits/);
  });

  test('a wrong field is named, even with its checksum made right', async () => {
    const text = await sampleManifestText();
    type Json = Omit<BackupManifest, 'format' | 'version'> & { format: string; version: number };
    const cases: Array<[string, (m: Json) => void, RegExp]> = [
      ['version', (m) => (m.version = 2), /version: this mambamq reads version 1, got 2/],
      ['format', (m) => (m.format = 'other'), /format: must be "mamba-backup"/],
      ['a file outside the directory', (m) => (m.groups[0]!.log.file.name = '../g1/log'), /groups\[0\]\.log\.file\.name: "\.\.\/g1\/log" does not match/],
      ['another group file', (m) => (m.groups[0]!.log.file.name = 'g2/log'), /groups\[0\]\.log\.file\.name: must be "g1\/log", got "g2\/log"/],
      ['a short hash', (m) => (m.groups[1]!.log.file.sha256 = 'abc'), /groups\[1\]\.log\.file\.sha256: must be 64 lowercase hex digits/],
      ['a log end off the high watermark', (m) => (m.groups[0]!.log.endOffset += 1), /groups\[0\]\.log\.endOffset: must be the high watermark/],
      ['a log without a snapshot above 0', (m) => (m.groups[0]!.log.startOffset = 1), /groups\[0\]\.log\.startOffset: must be at or below the snapshot's end/],
      [
        'a group named twice',
        (m) => {
          m.groups[1]!.id = 'g1';
          m.groups[1]!.log.file.name = 'g1/log';
        },
        /groups\[1\]\.id: group "g1" is named twice/,
      ],
      ['no groups', (m) => (m.groups = []), /groups: must name at least one group/],
      ['no voters', (m) => (m.groups[0]!.seedVoters = []), /groups\[0\]\.seedVoters: must name at least one voter/],
      ['a queue without its group', (m) => m.topics[0]!.queueGroups.pop(), /topics\[0\]\.queueGroups: must name the group of each of the 2 queues, got 1/],
      ['a topic in an unknown group', (m) => (m.topics[1]!.groups = ['g3']), /topics\[1\]\.groups: names group "g3", which the backup does not hold/],
      ['a bad topic name', (m) => (m.topics[0]!.name = 'a b'), /topics\[0\]\.name: "a b" does not match/],
    ];
    for (const [what, edit, expected] of cases) assert.throws(() => parseManifest(resealed(text, edit), 'manifest.json'), expected, what);
  });

  test('topics: every name some group holds, queues dealt over the groups in order', () => {
    const topics = topicsSection([
      { id: 'g1', topics: [{ name: 'orders', queues: 5, createdMs: 7 }] },
      {
        id: 'g2',
        topics: [
          { name: 'orders', queues: 5, createdMs: 7 },
          { name: 'late', queues: 1, createdMs: 9 },
        ],
      },
      { id: 'g3', topics: [] },
    ]);
    assert.deepEqual(topics, [
      { name: 'late', queues: 1, createdMs: 9, queueGroups: ['g1'], groups: ['g2'] },
      { name: 'orders', queues: 5, createdMs: 7, queueGroups: ['g1', 'g2', 'g3', 'g1', 'g2'], groups: ['g1', 'g2'] },
    ]);
  });
});
