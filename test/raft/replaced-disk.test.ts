// Replaced disks (DESIGN §12, "an empty directory with no identity"): a replica that lost its
// epoch, vote and promise must not vote again in an epoch its old identity voted in. It recovers
// only from a leader every other voter follows now (FetchResponse.votersFetchedSinceRecovering),
// and no leader counts a recovering fetcher for check-quorum or the high watermark, so a stale
// leader cannot stay in office or commit through it (replication.ts, votersFetchedSince).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStorage } from '../../src/raft/storage.js';
import { type Message, unknownPromisedOffset } from '../../src/raft/types.js';
import { encoder, Group } from './helpers.js';

// b1 leads epoch 1 with two entries everywhere; then b2's disk is replaced: it starts on an empty
// directory and the driver's rule has made its promise unknown (src/replica/replica.ts).
function groupWithReplacedDisk(overrides = {}): Group {
  const group = new Group(['b1', 'b2', 'b3'], overrides);
  group.elect('b1');
  for (const value of ['v0', 'v1']) assert.ok(group.core('b1').propose(encoder.encode(value), 1).ok);
  group.drain('b1');
  group.replicate(10);
  const storage = new MemoryStorage();
  storage.setHardState({ epoch: 0, votedFor: null, promisedOffset: unknownPromisedOffset });
  group.restart('b2', storage);
  group.drain('b2');
  assert.equal(group.core('b2').recovering, true);
  return group;
}

const isolated =
  (id: string) =>
  (message: Message): boolean =>
    message.from !== id && message.to !== id;

// Every replica ticks once, then the network settles (messages the filter drops are lost).
function run(group: Group, ticks: number): void {
  for (let tick = 0; tick < ticks; tick += 1) {
    for (const id of group.nodes.keys()) group.tick(id);
    group.settle();
  }
}

function fetchAnswersTo(group: Group, id: string, seen: Message[]): void {
  const previous = group.filter;
  group.filter = (message) => {
    if (message.type === 'FetchResponse' && message.to === id) seen.push(message);
    return previous === null || previous(message);
  };
}

test('replaced disk, check-quorum (KRaft check-quorum; DESIGN §12): a leader does not count Fetches flagged recovering, so a replaced disk alone cannot keep it in office', () => {
  const group = groupWithReplacedDisk();
  group.filter = isolated('b3');
  run(group, 40);
  assert.notEqual(group.core('b1').role, 'leader', 'b1 hears only the recovering b2 and steps down');
  assert.equal(group.core('b2').recovering, true);

  const broken = groupWithReplacedDisk({ ruleBrokenForTest: 'recovery-without-voters' });
  broken.filter = isolated('b3');
  run(broken, 40);
  assert.equal(broken.core('b1').role, 'leader', 'with the rule broken, b2 keeps it in office');
});

test('replaced disk, high watermark: a recovering fetcher is not counted, so a leader it alone follows commits nothing new', () => {
  const group = groupWithReplacedDisk();
  group.filter = isolated('b3');
  run(group, 5);
  const before = group.core('b1').highWatermark;
  assert.ok(group.core('b1').propose(encoder.encode('v2'), 1).ok);
  group.drain('b1');
  run(group, 3);
  assert.equal(group.core('b1').highWatermark, before, 'b1 + recovering b2 is no majority');
});

test('replaced disk, votersFetchedSinceRecovering: set only once every other voter fetched after the recovering run began; then the replica recovers and pins its vote on the leader', () => {
  const group = groupWithReplacedDisk();
  const answers: Message[] = [];
  group.filter = isolated('b3');
  fetchAnswersTo(group, 'b2', answers);
  run(group, 8);
  const flagged = (message: Message): boolean => message.type === 'FetchResponse' && message.votersFetchedSinceRecovering === true;
  assert.ok(answers.length > 0);
  assert.ok(!answers.some(flagged), 'b3 has not fetched since b2 began recovering');
  const b2 = group.core('b2');
  assert.equal(b2.logEndOffset, group.core('b1').logEndOffset, 'b2 holds the whole log of b1');
  assert.equal(b2.recovering, true, 'an identity-less follower does not finish recovery from a leader without every voter');
  const leaderEpoch = group.core('b1').epoch;
  assert.equal(group.core('b1').role, 'leader');
  group.filter = null;
  answers.length = 0;
  fetchAnswersTo(group, 'b2', answers);
  run(group, 10);
  assert.ok(answers.some(flagged), 'b3 fetched after b2 began recovering');
  assert.equal(group.core('b2').recovering, false);
  const status = group.core('b2').status();
  assert.deepEqual(
    [status.epoch, status.leaderId, status.votedFor],
    [leaderEpoch, 'b1', 'b1'],
    'its vote in this epoch is pinned on the leader it recovered from',
  );
  const b2Core = group.core('b2');
  b2Core.step({ type: 'VoteRequest', from: 'b3', to: 'b2', epoch: leaderEpoch, lastEpoch: leaderEpoch, lastOffset: b2Core.logEndOffset + 5 });
  const answers2 = b2Core.ready()?.messages.filter((message) => message.type === 'VoteResponse') ?? [];
  assert.ok(
    answers2.every((message) => message.type === 'VoteResponse' && !message.granted),
    'no second vote in the epoch it recovered in',
  );
});

test('replaced disk, broken rule (test only): it recovers from a leader whose log it holds even when no other voter follows it', () => {
  const group = groupWithReplacedDisk({ ruleBrokenForTest: 'recovery-without-voters' });
  group.filter = isolated('b3');
  run(group, 8);
  assert.equal(group.core('b2').recovering, false);
});

// The two-leader form of the stale-leader gap, step by step: b1 leads epoch 1 and is cut off; one
// of b2, b3 wins epoch 2 with the other's vote; the voter's disk is replaced; b1 (stepped down,
// still at epoch 1) then hears only the new disk. If it voted, b1 would win epoch 2 too: two of
// three is a majority, and the vote the old disk gave in epoch 2 is forgotten. Leaders are recorded per epoch on
// every tick.
function twoLeaderScenario(rule: 'on' | 'off'): Map<number, Set<string>> {
  const group = new Group(['b1', 'b2', 'b3'], rule === 'off' ? { recoveringRuleDisabled: true } : {});
  const leaders = new Map<number, Set<string>>();
  const note = (): void => {
    for (const [id] of group.nodes) {
      const core = group.core(id);
      if (core.role === 'leader') leaders.set(core.epoch, (leaders.get(core.epoch) ?? new Set()).add(id));
    }
  };
  const runNoting = (ticks: number): void => {
    for (let tick = 0; tick < ticks; tick += 1) {
      for (const id of group.nodes.keys()) group.tick(id);
      group.settle();
      note();
    }
  };
  group.elect('b1');
  for (const value of ['v0', 'v1']) assert.ok(group.core('b1').propose(encoder.encode(value), 1).ok);
  group.drain('b1');
  group.replicate(10);
  note();
  group.filter = isolated('b1');
  // b2's clock runs twice as fast, so the two do not split every vote (no jitter in these tests).
  for (let round = 0; round < 200 && !leaders.has(2); round += 1) {
    group.tick('b2', 2);
    group.tick('b3');
    group.settle();
    note();
  }
  const winner = [...(leaders.get(2) ?? [])][0];
  assert.ok(winner === 'b2' || winner === 'b3', 'b2 or b3 wins epoch 2');
  const voter = winner === 'b2' ? 'b3' : 'b2';
  assert.equal(group.core(voter).status().votedFor, winner, `${voter}'s old disk voted for ${winner} in epoch 2`);
  runNoting(40); // b1, cut off, steps down (check-quorum) and cannot win a pre-vote alone
  assert.notEqual(group.core('b1').role, 'leader');
  assert.equal(group.core('b1').epoch, 1, 'pre-votes do not raise the epoch');
  // The voter's disk is replaced: with the rule, the driver stores an unknown promise before the core starts.
  const storage = new MemoryStorage();
  if (rule === 'on') storage.setHardState({ epoch: 0, votedFor: null, promisedOffset: unknownPromisedOffset });
  group.restart(voter, storage);
  group.drain(voter);
  group.filter = isolated(winner);
  runNoting(80);
  return leaders;
}

test("replaced disk, two leaders in one epoch (the stale-leader gap): a stale candidate cannot win with the new disk's vote; with the rule off it does (control)", () => {
  const withRule = twoLeaderScenario('on');
  for (const [epoch, ids] of withRule) assert.equal(ids.size, 1, `epoch ${epoch}: leaders ${[...ids].join(', ')}`);
  assert.equal(withRule.get(2)?.has('b1'), false);

  const without = twoLeaderScenario('off');
  assert.equal(without.get(2)?.size, 2, `without the rule b1 wins epoch 2 as well: leaders ${[...(without.get(2) ?? [])].join(', ')}`);
});
