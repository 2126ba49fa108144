// What a data entry of a group's log carries: one broker command, as bytes that every replica
// stores identically. A message batch keeps its records region exactly as encoded on arrival;
// the small prefix names the queue and the queue offset the leader stamped.
//
//   u8  kind
//   kind 1 (messages):      str topic, u32 queue, f64 queueOffset, f64 firstTimestampMs, f64 producerId,
//                           f64 sequence, records region (the log's record encoding)…
//   kind 2 (create topic):  str name, u32 queues, f64 createdMs
//   kind 3 (delete topic):  str name
//   kind 4 (commit offset): str consumerGroup, str topic, u32 queue, f64 offset
//   kind 5 (metadata):      UTF-8 JSON of a metadata change (metadata.ts), to the end; only in the
//                           metadata group's log
//   kind 6 (grow topic):    str name, u32 queues, f64 createdMs (the incarnation it grows)
// str = u16 byte length + UTF-8. Numbers are little-endian; f64 holds integers below 2^53 exactly.
import { EntryType, type Entry } from '../raft/types.js';
import { ByteReader, ByteWriter } from './byte-codec.js';
import { checkMetadataChange, type MetadataChange } from './metadata.js';

export enum CommandKind {
  Messages = 1,
  CreateTopic = 2,
  DeleteTopic = 3,
  CommitOffset = 4,
  Metadata = 5,
  GrowTopic = 6,
}

export interface MessagesCommand {
  kind: CommandKind.Messages;
  topic: string;
  queue: number;
  queueOffset: number;
  firstTimestampMs: number;
  producerId: number;
  sequence: number;
  records: Uint8Array;
}
export interface CreateTopicCommand {
  kind: CommandKind.CreateTopic;
  name: string;
  queues: number;
  createdMs: number;
}
export interface DeleteTopicCommand {
  kind: CommandKind.DeleteTopic;
  name: string;
}
export interface CommitOffsetCommand {
  kind: CommandKind.CommitOffset;
  consumerGroup: string;
  topic: string;
  queue: number;
  offset: number;
}
export interface MetadataCommand {
  kind: CommandKind.Metadata;
  change: MetadataChange;
}
export interface GrowTopicCommand {
  kind: CommandKind.GrowTopic;
  name: string;
  queues: number;
  createdMs: number;
}
export type Command = MessagesCommand | CreateTopicCommand | DeleteTopicCommand | CommitOffsetCommand | MetadataCommand | GrowTopicCommand;

export class CommandFormatError extends Error {
  override readonly name = 'CommandFormatError';
}

export function encodeCommand(c: Command): Buffer {
  const w = new ByteWriter('command').u8(c.kind);
  switch (c.kind) {
    case CommandKind.Messages:
      return w.str(c.topic).u32(c.queue).f64(c.queueOffset).f64(c.firstTimestampMs).f64(c.producerId).f64(c.sequence).bytes(c.records).done();
    case CommandKind.CreateTopic:
      return w.str(c.name).u32(c.queues).f64(c.createdMs).done();
    case CommandKind.DeleteTopic:
      return w.str(c.name).done();
    case CommandKind.CommitOffset:
      return w.str(c.consumerGroup).str(c.topic).u32(c.queue).f64(c.offset).done();
    case CommandKind.Metadata:
      return w.bytes(Buffer.from(JSON.stringify(c.change), 'utf8')).done();
    case CommandKind.GrowTopic:
      return w.str(c.name).u32(c.queues).f64(c.createdMs).done();
  }
}

/**
 * What a log entry is to the broker: the command a data entry carries, or null for an entry of
 * the replication layer (leader change, membership), which carries nothing for the broker. The
 * one place that decides it: apply and replay go through here.
 */
export function decodeEntry(entry: Entry): Command | null {
  return entry.type === EntryType.Data ? decodeCommand(entry.payload) : null;
}

/** Bytes of a Messages command before its records region, for `topic`. */
export function messagesPrefixBytes(topic: string): number {
  return 1 + 2 + Buffer.byteLength(topic, 'utf8') + 4 + 8 * 4;
}

/** The fields of a stored Messages command the consume path reads in place (no decode). */
export interface MessagesFields {
  kind: number;
  queueOffset: number;
  firstTimestampMs: number;
}

/**
 * Reads them from `bytes`, where the command starts at `commandPosition` and its records region
 * at `recordsPosition` (commandPosition + messagesPrefixBytes(topic)).
 */
export function messagesFieldsAt(bytes: Buffer, commandPosition: number, recordsPosition: number): MessagesFields {
  // The records region follows the four f64: queueOffset, firstTimestampMs, producerId, sequence.
  return {
    kind: bytes.readUInt8(commandPosition),
    queueOffset: bytes.readDoubleLE(recordsPosition - 32),
    firstTimestampMs: bytes.readDoubleLE(recordsPosition - 24),
  };
}

export function decodeCommand(payload: Uint8Array): Command {
  const r = new ByteReader(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), 'command', (message) => new CommandFormatError(message));
  const kind = r.u8();
  switch (kind) {
    case CommandKind.Messages: {
      const topic = r.str();
      const queue = r.u32();
      const queueOffset = r.f64();
      const firstTimestampMs = r.f64();
      const producerId = r.f64();
      const sequence = r.f64();
      return { kind, topic, queue, queueOffset, firstTimestampMs, producerId, sequence, records: r.rest() };
    }
    case CommandKind.CreateTopic: {
      const c: CreateTopicCommand = { kind, name: r.str(), queues: r.u32(), createdMs: r.f64() };
      r.end();
      return c;
    }
    case CommandKind.DeleteTopic: {
      const c: DeleteTopicCommand = { kind, name: r.str() };
      r.end();
      return c;
    }
    case CommandKind.CommitOffset: {
      const c: CommitOffsetCommand = { kind, consumerGroup: r.str(), topic: r.str(), queue: r.u32(), offset: r.f64() };
      r.end();
      return c;
    }
    case CommandKind.Metadata: {
      let change: MetadataChange;
      try {
        change = checkMetadataChange(JSON.parse(r.rest().toString('utf8')));
      } catch (error) {
        throw new CommandFormatError(`metadata command: ${(error as Error).message}`);
      }
      return { kind, change };
    }
    case CommandKind.GrowTopic: {
      const c: GrowTopicCommand = { kind, name: r.str(), queues: r.u32(), createdMs: r.f64() };
      r.end();
      return c;
    }
    default:
      throw new CommandFormatError(`unknown command kind ${kind}`);
  }
}
