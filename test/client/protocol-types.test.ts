// The hand-written message types (src/protocol/messages.ts) against what protos.ts's codecs really
// give: the method tables name every RPC of mamba.v1.Mamba, decoded answers carry the defaults the
// types promise (null sub-messages, empty arrays, numbers for 64-bit fields), and the one ack
// mapping matches the proto's enum.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { protoRoot, messageType } from '../../src/protocol/protos.js';
import {
  AckLevel,
  BackupPart,
  ackFromWire,
  ackToWire,
  acks,
  bytesOf,
  clientServiceName,
  isAck,
  unaryMethodNames,
  type BackupChunk,
  type ConsumeResponse,
  type DescribeClusterResponse,
  type FetchOffsetResponse,
  type StreamMethods,
} from '../../src/protocol/messages.js';

const service = protoRoot().lookupService(clientServiceName);
const streamMethodNames: ReadonlyArray<keyof StreamMethods> = ['Subscribe', 'ProduceStream', 'Backup'];

function responseTypeOf(method: protobuf.Method): protobuf.Type {
  method.resolve();
  return method.resolvedResponseType!;
}

describe('message types', () => {
  test('the method tables name every RPC of the service, unary and streaming apart', () => {
    const unary = service.methodsArray.filter((m) => !m.requestStream && !m.responseStream).map((m) => m.name);
    const streaming = service.methodsArray.filter((m) => m.requestStream || m.responseStream).map((m) => m.name);
    assert.deepEqual([...unaryMethodNames].sort(), unary.sort());
    assert.deepEqual([...streamMethodNames].sort(), streaming.sort());
  });

  test('an answer with nothing set reads the defaults the types promise, field by field', () => {
    for (const method of service.methodsArray) {
      const type = responseTypeOf(method);
      const decoded = type.decode(Buffer.alloc(0)) as unknown as Record<string, unknown>;
      for (const field of type.fieldsArray) {
        const value = decoded[field.name];
        const where = `${type.name}.${field.name}`;
        assert.match(field.name, /^[a-z][A-Za-z0-9]*$/, `${where} is camelCase`);
        field.resolve();
        if (field.repeated) assert.deepEqual(value, [], `${where}: an empty array`);
        else if (field.resolvedType instanceof protobuf.Type) assert.equal(value, null, `${where}: null`);
        else if (field.type === 'bytes') {
          assert.ok(Array.isArray(value) && value.length === 0 && Object.isFrozen(value), `${where}: a frozen empty array`);
          assert.equal(bytesOf(value as unknown as readonly []).length, 0);
        } else if (field.type === 'string') assert.equal(value, '', where);
        else if (field.type === 'bool') assert.equal(value, false, where);
        else assert.equal(value, 0, `${where}: the number 0 (${field.type})`);
      }
    }
  });

  test('64-bit fields arrive as plain numbers, negative int64 included', () => {
    const offsets = messageType('mamba.v1.FetchOffsetResponse');
    const answer = offsets.decode(offsets.encode({ found: true, offset: 2 ** 40 + 3 }).finish()) as unknown as FetchOffsetResponse;
    assert.equal(answer.offset, 2 ** 40 + 3);
    const cluster = messageType('mamba.v1.DescribeClusterResponse');
    const described = cluster.decode(
      cluster.encode({ groups: [{ id: 'g1', replicas: [{ id: 'b1', lastFetchAgeMs: -1 }] }] }).finish(),
    ) as unknown as DescribeClusterResponse;
    assert.equal(described.groups[0]!.replicas[0]!.lastFetchAgeMs, -1);
    assert.equal(described.groups[0]!.advice, null);
  });

  test('a set bytes field arrives as a Buffer', () => {
    const consume = messageType('mamba.v1.ConsumeResponse');
    const answer = consume.decode(
      consume.encode({ records: [{ offset: 1, key: Buffer.from('k'), body: Buffer.from('b'), headers: [{ key: 'h', value: Buffer.from('v') }] }] }).finish(),
    ) as unknown as ConsumeResponse;
    const record = answer.records[0]!;
    assert.ok(Buffer.isBuffer(record.key) && Buffer.isBuffer(record.body) && Buffer.isBuffer(record.headers[0]!.value));
    assert.equal(bytesOf(record.body).toString(), 'b');
  });
});

describe('ack levels', () => {
  test('the wire numbers are the proto enum AckLevel', () => {
    const values = protoRoot().lookupEnum('mamba.v1.AckLevel').values;
    assert.deepEqual({ ...values }, { ACK_DEFAULT: AckLevel.default, ACK_NONE: AckLevel.none, ACK_LEADER: AckLevel.leader, ACK_QUORUM: AckLevel.quorum });
  });

  test('Ack ↔ wire round trip; unset means quorum; an unknown number is null', () => {
    for (const ack of acks) assert.equal(ackFromWire(ackToWire(ack)), ack);
    assert.equal(ackFromWire(AckLevel.default), 'quorum');
    assert.equal(ackFromWire(9), null);
    assert.equal(isAck('leader'), true);
    assert.equal(isAck('all'), false);
    assert.equal(isAck(2), false);
  });

  test('a request with the wire enum encodes it (protobufjs reads numbers, not names)', () => {
    const produce = messageType('mamba.v1.ProduceRequest');
    const decoded = produce.decode(produce.encode({ topic: 't', ack: ackToWire('leader') }).finish()) as unknown as { ack: number };
    assert.equal(decoded.ack, AckLevel.leader);
  });
});

describe('backup chunks (issue 14)', () => {
  test('the wire numbers are the proto enum BackupPart', () => {
    const values = protoRoot().lookupEnum('mamba.v1.BackupPart').values;
    assert.deepEqual({ ...values }, { BACKUP_PART_UNSET: BackupPart.unset, BACKUP_PART_SNAPSHOT: BackupPart.snapshot, BACKUP_PART_LOG: BackupPart.log });
  });

  test('a chunk carries one of start, data, end; the others read null', () => {
    const type = messageType('mamba.v1.BackupChunk');
    const data = type.decode(
      type.encode({ data: { part: BackupPart.log, position: 2 ** 40, bytes: Buffer.from('batch'), crc32c: 0xffffffff } }).finish(),
    ) as unknown as BackupChunk;
    assert.equal(data.start, null);
    assert.equal(data.end, null);
    assert.equal(data.data!.part, BackupPart.log);
    assert.equal(data.data!.position, 2 ** 40);
    assert.equal(data.data!.crc32c, 0xffffffff);
    assert.ok(Buffer.isBuffer(data.data!.bytes));
    const start = type.decode(type.encode({ start: { group: 'g1', seedVoters: ['b1', 'b2'], hasSnapshot: true } }).finish()) as unknown as BackupChunk;
    assert.deepEqual([...start.start!.seedVoters], ['b1', 'b2']);
    assert.equal(start.start!.highWatermark, 0);
    assert.equal(start.data, null);
  });
});
