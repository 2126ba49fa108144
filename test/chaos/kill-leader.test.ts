// A short chaos run inside `make test`: a three-broker group under a quorum-acked workload on
// two queues (gentle on a shared machine), its leader killed with -9 three times (restarted
// after a random delay each time); every acknowledged message must be stored exactly once, in order, at the offset its
// acknowledgement named, on every replica. CHAOS_SEED=k replays a seed's choices.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../scripts/chaos/run.js';

const seed = Number(process.env.CHAOS_SEED ?? 1);

describe('chaos: kill -9 of the leader', () => {
  it('three leader kills lose, duplicate, reorder and change no acknowledged message', async () => {
    const lines: string[] = [];
    const result = await runChaos({ run: 0, seed, fault: 'kill', durationS: 45, faultCountMax: 3, queues: 2, log: (text) => lines.push(text) });
    const story = `seed ${seed}\n${lines.join('\n')}\n${result.examples.join('\n')}`;
    assert.equal(result.events.length, 3, story);
    assert.ok(result.acked >= 300, `only ${result.acked} acknowledgements; ${story}`);
    assert.deepEqual(
      { lost: result.lost, duplicated: result.duplicated, reordered: result.reordered, changed: result.changed, replicaShort: result.replicaShort },
      { lost: 0, duplicated: 0, reordered: 0, changed: 0, replicaShort: 0 },
      story,
    );
    // Each kill is visible to the producers as a silence, and each silence ends (a new leader).
    for (const gapMs of result.faultGapsMs) assert.ok(gapMs > 0 && gapMs < 15_000, `gap ${gapMs} ms; ${story}`);
  });
});
