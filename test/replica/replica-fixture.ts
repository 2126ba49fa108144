// What the tests of real in-process replicas share: small segments, a short tick and frequent
// snapshots and retention (so a few hundred entries exercise them), a bounded polling wait, the
// structured log lines a replica wrote, and a paced producer.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { Logger } from '../../src/replica/logger.js';
import type { Entry } from '../../src/raft/types.js';
import type { Replica, ReplicaOptions, StateMachine } from '../../src/replica/replica.js';

export function replicaOptions(id: string, voters: string[], dataDir: string, lines: string[], extra: Partial<ReplicaOptions> = {}): ReplicaOptions {
  return {
    id,
    voters,
    dataDir,
    flush: { mode: 'async', intervalMs: 5 },
    segmentBytes: 4096,
    retentionBytesMax: 8192,
    retentionAgeMsMax: 0,
    tickMs: 5,
    electionTimeoutMs: 100,
    fetchTimeoutMs: 300,
    fetchWaitMsMax: 20,
    fetchBytesMax: 64 * 1024,
    pendingProposalsMax: 100_000,
    snapshotIntervalEntries: 100,
    snapshotIntervalBytes: 1 << 30,
    retentionIntervalMs: 20,
    logger: new Logger(id, 'g1', (line) => lines.push(line)),
    random: Math.random,
    ...extra,
  };
}

/** A temporary directory per call, all removed when the test file ends. */
export function temporaryRoots(prefix: string): () => string {
  const roots: string[] = [];
  after(() => {
    for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
  });
  return () => {
    const root = fs.mkdtempSync(join(tmpdir(), prefix));
    roots.push(root);
    return root;
  };
}

/** Polls `probe` every 10 ms until it gives a value, for at most `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The replica's log lines of one event. */
export function events(lines: string[], event: string): Array<Record<string, unknown>> {
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.event === event);
}

/** Proposes `count` entries on the leader (payload `bodyOf(index)`), paced so that none is refused for backpressure; resolves once all commit. */
export async function produce(leader: Replica, first: number, count: number, bodyOf: (index: number) => string = (index) => `m${index}`): Promise<number> {
  let end = 0;
  for (let index = first; index < first + count; index++) {
    end = leader.propose(Buffer.from(bodyOf(index)), 1) + 1;
    if (index % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await waitFor(`commit of ${end}`, () => leader.committedOffset >= end);
  return end;
}

/** Keeps the committed payloads; snapshots are their JSON; remembers where snapshots were restored. */
export class ListMachine implements StateMachine {
  items: string[] = [];
  applied = 0;
  restoredAt: number[] = [];
  onAppend(): void {}
  onTruncate(): void {}
  onRoleChange(): void {}
  onCommit(entry: Entry): void {
    this.items.push(Buffer.from(entry.payload).toString());
    this.applied = entry.offset + entry.count;
  }
  appliedOffset(): number {
    return this.applied;
  }
  captureSnapshot(): { endOffset: number; payload: Uint8Array } {
    return { endOffset: this.applied, payload: Buffer.from(JSON.stringify(this.items)) };
  }
  restoreSnapshot(endOffset: number, payload: Uint8Array): void {
    this.items = JSON.parse(Buffer.from(payload).toString()) as string[];
    this.applied = endOffset;
    this.restoredAt.push(endOffset);
  }
}

/** A transport for a group of one: nothing to send anywhere. */
export const silent = { send: (): undefined => undefined, close: (): undefined => undefined };
