// Integration: Consume and Subscribe answering in RecordBlocks (mamba.proto) against real brokers
// on 127.0.0.1. The rule checked: a block answer carries exactly the messages the per-record
// answer carries (offsets, keys, bodies, headers, timestamps), from the exact requested offset,
// within messages_max and bytes_max, only committed messages; and the SDK's read decodes it.
import { test, describe, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { MambaClient as SdkClient, readResultFromWire, type ReceivedMessage } from '../../src/client/client.js';
import { TestCluster } from './cluster-harness.js';
import type { Wire } from './grpc-client.js';
import type { ConsumeResponse } from '../../src/protocol/messages.js';

interface Sent {
  key: Buffer | null;
  body: Buffer;
  headers: Record<string, Buffer>;
  timestampMs: number;
}

/** A message of batch `batch`, position `index`: some with keys, headers or an empty body. */
function messageOf(batch: number, index: number): Sent {
  const headers: Record<string, Buffer> = {};
  if (index % 3 === 1) headers[`h${index}`] = Buffer.from(`v${batch}.${index}`);
  if (index % 5 === 2) headers.empty = Buffer.alloc(0);
  return {
    key: index % 2 === 0 ? Buffer.from(`k${batch}.${index}`) : null,
    body: index % 7 === 6 ? Buffer.alloc(0) : Buffer.from(`b${batch}.${index}.${'x'.repeat((batch * 37 + index * 11) % 300)}`),
    headers,
    timestampMs: 1_700_000_000_000 + batch * 1000 + index,
  };
}

function wireOf(m: Sent): Wire {
  return {
    key: m.key ?? Buffer.alloc(0),
    body: m.body,
    timestampMs: m.timestampMs,
    headers: Object.entries(m.headers).map(([key, value]) => ({ key, value })),
  };
}

/** A message as the SDK returns it, in a form deepEqual compares by content. */
function shapeOf(m: ReceivedMessage): Wire {
  return {
    offset: m.offset,
    timestampMs: m.timestampMs,
    key: m.key === null ? null : m.key.toString('hex'),
    body: m.body.toString('hex'),
    headers: Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, v.toString('hex')])),
  };
}

describe('Consume in RecordBlocks', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let leader: string;
  const topic = `blocks-${randomBytes(4).toString('hex')}`;
  const sent: Sent[] = [];

  before(async () => {
    cluster = await TestCluster.start();
    leader = (await cluster.waitForLeader('g1', 10_000)).leaderId;
    const client = cluster.client(leader);
    await client.call('CreateTopic', { name: topic, queues: 2 });
    // Batches of 1, 3, 7 and 50 messages to queue 0; some back to back in the group log, some
    // with a batch of queue 1 between them (both ways a read gathers its batches).
    const sizes = [1, 3, 7, 50, 1, 1, 1, 3, 50, 7, 1, 2];
    for (let batch = 0; batch < sizes.length; batch++) {
      const messages = Array.from({ length: sizes[batch]! }, (_, index) => messageOf(batch, index));
      await client.call('Produce', { topic, queue: 0, ack: 3, messages: messages.map(wireOf) });
      sent.push(...messages);
      if (batch % 3 === 0) await client.call('Produce', { topic, queue: 1, ack: 3, messages: [wireOf(messageOf(100 + batch, 0))] });
    }
  });
  // On a loaded machine leadership may move between tests: each starts from the group's leader now.
  beforeEach(async () => {
    leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
  });
  after(async () => cluster?.stop());

  const consume = (request: Wire): Promise<Wire> => cluster.client(leader).call('Consume', { topic, queue: 0, ...request });

  /** Checks the block rules of one reply and returns its messages. */
  function blockMessages(reply: Wire, offset: number): ReceivedMessage[] {
    assert.equal((reply.records as Wire[]).length, 0, 'a block answer carries no records');
    let expected = offset;
    for (const block of reply.blocks as Wire[]) {
      assert.equal(Number(block.queueOffset), expected, 'blocks are contiguous from the requested offset');
      assert.ok(Number(block.count) > 0);
      expected += Number(block.count);
    }
    assert.equal(Number(reply.nextOffset), expected, 'the last block ends at next_offset - 1');
    return readResultFromWire(reply as ConsumeResponse).messages;
  }

  test('every offset, several messages_max: blocks carry what records carry', async () => {
    for (const messagesMax of [1, 2, 5, 60, 500]) {
      for (let offset = 0; offset < sent.length; offset += messagesMax === 1 ? 1 : 3) {
        const [records, blocks] = await Promise.all([consume({ offset, messagesMax }), consume({ offset, messagesMax, blocks: true })]);
        const fromBlocks = blockMessages(blocks, offset);
        assert.equal(fromBlocks.length, Math.min(messagesMax, sent.length - offset), `offset ${offset}, max ${messagesMax}`);
        assert.deepEqual(fromBlocks.map(shapeOf), readResultFromWire(records as ConsumeResponse).messages.map(shapeOf), `offset ${offset}, max ${messagesMax}`);
        assert.equal(Number(blocks.nextOffset), Number(records.nextOffset));
        fromBlocks.forEach((m, index) => {
          const want = sent[offset + index]!;
          assert.equal(m.offset, offset + index);
          assert.equal(m.timestampMs, want.timestampMs);
          assert.deepEqual(m.key, want.key);
          assert.deepEqual(m.body, want.body);
          assert.deepEqual(m.headers, want.headers);
        });
      }
    }
  });

  test('bytes_max bounds a block answer, and the first message comes whatever its size', async () => {
    const one = await consume({ offset: 0, messagesMax: 500, bytesMax: 1, blocks: true });
    assert.equal(blockMessages(one, 0).length, 1);
    const some = blockMessages(await consume({ offset: 4, messagesMax: 500, bytesMax: 2000, blocks: true }), 4);
    assert.ok(some.length > 1 && some.length < sent.length - 4, `${some.length} messages within 2000 bytes`);
    const encodedBytes = some.reduce(
      (sum, m) =>
        sum +
        4 +
        4 +
        4 +
        (m.key?.byteLength ?? 0) +
        2 +
        Object.entries(m.headers).reduce((h, [k, v]) => h + 2 + Buffer.byteLength(k) + 4 + v.byteLength, 0) +
        4 +
        m.body.byteLength,
      0,
    );
    assert.ok(encodedBytes <= 2000, `${encodedBytes} encoded bytes within bytes_max 2000`);
  });

  test('at the end: no blocks, next_offset stays; past the end: OUT_OF_RANGE', async () => {
    const reply = await consume({ offset: sent.length, blocks: true });
    assert.equal((reply.blocks as Wire[]).length, 0);
    assert.equal(Number(reply.nextOffset), sent.length);
    const error = await consume({ offset: sent.length + 1, blocks: true }).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    assert.equal(error?.code, grpc.status.OUT_OF_RANGE);
  });

  test('the SDK read asks for blocks and returns the messages; a follower answers the same', async () => {
    const sdk = new SdkClient({ brokers: [cluster.broker(leader).clientAddress] });
    try {
      const read: ReceivedMessage[] = [];
      for (let offset = 0, round = 0; offset < sent.length && round < 100; round++) {
        const result = await sdk.read(topic, 0, offset, { messagesMax: 17 });
        read.push(...result.messages);
        offset = result.nextOffset;
      }
      assert.deepEqual(
        read.map((m) => m.body),
        sent.map((m) => m.body),
      );
      const follower = cluster.groupBrokers('g1').find((b) => b.id !== leader)!;
      const fromFollower = await sdk.read(topic, 0, 5, { messagesMax: 500, address: follower.clientAddress });
      assert.deepEqual(fromFollower.messages.map(shapeOf), read.slice(5, 5 + fromFollower.messages.length).map(shapeOf));
    } finally {
      sdk.close();
    }
  });

  test('Subscribe with blocks streams blocks from the offset, then what arrives later', async () => {
    const raw = cluster.client(leader).raw as unknown as { Subscribe(request: Wire): grpc.ClientReadableStream<Wire> };
    const stream = raw.Subscribe({ topic, queue: 0, offset: sent.length - 3, messagesMax: 100, blocks: true });
    const seen: ReceivedMessage[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (reply: Wire) => {
        assert.equal((reply.records as Wire[]).length, 0);
        seen.push(...readResultFromWire(reply as ConsumeResponse).messages);
        if (seen.length >= 4) resolve();
      });
      stream.on('error', (error: grpc.ServiceError) => (error.code === grpc.status.CANCELLED ? resolve() : reject(error)));
    });
    const later = messageOf(999, 1);
    await cluster.client(leader).call('Produce', { topic, queue: 0, ack: 3, messages: [wireOf(later)] });
    await done;
    stream.cancel();
    assert.deepEqual(
      seen.slice(0, 4).map((m) => m.offset),
      [sent.length - 3, sent.length - 2, sent.length - 1, sent.length],
    );
    assert.deepEqual(seen[3]!.body, later.body);
    assert.deepEqual(seen[3]!.headers, later.headers);
  });
});
