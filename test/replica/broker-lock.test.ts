// One broker per data directory, across processes (issue 11 §7): while broker b1 runs, a second
// broker process started on the same data directory (its own ports) exits at once with an error
// naming the holder's pid; the first one keeps running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { LocalCluster, lastLogLines, waitFor } from '../../scripts/lib/cluster.js';

test("a second broker on a data directory in use exits at once, naming the holder's pid", { timeout: 60_000 }, async () => {
  const first = await LocalCluster.create({ name: 'mamba-lock' });
  const second = await LocalCluster.create({ name: 'mamba-lock' });
  try {
    // The second cluster file points at the first one's data directory (same broker ids).
    const text = readFileSync(second.file, 'utf8');
    const firstDataDir = readFileSync(first.file, 'utf8').match(/^dataDir: (.*)$/m)?.[1];
    assert.ok(firstDataDir, 'the first cluster file names its data directory');
    writeFileSync(second.file, text.replace(/^dataDir: .*$/m, `dataDir: ${firstDataDir}`));
    first.launch('b1');
    const holderPid = first.broker('b1').process!.pid!;
    await waitFor('b1 to hold its lock', 20_000, () => {
      try {
        return readFileSync(`${first.broker('b1').dataDir}/LOCK`, 'utf8').trim() === String(holderPid) ? true : undefined;
      } catch {
        return undefined;
      }
    });
    const startedMs = Date.now();
    second.launch('b1');
    const child = second.broker('b1').process!;
    const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
    const elapsedMs = Date.now() - startedMs;
    const output = lastLogLines(second.broker('b1').logFile);
    assert.notEqual(code, 0, `exits with an error; output:\n${output}`);
    assert.ok(output.includes(`process ${holderPid}`), `names the holder's pid ${holderPid}; output:\n${output}`);
    assert.ok(elapsedMs < 15_000, `exits at once (${elapsedMs} ms)`);
    assert.ok(first.isRunning('b1'), 'the holder keeps running');
  } finally {
    await second.stopAll();
    await first.stopAll();
  }
});
