// The client side of ProduceStream (proto/mamba.proto): one bidirectional stream per broker
// connection, carrying every produce request the producer sends there, answered in order.
//   - A request is written at once (synchronously) with the next client_sequence; its promise
//     waits in `pending`, first in first out, and the answer with the same client_sequence
//     settles it (an answer out of order is a broken stream).
//   - A refused request (ProduceError) rejects with the product's error class, exactly as the
//     unary Produce's status would; `sequence_gap` becomes a SequenceGapError.
//   - The stream breaking (status, end, or the oldest request waiting past the request timeout)
//     rejects everything pending with that status (retriable unless the stream itself was
//     refused, e.g. UNAUTHENTICATED); the next request opens a new stream.
//   - Memory: what waits here is bounded by the producer (bufferBytesMax, batches in flight per
//     queue); the broker's flow control slows the stream down when it is behind.
import * as grpc from '@grpc/grpc-js';
import { MambaError, TimeoutError, UnavailableError } from '../errors.js';
import { fromServiceError, leaderAddressKey, leaderIdKey } from '../protocol/status.js';
import type { ProduceError, ProduceRequest, ProduceResponse, ProduceStreamRequest, ProduceStreamResponse } from '../protocol/messages.js';

type Stream = grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse>;

/** The broker refused a batch because an earlier batch of its producer and queue is missing. */
export class SequenceGapError extends MambaError {
  override readonly name = 'SequenceGapError';
  constructor(message: string) {
    super('invalid_argument', message, true);
  }
}

interface Waiting {
  clientSequence: number;
  sentMs: number;
  resolve: (reply: ProduceResponse) => void;
  reject: (error: MambaError) => void;
}

/** How often a stream with requests pending checks the oldest one against the request timeout. */
const timeoutCheckMsMax = 250;

/** The product's error for one refused request of a stream. */
export function produceErrorFromWire(error: ProduceError): MambaError {
  const details = error.details || 'produce refused';
  if (error.sequenceGap) return new SequenceGapError(details);
  const metadata = new grpc.Metadata();
  if (error.leaderId) metadata.set(leaderIdKey, error.leaderId);
  if (error.leaderAddress) metadata.set(leaderAddressKey, error.leaderAddress);
  return fromServiceError(Object.assign(new Error(details), { code: error.code || grpc.status.UNKNOWN, details, metadata }));
}

export class ProduceStreamClient {
  private stream: Stream | null = null;
  private nextClientSequence = 1;
  private pending: Waiting[] = [];
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    readonly address: string,
    private readonly open: () => Stream,
    private readonly requestTimeoutMs: number,
  ) {}

  get pendingCount(): number {
    return this.pending.length;
  }

  /** Sends one ProduceRequest on the stream (opened when needed); resolves with its ProduceResponse. */
  produce(request: ProduceRequest): Promise<ProduceResponse> {
    if (this.closed) return Promise.reject(new UnavailableError('producer is closed'));
    const stream = this.stream ?? this.start();
    const clientSequence = this.nextClientSequence++;
    return new Promise<ProduceResponse>((resolve, reject) => {
      this.pending.push({ clientSequence, sentMs: Date.now(), resolve, reject });
      this.armTimer();
      stream.write({ clientSequence, request });
    });
  }

  private start(): Stream {
    const stream = this.open();
    this.stream = stream;
    this.nextClientSequence = 1;
    stream.on('data', (response: ProduceStreamResponse) => this.answer(stream, response));
    stream.on('error', (error: grpc.ServiceError) => this.broken(stream, fromServiceError(error)));
    stream.on('end', () => this.broken(stream, new UnavailableError(`${this.address}: the produce stream ended`)));
    return stream;
  }

  private answer(stream: Stream, response: ProduceStreamResponse): void {
    if (stream !== this.stream) return;
    const head = this.pending[0];
    const clientSequence = response.clientSequence;
    const fault =
      !head || head.clientSequence !== clientSequence
        ? `answered client_sequence ${clientSequence} where ${head?.clientSequence ?? 'none'} was due`
        : !response.error && !response.result
          ? `answered client_sequence ${clientSequence} with neither result nor error`
          : null;
    if (fault !== null || !head) return this.broken(stream, new UnavailableError(`${this.address}: the produce stream ${fault}`), true);
    this.pending.shift();
    if (response.error) head.reject(produceErrorFromWire(response.error));
    else if (response.result) head.resolve(response.result);
    if (this.pending.length === 0) this.disarmTimer();
  }

  /** Rejects everything pending on `stream` and forgets it; `cancel` also ends it on the wire. */
  private broken(stream: Stream, error: MambaError, cancel = false): void {
    if (stream !== this.stream) return;
    this.stream = null;
    if (cancel) stream.cancel();
    this.disarmTimer();
    const failed = this.pending;
    this.pending = [];
    // A stream refused as a whole (UNAUTHENTICATED, …) refuses each of its requests the same way.
    for (const w of failed) w.reject(error);
  }

  private armTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.checkTimeout(), Math.min(timeoutCheckMsMax, Math.max(1, Math.floor(this.requestTimeoutMs / 4))));
    this.timer.unref();
  }

  private disarmTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private checkTimeout(): void {
    const head = this.pending[0];
    if (!head || !this.stream) return this.disarmTimer();
    const waitedMs = Date.now() - head.sentMs;
    if (waitedMs >= this.requestTimeoutMs) {
      this.broken(
        this.stream,
        new TimeoutError(`${this.address}: no answer to a produce request within ${this.requestTimeoutMs} ms (requestTimeoutMs); the stream is reopened`),
        true,
      );
    }
  }

  /** Ends the stream; anything still pending is rejected. */
  close(): void {
    this.closed = true;
    if (this.stream) this.broken(this.stream, new UnavailableError('producer is closed'), true);
  }
}
