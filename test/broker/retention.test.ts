// Retention as the broker sees it (DESIGN §12): the log's start moves (onLogStartMoved), queue
// starts move with it, every offset a client sees stays a queue offset (Consume's and
// DescribeTopic's, also when the log refuses a read in its own offsets), a consumer group whose
// committed offset fell below the start resumes from the start with a log line and an observer
// call (or is refused, consumerOffsetReset 'fail'), and an idempotent producer the bounded table
// no longer knows is refused by name. Driven through the broker's own parts (ConsumePath, Admin,
// ProducePath) on a real state store, with a stand-in for the replica's read API.
import { emptyMetadata } from '../../src/broker/metadata.js';
import type { MetadataSync } from '../../src/broker/metadata-sync.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OutOfRangeError, ProducerExpiredError } from '../../src/errors.js';
import { Admin } from '../../src/broker/admin.js';
import type { ClusterForwarder } from '../../src/broker/cluster-view.js';
import { ConsumePath, type ConsumeRequest } from '../../src/broker/consume.js';
import type { BrokerIdentity, ClusterLayout, ConsumerOffsetReset } from '../../src/broker/layout.js';
import { queueKey } from '../../src/broker/names.js';
import { noBrokerObserver, type BrokerObserver } from '../../src/broker/observer.js';
import { Placement } from '../../src/broker/placement.js';
import { ProducePath } from '../../src/broker/produce.js';
import type { BrokerState } from '../../src/broker/state.js';
import { noBrokerTracer } from '../../src/broker/tracer.js';
import { Logger } from '../../src/replica/logger.js';
import { batchOfEntry } from '../../src/replica/log-storage.js';
import type { Replica } from '../../src/replica/replica.js';
import { LeaderLog, openState, startState, withDir } from './state-fixtures.js';

const identity: BrokerIdentity = {
  id: 'b1',
  host: '127.0.0.1',
  clientPort: 1,
  group: 'g1',
  settings: {
    messageBytesMax: 1024,
    consumeWaitMsMax: 0,
    tickMs: 10,
    fetchTimeoutMs: 600,
    advice: { leaderInflightMax: 1, leaderCpuMax: 1, followerLagOffsetsMax: 1, followerLagMsMax: 1 },
  },
};
const cluster: ClusterLayout = { groups: [{ id: 'g1', brokers: [identity] }] };

/** The replica as the broker's parts read it: a leader whose whole log is committed; reads as `read` says (the stored batches by default). */
function replicaOf(log: LeaderLog, read: (offset: number, bytesMax: number, endOffsetMax: number) => Buffer[] = storedBatches(log)): Replica {
  const stand = { isLeader: true, committedOffset: log.endOffset, currentEpoch: 1, readBatches: read, notLeader: () => assert.fail('leader') };
  return stand as unknown as Replica;
}

/** The log's read: whole stored batches from the one at `offset`, ending at or below `endOffsetMax`. */
function storedBatches(log: LeaderLog): (offset: number, bytesMax: number, endOffsetMax: number) => Buffer[] {
  return (offset, _bytesMax, endOffsetMax) =>
    log.entries.filter((e) => e.offset >= offset && e.offset + e.count <= endOffsetMax).map((e) => batchOfEntry(e, 1));
}

interface Reported {
  lines: Array<Record<string, unknown>>;
  resets: Array<[string, string, number, number]>;
}

function consumePathOf(state: BrokerState, replica: Replica, reset: ConsumerOffsetReset): { path: ConsumePath; reported: Reported } {
  const reported: Reported = { lines: [], resets: [] };
  const logger = new Logger('b1', 'g1', (line) => reported.lines.push(JSON.parse(line) as Record<string, unknown>));
  const observer: BrokerObserver = { ...noBrokerObserver, consumerOffsetReset: (g, t, q, skipped) => reported.resets.push([g, t, q, skipped]) };
  const path = new ConsumePath({
    replica,
    state,
    placement: new Placement(identity, cluster, replica, state, () => emptyMetadata),
    consumeWaitMsMax: 0,
    advise: () => ({ replicaId: 'b1', address: '', reason: 'test' }),
    observer,
    tracing: noBrokerTracer,
    logger,
    consumerOffsetReset: reset,
  });
  return { path, reported };
}

function request(fields: Partial<ConsumeRequest>): ConsumeRequest {
  return { topic: 'orders', queue: 0, offset: 0, consumerGroup: '', useCommitted: false, messagesMax: 10, bytesMax: 0, waitMsMax: 0, ...fields };
}

/**
 * 'pad' pushes the group-log offsets of 'orders' far above its queue offsets (log offsets ≥ 300,
 * queue offsets < 10), so a log offset in a message shows. 'orders' queue 0: [0,3) [3,5) [5,6);
 * group 'billing' committed 1 on it.
 */
function retentionLog(): LeaderLog {
  const log = new LeaderLog().leaderChange().create('pad', 1);
  for (let i = 0; i < 3; i++) log.messages('pad', 0, 100);
  log.create('orders', 1).messages('orders', 0, 3).messages('orders', 0, 2).messages('orders', 0, 1);
  return log.commitOffset('billing', 'orders', 0, 1);
}

/** Log offset of the `n`th batch of orders/0. */
function batchLogOffset(log: LeaderLog, n: number): number {
  return log.batches.filter((b) => b.topic === 'orders')[n]!.logOffset;
}

/** Every number in `text` is below 300: no group-log offset of 'orders' leaked into it. */
function assertQueueOffsetsOnly(text: string): void {
  for (const n of text.match(/\d+/g) ?? []) assert.ok(Number(n) < 300, `"${text}" names ${n}, a group-log offset`);
}

describe('retention: queue starts move with the log start', () => {
  test('onLogStartMoved drops the batches below it: the queue starts at its first retained batch, its end stays; DescribeTopic says so in queue offsets', async () => {
    await withDir(async (dir) => {
      const log = retentionLog();
      const { state } = openState(dir);
      startState(state, log.entries, null);
      const replica = replicaOf(log);
      state.onLogStartMoved(batchLogOffset(log, 1));
      assert.equal(state.index.startOffset(queueKey('orders', 0)), 3);
      assert.equal(state.index.endOffset(queueKey('orders', 0)), 6);
      const admin = new Admin({
        replica,
        state,
        placement: new Placement(identity, cluster, replica, state, () => emptyMetadata),
        produce: {} as ProducePath,
        forwarder: {} as ClusterForwarder,
        sync: { current: emptyMetadata, isMetadataGroup: true } as MetadataSync,
        logger: new Logger('b1', 'g1', () => undefined),
      });
      const described = admin.describeTopic('orders', []);
      assert.deepEqual(
        described.queues.map((q) => [q.startOffset, q.highWatermark]),
        [[3, 6]],
      );
      state.onLogStartMoved(log.endOffset); // every batch aged out: the queue is empty at its end
      assert.deepEqual(
        admin.describeTopic('orders', []).queues.map((q) => [q.startOffset, q.highWatermark]),
        [[6, 6]],
      );
      await state.close();
    });
  });

  test('Consume below the start is OUT_OF_RANGE in queue offsets', async () => {
    await withDir(async (dir) => {
      const log = retentionLog();
      const { state } = openState(dir);
      startState(state, log.entries, null);
      state.onLogStartMoved(batchLogOffset(log, 1));
      const { path } = consumePathOf(state, replicaOf(log), 'earliest');
      await assert.rejects(path.consume(request({ offset: 1 })), (error: unknown) => {
        assert.ok(error instanceof OutOfRangeError);
        assert.equal(error.startOffset, 3);
        assert.equal(error.endOffset, 6);
        assertQueueOffsetsOnly(error.message);
        return true;
      });
      await state.close();
    });
  });

  test('a read the log refuses in its own offsets (retention ran before the index heard of it) is OUT_OF_RANGE in queue offsets (the reported "offset 252 outside [15471, 20002]")', async () => {
    await withDir(async (dir) => {
      const log = retentionLog();
      const { state } = openState(dir);
      startState(state, log.entries, null);
      const logStart = batchLogOffset(log, 1);
      const replica = replicaOf(log, () => {
        throw new OutOfRangeError(`offset ${batchLogOffset(log, 0)} outside [${logStart}, ${log.endOffset}]`, logStart, log.endOffset);
      });
      const { path } = consumePathOf(state, replica, 'earliest');
      await assert.rejects(path.consume(request({ offset: 0 })), (error: unknown) => {
        assert.ok(error instanceof OutOfRangeError);
        assert.match(error.message, /offset 0 of queue 0 of "orders" is no longer stored/);
        assert.equal(error.startOffset, 3, 'where the queue starts in the log that remains');
        assert.equal(error.endOffset, 6);
        assertQueueOffsetsOnly(error.message);
        return true;
      });
      await state.close();
    });
  });
});

describe('retention: a consumer group whose committed offset fell below the queue start', () => {
  test("'earliest' (the default): it resumes from the start, with one JSON log line and one observer call per skipped message, never counted twice", async () => {
    await withDir(async (dir) => {
      const log = retentionLog();
      const { state } = openState(dir);
      startState(state, log.entries, null);
      state.onLogStartMoved(batchLogOffset(log, 1));
      const { path, reported } = consumePathOf(state, replicaOf(log), 'earliest');
      const committed = { useCommitted: true, consumerGroup: 'billing' };
      const first = await path.consume(request(committed));
      assert.equal(first.blocks[0]?.queueOffset, 3, 'resumes from the start');
      assert.equal(first.nextOffset, 6);
      const resets = reported.lines.filter((l) => l.event === 'consumer.offset_reset');
      assert.equal(resets.length, 1);
      assert.deepEqual(
        { ...resets[0], ts: undefined, epoch: undefined },
        {
          ts: undefined,
          level: 'warn',
          event: 'consumer.offset_reset',
          broker: 'b1',
          group: 'g1',
          epoch: undefined,
          consumerGroup: 'billing',
          topic: 'orders',
          queue: 0,
          committed: 1,
          start: 3,
          skipped: 2,
        },
      );
      assert.deepEqual(reported.resets, [['billing', 'orders', 0, 2]]);
      await path.consume(request(committed));
      assert.deepEqual(reported.resets, [['billing', 'orders', 0, 2]], 'the same reset is not counted twice');
      state.onLogStartMoved(batchLogOffset(log, 2));
      await path.consume(request(committed));
      assert.deepEqual(
        reported.resets,
        [
          ['billing', 'orders', 0, 2],
          ['billing', 'orders', 0, 2],
        ],
        'the start moved on: only the newly skipped messages',
      );
      state.onLogStartMoved(log.endOffset);
      const caughtUp = await path.consume(request(committed));
      assert.equal(caughtUp.nextOffset, 6, 'resumes from the start (here the end: everything aged out)');
      assert.equal(caughtUp.startOffset, 6);
      assert.deepEqual(reported.resets.at(-1), ['billing', 'orders', 0, 1]);
      await state.close();
    });
  });

  test("'fail': OUT_OF_RANGE naming the committed offset and the queue's range, in queue offsets; nothing reported", async () => {
    await withDir(async (dir) => {
      const log = retentionLog();
      const { state } = openState(dir);
      startState(state, log.entries, null);
      state.onLogStartMoved(batchLogOffset(log, 1));
      const { path, reported } = consumePathOf(state, replicaOf(log), 'fail');
      await assert.rejects(path.consume(request({ useCommitted: true, consumerGroup: 'billing' })), (error: unknown) => {
        assert.ok(error instanceof OutOfRangeError);
        assert.match(error.message, /committed offset 1 on queue 0 of "orders", below the queue's start 3/);
        assert.equal(error.startOffset, 3);
        assert.equal(error.endOffset, 6);
        assertQueueOffsetsOnly(error.message);
        return true;
      });
      assert.deepEqual(reported.resets, []);
      await state.close();
    });
  });
});

describe('retention: the producer table is bounded; a producer it no longer knows is refused by name', () => {
  test('a batch past sequence 0 from a producer that expired (the least recently appended beyond the bound) is refused with ProducerExpiredError (INVALID_ARGUMENT, not retriable); sequence 0 starts it again', async () => {
    await withDir(async (dir) => {
      const log = new LeaderLog().leaderChange().create('orders', 1);
      for (const producerId of [41, 42, 43]) log.messages('orders', 0, 2, producerId);
      const { state } = openState(dir, { producersMax: 2 });
      startState(state, log.entries, null);
      assert.equal(state.producers.expired, 1);
      const replica = replicaOf(log);
      const produce = new ProducePath({
        replica,
        state,
        placement: new Placement(identity, cluster, replica, state, () => emptyMetadata),
        messageBytesMax: 1024,
        observer: noBrokerObserver,
        tracing: noBrokerTracer,
      });
      const message = { key: null, headers: [], body: Buffer.from('m'), timestampMs: 1 };
      const send = (producerId: number, sequence: number) =>
        produce.produce({ topic: 'orders', queue: 0, messages: [message], ack: 'quorum', producerId, sequence });
      await assert.rejects(send(41, 2), (error: unknown) => {
        assert.ok(error instanceof ProducerExpiredError);
        assert.equal(error.kind, 'invalid_argument');
        assert.equal(error.retriable, false);
        assert.equal(error.producerId, 41);
        assert.match(error.message, /producer 41 expired on queue 0 of "orders"/);
        assert.match(error.message, /start over under a new producer id at sequence 0/);
        return true;
      });
      assert.equal(state.producers.check(`${41}\u0000orders\u00000`, 0, 1).kind, 'new', 'sequence 0 is a new producer');
      assert.equal(state.producers.check(`${42}\u0000orders\u00000`, 2, 1).kind, 'new', 'a producer still known goes on');
      await state.close();
    });
  });
});
