// Access keys. A key is an id and a secret; the secret is shown once, when the key is made.
// Brokers never store the secret: the keys file holds, per key, a signing key derived from the
// secret with scrypt (salted with the key id). Clients derive the same signing key from the
// secret and HMAC each call with it (signature.ts), so a broker can check a signature without
// ever knowing the secret, and the secret cannot be recovered from the keys file. The keys file is
// still sensitive: whoever reads it can sign calls as any key in it (as with any shared-key HMAC).
import { randomBytes, scrypt, scryptSync, type ScryptOptions } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError, readTextFile } from '../validation.js';

export const keyIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const derivation = 'scrypt-n16384-r8-p1';
const signingKeyBytes = 32;
const secretBytes = 32;

export interface StoredKey {
  id: string;
  /** HMAC-SHA256 key derived from the secret; never logged. */
  signingKey: Buffer;
  createdMs: number;
}

const scryptOptions: ScryptOptions = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const saltOf = (keyId: string): string => `mamba-mq/access-key/${keyId}`;

/** The HMAC key a secret stands for (about 50 ms of scrypt: derive once per client, not per call). */
export function deriveSigningKey(keyId: string, secret: string): Buffer {
  return scryptSync(secret, saltOf(keyId), signingKeyBytes, scryptOptions);
}

/** deriveSigningKey off the event loop (a gateway checking a login's secret). */
export function deriveSigningKeyAsync(keyId: string, secret: string): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret, saltOf(keyId), signingKeyBytes, scryptOptions, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

export function newKeyId(): string {
  return `AK${randomBytes(8).toString('hex').toUpperCase()}`;
}

export function newSecret(): string {
  return randomBytes(secretBytes).toString('base64url');
}

/** Parses a keys file: one JSON object a line ({"id","derivation","signingKey","createdMs"}). */
export function parseKeysFile(text: string, source: string): Map<string, StoredKey> {
  const keys = new Map<string, StoredKey>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line.length === 0 || line.startsWith('#')) return;
    const where = `${source}: line ${index + 1}`;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new ConfigError(`${where}: not a JSON object`);
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new ConfigError(`${where}: not a JSON object`);
    const id = entry.id;
    if (typeof id !== 'string' || !keyIdPattern.test(id)) throw new ConfigError(`${where}: id: must match ${keyIdPattern}`);
    if (entry.derivation !== derivation) throw new ConfigError(`${where}: derivation: must be "${derivation}"`);
    const hex = entry.signingKey;
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex))
      throw new ConfigError(`${where}: signingKey: must be ${signingKeyBytes} bytes of lower-case hex`);
    const createdMs = entry.createdMs;
    if (typeof createdMs !== 'number' || !Number.isSafeInteger(createdMs) || createdMs < 0)
      throw new ConfigError(`${where}: createdMs: must be a non-negative integer`);
    if (keys.has(id)) throw new ConfigError(`${where}: id: "${id}" is used twice`);
    keys.set(id, { id, signingKey: Buffer.from(hex, 'hex'), createdMs });
  });
  return keys;
}

export function loadKeysFile(file: string): Map<string, StoredKey> {
  return parseKeysFile(readTextFile(file, 'keys file'), file);
}

/** Makes a key, appends its derived entry to the keys file (created 0600), returns id and secret. */
export function createKey(keysFile: string, id: string = newKeyId(), nowMs = Date.now()): { id: string; secret: string } {
  if (!keyIdPattern.test(id)) throw new ConfigError(`key id "${id}" does not match ${keyIdPattern}`);
  if (existsSync(keysFile) && loadKeysFile(keysFile).has(id)) throw new ConfigError(`${keysFile}: key "${id}" exists already`);
  const secret = newSecret();
  const entry = { id, derivation, signingKey: deriveSigningKey(id, secret).toString('hex'), createdMs: nowMs };
  mkdirSync(dirname(keysFile), { recursive: true, mode: 0o700 });
  appendFileSync(keysFile, `${JSON.stringify(entry)}\n`, { mode: 0o600 });
  chmodSync(keysFile, 0o600);
  return { id, secret };
}
