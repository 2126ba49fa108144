// Record-batch codec: round trips, stamping, and that the CRC protects every stored byte.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BatchType,
  LogError,
  batchHeaderBytes,
  crc32c,
  crc32cJs,
  crc32cSoftware,
  decodeBatchHeader,
  decodeRecords,
  encodeBatch,
  encodeBatchRaw,
  encodeRecords,
  stampBatch,
  verifyBatch,
  type LogRecord,
} from '../../src/log/index.js';

const bytes = fc.uint8Array({ maxLength: 64 }).map((array) => Buffer.from(array));
const record: fc.Arbitrary<LogRecord> = fc.record({
  key: fc.option(bytes, { nil: null }),
  value: fc.option(bytes, { nil: null }),
  headers: fc.array(fc.record({ name: fc.string({ maxLength: 12 }), value: fc.option(bytes, { nil: null }) }), { maxLength: 3 }),
  timestampMs: fc.integer({ min: 1_600_000_000_000, max: 1_600_000_100_000 }),
});

describe('crc32c', () => {
  it('matches the published check value for "123456789" (0xE3069283)', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32cSoftware(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32cJs(Buffer.from('123456789')), 0xe3069283);
  });

  it('hardware, slicing-by-8 and plain JavaScript agree, also when continued from a seed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 300 }), (data, cut) => {
        const split = Math.min(cut, data.length);
        const whole = crc32cJs(data);
        assert.equal(crc32c(data), whole);
        assert.equal(crc32cSoftware(data), whole);
        assert.equal(crc32c(data.subarray(split), crc32c(data.subarray(0, split))), whole);
      }),
      { numRuns: 300 },
    );
  });
});

describe('batch codec', () => {
  it('round-trips header fields and records', () => {
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 1, maxLength: 8 }),
        fc.record({
          baseOffset: fc.nat({ max: Number.MAX_SAFE_INTEGER - 100 }),
          epoch: fc.nat({ max: 0xffff_ffff }),
          batchType: fc.constantFrom(BatchType.data, BatchType.leaderChange, BatchType.membership),
          flags: fc.nat({ max: 0xfff }).map((flag) => flag << 4),
          producerId: fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER }),
          producerSequence: fc.integer({ min: -1, max: 0x7fff_ffff }),
        }),
        (records, fields) => {
          const batch = encodeBatch({ ...fields, records });
          const header = verifyBatch(batch);
          assert.equal(header.batchLength, batch.byteLength);
          assert.equal(header.baseOffset, fields.baseOffset);
          assert.equal(header.epoch, fields.epoch);
          assert.equal(header.batchType, fields.batchType);
          assert.equal(header.attributes & 0xfff0, fields.flags);
          assert.equal(header.producerId, fields.producerId);
          assert.equal(header.producerSequence, fields.producerSequence);
          assert.equal(header.recordCount, records.length);
          assert.equal(header.firstTimestampMs, records[0]!.timestampMs);
          assert.equal(header.timestampMsMax, Math.max(...records.map((item) => item.timestampMs)));
          const decoded = decodeRecords(batch);
          assert.deepEqual(
            decoded.map((item) => ({ ...item, key: item.key && Buffer.from(item.key), value: item.value && Buffer.from(item.value) })),
            records.map((item) => ({ ...item, headers: item.headers.map((h) => ({ name: h.name, value: h.value })) })),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('stampBatch sets offset and epoch and keeps the batch valid; the records region is untouched', () => {
    const batch = encodeBatch({ records: [{ key: null, value: Buffer.from('v'), headers: [], timestampMs: 5 }] });
    const region = Buffer.from(batch.subarray(batchHeaderBytes));
    stampBatch(batch, 2 ** 40 + 3, 77);
    const header = verifyBatch(batch);
    assert.equal(header.baseOffset, 2 ** 40 + 3);
    assert.equal(header.epoch, 77);
    assert.deepEqual(batch.subarray(batchHeaderBytes), region);
  });

  it('encodeBatchRaw stores the records region byte for byte', () => {
    const region = encodeRecords([{ key: null, value: Buffer.from('abc'), headers: [], timestampMs: 10 }], 10);
    const batch = encodeBatchRaw({ recordCount: 1, firstTimestampMs: 10, timestampMsMax: 10, recordsRegion: region });
    assert.deepEqual(batch.subarray(batchHeaderBytes), region);
    assert.equal(decodeRecords(batch)[0]!.value!.toString(), 'abc');
  });

  it('any single flipped bit anywhere in a batch is detected (the CRC covers offset and epoch too)', () => {
    const batch = encodeBatch({ baseOffset: 9, epoch: 4, records: [{ key: Buffer.from('k'), value: Buffer.alloc(40, 1), headers: [], timestampMs: 1 }] });
    for (let position = 0; position < batch.byteLength; position++) {
      for (let bit = 0; bit < 8; bit++) {
        const damaged = Buffer.from(batch);
        damaged[position]! ^= 1 << bit;
        assert.throws(() => verifyBatch(damaged), LogError, `flip at byte ${position} bit ${bit} not detected`);
      }
    }
  });

  it('refuses malformed input with a bad_batch error', () => {
    const expectBad = (action: () => unknown): void => {
      assert.throws(action, (error: unknown) => error instanceof LogError && error.code === 'bad_batch');
    };
    expectBad(() => encodeBatch({ records: [] }));
    expectBad(() => decodeBatchHeader(Buffer.alloc(10)));
    expectBad(() => verifyBatch(Buffer.alloc(batchHeaderBytes)));
    expectBad(() => stampBatch(encodeBatch({ records: [{ key: null, value: null, headers: [], timestampMs: 0 }] }), -1, 0));
    expectBad(() => encodeBatch({ flags: 1, records: [{ key: null, value: null, headers: [], timestampMs: 0 }] }));
    const batch = encodeBatch({ records: [{ key: null, value: null, headers: [], timestampMs: 0 }] });
    expectBad(() => verifyBatch(Buffer.concat([batch, Buffer.alloc(1)])));
  });
});
