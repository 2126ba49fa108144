// The leader's side of a backup (issue 14; src/replica/backup-source.ts), on a real replica (log,
// LMDB, promise file, snapshot store) leading a group of one, with a small state machine:
//   - the backup pins H, the newest snapshot at or below H and the whole log the leader holds,
//     [L, H) with L <= S; what it reads is the log's own bytes, whole batches, the announced size
//     exactly;
//   - while it is open, retention removes nothing at or above L, though newer snapshots come and
//     the pinned snapshot's file leaves the store; once closed, retention goes on;
//   - a follower refuses (NotLeaderError), and so does a leader over the bound of backups at once.
import { formatDataDirectory } from '../../src/replica/format.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NotLeaderError, ResourceExhaustedError } from '../../src/errors.js';
import { decodeBatchHeader, verifyBatch } from '../../src/log/index.js';
import { backupsInflightMax, Replica } from '../../src/replica/replica.js';
import { snapshotHeaderBytes } from '../../src/replica/snapshot-store.js';
import { events, produce, replicaOptions, temporaryRoots, waitFor, ListMachine, silent } from './replica-fixture.js';

const padded = (index: number): string => `m${index}-${'x'.repeat(40)}`;

const freshRoot = temporaryRoots('mamba-backup-source-');

describe('a backup on the leader (issue 14)', { timeout: 60_000 }, () => {
  test('pins H, the newest snapshot and the log the leader holds; retention is held back until it is closed', async () => {
    const root = freshRoot();
    const lines: string[] = [];
    formatDataDirectory(join(root, 'b1'), { cluster: 'c', group: 'g1', brokerId: 'b1' });
    const replica = await Replica.open(replicaOptions('b1', ['b1'], join(root, 'b1'), lines));
    const machine = new ListMachine();
    replica.start(machine, silent);
    try {
      await waitFor('b1 leads', () => replica.isLeader);
      await produce(replica, 0, 400, padded);
      await waitFor('a snapshot and retention', () => replica.status().snapshot !== null && replica.status().logStartOffset > 0);
      const source = replica.openBackup();
      const point = source.point;
      assert.equal(point.highWatermark, replica.committedOffset);
      assert.ok(point.snapshot !== null, 'a snapshot is pinned');
      assert.equal(point.logStartOffset, replica.status().logStartOffset, 'the whole log the leader holds');
      assert.ok(point.logStartOffset > 0 && point.logStartOffset <= point.snapshot.id.endOffset);
      assert.deepEqual(point.seedVoters, ['b1']);
      assert.equal(point.leaderId, 'b1');

      // The snapshot file as stored: its header names the id.
      const chunks: Buffer[] = [];
      for (let position = 0; position < point.snapshot.totalBytes; ) {
        const chunk = await source.readSnapshot(position, 1000);
        chunks.push(chunk.bytes);
        position += chunk.bytes.byteLength;
      }
      const file = Buffer.concat(chunks);
      assert.equal(file.byteLength, point.snapshot.totalBytes);
      assert.equal(Number(file.readBigUInt64LE(16)), point.snapshot.id.endOffset);
      assert.ok(file.byteLength > snapshotHeaderBytes);

      // Newer snapshots and retention while the backup is open: nothing at or above L goes.
      await produce(replica, 400, 600, padded);
      // Snapshots are written in the background: slower on a loaded machine (a fresh-clone run took over 15 s).
      await waitFor('a newer snapshot', () => (replica.status().snapshot?.endOffset ?? 0) > point.highWatermark + 300, 45_000);
      await new Promise((resolve) => setTimeout(resolve, 200)); // several retention rounds
      assert.equal(replica.status().logStartOffset, point.logStartOffset, 'the log start stays at L');

      // The pinned snapshot file was pruned (two newer kept), yet the open reader still reads it.
      const again = await source.readSnapshot(0, point.snapshot.totalBytes);
      assert.ok(again.bytes.equals(file.subarray(0, again.bytes.byteLength)));

      // The log part: whole verified batches from L to H, as many bytes as announced.
      let offset = point.logStartOffset;
      let bytes = 0;
      let lastEpoch = -1;
      for (let round = 0; offset < point.highWatermark && round < 10_000; round++) {
        const read = source.readLog(offset, 3000);
        assert.equal(read.offset, offset);
        let position = 0;
        for (let index = 0; index < read.batchCount; index++) {
          const header = decodeBatchHeader(read.bytes.subarray(position));
          verifyBatch(read.bytes.subarray(position, position + header.batchLength));
          assert.equal(header.baseOffset, offset);
          offset += header.recordCount;
          lastEpoch = header.epoch;
          position += header.batchLength;
        }
        assert.equal(position, read.bytes.byteLength);
        assert.equal(read.nextOffset, offset);
        bytes += read.bytes.byteLength;
      }
      assert.equal(offset, point.highWatermark);
      assert.equal(bytes, point.logBytes);
      assert.equal(lastEpoch, point.lastEpoch);

      source.close(true);
      await waitFor('retention goes on once the backup is closed', () => replica.status().logStartOffset > point.logStartOffset);
      assert.equal(events(lines, 'backup.started').length, 1);
      assert.equal(events(lines, 'backup.finished')[0]!.highWatermark, point.highWatermark);
    } finally {
      await replica.close();
    }
  });

  test('a follower refuses with the leader it knows; a leader refuses beyond the bound of backups at once', async () => {
    const root = freshRoot();
    const lines: string[] = [];
    formatDataDirectory(join(root, 'b2'), { cluster: 'c', group: 'g1', brokerId: 'b2' });
    const follower = await Replica.open(replicaOptions('b2', ['b1', 'b2', 'b3'], join(root, 'b2'), lines));
    follower.start(new ListMachine(), silent);
    try {
      assert.throws(() => follower.openBackup(), NotLeaderError);
    } finally {
      await follower.close();
    }
    formatDataDirectory(join(root, 'b1'), { cluster: 'c', group: 'g1', brokerId: 'b1' });
    const leader = await Replica.open(replicaOptions('b1', ['b1'], join(root, 'b1'), lines));
    leader.start(new ListMachine(), silent);
    try {
      await waitFor('b1 leads', () => leader.isLeader);
      await produce(leader, 0, 10, padded);
      const open = Array.from({ length: backupsInflightMax }, () => leader.openBackup());
      assert.equal(open[0]!.point.snapshot, null, 'no snapshot yet: the log from 0');
      assert.equal(open[0]!.point.logStartOffset, 0);
      assert.throws(() => leader.openBackup(), ResourceExhaustedError);
      open[0]!.close(false, 'test');
      leader.openBackup().close(true);
      for (const source of open) source.close(true);
      assert.equal(events(lines, 'backup.abandoned')[0]!.reason, 'test');
    } finally {
      await leader.close();
    }
  });
});
