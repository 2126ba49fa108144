// The snapshot store (src/replica/snapshot-store.ts; issue 13 point 1, DESIGN §12 "Snapshots and
// retention"): a snapshot round-trips through its file and through a chunked transfer byte for
// byte; a transfer resumes from receivedBytes; a damaged chunk or file is refused and nothing is
// installed; a partial or damaged file left by a crash is removed on open; only the newest
// keepCount stay, and a pruned snapshot reads as snapshot_gone.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { crc32c, type LogEvent } from '../../src/log/index.js';
import {
  SnapshotError,
  SnapshotStore,
  snapshotChunkBytesMax,
  snapshotFileName,
  snapshotHeaderBytes,
  type SnapshotId,
  type SnapshotStoreOptions,
} from '../../src/replica/snapshot-store.js';

function temporaryDirectory(): { dir: string; remove: () => void } {
  const root = fs.mkdtempSync(join(tmpdir(), 'mamba-snapshot-'));
  return { dir: join(root, 'snapshots'), remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}

function payloadOf(seed: number, byteCount: number): Buffer {
  const bytes = Buffer.alloc(byteCount);
  for (let position = 0; position < byteCount; position++) bytes[position] = (seed * 131 + position * 7 + (position >> 9)) & 0xff;
  return bytes;
}

function open(dir: string, extra: Partial<SnapshotStoreOptions> = {}): Promise<SnapshotStore> {
  return SnapshotStore.open({ dir, logger: () => {}, ...extra });
}

function openCapturing(dir: string, extra: Partial<SnapshotStoreOptions> = {}): Promise<{ store: SnapshotStore; events: LogEvent[] }> {
  const events: LogEvent[] = [];
  return SnapshotStore.open({ dir, logger: (event) => events.push(event), ...extra }).then((store) => ({ store, events }));
}

function isCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof SnapshotError && error.code === code;
}

/** Copies snapshot `id` from `leader` to `follower` in chunks of the sizes given (cycled). */
async function transfer(leader: SnapshotStore, follower: SnapshotStore, id: SnapshotId, chunkBytes: number[]): Promise<SnapshotId> {
  const first = await leader.readChunk(id, 0, chunkBytes[0]!);
  let progress = follower.beginReceive(id, first.totalBytes);
  let chunk = first;
  for (let round = 0; ; round++) {
    progress = follower.appendChunk(progress.receivedBytes, chunk.bytes, chunk.chunkCrc);
    if (progress.done) break;
    chunk = await leader.readChunk(id, progress.receivedBytes, chunkBytes[(round + 1) % chunkBytes.length]!);
  }
  return follower.finishReceive();
}

describe('snapshot store', () => {
  it('round trip: write, latest, readPayload, reopen; the file is named and laid out as documented', async () => {
    const { dir, remove } = temporaryDirectory();
    try {
      const store = await open(dir);
      assert.equal(store.latest(), null);
      const payload = payloadOf(1, 100_000);
      await store.write({ endOffset: 1234, epoch: 7 }, payload);
      assert.deepEqual(store.latest(), { endOffset: 1234, epoch: 7 });
      assert.ok((await store.readPayload({ endOffset: 1234, epoch: 7 })).equals(payload));
      assert.deepEqual(fs.readdirSync(dir), ['00000000000000001234-0000000007.snapshot']);
      const file = fs.readFileSync(join(dir, snapshotFileName({ endOffset: 1234, epoch: 7 })));
      assert.equal(file.subarray(0, 8).toString('latin1'), 'MAMBASNP');
      assert.equal(file.readUInt16LE(8), 1);
      assert.equal(Number(file.readBigUInt64LE(16)), 1234);
      assert.equal(file.readUInt32LE(24), 7);
      assert.equal(Number(file.readBigUInt64LE(32)), payload.byteLength);
      assert.equal(file.byteLength, snapshotHeaderBytes + payload.byteLength);
      store.close();
      const reopened = await open(dir);
      assert.deepEqual(reopened.latest(), { endOffset: 1234, epoch: 7 });
      assert.ok((await reopened.readPayload({ endOffset: 1234, epoch: 7 })).equals(payload));
      await reopened.write({ endOffset: 2000, epoch: 7 }, Buffer.alloc(0)); // an empty payload is a snapshot too
      assert.equal((await reopened.readPayload({ endOffset: 2000, epoch: 7 })).byteLength, 0);
      reopened.close();
    } finally {
      remove();
    }
  });

  it('a chunked transfer installs a file equal to the leader’s; chunks are capped at snapshotChunkBytesMax', async () => {
    const leaderDir = temporaryDirectory();
    const followerDir = temporaryDirectory();
    try {
      const leader = await open(leaderDir.dir);
      const follower = await open(followerDir.dir);
      const id = { endOffset: 90_000, epoch: 4 };
      const payload = payloadOf(2, 2 * snapshotChunkBytesMax + 12_345);
      await leader.write(id, payload);
      const capped = await leader.readChunk(id, 0, 10 * snapshotChunkBytesMax);
      assert.equal(capped.bytes.byteLength, snapshotChunkBytesMax);
      assert.equal(capped.totalBytes, snapshotHeaderBytes + payload.byteLength);
      assert.equal(capped.done, false);
      assert.deepEqual(await transfer(leader, follower, id, [snapshotChunkBytesMax * 4, 777]), id);
      assert.deepEqual(follower.latest(), id);
      assert.ok(fs.readFileSync(join(followerDir.dir, snapshotFileName(id))).equals(fs.readFileSync(join(leaderDir.dir, snapshotFileName(id)))));
      assert.ok((await follower.readPayload(id)).equals(payload));
      assert.deepEqual(fs.readdirSync(followerDir.dir), [snapshotFileName(id)], 'no partial left');
      const end = await leader.readChunk(id, capped.totalBytes, 100);
      assert.equal(end.bytes.byteLength, 0);
      assert.equal(end.done, true);
      await assert.rejects(leader.readChunk(id, capped.totalBytes + 1, 100), isCode('bad_position'));
      leader.close();
      follower.close();
    } finally {
      leaderDir.remove();
      followerDir.remove();
    }
  });

  it('resumes from receivedBytes; a chunk elsewhere is refused and changes nothing; another id starts over', async () => {
    const leaderDir = temporaryDirectory();
    const followerDir = temporaryDirectory();
    try {
      const leader = await open(leaderDir.dir);
      const follower = await open(followerDir.dir);
      const id = { endOffset: 500, epoch: 2 };
      const payload = payloadOf(3, 50_000);
      await leader.write(id, payload);
      const first = await leader.readChunk(id, 0, 20_000);
      follower.beginReceive(id, first.totalBytes);
      follower.appendChunk(0, first.bytes, first.chunkCrc);
      // The connection drops; later the follower asks again (same id, same size): it resumes.
      const again = follower.beginReceive(id, first.totalBytes);
      assert.equal(again.receivedBytes, 20_000);
      const stale = await leader.readChunk(id, 0, 100);
      assert.throws(
        () => follower.appendChunk(0, stale.bytes, stale.chunkCrc),
        (error: unknown) => isCode('chunk_out_of_order')(error) && (error as SnapshotError).details.position === 20_000,
      );
      const ahead = await leader.readChunk(id, 30_000, 100);
      assert.throws(() => follower.appendChunk(30_000, ahead.bytes, ahead.chunkCrc), isCode('chunk_out_of_order'));
      assert.equal(follower.receiving?.receivedBytes, 20_000);
      let position = 20_000;
      while (position < first.totalBytes) {
        const chunk = await leader.readChunk(id, position, 9_999);
        position = follower.appendChunk(position, chunk.bytes, chunk.chunkCrc).receivedBytes;
      }
      await follower.finishReceive();
      assert.ok((await follower.readPayload(id)).equals(payload));
      // Another snapshot announced mid-transfer: the old partial goes, the new one starts at 0.
      const newer = { endOffset: 900, epoch: 3 };
      await leader.write(newer, payloadOf(4, 1000));
      const newest = { endOffset: 1200, epoch: 3 };
      await leader.write(newest, payloadOf(5, 1000));
      const part = await leader.readChunk(newer, 0, 100);
      follower.beginReceive(newer, part.totalBytes);
      follower.appendChunk(0, part.bytes, part.chunkCrc);
      assert.ok(fs.existsSync(join(followerDir.dir, `${snapshotFileName(newer)}.partial`)));
      const newestFirst = await leader.readChunk(newest, 0, 100);
      assert.equal(follower.beginReceive(newest, newestFirst.totalBytes).receivedBytes, 0);
      assert.ok(!fs.existsSync(join(followerDir.dir, `${snapshotFileName(newer)}.partial`)), 'the abandoned partial is deleted');
      leader.close();
      follower.close();
      assert.ok(!fs.existsSync(join(followerDir.dir, `${snapshotFileName(newest)}.partial`)), 'close abandons the transfer');
    } finally {
      leaderDir.remove();
      followerDir.remove();
    }
  });

  it('a chunk failing its CRC is refused (ask again); damage that passes chunk CRCs fails the install, which installs nothing', async () => {
    const leaderDir = temporaryDirectory();
    const followerDir = temporaryDirectory();
    try {
      const leader = await open(leaderDir.dir);
      const follower = await open(followerDir.dir);
      const id = { endOffset: 700, epoch: 5 };
      await leader.write(id, payloadOf(6, 40_000));
      // In transit: the CRC does not match the bytes.
      const chunk = await leader.readChunk(id, 0, 16_000);
      follower.beginReceive(id, chunk.totalBytes);
      const damaged = Buffer.from(chunk.bytes);
      damaged[9000]! ^= 0x01;
      assert.throws(() => follower.appendChunk(0, damaged, chunk.chunkCrc), isCode('chunk_corrupt'));
      assert.equal(follower.receiving?.receivedBytes, 0, 'nothing taken');
      // Damaged before its chunk CRC was computed (e.g. on the leader's disk): only the payload CRC sees it.
      follower.appendChunk(0, chunk.bytes, chunk.chunkCrc);
      let position = 16_000;
      while (position < chunk.totalBytes) {
        const next = await leader.readChunk(id, position, 16_000);
        const bytes = Buffer.from(next.bytes);
        if (position === 16_000) bytes[5]! ^= 0x80;
        position = follower.appendChunk(position, bytes, crc32c(bytes)).receivedBytes;
      }
      await assert.rejects(follower.finishReceive(), isCode('snapshot_corrupt'));
      assert.equal(follower.latest(), null, 'nothing installed');
      assert.equal(follower.receiving, null);
      assert.deepEqual(fs.readdirSync(followerDir.dir), [], 'the partial is deleted');
      // A damaged header is refused as soon as its 64 bytes are in.
      const head = await leader.readChunk(id, 0, 10);
      follower.beginReceive(id, head.totalBytes);
      follower.appendChunk(0, head.bytes, head.chunkCrc);
      const rest = Buffer.from((await leader.readChunk(id, 10, 100)).bytes);
      rest[20]! ^= 0x04; // inside the header (byte 30)
      assert.throws(() => follower.appendChunk(10, rest, crc32c(rest)), isCode('snapshot_corrupt'));
      assert.equal(follower.receiving, null, 'transfer abandoned');
      assert.deepEqual(fs.readdirSync(followerDir.dir), []);
      // The bytes of another snapshot under this id: the header names the other one.
      const other = { endOffset: 800, epoch: 5 };
      await leader.write(other, payloadOf(7, 40_000));
      const otherChunk = await leader.readChunk(other, 0, 1000);
      follower.beginReceive(id, otherChunk.totalBytes);
      assert.throws(() => follower.appendChunk(0, otherChunk.bytes, otherChunk.chunkCrc), isCode('snapshot_corrupt'));
      await assert.rejects(follower.finishReceive(), isCode('no_transfer'));
      leader.close();
      follower.close();
    } finally {
      leaderDir.remove();
      followerDir.remove();
    }
  });

  it('open deletes partials a crash left and snapshots that fail their checks, each logged; foreign files stay', async () => {
    const { dir, remove } = temporaryDirectory();
    try {
      const crashed = await open(dir, { keepCount: 16 });
      const good = { endOffset: 100, epoch: 1 };
      await crashed.write(good, payloadOf(8, 5000));
      await crashed.write({ endOffset: 400, epoch: 1 }, payloadOf(9, 5000));
      await crashed.write({ endOffset: 500, epoch: 1 }, payloadOf(10, 5000));
      // A receive cut by a crash (the store is never closed) and a write cut before its rename.
      crashed.beginReceive({ endOffset: 700, epoch: 1 }, snapshotHeaderBytes + 5000);
      fs.writeFileSync(join(dir, `${snapshotFileName({ endOffset: 300, epoch: 1 })}.partial`), Buffer.alloc(10));
      // Damaged complete files: a flipped payload byte, a cut file, a header naming another id.
      const flipped = fs.readFileSync(join(dir, snapshotFileName({ endOffset: 400, epoch: 1 })));
      flipped[snapshotHeaderBytes + 10]! ^= 0x20;
      fs.writeFileSync(join(dir, snapshotFileName({ endOffset: 400, epoch: 1 })), flipped);
      fs.truncateSync(join(dir, snapshotFileName({ endOffset: 500, epoch: 1 })), snapshotHeaderBytes + 4999);
      fs.copyFileSync(join(dir, snapshotFileName(good)), join(dir, snapshotFileName({ endOffset: 600, epoch: 1 })));
      fs.writeFileSync(join(dir, 'notes.txt'), 'operator notes');
      const { store, events } = await openCapturing(dir);
      assert.deepEqual(store.list(), [good]);
      assert.deepEqual(fs.readdirSync(dir).sort(), [snapshotFileName(good), 'notes.txt']);
      assert.equal(events.filter((event) => event.event === 'snapshot.removed_partial').length, 2);
      const corrupt = events.filter((event) => event.event === 'snapshot.removed_corrupt').map((event) => String(event.reason));
      assert.equal(corrupt.length, 3);
      assert.ok(corrupt.some((reason) => /payload crc/.test(reason)));
      assert.ok(corrupt.some((reason) => /the file has/.test(reason)));
      assert.ok(corrupt.some((reason) => /header names snapshot 100-1/.test(reason)));
      assert.ok(events.some((event) => event.event === 'snapshot.foreign_file'));
      store.close();
    } finally {
      remove();
    }
  });

  it('keeps the newest keepCount; a pruned snapshot reads as snapshot_gone, also mid-transfer', async () => {
    const { dir, remove } = temporaryDirectory();
    try {
      const store = await open(dir);
      const ids = [1, 2, 3, 4, 5].map((index) => ({ endOffset: index * 100, epoch: index }));
      await store.write(ids[0]!, payloadOf(9, 3000));
      const firstChunk = await store.readChunk(ids[0]!, 0, 1000); // a follower starts fetching it
      for (const id of ids.slice(1)) await store.write(id, payloadOf(id.epoch, 3000));
      assert.deepEqual(store.list(), ids.slice(3));
      assert.deepEqual(fs.readdirSync(dir).sort(), ids.slice(3).map(snapshotFileName));
      await assert.rejects(store.readChunk(ids[0]!, firstChunk.bytes.byteLength, 1000), isCode('snapshot_gone'));
      await assert.rejects(store.readPayload(ids[1]!), isCode('snapshot_gone'));
      store.close();
      const wider = await open(dir, { keepCount: 3 });
      await wider.write({ endOffset: 600, epoch: 6 }, payloadOf(6, 10));
      assert.equal(wider.list().length, 3);
      wider.close();
      const narrower = await open(dir, { keepCount: 1 });
      assert.deepEqual(narrower.list(), [{ endOffset: 600, epoch: 6 }], 'open prunes to keepCount too');
      narrower.close();
    } finally {
      remove();
    }
  });

  it('refuses stale ids, oversized snapshots and chunks, a second write at once, and bad options', async () => {
    const { dir, remove } = temporaryDirectory();
    try {
      await assert.rejects(
        open(dir, { keepCount: 0 }),
        (error: unknown) => isCode('bad_config')(error) && (error as SnapshotError).details.key === 'keepCount',
      );
      await assert.rejects(open(dir, { payloadBytesMax: 2 ** 40 }), isCode('bad_config'));
      const store = await open(dir, { payloadBytesMax: 1000 });
      await assert.rejects(store.write({ endOffset: 10, epoch: 1 }, Buffer.alloc(1001)), isCode('snapshot_too_large'));
      assert.throws(() => store.beginReceive({ endOffset: 10, epoch: 1 }, snapshotHeaderBytes + 1001), isCode('snapshot_too_large'));
      assert.throws(() => store.beginReceive({ endOffset: 10, epoch: 1 }, 10), isCode('snapshot_corrupt'));
      assert.throws(() => store.beginReceive({ endOffset: -1, epoch: 1 }, 100), isCode('bad_id'));
      const writing = store.write({ endOffset: 10, epoch: 1 }, Buffer.alloc(1000));
      await assert.rejects(store.write({ endOffset: 20, epoch: 1 }, Buffer.alloc(10)), isCode('snapshot_busy'));
      await writing;
      await assert.rejects(store.write({ endOffset: 10, epoch: 1 }, Buffer.alloc(10)), isCode('snapshot_stale'));
      await assert.rejects(store.write({ endOffset: 9, epoch: 2 }, Buffer.alloc(10)), isCode('snapshot_stale'));
      assert.throws(() => store.beginReceive({ endOffset: 10, epoch: 1 }, 100), isCode('snapshot_stale'));
      assert.throws(() => store.appendChunk(0, Buffer.alloc(1), 0), isCode('no_transfer'));
      store.beginReceive({ endOffset: 20, epoch: 1 }, snapshotHeaderBytes + 1000);
      const tooLarge = Buffer.alloc(snapshotChunkBytesMax + 1);
      assert.throws(() => store.appendChunk(0, tooLarge, 0), isCode('bad_chunk'));
      assert.throws(() => store.appendChunk(0, Buffer.alloc(0), 0), isCode('bad_chunk'));
      assert.throws(() => store.appendChunk(0, Buffer.alloc(snapshotHeaderBytes + 1001), 0), isCode('bad_chunk'));
      await assert.rejects(store.finishReceive(), isCode('transfer_incomplete'));
      await assert.rejects(store.readChunk({ endOffset: 10, epoch: 1 }, 0, 0), isCode('bad_chunk'));
      await assert.rejects(store.readChunk({ endOffset: 10, epoch: 1 }, -1, 10), isCode('bad_position'));
      store.close();
    } finally {
      remove();
    }
  });

  it('property: any chunk sizes, interruptions and resumes give the leader’s file byte for byte', async () => {
    const leaderDir = temporaryDirectory();
    try {
      const leader = await open(leaderDir.dir, { keepCount: 16 });
      let endOffset = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 300_000 })),
          fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 12 }),
          fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
          async (payloadBytes, chunkBytes, interruptions) => {
            const followerDir = temporaryDirectory();
            try {
              endOffset += 10;
              const id = { endOffset, epoch: 1 };
              const payload = payloadOf(endOffset, payloadBytes);
              await leader.write(id, payload);
              const follower = await open(followerDir.dir);
              let progress = follower.beginReceive(id, snapshotHeaderBytes + payloadBytes);
              // Chunks of any size from 1 byte, but no more than about 300 of them per transfer.
              const chunkBytesMin = Math.ceil(progress.totalBytes / 300);
              for (let round = 0; !progress.done; round++) {
                const bytesMax = Math.max(chunkBytesMin, chunkBytes[round % chunkBytes.length]!);
                if (interruptions[round % interruptions.length]) {
                  // The connection drops: a chunk is lost or arrives late, then the follower resumes.
                  progress = follower.beginReceive(id, progress.totalBytes);
                  const late = await leader.readChunk(id, Math.max(0, progress.receivedBytes - 1), 1);
                  if (progress.receivedBytes > 0)
                    assert.throws(() => follower.appendChunk(progress.receivedBytes - 1, late.bytes, late.chunkCrc), isCode('chunk_out_of_order'));
                }
                const chunk = await leader.readChunk(id, progress.receivedBytes, bytesMax);
                assert.ok(chunk.bytes.byteLength >= 1 && chunk.bytes.byteLength <= bytesMax);
                progress = follower.appendChunk(progress.receivedBytes, chunk.bytes, chunk.chunkCrc);
                assert.equal(progress.done, chunk.done);
              }
              await follower.finishReceive();
              assert.ok(fs.readFileSync(join(followerDir.dir, snapshotFileName(id))).equals(fs.readFileSync(join(leaderDir.dir, snapshotFileName(id)))));
              assert.ok((await follower.readPayload(id)).equals(payload));
              follower.close();
            } finally {
              followerDir.remove();
            }
          },
        ),
        { numRuns: 40 },
      );
      leader.close();
    } finally {
      leaderDir.remove();
    }
  });
});
