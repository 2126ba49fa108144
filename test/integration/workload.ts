// What several integration tests do with a running cluster: an SDK client with a fast retry, a
// producer load on one queue that keeps what was acknowledged, reading a queue back, the check
// that nothing acknowledged is missing, and the CLI as a child process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, type LocalCluster } from '../../scripts/lib/cluster.js';
import { MambaClient } from '../../src/client/client.js';

export const fastRetry = { attemptsMax: 50, backoffMsInitial: 10, backoffMsMax: 200, multiplier: 2, jitter: 0.2 };

export function sdk(cluster: LocalCluster): MambaClient {
  return new MambaClient({ brokers: cluster.brokers.map((b) => b.clientAddress), requestTimeoutMs: 5000, retry: fastRetry });
}

/** Sends numbered messages to one queue one after another until stopped; keeps what was acknowledged. */
export function startLoad(client: MambaClient, topic: string, queue = 0, prefix = 'm'): { acknowledged: Set<string>; stop(): Promise<void> } {
  const acknowledged = new Set<string>();
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const body = `${prefix}${i}`;
      await client.send(topic, [{ body }], { queue }).then(
        () => acknowledged.add(body),
        () => undefined, // not acknowledged: it may or may not be stored
      );
    }
  })();
  return {
    acknowledged,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Every body of a queue up to its high watermark. */
export async function readQueue(client: MambaClient, topic: string, queue = 0): Promise<Set<string>> {
  const bodies = new Set<string>();
  let offset = 0;
  for (let round = 0; round < 10_000; round++) {
    const r = await client.read(topic, queue, offset, { messagesMax: 500 });
    for (const m of r.messages) bodies.add(m.body.toString());
    if (r.messages.length === 0) return bodies;
    offset = r.nextOffset;
  }
  throw new Error('queue did not end within 10,000 reads');
}

export function assertNothingLost(acknowledged: Set<string>, stored: Set<string>): void {
  const lost = [...acknowledged].filter((body) => !stored.has(body));
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged messages lost`);
}

const workDir = mkdtempSync(join(tmpdir(), 'mamba-cli-work-'));
process.on('exit', () => rmSync(workDir, { recursive: true, force: true }));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `mambamq args…` in an empty directory with no MAMBA_ variables from this environment (so
 * no credentials or cluster of the developer's own, which `make run` keeps under ./data, are
 * picked up), with `input` on its standard input; its exit code and output.
 */
export function cli(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  const timeoutMs = options.timeoutMs ?? 90_000;
  return new Promise((resolve, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MAMBA_')));
    const child = spawn(process.execPath, [cliPath, ...args], { env, cwd: workDir, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(options.input ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mambamq ${args.join(' ')} did not finish in ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
