// Where a client finds its access key and the CA that vouches for the brokers, in this order:
// the options, the environment (MAMBA_KEY_ID and MAMBA_KEY_SECRET, MAMBA_TLS_CA), a credentials
// file (options.credentialsFile, else MAMBA_CREDENTIALS, else the default files the caller names;
// the CLI names ./data/credentials and ~/.mamba/credentials). The secret is turned into the
// signing key once, here, and kept nowhere else.
import { existsSync, readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { deriveSigningKey, keyIdPattern } from '../auth/keys.js';
import type { SigningKey } from '../auth/signature.js';

export interface AccessKey {
  keyId: string;
  secret: string;
}

export interface SecurityOptions {
  accessKey?: AccessKey;
  /** A signing key already derived from its secret (a broker's own gateway, which holds the keys file, not the secret); wins over the rest. */
  signingKey?: SigningKey;
  credentialsFile?: string;
  /** TLS towards the brokers: true (system CAs), or the CA file that signed their certificates. */
  tls?: boolean | { caFile: string };
}

export interface ClientSecurity {
  key: SigningKey | null;
  /** null: plain text; '' : TLS with the system CAs; else the CA file. */
  tlsCaFile: string | null;
  /** Where the key came from (for messages; never the secret). */
  keySource: string | null;
}

interface CredentialsFile {
  keyId: string | null;
  secret: string | null;
  tlsCaFile: string | null;
}

/** key = value lines: key_id, key_secret, tls_ca_file (relative to the file); # comments. */
export function parseCredentialsFile(text: string, source: string): CredentialsFile {
  const values = new Map<string, string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    const name = eq < 0 ? '' : line.slice(0, eq).trim();
    if (!['key_id', 'key_secret', 'tls_ca_file'].includes(name))
      throw new InvalidArgumentError(`${source}: line ${index + 1}: expected key_id, key_secret or tls_ca_file = value`);
    values.set(name, line.slice(eq + 1).trim());
  });
  const ca = values.get('tls_ca_file');
  return {
    keyId: values.get('key_id') ?? null,
    secret: values.get('key_secret') ?? null,
    tlsCaFile: ca ? (isAbsolute(ca) ? ca : resolve(dirname(source), ca)) : null,
  };
}

export function writeCredentialsFile(file: string, key: AccessKey, tlsCaFile: string | null): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const lines = ['# Mamba MQ access key: keep this file private', `key_id = ${key.keyId}`, `key_secret = ${key.secret}`];
  if (tlsCaFile) lines.push(`tls_ca_file = ${tlsCaFile}`);
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

function checked(key: AccessKey, source: string): AccessKey {
  if (!keyIdPattern.test(key.keyId)) throw new InvalidArgumentError(`${source}: key id must match ${keyIdPattern}`);
  if (key.secret.length < 16) throw new InvalidArgumentError(`${source}: the key secret is too short to be one`);
  return key;
}

export function resolveClientSecurity(options: SecurityOptions, env: NodeJS.ProcessEnv = process.env, defaultFiles: string[] = []): ClientSecurity {
  let key: AccessKey | null = null;
  let keySource: string | null = null;
  let fileCa: string | null = null;
  let derived: SigningKey | null = null;
  if (options.signingKey) {
    derived = options.signingKey;
    keySource = 'options';
  } else if (options.accessKey) {
    key = checked(options.accessKey, 'accessKey');
    keySource = 'options';
  } else if (env.MAMBA_KEY_ID || env.MAMBA_KEY_SECRET) {
    if (!env.MAMBA_KEY_ID || !env.MAMBA_KEY_SECRET) throw new InvalidArgumentError('set both MAMBA_KEY_ID and MAMBA_KEY_SECRET, or neither');
    key = checked({ keyId: env.MAMBA_KEY_ID, secret: env.MAMBA_KEY_SECRET }, 'MAMBA_KEY_ID/MAMBA_KEY_SECRET');
    keySource = 'environment';
  } else {
    const named = options.credentialsFile ?? env.MAMBA_CREDENTIALS;
    const file = named ?? defaultFiles.find((f) => existsSync(f));
    if (file) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        throw new InvalidArgumentError(`${file}: cannot read credentials file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
      const parsed = parseCredentialsFile(text, file);
      if (!parsed.keyId || !parsed.secret) throw new InvalidArgumentError(`${file}: needs key_id and key_secret`);
      key = checked({ keyId: parsed.keyId, secret: parsed.secret }, file);
      keySource = file;
      fileCa = parsed.tlsCaFile;
    }
  }
  let tlsCaFile: string | null = null;
  if (options.tls !== undefined) tlsCaFile = options.tls === false ? null : options.tls === true ? '' : options.tls.caFile;
  else if (env.MAMBA_TLS_CA) tlsCaFile = env.MAMBA_TLS_CA;
  else tlsCaFile = fileCa;
  if (derived) return { key: derived, tlsCaFile, keySource };
  return { key: key ? { keyId: key.keyId, signingKey: deriveSigningKey(key.keyId, key.secret) } : null, tlsCaFile, keySource };
}
