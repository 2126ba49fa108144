// The server side of ProduceStream (proto/mamba.proto): many produce requests pipelined on one
// bidirectional stream, each checked and stored exactly as the unary Produce, answered in request
// order. The contract, step by step, as a stream session follows it:
//   1. A request arrives: its client_sequence must be one more than the last (else the stream
//      ends with INVALID_ARGUMENT); it joins the `pending` queue in arrival order.
//   2. A request the security guard refused (RefusedRequest) or that fails to decode is answered
//      with its error in place; the stream goes on.
//   3. Any other request goes to the broker at once (proposals keep arrival order), counted in
//      the stream's in-flight requests and bytes.
//   4. Answers leave strictly from the head of `pending`: a request answered early waits for
//      the ones before it.
//   5. Flow control: at `inflightMax` pending requests, `inflightBytesMax` bytes, or while the
//      client does not read answers (write() returned false), the session pauses the stream;
//      grpc-js then stops reading the HTTP/2 stream and the client's writes wait. It resumes
//      below both bounds once the answers drained.
//   6. A cancelled or broken stream answers nothing more; work already handed to the broker
//      finishes (each request is one log batch, stored whole or not at all).
//   7. When the client half-closes and every pending request is answered, the stream ends OK.
import * as grpc from '@grpc/grpc-js';
import { SequenceGapError, type Broker, type ProduceRequest, type ProduceResult } from '../broker/broker.js';
import { leaderAddressKey, leaderIdKey, toStatus } from '../protocol/status.js';

type Wire = Record<string, unknown>;

/** A stream request the security guard refused: answered in place with this status. */
export class RefusedRequest {
  constructor(
    readonly clientSequence: unknown,
    readonly code: grpc.status,
    readonly details: string,
  ) {}
}

export interface ProduceStreamLimits {
  /** Requests of one stream received and not yet answered, at most. */
  inflightMax: number;
  /** Bytes of message keys and bodies of those requests, at most (exceeded by one request at most). */
  inflightBytesMax: number;
}

interface Pending {
  clientSequence: number;
  response: Wire | null;
}

/** Per-request overhead counted against inflightBytesMax besides key and body bytes. */
const messageOverheadBytes = 64;

export function produceErrorWire(error: unknown): Wire {
  const s = toStatus(error);
  return {
    code: s.code,
    details: s.details,
    leaderId: String(s.metadata.get(leaderIdKey)[0] ?? ''),
    leaderAddress: String(s.metadata.get(leaderAddressKey)[0] ?? ''),
    sequenceGap: error instanceof SequenceGapError,
  };
}

/** Key and body bytes of a request's messages (what the request holds in memory, near enough). */
function requestBytes(request: Wire | null | undefined): number {
  const messages = request?.messages;
  if (!Array.isArray(messages)) return messageOverheadBytes;
  let bytes = messageOverheadBytes;
  for (const m of messages as Array<{ key?: Uint8Array; body?: Uint8Array }>)
    bytes += (m.key?.byteLength ?? 0) + (m.body?.byteLength ?? 0) + messageOverheadBytes;
  return bytes;
}

export class ProduceStreamSession {
  private readonly pending: Pending[] = [];
  private nextClientSequence = 1;
  private inflightBytes = 0;
  private waitingForDrain = false;
  private paused = false;
  private halfClosed = false;
  private finished = false;

  constructor(
    private readonly call: grpc.ServerDuplexStream<Wire, Wire>,
    private readonly broker: Broker,
    private readonly decode: (request: Wire) => ProduceRequest,
    private readonly limits: ProduceStreamLimits,
  ) {
    call.on('data', (w: unknown) => this.receive(w));
    call.on('end', () => {
      this.halfClosed = true;
      this.maybeEnd();
    });
    call.on('drain', () => {
      this.waitingForDrain = false;
      this.updateFlow();
    });
    call.on('cancelled', () => this.stop());
    call.on('error', () => this.stop());
  }

  private receive(w: unknown): void {
    if (this.finished) return;
    const refused = w instanceof RefusedRequest ? w : null;
    const wire = (refused ? {} : w) as Wire;
    const clientSequence = Number(refused ? refused.clientSequence : (wire.clientSequence ?? 0));
    if (clientSequence !== this.nextClientSequence) {
      return this.fail(
        grpc.status.INVALID_ARGUMENT,
        `ProduceStream: client_sequence ${String(clientSequence)} where ${this.nextClientSequence} was expected (1 for the first request of a stream, then one more each time)`,
      );
    }
    this.nextClientSequence++;
    const entry: Pending = { clientSequence, response: null };
    this.pending.push(entry);
    if (refused) {
      entry.response = { clientSequence, error: { code: refused.code, details: refused.details } };
      return this.flush();
    }
    if (!wire.request) {
      entry.response = { clientSequence, error: { code: grpc.status.INVALID_ARGUMENT, details: 'ProduceStream: request is required' } };
      return this.flush();
    }
    let request: ProduceRequest;
    try {
      request = this.decode(wire.request as Wire);
    } catch (error) {
      entry.response = { clientSequence, error: produceErrorWire(error) };
      return this.flush();
    }
    const bytes = requestBytes(wire.request as Wire);
    this.inflightBytes += bytes;
    this.updateFlow();
    void this.broker
      .track(() => this.broker.produce(request))
      .then(
        (result: ProduceResult) => {
          entry.response = { clientSequence, result };
        },
        (error: unknown) => {
          entry.response = { clientSequence, error: produceErrorWire(error) };
        },
      )
      .then(() => {
        this.inflightBytes -= bytes;
        this.flush();
      });
  }

  /** Writes every answer at the head of the queue (step 4), then adjusts the flow (step 5). */
  private flush(): void {
    for (let response = this.pending[0]?.response; response; response = this.pending[0]?.response) {
      this.pending.shift();
      if (!this.finished && !this.call.write(response)) this.waitingForDrain = true;
    }
    this.updateFlow();
    this.maybeEnd();
  }

  private updateFlow(): void {
    if (this.finished) return;
    const full = this.pending.length >= this.limits.inflightMax || this.inflightBytes >= this.limits.inflightBytesMax || this.waitingForDrain;
    if (full && !this.paused) {
      this.paused = true;
      this.call.pause();
    } else if (!full && this.paused) {
      this.paused = false;
      this.call.resume();
    }
  }

  private maybeEnd(): void {
    if (!this.halfClosed || this.finished || this.pending.length > 0) return;
    this.finished = true;
    this.call.end();
  }

  private fail(code: grpc.status, details: string): void {
    if (this.finished) return;
    this.finished = true;
    // grpc-js's own way to end a server stream with a status: the 'error' event (server-call.ts).
    this.call.emit('error', Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }));
  }

  private stop(): void {
    this.finished = true;
  }
}
