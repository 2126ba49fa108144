// Between the SDK's own types and the protocol's messages (src/protocol/messages.ts): the message
// a producer sends as a wire Message, and a ConsumeResponse (records, or blocks of the log's
// record encoding) as the messages an application reads. protobufjs decodes the bytes; these
// functions only reshape what it gave.
import { bytesOf, type ConsumeResponse, type MessageRequest, type RecordBlock, type RecordMessage } from '../protocol/messages.js';
import { asBuffer, decodeRecordsRegionWith, type RecordMaker } from '../record-region.js';

export interface OutgoingMessage {
  key?: Uint8Array | string | null;
  headers?: Record<string, string | Uint8Array>;
  body: Uint8Array | string;
  timestampMs?: number;
}

/** A Message as the SDK builds it: every field set, so its size is known before it is sent. */
export interface WireMessage extends MessageRequest {
  key: Buffer;
  headers: Array<{ key: string; value: Buffer }>;
  body: Buffer;
  timestampMs: number;
}

export interface ReceivedMessage {
  offset: number;
  timestampMs: number;
  key: Buffer | null;
  headers: Record<string, Buffer>;
  body: Buffer;
}

export interface ReadResult {
  messages: ReceivedMessage[];
  nextOffset: number;
  highWatermark: number;
  startOffset: number;
  servedBy: string;
  advice: { replicaId: string; address: string; reason: string } | null;
}

/** A string as UTF-8, or the bytes as a Buffer view (no copy). */
export function bytes(value: Uint8Array | string): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : asBuffer(value);
}

/** The wire Message for `m`; `traceHeaders` (W3C trace context) replace headers of the same name. */
export function messageToWire(m: OutgoingMessage, traceHeaders: Record<string, string> = {}): WireMessage {
  return {
    key: m.key === undefined || m.key === null ? Buffer.alloc(0) : bytes(m.key),
    body: bytes(m.body),
    timestampMs: m.timestampMs ?? 0,
    headers: [
      ...Object.entries(m.headers ?? {})
        .filter(([key]) => !(key in traceHeaders))
        .map(([key, value]) => ({ key, value: bytes(value) })),
      ...Object.entries(traceHeaders).map(([key, value]) => ({ key, value: Buffer.from(value, 'latin1') })),
    ],
  };
}

/** Bytes a message takes in a batch, for batchBytesMax and the producer's buffer bound. */
export function wireMessageBytes(message: WireMessage): number {
  return message.body.length + message.key.length + 64 + message.headers.reduce((n, h) => n + h.key.length + h.value.length, 0);
}

export function readResultFromWire(reply: ConsumeResponse): ReadResult {
  return {
    messages: reply.blocks.length > 0 ? messagesOfBlocks(reply.blocks) : reply.records.map(messageOfRecord),
    nextOffset: reply.nextOffset,
    highWatermark: reply.highWatermark,
    startOffset: reply.startOffset,
    servedBy: reply.servedBy,
    advice: reply.advice ? { replicaId: reply.advice.replicaId, address: reply.advice.address, reason: reply.advice.reason } : null,
  };
}

/** A Record of a `records` answer; an empty key is null, as in blocks. */
function messageOfRecord(r: RecordMessage): ReceivedMessage {
  const key = bytesOf(r.key);
  return {
    offset: r.offset,
    timestampMs: r.timestampMs,
    key: key.length > 0 ? key : null,
    body: bytesOf(r.body),
    headers: Object.fromEntries(r.headers.map((h) => [h.key, bytesOf(h.value)])),
  };
}

const noBytes = Buffer.alloc(0);

/**
 * The messages of a ConsumeResponse's RecordBlocks (mamba.proto), decoded with the log's own
 * record reader (src/record-region.ts). Key, body and header values are views into the response,
 * not copies; an empty key is null, an empty body or header value an empty Buffer, as in `records`.
 */
function messagesOfBlocks(blocks: readonly RecordBlock[]): ReceivedMessage[] {
  const messages: ReceivedMessage[] = [];
  for (const block of blocks) {
    const queueOffset = block.queueOffset;
    const make: RecordMaker<ReceivedMessage> = (index, timestampMs, key, value, headerList) => {
      const headers: Record<string, Buffer> = {};
      for (const h of headerList) headers[h.name] = h.value === null ? noBytes : asBuffer(h.value);
      return { offset: queueOffset + index, timestampMs, key, body: value ?? noBytes, headers };
    };
    for (const message of decodeRecordsRegionWith(bytesOf(block.records), block.firstTimestampMs, block.count, make)) messages.push(message);
  }
  return messages;
}
