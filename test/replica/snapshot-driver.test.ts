// The replica as the driver of the core's snapshots (DESIGN §12 "Snapshots and retention";
// KIP-630; issue 13 points 1 and 3), with real logs, LMDB, promise files and snapshot stores in
// fresh directories, replicas wired by an in-process transport, and a small state machine that
// implements the four snapshot methods (a list of the committed payloads):
//   - Raft §7 / KIP-630: a follower whose log is behind the leader's log start gets
//     snapshotNeeded, fetches the snapshot in chunks, installs it (Ready step 2: restore, log
//     reset to empty at S) and catches up with the log from S; it then holds the same state;
//   - a restart after an install starts from the snapshot and the log after it;
//   - a crash between the restore and the log reset: open resets a log that ends below the
//     snapshot, or whose entry below its end has another epoch; a log that agrees is kept;
//   - retention never removes an entry no snapshot covers;
//   - issue 13.3: a replica opened on an empty directory in a group with history joins as
//     recovering (no vote) until it holds the leader's log; a new group's first election works;
//   - the peer API carries FetchResponse.snapshotNeeded both ways, and FetchSnapshot behind the
//     same membership check as every peer call.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SegmentLog } from '../../src/log/index.js';
import { MetaStore } from '../../src/replica/meta-store.js';
import { batchOfEntry, entriesFromFetchedBatches } from '../../src/replica/log-storage.js';
import { encodeSnapshotPayload } from '../../src/replica/snapshot-payload.js';
import { encodeMembership } from '../../src/raft/membership.js';
import { SnapshotStore, snapshotsDirName } from '../../src/replica/snapshot-store.js';
import { dataDirectoryUnused, formatDataDirectory, FormatError, readDirectoryFormat } from '../../src/replica/format.js';
import { Replica, type FetchSnapshotRequest, type ReplicaOptions, type StateMachine, type Transport } from '../../src/replica/replica.js';
import { addPeerService, fetchResponseOf, fetchResponseWire, PeerClients, type PeerRequestHandler } from '../../src/rpc/peer.js';
import { messageType } from '../../src/protocol/protos.js';
import { EntryType, type Entry, type FetchRequest, type FetchResponse, type Message } from '../../src/raft/types.js';
import { events, produce, replicaOptions, temporaryRoots, waitFor } from './replica-fixture.js';

// ------------------------------------------------------------------ a state machine with snapshots

/** What the machine keeps "on disk": the test hands the same object to the next incarnation. */
interface DurableList {
  appliedOffset: number;
  items: string[];
}

class ListMachine implements StateMachine {
  private items: string[];
  private applied: number;
  readonly restored: number[] = [];
  readonly indexedFrom: Array<number | null> = [];
  readonly logStarts: number[] = [];
  appendedCount = 0;

  constructor(readonly durable: DurableList) {
    this.items = [...durable.items];
    this.applied = durable.appliedOffset;
  }

  get list(): readonly string[] {
    return this.items;
  }

  onAppend(): void {
    this.appendedCount++;
  }
  onTruncate(): void {}
  onRoleChange(): void {}

  onCommit(entry: Entry): void {
    assert.ok(entry.offset >= this.applied, `commit at ${entry.offset} below applied ${this.applied}`);
    this.items.push(Buffer.from(entry.payload).toString('utf8'));
    this.applied = entry.offset + entry.count;
    this.durable.items = [...this.items];
    this.durable.appliedOffset = this.applied;
  }

  appliedOffset(): number {
    return this.durable.appliedOffset;
  }

  captureSnapshot(): { endOffset: number; payload: Uint8Array } {
    return { endOffset: this.applied, payload: Buffer.from(JSON.stringify(this.items)) };
  }

  restoreSnapshot(endOffset: number, payload: Uint8Array): void {
    this.items = JSON.parse(Buffer.from(payload).toString('utf8')) as string[];
    this.applied = endOffset;
    this.durable.items = [...this.items];
    this.durable.appliedOffset = endOffset;
    this.restored.push(endOffset);
  }

  indexFromSnapshot(snapshot: { endOffset: number; payload: Uint8Array } | null): void {
    this.indexedFrom.push(snapshot?.endOffset ?? null);
  }

  onLogStartMoved(startOffset: number): void {
    this.logStarts.push(startOffset);
  }
}

/** A machine of the kind tests pass elsewhere: no snapshot methods at all. */
const plainMachine = (): StateMachine => ({ onAppend: () => undefined, onTruncate: () => undefined, onCommit: () => undefined, onRoleChange: () => undefined });

// ------------------------------------------------------------------ replicas in one process

const freshRoot = temporaryRoots('mamba-snapshot-driver-');

function options(id: string, voters: string[], dataDir: string, lines: string[], extra: Partial<ReplicaOptions> = {}): ReplicaOptions {
  // A short election timeout on purpose: a first election whose vote request arrives after the
  // timeout is common here, and it must not be taken for a replaced disk (the liveness bug of
  // the earlier rule).
  return replicaOptions(id, voters, dataDir, lines, { electionTimeoutMs: 60, fetchTimeoutMs: 400, retentionIntervalMs: 50, ...extra });
}

const requestTypes = new Set<Message['type']>(['PreVoteRequest', 'VoteRequest', 'BeginQuorumEpoch', 'FetchRequest', 'TimeoutNow']);

/** Routes requests to the replica they name and the answers back, on later turns of the event loop. */
class Net {
  readonly replicas = new Map<string, Replica>();

  transport(): Transport {
    return {
      send: (message) => setImmediate(() => this.route(message)),
      fetchSnapshot: async (request: FetchSnapshotRequest) => {
        const answer = await this.replicas.get(request.to)?.serveSnapshotChunk(request);
        if (!answer) throw new Error(`${request.to} is down`);
        return answer;
      },
      close: () => undefined,
    };
  }

  private route(message: Message): void {
    const target = this.replicas.get(message.to);
    if (!target || !requestTypes.has(message.type)) return;
    target.handle(message, 20).then(
      (answer) => {
        if (answer) this.replicas.get(message.from)?.deliver(answer);
      },
      () => undefined,
    );
  }
}

interface Member {
  id: string;
  replica: Replica;
  machine: ListMachine;
  lines: string[];
}

async function startMember(
  net: Net,
  id: string,
  voters: string[],
  dataDir: string,
  durable: DurableList,
  extra: Partial<ReplicaOptions> = {},
  disk: 'formatted' | 'replaced' = 'formatted',
): Promise<Member> {
  const lines: string[] = [];
  // A new group's directories are formatted before their first start; a replaced disk is not.
  if (disk === 'formatted' && dataDirectoryUnused(dataDir) && readDirectoryFormat(dataDir) === null)
    formatDataDirectory(dataDir, { cluster: 'c', group: 'g1', brokerId: id });
  const replica = await Replica.open(options(id, voters, dataDir, lines, extra));
  const machine = new ListMachine(durable);
  net.replicas.set(id, replica);
  replica.start(machine, net.transport());
  return { id, replica, machine, lines };
}

async function stopMember(net: Net, member: Member): Promise<void> {
  net.replicas.delete(member.id);
  await member.replica.close();
}

// ------------------------------------------------------------------ tests

describe('a follower behind the leader log start (Raft §7, KIP-630)', { timeout: 120_000 }, () => {
  const net = new Net();
  const voters = ['b1', 'b2', 'b3'];
  const root = freshRoot();
  const durable = new Map(voters.map((id) => [id, { appliedOffset: 0, items: [] } as DurableList]));
  const members = new Map<string, Member>();
  after(async () => {
    for (const member of members.values()) await stopMember(net, member);
  });

  test('installs the leader snapshot, then fetches the log from its end, and holds the same state', async () => {
    // A new group of two fresh directories elects (its first election is epoch 1 from empty logs).
    for (const id of ['b1', 'b2']) members.set(id, await startMember(net, id, voters, join(root, id), durable.get(id)!));
    const leaderId = await waitFor('a leader', () => [...members.values()].find((m) => m.replica.isLeader)?.id);
    const leader = members.get(leaderId)!;
    await produce(leader.replica, 0, 600);
    // Snapshots taken and retention done on the leader: its log no longer starts at 0.
    await waitFor('the leader log start above 0', () => leader.replica.status().logStartOffset > 0);
    const status = leader.replica.status();
    assert.ok(status.snapshot !== null && status.logStartOffset <= status.snapshot.endOffset, 'retention stays below the snapshot');
    assert.ok(events(leader.lines, 'replica.snapshot.taken').length > 0);
    assert.ok(leader.machine.logStarts.length > 0, 'onLogStartMoved told the machine');

    // b3 starts on an empty directory: a replaced disk in a group with history.
    const b3 = await startMember(net, 'b3', voters, join(root, 'b3'), durable.get('b3')!, {}, 'replaced');
    members.set('b3', b3);
    await waitFor('b3 installed a snapshot', () => events(b3.lines, 'replica.snapshot.installed').length > 0);
    const end = await produce(leader.replica, 600, 50);
    await waitFor('b3 applied everything', () => b3.machine.durable.appliedOffset >= leader.machine.durable.appliedOffset && b3.replica.committedOffset >= end);
    assert.deepEqual(b3.machine.list, leader.machine.list, 'the same committed payloads, in order');
    assert.equal(b3.machine.list.length, 650);

    // Retention on the leader does not wait for a slow follower (as Kafka's): when it passed b3's
    // position again while b3 caught up, b3 installed a newer snapshot too.
    const installs = events(b3.lines, 'replica.snapshot.installed');
    const installed = installs[0]!;
    assert.equal(b3.machine.restored[0], installed.snapshotEndOffset, 'the machine restored the installed snapshot');
    assert.deepEqual(b3.machine.indexedFrom, [null, ...installs.map((i) => i.snapshotEndOffset)], 'indexFromSnapshot on start (none) and after each install');
    assert.ok(b3.replica.status().logStartOffset >= Number(installed.snapshotEndOffset), 'the log starts at (or after) the snapshot');
    const progress = events(b3.lines, 'replica.snapshot.fetch_progress');
    assert.ok(progress.length > 0 && progress.at(-1)!.percent === 100, 'progress lines up to 100%');
    // Issue 13.3: it joined as recovering and voted for nobody until it held the leader log.
    assert.equal(events(b3.lines, 'replica.joining_as_recovering').length, 1);
    await waitFor('b3 recovered', () => events(b3.lines, 'replica.recovered').length > 0);
    assert.equal(b3.replica.recoveryState().recovering, false);
  });

  test('a restart after the install starts from the snapshot and the log after it', async () => {
    const b3 = members.get('b3')!;
    const listBefore = [...b3.machine.list];
    const snapshotBefore = b3.replica.status().snapshot;
    await stopMember(net, b3);
    members.delete('b3');
    const again = await startMember(net, 'b3', voters, join(root, 'b3'), durable.get('b3')!);
    members.set('b3', again);
    const status = again.replica.status();
    assert.equal(status.recovering, false, 'recovered before the restart: an ordinary voter');
    assert.ok(status.snapshot !== null && snapshotBefore !== null && status.snapshot.endOffset >= snapshotBefore.endOffset);
    assert.deepEqual(again.machine.restored, [], 'the machine had stored the snapshot state: nothing to restore');
    assert.deepEqual(again.machine.indexedFrom, [status.snapshot.endOffset], 'indexFromSnapshot(latest) after the replay');
    const leader = [...members.values()].find((m) => m.replica.isLeader)!;
    const end = await produce(leader.replica, 650, 20);
    await waitFor('b3 caught up again', () => again.replica.committedOffset >= end && again.machine.list.length === 670);
    assert.deepEqual(again.machine.list.slice(0, listBefore.length), listBefore);
    assert.deepEqual(again.machine.list, leader.machine.list);
  });
});

describe('open after a crash between an install restore and its log reset', () => {
  /** A data directory as such a crash leaves it: hard state, an old log, the new snapshot stored, the machine restored. */
  async function crashedDirectory(logEpochs: number[], snapshot: { endOffset: number; epoch: number }): Promise<string> {
    const dataDir = join(freshRoot(), 'b1');
    const log = await SegmentLog.open({ dir: join(dataDir, 'log'), segmentBytes: 4096, flush: { mode: 'sync' }, logger: () => undefined });
    logEpochs.forEach((epoch, offset) => {
      log.append(batchOfEntry({ epoch, offset, count: 1, type: EntryType.Data, payload: Buffer.from(`old${offset}`) }, 1));
    });
    await log.flush();
    await log.close();
    const meta = MetaStore.open(join(dataDir, 'meta'));
    meta.saveHardState({ epoch: 3, votedFor: null });
    await meta.close();
    const store = await SnapshotStore.open({ dir: join(dataDir, snapshotsDirName), logger: () => undefined });
    const items = Array.from({ length: snapshot.endOffset }, (_, index) => `new${index}`);
    await store.write(snapshot, encodeSnapshotPayload({ ...snapshot, membership: null }, Buffer.from(JSON.stringify(items))));
    store.close();
    return dataDir;
  }

  async function openAndStart(dataDir: string, durable: DurableList): Promise<{ replica: Replica; machine: ListMachine; lines: string[] }> {
    const lines: string[] = [];
    const replica = await Replica.open(options('b1', ['b1', 'b2', 'b3'], dataDir, lines, { electionTimeoutMs: 60_000, fetchTimeoutMs: 120_000 }));
    const machine = new ListMachine(durable);
    replica.start(machine, { send: () => undefined, close: () => undefined });
    return { replica, machine, lines };
  }

  test('a log whose entry below the snapshot end has another epoch is reset to start, empty, at the snapshot', async () => {
    const dataDir = await crashedDirectory([1, 1, 1, 1, 1, 1, 1, 1], { endOffset: 5, epoch: 2 });
    const durable = { appliedOffset: 5, items: ['new0', 'new1', 'new2', 'new3', 'new4'] }; // restored before the crash
    const { replica, machine, lines } = await openAndStart(dataDir, durable);
    try {
      assert.deepEqual([replica.log.startOffset, replica.log.endOffset], [5, 5]);
      const reset = events(lines, 'replica.snapshot.log_reset')[0];
      assert.ok(reset && String(reset.reason).includes('epoch 1'), JSON.stringify(reset));
      assert.deepEqual(machine.restored, [], 'the machine stored its restore: not done again');
      assert.deepEqual(machine.indexedFrom, [5]);
      assert.deepEqual(replica.status().snapshot, { endOffset: 5, epoch: 2 });
      assert.equal(replica.status().logStartOffset, 5);
    } finally {
      await replica.close();
    }
  });

  test('a log that ends below the snapshot is reset, and a machine behind the snapshot restores it on start', async () => {
    const dataDir = await crashedDirectory([1, 1, 1], { endOffset: 5, epoch: 1 });
    const { replica, machine, lines } = await openAndStart(dataDir, { appliedOffset: 0, items: [] });
    try {
      assert.deepEqual([replica.log.startOffset, replica.log.endOffset], [5, 5]);
      assert.equal(events(lines, 'replica.snapshot.log_reset').length, 1);
      assert.deepEqual(machine.restored, [5]);
      assert.deepEqual(machine.list, ['new0', 'new1', 'new2', 'new3', 'new4']);
    } finally {
      await replica.close();
    }
  });

  test('the configuration in force survives a restart: from a membership entry in the log, or from the snapshot below the log start', async () => {
    const fromLog = await crashedDirectory([1, 1, 1, 1, 1, 1, 1, 1], { endOffset: 5, epoch: 1 });
    const log = await SegmentLog.open({ dir: join(fromLog, 'log'), segmentBytes: 4096, flush: { mode: 'sync' }, logger: () => undefined });
    log.append(batchOfEntry({ epoch: 1, offset: 8, count: 1, type: EntryType.Membership, payload: encodeMembership(['b1', 'b2', 'b4']) }, 1));
    await log.flush();
    await log.close();
    const first = await openAndStart(fromLog, { appliedOffset: 5, items: ['new0', 'new1', 'new2', 'new3', 'new4'] });
    try {
      assert.deepEqual([...first.replica.status().voters].sort(), ['b1', 'b2', 'b4']);
    } finally {
      await first.replica.close();
    }
    const fromSnapshot = join(freshRoot(), 'b1');
    const store = await SnapshotStore.open({ dir: join(fromSnapshot, snapshotsDirName), logger: () => undefined });
    const membership = { offset: 3, voters: ['b1', 'b3', 'b5'] };
    await store.write({ endOffset: 6, epoch: 2 }, encodeSnapshotPayload({ endOffset: 6, epoch: 2, membership }, Buffer.from('[]')));
    store.close();
    const meta = MetaStore.open(join(fromSnapshot, 'meta'));
    meta.saveHardState({ epoch: 2, votedFor: null });
    await meta.close();
    const second = await openAndStart(fromSnapshot, { appliedOffset: 0, items: [] });
    try {
      assert.deepEqual([second.replica.log.startOffset, second.replica.log.endOffset], [6, 6], 'an empty log below the snapshot: reset to it');
      assert.deepEqual([...second.replica.status().voters].sort(), ['b1', 'b3', 'b5']);
    } finally {
      await second.replica.close();
    }
  });

  test('a log that agrees with the snapshot at its end is kept (control)', async () => {
    const dataDir = await crashedDirectory([1, 1, 1, 1, 1, 1, 1, 1], { endOffset: 5, epoch: 1 });
    const { replica, lines } = await openAndStart(dataDir, { appliedOffset: 5, items: ['new0', 'new1', 'new2', 'new3', 'new4'] });
    try {
      assert.deepEqual([replica.log.startOffset, replica.log.endOffset], [0, 8]);
      assert.equal(events(lines, 'replica.snapshot.log_reset').length, 0);
    } finally {
      await replica.close();
    }
  });
});

describe('retention (DESIGN §12: only below the newest snapshot)', { timeout: 60_000 }, () => {
  test('without a snapshot nothing is removed, however far the log is over its retention limit', async () => {
    const net = new Net();
    const lines: string[] = [];
    const dataDir = join(freshRoot(), 'b1');
    formatDataDirectory(dataDir, { cluster: 'c', group: 'g1', brokerId: 'b1' });
    const replica = await Replica.open(options('b1', ['b1'], dataDir, lines));
    net.replicas.set('b1', replica);
    try {
      replica.start(plainMachine(), net.transport());
      await waitFor('leader', () => replica.isLeader);
      await produce(replica, 0, 600);
      await new Promise((resolve) => setTimeout(resolve, 1500)); // the applied offset is recorded, retention runs
      assert.ok(replica.logStats.segmentCount > 4, `${replica.logStats.segmentCount} segments`);
      assert.equal(replica.status().logStartOffset, 0);
      assert.equal(replica.status().snapshot, null);
    } finally {
      await replica.close();
    }
  });

  test('with snapshots the log start never passes the newest snapshot', async () => {
    const net = new Net();
    const durable = { appliedOffset: 0, items: [] };
    const member = await startMember(net, 'b1', ['b1'], join(freshRoot(), 'b1'), durable, { snapshotIntervalEntries: 250 });
    try {
      await waitFor('leader', () => member.replica.isLeader);
      let violations = 0;
      const watch = setInterval(() => {
        const status = member.replica.status();
        if (status.logStartOffset > (status.snapshot?.endOffset ?? 0)) violations++;
      }, 2);
      await produce(member.replica, 0, 900);
      await waitFor('the log start moved', () => member.replica.status().logStartOffset > 0);
      await new Promise((resolve) => setTimeout(resolve, 300));
      clearInterval(watch);
      const status = member.replica.status();
      assert.equal(violations, 0);
      assert.ok(status.snapshot !== null && status.logStartOffset <= status.snapshot.endOffset);
      assert.ok(status.snapshot.endOffset <= status.highWatermark);
      assert.ok(events(member.lines, 'replica.retention').every((line) => Number(line.startOffset) <= Number(line.limitOffset)));
    } finally {
      await stopMember(net, member);
    }
  });
});

describe('an empty data directory (issue 13.3: a replaced disk)', { timeout: 30_000 }, () => {
  const quietTiming = { electionTimeoutMs: 60_000, fetchTimeoutMs: 120_000 };

  async function fresh(disk: 'formatted' | 'replaced'): Promise<{ replica: Replica; dataDir: string; lines: string[] }> {
    const lines: string[] = [];
    const dataDir = join(freshRoot(), 'b1');
    if (disk === 'formatted') formatDataDirectory(dataDir, { cluster: 'c', group: 'g1', brokerId: 'b1' });
    const replica = await Replica.open(options('b1', ['b1', 'b2', 'b3'], dataDir, lines, quietTiming));
    replica.start(new ListMachine({ appliedOffset: 0, items: [] }), { send: () => undefined, close: () => undefined });
    return { replica, dataDir, lines };
  }

  test('never formatted: it opens recovering with its promise unknown, and refuses votes and pre-votes of every epoch, a first election too', async () => {
    const { replica, lines } = await fresh('replaced');
    try {
      const state = replica.recoveryState();
      assert.deepEqual([state.recovering, state.markUnknown, state.recoveryMarkOffset, state.promisedOffset], [true, true, null, 0]);
      assert.equal(replica.roleLabel(), 'recovering');
      assert.equal(replica.status().recoveryMarkOffset, null);
      assert.equal(events(lines, 'replica.joining_as_recovering').length, 1);
      // The form the earlier rule let through: a vote in epoch 1 from empty logs (seeds 16, 1438).
      const first = await replica.handle({ type: 'VoteRequest', from: 'b2', to: 'b1', epoch: 1, lastEpoch: 0, lastOffset: 0 }, 0);
      assert.equal(first?.type === 'VoteResponse' && first.granted, false, 'no vote in a first election');
      const answer = await replica.handle({ type: 'VoteRequest', from: 'b2', to: 'b1', epoch: 7, lastEpoch: 6, lastOffset: 120 }, 0);
      assert.deepEqual(answer && answer.type === 'VoteResponse' && [answer.granted, answer.epoch], [false, 7]);
      const again = await replica.handle({ type: 'PreVoteRequest', from: 'b3', to: 'b1', epoch: 8, lastEpoch: 7, lastOffset: 500 }, 0);
      assert.equal(again?.type === 'PreVoteResponse' && again.granted, false, 'no pre-vote either');
    } finally {
      await replica.close();
    }
  });

  test('the recovering state survives a restart before it caught up (the unknown mark is stored)', async () => {
    const { replica, dataDir } = await fresh('replaced');
    assert.equal(replica.recoveryState().recovering, true);
    await replica.close();
    const lines: string[] = [];
    const reopened = await Replica.open(options('b1', ['b1', 'b2', 'b3'], dataDir, lines, quietTiming));
    try {
      reopened.start(new ListMachine({ appliedOffset: 0, items: [] }), { send: () => undefined, close: () => undefined });
      const state = reopened.recoveryState();
      assert.deepEqual([state.recovering, state.markUnknown], [true, true]);
      assert.equal(events(lines, 'replica.joining_as_recovering').length, 0, 'the unknown promise was stored: not taken for a new disk again');
    } finally {
      await reopened.close();
    }
  });

  test("formatted: a new group's replica answers its first election and later epochs as usual (control)", async () => {
    const { replica, lines } = await fresh('formatted');
    try {
      assert.equal(replica.recoveryState().recovering, false);
      const answer = await replica.handle({ type: 'VoteRequest', from: 'b2', to: 'b1', epoch: 1, lastEpoch: 0, lastOffset: 0 }, 0);
      assert.equal(answer?.type === 'VoteResponse' && answer.granted, true);
      // A first vote that arrives late (after a pre-vote of epoch 2) is no sign of a replaced disk:
      // the liveness bug of the earlier rule.
      const later = await replica.handle({ type: 'PreVoteRequest', from: 'b3', to: 'b1', epoch: 2, lastEpoch: 0, lastOffset: 0 }, 0);
      assert.equal(later?.type, 'PreVoteResponse');
      await replica.handle({ type: 'BeginQuorumEpoch', from: 'b2', to: 'b1', epoch: 2 }, 0);
      assert.equal(replica.recoveryState().recovering, false);
      assert.equal(events(lines, 'replica.joining_as_recovering').length, 0);
    } finally {
      await replica.close();
    }
  });

  test('a directory formatted for another broker is refused at open, naming both', async () => {
    const dataDir = join(freshRoot(), 'b2');
    formatDataDirectory(dataDir, { cluster: 'c', group: 'g1', brokerId: 'b2' });
    await assert.rejects(
      Replica.open(options('b1', ['b1', 'b2', 'b3'], dataDir, [], quietTiming)),
      (error: Error) => error instanceof FormatError && /formatted for broker b2, not b1/.test(error.message),
    );
    await assert.rejects(
      Replica.open({ ...options('b2', ['b1', 'b2', 'b3'], dataDir, [], quietTiming), formatIdentity: { cluster: 'other', group: 'g1' } }),
      (error: Error) => error instanceof FormatError && /formatted for cluster c, not other/.test(error.message),
    );
  });
});

describe('the peer API (src/rpc/peer.ts)', { timeout: 30_000 }, () => {
  const codec = { toBatch: (entry: Entry) => batchOfEntry(entry, 0), fromBatches: entriesFromFetchedBatches };
  const leader = { cluster: 'c', group: 'g1', replicaId: 'b1' };
  const follower = { cluster: 'c', group: 'g1', replicaId: 'b2' };

  function snapshotNeededAnswer(request: FetchRequest): FetchResponse {
    return {
      type: 'FetchResponse',
      from: request.to,
      to: request.from,
      epoch: request.epoch,
      leaderId: request.to,
      snapshotNeeded: { endOffset: 4096, epoch: 3 },
      fetchOffset: request.fetchOffset,
      lastFetchedEpoch: request.lastFetchedEpoch,
      requestId: request.requestId,
      entries: [],
      highWatermark: 5000,
    };
  }

  test('FetchResponse.snapshotNeeded survives the conversion to the wire and back (else a follower reads an empty matching answer)', () => {
    const request: FetchRequest = { type: 'FetchRequest', from: 'b2', to: 'b1', epoch: 3, fetchOffset: 10, lastFetchedEpoch: 1, bytesMax: 1024, requestId: 9 };
    const wireType = messageType('mamba.raft.v1.FetchResponse');
    const bytes = wireType.encode(fetchResponseWire(snapshotNeededAnswer(request), codec)).finish();
    const back = fetchResponseOf(wireType.decode(bytes) as unknown as Record<string, unknown>, 'b1', 'b2', codec);
    assert.deepEqual(back.snapshotNeeded, { endOffset: 4096, epoch: 3 });
    const plain = fetchResponseOf(
      wireType.decode(wireType.encode(fetchResponseWire({ ...snapshotNeededAnswer(request), snapshotNeeded: undefined }, codec)).finish()) as unknown as Record<
        string,
        unknown
      >,
      'b1',
      'b2',
      codec,
    );
    assert.equal('snapshotNeeded' in plain, false, 'absent when the leader did not set it');
  });

  test('over gRPC: a FetchStream answer carries snapshotNeeded, FetchSnapshot serves chunks to members only', async () => {
    const served: FetchSnapshotRequest[] = [];
    const handler: PeerRequestHandler = {
      isMember: (id) => id === 'b2',
      handle: async (request) => snapshotNeededAnswer(request as FetchRequest),
      fetchSnapshot: async (request) => {
        served.push(request);
        return {
          from: 'b1',
          epoch: 3,
          leaderId: 'b1',
          snapshot: request.snapshot,
          sizeBytes: 100,
          position: request.position,
          bytes: Buffer.from([1, 2, 3]),
          chunkCrc: 42,
        };
      },
    };
    const server = new grpc.Server();
    addPeerService(server, leader, codec, handler);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const delivered: Message[] = [];
    const errors: string[] = [];
    const timing = { fetchWaitMsMax: 20, requestTimeoutMs: 1000 };
    const clients = new PeerClients(
      follower,
      [{ id: 'b1', address: `127.0.0.1:${port}` }],
      codec,
      (m) => delivered.push(m),
      timing,
      (_p, rpc, e) => errors.push(`${rpc}: ${e.code}`),
    );
    const stranger = new PeerClients(
      { ...follower, replicaId: 'b9' },
      [{ id: 'b1', address: `127.0.0.1:${port}` }],
      codec,
      () => undefined,
      timing,
      () => undefined,
    );
    try {
      clients.send({ type: 'FetchRequest', from: 'b2', to: 'b1', epoch: 3, fetchOffset: 0, lastFetchedEpoch: 0, bytesMax: 1024, requestId: 1 });
      const answer = await waitFor('the Fetch answer', () => delivered.find((m): m is FetchResponse => m.type === 'FetchResponse'), 5000);
      assert.deepEqual(answer.snapshotNeeded, { endOffset: 4096, epoch: 3 });
      const request = { from: 'b2', to: 'b1', leaderEpoch: 3, snapshot: { endOffset: 4096, epoch: 3 }, position: 64, bytesMax: 1 << 20 };
      const chunk = await clients.fetchSnapshot(request);
      assert.deepEqual([chunk.sizeBytes, chunk.position, [...chunk.bytes], chunk.chunkCrc, chunk.error], [100, 64, [1, 2, 3], 42, undefined]);
      assert.deepEqual(served[0], request);
      await assert.rejects(stranger.fetchSnapshot({ ...request, from: 'b9' }), (error: grpc.ServiceError) => error.code === grpc.status.PERMISSION_DENIED);
      assert.equal(served.length, 1, 'a non-member never reaches the replica');
    } finally {
      clients.close();
      stranger.close();
      server.forceShutdown();
    }
  });
});
