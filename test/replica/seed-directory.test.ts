// seedDataDirectory (issue 14): a data directory made from what a leader's backup sent opens as a
// replica that installed that snapshot and fetched the log after it. A real leader (a group of one)
// is backed up; a new directory is seeded from it for another broker id with one entry of the
// restore's own appended; a replica opened there restores the snapshot, indexes the log, applies
// every entry below the seeded end (the backup's committed entries and the appended one) before
// any election, is not recovering, carries the format record asked for, and leads its new group.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { decodeBatchHeader } from '../../src/log/index.js';
import { encodeLeaderChange } from '../../src/raft/membership.js';
import { EntryType } from '../../src/raft/types.js';
import { formatDataDirectory, readDirectoryFormat } from '../../src/replica/format.js';
import { batchOfEntry } from '../../src/replica/log-storage.js';
import { Replica } from '../../src/replica/replica.js';
import { seedDataDirectory } from '../../src/replica/seed-directory.js';
import { replicaOptions, temporaryRoots, waitFor, ListMachine, silent } from './replica-fixture.js';

const freshRoot = temporaryRoots('mamba-seed-');

/** Splits stored batches laid back to back. */
function splitBatches(bytes: Buffer): Buffer[] {
  const batches: Buffer[] = [];
  for (let position = 0; position < bytes.byteLength; ) {
    const length = decodeBatchHeader(bytes.subarray(position)).batchLength;
    batches.push(bytes.subarray(position, position + length));
    position += length;
  }
  return batches;
}

async function* each(batches: Buffer[]): AsyncGenerator<Buffer> {
  for (const batch of batches) yield batch;
}

describe('a data directory seeded from a backup (issue 14)', { timeout: 60_000 }, () => {
  test('opens as a replica that installed the snapshot and holds the log after it, plus the appended entries', async () => {
    const root = freshRoot();
    const lines: string[] = [];
    formatDataDirectory(join(root, 'b1'), { cluster: 'c', group: 'g1', brokerId: 'b1' });
    const source = await Replica.open(replicaOptions('b1', ['b1'], join(root, 'b1'), lines));
    const sourceMachine = new ListMachine();
    source.start(sourceMachine, silent);
    let snapshotFile: Buffer;
    let logBytes: Buffer;
    let point: ReturnType<Replica['openBackup']>['point'];
    let expected: string[];
    try {
      await waitFor('b1 leads', () => source.isLeader);
      for (let index = 0; index < 350; index++) {
        source.propose(Buffer.from(`m${index}`), 1);
        if (index % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await waitFor(
        'commits, a snapshot and retention',
        () => source.committedOffset >= 350 && source.status().snapshot !== null && source.status().logStartOffset > 0,
      );
      const backup = source.openBackup();
      point = backup.point;
      expected = [...sourceMachine.items];
      assert.equal(sourceMachine.applied, point.highWatermark, 'the machine applied exactly up to H');
      snapshotFile = (await backup.readSnapshot(0, point.snapshot!.totalBytes)).bytes;
      const parts: Buffer[] = [];
      for (let offset = point.logStartOffset; offset < point.highWatermark; ) {
        const read = backup.readLog(offset, 2048);
        parts.push(read.bytes);
        offset = read.nextOffset;
      }
      logBytes = Buffer.concat(parts);
      backup.close(true);
    } finally {
      await source.close();
    }

    const dataDir = join(root, 'b9');
    const seeded = await seedDataDirectory(
      { dataDir, identity: { cluster: 'restored', group: 'g1', brokerId: 'b9' }, keptFormatFile: null, segmentBytes: 4096, logger: () => undefined },
      {
        snapshot: {
          id: point.snapshot!.id,
          totalBytes: snapshotFile.byteLength,
          read: async (position, bytesMax) => snapshotFile.subarray(position, position + bytesMax),
        },
        logStartOffset: point.logStartOffset,
        logStartEpoch: decodeBatchHeader(logBytes).epoch,
        batches: each(splitBatches(logBytes)),
        lastEpoch: point.lastEpoch,
        appended: [{ type: EntryType.Data, payload: Buffer.from('appended-by-restore') }],
      },
    );
    assert.equal(seeded.startOffset, point.logStartOffset);
    assert.ok(
      point.logStartOffset > 0 && point.logStartOffset <= point.snapshot!.id.endOffset,
      'a log that starts above 0 (retention), at or below the snapshot',
    );
    assert.equal(seeded.endOffset, point.highWatermark + 1);
    assert.deepEqual(seeded.appendedOffsets, [point.highWatermark]);
    const format = readDirectoryFormat(dataDir);
    assert.equal(format?.brokerId, 'b9');
    assert.equal(format?.cluster, 'restored');

    const restoredLines: string[] = [];
    const restored = await Replica.open(replicaOptions('b9', ['b9'], dataDir, restoredLines));
    const machine = new ListMachine();
    restored.start(machine, silent);
    try {
      assert.deepEqual(machine.restoredAt, [point.snapshot!.id.endOffset], 'the snapshot restored on start');
      assert.deepEqual(machine.items, [...expected, 'appended-by-restore'], 'every entry below the seeded end applied before any election');
      assert.equal(restored.recoveryState().recovering, false);
      assert.equal(restored.promisedOffset, seeded.endOffset);
      await waitFor('b9 leads its restored group', () => restored.isLeader);
      assert.ok(restored.currentEpoch > point.lastEpoch);
      const offset = restored.propose(Buffer.from('after-restore'), 1);
      assert.equal(offset, seeded.endOffset + 1, 'after the new leader change entry');
      await waitFor('a new entry commits', () => machine.items.at(-1) === 'after-restore');
    } finally {
      await restored.close();
    }
  });

  test('keeps the format record it is given (the target directory was formatted for the same broker); a log from 0 needs no snapshot', async () => {
    const root = freshRoot();
    const formatted = formatDataDirectory(join(root, 'target'), { cluster: 'c', group: 'g1', brokerId: 'b1' });
    const dataDir = join(root, 'target.restoring');
    const leaderChange = batchOfEntry({ epoch: 3, offset: 0, count: 1, type: EntryType.LeaderChange, payload: encodeLeaderChange('old') }, Date.now());
    const seeded = await seedDataDirectory(
      {
        dataDir,
        identity: { cluster: 'c', group: 'g1', brokerId: 'b1' },
        keptFormatFile: join(root, 'target', 'format.json'),
        segmentBytes: 4096,
        logger: () => undefined,
      },
      {
        snapshot: null,
        logStartOffset: 0,
        logStartEpoch: 0,
        batches: each([leaderChange]),
        lastEpoch: 3,
        appended: [{ type: EntryType.Data, payload: Buffer.from('x') }],
      },
    );
    assert.deepEqual(seeded, { startOffset: 0, endOffset: 2, epoch: 3, appendedOffsets: [1] });
    assert.equal(readDirectoryFormat(dataDir)?.directoryId, formatted.directoryId, 'the record kept, byte for byte');
    assert.ok(!fs.existsSync(join(dataDir, 'snapshots')) || fs.readdirSync(join(dataDir, 'snapshots')).length === 0);
    const lines: string[] = [];
    const replica = await Replica.open(replicaOptions('b1', ['b1'], dataDir, lines));
    const machine = new ListMachine();
    replica.start(machine, silent);
    try {
      assert.deepEqual(machine.items, ['x']);
      await waitFor('b1 leads in an epoch above 3', () => replica.isLeader && replica.currentEpoch > 3);
    } finally {
      await replica.close();
    }
  });
});
