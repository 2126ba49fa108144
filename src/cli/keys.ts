// `mambamq key create|list`, and where the CLI's clients find their access key and TLS CA.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { createKey, loadKeysFile } from '../auth/keys.js';
import type { ClusterConfig } from '../config/cluster.js';
import { loadClusterConfig } from '../config/cluster.js';
import { ConfigError } from '../validation.js';
import type { ClientOptions } from '../client/client.js';
import { writeCredentialsFile } from '../client/credentials.js';

/** The files the CLI tries for an access key when no flag or environment variable names one. */
export function defaultCredentialsFiles(): string[] {
  return [resolve('data', 'credentials'), join(homedir(), '.mamba', 'credentials')];
}

/**
 * Client options for the CLI: with a cluster file, TLS follows its `security.tls` (CA file);
 * without one, MAMBA_TLS_CA or the credentials file's tls_ca_file decide.
 */
export function securityOptions(
  cluster: ClusterConfig | null,
  credentialsFile: string | undefined,
): Pick<ClientOptions, 'credentialsFile' | 'credentialsSearch' | 'tls'> {
  return {
    ...(credentialsFile ? { credentialsFile } : {}),
    credentialsSearch: defaultCredentialsFiles(),
    ...(cluster ? { tls: cluster.security.tls ? { caFile: cluster.security.tls.caFile } : false } : {}),
  };
}

interface KeyGlobals {
  cluster?: string;
  json?: boolean;
}

function keysFileOf(options: { keysFile?: string }, globals: KeyGlobals): { keysFile: string; cluster: ClusterConfig | null } {
  const cluster = globals.cluster ? loadClusterConfig(globals.cluster) : null;
  const keysFile = options.keysFile ?? cluster?.security.auth?.keysFile;
  if (!keysFile) throw new ConfigError('name the keys file: --keys-file <file>, or --cluster <file> with security.auth.keysFile');
  return { keysFile, cluster };
}

export function keyCommand(): Command {
  const key = new Command('key').description('access keys: create one, list them (ids only; secrets are never stored)');
  key
    .command('create')
    .description('make an access key: prints its id and secret once and appends its derived signing key to the keys file')
    .option('--id <id>', 'the key id (default: a random AK… id)')
    .option('--keys-file <file>', "the brokers' keys file (default: security.auth.keysFile of --cluster)")
    .option('--write-credentials <file>', "also write the id and secret (and the cluster's CA) to this credentials file, mode 0600")
    .option('--if-missing', 'do nothing when a key with this --id exists already')
    .action((options: { id?: string; keysFile?: string; writeCredentials?: string; ifMissing?: boolean }, command: Command) => {
      const globals = command.optsWithGlobals() as KeyGlobals;
      const { keysFile, cluster } = keysFileOf(options, globals);
      if (options.ifMissing && options.id && existsSync(keysFile) && loadKeysFile(keysFile).has(options.id)) {
        process.stdout.write(globals.json ? `${JSON.stringify({ id: options.id, created: false })}\n` : `key ${options.id} exists already in ${keysFile}\n`);
        return;
      }
      const made = createKey(keysFile, options.id);
      if (options.writeCredentials)
        writeCredentialsFile(options.writeCredentials, { keyId: made.id, secret: made.secret }, cluster?.security.tls?.caFile ?? null);
      if (globals.json) {
        process.stdout.write(
          `${JSON.stringify({ id: made.id, secret: made.secret, keysFile, credentialsFile: options.writeCredentials ?? null, created: true })}\n`,
        );
        return;
      }
      process.stdout.write(
        `${[
          `access key id: ${made.id}`,
          `secret:        ${made.secret}`,
          '(the secret is shown only now; the keys file holds a key derived from it)',
          `keys file:     ${keysFile} (brokers reload it on change)`,
          ...(options.writeCredentials
            ? [`credentials:   ${options.writeCredentials}`]
            : ['use it: MAMBA_KEY_ID=<id> MAMBA_KEY_SECRET=<secret>, or a credentials file (key_id = …, key_secret = …)']),
          'grant it topics in the permissions file, e.g. { key: <id>, topics: ["orders.*"], actions: [produce, consume] }',
        ].join('\n')}\n`,
      );
    });
  key
    .command('list')
    .description('the key ids in the keys file and when they were made')
    .option('--keys-file <file>', "the brokers' keys file (default: security.auth.keysFile of --cluster)")
    .action((options: { keysFile?: string }, command: Command) => {
      const globals = command.optsWithGlobals() as KeyGlobals;
      const keys = [...loadKeysFile(keysFileOf(options, globals).keysFile).values()].map((k) => ({ id: k.id, createdMs: k.createdMs }));
      process.stdout.write(
        globals.json ? `${JSON.stringify({ keys })}\n` : `${keys.map((k) => `${k.id}\t${new Date(k.createdMs).toISOString()}`).join('\n') || '(no keys)'}\n`,
      );
    });
  return key;
}
