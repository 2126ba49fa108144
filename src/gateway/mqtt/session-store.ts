// The sessions one broker's MQTT listener knows: the live connection per client id (a second
// CONNECT with the same id takes the session over and closes the first, MQTT-3.1.4-2) and the
// subscriptions of persistent sessions whose client went away, until their expiry. Bounded: past
// `storedMax` the session closest to expiry is forgotten. Offsets are not kept here: they are the
// consumer group's committed offsets in the cluster, so a session resumes on any broker.
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

export class SessionStore {
  private readonly live = new Map<string, LiveSession>();
  private readonly stored = new Map<string, Stored>();

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

  /** `session` is now the client id's connection; the previous one is taken over. */
  claim(clientId: string, session: LiveSession): void {
    const previous = this.live.get(clientId);
    this.live.set(clientId, session);
    if (previous && previous !== session) previous.takeOver();
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
    if (this.live.get(clientId) !== session) return; // taken over: the new connection owns the session
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
