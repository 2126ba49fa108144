// The `security:` section of a cluster file: access keys and permissions (`auth`) and TLS
// (`tls`). Each part is off when absent, so a cluster file without the section runs in the clear
// with no keys. With `tls`, the client listener serves TLS and brokers talk to each other over
// mutual TLS (each presents its own certificate; `{broker}` in a path stands for the broker id).
import { isAbsolute, resolve } from 'node:path';
import { keyIdPattern } from '../auth/keys.js';
import type { TlsConfig } from '../auth/tls.js';

export { brokerPath, type TlsConfig } from '../auth/tls.js';
import { at, readInteger, readObject, readString, rejectUnknownKeys, type Where } from '../validation.js';

export interface AuthConfig {
  keysFile: string;
  permissionsFile: string;
  /** The key brokers sign their calls to other brokers' client API with (it must be in keysFile). */
  brokerKeyId: string;
  clockSkewMsMax: number;
  nonceCacheSizeMax: number;
}

export interface SecurityConfig {
  auth: AuthConfig | null;
  tls: TlsConfig | null;
}

export const noSecurity: SecurityConfig = { auth: null, tls: null };

export function readSecurity(value: unknown, where: Where, baseDir: string): SecurityConfig {
  const fields = readObject(value, where);
  rejectUnknownKeys(fields, ['auth', 'tls'], where);
  const path = (v: unknown, w: Where): string => {
    const text = readString(v, w);
    return isAbsolute(text) ? text : resolve(baseDir, text);
  };
  let auth: AuthConfig | null = null;
  if (fields.auth !== undefined) {
    const w = at(where, 'auth');
    const a = readObject(fields.auth, w);
    rejectUnknownKeys(a, ['keysFile', 'permissionsFile', 'brokerKeyId', 'clockSkewMsMax', 'nonceCacheSizeMax'], w);
    auth = {
      keysFile: path(a.keysFile, at(w, 'keysFile')),
      permissionsFile: path(a.permissionsFile, at(w, 'permissionsFile')),
      brokerKeyId: readString(a.brokerKeyId, at(w, 'brokerKeyId'), keyIdPattern),
      clockSkewMsMax: a.clockSkewMsMax === undefined ? 300_000 : readInteger(a.clockSkewMsMax, at(w, 'clockSkewMsMax'), 1000, 3_600_000),
      nonceCacheSizeMax: a.nonceCacheSizeMax === undefined ? 1_000_000 : readInteger(a.nonceCacheSizeMax, at(w, 'nonceCacheSizeMax'), 1000, 100_000_000),
    };
  }
  let tls: TlsConfig | null = null;
  if (fields.tls !== undefined) {
    const w = at(where, 'tls');
    const t = readObject(fields.tls, w);
    rejectUnknownKeys(t, ['caFile', 'certFile', 'keyFile'], w);
    tls = { caFile: path(t.caFile, at(w, 'caFile')), certFile: path(t.certFile, at(w, 'certFile')), keyFile: path(t.keyFile, at(w, 'keyFile')) };
  }
  return { auth, tls };
}
