// No crash loop on divergence (issue 11 §3; DESIGN §12 "A request to truncate below one's own
// high watermark is a protocol violation: refuse, alert, stay up"). A follower whose metadata
// records offsets up to 5 as committed is told by a leader to truncate to 2: it refuses (the log
// keeps its 5 entries), stays up, logs replica.committed_data_divergence with both offsets and
// shows the divergence in its recovery state (the metric and the critical alert read it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SegmentLog, encodeBatch, stampBatch } from '../../src/log/index.js';
import { Logger } from '../../src/replica/logger.js';
import { MetaStore } from '../../src/replica/meta-store.js';
import { Replica } from '../../src/replica/replica.js';
import type { FetchRequest, Message } from '../../src/raft/types.js';

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test('a leader asking to truncate committed entries is refused: the replica stays up, logs and shows CommittedDataDivergence', async () => {
  const dataDir = fs.mkdtempSync(join(tmpdir(), 'mamba-divergence-'));
  const lines: string[] = [];
  let replica: Replica | null = null;
  try {
    const log = await SegmentLog.open({ dir: join(dataDir, 'log'), segmentBytes: 1 << 16, flush: { mode: 'sync' }, logger: () => undefined });
    for (let i = 0; i < 5; i++) {
      const batch = encodeBatch({ records: [{ key: null, value: Buffer.from(`m${i}`), headers: [], timestampMs: 1 }] });
      stampBatch(batch, log.endOffset, 1);
      log.append(batch);
    }
    await log.close();
    const meta = MetaStore.open(join(dataDir, 'meta'));
    meta.saveHardState({ epoch: 1, votedFor: null });
    meta.recordApplied(5, 5); // offsets below 5 are known committed
    await meta.close();

    replica = await Replica.open({
      id: 'b1',
      voters: ['b1', 'b2', 'b3'],
      dataDir,
      flush: { mode: 'sync' },
      segmentBytes: 1 << 16,
      retentionBytesMax: 0,
      retentionAgeMsMax: 0,
      tickMs: 5,
      electionTimeoutMs: 5000,
      fetchTimeoutMs: 20_000,
      fetchWaitMsMax: 20,
      fetchBytesMax: 1 << 20,
      pendingProposalsMax: 100,
      logger: new Logger('b1', 'g1', (line) => lines.push(line)),
      random: () => 0.5,
    });
    const sent: Message[] = [];
    replica.start(
      { onAppend: () => undefined, onTruncate: () => undefined, onCommit: () => undefined, onRoleChange: () => undefined },
      {
        send: (message) => sent.push(message),
        close: () => undefined,
      },
    );
    await replica.handle({ type: 'BeginQuorumEpoch', from: 'b2', to: 'b1', epoch: 2 }, 0);
    const request = await waitFor('a Fetch to b2', () => sent.find((m): m is FetchRequest => m.type === 'FetchRequest' && m.to === 'b2'));
    assert.equal(request.fetchOffset, 5);
    replica.deliver({
      type: 'FetchResponse',
      from: 'b2',
      to: 'b1',
      epoch: 2,
      leaderId: 'b2',
      divergingEpoch: { epoch: 1, endOffset: 2 },
      fetchOffset: request.fetchOffset,
      lastFetchedEpoch: request.lastFetchedEpoch,
      requestId: request.requestId,
      entries: [],
      highWatermark: 0,
    });
    assert.equal(replica.log.endOffset, 5, 'committed entries kept: no truncation');
    const state = replica.recoveryState();
    assert.deepEqual(
      state.divergence && {
        leaderId: state.divergence.leaderId,
        epoch: state.divergence.epoch,
        requestedEndOffset: state.divergence.requestedEndOffset,
        committedOffset: state.divergence.committedOffset,
      },
      { leaderId: 'b2', epoch: 2, requestedEndOffset: 2, committedOffset: 5 },
    );
    assert.equal(replica.roleLabel(), 'refusing', 'shown in status');
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'replica.committed_data_divergence');
    assert.deepEqual(logged && [logged.level, logged.requestedEndOffset, logged.committedOffset], ['error', 2, 5]);
    await new Promise((resolve) => setTimeout(resolve, 100)); // ticks go on: still up
    assert.equal(replica.log.endOffset, 5);
  } finally {
    await replica?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
