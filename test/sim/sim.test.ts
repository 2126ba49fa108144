// Runs the deterministic simulator over seeds 1..1000 (the same seeds `make sim` starts with),
// in four parts so progress shows. Any violation fails with the seed and how to replay it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed } from './simulation.js';

const seedCount = 1000;
const parts = 4;

for (let part = 0; part < parts; part += 1) {
  const first = 1 + (part * seedCount) / parts;
  const last = ((part + 1) * seedCount) / parts;
  test(`simulation: seeds ${first}..${last} keep Election Safety, Log Matching, Leader Completeness, committed and acknowledged entries, and reach liveness after healing`, () => {
    const failures: string[] = [];
    let committed = 0;
    for (let seed = first; seed <= last; seed += 1) {
      const result = runSeed(seed);
      committed += result.committedEntries;
      if (result.violations.length > 0) failures.push(`seed ${seed}: ${result.violations[0]} (replay: make sim SEED=${seed})`);
    }
    assert.deepEqual(failures, []);
    assert.ok(committed > 0, 'the seeds committed nothing: the simulator is not exercising the core');
  });
}

test('simulation: a seed replays identically (determinism)', () => {
  const lines = (seed: number): string[] => {
    const trace: string[] = [];
    runSeed(seed, (line) => trace.push(line));
    return trace;
  };
  const first = lines(7);
  assert.ok(first.length > 100);
  assert.deepEqual(lines(7), first);
});
