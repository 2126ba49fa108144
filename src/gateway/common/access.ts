// Who a gateway connection is and what it may do: a protocol's user name and password are an
// access key id and its secret, checked against the keys file the broker loaded (the secret is
// derived as a client would and compared with the stored signing key; the secret is never kept),
// and every produce or consume is checked against the permissions file, as the gRPC guard does.
import { timingSafeEqual } from 'node:crypto';
import { deriveSigningKeyAsync, keyIdPattern, type StoredKey } from '../../auth/keys.js';
import type { Action, Permissions } from '../../auth/permissions.js';

/** The broker's live view of its keys and permissions files (reloaded on change); null: the cluster has no access keys. */
export interface GatewayAccess {
  keys(): ReadonlyMap<string, StoredKey>;
  permissions(): Permissions;
}

export type LoginRefusal = 'missing' | 'malformed' | 'unknown_key' | 'bad_secret';

export type LoginResult = { ok: true; keyId: string | null } | { ok: false; reason: LoginRefusal };

/** Bytes a presented secret may have (ours are 43 characters of base64url). */
const secretBytesMax = 256;

/**
 * Checks a key id and secret (the user name and password of a gateway protocol). Without access
 * keys in the cluster every connection is accepted, as the gRPC API accepts unsigned calls.
 */
export async function login(access: GatewayAccess | null, keyId: string | undefined, secret: Buffer | string | undefined): Promise<LoginResult> {
  if (access === null) return { ok: true, keyId: null };
  if (keyId === undefined || secret === undefined) return { ok: false, reason: 'missing' };
  const secretText = typeof secret === 'string' ? secret : secret.toString('utf8');
  if (!keyIdPattern.test(keyId) || secretText.length === 0 || secretText.length > secretBytesMax) return { ok: false, reason: 'malformed' };
  const stored = access.keys().get(keyId);
  // An unknown key costs the same derivation as a known one: the answer time does not tell them apart.
  const derived = await deriveSigningKeyAsync(keyId, secretText);
  if (!stored) return { ok: false, reason: 'unknown_key' };
  if (!timingSafeEqual(derived, stored.signingKey)) return { ok: false, reason: 'bad_secret' };
  return { ok: true, keyId };
}

/** Whether the logged-in key may do `action` on `topic` (always, when the cluster has no access keys). */
export function allows(access: GatewayAccess | null, keyId: string | null, action: Action, topic: string): boolean {
  if (access === null) return true;
  return keyId !== null && access.permissions().allows(keyId, action, topic);
}
