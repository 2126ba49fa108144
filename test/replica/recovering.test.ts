// The replica around the recovering rule (issue 11; DESIGN §12), with a real log, LMDB and
// promise file in a fresh directory and the peers played by the test:
//   - a replica whose log ends below its stored promise is recovering: it logs
//     replica.recovering {markOffset, endOffset}, never asks for a vote or pre-vote, and says so
//     in its status and its Fetches;
//   - a damaged segment is quarantined on open and the replica starts recovering (its promise
//     stays) instead of refusing to start;
//   - one replica per data directory: a second open fails at once, naming the holder's pid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentLog, encodeBatch, stampBatch, quarantineDirOf } from '../../src/log/index.js';
import { DataDirLockedError } from '../../src/replica/data-dir-lock.js';
import { Logger } from '../../src/replica/logger.js';
import { PromiseFile } from '../../src/replica/promise-file.js';
import { formatDataDirectory } from '../../src/replica/format.js';
import { Replica, promiseFileName, type ReplicaOptions } from '../../src/replica/replica.js';
import type { Message } from '../../src/raft/types.js';

function options(dataDir: string, lines: string[]): ReplicaOptions {
  return {
    id: 'b1',
    voters: ['b1', 'b2', 'b3'],
    dataDir,
    flush: { mode: 'sync' },
    segmentBytes: 1 << 16,
    retentionBytesMax: 0,
    retentionAgeMsMax: 0,
    tickMs: 5,
    electionTimeoutMs: 30,
    fetchTimeoutMs: 10_000,
    fetchWaitMsMax: 20,
    fetchBytesMax: 1 << 20,
    pendingProposalsMax: 100,
    logger: new Logger('b1', 'g1', (line) => lines.push(line)),
    random: () => 0.5,
  };
}

const machine = { onAppend: () => undefined, onTruncate: () => undefined, onCommit: () => undefined, onRoleChange: () => undefined };

async function runFor(replica: Replica, ms: number): Promise<Message[]> {
  const sent: Message[] = [];
  replica.start(machine, { send: (message) => sent.push(message), close: () => undefined });
  await new Promise((resolve) => setTimeout(resolve, ms));
  return sent;
}

async function storePromise(dataDir: string, offset: number): Promise<void> {
  const file = PromiseFile.open(join(dataDir, promiseFileName), 0);
  file.store(offset);
  for (let round = 0; round < 1000 && !file.settled; round++) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal(file.durableOffset, offset);
  file.close();
}

test('recovering: a log ending below the stored promise grants and asks no vote, logs replica.recovering, and shows it in status (DESIGN §12)', async () => {
  const dataDir = fs.mkdtempSync(join(tmpdir(), 'mamba-recovering-'));
  const lines: string[] = [];
  try {
    await storePromise(dataDir, 50); // promised 50, the log is empty: it lost what it promised
    const replica = await Replica.open(options(dataDir, lines));
    const sent = await runFor(replica, 300); // ten election timeouts
    const status = replica.status();
    const state = replica.recoveryState();
    const roleLabel = replica.roleLabel();
    await replica.close();
    assert.equal(status.recovering, true);
    assert.equal(roleLabel, 'recovering', 'the role column of mambamq status and DescribeCluster');
    assert.equal(status.recoveryMarkOffset, 50);
    assert.equal(state.recovering, true);
    assert.equal(state.promisedOffset, 50, 'the promise stays while recovering');
    assert.deepEqual(
      sent.filter((m) => m.type === 'PreVoteRequest' || m.type === 'VoteRequest'),
      [],
      'no pre-vote, no vote, no candidacy',
    );
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'replica.recovering');
    assert.deepEqual(logged && [logged.markOffset, logged.endOffset], [50, 0]);
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('recovering: without a promise beyond its log a replica campaigns as usual (control)', async () => {
  const dataDir = fs.mkdtempSync(join(tmpdir(), 'mamba-recovering-'));
  try {
    formatDataDirectory(dataDir, { cluster: 'c', group: 'g1', brokerId: 'b1' }); // a new group's replica
    const replica = await Replica.open(options(dataDir, []));
    const sent = await runFor(replica, 300);
    assert.equal(replica.status().recovering, false);
    await replica.close();
    assert.ok(
      sent.some((m) => m.type === 'PreVoteRequest'),
      'it asks for pre-votes',
    );
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('quarantine: a follower whose only segment lost its header starts, quarantines it and is recovering (no "wrong magic")', async () => {
  const dataDir = fs.mkdtempSync(join(tmpdir(), 'mamba-recovering-'));
  const lines: string[] = [];
  try {
    const logDir = join(dataDir, 'log');
    const log = await SegmentLog.open({ dir: logDir, segmentBytes: 1 << 16, flush: { mode: 'sync' }, logger: () => undefined });
    for (let i = 0; i < 5; i++) {
      const batch = encodeBatch({ records: [{ key: null, value: Buffer.from(`m${i}`), headers: [], timestampMs: 1 }] });
      stampBatch(batch, log.endOffset, 1);
      log.append(batch);
    }
    await log.close();
    await storePromise(dataDir, 5);
    const [segment] = fs.readdirSync(logDir).filter((n) => n.endsWith('.log'));
    const fd = fs.openSync(join(logDir, segment!), 'r+');
    fs.writeSync(fd, Buffer.alloc(64), 0, 64, 0);
    fs.closeSync(fd);
    const replica = await Replica.open(options(dataDir, lines));
    const sent = await runFor(replica, 200);
    const status = replica.status();
    await replica.close();
    assert.equal(status.recovering, true, 'recovering from the last good offset');
    assert.equal(status.recoveryMarkOffset, 5);
    assert.deepEqual(
      sent.filter((m) => m.type === 'PreVoteRequest' || m.type === 'VoteRequest'),
      [],
    );
    assert.equal(fs.readdirSync(quarantineDirOf(logDir)).length, 1, 'the damaged segment is kept in quarantine/');
    assert.ok(
      lines.some((l) => l.includes('"replica.quarantined"') && l.includes(segment!)),
      'a log line names the file',
    );
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('one broker per data directory: a second open fails at once naming the holder; after close the directory opens again', async () => {
  const dataDir = fs.mkdtempSync(join(tmpdir(), 'mamba-recovering-'));
  try {
    const first = await Replica.open(options(dataDir, []));
    await assert.rejects(
      Replica.open(options(dataDir, [])),
      (error: Error) => error instanceof DataDirLockedError && error.message.includes(`process ${process.pid}`),
    );
    await first.close();
    const second = await Replica.open(options(dataDir, []));
    await second.close();
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
