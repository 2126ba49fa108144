// The leader's side of pull replication in the replica (src/replica/replica.ts), with a real
// segment log and LMDB in a fresh directory and the two followers played by the test:
// a caught-up follower's Fetch is parked (long poll) and answered on the same turn of the event
// loop as the append that gives it something (no timer, no setImmediate); a Fetch at N advances
// the high watermark and releases the produce waiters on the turn it arrives (DESIGN §4: a
// Fetch at offset N tells the leader the follower durably holds everything below N); a stream's
// next request supersedes its parked one, and the end of a stream drops it.
import { formatDataDirectory } from '../../src/replica/format.js';
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Replica } from '../../src/replica/replica.js';
import { Logger } from '../../src/replica/logger.js';
import type { FetchRequest, FetchResponse, Message } from '../../src/raft/types.js';

const quiet = new Logger('b1', 'g1', () => undefined);

/**
 * Resolves true when `promise` settles within the current macrotask (only microtasks run
 * meanwhile: no timer, no setImmediate, no I/O callback).
 */
async function settlesThisTurn(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let round = 0; round < 20 && !settled; round++) await Promise.resolve();
  return settled;
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.ok(condition(), 'condition not met in time');
}

describe('replica: parked Fetches and the high watermark on the leader', { timeout: 30_000 }, () => {
  let dir: string;
  let replica: Replica;
  const sent: Message[] = [];
  let epoch = 0;
  let requestId = 100;

  const fetch = (from: string, fetchOffset: number, lastFetchedEpoch: number): FetchRequest => ({
    type: 'FetchRequest',
    from,
    to: 'b1',
    epoch,
    fetchOffset,
    lastFetchedEpoch,
    bytesMax: 1 << 20,
    requestId: ++requestId,
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mamba-replica-fetch-'));
    formatDataDirectory(dir, { cluster: 'c', group: 'g1', brokerId: 'b1' });
    replica = await Replica.open({
      id: 'b1',
      voters: ['b1', 'b2', 'b3'],
      dataDir: dir,
      flush: { mode: 'async', intervalMs: 10 },
      segmentBytes: 1 << 20,
      retentionBytesMax: 0,
      retentionAgeMsMax: 0,
      tickMs: 5,
      electionTimeoutMs: 50,
      fetchTimeoutMs: 10_000,
      fetchWaitMsMax: 40,
      fetchBytesMax: 1 << 20,
      pendingProposalsMax: 100,
      logger: quiet,
      random: () => 0,
    });
    replica.start(
      { onAppend: () => undefined, onTruncate: () => undefined, onCommit: () => undefined, onRoleChange: () => undefined },
      {
        send: (message) => {
          sent.push(message);
          // The test plays both voters: grant every pre-vote and vote.
          if (message.type === 'PreVoteRequest' || message.type === 'VoteRequest') {
            // A pre-vote carries the epoch it proposes; its answer comes in the sender's current one.
            const answer: Message =
              message.type === 'PreVoteRequest'
                ? { type: 'PreVoteResponse', from: message.to, to: 'b1', epoch: message.epoch - 1, granted: true }
                : { type: 'VoteResponse', from: message.to, to: 'b1', epoch: message.epoch, granted: true };
            setImmediate(() => replica.deliver(answer));
          }
        },
        close: () => undefined,
      },
    );
    const deadline = Date.now() + 10_000;
    while (!replica.isLeader && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.ok(replica.isLeader, 'b1 becomes leader');
    epoch = replica.currentEpoch;
    // Both followers catch up to the leader-change entry at offset 0.
    for (const follower of ['b2', 'b3']) {
      const answer = (await replica.handle(fetch(follower, 0, 0), 40)) as FetchResponse;
      assert.equal(answer.entries.length, 1);
    }
  });

  after(async () => {
    await replica?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A Fetch at the end that returns once the follower has been sent the current high watermark. */
  const catchUp = async (follower: string): Promise<void> => {
    await replica.handle(fetch(follower, replica.log.endOffset, epoch), 40);
  };

  test('a caught-up Fetch is parked and answered with the new entry on the turn of the append', async () => {
    await catchUp('b2');
    const end = replica.log.endOffset;
    const parked = replica.handle(fetch('b2', end, epoch), 40, {});
    assert.equal(await settlesThisTurn(parked), false, 'nothing new: the Fetch waits');
    const offset = replica.propose(new Uint8Array([1, 2, 3]), 1);
    assert.equal(offset, end);
    assert.equal(await settlesThisTurn(parked), true, 'answered on the turn of the append');
    const answer = (await parked) as FetchResponse;
    assert.deepEqual(
      answer.entries.map((e) => e.offset),
      [end],
    );
  });

  test('a Fetch at N releases the quorum waiters up to N on the turn it arrives (rule: a Fetch at N acknowledges N)', async () => {
    const offset = replica.propose(new Uint8Array([4]), 1);
    const committed = replica.commitWaiters.wait(offset + 1, replica.committedOffset);
    assert.equal(await settlesThisTurn(committed), false, 'no follower holds it yet');
    // The leader promised its copy when it appended (beside the replication round trip).
    await waitFor(() => replica.promisedOffset >= offset + 1);
    const channel = {};
    const answer = replica.handle(fetch('b3', offset + 1, epoch), 40, channel);
    assert.equal(await settlesThisTurn(committed), true, 'the leader and b3 hold it: committed at once');
    assert.equal(replica.committedOffset, offset + 1);
    replica.dropChannel(channel);
    assert.equal(await answer, null, 'the end of its stream drops the parked Fetch');
  });

  test("the high watermark waits for the promise of the leader's own copy (DESIGN §12: promised before it is reported)", async () => {
    await catchUp('b3');
    const offset = replica.propose(new Uint8Array([5]), 1);
    const committed = replica.commitWaiters.wait(offset + 1, replica.committedOffset);
    const promisedBefore = replica.promisedOffset;
    const answer = replica.handle(fetch('b3', offset + 1, epoch), 40, {});
    if (promisedBefore < offset + 1) {
      assert.equal(await settlesThisTurn(committed), false, "held until the leader's promise covering offset + 1 is durable");
    }
    await committed;
    assert.ok(replica.promisedOffset >= offset + 1, 'acknowledged only once promised');
    await answer;
  });

  test("a stream's next request answers its parked one at once (the follower keeps only its latest)", async () => {
    await catchUp('b2');
    const end = replica.log.endOffset;
    const channel = {};
    const first = replica.handle(fetch('b2', end, epoch), 40, channel);
    assert.equal(await settlesThisTurn(first), false);
    const second = replica.handle(fetch('b2', end, epoch), 40, channel);
    assert.equal(await settlesThisTurn(first), true, 'superseded');
    assert.equal(((await first) as FetchResponse).entries.length, 0);
    replica.dropChannel(channel);
    assert.equal(await second, null);
  });

  test('a parked Fetch with nothing new is answered empty after its wait, on a tick (no timer of its own)', async () => {
    const end = replica.log.endOffset;
    const startMs = Date.now();
    const answer = (await replica.handle(fetch('b2', end, epoch), 20)) as FetchResponse;
    const waitedMs = Date.now() - startMs;
    assert.equal(answer.entries.length, 0);
    assert.ok(waitedMs >= 15 && waitedMs < 2000, `waited ${waitedMs} ms`);
  });

  test('a Fetch from a diverging log is answered at once, not parked', async () => {
    const answer = (await replica.handle(fetch('b3', replica.log.endOffset + 5, epoch), 40, {})) as FetchResponse;
    assert.ok(answer.divergingEpoch, 'diverging epoch');
  });
});
