// Unit: key derivation, signatures, the replay window, permission patterns, credentials lookup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { createKey, deriveSigningKey, loadKeysFile, parseKeysFile } from '../../src/auth/keys.js';
import { signCall } from '../../src/auth/signature.js';
import { Authenticator, AuthFailure, NonceCache, authFailureCounts } from '../../src/auth/authenticator.js';
import { parsePermissions } from '../../src/auth/permissions.js';
import { resolveClientSecurity } from '../../src/client/credentials.js';
import { parseClusterConfig } from '../../src/config/cluster.js';
import { ResourceExhaustedError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'mamba-auth-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

test('the keys file holds the derived signing key, never the secret, and is private', () => {
  const file = join(dir, 'keys');
  const made = createKey(file, 'app1');
  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes(made.secret));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(loadKeysFile(file).get('app1')!.signingKey, deriveSigningKey('app1', made.secret));
  assert.throws(() => createKey(file, 'app1'), /exists already/);
  assert.throws(() => parseKeysFile('{"id":"x","derivation":"plain","signingKey":"00","createdMs":1}\n', 'k'), /k: line 1: derivation/);
  assert.throws(() => parseKeysFile('not json', 'k'), /k: line 1: not a JSON object/);
});

function authenticator(nowMs: { value: number }, keyId = 'app1', secret = 's'.repeat(20)): { auth: Authenticator; key: { keyId: string; signingKey: Buffer } } {
  const signingKey = deriveSigningKey(keyId, secret);
  const keys = new Map([[keyId, { id: keyId, signingKey, createdMs: 0 }]]);
  return { auth: new Authenticator(() => keys, { clockSkewMsMax: 1000, nonceCacheSizeMax: 1000, now: () => nowMs.value }), key: { keyId, signingKey } };
}

test('a signature is accepted once, for its method, within the skew window; each refusal is counted by reason', () => {
  const now = { value: 1_000_000 };
  const { auth, key } = authenticator(now);
  const before = { ...authFailureCounts };
  const reason = (work: () => unknown): string => {
    try {
      work();
      return 'accepted';
    } catch (e) {
      assert.ok(e instanceof AuthFailure);
      return e.reason;
    }
  };
  const md = signCall(new Metadata(), key, '/m/A', now.value);
  assert.equal(auth.authenticate('/m/A', md.clone()), 'app1');
  assert.equal(
    reason(() => auth.authenticate('/m/A', md.clone())),
    'replayed',
  );
  assert.equal(
    reason(() => auth.authenticate('/m/B', signCall(new Metadata(), key, '/m/A', now.value))),
    'bad_signature',
  );
  assert.equal(
    reason(() => auth.authenticate('/m/A', signCall(new Metadata(), key, '/m/A', now.value - 1001))),
    'stale',
  );
  assert.equal(
    reason(() => auth.authenticate('/m/A', signCall(new Metadata(), key, '/m/A', now.value + 1001))),
    'stale',
  );
  assert.equal(
    reason(() => auth.authenticate('/m/A', signCall(new Metadata(), { keyId: 'other', signingKey: key.signingKey }, '/m/A', now.value))),
    'unknown_key',
  );
  assert.equal(
    reason(() => auth.authenticate('/m/A', new Metadata())),
    'missing',
  );
  const twice = signCall(new Metadata(), key, '/m/A', now.value);
  twice.add('mamba-nonce', 'ab'.repeat(8));
  assert.equal(
    reason(() => auth.authenticate('/m/A', twice)),
    'malformed',
  );
  for (const r of ['replayed', 'bad_signature', 'unknown_key', 'missing', 'malformed'] as const) assert.equal(authFailureCounts[r], before[r] + 1, r);
  assert.equal(authFailureCounts.stale, before.stale + 2);
});

test('the nonce cache forgets after its ttl and refuses beyond its size instead of growing', () => {
  const cache = new NonceCache(100, 3);
  assert.ok(cache.remember('a', 0));
  assert.ok(!cache.remember('a', 50));
  assert.ok(cache.remember('b', 10) && cache.remember('c', 20));
  assert.throws(() => cache.remember('d', 30), ResourceExhaustedError);
  assert.ok(cache.remember('d', 101)); // 'a' expired
  assert.equal(cache.size, 3);
  assert.ok(cache.remember('a', 200)); // a nonce is only refused inside its window
});

test('permission patterns: * and ? wildcards, key *, and nothing granted means refused', () => {
  const p = parsePermissions(
    'grants:\n  - { key: app, topics: ["orders.*", "log-?"], actions: [produce] }\n  - { key: "*", topics: [public], actions: [consume] }\n',
    'p',
  );
  assert.ok(p.allows('app', 'produce', 'orders.eu'));
  assert.ok(p.allows('app', 'produce', 'log-1'));
  assert.ok(!p.allows('app', 'produce', 'log-12'));
  assert.ok(!p.allows('app', 'produce', 'ordersXeu'), 'a dot in a pattern is literal');
  assert.ok(!p.allows('app', 'consume', 'orders.eu'));
  assert.ok(p.allows('anyone', 'consume', 'public'));
  assert.ok(p.allowsAny('app', 'orders.x'));
  assert.ok(!p.allowsAny('other', 'orders.x'));
  assert.throws(
    () => parsePermissions('grants:\n  - { key: app, topics: ["a"], actions: [write] }\n', 'p'),
    /p: grants\[0\]\.actions\[0\]: must be one of produce, consume, admin/,
  );
  assert.throws(() => parsePermissions('grants:\n  - { key: app, topics: [], actions: [produce] }\n', 'p'), /grants\[0\]\.topics: must name at least one/);
});

test('clients take the key from options, then the environment, then the credentials files', () => {
  const file = join(dir, 'credentials');
  writeFileSync(file, `# private\nkey_id = filekey\nkey_secret = ${'f'.repeat(20)}\ntls_ca_file = ca.crt\n`);
  const fromFile = resolveClientSecurity({}, {}, [join(dir, 'missing'), file]);
  assert.equal(fromFile.key!.keyId, 'filekey');
  assert.equal(fromFile.tlsCaFile, join(dir, 'ca.crt'));
  const fromEnv = resolveClientSecurity({}, { MAMBA_KEY_ID: 'envkey', MAMBA_KEY_SECRET: 'e'.repeat(20) }, [file]);
  assert.equal(fromEnv.key!.keyId, 'envkey');
  assert.equal(fromEnv.tlsCaFile, null);
  const fromOptions = resolveClientSecurity(
    { accessKey: { keyId: 'optkey', secret: 'o'.repeat(20) }, tls: true },
    { MAMBA_KEY_ID: 'envkey', MAMBA_KEY_SECRET: 'e'.repeat(20) },
    [file],
  );
  assert.equal(fromOptions.key!.keyId, 'optkey');
  assert.equal(fromOptions.tlsCaFile, '');
  assert.deepEqual(fromOptions.key!.signingKey, deriveSigningKey('optkey', 'o'.repeat(20)));
  assert.equal(resolveClientSecurity({}, {}, [join(dir, 'missing')]).key, null);
  assert.throws(() => resolveClientSecurity({}, { MAMBA_KEY_ID: 'x' }), /both MAMBA_KEY_ID and MAMBA_KEY_SECRET/);
});

test('the security section of a cluster file is checked key by key', () => {
  const base = 'cluster: c\ngroups:\n  - id: g1\n    brokers:\n      - { id: b1, host: 127.0.0.1, clientPort: 1, peerPort: 2, metricsPort: 3 }\n';
  const config = parseClusterConfig(
    `${base}security:\n  auth: { keysFile: k, permissionsFile: p, brokerKeyId: broker }\n  tls: { caFile: ca.crt, certFile: "{broker}.crt", keyFile: "{broker}.key" }\n`,
    'c.yaml',
    '/base',
  );
  assert.equal(config.security.auth!.keysFile, '/base/k');
  assert.equal(config.security.auth!.clockSkewMsMax, 300_000);
  assert.equal(config.security.tls!.certFile, '/base/{broker}.crt');
  assert.equal(parseClusterConfig(base, 'c.yaml', '/base').security.auth, null);
  assert.throws(
    () => parseClusterConfig(`${base}security:\n  auth: { keysFile: k, permissionsFile: p }\n`, 'c.yaml', '/'),
    /c.yaml: security.auth.brokerKeyId: must be a non-empty string/,
  );
  assert.throws(
    () => parseClusterConfig(`${base}security:\n  tls: { caFile: a, certFile: b, keyFile: c, verify: no }\n`, 'c.yaml', '/'),
    /security.tls.verify: unknown key/,
  );
  assert.throws(
    () => parseClusterConfig(`${base}settings:\n  inflightPerConnectionMax: 0\n`, 'c.yaml', '/'),
    /settings.inflightPerConnectionMax: 0 is out of range/,
  );
});
