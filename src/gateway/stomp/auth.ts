// Who a STOMP connection is, and what it may do: login is an access key id, passcode its secret.
// The broker's keys file holds, per key, the signing key derived from the secret (src/auth/keys.ts);
// the secret a client presents is derived the same way (scrypt, off the event loop) and compared in
// constant time. Permissions are the broker's permissions file (produce/consume per topic pattern).
// Without `security.auth` in the cluster file every connection is let in and may do everything,
// as on the gRPC API. Written to move into a shared gateway module (MQTT uses the same check).
import { timingSafeEqual } from 'node:crypto';
import { deriveSigningKeyAsync, keyIdPattern, type StoredKey } from '../../auth/keys.js';
import type { Action, Permissions } from '../../auth/permissions.js';

export interface GatewayAuthSource {
  /** The broker's loaded keys (reloaded on change); null when the cluster runs without keys. */
  keys: (() => ReadonlyMap<string, StoredKey>) | null;
  permissions: (() => Permissions) | null;
}

export type LoginFailure = 'missing' | 'unknown_key' | 'bad_secret';

export class LoginRefused extends Error {
  override readonly name = 'LoginRefused';
  constructor(
    readonly reason: LoginFailure,
    message: string,
  ) {
    super(message);
  }
}

/** The key id who connects; '' on a cluster without access keys and no login. */
export type Principal = string;

/** Bounded work per login: a passcode longer than this is refused before any derivation. */
const passcodeBytesMax = 256;

export class GatewayAuth {
  constructor(private readonly source: GatewayAuthSource) {}

  get required(): boolean {
    return this.source.keys !== null;
  }

  /** The key id `login`/`passcode` prove; LoginRefused names the reason (never the secret). */
  async login(login: string | undefined, passcode: string | undefined): Promise<Principal> {
    const keys = this.source.keys;
    if (keys === null) return login ?? '';
    if (!login || passcode === undefined) throw new LoginRefused('missing', 'this broker requires login (an access key id) and passcode (its secret)');
    if (!keyIdPattern.test(login)) throw new LoginRefused('unknown_key', `unknown access key "${login.slice(0, 64).replace(/[^\x20-\x7e]/g, '?')}"`);
    const stored = keys().get(login);
    if (!stored || Buffer.byteLength(passcode) > passcodeBytesMax) {
      if (!stored) throw new LoginRefused('unknown_key', `unknown access key "${login}"`);
      throw new LoginRefused('bad_secret', `wrong passcode for access key "${login}"`);
    }
    const derived = await deriveSigningKeyAsync(login, passcode);
    if (derived.length !== stored.signingKey.length || !timingSafeEqual(derived, stored.signingKey))
      throw new LoginRefused('bad_secret', `wrong passcode for access key "${login}"`);
    return login;
  }

  allows(principal: Principal, action: Action, topic: string): boolean {
    const permissions = this.source.permissions;
    if (permissions === null) return true;
    return permissions().allows(principal, action, topic);
  }
}
