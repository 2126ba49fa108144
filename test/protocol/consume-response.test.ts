// The hand encoder of ConsumeResponse (src/protocol/consume-response.ts): what it writes is what
// protobufjs decodes back from the schema in proto/mamba.proto, for every field and for offsets
// up to 2^53 - 1; values it does not take (per-record answers, negative numbers) are left to
// protobufjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeConsumeResponse, type ConsumeResponseWire } from '../../src/protocol/consume-response.js';
import { messageType } from '../../src/protocol/protos.js';

const ConsumeResponse = messageType('mamba.v1.ConsumeResponse');

function roundTrip(value: ConsumeResponseWire): Record<string, unknown> {
  const bytes = encodeConsumeResponse(value);
  assert.ok(bytes !== null, 'the encoder takes a block answer');
  return ConsumeResponse.toObject(ConsumeResponse.decode(bytes), { defaults: true, longs: Number, bytes: Buffer }) as Record<string, unknown>;
}

const block = (queueOffset: number, count: number, firstTimestampMs: number, records: Buffer) => ({ queueOffset, count, firstTimestampMs, records });

test('consume-response: every field of a block answer decodes back as written', () => {
  const value: ConsumeResponseWire = {
    topic: 'orders-é',
    queue: 7,
    records: [],
    nextOffset: 2 ** 53 - 1,
    highWatermark: 2 ** 40 + 3,
    startOffset: 300,
    advice: { replicaId: 'b2', address: '127.0.0.1:7000', reason: 'follower caught up' },
    servedBy: 'b1',
    blocks: [block(2 ** 53 - 10, 3, 1_700_000_000_123, Buffer.from('abc')), block(0, 1, 0, Buffer.alloc(0)), block(127, 128, 16_383, Buffer.alloc(300, 9))],
  };
  const decoded = roundTrip(value);
  assert.equal(decoded.topic, value.topic);
  assert.equal(decoded.queue, 7);
  assert.equal(decoded.nextOffset, 2 ** 53 - 1);
  assert.equal(decoded.highWatermark, 2 ** 40 + 3);
  assert.equal(decoded.startOffset, 300);
  assert.deepEqual(decoded.advice, value.advice);
  assert.equal(decoded.servedBy, 'b1');
  assert.deepEqual(decoded.records, []);
  const blocks = decoded.blocks as Array<Record<string, unknown>>;
  assert.equal(blocks.length, 3);
  value.blocks!.forEach((b, index) => {
    assert.equal(blocks[index]!.queueOffset, b.queueOffset);
    assert.equal(blocks[index]!.count, b.count);
    assert.equal(blocks[index]!.firstTimestampMs, b.firstTimestampMs);
    assert.deepEqual(Buffer.from(blocks[index]!.records as Uint8Array), Buffer.from(b.records));
  });
});

test('consume-response: defaults (zeros, empty strings, no advice, no blocks) decode as defaults', () => {
  const decoded = roundTrip({ topic: '', queue: 0, nextOffset: 0, highWatermark: 0, startOffset: 0, advice: null, servedBy: '', blocks: [] });
  assert.equal(decoded.topic, '');
  assert.equal(decoded.nextOffset, 0);
  assert.equal(decoded.advice, null);
  assert.deepEqual(decoded.blocks, []);
  assert.equal(encodeConsumeResponse({})!.byteLength, 0);
});

test('consume-response: per-record answers and numbers it cannot write are left to protobufjs (null)', () => {
  assert.equal(encodeConsumeResponse({ records: [{}] }), null);
  assert.equal(encodeConsumeResponse({ nextOffset: -1 }), null);
  assert.equal(encodeConsumeResponse({ highWatermark: 2 ** 53 }), null);
  assert.equal(encodeConsumeResponse({ blocks: [block(0, 1, -5, Buffer.from('x'))] }), null);
});
