// A new group on unformatted, empty directories (a Kubernetes StatefulSet's first start: no
// format step) formats itself once its brokers see each other's empty directories, and elects;
// a broker then started on an emptied directory finds data beside it and joins as recovering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster, waitFor } from './cluster-harness.js';

test('unformatted empty directories of a whole group: formatted by the brokers themselves, a leader elected; an emptied one later is a replaced disk', {
  timeout: 120_000,
}, async () => {
  const cluster = await TestCluster.create({ name: 'mamba-newgroup' });
  try {
    for (const b of cluster.brokers) rmSync(join(b.dataDir, 'format.json'));
    cluster.launchAll();
    const view = await cluster.waitForLeader('g1', 60_000);
    assert.ok(view.leaderId);
    // A broker that asks late (the other two formatted and elected already) finds history and
    // joins as recovering instead: safe, and it catches up. At least the two that elected formatted.
    const formatted = cluster.brokers.filter((b) => readFileSync(b.logFile, 'utf8').includes('"event":"storage.formatted"'));
    assert.ok(formatted.length >= 2, `formatted: ${formatted.map((b) => b.id).join(', ')}`);
    for (const b of cluster.brokers.filter((x) => !formatted.includes(x)))
      await waitFor(`${b.id}, started late, to recover`, 30_000, () =>
        readFileSync(b.logFile, 'utf8').includes('"event":"replica.recovered"') ? true : undefined,
      );

    const follower = cluster.brokers.find((b) => b.id !== view.leaderId)!;
    await cluster.kill(follower.id);
    rmSync(follower.dataDir, { recursive: true, force: true });
    cluster.launch(follower.id);
    await waitFor(`${follower.id} to say it is a replaced disk`, 30_000, () =>
      readFileSync(follower.logFile, 'utf8').includes('"event":"storage.replaced_disk"') ? true : undefined,
    );
    await waitFor(`${follower.id} to join as recovering`, 30_000, () =>
      readFileSync(follower.logFile, 'utf8').includes('"event":"replica.joining_as_recovering"') ? true : undefined,
    );
  } finally {
    await cluster.stop();
  }
});
