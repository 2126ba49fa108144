// Integration (issue 13 points 1 and 3; DESIGN §12 "Snapshots and retention", "Recovering
// replicas"): a replaced disk rejoins a group whose leader's log no longer starts at 0. Real
// broker processes with small segments, a small retention limit and frequent snapshots:
//   - enough is produced that retention removes the head of every log (below a snapshot);
//   - a follower is killed, its data directory wiped, and started again: it joins as recovering
//     (no vote), installs the leader's snapshot, fetches the log from its end and recovers;
//   - it serves, consumed from it directly, the same messages as the leader for every queue
//     offset both still hold (the messages from its snapshot on);
//   - then the leader is stopped: the other follower and the rejoined broker elect a leader, and
//     the group commits again.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { TestCluster, waitFor } from './cluster-harness.js';
import { readAll, type MambaClient, type Wire } from './grpc-client.js';

const topic = `rejoin-${process.pid}`;
const queueCount = 2;
const messagesPerBatch = 10;
const body = (queue: number, index: number): Buffer => Buffer.from(`q${queue}-m${index}-${'x'.repeat(480)}`);

/** Log lines of a broker (JSON objects) written after byte `from` of its log file. */
function logEvents(file: string, event: string, from = 0): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').slice(from);
  } catch {
    return [];
  }
  const found: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.includes(`"${event}"`)) continue;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed.event === event) found.push(parsed);
    } catch {
      // a line cut by the kill
    }
  }
  return found;
}

/**
 * The queue's start and high watermark as `client`'s broker serves them. A read below the start
 * is refused naming the range; retention may move the start again before the next read, so the
 * read follows the newest start a bounded number of times.
 */
async function queueRange(client: MambaClient, queue: number): Promise<{ start: number; end: number }> {
  let offset = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const reply = await client.consume(topic, queue, offset, 1);
      return { start: Number(reply.startOffset), end: Number(reply.highWatermark) };
    } catch (error) {
      const match = /valid offsets are (\d+)\.\.(\d+)/.exec((error as grpc.ServiceError).details ?? '');
      if (!match || attempt >= 5) throw error;
      offset = Number(match[1]);
    }
  }
}

describe('a wiped follower rejoins after retention (snapshot install)', { timeout: 300_000 }, () => {
  let cluster: TestCluster;
  let leader: string;
  const produced = new Map<number, number>(); // queue → messages produced

  before(async () => {
    cluster = await TestCluster.start({
      settings: {
        segmentBytes: 65536,
        messageBytesMax: 16384,
        retentionBytesMax: 131072,
        snapshotIntervalEntries: 20,
      },
    });
    leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
    await cluster.client(leader).call('CreateTopic', { name: topic, queues: queueCount });
  });
  after(async () => cluster?.stop());

  // Idempotent (one producer id, each queue's sequence is its message count): a batch retried on
  // a new leader after an election on a loaded machine is answered with the offsets it has.
  const producerId = 7331;
  async function produce(batches: number): Promise<void> {
    for (let round = 0; round < batches; round++) {
      for (let queue = 0; queue < queueCount; queue++) {
        const first = produced.get(queue) ?? 0;
        const bodies = Array.from({ length: messagesPerBatch }, (_, i) => body(queue, first + i));
        let reply: Wire | null = null;
        for (let attempt = 1; reply === null; attempt++) {
          reply = await cluster
            .client(leader)
            .produce(topic, queue, bodies, 3, 10_000, { producerId, sequence: first })
            .catch(async (error: Error) => {
              if (attempt >= 5) throw error;
              leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
              return null;
            });
        }
        assert.equal(Number(reply.baseOffset), first);
        produced.set(queue, first + messagesPerBatch);
      }
    }
  }

  test('retention removes the head of the leader log, below a snapshot', async () => {
    await produce(120);
    const file = cluster.broker(leader).logFile;
    await waitFor('a snapshot on the leader', 30_000, () => (logEvents(file, 'replica.snapshot.taken').length > 0 ? true : undefined));
    await waitFor('retention on the leader', 60_000, async () => {
      if (logEvents(file, 'replica.retention').length === 0) await produce(5);
      return logEvents(file, 'replica.retention').length > 0 ? true : undefined;
    });
    const retention = logEvents(file, 'replica.retention').at(-1)!;
    assert.ok(Number(retention.startOffset) > 0);
    assert.ok(Number(retention.startOffset) <= Number(retention.limitOffset), 'never above the newest snapshot');
    const range = await queueRange(cluster.client(leader), 0);
    assert.ok(range.start > 0, `queue 0 starts at ${range.start} on the leader`);
  });

  test('a follower on an empty data directory installs the snapshot, catches up and serves the same messages', async () => {
    const follower = cluster.groupBrokers('g1').find((b) => b.id !== leader)!;
    await cluster.kill(follower.id);
    rmSync(follower.dataDir, { recursive: true, force: true });
    const logFrom = statSync(follower.logFile).size;
    cluster.launch(follower.id);
    await waitFor('the rejoined follower joins as recovering', 30_000, () =>
      logEvents(follower.logFile, 'replica.joining_as_recovering', logFrom).length > 0 ? true : undefined,
    );
    await waitFor('the snapshot installed', 60_000, () => (logEvents(follower.logFile, 'replica.snapshot.installed', logFrom).length > 0 ? true : undefined));
    await produce(10);
    await waitFor('recovered', 60_000, () => (logEvents(follower.logFile, 'replica.recovered', logFrom).length > 0 ? true : undefined));
    const installed = logEvents(follower.logFile, 'replica.snapshot.installed', logFrom)[0]!;
    assert.ok(Number(installed.snapshotEndOffset) > 0);
    const progress = logEvents(follower.logFile, 'replica.snapshot.fetch_progress', logFrom);
    assert.ok(progress.length > 0 && progress.at(-1)!.percent === 100);
    // ISO timestamps of one clock compare as strings.
    const recoveredTs = String(logEvents(follower.logFile, 'replica.recovered', logFrom)[0]!.ts);
    const votesBefore = logEvents(follower.logFile, 'replica.role', logFrom).filter(
      (line) => (line.role === 'candidate' || line.role === 'leader') && String(line.ts) <= recoveredTs,
    );
    assert.deepEqual(votesBefore, [], 'no candidacy while it caught up');

    const leaderClient = cluster.client(leader);
    const followerClient = cluster.client(follower.id);
    // Production has stopped: once the retention passes (every 10 s) on each broker found nothing
    // more to delete, the starts stay put while the queues are read below. Two intervals: a pass
    // that a loaded machine runs late still falls inside the window.
    const starts = async (): Promise<string> => {
      const ranges = [];
      for (let queue = 0; queue < queueCount; queue++)
        ranges.push((await queueRange(leaderClient, queue)).start, (await queueRange(followerClient, queue)).start);
      return ranges.join(',');
    };
    let seen = await starts();
    let sameSinceMs = Date.now();
    await waitFor(
      'queue starts unchanged for two retention intervals on both brokers',
      90_000,
      async () => {
        const now = await starts();
        if (now !== seen) [seen, sameSinceMs] = [now, Date.now()];
        return Date.now() - sameSinceMs > 21_000 ? true : undefined;
      },
      1000,
    );
    for (let queue = 0; queue < queueCount; queue++) {
      const fromLeader = await queueRange(leaderClient, queue);
      assert.equal(fromLeader.end, produced.get(queue));
      await waitFor(`queue ${queue} committed on the follower`, 30_000, async () =>
        (await queueRange(followerClient, queue)).end >= fromLeader.end ? true : undefined,
      );
      const fromFollower = await queueRange(followerClient, queue);
      const start = Math.max(fromLeader.start, fromFollower.start);
      assert.ok(fromLeader.end - start >= 10 * messagesPerBatch, `queue ${queue}: ${fromLeader.end - start} messages held by both`);
      const expected = Array.from({ length: fromLeader.end - start }, (_, i) => body(queue, start + i).toString());
      assert.deepEqual(await readAll(leaderClient, topic, queue, start, fromLeader.end), expected, `queue ${queue} on the leader`);
      assert.deepEqual(await readAll(followerClient, topic, queue, start, fromLeader.end), expected, `queue ${queue} on the rejoined follower`);
      const reply = await followerClient.consume(topic, queue, start, 1);
      assert.equal(reply.servedBy, follower.id, 'served by the rejoined follower itself');
    }
  });

  test('with the leader stopped, the rejoined broker and the other follower elect a leader and commit', async () => {
    const old = leader;
    await cluster.kill(old);
    const view = await cluster.waitForLeader('g1', 30_000, [old]);
    leader = view.leaderId;
    await waitFor('a produce acknowledged by the new group majority', 30_000, async () => {
      try {
        await produce(1);
        return true;
      } catch {
        return undefined;
      }
    });
    const range = await queueRange(cluster.client(leader), 0);
    assert.equal(range.end, produced.get(0));
  });
});
