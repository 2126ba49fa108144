// KIP-630 FetchSnapshot as the replica runs it (src/replica/snapshot-transfer.ts), with real
// snapshot stores for a leader and a follower in fresh directories and the wire played by the
// test (which may damage, drop or refuse answers):
//   - the leader answers only as the leader of the request's epoch (FENCED_LEADER_EPOCH,
//     UNKNOWN_LEADER_EPOCH, NOT_LEADER), names a snapshot it does not hold SNAPSHOT_NOT_FOUND and
//     a position beyond the file POSITION_OUT_OF_RANGE, and never sends more than 1 MiB at once;
//   - a follower fetches a snapshot of several chunks, checked, and hands its meta and payload on;
//   - a damaged chunk or a failed call is asked for again; SNAPSHOT_NOT_FOUND starts over;
//   - a transfer stopped and asked for again resumes from the bytes it holds;
//   - the payload wrapper keeps the membership entry in force (learners and endpoints too).
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '../../src/replica/logger.js';
import { decodeSnapshotPayload, encodeSnapshotPayload } from '../../src/replica/snapshot-payload.js';
import { SnapshotError, SnapshotStore, snapshotChunkBytesMax } from '../../src/replica/snapshot-store.js';
import {
  answerFetchSnapshot,
  SnapshotFetcher,
  type FetchSnapshotRequest,
  type FetchSnapshotResponse,
  type LeaderView,
} from '../../src/replica/snapshot-transfer.js';
import type { SnapshotContent } from '../../src/replica/snapshot-payload.js';
import type { SnapshotMeta, SnapshotRequest } from '../../src/raft/types.js';

const roots: string[] = [];
// The transfer's retry timers do not hold a process open (a closing broker does not wait for
// them): this keeps the test's event loop alive while a transfer backs off.
const keepAlive = setInterval(() => undefined, 1000);
after(() => {
  clearInterval(keepAlive);
  for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
});

async function store(): Promise<SnapshotStore> {
  const root = fs.mkdtempSync(join(tmpdir(), 'mamba-snapshot-transfer-'));
  roots.push(root);
  return SnapshotStore.open({ dir: join(root, 'snapshots'), logger: () => undefined });
}

const meta: SnapshotMeta = { endOffset: 5000, epoch: 4, membership: { offset: 12, voters: ['b1', 'b2', 'b3'] } };
const leaderView: LeaderView = { id: 'b1', epoch: 4, isLeader: true, leaderId: 'b1' };
const machinePayload = Buffer.alloc(3 * snapshotChunkBytesMax + 12345, 0);
for (let index = 0; index < machinePayload.byteLength; index += 997) machinePayload[index] = index % 251;

async function leaderWithSnapshot(): Promise<SnapshotStore> {
  const leader = await store();
  await leader.write({ endOffset: meta.endOffset, epoch: meta.epoch }, encodeSnapshotPayload(meta, machinePayload));
  return leader;
}

const request = (position: number, extra: Partial<FetchSnapshotRequest> = {}): FetchSnapshotRequest => ({
  from: 'b2',
  to: 'b1',
  leaderEpoch: 4,
  snapshot: { endOffset: meta.endOffset, epoch: meta.epoch },
  position,
  bytesMax: 64 * 1024 * 1024,
  ...extra,
});

const wanted: SnapshotRequest = { leaderId: 'b1', leaderEpoch: 4, snapshot: { endOffset: meta.endOffset, epoch: meta.epoch } };

/** A follower's fetcher whose calls go through `wire` to the leader's store. */
function follower(
  followerStore: SnapshotStore,
  wire: (request: FetchSnapshotRequest) => Promise<FetchSnapshotResponse>,
): { fetcher: SnapshotFetcher; done: Promise<SnapshotContent>; lines: string[] } {
  const lines: string[] = [];
  let resolve: (content: SnapshotContent) => void = () => undefined;
  const done = new Promise<SnapshotContent>((r) => {
    resolve = r;
  });
  const fetcher = new SnapshotFetcher({
    store: followerStore,
    logger: new Logger('b2', 'g1', (line) => lines.push(line)),
    selfId: 'b2',
    fetchChunk: wire,
    writingOwnSnapshot: () => false,
    fetched: (_request, content) => resolve(content),
  });
  return { fetcher, done, lines };
}

function eventsOf(lines: string[], event: string): Array<Record<string, unknown>> {
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === event);
}

describe('the leader end (answerFetchSnapshot)', () => {
  test('refuses a request of another epoch, or when not the leader (KIP-630 FENCED/UNKNOWN_LEADER_EPOCH, NOT_LEADER)', async () => {
    const leader = await leaderWithSnapshot();
    assert.equal((await answerFetchSnapshot(leader, leaderView, request(0, { leaderEpoch: 3 }))).error, 'FENCED_LEADER_EPOCH');
    assert.equal((await answerFetchSnapshot(leader, leaderView, request(0, { leaderEpoch: 5 }))).error, 'UNKNOWN_LEADER_EPOCH');
    const follows = await answerFetchSnapshot(leader, { ...leaderView, isLeader: false, leaderId: 'b3' }, request(0));
    assert.deepEqual([follows.error, follows.leaderId, follows.bytes.byteLength], ['NOT_LEADER', 'b3', 0]);
  });

  test('SNAPSHOT_NOT_FOUND for a snapshot it does not hold, POSITION_OUT_OF_RANGE beyond the file, at most 1 MiB a chunk', async () => {
    const leader = await leaderWithSnapshot();
    const other = await answerFetchSnapshot(leader, leaderView, request(0, { snapshot: { endOffset: 4000, epoch: 4 } }));
    assert.equal(other.error, 'SNAPSHOT_NOT_FOUND');
    const first = await answerFetchSnapshot(leader, leaderView, request(0));
    assert.equal(first.error, undefined);
    assert.equal(first.bytes.byteLength, snapshotChunkBytesMax, 'bounded whatever bytesMax says');
    const beyond = await answerFetchSnapshot(leader, leaderView, request(first.sizeBytes + 1));
    assert.equal(beyond.error, 'POSITION_OUT_OF_RANGE');
  });
});

describe('the follower end (SnapshotFetcher)', { timeout: 60_000 }, () => {
  test('fetches a snapshot of several chunks and hands on the meta and payload it holds', async () => {
    const leader = await leaderWithSnapshot();
    const followerStore = await store();
    const positions: number[] = [];
    const { fetcher, done, lines } = follower(followerStore, (r) => {
      positions.push(r.position);
      return answerFetchSnapshot(leader, leaderView, r);
    });
    fetcher.want(wanted);
    const content = await done;
    assert.deepEqual(content.meta, meta);
    assert.ok(content.machinePayload.equals(machinePayload));
    assert.deepEqual(followerStore.latest(), { endOffset: meta.endOffset, epoch: meta.epoch });
    assert.equal(positions.length, 4, `chunks asked for at ${positions.join(', ')}`);
    assert.equal(eventsOf(lines, 'replica.snapshot.fetch_progress').at(-1)!.percent, 100);
  });

  test('a damaged chunk and a failed call are asked for again; SNAPSHOT_NOT_FOUND starts over from byte 0', async () => {
    const leader = await leaderWithSnapshot();
    const followerStore = await store();
    const positions: number[] = [];
    let calls = 0;
    const { fetcher, done, lines } = follower(followerStore, async (r) => {
      calls++;
      positions.push(r.position);
      if (calls === 2) {
        const answer = await answerFetchSnapshot(leader, leaderView, r);
        const damaged = Buffer.from(answer.bytes);
        damaged[10] = (damaged[10]! + 1) & 0xff;
        return { ...answer, bytes: damaged };
      }
      if (calls === 3) throw new Error('connection reset');
      if (calls === 5) return { ...(await answerFetchSnapshot(leader, leaderView, r)), error: 'SNAPSHOT_NOT_FOUND', bytes: new Uint8Array(0) };
      return answerFetchSnapshot(leader, leaderView, r);
    });
    fetcher.want(wanted);
    const content = await done;
    assert.ok(content.machinePayload.equals(machinePayload));
    const chunk = snapshotChunkBytesMax;
    assert.deepEqual(positions.slice(0, 6), [0, chunk, chunk, chunk, 2 * chunk, 0], 'damaged and failed: again; not found: from 0');
    assert.equal(eventsOf(lines, 'replica.snapshot.restart')[0]?.reason, 'SNAPSHOT_NOT_FOUND');
  });

  test('a transfer stopped (want(null)) and asked for again resumes from the bytes it holds', async () => {
    const leader = await leaderWithSnapshot();
    const followerStore = await store();
    const positions: number[] = [];
    let stop: (() => void) | null = null;
    const { fetcher, done } = follower(followerStore, async (r) => {
      positions.push(r.position);
      const answer = await answerFetchSnapshot(leader, leaderView, r);
      if (positions.length === 2) stop?.();
      return answer;
    });
    stop = () => fetcher.want(null);
    fetcher.want(wanted);
    for (let round = 0; round < 200 && fetcher.active; round++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(fetcher.active, false, 'stopped');
    const held = followerStore.receiving;
    assert.equal(held?.receivedBytes, snapshotChunkBytesMax, 'the chunk answered before the stop was not taken; the first one is kept');
    stop = null;
    fetcher.want(wanted);
    const content = await done;
    assert.ok(content.machinePayload.equals(machinePayload));
    assert.equal(positions[2], snapshotChunkBytesMax, 'resumed where it stopped');
  });
});

describe('the snapshot payload (snapshot-payload.ts)', () => {
  test('round-trips the meta with learners and endpoints, and refuses a payload of another snapshot', () => {
    const withLearners: SnapshotMeta = {
      endOffset: 90,
      epoch: 7,
      membership: { offset: 40, voters: ['b1', 'b2', 'b3'], learners: ['b4'], endpoints: [{ id: 'b4', clientAddress: 'h:1', peerAddress: 'h:2' }] },
    };
    const payload = encodeSnapshotPayload(withLearners, Buffer.from('state'));
    const back = decodeSnapshotPayload({ endOffset: 90, epoch: 7 }, payload);
    assert.deepEqual(back.meta, withLearners);
    assert.equal(back.machinePayload.toString(), 'state');
    const none = decodeSnapshotPayload({ endOffset: 90, epoch: 7 }, encodeSnapshotPayload({ ...withLearners, membership: null }, new Uint8Array(0)));
    assert.equal(none.meta.membership, null);
    assert.throws(
      () => decodeSnapshotPayload({ endOffset: 91, epoch: 7 }, payload),
      (error: unknown) => error instanceof SnapshotError && error.code === 'snapshot_corrupt',
    );
    assert.throws(
      () => decodeSnapshotPayload({ endOffset: 90, epoch: 7 }, payload.subarray(0, payload.byteLength - 1)),
      (error: unknown) => error instanceof SnapshotError && error.code === 'snapshot_corrupt',
    );
  });
});
