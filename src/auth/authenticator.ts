// Checks call signatures (signature.ts) against the keys a broker loaded, refusing missing,
// malformed, unknown, wrong, stale (outside the clock skew window) and replayed signatures.
// Every refusal is counted by reason; the counts are what the metrics layer exports.
import { timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { ResourceExhaustedError, UnauthenticatedError } from '../errors.js';
import { assert } from '../assert.js';
import type { StoredKey } from './keys.js';
import { keyIdHeader, nonceHeader, signatureHeader, signatureOf, timestampHeader } from './signature.js';

export type AuthFailureReason = 'missing' | 'malformed' | 'unknown_key' | 'bad_signature' | 'stale' | 'replayed';
export const authFailureReasons: readonly AuthFailureReason[] = ['missing', 'malformed', 'unknown_key', 'bad_signature', 'stale', 'replayed'];

/** Refusal counts of this process, by reason (the broker's metric is fed through `onFailure`). */
export const authFailureCounts: Record<AuthFailureReason, number> = { missing: 0, malformed: 0, unknown_key: 0, bad_signature: 0, stale: 0, replayed: 0 };

export class AuthFailure extends UnauthenticatedError {
  constructor(
    readonly reason: AuthFailureReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Nonces seen within the replay window, bounded by `sizeMax`. Entries expire `ttlMs` after
 * arrival; arrival order is expiry order, so expired entries are always at the front of the map.
 */
export class NonceCache {
  private readonly expiresMsByNonce = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly sizeMax: number,
  ) {
    assert(ttlMs > 0 && sizeMax > 0, 'nonce cache needs a positive ttl and size');
  }

  get size(): number {
    return this.expiresMsByNonce.size;
  }

  /** True when `nonce` was new and is now remembered; false when it was seen already. */
  remember(nonce: string, nowMs: number): boolean {
    this.expire(nowMs);
    if (this.expiresMsByNonce.has(nonce)) return false;
    if (this.expiresMsByNonce.size >= this.sizeMax) {
      throw new ResourceExhaustedError(`${this.sizeMax} signed calls within the replay window (limit nonceCacheSizeMax); retry later`);
    }
    this.expiresMsByNonce.set(nonce, nowMs + this.ttlMs);
    return true;
  }

  private expire(nowMs: number): void {
    for (const [nonce, expiresMs] of this.expiresMsByNonce) {
      if (expiresMs > nowMs) return;
      this.expiresMsByNonce.delete(nonce);
    }
  }
}

export interface AuthenticatorOptions {
  clockSkewMsMax: number;
  nonceCacheSizeMax: number;
  now?: () => number;
  /** Called on every refused signature with the reason only (never key material): the metric. */
  onFailure?: (reason: AuthFailureReason) => void;
}

export class Authenticator {
  private readonly nonces: NonceCache;
  private readonly now: () => number;

  constructor(
    private readonly keys: () => ReadonlyMap<string, StoredKey>,
    private readonly options: AuthenticatorOptions,
  ) {
    // A nonce must be remembered as long as its timestamp stays acceptable: up to twice the
    // skew window after arrival (a timestamp skewMs in the future stays fresh for 2 × skewMs).
    this.nonces = new NonceCache(2 * options.clockSkewMsMax + 1, options.nonceCacheSizeMax);
    this.now = options.now ?? Date.now;
  }

  /** The key id a call's metadata proves, or an AuthFailure (UNAUTHENTICATED). */
  authenticate(method: string, metadata: Metadata): string {
    try {
      return this.check(method, metadata);
    } catch (error) {
      if (error instanceof AuthFailure) {
        authFailureCounts[error.reason]++;
        this.options.onFailure?.(error.reason);
      }
      throw error;
    }
  }

  private check(method: string, metadata: Metadata): string {
    const keyId = single(metadata, keyIdHeader);
    const timestampText = single(metadata, timestampHeader);
    const nonce = single(metadata, nonceHeader);
    const signature = single(metadata, signatureHeader);
    if (keyId === null && signature === null)
      throw new AuthFailure(
        'missing',
        `this broker requires an access key: sign calls with ${keyIdHeader}, ${timestampHeader}, ${nonceHeader} and ${signatureHeader}`,
      );
    if (keyId === null || timestampText === null || nonce === null || signature === null)
      throw new AuthFailure('malformed', `a signed call needs each of ${keyIdHeader}, ${timestampHeader}, ${nonceHeader}, ${signatureHeader} exactly once`);
    if (!/^[0-9]{1,16}$/.test(timestampText)) throw new AuthFailure('malformed', `${timestampHeader} must be milliseconds since the epoch`);
    if (!/^[0-9a-f]{16,64}$/.test(nonce)) throw new AuthFailure('malformed', `${nonceHeader} must be 16 to 64 lower-case hex digits`);
    if (!/^[0-9a-f]{64}$/.test(signature)) throw new AuthFailure('malformed', `${signatureHeader} must be 64 lower-case hex digits (HMAC-SHA256)`);
    const key = this.keys().get(keyId);
    if (!key) throw new AuthFailure('unknown_key', `unknown access key "${printable(keyId)}"`);
    const timestampMs = Number(timestampText);
    const expected = Buffer.from(signatureOf(key.signingKey, method, timestampMs, nonce), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) throw new AuthFailure('bad_signature', `wrong signature for access key "${keyId}"`);
    const nowMs = this.now();
    const skewMs = Math.abs(nowMs - timestampMs);
    if (skewMs > this.options.clockSkewMsMax)
      throw new AuthFailure(
        'stale',
        `signature timestamp is ${skewMs} ms away from the broker's clock (limit ${this.options.clockSkewMsMax} ms, clockSkewMsMax)`,
      );
    if (!this.nonces.remember(`${keyId}/${nonce}`, nowMs))
      throw new AuthFailure('replayed', `replayed signature (nonce seen before) for access key "${keyId}"`);
    return keyId;
  }
}

function single(metadata: Metadata, header: string): string | null {
  const values = metadata.get(header);
  if (values.length === 0) return null;
  const value = values[0];
  if (values.length > 1 || typeof value !== 'string') throw new AuthFailure('malformed', `${header} must be given once, as text`);
  return value;
}

/** Key ids in messages: bounded and printable, whatever a client sent. */
function printable(text: string): string {
  return text.slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
}
