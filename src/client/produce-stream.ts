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
//   - Each request's RequestProgress says how far it got: written, answered, or (a stream that
//     never connected) not sent after all. The status of a broken stream says nothing about the
//     requests on it; produce-outcome.ts judges what may be stored from both.
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

/**
 * How far one produce request got, kept up to date by the stream client for the producer's rule
 * on what may be stored (produce-outcome.ts): 'unsent' until it is written on a stream; 'written'
 * once it is (from then on it may reach the broker); 'answered' once the broker's answer to it
 * arrived. A stream that never connected sets its requests back to 'unsent'.
 */
export interface RequestProgress {
  stage: 'unsent' | 'written' | 'answered';
}

interface Waiting {
  clientSequence: number;
  sentMs: number;
  progress: RequestProgress;
  resolve: (reply: ProduceResponse) => void;
  reject: (error: MambaError) => void;
}

/** How often a stream with requests pending checks the oldest one against the request timeout. */
const timeoutCheckMsMax = 250;

/**
 * How grpc-js (its pick-first balancer, 1.14) words the UNAVAILABLE of a call it could not start
 * because no connection to the broker could be made (refused, unreachable): the call never went
 * out on any connection, so nothing written on that stream left the client. Every other status of
 * a broken stream leaves its requests' outcome unknown. Were grpc-js to reword it, such failures
 * would count as unknown (safe, less available); produce-stream.test.ts checks it on a closed port.
 */
const notConnectedDetails = 'No connection established';

/** The stream failed before it was started on any connection (see notConnectedDetails). */
export function neverConnected(error: grpc.ServiceError): boolean {
  return error.code === grpc.status.UNAVAILABLE && (error.details ?? '').startsWith(notConnectedDetails);
}

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

  /**
   * Sends one ProduceRequest on the stream (opened when needed); resolves with its ProduceResponse.
   * `progress` follows the request (RequestProgress).
   */
  produce(request: ProduceRequest, progress: RequestProgress = { stage: 'unsent' }): Promise<ProduceResponse> {
    if (this.closed) return Promise.reject(new UnavailableError('producer is closed'));
    const stream = this.stream ?? this.start();
    const clientSequence = this.nextClientSequence++;
    return new Promise<ProduceResponse>((resolve, reject) => {
      this.pending.push({ clientSequence, sentMs: Date.now(), progress, resolve, reject });
      this.armTimer();
      progress.stage = 'written';
      stream.write({ clientSequence, request });
    });
  }

  private start(): Stream {
    const stream = this.open();
    this.stream = stream;
    this.nextClientSequence = 1;
    stream.on('data', (response: ProduceStreamResponse) => this.answer(stream, response));
    stream.on('error', (error: grpc.ServiceError) => this.broken(stream, fromServiceError(error), false, neverConnected(error)));
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
    head.progress.stage = 'answered';
    if (response.error) head.reject(produceErrorFromWire(response.error));
    else if (response.result) head.resolve(response.result);
    if (this.pending.length === 0) this.disarmTimer();
  }

  /**
   * Rejects everything pending on `stream` and forgets it; `cancel` also ends it on the wire;
   * `unsent`: the stream never connected, so none of its requests left the client.
   */
  private broken(stream: Stream, error: MambaError, cancel = false, unsent = false): void {
    if (stream !== this.stream) return;
    this.stream = null;
    if (cancel) stream.cancel();
    this.disarmTimer();
    const failed = this.pending;
    this.pending = [];
    if (unsent) for (const w of failed) w.progress.stage = 'unsent';
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
