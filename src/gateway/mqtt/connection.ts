// One MQTT connection (3.1.1 or 5.0): frames parsed by mqtt-packet, then CONNECT (key id and
// secret), PUBLISH QoS 0/1 into a topic's queue through the gateway's idempotent producer (PUBACK
// once the quorum has it),
// SUBSCRIBE/UNSUBSCRIBE over topics and queues (one SourceReader per queue covered), keep-alive,
// last will, persistent sessions. Every refusal answers with the reason code the version has
// (CONNACK, PUBACK, SUBACK, DISCONNECT) or closes the connection when 3.1.1 has none.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import mqtt from 'mqtt-packet';
import type { IConnectPacket, IPublishPacket, ISubscribePacket, IUnsubscribePacket, Packet, UserProperties } from 'mqtt-packet';
import type { ReceivedMessage } from '../../client/client.js';
import { OutcomeUnknownError } from '../../client/producer.js';
import { NotFoundError } from '../../errors.js';
import { allows, login, type GatewayAccess } from '../common/access.js';
import type { GatewayBackend } from '../common/backend.js';
import type { GatewayTracing } from '../common/tracing.js';
import type { GatewayLog, GatewayMetrics } from '../common/metrics.js';
import { connackCode311, reason } from './reason-codes.js';
import type { SessionStore, Subscriptions } from './session-store.js';
import { deliveryQos, headersOf, propertiesOf } from './message-map.js';
import { SourceReader } from './source-reader.js';
import { destinationOf, isRefusal, parseFilter, printable, queueOf, sourcesOf, type Refusal, type Source } from './topic-map.js';
import { OutgoingWindow } from './window.js';

export interface MqttLimits {
  /** Largest MQTT packet accepted (the broker's messageBytesMax plus room for the topic and properties). */
  packetBytesMax: number;
  /** PUBLISHes of one connection waiting for their quorum acknowledgement (our Receive Maximum). */
  receiveMax: number;
  /** Our QoS 1 deliveries waiting for the client's PUBACK, at most (also bounded by the client's Receive Maximum). */
  sendWindowMax: number;
  /** A connection that sends no CONNECT within this is closed. */
  connectTimeoutMs: number;
  /** Queues one connection's subscriptions may cover. */
  sourcesMax: number;
  /** How long a persistent 3.1.1 session's subscriptions are kept (5.0 says its own, up to this). */
  sessionExpiryMsMax: number;
  /** How often wildcard subscriptions look for new topics and queues. */
  refreshMs: number;
}

export interface MqttContext {
  /** Reads through its client; stores through its idempotent producer (../common/backend.ts). */
  backend: GatewayBackend;
  /** Spans per PUBLISH received and delivered (a no-op when tracing is off). */
  tracing: GatewayTracing;
  access: GatewayAccess | null;
  metrics: GatewayMetrics;
  log: GatewayLog;
  limits: MqttLimits;
  sessions: SessionStore;
  /** Topics and their queue counts (cached briefly by the listener). */
  topics(): Promise<Array<{ name: string; queues: number }>>;
}

/** A client id that can name a consumer group (src/broker/names.ts), prefixed `mqtt.`. */
const clientIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,150}$/;
/** Packets a client may send behind its CONNECT before the CONNACK. */
const earlyPacketsMax = 32;

/** A PUBLISH from the client, or its will. */
interface Publication {
  topic: string;
  payload: Buffer | string;
  qos: 0 | 1 | 2;
  retain: boolean;
  messageId?: number;
  properties?: IPublishPacket['properties'];
}

/** How storing a Publication ended: success, or the reason code the client is told. */
interface PublishOutcome {
  code: number;
  why: string | null;
}

interface Will {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  properties: UserProperties | undefined;
  /** 5.0 Will Delay Interval (0: at once). */
  delayMs: number;
}

export class MqttConnection {
  private readonly parser = mqtt.parser();
  private version: 3 | 4 | 5 = 4;
  private state: 'connecting' | 'connected' | 'closed' = 'connecting';
  private clientId = '';
  private keyId: string | null = null;
  private will: Will | null = null;
  private persistent = false;
  private resume = false;
  private sessionExpiryMs = 0;
  private keepaliveMs = 0;
  private lastPacketMs = Date.now();
  private timer: NodeJS.Timeout | null = null;
  /** The last PUBLISH handed to the producer (admit), and the last one answered. */
  private admission: Promise<unknown> = Promise.resolve();
  private answering: Promise<void> = Promise.resolve();
  /** PUBLISHes received and not yet stored or refused (bounds the memory one client holds). */
  private publishesPending = 0;
  /** QoS 1 PUBLISHes among them: what 5.0's Receive Maximum bounds. */
  private acknowledgementsPending = 0;
  private drainWait: Promise<void> | null = null;
  private window: OutgoingWindow;
  private readonly subscriptions = new Map<string, 0 | 1>();
  private readonly readers = new Map<string, { reader: SourceReader; filters: Set<string> }>();
  /** The last SUBSCRIBE, UNSUBSCRIBE or session restore: each waits for the one before (see inOrder). */
  private subscriptionWork: Promise<void> = Promise.resolve();
  private refreshing = false;
  private connectSeen = false;
  private readonly early: Packet[] = [];
  private lastRefreshMs = Date.now();
  /** The will published when the connection closed, until it is stored or refused (else resolved). */
  private willStored: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: Socket,
    private readonly context: MqttContext,
  ) {
    this.window = new OutgoingWindow(context.limits.sendWindowMax);
    this.parser.on('packet', (packet: Packet) => this.onPacket(packet));
    this.parser.on('error', (error: Error) => this.refuseFrame('malformed', reason.malformedPacket, error.message));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close(false));
    socket.on('close', () => this.close(false));
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastPacketMs = Date.now();
    const heldBytes = this.parser.parse(chunk);
    // mqtt-packet holds a packet's bytes until all arrived: bound what it holds.
    if (heldBytes > this.context.limits.packetBytesMax)
      this.refuseFrame('too_large', reason.packetTooLarge, `a packet over ${this.context.limits.packetBytesMax} bytes`);
  }

  private tick(): void {
    const nowMs = Date.now();
    if (this.state === 'connecting' && nowMs - this.lastPacketMs > this.context.limits.connectTimeoutMs) {
      this.context.metrics.refusal('connect_timeout');
      this.close(false);
      return;
    }
    // While the gateway itself stopped reading (a backlog of PUBLISHes), the client's packets wait
    // unread in the socket: that silence is ours, not the client's.
    if (this.socket.isPaused()) this.lastPacketMs = nowMs;
    // MQTT-3.1.2-24: nothing from the client within one and a half keep-alive periods.
    if (this.state === 'connected' && this.keepaliveMs > 0 && nowMs - this.lastPacketMs > this.keepaliveMs * 1.5) {
      this.context.metrics.refusal('keepalive_timeout');
      this.disconnect(reason.keepAliveTimeout, 'no packet within 1.5 keep-alive periods');
      return;
    }
    if (this.state === 'connected' && nowMs - this.lastRefreshMs >= this.context.limits.refreshMs) {
      this.lastRefreshMs = nowMs;
      void this.refreshSources();
    }
  }

  private onPacket(packet: Packet): void {
    if (this.state === 'closed') return;
    if ((packet.length ?? 0) > this.context.limits.packetBytesMax)
      return this.refuseFrame('too_large', reason.packetTooLarge, `a packet over ${this.context.limits.packetBytesMax} bytes`);
    if (this.state === 'connecting') {
      // Packets sent right behind the CONNECT wait (bounded) while the key is checked.
      if (this.connectSeen) {
        if (this.early.length >= earlyPacketsMax) return this.refuseFrame('protocol', reason.receiveMaximumExceeded, 'too many packets before CONNACK');
        this.early.push(packet);
        return;
      }
      if (packet.cmd !== 'connect') return this.refuseFrame('protocol', reason.protocolError, `${packet.cmd} before CONNECT`);
      this.connectSeen = true;
      void this.onConnect(packet).catch((error: Error) => this.fail(error));
      return;
    }
    switch (packet.cmd) {
      case 'publish':
        return this.onPublish(packet);
      case 'puback':
        if (packet.messageId !== undefined) this.window.acknowledge(packet.messageId);
        return;
      case 'subscribe':
        return this.inOrder(() => this.onSubscribe(packet));
      case 'unsubscribe':
        return this.inOrder(() => this.onUnsubscribe(packet));
      case 'pingreq':
        return this.write({ cmd: 'pingresp' });
      case 'disconnect': {
        // 5.0: reason 0x04 asks for the will; any other normal DISCONNECT drops it (MQTT-3.1.2-10).
        const withWill = this.version === 5 && packet.reasonCode === 0x04;
        if (!withWill) this.will = null;
        if (this.version === 5 && packet.properties?.sessionExpiryInterval !== undefined)
          this.sessionExpiryMs = Math.min(packet.properties.sessionExpiryInterval * 1000, this.context.limits.sessionExpiryMsMax);
        return this.close(!withWill);
      }
      case 'connect':
        return this.refuseFrame('protocol', reason.protocolError, 'a second CONNECT');
      default:
        return this.refuseFrame('protocol', reason.protocolError, `${packet.cmd} is not expected from a client (QoS 2 is not supported)`);
    }
  }

  // ---------------------------------------------------------------- CONNECT

  private async onConnect(packet: IConnectPacket): Promise<void> {
    this.version = packet.protocolVersion === 5 ? 5 : packet.protocolVersion === 3 ? 3 : 4;
    this.keepaliveMs = (packet.keepalive ?? 0) * 1000;
    const clean = packet.clean !== false;
    const expiryS = this.version === 5 ? (packet.properties?.sessionExpiryInterval ?? 0) : clean ? 0 : Number.POSITIVE_INFINITY;
    this.sessionExpiryMs = Math.min(expiryS * 1000, this.context.limits.sessionExpiryMsMax);
    this.persistent = this.sessionExpiryMs > 0 || !clean;
    this.resume = !clean;
    let assigned: string | null = null;
    if (packet.clientId === '') {
      if (this.persistent) return this.refuseConnect(reason.clientIdentifierNotValid, 'a persistent session needs a client id');
      assigned = `anon-${randomBytes(8).toString('hex')}`;
    } else if (!clientIdPattern.test(packet.clientId)) {
      return this.refuseConnect(reason.clientIdentifierNotValid, 'a client id is letters, digits, ".", "_", ":" or "-" (at most 151)');
    }
    this.clientId = assigned ?? packet.clientId;
    const checked = await login(this.context.access, packet.username, packet.password);
    if (this.state === 'closed') return;
    if (!checked.ok) {
      this.context.metrics.refusal(`auth_${checked.reason}`);
      // The user name is logged only when it is a known key id: a mangled CONNECT can run the
      // password into it (the gateway fuzz run found this for STOMP).
      const username = packet.username ?? '';
      const known = this.context.access?.keys().has(username) === true;
      this.context.log.info('mqtt.connect.refused', { keyId: known ? username : `(${username.length} characters)`, reason: checked.reason });
      return this.refuseConnect(reason.badUserNameOrPassword, 'wrong access key id or secret (user name and password)');
    }
    this.keyId = checked.keyId;
    const willRefusal = packet.will ? this.checkWill(packet.will) : null;
    if (willRefusal) return this.refuseConnect(willRefusal.code, willRefusal.why);
    this.state = 'connected';
    if (this.version === 5 && packet.properties?.receiveMaximum)
      this.window = new OutgoingWindow(Math.min(packet.properties.receiveMaximum, this.context.limits.sendWindowMax));
    this.context.sessions.claim(this.clientId, this.sessionHandle, clean);
    const stored = this.context.sessions.take(this.clientId);
    const sessionPresent = this.resume && stored !== null;
    this.write(this.connack(reason.success, sessionPresent, assigned));
    this.context.log.debug('mqtt.connected', { clientId: this.clientId, keyId: this.keyId, version: this.version, persistent: this.persistent });
    // The stored subscriptions come back before any SUBSCRIBE or UNSUBSCRIBE sent behind the CONNECT.
    if (stored && sessionPresent) this.inOrder(() => this.restore(stored));
    for (const early of this.early.splice(0)) this.onPacket(early);
  }

  private async restore(stored: Subscriptions): Promise<void> {
    for (const [filter, qos] of stored) {
      await this.subscribe(filter, qos).catch(() => undefined);
      if (this.state !== 'connected') return;
    }
  }

  private checkWill(will: NonNullable<IConnectPacket['will']>): { code: number; why: string } | null {
    if ((will.qos ?? 0) > 1) return { code: reason.qosNotSupported, why: 'a will of QoS 2: the maximum QoS is 1' };
    const destination = destinationOf(will.topic);
    if (isRefusal(destination)) return { code: reason.topicNameInvalid, why: destination.why };
    if (!allows(this.context.access, this.keyId, 'produce', destination.topic))
      return { code: reason.notAuthorized, why: `no produce permission on ${destination.topic}` };
    const payload = typeof will.payload === 'string' ? Buffer.from(will.payload) : will.payload;
    const delayS = this.version === 5 ? (will.properties?.willDelayInterval ?? 0) : 0;
    this.will = {
      topic: will.topic,
      payload,
      qos: will.qos === 1 ? 1 : 0,
      retain: will.retain === true,
      properties: will.properties?.userProperties,
      delayMs: Math.min(delayS * 1000, this.context.limits.sessionExpiryMsMax),
    };
    return null;
  }

  private connack(code: number, sessionPresent: boolean, assigned: string | null): Packet {
    if (this.version !== 5) return { cmd: 'connack', returnCode: connackCode311(code), sessionPresent };
    const properties =
      code === reason.success
        ? {
            maximumQoS: 1 as const,
            retainAvailable: true,
            maximumPacketSize: this.context.limits.packetBytesMax,
            receiveMaximum: this.context.limits.receiveMax,
            topicAliasMaximum: 0,
            wildcardSubscriptionAvailable: true,
            sharedSubscriptionAvailable: false,
            subscriptionIdentifiersAvailable: false,
            ...(assigned ? { assignedClientIdentifier: assigned } : {}),
          }
        : {};
    return { cmd: 'connack', reasonCode: code, sessionPresent, properties } as Packet;
  }

  private refuseConnect(code: number, why: string): void {
    this.context.metrics.refusal(`connack_${code.toString(16)}`);
    const packet = this.connack(code, false, null);
    if (this.version === 5 && code !== reason.success) (packet as { properties: Record<string, unknown> }).properties = { reasonString: why };
    this.write(packet);
    this.will = null;
    this.close(false);
  }

  // ---------------------------------------------------------------- PUBLISH

  private onPublish(packet: IPublishPacket): void {
    if (packet.qos === 2) return this.refuseFrame('qos2', reason.qosNotSupported, 'QoS 2 is not supported (maximum QoS 1)');
    if (packet.properties?.topicAlias !== undefined) return this.refuseFrame('protocol', reason.protocolError, 'topic aliases are not supported (maximum 0)');
    const receiveMax = this.context.limits.receiveMax;
    // 5.0's Receive Maximum counts QoS 1 PUBLISHes only: QoS 0 ones have no PUBACK to wait for.
    if (packet.qos === 1) this.acknowledgementsPending++;
    if (this.version === 5 && this.acknowledgementsPending > receiveMax)
      return this.refuseFrame('receive_max', reason.receiveMaximumExceeded, `more than ${receiveMax} QoS 1 PUBLISHes in flight`);
    // Any other backlog (QoS 0, or 3.1.1 which has no Receive Maximum) stops reading until it drains.
    this.publishesPending++;
    if (this.publishesPending > receiveMax) this.socket.pause();
    // Handed to the producer one after the other (route lookups may take a while), so that a
    // connection's messages to one queue are stored in the order they came; several may wait for
    // their quorum at once. PUBACKs leave in that order too (MQTT-4.6.0-2).
    const admitted = this.admission.then(() => this.admit(packet));
    this.admission = admitted;
    this.answering = this.answering
      .then(() => admitted)
      .then((stored) => stored.outcome)
      .then((outcome) => this.answer(packet, outcome))
      .catch((error: Error) => this.fail(error))
      .finally(() => {
        this.publishesPending--;
        if (packet.qos === 1) this.acknowledgementsPending--;
        if (this.publishesPending <= receiveMax && this.state !== 'closed') this.socket.resume();
      });
  }

  /**
   * Checks a PUBLISH (or the will) and hands it to the gateway's producer. Never rejects: the
   * outcome is success once the quorum has the message, else the reason code of the refusal.
   */
  private async admit(packet: Publication): Promise<{ outcome: Promise<PublishOutcome> }> {
    const settled = (outcome: PublishOutcome) => ({ outcome: Promise.resolve(outcome) });
    const destination = destinationOf(packet.topic);
    if (isRefusal(destination)) return settled({ code: reason.topicNameInvalid, why: destination.why }); // no topic to name a span after
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const { headers, key } = headersOf(packet.properties?.userProperties, {
      retain: packet.retain,
      qos: packet.qos === 0 ? 0 : 1,
      contentType: packet.properties?.contentType,
    });
    const span = this.context.tracing.startPublish(destination.topic, headers, {
      clientId: this.clientId,
      destination: packet.topic,
      payloadBytes: payload.length,
    });
    const failed = (outcome: PublishOutcome): PublishOutcome => {
      span.end({ problem: outcome.why ?? `reason code ${outcome.code}` });
      return outcome;
    };
    if (!allows(this.context.access, this.keyId, 'produce', destination.topic))
      return settled(failed({ code: reason.notAuthorized, why: `no produce permission on topic ${destination.topic}` }));
    let queue: number | Refusal;
    try {
      const route = await this.context.backend.client.cluster.topic(destination.topic);
      queue = queueOf(destination, route.queues, packet.topic, key);
    } catch (error) {
      return settled(failed(this.publishFailure(error, destination.topic)));
    }
    if (typeof queue !== 'number') return settled(failed({ code: reason.topicNameInvalid, why: queue.why }));
    const sent = this.context.backend.publish(destination.topic, { key, body: payload, headers: span.headers }, { queue });
    const outcome = sent.then(
      (stored) => {
        span.end(stored);
        this.context.metrics.message('in', payload.length);
        return { code: reason.success, why: null };
      },
      (error: unknown) => failed(this.publishFailure(error, destination.topic)),
    );
    return { outcome };
  }

  private publishFailure(error: unknown, topic: string): PublishOutcome {
    if (error instanceof NotFoundError) return { code: reason.topicNameInvalid, why: `no topic ${topic}` };
    this.context.log.warn('mqtt.publish.failed', { clientId: this.clientId, topic, problem: (error as Error).message });
    // The producer never sent it elsewhere, and sending it again may store it twice: say so.
    if (error instanceof OutcomeUnknownError) return { code: reason.unspecifiedError, why: 'not acknowledged; it may or may not be stored' };
    return { code: reason.unspecifiedError, why: 'not stored; publish again' };
  }

  /** A refusal is counted; a QoS 1 PUBLISH gets its PUBACK (3.1.1 has no refusal in one: the connection closes). */
  private answer(packet: Publication, outcome: PublishOutcome): void {
    if (outcome.code !== reason.success) this.context.metrics.refusal(`publish_${outcome.code.toString(16)}`);
    if (packet.qos !== 1 || packet.messageId === undefined || this.state === 'closed') return;
    if (this.version === 5) {
      const properties = outcome.why === null ? {} : { properties: { reasonString: outcome.why } };
      this.write({ cmd: 'puback', messageId: packet.messageId, reasonCode: outcome.code, ...properties } as Packet);
    } else if (outcome.code === reason.success) this.write({ cmd: 'puback', messageId: packet.messageId });
    else this.close(false);
  }

  // ---------------------------------------------------------------- SUBSCRIBE

  /**
   * Runs `work` after the subscription work before it: a SUBSCRIBE waits for the topic list, and an
   * UNSUBSCRIBE right behind it must not overtake it (its UNSUBACK would say 0x11 and leave the
   * subscription in place). Answers leave in the order the packets came.
   */
  private inOrder(work: () => Promise<void> | void): void {
    this.subscriptionWork = this.subscriptionWork.then(() => (this.state === 'connected' ? work() : undefined)).catch((error: Error) => this.fail(error));
  }

  private async onSubscribe(packet: ISubscribePacket): Promise<void> {
    const granted: number[] = [];
    for (const s of packet.subscriptions) {
      granted.push(await this.subscribe(s.topic, s.qos >= 1 ? 1 : 0));
      if (this.state !== 'connected') return;
    }
    const codes = this.version === 5 ? granted : granted.map((c) => Math.min(c, 0x80));
    this.write({ cmd: 'suback', messageId: packet.messageId, granted: codes } as Packet);
  }

  /** Adds (or replaces) one subscription; the granted QoS or a failure reason code. */
  private async subscribe(filterText: string, qos: 0 | 1): Promise<number> {
    const filter = parseFilter(filterText);
    if (isRefusal(filter))
      return this.refuseSubscription(filter.refused === 'unsupported' ? reason.sharedSubscriptionsNotSupported : reason.topicFilterInvalid);
    const topics = await this.context.topics();
    // The connection may have closed meanwhile (a DISCONNECT right behind the SUBSCRIBE).
    if (this.state !== 'connected') return reason.unspecifiedError;
    if (filter.topic !== null) {
      if (!topics.some((t) => t.name === filter.topic)) return this.refuseSubscription(reason.topicFilterInvalid);
      if (!allows(this.context.access, this.keyId, 'consume', filter.topic)) return this.refuseSubscription(reason.notAuthorized);
    }
    const covered = sourcesOf(filter, topics);
    // A queue the topic does not have (`orders/9` of 4 queues) would be granted and deliver nothing.
    if (filter.topic !== null && filter.queue !== null && covered.length === 0) return this.refuseSubscription(reason.topicFilterInvalid);
    const sources = this.permitted(covered);
    const adding = sources.filter((s) => !this.readers.has(readerKey(s))).length;
    if (this.readers.size + adding > this.context.limits.sourcesMax) return this.refuseSubscription(0x97); // quota exceeded
    this.subscriptions.set(filterText, qos);
    for (const source of sources) this.attach(source, filterText, qos);
    return qos;
  }

  private refuseSubscription(code: number): number {
    this.context.metrics.refusal(`subscribe_${code.toString(16)}`);
    return code;
  }

  private permitted(sources: Source[]): Source[] {
    return sources.filter((s) => allows(this.context.access, this.keyId, 'consume', s.topic));
  }

  private attach(source: Source, filter: string, qos: 0 | 1): void {
    // close() stopped every reader: one started after it would read for nobody, forever.
    if (this.state !== 'connected') return;
    const key = readerKey(source);
    const existing = this.readers.get(key);
    if (existing) {
      existing.filters.add(filter);
      existing.reader.qos = Math.max(existing.reader.qos, qos) as 0 | 1;
      return;
    }
    const position = { consumerGroup: this.persistent ? `mqtt.${this.clientId}` : null, resume: this.resume };
    const reader = new SourceReader(
      this.context.backend.client,
      source,
      qos,
      { publish: (source, q, m, r) => this.deliver(source, q, m, r) },
      position,
      this.context.log,
    );
    this.readers.set(key, { reader, filters: new Set([filter]) });
    reader.start();
  }

  private onUnsubscribe(packet: IUnsubscribePacket): void {
    const codes = packet.unsubscriptions.map((filter) => {
      const existed = this.subscriptions.delete(filter);
      for (const [key, entry] of this.readers) {
        entry.filters.delete(filter);
        if (entry.filters.size === 0) {
          void entry.reader.stop();
          this.readers.delete(key);
        }
      }
      return existed ? reason.success : 0x11; // no subscription existed
    });
    this.write(
      (this.version === 5 ? { cmd: 'unsuback', messageId: packet.messageId, granted: codes } : { cmd: 'unsuback', messageId: packet.messageId }) as Packet,
    );
  }

  /** Wildcard subscriptions take topics and queues created since. */
  private async refreshSources(): Promise<void> {
    if (this.refreshing || this.subscriptions.size === 0) return;
    this.refreshing = true;
    try {
      const topics = await this.context.topics();
      if (this.state !== 'connected') return;
      for (const [text, qos] of this.subscriptions) {
        const filter = parseFilter(text);
        if (isRefusal(filter)) continue;
        for (const source of this.permitted(sourcesOf(filter, topics)))
          if (this.readers.size < this.context.limits.sourcesMax || this.readers.has(readerKey(source))) this.attach(source, text, qos);
      }
    } catch {
      // the next refresh tries again
    } finally {
      this.refreshing = false;
    }
  }

  // ---------------------------------------------------------------- delivery

  /** Writes one stored message; true once the client has it (QoS 0: written, QoS 1: PUBACKed). */
  private async deliver(source: Source, grantedQos: 0 | 1, message: ReceivedMessage, retained: boolean): Promise<boolean> {
    if (this.state !== 'connected') return false;
    const qos = deliveryQos(grantedQos, message);
    const slot = qos === 1 ? await this.window.take() : null;
    if ((qos === 1 && slot === null) || this.state !== 'connected') return false;
    const facts = { clientId: this.clientId, destination: source.name, payloadBytes: message.body.length };
    const span = this.context.tracing.startDeliver(source.topic, source.queue, message.offset, message.headers, facts);
    const properties = this.version === 5 ? propertiesOf(message, span?.headers) : undefined;
    this.write({
      cmd: 'publish',
      topic: source.name,
      payload: message.body,
      retain: retained,
      dup: false,
      qos,
      ...(slot ? { messageId: slot.packetId } : {}),
      ...(properties ? { properties } : {}),
    });
    this.context.metrics.message('out', message.body.length);
    if (slot === null) {
      span?.end();
      await this.drained();
      return this.state === 'connected';
    }
    const acked = await slot.acked;
    span?.end(acked ? undefined : 'the connection ended before the PUBACK');
    return acked;
  }

  /**
   * Resolves once the socket's send buffer is below its high-water mark, or the connection ended:
   * QoS 0 deliveries have no PUBACK to pace them, so a slow client holds its readers back here
   * instead of growing the buffer.
   */
  private drained(): Promise<void> {
    if (!this.socket.writableNeedDrain || this.socket.destroyed) return Promise.resolve();
    this.drainWait ??= new Promise<void>((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        this.drainWait = null;
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
    return this.drainWait;
  }

  // ---------------------------------------------------------------- endings

  /** A frame the protocol refuses: 5.0 gets a DISCONNECT with the reason, then the connection closes. */
  private refuseFrame(what: string, code: number, why: string): void {
    if (this.state === 'closed') return;
    this.context.metrics.refusal(what);
    this.context.log.info('mqtt.frame.refused', { clientId: this.clientId, reason: what, problem: printable(why) });
    if (this.state === 'connecting') return this.refuseConnect(code, why);
    this.disconnect(code, why);
  }

  private disconnect(code: number, why: string): void {
    if (this.state === 'closed') return;
    if (this.version === 5 && this.state === 'connected') this.write({ cmd: 'disconnect', reasonCode: code, properties: { reasonString: why } } as Packet);
    this.close(false);
  }

  private fail(error: Error): void {
    this.context.log.warn('mqtt.connection.failed', { clientId: this.clientId, problem: error.message });
    this.disconnect(reason.unspecifiedError, 'internal failure');
  }

  private write(packet: Packet): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(mqtt.generate(packet, { protocolVersion: this.version }));
  }

  /** Ends the connection once: the will (unless `normal`), readers stopped, the session released. */
  close(normal: boolean): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    if (this.timer) clearInterval(this.timer);
    this.window.close();
    for (const { reader } of this.readers.values()) void reader.stop();
    this.readers.clear();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    if (!wasConnected) return;
    this.context.sessions.release(this.clientId, this.sessionHandle, this.subscriptions as Subscriptions, this.persistent ? this.sessionExpiryMs : 0);
    const will = normal ? null : this.will;
    if (!will) return;
    // The will waits for its delay, but never past the session's end (5.0 §3.1.3.2.2): a
    // session that ends with the connection (expiry 0) has its will published now.
    const delayMs = Math.min(will.delayMs, this.persistent ? this.sessionExpiryMs : 0);
    if (delayMs > 0) this.context.sessions.delayWill(this.clientId, delayMs, will.payload.length, () => this.publishWill(will));
    else this.willStored = this.publishWill(will);
  }

  /**
   * The broker stops: the server ends the connection (5.0: DISCONNECT 0x8B), which is no normal
   * DISCONNECT, so the will goes (MQTT 5.0 §3.1.2.5). Settles once a will published now is stored
   * or refused; a delayed one waits in the session store.
   */
  shutDown(): Promise<void> {
    this.disconnect(reason.serverShuttingDown, 'the broker is stopping');
    return this.willStored;
  }

  /** After the client's own PUBLISHes; nobody to answer, a refusal is counted and logged. */
  private publishWill(will: Will): Promise<void> {
    const publication: Publication = {
      topic: will.topic,
      payload: will.payload,
      qos: will.qos,
      retain: will.retain,
      properties: { userProperties: will.properties },
    };
    const admitted = this.admission.then(() => this.admit(publication));
    this.admission = admitted;
    return admitted
      .then((stored) => stored.outcome)
      .then((outcome) => this.answer(publication, outcome))
      .catch((error: Error) => this.context.log.warn('mqtt.will.failed', { clientId: this.clientId, problem: error.message }));
  }

  private readonly sessionHandle = { takeOver: () => this.disconnect(reason.sessionTakenOver, 'another connection took this client id') };
}

function readerKey(source: Source): string {
  return `${source.topic}/${source.queue}`;
}
