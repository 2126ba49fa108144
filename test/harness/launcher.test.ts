// The shared launcher notices a broker that dies without being asked to, and says why at once,
// instead of letting a wait run out its whole bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { LocalCluster, waitFor } from '../../scripts/lib/cluster.js';

test('a wait fails within seconds (not its 30 s bound) of a broker dying on its own, naming it and quoting its log', async () => {
  const cluster = await LocalCluster.create({ name: 'mamba-launcher' });
  try {
    cluster.launchAll();
    const victim = cluster.broker('b2');
    await waitFor('b2 to write its first log line', 20_000, () => (cluster.isRunning('b2') && victim.process?.pid ? true : undefined));
    // A kill the launcher did not send (as the OOM killer would).
    process.kill(victim.process!.pid!, 'SIGKILL');
    const started = Date.now();
    await assert.rejects(
      waitFor('something that never happens', 30_000, () => undefined),
      (error: Error) => /broker b2 exited \(signal SIGKILL\) while waiting for something that never happens/.test(error.message),
    );
    // Far inside the wait's own 30 s: the exit is noticed, not waited out (3 s leaves room for a
    // loaded machine's late SIGCHLD).
    assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms`);
  } finally {
    await cluster.stopAll();
  }
});

test('a broker that refuses to start fails the wait with its own error line', async () => {
  // The fault the old port helper caused: two brokers of one group given one client port.
  const cluster = await LocalCluster.create({ name: 'mamba-launcher' });
  try {
    const file = parse(readFileSync(cluster.file, 'utf8')) as { groups: Array<{ brokers: Array<{ clientPort: number }> }> };
    const brokers = file.groups[0]!.brokers;
    brokers[1]!.clientPort = brokers[0]!.clientPort;
    writeFileSync(cluster.file, stringify(file));
    cluster.launch('b2');
    await assert.rejects(
      waitFor('a leader', 30_000, () => undefined),
      (error: Error) => /broker b2 exited \(exit code [1-9]\d*\)/.test(error.message) && /last log lines:\n.*clientPort.*already taken/.test(error.message),
    );
  } finally {
    await cluster.stopAll();
  }
});

test('kills and signals sent through the launcher are not reported', async () => {
  const cluster = await LocalCluster.create({ name: 'mamba-launcher' });
  try {
    cluster.launch('b1');
    await cluster.kill('b1');
    cluster.launch('b1');
    cluster.signal('b1', 'SIGTERM');
    await waitFor('b1 to stop', 10_000, () => (cluster.isRunning('b1') ? undefined : true));
    cluster.assertNoUnexpectedExit();
  } finally {
    await cluster.stopAll();
  }
});
