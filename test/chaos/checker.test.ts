// The chaos checker on made-up histories: a clean one counts nothing, and each kind of damage
// (lost, duplicated, reordered, changed, a short replica) is counted where it happened.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { countFindings, type CheckInput } from '../../scripts/chaos/checker.js';
import type { Acknowledgement } from '../../scripts/chaos/workload.js';

function acks(queue: number, ids: string[], startMs: number, stepMs: number): Acknowledgement[] {
  return ids.map((id, sequence) => ({ queue, offset: sequence, id, sequence, atMs: startMs + sequence * stepMs }));
}

function history(overrides: Partial<CheckInput> = {}): CheckInput {
  const stored = [
    ['a0', 'a1', 'a2', 'a3'],
    ['b0', 'b1'],
  ];
  return {
    acks: [...acks(0, ['a0', 'a1', 'a2', 'a3'], 1000, 10), ...acks(1, ['b0', 'b1'], 1000, 10)],
    unknownIds: new Set(),
    observation: { values: new Map([['0:1', 'a1']]), changed: [], readCount: 1 },
    replicas: [
      { id: 'b1', queues: stored },
      { id: 'b2', queues: stored.map((q) => [...q]) },
    ],
    events: [],
    ...overrides,
  };
}

describe('chaos checker', () => {
  it('counts nothing on a clean history and measures the longest gap between acks', () => {
    const findings = countFindings(history());
    assert.deepEqual([findings.acked, findings.lost, findings.duplicated, findings.reordered, findings.changed, findings.replicaShort], [6, 0, 0, 0, 0, 0]);
    assert.equal(findings.gapMsMax, 10);
    assert.deepEqual(findings.examples, []);
  });

  it('counts an acknowledged id the leader lacks as lost, and its acked offset as changed', () => {
    const findings = countFindings(
      history({
        replicas: [
          {
            id: 'b1',
            queues: [
              ['a0', 'a1', 'a2'],
              ['b0', 'b1'],
            ],
          },
        ],
      }),
    );
    assert.equal(findings.lost, 1);
    assert.equal(findings.changed, 1);
    assert.match(findings.examples.join('\n'), /lost: a3/);
  });

  it('counts every extra copy of an id, acknowledged or of unknown outcome, as a duplicate', () => {
    const findings = countFindings(
      history({
        unknownIds: new Set(['u0']),
        replicas: [
          {
            id: 'b1',
            queues: [
              ['a0', 'a1', 'a2', 'a3', 'u0', 'a1', 'u0'],
              ['b0', 'b1'],
            ],
          },
        ],
      }),
    );
    assert.equal(findings.duplicated, 2);
    assert.equal(findings.unknownStored, 1);
    assert.equal(findings.lost, 0);
  });

  it('counts an acknowledged message stored before one acknowledged earlier as reordered', () => {
    const findings = countFindings(
      history({
        acks: acks(0, ['a0', 'a1', 'a2', 'a3'], 1000, 10),
        replicas: [{ id: 'b1', queues: [['a0', 'a2', 'a1', 'a3'], []] }],
      }),
    );
    assert.equal(findings.reordered, 1);
    assert.equal(findings.changed, 2); // a1 and a2 are not at the offsets their acks named
  });

  it('checks the order only of messages promised one; a round-robin message (no sequence) is checked for its place alone', () => {
    // r1 was acknowledged after r0 at a lower offset: round-robin messages promise no order.
    const observation = { values: new Map<string, string>(), changed: [], readCount: 0 };
    const roundRobin: Acknowledgement[] = [
      { queue: 0, offset: 3, id: 'r0', sequence: null, atMs: 1005 },
      { queue: 0, offset: 1, id: 'r1', sequence: null, atMs: 1020 },
    ];
    const inOrder = countFindings(
      history({
        acks: [{ queue: 0, offset: 0, id: 'a0', sequence: 0, atMs: 1000 }, { queue: 0, offset: 2, id: 'a1', sequence: 1, atMs: 1010 }, ...roundRobin],
        replicas: [{ id: 'b1', queues: [['a0', 'r1', 'a1', 'r0'], []] }],
        observation,
      }),
    );
    assert.deepEqual([inOrder.reordered, inOrder.changed, inOrder.lost], [0, 0, 0]);
    const swapped = countFindings(
      history({
        acks: [{ queue: 0, offset: 2, id: 'a0', sequence: 0, atMs: 1000 }, { queue: 0, offset: 0, id: 'a1', sequence: 1, atMs: 1010 }, ...roundRobin],
        replicas: [{ id: 'b1', queues: [['a1', 'r1', 'a0', 'r0'], []] }],
        observation,
      }),
    );
    assert.deepEqual([swapped.reordered, swapped.changed, swapped.lost], [1, 0, 0]);
    assert.match(swapped.examples.join('\n'), /reordered: a1 stored at 0:0, before a0/);
    const misplaced = countFindings(history({ acks: roundRobin, replicas: [{ id: 'b1', queues: [['a0', 'r0', 'a1', 'r1'], []] }], observation }));
    assert.deepEqual([misplaced.reordered, misplaced.changed, misplaced.lost], [0, 2, 0]);
  });

  it('counts an offset whose value differs across replicas or since a read during the run', () => {
    const findings = countFindings(
      history({
        observation: { values: new Map([['1:0', 'x9']]), changed: [{ queue: 0, offset: 3, before: 'a3', after: 'z', servedBy: 'b3' }], readCount: 2 },
        replicas: [
          {
            id: 'b1',
            queues: [
              ['a0', 'a1', 'a2', 'a3'],
              ['b0', 'b1'],
            ],
          },
          { id: 'b2', queues: [['a0', 'y1'], ['b0']] },
        ],
      }),
    );
    assert.equal(findings.changed, 3); // 0:1 across replicas, 1:0 since the run, 0:3 during the run
    assert.equal(findings.replicaShort, 4); // b2 lacks a1, a2, a3 and b1
    assert.equal(findings.lost, 0);
  });

  it('gives each fault the longest silence between acks that overlaps it', () => {
    const times = [0, 10, 20, 900, 910, 920];
    const input = history({
      acks: times.map((atMs, sequence) => ({ queue: 0, offset: sequence, id: `a${sequence}`, sequence, atMs })),
      replicas: [{ id: 'b1', queues: [times.map((_, i) => `a${i}`)] }],
      observation: { values: new Map(), changed: [], readCount: 0 },
      events: [
        { fault: 'kill', detail: '', startMs: 25, endMs: 300 },
        { fault: 'pause', detail: '', startMs: 911, endMs: 915 },
      ],
    });
    const findings = countFindings(input);
    assert.equal(findings.gapMsMax, 880);
    assert.deepEqual(findings.faultGapsMs, [880, 10]);
  });
});
