// Restore's checks and its all-or-nothing write (issue 14; src/backup/restore.ts), on backups built
// by hand (fixtures.ts) and target cluster files in temporary directories:
//   - every bad input is refused with an error naming the file, group, broker or topic, and the
//     target's directories are exactly as they were: a damaged file (its checksum, or its content
//     with the checksum made to match), a missing file, a missing manifest, a target directory
//     with data, one formatted for another broker, a running broker, a backup of another group
//     count, an unknown --topics name;
//   - a restore writes each seed broker's log as the backup holds it, byte for byte, then its own
//     entries (a DeleteTopic per other topic with --topics, a membership entry only when the
//     backup's configuration is not the cluster file's seed), keeps a format record made for the
//     same broker, and writes nothing when a broker fails midway or a directory is taken before
//     the last move.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { batchesOfFile } from '../../src/backup/group-files.js';
import { manifestFileName, type BackupManifest } from '../../src/backup/manifest.js';
import { appendedEntries, applyRestore, checkGroupsFit, membershipToAppend, planRestore } from '../../src/backup/restore.js';
import { CommandKind, decodeCommand } from '../../src/broker/commands.js';
import { SegmentLog } from '../../src/log/index.js';
import { decodeMembershipConfig } from '../../src/raft/membership.js';
import { EntryType } from '../../src/raft/types.js';
import { formatDataDirectory, readDirectoryFormat } from '../../src/replica/format.js';
import { entryFromBatch } from '../../src/replica/log-storage.js';
import { listing, sampleLog, targetCluster, temporaryRoot, writeBackup } from './fixtures.js';
import { createHash } from 'node:crypto';

/** A two-group backup in `<root>/backup` and a two-group target cluster in `<root>/target`. */
async function setUp(root: string): Promise<{ from: string; targetRoot: string }> {
  const from = join(root, 'backup');
  mkdirSync(from);
  await writeBackup(from, [
    { id: 'g1', entries: sampleLog().entries, seedVoters: ['b1', 'b2', 'b3'] },
    { id: 'g2', entries: sampleLog().messages('b', 0, 2).entries, seedVoters: ['b4', 'b5', 'b6'] },
  ]);
  const targetRoot = join(root, 'target');
  mkdirSync(targetRoot);
  return { from, targetRoot };
}

/** Every batch of a data directory's log, as stored. */
async function storedBatches(dataDir: string): Promise<Buffer[]> {
  const log = await SegmentLog.open({ dir: join(dataDir, 'log'), flush: { mode: 'async', intervalMs: 1000 }, logger: () => undefined });
  try {
    const batches: Buffer[] = [];
    for (let offset = log.startOffset, round = 0; offset < log.endOffset && round < 10_000; round++) {
      for (const batch of log.read(offset, 1 << 20)) {
        batches.push(Buffer.from(batch));
        const entry = entryFromBatch(batch);
        offset = entry.offset + entry.count;
      }
    }
    return batches;
  } finally {
    await log.close();
  }
}

async function fileBatches(path: string): Promise<Buffer[]> {
  const batches: Buffer[] = [];
  for await (const batch of batchesOfFile(path, path)) batches.push(batch);
  return batches;
}

/** Asserts that planning (and applying) the restore fails with `expected`, and that the target is unchanged. */
async function refused(from: string, targetRoot: string, groupCount: number, expected: RegExp, topics: string[] | null = null): Promise<void> {
  const cluster = targetCluster(targetRoot, groupCount);
  const before = listing(targetRoot);
  await assert.rejects(
    planRestore(from, cluster, { topics }).then((plan) => applyRestore(plan)),
    expected,
  );
  assert.deepEqual(listing(targetRoot), before, 'nothing written');
}

describe('restore: bad input is refused by name, nothing written', () => {
  test('a damaged file: its checksum; or its content when the checksum was made to match', async () => {
    const { root, remove } = temporaryRoot('restore-bad');
    try {
      const { from, targetRoot } = await setUp(root);
      const path = join(from, 'g2', 'log');
      const bytes = readFileSync(path);
      bytes[bytes.byteLength - 3]! ^= 0x40;
      writeFileSync(path, bytes);
      await refused(from, targetRoot, 2, /backup file g2\/log fails its checksum \(sha256 [0-9a-f]{64}, manifest\.json says [0-9a-f]{64}\): it is damaged/);
      // The manifest made to agree with the damaged file: the batch's own CRC still catches it.
      const manifestPath = join(from, manifestFileName);
      const parsed = JSON.parse(readFileSync(manifestPath, 'utf8')) as BackupManifest & { checksum?: string };
      delete parsed.checksum;
      parsed.groups[1]!.log.file.sha256 = createHash('sha256').update(bytes).digest('hex');
      writeFileSync(manifestPath, JSON.stringify({ ...parsed, checksum: createHash('sha256').update(JSON.stringify(parsed)).digest('hex') }));
      await refused(from, targetRoot, 2, /backup file g2\/log is damaged at byte \d+: invalid batch: crc mismatch/);
      // Cut short, with a matching checksum.
      const cut = bytes.subarray(0, bytes.byteLength - 10);
      writeFileSync(path, cut);
      delete parsed.checksum;
      parsed.groups[1]!.log.file.sha256 = createHash('sha256').update(cut).digest('hex');
      parsed.groups[1]!.log.file.bytes = cut.byteLength;
      writeFileSync(manifestPath, JSON.stringify({ ...parsed, checksum: createHash('sha256').update(JSON.stringify(parsed)).digest('hex') }));
      await refused(from, targetRoot, 2, /backup file g2\/log ends inside a batch at byte \d+/);
    } finally {
      remove();
    }
  });

  test('a missing file, a missing manifest', async () => {
    const { root, remove } = temporaryRoot('restore-missing');
    try {
      const { from, targetRoot } = await setUp(root);
      rmSync(join(from, 'g1', 'log'));
      await refused(from, targetRoot, 2, /backup file g1\/log is missing/);
      rmSync(join(from, manifestFileName));
      await refused(from, targetRoot, 2, /manifest\.json is missing: .* holds no finished backup/);
    } finally {
      remove();
    }
  });

  test('a target directory with data, formatted for another broker, or in use by a running broker', async () => {
    const { root, remove } = temporaryRoot('restore-target');
    try {
      const { from, targetRoot } = await setUp(root);
      const data = join(targetRoot, 'data');
      mkdirSync(join(data, 'b5', 'log'), { recursive: true });
      await refused(from, targetRoot, 2, /broker b5: its data directory .*b5 holds data \(log\): a restore seeds only a new cluster/);
      rmSync(join(data, 'b5'), { recursive: true });
      formatDataDirectory(join(data, 'b2'), { cluster: 'target', group: 'g1', brokerId: 'b3' });
      await refused(from, targetRoot, 2, /broker b2: .*b2 is formatted for broker b3 of group g1 in cluster target, not broker b2/);
      rmSync(join(data, 'b2'), { recursive: true });
      mkdirSync(join(data, 'b6'), { recursive: true });
      writeFileSync(join(data, 'b6', 'LOCK'), `${process.pid}\n`);
      await refused(from, targetRoot, 2, new RegExp(`broker b6 is running \\(process ${process.pid} holds .*LOCK\\): restore into a stopped cluster`));
    } finally {
      remove();
    }
  });

  test('a backup of another group count; a topic the backup lacks', async () => {
    const { root, remove } = temporaryRoot('restore-groups');
    try {
      const { from, targetRoot } = await setUp(root);
      await refused(from, targetRoot, 3, /the backup holds 2 groups \(g1, g2\) but .*cluster\.yaml has 3 \(g1, g2, g3\): queues live in groups by id/);
      await refused(from, targetRoot, 1, /the backup holds 2 groups \(g1, g2\) but .* has 1 \(g1\)/);
      await refused(from, targetRoot, 2, /--topics: topic "c" is not in the backup \(it holds: a, b\)/, ['a', 'c']);
      assert.throws(
        () => checkGroupsFit({ groups: [{ id: 'g2' }, { id: 'g1' }] } as never, { source: 'f', groups: [{ id: 'g1' }, { id: 'g2' }] } as never),
        /same groups in the same order/,
      );
    } finally {
      remove();
    }
  });
});

describe('restore: what it writes', () => {
  test("every seed broker's log as the backup holds it, byte for byte, then a DeleteTopic per other topic (--topics); a same-broker format record kept", async () => {
    const { root, remove } = temporaryRoot('restore-ok');
    try {
      const { from, targetRoot } = await setUp(root);
      const cluster = targetCluster(targetRoot, 2);
      const kept = formatDataDirectory(join(targetRoot, 'data', 'b4'), { cluster: 'target', group: 'g2', brokerId: 'b4' });
      const plan = await planRestore(from, cluster, { topics: ['b'] });
      assert.deepEqual(
        plan.groups.map((g) => [g.backup.id, g.brokers.map((b) => b.id), g.deletedTopics, g.membership]),
        [
          ['g1', ['b1', 'b2', 'b3'], ['a'], null],
          ['g2', ['b4', 'b5', 'b6'], ['a'], null],
        ],
      );
      const progress: string[] = [];
      const restored = await applyRestore(plan, (p) => progress.push(`${p.event} ${p.broker}`));
      assert.equal(progress.filter((line) => line.startsWith('moved')).length, 6);
      for (const group of plan.groups) {
        const backupBatches = await fileBatches(join(from, group.backup.log.file.name));
        for (const broker of group.brokers) {
          const batches = await storedBatches(broker.dataDir);
          assert.deepEqual(batches.slice(0, backupBatches.length), backupBatches, `${broker.id}: the backup's batches as stored`);
          const added = batches.slice(backupBatches.length).map(entryFromBatch);
          const h = group.backup.highWatermark;
          const epoch = group.backup.lastEpoch;
          // The first group holds the cluster metadata: the topic leaves it too, first.
          const createdMs = plan.groups[0]!.deletedFromMetadata[0]?.createdMs;
          const expected: unknown[] =
            group.backup.id === 'g1'
              ? [
                  [h, epoch, EntryType.Data, { kind: CommandKind.Metadata, change: { change: 'delete-topic', name: 'a', createdMs } }],
                  [h + 1, epoch, EntryType.Data, { kind: CommandKind.DeleteTopic, name: 'a' }],
                ]
              : [[h, epoch, EntryType.Data, { kind: CommandKind.DeleteTopic, name: 'a' }]];
          assert.deepEqual(
            added.map((e) => [e.offset, e.epoch, e.type, decodeCommand(e.payload)]),
            expected,
          );
          const format = readDirectoryFormat(broker.dataDir);
          assert.deepEqual([format?.cluster, format?.group, format?.brokerId], ['target', group.backup.id, broker.id]);
          assert.ok(!existsSync(`${broker.dataDir}.restoring-${process.pid}`) && !existsSync(`${broker.dataDir}.replaced-${process.pid}`));
        }
        assert.deepEqual(restored.find((r) => r.id === group.backup.id)?.endOffset, group.backup.highWatermark + (group.backup.id === 'g1' ? 2 : 1));
      }
      assert.equal(readDirectoryFormat(join(targetRoot, 'data', 'b4'))?.directoryId, kept.directoryId, 'the format record made for b4 is kept');
      await assert.rejects(planRestore(from, cluster, { topics: null }), /broker b1: its data directory .* holds data/, 'a second restore finds data');
    } finally {
      remove();
    }
  });

  test('a broker that fails midway, or a directory taken before the last move: nothing is left written', async () => {
    const { root, remove } = temporaryRoot('restore-undo');
    try {
      const { from, targetRoot } = await setUp(root);
      const cluster = targetCluster(targetRoot, 2);
      formatDataDirectory(join(targetRoot, 'data', 'b1'), { cluster: 'target', group: 'g1', brokerId: 'b1' });
      const before = listing(targetRoot);
      const plan = await planRestore(from, cluster, { topics: null });
      // b5's temporary directory is in the way: seeding b5 fails after b1..b4 were written.
      writeFileSync(`${join(targetRoot, 'data', 'b5')}.restoring-${process.pid}`, 'in the way');
      await assert.rejects(applyRestore(plan), /seed: .*b5\.restoring-\d+ exists/);
      assert.deepEqual(listing(targetRoot), before, 'every temporary directory removed, nothing moved');
      // b6 is started (its directory gets data) while the restore writes: the moves are undone.
      const replan = await planRestore(from, cluster, { topics: null });
      const moved: string[] = [];
      await assert.rejects(
        applyRestore(replan, (p) => {
          moved.push(p.event);
          if (p.event === 'seeded' && p.broker === 'b6') mkdirSync(join(targetRoot, 'data', 'b6', 'log'), { recursive: true });
        }),
        /broker b6: .*b6 was taken while the restore ran/,
      );
      assert.deepEqual(listing(targetRoot), [...before, 'data/b6/', 'data/b6/log/'].sort(), 'b1..b5 put back as they were, b6 left to its owner');
      assert.ok(readDirectoryFormat(join(targetRoot, 'data', 'b1')) !== null, "b1's format record is back in place");
    } finally {
      remove();
    }
  });

  test('a membership entry only when the backup configuration is not the seed; restore entries in order', () => {
    assert.equal(membershipToAppend({ voters: ['b3', 'b1', 'b2'], learners: [], endpoints: [] }, ['b1', 'b2', 'b3']), null);
    assert.deepEqual(membershipToAppend({ voters: ['b1', 'b2', 'b4'], learners: [], endpoints: [] }, ['b1', 'b2', 'b3']), {
      voters: ['b1', 'b2', 'b3'],
      learners: [],
      endpoints: [],
    });
    assert.notEqual(
      membershipToAppend({ voters: ['b1', 'b2', 'b3'], learners: ['b7'], endpoints: [] }, ['b1', 'b2', 'b3']),
      null,
      'a learner of the old cluster',
    );
    assert.notEqual(
      membershipToAppend({ voters: ['b1', 'b2', 'b3'], learners: [], endpoints: [{ id: 'b3', clientAddress: 'old:1', peerAddress: 'old:2' }] }, [
        'b1',
        'b2',
        'b3',
      ]),
      null,
      'the old addresses of a member added by `replica add`',
    );
    const entries = appendedEntries({ membership: { voters: ['x1', 'x2', 'x3'], learners: [], endpoints: [] }, deletedTopics: ['z', 'm'] });
    assert.deepEqual(entries[0]!.type, EntryType.Membership);
    assert.deepEqual(decodeMembershipConfig(entries[0]!.payload).voters, ['x1', 'x2', 'x3']);
    assert.deepEqual(
      entries.slice(1).map((e) => [e.type, decodeCommand(e.payload)]),
      [
        [EntryType.Data, { kind: CommandKind.DeleteTopic, name: 'm' }],
        [EntryType.Data, { kind: CommandKind.DeleteTopic, name: 'z' }],
      ],
    );
  });
});
