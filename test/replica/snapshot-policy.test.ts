// The snapshot policy on an idle group (src/replica/replica.ts, maybeTakeSnapshot): entries that
// made a snapshot due while another was being written, and then nothing more, still get their
// snapshot. The policy used to be looked at only when entries were applied, so a group that went
// quiet right then kept its older snapshot (and retention its log) until the next write came.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { formatDataDirectory } from '../../src/replica/format.js';
import { Replica } from '../../src/replica/replica.js';
import { ListMachine, replicaOptions, silent, temporaryRoots, waitFor } from './replica-fixture.js';

const freshRoot = temporaryRoots('mamba-snapshot-policy-');
const interval = 50;

test('entries applied while a snapshot is written get one of their own once the group is idle', { timeout: 120_000 }, async () => {
  const dataDir = join(freshRoot(), 'b1');
  formatDataDirectory(dataDir, { cluster: 'c', group: 'g1', brokerId: 'b1' });
  const replica = await Replica.open(replicaOptions('b1', ['b1'], dataDir, [], { snapshotIntervalEntries: interval, retentionBytesMax: 0 }));
  replica.start(new ListMachine(), silent);
  try {
    await waitFor('b1 leads', () => replica.isLeader);
    // Bursts that each make a snapshot due, the next one committed while its snapshot is written.
    let end = 0;
    for (let burst = 0; burst < 20; burst++) {
      for (let index = 0; index < interval + 10; index++) end = replica.propose(Buffer.from(`b${burst}-${index}`), 1) + 1;
      await waitFor(`commit of ${end}`, () => replica.committedOffset >= end);
    }
    // Idle from here: the last burst's snapshot comes without any new entry.
    await waitFor(`a snapshot within ${interval} entries of ${end}`, () => (replica.status().snapshot?.endOffset ?? 0) > end - interval, 10_000);
    assert.ok(replica.status().snapshot!.endOffset <= end);
  } finally {
    await replica.close();
  }
});
