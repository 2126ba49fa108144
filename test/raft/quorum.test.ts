import assert from 'node:assert/strict';
import { test } from 'node:test';
import { majorityOffset, majoritySize, quorumActive, voteOutcome } from '../../src/raft/quorum.js';

test('quorum: majority size is floor(n/2)+1 (Raft §5.2)', () => {
  const table: Array<[number, number]> = [
    [1, 1],
    [2, 2],
    [3, 2],
    [4, 3],
    [5, 3],
    [6, 4],
    [7, 4],
  ];
  for (const [voters, expected] of table) assert.equal(majoritySize(voters), expected, `voters=${voters}`);
});

test('quorum: the high watermark candidate is the largest offset a majority holds (Raft §5.3, KRaft HW)', () => {
  const table: Array<{ offsets: Record<string, number>; expected: number }> = [
    { offsets: { a: 5 }, expected: 5 },
    { offsets: { a: 5, b: 3, c: 9 }, expected: 5 },
    { offsets: { a: 5, b: 5, c: 0 }, expected: 5 },
    { offsets: { a: 10, b: 0, c: 0 }, expected: 0 },
    { offsets: { a: 1, b: 2, c: 3, d: 4 }, expected: 2 },
    { offsets: { a: 7, b: 7, c: 1, d: 2, e: 7 }, expected: 7 },
    { offsets: { a: 9, b: 8, c: 1, d: 2, e: 3 }, expected: 3 },
  ];
  for (const { offsets, expected } of table) {
    const voters = Object.keys(offsets);
    assert.equal(
      majorityOffset(voters, (id) => offsets[id]!),
      expected,
      JSON.stringify(offsets),
    );
  }
});

test('quorum: a vote is won with a majority of grants, lost once a majority cannot be reached, answers from non-voters ignored', () => {
  const voters = ['a', 'b', 'c'];
  const table: Array<{ answers: Array<[string, boolean]>; expected: string }> = [
    { answers: [['a', true]], expected: 'pending' },
    {
      answers: [
        ['a', true],
        ['b', true],
      ],
      expected: 'won',
    },
    {
      answers: [
        ['a', true],
        ['b', false],
      ],
      expected: 'pending',
    },
    {
      answers: [
        ['a', true],
        ['b', false],
        ['c', false],
      ],
      expected: 'lost',
    },
    {
      answers: [
        ['a', true],
        ['x', true],
        ['y', true],
      ],
      expected: 'pending',
    },
  ];
  for (const { answers, expected } of table) {
    assert.equal(voteOutcome(voters, new Map(answers)), expected, JSON.stringify(answers));
  }
  assert.equal(voteOutcome(['a'], new Map([['a', true]])), 'won', 'a single voter elects itself');
});

test('quorum: check-quorum is active when a majority of voters is active', () => {
  assert.equal(
    quorumActive(['a', 'b', 'c'], (id) => id !== 'c'),
    true,
  );
  assert.equal(
    quorumActive(['a', 'b', 'c'], (id) => id === 'a'),
    false,
  );
  assert.equal(
    quorumActive(['a', 'b', 'c', 'd'], (id) => id !== 'd' && id !== 'c'),
    false,
  );
});
