// The broker's state as of a group-log offset S, as a snapshot payload (DESIGN §12 "Snapshots and
// retention"): what every committed entry below S left, including what the log alone no longer
// gives back once retention removed its head (the end of a queue whose batches all aged out, the
// producers that appended nothing since). The replica's snapshot store keeps it in a checksummed
// file and transfers it; this payload is versioned and checked on its own too, so a payload of
// another version or another offset is refused by name, never half taken.
//
// Layout, little-endian (str = u16 byte length + UTF-8; f64 holds integers below 2^53 exactly):
//   header  4 magic "MBSS" | u16 version (2; 1 is read too) | u16 reserved (0) | u32 CRC32C of the body | u32 body bytes
//   body    f64 endOffset
//           u32 n, n × topic:            str name, u32 queues, f64 createdMs (the incarnation)
//           u32 n, n × consumer offset:  str consumerGroup, str topic, u32 queue, f64 offset
//           u32 n, n × queue head:       str topic, u32 queue, f64 endOffset (queues that ever held a message)
//           u32 n, n × producer:         f64 producerId, str topic, u32 queue, f64 runLogOffset, f64 runSequence,
//                                        f64 storedBelowSequence, u8 hasForgotten, [batch], u8 batchCount, batches
//           batch:                       f64 sequence, u32 count, f64 queueOffset, f64 logOffset
//           (version 2) u8 hasMetadata, [u32 length, UTF-8 JSON of the cluster metadata] (metadata group)
// What grows it: topics (≤ ~220 B each), their queues that hold messages (≤ ~220 B each), consumer
// offsets (consumer groups × queues, ≤ ~420 B each), producers (at most the table's bound,
// producer-table.ts, ≤ ~500 B each). stateSnapshotBytesMax caps it.
import { assert } from '../assert.js';
import { crc32c } from '../log/index.js';
import { ByteReader, ByteWriter } from './byte-codec.js';
import { consumerGroupPattern, decodeProducerKey, producerKey, queueKey, queuesPerTopicMax, topicNamePattern } from './names.js';
import { producerBatchesKept, type ProducedBatch, type ProducerState, type ProducerTable } from './producer-table.js';
import type { QueueIndex } from './queue-index.js';
import type { StoredTopic } from './state-store.js';
import { checkMetadata, type ClusterMetadata } from './metadata.js';

export const stateSnapshotVersion = 2;
/** Payloads of version 1 (before the metadata log) are read as having no metadata. */
const stateSnapshotVersionsRead = [1, 2];
/** The snapshot store's default payload bound (src/replica/snapshot-store.ts): larger is refused on both ends. */
export const stateSnapshotBytesMax = 256 * 1024 * 1024;
const magic = Buffer.from('MBSS', 'latin1');
const headerBytes = 16;

export interface SnapshotConsumerOffset {
  consumerGroup: string;
  topic: string;
  queue: number;
  offset: number;
}

/** The end of a queue as of the snapshot's endOffset: its next message's queue offset. */
export interface SnapshotQueueHead {
  topic: string;
  queue: number;
  endOffset: number;
}

export interface SnapshotProducer {
  producerId: number;
  topic: string;
  queue: number;
  state: ProducerState;
}

/** The state with every committed entry below endOffset applied. Producers least recently appended first. */
export interface StateSnapshot {
  endOffset: number;
  topics: StoredTopic[];
  consumerOffsets: SnapshotConsumerOffset[];
  queueHeads: SnapshotQueueHead[];
  producers: SnapshotProducer[];
  /** The cluster metadata applied below endOffset (metadata group only), or null. */
  metadata: ClusterMetadata | null;
}

export type StateSnapshotProblem = 'too_large' | 'bad_magic' | 'bad_version' | 'bad_checksum' | 'bad_format' | 'wrong_end_offset';

/** A payload that is not a state snapshot this broker can take (never taken in part). */
export class StateSnapshotError extends Error {
  override readonly name = 'StateSnapshotError';
  constructor(
    readonly problem: StateSnapshotProblem,
    message: string,
  ) {
    super(`state snapshot: ${message}`);
  }
}

// ------------------------------------------------------------------ encode

export function encodeStateSnapshot(snapshot: StateSnapshot): Buffer {
  const w = new ByteWriter('state snapshot').f64(snapshot.endOffset);
  w.u32(snapshot.topics.length);
  for (const t of snapshot.topics) w.str(t.name).u32(t.queues).f64(t.createdMs);
  w.u32(snapshot.consumerOffsets.length);
  for (const o of snapshot.consumerOffsets) w.str(o.consumerGroup).str(o.topic).u32(o.queue).f64(o.offset);
  w.u32(snapshot.queueHeads.length);
  for (const h of snapshot.queueHeads) w.str(h.topic).u32(h.queue).f64(h.endOffset);
  w.u32(snapshot.producers.length);
  for (const p of snapshot.producers) writeProducer(w, p);
  if (snapshot.metadata === null) w.u8(0);
  else {
    const json = Buffer.from(JSON.stringify(snapshot.metadata), 'utf8');
    w.u8(1).u32(json.length).bytes(json);
  }
  const body = w.done();
  // An operating limit, not a bug: the caller skips this snapshot and the log is kept.
  if (headerBytes + body.length > stateSnapshotBytesMax)
    throw new StateSnapshotError('too_large', `${headerBytes + body.length} bytes is over ${stateSnapshotBytesMax}`);
  const header = Buffer.alloc(headerBytes);
  magic.copy(header, 0);
  header.writeUInt16LE(stateSnapshotVersion, 4);
  header.writeUInt32LE(crc32c(body), 8);
  header.writeUInt32LE(body.length, 12);
  return Buffer.concat([header, body]);
}

function writeProducer(w: ByteWriter, p: SnapshotProducer): void {
  const s = p.state;
  w.f64(p.producerId).str(p.topic).u32(p.queue).f64(s.runLogOffset).f64(s.runSequence).f64(s.storedBelowSequence);
  w.u8(s.forgotten ? 1 : 0);
  if (s.forgotten) writeBatch(w, s.forgotten);
  w.u8(s.batches.length);
  for (const b of s.batches) writeBatch(w, b);
}

function writeBatch(w: ByteWriter, b: ProducedBatch): void {
  w.f64(b.sequence).u32(b.count).f64(b.queueOffset).f64(b.logOffset);
}

// ------------------------------------------------------------------ decode

/** The snapshot in `payload`; `endOffset`, when given, is the offset it must be of (its file's id). */
export function decodeStateSnapshot(payload: Uint8Array, endOffset?: number): StateSnapshot {
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const body = checkedBody(bytes);
  const r = new ByteReader(body, 'state snapshot', (message) => new StateSnapshotError('bad_format', message));
  const snapshot: StateSnapshot = {
    endOffset: nonNegative(r.f64(), 'endOffset'),
    topics: [],
    consumerOffsets: [],
    queueHeads: [],
    producers: [],
    metadata: null,
  };
  if (endOffset !== undefined && snapshot.endOffset !== endOffset)
    throw new StateSnapshotError('wrong_end_offset', `the payload is of offset ${snapshot.endOffset}, not ${endOffset}`);
  const queuesOf = readTopics(r, snapshot.topics);
  readConsumerOffsets(r, snapshot.consumerOffsets);
  readQueueHeads(r, snapshot.queueHeads, queuesOf);
  readProducers(r, snapshot.producers, snapshot.endOffset);
  if (Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).readUInt16LE(4) >= 2 && r.u8() === 1) {
    const json = r.take(r.u32());
    try {
      snapshot.metadata = checkMetadata(JSON.parse(json.toString('utf8')));
    } catch (error) {
      throw bad(`cluster metadata: ${(error as Error).message}`);
    }
  }
  r.end();
  return snapshot;
}

function checkedBody(bytes: Buffer): Buffer {
  if (bytes.length > stateSnapshotBytesMax) throw new StateSnapshotError('too_large', `${bytes.length} bytes is over ${stateSnapshotBytesMax}`);
  if (bytes.length < headerBytes || !bytes.subarray(0, 4).equals(magic)) throw new StateSnapshotError('bad_magic', 'the payload does not start with "MBSS"');
  const version = bytes.readUInt16LE(4);
  if (!stateSnapshotVersionsRead.includes(version))
    throw new StateSnapshotError('bad_version', `version ${version}; this broker reads versions ${stateSnapshotVersionsRead.join(' and ')}`);
  const bodyBytes = bytes.readUInt32LE(12);
  if (bodyBytes !== bytes.length - headerBytes)
    throw new StateSnapshotError('bad_format', `the header counts ${bodyBytes} body bytes, the payload has ${bytes.length - headerBytes}`);
  const body = bytes.subarray(headerBytes);
  if (crc32c(body) !== bytes.readUInt32LE(8)) throw new StateSnapshotError('bad_checksum', 'the body does not match its CRC32C');
  return body;
}

function bad(message: string): StateSnapshotError {
  return new StateSnapshotError('bad_format', message);
}

function nonNegative(value: number, what: string): number {
  if (value < 0) throw bad(`${what} ${value} is negative`);
  return value;
}

function topicName(r: ByteReader): string {
  const name = r.str();
  if (!topicNamePattern.test(name)) throw bad(`topic name ${JSON.stringify(name)} is not valid`);
  return name;
}

function queueNumber(r: ByteReader, queues: number = queuesPerTopicMax): number {
  const queue = r.u32();
  if (queue >= queues) throw bad(`queue ${queue} is not below ${queues}`);
  return queue;
}

/** Returns each topic's queue count. */
function readTopics(r: ByteReader, topics: StoredTopic[]): Map<string, number> {
  const queuesOf = new Map<string, number>();
  for (let i = 0, n = r.u32(); i < n; i++) {
    const name = topicName(r);
    const queues = r.u32();
    if (queues < 1 || queues > queuesPerTopicMax) throw bad(`topic "${name}" has ${queues} queues`);
    const createdMs = nonNegative(r.f64(), 'createdMs');
    if (queuesOf.has(name)) throw bad(`topic "${name}" appears twice`);
    queuesOf.set(name, queues);
    topics.push({ name, queues, createdMs });
  }
  return queuesOf;
}

function readConsumerOffsets(r: ByteReader, offsets: SnapshotConsumerOffset[]): void {
  const seen = new Set<string>();
  for (let i = 0, n = r.u32(); i < n; i++) {
    const consumerGroup = r.str();
    if (!consumerGroupPattern.test(consumerGroup)) throw bad(`consumer group ${JSON.stringify(consumerGroup)} is not valid`);
    // A commit applied after its topic was deleted stays (as in the store): any topic name.
    const topic = topicName(r);
    const queue = queueNumber(r);
    const offset = nonNegative(r.f64(), 'consumer offset');
    const key = JSON.stringify([consumerGroup, topic, queue]);
    if (seen.has(key)) throw bad(`consumer offset of "${consumerGroup}" on queue ${queue} of "${topic}" appears twice`);
    seen.add(key);
    offsets.push({ consumerGroup, topic, queue, offset });
  }
}

function readQueueHeads(r: ByteReader, heads: SnapshotQueueHead[], queuesOf: ReadonlyMap<string, number>): void {
  const seen = new Set<string>();
  for (let i = 0, n = r.u32(); i < n; i++) {
    const topic = topicName(r);
    const queues = queuesOf.get(topic);
    if (queues === undefined) throw bad(`queue head of topic "${topic}", which the snapshot does not hold`);
    const queue = queueNumber(r, queues);
    const endOffset = nonNegative(r.f64(), 'queue end');
    const key = JSON.stringify([topic, queue]);
    if (seen.has(key)) throw bad(`queue head of queue ${queue} of "${topic}" appears twice`);
    seen.add(key);
    heads.push({ topic, queue, endOffset });
  }
}

function readProducers(r: ByteReader, producers: SnapshotProducer[], endOffset: number): void {
  const seen = new Set<string>();
  for (let i = 0, n = r.u32(); i < n; i++) {
    const producerId = r.f64();
    if (producerId < 1) throw bad(`producer id ${producerId} is not an idempotent producer's`);
    const topic = topicName(r);
    const queue = queueNumber(r);
    const runLogOffset = nonNegative(r.f64(), 'runLogOffset');
    const runSequence = nonNegative(r.f64(), 'runSequence');
    const storedBelowSequence = nonNegative(r.f64(), 'storedBelowSequence');
    const forgotten = r.u8() === 1 ? readBatch(r) : null;
    const batchCount = r.u8();
    if (batchCount > producerBatchesKept) throw bad(`producer ${producerId} has ${batchCount} batches (at most ${producerBatchesKept})`);
    const batches: ProducedBatch[] = [];
    for (let b = 0; b < batchCount; b++) batches.push(readBatch(r));
    const state = { batches, forgotten, runLogOffset, runSequence, storedBelowSequence };
    checkProducerState(state, endOffset, `producer ${producerId} on queue ${queue} of "${topic}"`);
    const key = JSON.stringify([producerId, topic, queue]);
    if (seen.has(key)) throw bad(`producer ${producerId} on queue ${queue} of "${topic}" appears twice`);
    seen.add(key);
    producers.push({ producerId, topic, queue, state });
  }
}

function readBatch(r: ByteReader): ProducedBatch {
  const sequence = nonNegative(r.f64(), 'producer sequence');
  const count = r.u32();
  if (count < 1) throw bad('a producer batch of no message');
  return { sequence, count, queueOffset: nonNegative(r.f64(), 'queue offset'), logOffset: nonNegative(r.f64(), 'log offset') };
}

/** The producer table's invariants (it asserts them again as it takes the state), as format errors. */
function checkProducerState(s: ProducerState, endOffset: number, what: string): void {
  const known = s.forgotten ? [s.forgotten, ...s.batches] : s.batches;
  known.forEach((b, index) => {
    const before = known[index - 1];
    if (before && b.logOffset < before.logOffset + before.count) throw bad(`${what}: batch at log offset ${b.logOffset} goes back`);
    if (b.logOffset + b.count > endOffset) throw bad(`${what}: batch at log offset ${b.logOffset} is not below the snapshot's end ${endOffset}`);
  });
  const first = known[0];
  if (first && s.runLogOffset > first.logOffset) throw bad(`${what}: its run starts after its batch at log offset ${first.logOffset}`);
}

// ------------------------------------------------------------------ between the state and a snapshot

/** The end as of `endOffset` of every queue of `topics` that ever held a message. */
export function queueHeadsOf(index: QueueIndex, topics: readonly StoredTopic[], endOffset: number): SnapshotQueueHead[] {
  const heads: SnapshotQueueHead[] = [];
  for (const { name, queues } of topics) {
    for (let queue = 0; queue < queues; queue++) {
      const end = index.committedEndOffset(queueKey(name, queue), endOffset);
      if (end > 0) heads.push({ topic: name, queue, endOffset: end });
    }
  }
  return heads;
}

/** The producers on topics `includes` takes, as entries below `endOffset` leave them, least recently appended first. */
export function producersOf(table: ProducerTable, includes: (topic: string) => boolean, endOffset: number): SnapshotProducer[] {
  const producers: SnapshotProducer[] = [];
  for (const { key, state } of table.statesBelow(endOffset)) {
    const { producerId, topic, queue } = decodeProducerKey(key);
    if (includes(topic)) producers.push({ producerId, topic, queue, state });
  }
  return producers;
}

/**
 * Gives each queue of the topics `includes` takes, that holds no batch in the index, the end the
 * snapshot has for it (its batches all left the log): numbering goes on from there, not from 0.
 * A queue that still holds batches must end exactly at the snapshot's head as of its offset: the
 * same log numbered both.
 */
export function seedQueueHeads(index: QueueIndex, snapshot: StateSnapshot, includes: (topic: string) => boolean): void {
  for (const { topic, queue, endOffset } of snapshot.queueHeads) {
    if (!includes(topic)) continue;
    const key = queueKey(topic, queue);
    if (!index.hasBatches(key)) {
      index.setEndOfEmpty(key, endOffset);
      continue;
    }
    const logEnd = index.committedEndOffset(key, snapshot.endOffset);
    assert(
      logEnd === endOffset,
      `queue ${queue} of "${topic}": the log's batches end at queue offset ${logEnd} as of log offset ${snapshot.endOffset}, the snapshot says ${endOffset}`,
    );
  }
}

/** The snapshot's producers on topics `includes` takes, keyed as the producer table keys them. */
export function producerEntriesOf(snapshot: StateSnapshot, includes: (topic: string) => boolean): Array<{ key: string; state: ProducerState }> {
  return snapshot.producers.filter((p) => includes(p.topic)).map((p) => ({ key: producerKey(p.producerId, p.topic, p.queue), state: p.state }));
}
