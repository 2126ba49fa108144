// One STOMP connection: CONNECT (login = access key id, passcode = secret), SEND (stored with
// the quorum acknowledgement before its RECEIPT), SUBSCRIBE (per subscription a consumer-group
// member for /queue/<topic>, or a fixed reader of one queue with the group's offsets for
// /queue/<topic>/<queue>) with ack auto, client (cumulative) or client-individual, ACK and NACK (a
// NACK hands the message to the topic's retry queue, then its dead-letter queue:
// src/client/consumer.ts), UNSUBSCRIBE, DISCONNECT, heart-beats both ways.
//
// The contract, in order:
//   1. Frames are handled one at a time in arrival order: a SEND is stored (or refused) before the
//      next frame starts, so a connection's messages keep their order and a RECEIPT means stored.
//   2. Any bad input (a malformed or oversized frame, an unknown destination, a refused login or
//      permission, a silent client) gets one ERROR frame naming the problem, then the connection
//      closes; nothing of a refused SEND is stored.
//   3. A message delivered on a client or client-individual subscription is in hand until its ACK
//      or NACK (one per queue at a time: the consumer reads each queue in order). When the
//      connection or subscription ends first, it goes to the retry queue like a NACK, so it is
//      delivered again, never lost.
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { MambaError } from '../../errors.js';
import type { Consumer, Delivery } from '../../client/consumer.js';
import { type GatewayAuth, LoginRefused, type Principal } from './auth.js';
import { destinationText, parseDestination, unknownQueueText, type Destination } from './destination.js';
import { encodeFrame, FrameDecoder, FrameError, printable, type Frame, type FrameLimits, type ServerCommand } from './frame.js';
import type { GatewayMetrics } from './metrics.js';
import type { GatewayBackend } from '../common/backend.js';
import type { GatewayTracing } from '../common/tracing.js';
import { traceparentHeader, tracestateHeader } from '../../observe/message-trace.js';

export interface GatewayLog {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
}

export interface SessionLimits extends FrameLimits {
  /** A connection that has not sent CONNECT by then is closed. */
  connectTimeoutMs: number;
  /** The shortest heart-beat interval the gateway offers and accepts, both ways. */
  heartbeatMsMin: number;
  /** Silence of more than this many expected intervals from a client that promised heart-beats closes it. */
  heartbeatGraceIntervals: number;
  subscriptionsPerConnectionMax: number;
  /** Frames received and not yet handled; beyond it the socket stops reading until they are. */
  framesPendingMax: number;
  /** A message body (the broker's messageBytesMax). */
  bodyBytesMax: number;
}

export const sessionLimitsDefault: Readonly<SessionLimits> = {
  frameBytesMax: 4 * 1024 * 1024 + 64 * 1024,
  headerCountMax: 64,
  headerLineBytesMax: 8192,
  connectTimeoutMs: 10_000,
  heartbeatMsMin: 1000,
  heartbeatGraceIntervals: 2,
  subscriptionsPerConnectionMax: 16,
  framesPendingMax: 64,
  bodyBytesMax: 4 * 1024 * 1024,
};

export interface SessionDeps {
  auth: GatewayAuth;
  /** Routes and reads (its client), and SENDs through its idempotent producer. */
  backend: GatewayBackend;
  consumer(group: string, destination: Destination): Consumer;
  metrics: GatewayMetrics;
  /** A span per SEND and per delivered MESSAGE (../common/tracing.ts). */
  tracing: GatewayTracing;
  log: GatewayLog;
  limits: SessionLimits;
  brokerId: string;
}

type AckMode = 'auto' | 'client' | 'client-individual';
const ackModes: readonly string[] = ['auto', 'client', 'client-individual'];

/** Header names the gateway sets on MESSAGE frames itself; message headers of these names are not copied. */
const messageFrameHeaders = new Set(['destination', 'message-id', 'subscription', 'ack', 'content-length']);
/** SEND headers that steer the gateway and are not stored with the message. */
const sendControlHeaders = new Set(['destination', 'receipt', 'content-length', 'transaction', 'mamba-key']);
/**
 * `mamba-*` names are the broker's own (the retry path's origin and attempt, a delivery's queue
 * and offset): a SEND's headers of those names are not stored, so a client cannot steer where a
 * retried message goes, and a MESSAGE sent on again starts over as a new message.
 */
const reservedHeaderPrefix = 'mamba-';
/**
 * The consumer group of a subscription: this header, else `stomp` (subscribers of /queue/<topic>
 * share its queues; a /queue/<topic>/<queue> subscriber reads and commits that queue with the group's offsets).
 */
const consumerGroupHeader = 'mamba-consumer-group';
const consumerGroupDefault = 'stomp';

interface InHand {
  ackId: number;
  subscription: Subscription;
  settle(error: Error | null): void;
}

interface Subscription {
  id: string;
  destination: Destination;
  consumerGroup: string;
  ack: AckMode;
  consumer: Consumer;
  open: boolean;
}

/** Bad input or a refusal: one ERROR frame, then the connection closes (contract rule 2). */
class Refusal extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly receiptId: string | undefined = undefined,
  ) {
    super(message);
  }
}

export class StompSession {
  private readonly decoder: FrameDecoder;
  private readonly pending: Frame[] = [];
  private handling = false;
  private principal: Principal | null = null;
  private closed = false;
  private readonly subscriptions = new Map<string, Subscription>();
  /** By ack id, in delivery order (Map keeps insertion order). */
  private readonly inHand = new Map<number, InHand>();
  private ackIdNext = 1;
  private lastReceivedMs = Date.now();
  private readonly timers: NodeJS.Timeout[] = [];
  readonly sessionId = randomUUID();

  constructor(
    private readonly socket: Socket,
    private readonly deps: SessionDeps,
  ) {
    this.decoder = new FrameDecoder(deps.limits);
    socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('error', () => socket.destroy());
    socket.once('close', () => void this.cleanUp());
    const connectTimer = setTimeout(() => {
      if (this.principal === null) this.refuse(new Refusal('connect_timeout', `no CONNECT frame within ${deps.limits.connectTimeoutMs} ms`));
    }, deps.limits.connectTimeoutMs);
    this.timers.push(connectTimer);
  }

  private received(chunk: Buffer): void {
    if (this.closed) return;
    this.lastReceivedMs = Date.now();
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      if (error instanceof FrameError) return this.refuse(new Refusal('frame', `malformed frame: ${error.message}`));
      throw error;
    }
    this.decoder.takeHeartbeats();
    this.pending.push(...frames);
    if (this.pending.length >= this.deps.limits.framesPendingMax) this.socket.pause();
    void this.handleAll();
  }

  /** Contract rule 1: one frame at a time. */
  private async handleAll(): Promise<void> {
    if (this.handling) return;
    this.handling = true;
    try {
      while (!this.closed && this.pending.length > 0) {
        const frame = this.pending.shift()!;
        this.deps.metrics.frame(frame.command);
        try {
          await this.handle(frame);
        } catch (error) {
          this.refuse(asRefusal(error, frame.headers.get('receipt')));
        }
        if (this.pending.length < this.deps.limits.framesPendingMax / 2 && this.socket.isPaused()) this.socket.resume();
      }
    } finally {
      this.handling = false;
    }
  }

  private async handle(frame: Frame): Promise<void> {
    if (frame.command === 'CONNECT' || frame.command === 'STOMP') return this.connect(frame);
    if (this.principal === null) throw new Refusal('not_connected', `send CONNECT first (got ${frame.command})`);
    switch (frame.command) {
      case 'SEND':
        return this.send(frame);
      case 'SUBSCRIBE':
        return this.subscribe(frame);
      case 'UNSUBSCRIBE':
        return this.unsubscribe(frame);
      case 'ACK':
      case 'NACK':
        return this.acknowledge(frame);
      case 'DISCONNECT':
        // Subscriptions end now (messages in hand go to the retry queue), not when the client
        // closes its socket: until then their consumers would read for nobody.
        this.receipt(frame);
        this.socket.end();
        setTimeout(() => this.socket.destroy(), 1000).unref();
        void this.cleanUp();
        return;
      case 'BEGIN':
      case 'COMMIT':
      case 'ABORT':
        throw new Refusal('unsupported', `transactions (${frame.command}) are not supported`, frame.headers.get('receipt'));
    }
  }

  private async connect(frame: Frame): Promise<void> {
    if (this.principal !== null) throw new Refusal('protocol', 'already connected');
    const versions = (frame.headers.get('accept-version') ?? '1.0').split(',');
    if (!versions.includes('1.2')) throw new Refusal('version', 'this broker speaks STOMP 1.2: send accept-version:1.2');
    const heartBeat = parseHeartBeat(frame.headers.get('heart-beat'));
    if (heartBeat === null) throw new Refusal('frame', 'heart-beat must be two non-negative integers "cx,cy"');
    try {
      this.principal = await this.deps.auth.login(frame.headers.get('login'), frame.headers.get('passcode'));
    } catch (error) {
      if (error instanceof LoginRefused) throw new Refusal(`login_${error.reason}`, error.message);
      throw error;
    }
    if (this.closed) return;
    const offerMs = this.deps.limits.heartbeatMsMin;
    // STOMP 1.2 heart-beating: each side's interval is the larger of what one offers and the other wants; 0 turns it off.
    const sendEveryMs = heartBeat.wantMs === 0 ? 0 : Math.max(offerMs, heartBeat.wantMs);
    const expectEveryMs = heartBeat.offerMs === 0 ? 0 : Math.max(offerMs, heartBeat.offerMs);
    this.write('CONNECTED', [
      ['version', '1.2'],
      ['heart-beat', `${offerMs},${offerMs}`],
      ['server', 'mamba-mq'],
      ['session', this.sessionId],
    ]);
    this.startHeartbeats(sendEveryMs, expectEveryMs);
    this.deps.log.debug('stomp.connected', { session: this.sessionId, key: this.principal, heartBeat: `${sendEveryMs},${expectEveryMs}` });
  }

  private startHeartbeats(sendEveryMs: number, expectEveryMs: number): void {
    if (sendEveryMs > 0) this.timers.push(setInterval(() => this.closed || this.socket.write('\n'), sendEveryMs));
    if (expectEveryMs > 0) {
      const silenceMsMax = expectEveryMs * this.deps.limits.heartbeatGraceIntervals;
      this.timers.push(
        setInterval(
          () => {
            // While the gateway itself stopped reading (too many frames pending), the client's
            // heart-beats wait unread in the socket: that silence is ours, not the client's.
            if (this.socket.isPaused()) this.lastReceivedMs = Date.now();
            const silentMs = Date.now() - this.lastReceivedMs;
            if (silentMs > silenceMsMax)
              this.refuse(new Refusal('heartbeat', `no heart-beat from the client for ${silentMs} ms (expected every ${expectEveryMs} ms)`));
          },
          Math.max(100, Math.floor(expectEveryMs / 2)),
        ),
      );
    }
  }

  private destinationOf(frame: Frame): Destination {
    const destination = parseDestination(frame.headers.get('destination'));
    if (typeof destination === 'string') throw new Refusal('destination', destination, frame.headers.get('receipt'));
    return destination;
  }

  private permit(action: 'produce' | 'consume', topic: string, frame: Frame): void {
    if (!this.deps.auth.allows(this.principal!, action, topic))
      throw new Refusal('permission', `access key "${this.principal}" may not ${action} on topic "${topic}"`, frame.headers.get('receipt'));
  }

  /** The destination's topic exists (NotFoundError names it) and has its queue, if one is named. */
  private async checkDestinationExists(destination: Destination, receiptId: string | undefined): Promise<void> {
    const route = await this.deps.backend.client.cluster.topic(destination.topic);
    if (destination.queue !== null && destination.queue >= route.queues)
      throw new Refusal('destination', unknownQueueText(destination, route.queues), receiptId);
  }

  private async send(frame: Frame): Promise<void> {
    const receiptId = frame.headers.get('receipt');
    if (frame.headers.has('transaction')) throw new Refusal('unsupported', 'transactions are not supported', receiptId);
    const destination = this.destinationOf(frame);
    this.permit('produce', destination.topic, frame);
    await this.checkDestinationExists(destination, receiptId);
    if (frame.body.length > this.deps.limits.bodyBytesMax)
      throw new Refusal(
        'too_large',
        `message body of ${frame.body.length} bytes is over the limit of ${this.deps.limits.bodyBytesMax} (messageBytesMax)`,
        receiptId,
      );
    const headers: Record<string, string> = {};
    for (const [name, value] of frame.headers) if (!sendControlHeaders.has(name) && !name.startsWith(reservedHeaderPrefix)) headers[name] = value;
    const key = frame.headers.get('mamba-key');
    const span = this.deps.tracing.startPublish(destination.topic, headers, {
      clientId: this.sessionId,
      destination: destinationText(destination),
      payloadBytes: frame.body.length,
    });
    try {
      const stored = await this.deps.backend.publish(
        destination.topic,
        { body: frame.body, headers: span.headers, ...(key !== undefined ? { key } : {}) },
        destination.queue === null ? {} : { queue: destination.queue },
      );
      span.end({ queue: stored.queue, offset: stored.offset });
    } catch (error) {
      span.end({ problem: (error as Error).message ?? String(error) });
      throw error;
    }
    this.deps.metrics.message('in', destination.topic, frame.body.length);
    this.receipt(frame);
  }

  private async subscribe(frame: Frame): Promise<void> {
    const receiptId = frame.headers.get('receipt');
    const id = frame.headers.get('id');
    if (!id) throw new Refusal('frame', 'SUBSCRIBE needs an id header', receiptId);
    if (this.subscriptions.has(id)) throw new Refusal('protocol', `subscription id "${printable(id)}" is in use`, receiptId);
    if (this.subscriptions.size >= this.deps.limits.subscriptionsPerConnectionMax)
      throw new Refusal('limit', `at most ${this.deps.limits.subscriptionsPerConnectionMax} subscriptions per connection`, receiptId);
    const ack = frame.headers.get('ack') ?? 'auto';
    if (!ackModes.includes(ack)) throw new Refusal('frame', `ack must be auto, client or client-individual, got "${printable(ack)}"`, receiptId);
    const destination = this.destinationOf(frame);
    this.permit('consume', destination.topic, frame);
    const group = frame.headers.get(consumerGroupHeader) ?? consumerGroupDefault;
    await this.checkDestinationExists(destination, receiptId);
    const consumer = this.deps.consumer(group, destination);
    const subscription: Subscription = { id, destination, consumerGroup: group, ack: ack as AckMode, consumer, open: true };
    consumer.on('error', (error: Error) => this.deps.log.debug('stomp.consumer.error', { session: this.sessionId, subscription: id, error: error.message }));
    this.subscriptions.set(id, subscription);
    try {
      await consumer.start((delivery) => this.deliver(subscription, delivery));
    } catch (error) {
      this.subscriptions.delete(id);
      subscription.open = false;
      await consumer.close().catch(() => undefined);
      throw error;
    }
    // The connection ended while the consumer started (cleanUp closed it before it ran, which
    // Consumer.start notices); close it again in case it got past that check.
    if (!subscription.open || this.closed) {
      await consumer.close().catch(() => undefined);
      return;
    }
    this.receipt(frame);
  }

  /** The consumer's handler: write the MESSAGE; for client acks, wait for the ACK or NACK. */
  private deliver(subscription: Subscription, delivery: Delivery): Promise<void> | undefined {
    if (!subscription.open || this.closed) throw new Error('the STOMP subscription ended before delivery');
    const ackId = this.ackIdNext++;
    const headers: Array<[string, string]> = [
      ['destination', destinationText(subscription.destination)],
      ['message-id', `${delivery.topic}/${delivery.queue}/${delivery.offset}/${delivery.attempt}`],
      ['subscription', subscription.id],
      ['mamba-queue', String(delivery.queue)],
      ['mamba-offset', String(delivery.offset)],
      ['mamba-attempt', String(delivery.attempt)],
    ];
    if (delivery.key && delivery.key.length > 0) headers.push(['mamba-key', delivery.key.toString('utf8')]);
    if (subscription.ack !== 'auto') headers.push(['ack', String(ackId)]);
    for (const [name, value] of Object.entries(delivery.headers)) if (!messageFrameHeaders.has(name)) headers.push([name, value.toString('utf8')]);
    this.deps.metrics.message('out', delivery.topic, delivery.body.length);
    const span = this.deps.tracing.startDeliver(delivery.topic, delivery.queue, delivery.offset, delivery.headers, {
      clientId: this.sessionId,
      destination: destinationText(subscription.destination),
      payloadBytes: delivery.body.length,
      consumerGroup: subscription.consumerGroup,
      attempt: delivery.attempt,
    });
    // The subscriber continues the delivery span's context (the message's own when tracing is off).
    if (span) {
      const traced = headers.filter(([name]) => name !== traceparentHeader && name !== tracestateHeader);
      headers.length = 0;
      headers.push(...traced, ...Object.entries(span.headers));
    }
    if (subscription.ack === 'auto') {
      // A socket that can no longer be written is not a delivery: the message goes to the retry
      // queue (the handler fails) instead of being committed as sent.
      if (this.socket.destroyed || !this.socket.writable) throw new Error('the STOMP connection ended before delivery');
      const written = this.write('MESSAGE', headers, delivery.body);
      span?.end();
      if (written) return undefined;
      // Backpressure: the next message waits for the socket to drain (or close); both listeners go.
      return new Promise((resolve) => {
        const done = (): void => {
          this.socket.off('drain', done).off('close', done);
          resolve();
        };
        this.socket.once('drain', done).once('close', done);
      });
    }
    return new Promise<void>((resolve, reject) => {
      const settle = (error: Error | null): void => {
        span?.end(error ? error.message : undefined);
        if (error) reject(error);
        else resolve();
      };
      this.inHand.set(ackId, { ackId, subscription, settle });
      this.write('MESSAGE', headers, delivery.body);
    });
  }

  private async acknowledge(frame: Frame): Promise<void> {
    const receiptId = frame.headers.get('receipt');
    if (frame.headers.has('transaction')) throw new Refusal('unsupported', 'transactions are not supported', receiptId);
    const idText = frame.headers.get('id');
    if (idText === undefined) throw new Refusal('frame', `${frame.command} needs the id header of the MESSAGE's ack header`, receiptId);
    const ackId = /^[0-9]{1,15}$/.test(idText) ? Number(idText) : -1;
    const target = this.inHand.get(ackId);
    if (!target) throw new Refusal('protocol', `${frame.command} for "${printable(idText)}": no message with that ack id is waiting`, receiptId);
    const error = frame.command === 'NACK' ? new Error('NACK from the STOMP client') : null;
    // ack:client acknowledges cumulatively: every message of the subscription delivered up to this one.
    const settled =
      target.subscription.ack === 'client' ? [...this.inHand.values()].filter((h) => h.subscription === target.subscription && h.ackId <= ackId) : [target];
    for (const held of settled) {
      this.inHand.delete(held.ackId);
      held.settle(error);
    }
    this.receipt(frame);
  }

  private async unsubscribe(frame: Frame): Promise<void> {
    const id = frame.headers.get('id');
    const subscription = id === undefined ? undefined : this.subscriptions.get(id);
    if (!subscription) throw new Refusal('protocol', `UNSUBSCRIBE: no subscription "${printable(id ?? '')}"`, frame.headers.get('receipt'));
    this.subscriptions.delete(subscription.id);
    await this.endSubscription(subscription);
    this.receipt(frame);
  }

  /** Contract rule 3: stop the consumer first (no new delivery), then release what is in hand. */
  private async endSubscription(subscription: Subscription): Promise<void> {
    subscription.open = false;
    const closing = subscription.consumer.close();
    for (const held of [...this.inHand.values()]) {
      if (held.subscription !== subscription) continue;
      this.inHand.delete(held.ackId);
      held.settle(new Error('the STOMP subscription ended before ACK'));
    }
    await closing.catch((error: Error) => this.deps.log.debug('stomp.consumer.close.failed', { error: error.message }));
  }

  private receipt(frame: Frame): void {
    const receiptId = frame.headers.get('receipt');
    if (receiptId !== undefined) this.write('RECEIPT', [['receipt-id', receiptId]]);
  }

  private write(command: ServerCommand, headers: Array<[string, string]>, body?: Buffer): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    return this.socket.write(encodeFrame(command, headers, body));
  }

  /** Contract rule 2. */
  private refuse(refusal: Refusal): void {
    if (this.closed) return;
    this.deps.metrics.refusal(refusal.reason);
    this.deps.log.info('stomp.refused', { session: this.sessionId, reason: refusal.reason, problem: refusal.message });
    const headers: Array<[string, string]> = [
      ['message', refusal.message.replace(/[\r\n]/g, ' ').slice(0, 500)],
      ['content-type', 'text/plain'],
    ];
    if (refusal.receiptId !== undefined) headers.push(['receipt-id', refusal.receiptId]);
    this.write('ERROR', headers, Buffer.from(`${refusal.message}\n`));
    this.closed = true;
    this.pending.length = 0;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    void this.cleanUp();
  }

  private cleanUpDone: Promise<void> | null = null;

  /** Stops timers and subscriptions once; the socket may already be gone. */
  cleanUp(): Promise<void> {
    this.cleanUpDone ??= (async () => {
      this.closed = true;
      for (const timer of this.timers) clearTimeout(timer);
      const subscriptions = [...this.subscriptions.values()];
      this.subscriptions.clear();
      await Promise.all(subscriptions.map((s) => this.endSubscription(s)));
    })();
    return this.cleanUpDone;
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.socket.destroy();
    }
    return this.cleanUp();
  }
}

/** "cx,cy" (what the client can send, what it wants to receive, in ms); absent = "0,0". */
export function parseHeartBeat(text: string | undefined): { offerMs: number; wantMs: number } | null {
  if (text === undefined) return { offerMs: 0, wantMs: 0 };
  const match = /^([0-9]{1,9}),([0-9]{1,9})$/.exec(text.trim());
  if (!match) return null;
  return { offerMs: Number(match[1]), wantMs: Number(match[2]) };
}

function asRefusal(error: unknown, receiptId: string | undefined): Refusal {
  if (error instanceof Refusal) return error;
  if (error instanceof MambaError) return new Refusal(error.kind, error.message, receiptId);
  return new Refusal('internal', `the broker could not handle the frame: ${(error as Error).message ?? String(error)}`, receiptId);
}
