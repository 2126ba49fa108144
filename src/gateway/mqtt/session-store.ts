// The sessions one broker's MQTT listener knows: the live connection per client id (a second
// CONNECT with the same id takes the session over and closes the first, MQTT-3.1.4-2), the
// subscriptions of persistent sessions whose client went away, until their expiry, and the wills
// waiting for their Will Delay Interval (5.0: a connection to the session before it passes
// cancels the will; one that starts the session clean ends the old one, whose will goes at once).
// Bounded: past `storedMax` the session closest to expiry is forgotten. Offsets are not kept here:
// they are the consumer group's committed offsets in the cluster, so a session resumes on any
// broker.
import { assert } from '../../assert.js';

export type Subscriptions = ReadonlyMap<string, 0 | 1>;

export interface LiveSession {
  /** Another connection took this client id: close with reason "session taken over". */
  takeOver(): void;
}

interface Stored {
  subscriptions: Subscriptions;
  expiresMs: number;
}

/** A will waiting for its delay: `publish` stores it (once); it settles when the will is stored or refused. */
interface DelayedWill {
  publish: () => Promise<void>;
  timer: NodeJS.Timeout;
  bytes: number;
}

/** Bytes of will payloads held for their delay; past it the oldest goes early (memory stays bounded). */
export const delayedWillBytesMax = 64 * 1024 * 1024;

export class SessionStore {
  private readonly live = new Map<string, LiveSession>();
  private readonly stored = new Map<string, Stored>();
  /** In the order they were delayed (a Map keeps insertion order): the first is the oldest. */
  private readonly wills = new Map<string, DelayedWill>();
  private willBytes = 0;

  constructor(
    private readonly storedMax: number,
    private readonly now: () => number = Date.now,
  ) {
    assert(storedMax >= 1, 'storedMax must be positive');
  }

  get liveCount(): number {
    return this.live.size;
  }

  get storedCount(): number {
    return this.stored.size;
  }

  get delayedWillCount(): number {
    return this.wills.size;
  }

  /**
   * `session` is now the client id's connection; the previous one is taken over. A will waiting
   * for its delay is cancelled when the session resumes, and published now when `cleanStart`
   * ends the session it belonged to (MQTT 5.0 §3.1.3.2.2).
   */
  claim(clientId: string, session: LiveSession, cleanStart = false): void {
    // The previous connection closes (synchronously) while it is still the live one, so its
    // release() stores a persistent session's subscriptions for the new connection to take.
    const previous = this.live.get(clientId);
    if (previous && previous !== session) previous.takeOver();
    this.live.set(clientId, session);
    const will = this.wills.get(clientId);
    if (will) {
      this.cancelWill(clientId);
      if (cleanStart) void will.publish();
    }
  }

  /**
   * The connection of `clientId` ended without a normal DISCONNECT and its will (`bytes` of
   * payload) has a delay: `publish` runs after `delayMs` unless a connection claims the session
   * first. A will still waiting from an earlier connection of the id goes now (its session ended
   * with this one's). Bounded: past `storedMax` wills or delayedWillBytesMax bytes, the oldest
   * waiting will goes early (sooner than asked, never lost).
   */
  delayWill(clientId: string, delayMs: number, bytes: number, publish: () => Promise<void>): void {
    const earlier = this.wills.get(clientId);
    this.cancelWill(clientId);
    if (earlier) void earlier.publish();
    while (this.wills.size > 0 && (this.wills.size >= this.storedMax || this.willBytes + bytes > delayedWillBytesMax)) {
      const [oldestId, oldest] = this.wills.entries().next().value as [string, DelayedWill];
      this.cancelWill(oldestId);
      void oldest.publish();
    }
    const timer = setTimeout(() => {
      this.cancelWill(clientId);
      void publish();
    }, delayMs);
    timer.unref();
    this.wills.set(clientId, { publish, timer, bytes });
    this.willBytes += bytes;
  }

  /** The listener stops: every will still waiting goes now (its session ends with the listener). */
  async publishDelayedWills(): Promise<void> {
    const due = [...this.wills];
    for (const [clientId] of due) this.cancelWill(clientId);
    await Promise.all(due.map(([, will]) => will.publish()));
  }

  private cancelWill(clientId: string): void {
    const will = this.wills.get(clientId);
    if (!will) return;
    clearTimeout(will.timer);
    this.wills.delete(clientId);
    this.willBytes -= will.bytes;
  }

  /**
   * The stored subscriptions of a client id (and forgets them), or null when there are none or
   * they expired. A clean start calls it too, and drops what it gets.
   */
  take(clientId: string): Subscriptions | null {
    const found = this.stored.get(clientId);
    this.stored.delete(clientId);
    if (!found || found.expiresMs <= this.now()) return null;
    return found.subscriptions;
  }

  /** The connection ended; a persistent session keeps its subscriptions for `expiryMs`. */
  release(clientId: string, session: LiveSession, subscriptions: Subscriptions, expiryMs: number): void {
    if (this.live.get(clientId) !== session) return; // taken over earlier: the new connection owns the session
    this.live.delete(clientId);
    if (expiryMs <= 0 || subscriptions.size === 0) return;
    this.expire();
    if (this.stored.size >= this.storedMax) this.forgetSoonest();
    this.stored.set(clientId, { subscriptions: new Map(subscriptions), expiresMs: this.now() + expiryMs });
  }

  private expire(): void {
    const nowMs = this.now();
    for (const [id, s] of this.stored) if (s.expiresMs <= nowMs) this.stored.delete(id);
  }

  private forgetSoonest(): void {
    let soonest: string | null = null;
    let soonestMs = Number.POSITIVE_INFINITY;
    for (const [id, s] of this.stored)
      if (s.expiresMs < soonestMs) {
        soonest = id;
        soonestMs = s.expiresMs;
      }
    if (soonest !== null) this.stored.delete(soonest);
  }
}
