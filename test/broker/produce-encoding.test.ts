// The produce hot path's one-pass encoder (src/broker/produce-encoding.ts) against the log's own
// codec: the same bytes as encodeCommand(encodeRecords(…)), read back by decodeRecordsRegion and
// in place as the consume path reads them, and the unary Produce's checks with messages that name
// the problem.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeMessagesCommand, type ProduceMessage } from '../../src/broker/produce-encoding.js';
import { CommandKind, decodeCommand, encodeCommand, messagesFieldsAt, messagesPrefixBytes, type MessagesCommand } from '../../src/broker/commands.js';
import { decodeRecordsRegion, encodeRecords, type LogRecord } from '../../src/log/index.js';
import { InvalidArgumentError } from '../../src/errors.js';

const limits = { messagesMax: 1000, messageBytesMax: 4096 };
const prefix = { topic: 'orders.eu', queue: 3, queueOffset: 1234, producerId: 77, sequence: 9 };
const nowMs = 1_700_000_000_000;

/** The path the broker took before: a LogRecord per message, encodeRecords, encodeCommand. */
function reference(messages: ProduceMessage[]): Buffer {
  const present = (b: Uint8Array | null): Uint8Array | null => (b && b.byteLength > 0 ? b : null);
  const records: LogRecord[] = messages.map((m) => ({
    key: present(m.key),
    value: present(m.body),
    timestampMs: m.timestampMs > 0 ? m.timestampMs : nowMs,
    headers: m.headers.map((h) => ({ name: h.key, value: present(h.value) })),
  }));
  const first = records[0]!.timestampMs;
  return encodeCommand({ kind: CommandKind.Messages, ...prefix, firstTimestampMs: first, records: encodeRecords(records, first) });
}

const bytes = fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a));
const message: fc.Arbitrary<ProduceMessage> = fc.record({
  key: bytes,
  body: bytes,
  timestampMs: fc.oneof(fc.constant(0), fc.integer({ min: nowMs - 1_000_000, max: nowMs + 1_000_000 })),
  headers: fc.array(fc.record({ key: fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }), value: bytes }), { maxLength: 3 }),
});

describe('produce encoding', () => {
  test('the bytes equal encodeCommand(encodeRecords(…)) for any messages (one property, two paths)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 20 }), (messages) => {
        const encoded = encodeMessagesCommand(prefix, messages, nowMs, limits);
        assert.deepEqual(encoded.payload, reference(messages));
        assert.equal(encoded.count, messages.length);
      }),
      { numRuns: 300 },
    );
  });

  test('the records read back through the log codec', () => {
    const messages: ProduceMessage[] = [
      { key: Buffer.from('k1'), body: Buffer.from('hello'), timestampMs: 0, headers: [{ key: 'traceparent', value: Buffer.from('00-ab') }] },
      { key: Buffer.alloc(0), body: Buffer.from('wörld'), timestampMs: nowMs + 5, headers: [] },
    ];
    const { payload } = encodeMessagesCommand(prefix, messages, nowMs, limits);
    const command = decodeCommand(payload) as MessagesCommand;
    assert.deepEqual(
      [command.topic, command.queue, command.queueOffset, command.producerId, command.sequence, command.firstTimestampMs],
      ['orders.eu', 3, 1234, 77, 9, nowMs],
    );
    const records = decodeRecordsRegion(command.records, command.firstTimestampMs, 2);
    assert.equal(records[0]!.key?.toString(), 'k1');
    assert.equal(records[0]!.headers[0]!.name, 'traceparent');
    assert.equal(records[1]!.key, null, 'an empty key is stored as none');
    assert.equal(records[1]!.value?.toString(), 'wörld');
    assert.equal(records[1]!.timestampMs, nowMs + 5);
  });

  test('the consume path reads a stored command in place (messagesPrefixBytes, messagesFieldsAt) as decodeCommand does', () => {
    fc.assert(
      fc.property(
        fc.array(message, { minLength: 1, maxLength: 5 }),
        fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/),
        fc.nat(),
        (messages, topic, at) => {
          const { payload } = encodeMessagesCommand({ ...prefix, topic }, messages, nowMs, limits);
          const command = decodeCommand(payload) as MessagesCommand;
          const stored = Buffer.concat([Buffer.alloc(at % 64), payload]); // the command lies after a batch header
          const recordsPosition = (at % 64) + messagesPrefixBytes(topic);
          assert.deepEqual(messagesFieldsAt(stored, at % 64, recordsPosition), {
            kind: CommandKind.Messages,
            queueOffset: command.queueOffset,
            firstTimestampMs: command.firstTimestampMs,
          });
          assert.deepEqual(stored.subarray(recordsPosition), Buffer.from(command.records));
        },
      ),
    );
  });

  test('bad input is refused with INVALID_ARGUMENT naming the message and the limit', () => {
    const ok = (over: Partial<ProduceMessage> = {}): ProduceMessage => ({ key: null, body: Buffer.from('x'), timestampMs: 0, headers: [], ...over });
    const cases: Array<[ProduceMessage[], RegExp]> = [
      [[], /messages is empty/],
      [Array.from({ length: 1001 }, () => ok()), /1001 messages in one request \(limit 1000\)/],
      [[ok(), ok({ body: Buffer.alloc(4097) })], /messages\[1\] is 4097 bytes, over the limit of 4096 \(messageBytesMax\)/],
      [[ok({ headers: [{ key: '', value: null }] })], /messages\[0\]\.headers\[0\]\.key is required/],
      [[ok({ timestampMs: -5 })], /messages\[0\]\.timestamp_ms -5 is not valid/],
      [[ok({ timestampMs: 1 }), ok({ timestampMs: nowMs })], /messages\[1\]\.timestamp_ms is .* ms from messages\[0\]'s/],
    ];
    for (const [messages, pattern] of cases) {
      assert.throws(
        () => encodeMessagesCommand(prefix, messages, nowMs, limits),
        (e: Error) => e instanceof InvalidArgumentError && pattern.test(e.message),
        String(pattern),
      );
    }
  });
});
