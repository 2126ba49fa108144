// Deterministic simulation of a group of Raft cores: one seed drives fake time, a faulty network
// (drops, delays, duplicates, reordering, symmetric and asymmetric partitions), crashes that lose
// whatever was not durable, clients, membership changes and leadership transfers. A safety phase
// with faults is followed by a liveness phase with faults healed.
//
// Operators (dissertation §4.1-4.2, §3.10; etcd learners, KIP-853), one command at a time on a
// leader: add a learner (a spare replica, or one removed earlier; half the time on a new empty
// disk, so it catches up from offset 0, by snapshot when the leader compacted), promote a learner
// (refused while it is behind), remove a learner, a follower or the leader itself (sometimes
// forced below three voters), the legacy direct addVoter, and leadership transfers to voters,
// learners and strangers. A removed replica is sometimes shut down for good once its removal
// commits, and may be added back later.
//
// Disks (DESIGN §12, on at most a minority of the voters at a time, until the damaged replica has
// fetched back what it lost): (a) a synced suffix is lost with the metadata intact, (b) an entry
// anywhere in the log is corrupt, detected by CRC on recovery, which truncates the log there,
// (c) in async flush mode (the page cache is reported durable, a periodic flush syncs it) a
// machine crash loses what was not synced yet, (d) the log and the snapshot are wiped (an empty
// data disk; metadata (hard state, commit mark) kept), (e) the disk is replaced: log, snapshot and
// metadata are all gone, and the replica restarts identity-less.
//
// Replaced disks (DESIGN §12, "an empty directory with no identity"): a replica on a new empty
// disk (a fresh learner's, or a replaced one) in a group with history starts recovering with an
// unknown promise (unknownPromisedOffset, stored before the core starts). The group's first start
// is a bootstrap: its directories were formatted (src/replica/format.ts), so those replicas know
// the group is new; a replaced disk is never formatted. This is the driver's rule
// (src/replica/replica.ts, open). The earlier rule (ordinary until a message of a higher epoch,
// except the first election's requests) let a replaced disk vote and campaign before it heard
// such a message: seeds 16 and 1438 found a second vote in epoch 1 and two leaders in epoch 1
// with it. The checker keeps vote grants by replica id, so a grant before the replacement and one
// after it are one replica's grants.

// Snapshots (DESIGN §12, KIP-630). Each replica's state machine is a hash chain over the entries
// it applied (checker.ts), rebuilt on start from its snapshot and the log. At random points a
// running replica snapshots its state at its applied offset S (<= its high watermark), tells the
// core (compact), and removes entries below S or below an earlier entry boundary (retention cuts
// whole segments). A log that ends below its snapshot on open is reset to start at it. A
// follower asked to fetch a snapshot (Ready.fetchSnapshot) runs the driver's transfer: a
// FetchSnapshot packet to the leader and its answer with the whole snapshot, each a network
// message (delay, loss, duplication, partitions), retried every transferRetryTicks; the answer is
// handed to the core (snapshotFetched) and installed in Ready step 2. A leader serves only its
// latest snapshot. After the liveness phase every voter must apply the new proposal
// (convergence, through snapshots where needed).

import { RaftCore } from '../../src/raft/core.js';
import { entryEnd, MemoryStorage } from '../../src/raft/storage.js';
import {
  type BrokenRuleForTest,
  type Message,
  type RaftEvent,
  type Ready,
  type ReplicaId,
  type SnapshotId,
  type SnapshotMeta,
  type SnapshotRequest,
  unknownPromisedOffset,
} from '../../src/raft/types.js';
import { chainHash, Checker, entryKey } from './checker.js';
import { Prng } from './prng.js';

export interface SimOptions {
  seed: number;
  trace?: (line: string) => void;
  // Disk faults (a)-(c) above; on unless false.
  diskFaults?: boolean;
  // TEST ONLY: cores ignore their promises (never recovering), to show what the rule prevents.
  recoveringRuleDisabled?: boolean;
  // TEST ONLY: cores break this membership rule, to show the checker catches the consequence.
  ruleBrokenForTest?: BrokenRuleForTest | null;
}

export interface SimResult {
  seed: number;
  violations: string[];
  ticks: number;
  committedEntries: number;
  acknowledged: number;
  leaderEpochs: number;
  diskFaults: number;
  recoveringStarts: number; // replica.recovering events
  recoveries: number; // replica.recovered events
  identitylessJoins: number; // starts on a new empty disk in a group with history (recovering, promise unknown)
  disksReplaced: number; // disk fault (e)
  snapshotsTaken: number;
  snapshotsInstalled: number;
  membership: MembershipCounts;
}

// Operator commands the cores accepted or refused.
export interface MembershipCounts {
  learnersAdded: number;
  freshLearners: number; // added on a new empty disk
  promotions: number;
  promotionsRefused: number; // LEARNER_BEHIND / UNREACHABLE / RECOVERING
  learnersRemoved: number;
  followersRemoved: number;
  leadersRemoved: number;
  legacyVotersAdded: number;
  refusals: number; // any other refusal (duplicates, below three, change in progress, ...)
  transfersStarted: number;
  transfersRefused: number;
  decommissioned: number;
  joinerSnapshotInstalls: number; // snapshots installed on an empty log by a non-voter of the snapshot's configuration
}

export function emptyMembershipCounts(): MembershipCounts {
  return {
    learnersAdded: 0,
    freshLearners: 0,
    promotions: 0,
    promotionsRefused: 0,
    learnersRemoved: 0,
    followersRemoved: 0,
    leadersRemoved: 0,
    legacyVotersAdded: 0,
    refusals: 0,
    transfersStarted: 0,
    transfersRefused: 0,
    decommissioned: 0,
    joinerSnapshotInstalls: 0,
  };
}

// sync: durable once appended (fdatasync per append); group: durable at the next group flush, a
// few ticks later; async: the page cache is reported durable at once and synced at the next flush.
type FlushMode = 'sync' | 'group' | 'async';
type DiskFault = 'lose-suffix' | 'corrupt' | 'machine-crash' | 'wipe' | 'replace-disk';

interface Scenario {
  voterCount: number;
  spareCount: number;
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  flushMode: FlushMode;
  flushDelayTicksMax: number;
  fetchBytesMax: number;
  crashRate: number;
  diskFaultRate: number;
  compactRate: number;
  partitionRate: number;
  proposeRate: number;
  membershipRate: number;
  transferRate: number;
  safetyTicks: number;
}

// A state machine: the hash chain of the entries applied below appliedOffset.
interface Machine {
  appliedOffset: number;
  state: string;
}

interface StoredSnapshot {
  meta: SnapshotMeta;
  state: string;
}

// The driver's snapshot transfer, outside the Raft messages.
type SnapshotPacket =
  | { kind: 'FetchSnapshot'; from: ReplicaId; to: ReplicaId; snapshot: SnapshotId }
  | { kind: 'FetchSnapshotResponse'; from: ReplicaId; to: ReplicaId; snapshot: StoredSnapshot };

interface SimNode {
  id: ReplicaId;
  storage: MemoryStorage;
  core: RaftCore | null;
  machine: Machine; // volatile: rebuilt on start
  snapshot: StoredSnapshot | null; // durable beside the log (lost only by a wipe)
  transfer: { request: SnapshotRequest; nextAttemptTick: number } | null; // volatile
  fetched: StoredSnapshot | null; // handed to the core, installed in Ready step 2
  durableEndOffset: number; // what the core is told is durable
  syncedEndOffset: number; // what a machine crash keeps
  flushDueTick: number | null;
  restartTick: number;
  // A disk fault broke this replica's promise: the offset it promised, until it holds it again.
  damageMarkOffset: number | null;
  // A corrupt entry that recovery on the next start will find (the log is cut there).
  corruptAtOffset: number | null;
  // Shut down for good after its removal committed (until an operator adds it back).
  decommissioned: boolean;
  // The last tick some running replica's configuration named it (voter or learner).
  memberTick: number | null;
  // It runs on a replaced disk: it starts identity-less while that disk holds nothing.
  diskReplaced: boolean;
  // The promise of the disks it had before a replace-disk fault: reports it made then may still be
  // counted by a leader that heard them (the checker's commit quorum counts them as it does a kept
  // promise after a wipe).
  replacedPromiseOffset: number;
}

interface InFlight {
  deliverTick: number;
  sequence: number;
  message: Message | SnapshotPacket;
}

const electionTicks = 10;
const livenessTicksMax = 1000;
const drainIterationsMax = 1000;
// (a) loses at most this many entries from the end of the log.
const lostSuffixEntriesMax = 8;
// The driver's snapshot transfer retries after this many ticks without an answer.
const transferRetryTicks = 6;
// After the liveness proposal commits, every voter must apply it; failing that, some voter behind
// must apply something new at least every this many ticks.
const convergenceTicksMax = 300;
// A replica goes back on a new empty disk (its vote state lost with it) only after it has been
// out of every configuration for this many ticks, far beyond any message delay: a vote request
// from before could otherwise make it vote twice in one epoch (KIP-853 tells disks apart by a
// directory id for that; here the operator procedure must ensure it).
const freshDiskAfterTicksMin = 50;
const memberNoteTicks = 10;
const encoder = new TextEncoder();

function chooseScenario(random: Prng, diskFaults: boolean): Scenario {
  const calm = random.chance(0.15);
  const diskFaultRate = random.pick([0.002, 0.005, 0.01, 0.02]);
  return {
    voterCount: random.chance(0.5) ? 3 : 5,
    spareCount: random.pick([0, 1, 1, 2]),
    dropRate: calm ? 0 : random.pick([0, 0.02, 0.05, 0.1, 0.2]),
    duplicateRate: calm ? 0 : random.pick([0, 0.01, 0.05]),
    delayTicksMax: random.pick([1, 2, 3, 5, 8]),
    flushMode: random.pick<FlushMode>(['sync', 'group', 'async']),
    flushDelayTicksMax: random.int(1, 6),
    fetchBytesMax: random.pick([120, 400, 4096]),
    crashRate: calm ? 0 : random.pick([0.002, 0.005, 0.01, 0.02]),
    diskFaultRate: calm || !diskFaults ? 0 : diskFaultRate,
    compactRate: random.pick([0, 0.01, 0.03, 0.1]),
    partitionRate: calm ? 0 : random.pick([0, 0.005, 0.01, 0.03]),
    proposeRate: random.pick([0.1, 0.3, 0.6]),
    membershipRate: random.chance(0.5) ? random.pick([0.005, 0.02, 0.05, 0.1]) : 0,
    transferRate: random.chance(0.4) ? random.pick([0.005, 0.02]) : 0,
    safetyTicks: random.int(400, 1000),
  };
}

export class Simulation {
  private readonly random: Prng;
  private readonly scenario: Scenario;
  private readonly nodes: SimNode[] = [];
  private readonly nodesById = new Map<ReplicaId, SimNode>();
  private readonly initialVoters: ReplicaId[];
  private readonly checker: Checker;
  private network: InFlight[] = [];
  private blocked = new Set<string>();
  private partitionHealTick = 0;
  private tickNow = 0;
  private sequence = 0;
  private valueCounter = 0;
  private healed = false;
  private diskFaultCount = 0;
  private recoveryCount = 0;
  private recoveringStartCount = 0;
  private identitylessJoinCount = 0;
  private disksReplacedCount = 0;
  private snapshotsTakenCount = 0;
  private snapshotsInstalledCount = 0;
  private readonly counts = emptyMembershipCounts();
  // Removals whose replica is shut down for good once the removal entry is committed.
  private decommissions: Array<{ id: ReplicaId; epoch: number; offset: number; untilTick: number }> = [];

  constructor(private readonly options: SimOptions) {
    this.random = new Prng(options.seed);
    this.scenario = chooseScenario(this.random, options.diskFaults !== false);
    const total = this.scenario.voterCount + this.scenario.spareCount;
    for (let index = 1; index <= total; index += 1) {
      this.nodes.push({
        id: `b${index}`,
        storage: new MemoryStorage(),
        core: null,
        machine: { appliedOffset: 0, state: '' },
        snapshot: null,
        transfer: null,
        fetched: null,
        durableEndOffset: 0,
        syncedEndOffset: 0,
        flushDueTick: null,
        restartTick: 0,
        damageMarkOffset: null,
        corruptAtOffset: null,
        decommissioned: false,
        memberTick: null,
        diskReplaced: false,
        replacedPromiseOffset: 0,
      });
    }
    for (const node of this.nodes) this.nodesById.set(node.id, node);
    this.initialVoters = this.nodes.slice(0, this.scenario.voterCount).map((node) => node.id);
    this.checker = new Checker(this.nodes.map((node) => node.id));
    for (const node of this.nodes) this.start(node);
    this.trace(`scenario ${JSON.stringify(this.scenario)}`);
  }

  run(): SimResult {
    try {
      for (; this.tickNow < this.scenario.safetyTicks && this.checker.ok(); this.tickNow += 1) this.safetyStep();
      if (this.checker.ok()) this.liveness();
    } catch (error) {
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      this.checker.violation(this.tickNow, `exception ${text}`);
    }
    return {
      seed: this.options.seed,
      violations: this.checker.violations,
      ticks: this.tickNow,
      committedEntries: this.checker.committedCount(),
      acknowledged: this.checker.acknowledgedCount(),
      leaderEpochs: this.checker.leaderEpochCount(),
      diskFaults: this.diskFaultCount,
      recoveringStarts: this.recoveringStartCount,
      recoveries: this.recoveryCount,
      identitylessJoins: this.identitylessJoinCount,
      disksReplaced: this.disksReplacedCount,
      snapshotsTaken: this.snapshotsTakenCount,
      snapshotsInstalled: this.snapshotsInstalledCount,
      membership: { ...this.counts },
    };
  }

  private trace(line: string): void {
    if (this.options.trace !== undefined) this.options.trace(`[${this.tickNow}] ${line}`);
  }

  private start(node: SimNode): void {
    if (node.corruptAtOffset !== null) {
      // Recovery scans the log, finds the bad CRC and truncates at the first bad entry.
      this.trace(`${node.id} recovery: corrupt entry at ${node.corruptAtOffset}, log cut there`);
      this.cutLog(node, node.corruptAtOffset);
      this.checker.crashed(node.id, node.storage);
      node.corruptAtOffset = null;
    }
    const snapshot = node.snapshot;
    node.machine = snapshot === null ? { appliedOffset: 0, state: '' } : { appliedOffset: snapshot.meta.endOffset, state: snapshot.state };
    node.transfer = null;
    node.fetched = null;
    if (this.options.recoveringRuleDisabled !== true && node.diskReplaced && emptyDataDirectory(node.storage)) {
      // A new disk in a group with history: its promise is unknown from the start (stored first).
      node.storage.setHardState({ ...node.storage.hardState(), promisedOffset: unknownPromisedOffset });
      this.identitylessJoinCount += 1;
      this.trace(`${node.id} starts on a new empty disk in a group with history: recovering, promise unknown`);
    }
    node.core = this.newCore(node);
    node.durableEndOffset = node.storage.endOffset();
    node.syncedEndOffset = node.storage.endOffset();
    node.flushDueTick = null;
    this.checker.restarted(node.id);
  }

  private newCore(node: SimNode): RaftCore {
    return new RaftCore(
      {
        id: node.id,
        voters: this.initialVoters,
        electionTicks,
        electionJitterTicks: electionTicks,
        fetchTimeoutTicks: electionTicks + electionTicks / 2,
        fetchRetryTicks: 4,
        beginQuorumEpochResendTicks: 3,
        fetchBytesMax: this.scenario.fetchBytesMax,
        uncommittedOffsetsMax: 60,
        random: (
          (generator: Prng) => () =>
            generator.next()
        )(new Prng(this.random.fork())),
        recoveringRuleDisabled: this.options.recoveringRuleDisabled === true,
        ruleBrokenForTest: this.options.ruleBrokenForTest ?? null,
      },
      node.storage,
    );
  }

  private safetyStep(): void {
    this.injectFaults();
    this.clientActions();
    this.decommissionRemoved();
    this.tickAll();
    if (this.tickNow % memberNoteTicks === 0) this.noteMembers();
  }

  // memberTick: sampled every memberNoteTicks ticks (and before each add), which is enough for
  // the fresh-disk rule and keeps the per-tick cost down.
  private noteMembers(): void {
    for (const node of this.nodes) {
      const core = node.core;
      if (core === null) continue;
      for (const id of core.voters) this.node(id).memberTick = this.tickNow;
      for (const id of core.learners) this.node(id).memberTick = this.tickNow;
    }
  }

  private tickAll(): void {
    this.deliverDue();
    for (const node of this.nodes) {
      if (node.core === null) continue;
      if (node.flushDueTick !== null && node.flushDueTick <= this.tickNow) this.flush(node);
      node.core.tick();
      this.drain(node);
      this.driveTransfer(node);
    }
  }

  // ---- network

  private send(message: Message | SnapshotPacket): void {
    const scenario = this.healed ? null : this.scenario;
    if (this.blocked.has(`${message.from}>${message.to}`)) return;
    if (scenario !== null && this.random.chance(scenario.dropRate)) return;
    const copies = scenario !== null && this.random.chance(scenario.duplicateRate) ? 2 : 1;
    const delayMax = scenario === null ? 2 : scenario.delayTicksMax;
    for (let copy = 0; copy < copies; copy += 1) {
      this.network.push({ deliverTick: this.tickNow + this.random.int(1, delayMax), sequence: this.sequence++, message });
    }
  }

  private deliverDue(): void {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const item of this.network) (item.deliverTick <= this.tickNow ? due : later).push(item);
    this.network = later;
    due.sort((x, y) => x.deliverTick - y.deliverTick || x.sequence - y.sequence);
    for (const item of due) {
      const node = this.node(item.message.to);
      if (node.core === null) continue;
      if (this.blocked.has(`${item.message.from}>${item.message.to}`)) continue;
      const message = item.message;
      if (this.options.trace !== undefined) this.trace(`deliver ${'kind' in message ? describePacket(message) : describe(message)}`);
      if ('kind' in message) {
        this.deliverPacket(node, message);
        continue;
      }
      const refused = node.core.step(message);
      // Correct peers never send a message the core refuses (src/raft/message-check.ts).
      if (refused !== null) this.checker.violation(this.tickNow, `${node.id} refused ${describe(message)}: ${refused}`);
      this.drain(node);
    }
  }

  // ---- the driver's snapshot transfer (KIP-630 FetchSnapshot, one packet each way)

  private driveTransfer(node: SimNode): void {
    const transfer = node.transfer;
    if (transfer === null || this.tickNow < transfer.nextAttemptTick) return;
    transfer.nextAttemptTick = this.tickNow + transferRetryTicks;
    this.send({ kind: 'FetchSnapshot', from: node.id, to: transfer.request.leaderId, snapshot: transfer.request.snapshot });
  }

  private deliverPacket(node: SimNode, packet: SnapshotPacket): void {
    if (packet.kind === 'FetchSnapshot') {
      const latest = node.snapshot; // only the latest snapshot is kept and served
      if (latest === null || latest.meta.endOffset !== packet.snapshot.endOffset || latest.meta.epoch !== packet.snapshot.epoch) return;
      this.send({ kind: 'FetchSnapshotResponse', from: node.id, to: packet.from, snapshot: latest });
      return;
    }
    const wanted = node.transfer?.request.snapshot;
    const meta = packet.snapshot.meta;
    if (wanted === undefined || wanted.endOffset !== meta.endOffset || wanted.epoch !== meta.epoch) return;
    node.fetched = packet.snapshot;
    const installing = node.core!.snapshotFetched(meta);
    this.trace(`${node.id} fetched snapshot e${meta.epoch}@${meta.endOffset}: ${installing ? 'installing' : 'not wanted'}`);
    if (!installing) node.fetched = null;
    this.drain(node);
  }

  // ---- the driver: execute Ready in the documented order

  private drain(node: SimNode): void {
    for (let iteration = 0; iteration < drainIterationsMax; iteration += 1) {
      const core = node.core!;
      const ready = core.ready();
      if (ready === null) return;
      this.execute(node, core, ready);
    }
    throw new Error(`drain: ${node.id} produced Ready without end`);
  }

  private execute(node: SimNode, core: RaftCore, ready: Ready): void {
    const promisedOffset = ready.installSnapshot === undefined ? 0 : (node.storage.hardState().promisedOffset ?? 0);
    if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
    if (ready.installSnapshot !== undefined) this.install(node, ready.installSnapshot, promisedOffset);
    if (ready.truncateTo !== undefined) {
      this.checker.truncating(this.tickNow, node.id, node.storage, ready.truncateTo);
      node.storage.truncateTo(ready.truncateTo);
      node.durableEndOffset = Math.min(node.durableEndOffset, ready.truncateTo);
      node.syncedEndOffset = Math.min(node.syncedEndOffset, ready.truncateTo);
    }
    if (ready.entries.length > 0) {
      node.storage.append(ready.entries);
      this.checker.appended(this.tickNow, node.id, node.storage, ready.entries);
      const mode = this.scenario.flushMode;
      if (mode === 'sync' || this.healed) node.syncedEndOffset = node.storage.endOffset();
      else node.flushDueTick ??= this.tickNow + this.random.int(0, this.scenario.flushDelayTicksMax);
      if (mode !== 'group' || this.healed) node.durableEndOffset = node.storage.endOffset();
    }
    core.advance(ready, node.durableEndOffset);
    if (ready.fetchSnapshot !== undefined) {
      const request = ready.fetchSnapshot;
      node.transfer = request === null ? null : { request, nextAttemptTick: this.tickNow };
      if (request !== null) this.trace(`${node.id} wants snapshot e${request.snapshot.epoch}@${request.snapshot.endOffset} from ${request.leaderId}`);
    }
    for (const event of ready.events ?? []) this.onEvent(node, event);
    if (ready.roleChange !== undefined) {
      const change = ready.roleChange;
      this.trace(`${node.id} role ${change.role} epoch ${change.epoch} leader ${change.leaderId ?? '-'}`);
      if (change.role === 'leader') this.checker.leaderElected(this.tickNow, node.id, change.epoch, core.voters, core.status().membershipChangeOffset !== null);
    }
    this.checker.observeMessages(this.tickNow, node.id, core, ready.messages);
    this.checker.observeHighWatermark(this.tickNow, node.id, core, node.storage);
    if (this.options.recoveringRuleDisabled !== true)
      this.checker.checkCommitQuorum(this.tickNow, node.id, core, ready.highWatermark, (id) => this.promisedOffsetOf(id));
    node.storage.recordCommitMark(core.highWatermark); // the driver's metadata (kept by disk faults)
    this.applyCommitted(node, core.highWatermark);
    for (const message of ready.messages) this.send(message);
  }

  // What a replica promised (its hard state, synced before any report left; on a disk it had before
  // a replacement, too). With an unknown promise, what it holds durably now.
  private promisedOffsetOf(id: ReplicaId): number {
    const node = this.node(id);
    const promised = node.storage.hardState().promisedOffset ?? 0;
    return Math.max(promised === unknownPromisedOffset ? node.durableEndOffset : promised, node.replacedPromiseOffset);
  }

  // Ready step 2: the fetched snapshot replaces the state machine and the log.
  private install(node: SimNode, meta: SnapshotMeta, promisedOffset: number): void {
    const fetched = node.fetched;
    if (fetched === null || fetched.meta.endOffset !== meta.endOffset || fetched.meta.epoch !== meta.epoch) {
      throw new Error(`${node.id}: Ready installs snapshot e${meta.epoch}@${meta.endOffset}, not the one fetched`);
    }
    this.checker.installing(this.tickNow, node.id, node.storage, meta, fetched.state, promisedOffset);
    const votersThere = meta.membership === null ? this.initialVoters : meta.membership.voters;
    if (node.storage.endOffset() === 0 && node.snapshot === null && !votersThere.includes(node.id)) this.counts.joinerSnapshotInstalls += 1;
    this.trace(`${node.id} install snapshot e${meta.epoch}@${meta.endOffset} (log was [${node.storage.startOffset()},${node.storage.endOffset()}))`);
    node.storage.installSnapshot(meta);
    node.snapshot = fetched;
    node.fetched = null;
    node.machine = { appliedOffset: meta.endOffset, state: fetched.state };
    node.durableEndOffset = meta.endOffset;
    node.syncedEndOffset = meta.endOffset;
    node.flushDueTick = null;
    this.snapshotsInstalledCount += 1;
  }

  // The apply loop: committed entries in order into the state machine.
  private applyCommitted(node: SimNode, highWatermark: number): void {
    const machine = node.machine;
    const target = Math.min(highWatermark, node.storage.endOffset());
    if (machine.appliedOffset >= target) return;
    while (machine.appliedOffset < target) {
      const entries = node.storage.entries(machine.appliedOffset, 1 << 16);
      for (const entry of entries) {
        if (entryEnd(entry) > target) break;
        if (entry.offset !== machine.appliedOffset) throw new Error(`${node.id}: apply found ${entry.offset}, expected ${machine.appliedOffset}`);
        machine.state = chainHash(machine.state, entryKey(entry));
        machine.appliedOffset = entryEnd(entry);
      }
      if (entries.length === 0 || entryEnd(entries[0]!) > target) break;
    }
    this.checker.applied(this.tickNow, node.id, machine.appliedOffset, machine.state);
  }

  // Compaction: a snapshot of the state machine at its applied offset, then retention below it.
  private maybeCompact(node: SimNode): void {
    const core = node.core!;
    const endOffset = node.machine.appliedOffset;
    if (endOffset < 1 || endOffset <= (node.snapshot?.meta.endOffset ?? 0) || endOffset < node.storage.startOffset()) return;
    const meta = core.snapshotMetaAt(endOffset);
    node.snapshot = { meta, state: node.machine.state };
    node.storage.recordSnapshot(meta);
    core.compact(endOffset);
    this.checker.snapshotTaken(this.tickNow, node.id, meta, node.machine.state);
    this.snapshotsTakenCount += 1;
    // Retention removes whole segments: up to the snapshot, or up to an earlier entry boundary.
    const retained = node.storage.allEntries();
    const candidates = retained.filter((entry) => entry.offset <= endOffset).map((entry) => entry.offset);
    const upTo = this.random.chance(0.7) || candidates.length === 0 ? endOffset : this.random.pick(candidates);
    const removedCount = retained.findIndex((entry) => entry.offset >= upTo);
    node.storage.removeBefore(upTo);
    this.checker.removedBefore(node.id, removedCount < 0 ? retained.length : removedCount);
    this.trace(`${node.id} snapshot e${meta.epoch}@${endOffset}, log now starts at ${node.storage.startOffset()}`);
    this.drain(node);
  }

  private onEvent(node: SimNode, event: RaftEvent): void {
    this.trace(`${node.id} event ${JSON.stringify(event)}`);
    if (event.type === 'replica.recovering' && event.markOffset !== unknownPromisedOffset) this.recoveringStartCount += 1;
    if (event.type === 'replica.recovered') this.recoveryCount += 1;
    if (event.type === 'CommittedDataDivergence') {
      this.checker.violation(this.tickNow, `${node.id} reports CommittedDataDivergence: ${JSON.stringify(event)}`);
    }
  }

  private flush(node: SimNode): void {
    node.flushDueTick = null;
    node.syncedEndOffset = node.storage.endOffset();
    if (node.durableEndOffset === node.syncedEndOffset) return;
    node.durableEndOffset = node.syncedEndOffset;
    node.core!.markDurable(node.durableEndOffset);
    this.drain(node);
  }

  // ---- faults

  private injectFaults(): void {
    const scenario = this.scenario;
    for (const node of this.nodes) {
      if (node.core !== null && this.random.chance(scenario.compactRate)) this.maybeCompact(node);
      if (node.core === null && !node.decommissioned && this.tickNow >= node.restartTick) {
        this.trace(`${node.id} restart (log end ${node.storage.endOffset()}, epoch ${node.storage.hardState().epoch})`);
        this.start(node);
      } else if (node.core !== null && this.random.chance(scenario.crashRate)) {
        this.crash(node, this.tickNow + this.random.int(5, 80));
      } else if (node.core !== null && this.random.chance(scenario.diskFaultRate) && this.diskFaultAllowed()) {
        this.diskFault(node, this.tickNow + this.random.int(5, 80));
      }
    }
    if (this.blocked.size > 0 && this.tickNow >= this.partitionHealTick) {
      this.trace('partition healed');
      this.blocked.clear();
    }
    if (this.blocked.size === 0 && this.random.chance(scenario.partitionRate)) this.partition();
  }

  // A process crash: in sync and group modes the unsynced tail is lost too (nothing counted on it);
  // in async mode the page cache survives a process crash.
  private crash(node: SimNode, restartTick: number): void {
    this.trace(`${node.id} crash (durable end ${node.durableEndOffset}, synced end ${node.syncedEndOffset} of ${node.storage.endOffset()})`);
    if (this.scenario.flushMode !== 'async') this.cutLog(node, node.syncedEndOffset);
    this.stop(node, restartTick);
  }

  // The log loses everything from endOffset on. When that is below the snapshot, the driver's
  // open resets the log to start at the snapshot (KRaft truncateToLatestSnapshot).
  private cutLog(node: SimNode, endOffset: number): void {
    const snapshot = node.snapshot;
    if (snapshot !== null && endOffset < snapshot.meta.endOffset) node.storage.installSnapshot(snapshot.meta);
    else node.storage.truncateTo(endOffset);
  }

  private stop(node: SimNode, restartTick: number): void {
    this.checker.crashed(node.id, node.storage);
    node.core = null;
    node.flushDueTick = null;
    node.restartTick = restartTick;
    node.transfer = null;
    node.fetched = null;
  }

  // A disk that forgets what it confirmed. The replica stops (faults show on the next start).
  private diskFault(node: SimNode, restartTick: number): void {
    const kinds: DiskFault[] = ['lose-suffix', 'corrupt', 'wipe', 'replace-disk'];
    if (this.scenario.flushMode === 'async') kinds.push('machine-crash');
    const kind = this.random.pick(kinds);
    if (kind === 'replace-disk') return this.replaceDiskFault(node, restartTick);
    this.cutLog(node, node.syncedEndOffset); // every kind is (at least) a machine crash
    const entries = node.storage.allEntries();
    if (kind === 'lose-suffix' && entries.length > 0) {
      const lost = this.random.int(1, Math.min(lostSuffixEntriesMax, entries.length));
      this.cutLog(node, entries[entries.length - lost]!.offset);
    }
    if (kind === 'corrupt' && entries.length > 0) node.corruptAtOffset = this.random.pick(entries).offset;
    if (kind === 'wipe') this.wipe(node);
    const endAfterOffset = node.corruptAtOffset ?? node.storage.endOffset();
    const promisedOffset = node.storage.hardState().promisedOffset ?? 0;
    this.trace(`${node.id} disk fault ${kind}: log end ${endAfterOffset} after recovery, promised ${promisedOffset}`);
    this.diskFaultCount += 1;
    if (endAfterOffset < promisedOffset) node.damageMarkOffset = promisedOffset;
    this.stop(node, restartTick);
  }

  // (e) A replaced disk: everything is gone, metadata included; the replica restarts identity-less.
  // It stays damaged (no further disk fault elsewhere) until it is an ordinary replica again.
  private replaceDiskFault(node: SimNode, restartTick: number): void {
    const promisedOffset = node.storage.hardState().promisedOffset ?? 0;
    this.trace(
      `${node.id} disk fault replace-disk: epoch ${node.storage.hardState().epoch} and vote ${node.storage.hardState().votedFor ?? '-'} forgotten, promised ${promisedOffset}`,
    );
    node.replacedPromiseOffset = Math.max(node.replacedPromiseOffset, promisedOffset);
    this.replaceDisk(node);
    this.diskFaultCount += 1;
    this.disksReplacedCount += 1;
    node.damageMarkOffset = Math.max(1, promisedOffset);
    this.stop(node, restartTick);
  }

  // (d) An empty data disk: the log and the snapshot are gone; the metadata survives.
  private wipe(node: SimNode): void {
    const storage = new MemoryStorage();
    storage.setHardState(node.storage.hardState());
    storage.recordCommitMark(node.storage.commitMarkOffset());
    node.storage = storage;
    node.snapshot = null;
    node.syncedEndOffset = 0;
    node.durableEndOffset = 0;
    this.checker.wiped(node.id);
  }

  // Disk faults strike at most a minority of the voters at a time, in any configuration that may
  // take effect (the latest membership entry of any log, even of a stopped replica): a replica
  // stays damaged until it holds its promise again.
  private diskFaultAllowed(): boolean {
    let voterCountMin = this.initialVoters.length;
    for (const node of this.nodes) {
      const latest = node.storage.membership().at(-1);
      if (latest !== undefined) voterCountMin = Math.min(voterCountMin, latest.voters.length);
      if (node.core !== null) voterCountMin = Math.min(voterCountMin, node.core.voters.length);
    }
    return this.damagedCount() + 1 <= Math.floor((voterCountMin - 1) / 2);
  }

  // With the rule on, the core says when it recovered; with it off, the log must reach the mark.
  // A member without identity is damaged as well: it neither votes nor counts until it recovers
  // from a leader every other voter follows (and membership stays put meanwhile).
  private damagedCount(): number {
    let count = 0;
    for (const node of this.nodes) {
      if (this.lacksIdentity(node)) {
        count += 1;
        continue;
      }
      if (node.damageMarkOffset === null) continue;
      const core = node.core;
      const ruleOn = this.options.recoveringRuleDisabled !== true;
      const healed = core !== null && (ruleOn ? !core.recovering : node.storage.endOffset() >= node.damageMarkOffset);
      if (healed) node.damageMarkOffset = null;
      else count += 1;
    }
    return count;
  }

  // A member (voter or learner: a learner may be made a voter) of some running replica's
  // configuration that has no identity: on a new empty disk, or recovering with an unknown promise.
  private lacksIdentity(node: SimNode): boolean {
    if (node.decommissioned || this.options.recoveringRuleDisabled === true) return false;
    const unknown = node.storage.hardState().promisedOffset === unknownPromisedOffset;
    const without = (node.diskReplaced && emptyDataDirectory(node.storage)) || (unknown && (node.core === null || node.core.recovering));
    return without && this.nodes.some((other) => other.core?.voters.includes(node.id) || other.core?.learners.includes(node.id));
  }

  private partition(): void {
    const ids = this.nodes.map((node) => node.id);
    const kind = this.random.int(0, 2);
    if (kind === 0) {
      const side = new Set(ids.filter(() => this.random.chance(0.5)));
      for (const from of ids) for (const to of ids) if (side.has(from) !== side.has(to)) this.blocked.add(`${from}>${to}`);
      this.trace(`partition symmetric {${[...side].join(',')}}`);
    } else {
      const victim = this.random.pick(ids);
      const inbound = kind === 1;
      for (const other of ids) if (other !== victim) this.blocked.add(inbound ? `${other}>${victim}` : `${victim}>${other}`);
      this.trace(`partition asymmetric ${victim} ${inbound ? 'hears nothing' : 'is not heard'}`);
    }
    this.partitionHealTick = this.tickNow + this.random.int(10, 120);
  }

  // ---- clients and operators

  private clientActions(): void {
    const leader = this.currentLeader();
    if (leader === null) return;
    const leads = (): boolean => leader.core !== null && leader.core.role === 'leader';
    if (this.random.chance(this.scenario.proposeRate) && leads()) this.propose(leader);
    if (this.random.chance(this.scenario.transferRate) && leads()) this.transfer(leader);
    if (this.random.chance(this.scenario.transferRate / 2) && leads()) this.shutdown(leader);
    // Membership stays put while a replica is damaged: a smaller group could leave it a majority.
    if (this.random.chance(this.scenario.membershipRate) && leads() && this.damagedCount() === 0) this.changeMembership(leader);
  }

  // Some replica that believes it leads (there may be a stale one; clients may reach either).
  private currentLeader(): SimNode | null {
    const leaders = this.nodes.filter((node) => node.core !== null && node.core.role === 'leader');
    return leaders.length === 0 ? null : this.random.pick(leaders);
  }

  private propose(leader: SimNode): boolean {
    const core = leader.core!;
    const value = `v${this.valueCounter++}`;
    const count = this.random.int(1, 3);
    const result = core.propose(encoder.encode(value), count);
    if (!result.ok) return false;
    this.trace(`${leader.id} propose ${value} x${count} at ${result.offset}`);
    this.checker.proposed(leader.id, core.epoch, result.offset, value);
    this.drain(leader);
    return true;
  }

  // A transfer to a voter, now and then to the best one, a learner or a stranger (refused, typed).
  private transfer(leader: SimNode): void {
    const core = leader.core!;
    const others = [...core.voters, ...core.learners].filter((id) => id !== leader.id);
    const roll = this.random.next();
    const target = roll < 0.1 ? 'b99' : roll < 0.2 || others.length === 0 ? null : this.random.pick(others);
    const result = core.transferLeadership(target);
    if (result.ok) this.counts.transfersStarted += 1;
    else this.counts.transfersRefused += 1;
    this.trace(`${leader.id} transfer to ${target ?? '(best)'}: ${result.ok ? `started, to ${result.target}` : `${result.error} (${result.message})`}`);
    this.drain(leader);
  }

  // Graceful shutdown of a leader: resign (hands over to its most caught-up voter), then stop.
  private shutdown(leader: SimNode): void {
    this.trace(`${leader.id} resign and shut down`);
    leader.core!.resign();
    this.drain(leader);
    this.crash(leader, this.tickNow + this.random.int(5, 40));
  }

  // One operator command on the leader (the core refuses a second one while one is uncommitted).
  private changeMembership(leader: SimNode): void {
    const core = leader.core!;
    const members = [...core.voters, ...core.learners];
    const outsiders = this.nodes.filter((node) => !members.includes(node.id));
    const roll = this.random.next();
    if (core.learners.length > 0 && roll < 0.35) return this.promote(leader, this.random.pick(core.learners));
    if (outsiders.length > 0 && (roll < 0.7 || core.voters.length <= 2)) return this.addLearner(leader, this.random.pick(outsiders));
    if (roll < 0.75) return this.addLearner(leader, this.random.pick(this.nodes)); // maybe a member: refused
    this.remove(leader, this.random.pick(members));
  }

  private addLearner(leader: SimNode, target: SimNode): void {
    const core = leader.core!;
    const member = { id: target.id, clientAddress: `${target.id}.client:9092`, peerAddress: `${target.id}.peer:9093` };
    const legacy = this.random.chance(0.1);
    const outsider = !core.voters.includes(target.id) && !core.learners.includes(target.id);
    this.noteMembers();
    const quietTicks = target.memberTick === null ? Infinity : this.tickNow - target.memberTick;
    const result = legacy ? core.addVoter(target.id) : core.addLearner(member);
    this.trace(`${leader.id} ${legacy ? 'addVoter' : 'addLearner'} ${target.id}: ${result.ok ? `at ${result.offset}` : result.error}`);
    this.drain(leader);
    if (!result.ok) {
      this.counts.refusals += 1;
      return;
    }
    if (legacy) this.counts.legacyVotersAdded += 1;
    else this.counts.learnersAdded += 1;
    if (!outsider) return;
    // The operator starts the new replica: on a new empty disk, or on the one it had.
    const fresh = quietTicks >= freshDiskAfterTicksMin && target.damageMarkOffset === null && this.random.chance(0.5);
    if (fresh) {
      this.trace(`${target.id} starts on a new empty disk`);
      if (target.core !== null) this.stop(target, this.tickNow);
      this.replaceDisk(target);
      this.counts.freshLearners += 1;
    }
    if (target.core === null) {
      target.decommissioned = false;
      this.start(target);
    }
  }

  private promote(leader: SimNode, id: ReplicaId): void {
    const result = leader.core!.promoteLearner(id);
    this.trace(`${leader.id} promoteLearner ${id}: ${result.ok ? `at ${result.offset}` : `${result.error} (${result.message})`}`);
    this.drain(leader);
    if (result.ok) this.counts.promotions += 1;
    else if (result.error.startsWith('LEARNER_')) this.counts.promotionsRefused += 1;
    else this.counts.refusals += 1;
  }

  private remove(leader: SimNode, id: ReplicaId): void {
    const core = leader.core!;
    const role = core.learners.includes(id) ? 'learner' : id === leader.id ? 'leader' : 'follower';
    const force = this.random.chance(0.3);
    const epoch = core.epoch;
    const result = core.removeMember(id, { force });
    this.trace(
      `${leader.id} removeMember ${id} (${role}${force ? ', force' : ''}): ${result.ok ? `at ${result.offset}` : `${result.error} (${result.message})`}`,
    );
    this.drain(leader);
    if (!result.ok) {
      this.counts.refusals += 1;
      return;
    }
    if (role === 'learner') this.counts.learnersRemoved += 1;
    else if (role === 'leader') this.counts.leadersRemoved += 1;
    else this.counts.followersRemoved += 1;
    if (this.random.chance(0.5)) this.decommissions.push({ id, epoch, offset: result.offset, untilTick: this.tickNow + 300 });
  }

  // A removed replica is shut down once its removal is committed (an operator may add it back).
  private decommissionRemoved(): void {
    if (this.decommissions.length === 0) return;
    const keep: typeof this.decommissions = [];
    for (const item of this.decommissions) {
      const key = this.checker.committedKeyAt(item.offset);
      if (key === undefined && this.tickNow < item.untilTick) keep.push(item);
      if (key === undefined || !key.startsWith(`${item.epoch}:${item.offset}:`)) continue;
      const node = this.node(item.id);
      if (node.core === null && node.decommissioned) continue;
      if (this.currentMember(item.id)) continue; // added back meanwhile
      this.trace(`${item.id} decommissioned (its removal at ${item.offset} committed)`);
      if (node.core !== null) this.crash(node, this.tickNow);
      node.decommissioned = true;
      this.counts.decommissioned += 1;
    }
    this.decommissions = keep;
  }

  // Whether a running leader's configuration names `id`.
  private currentMember(id: ReplicaId): boolean {
    return this.nodes.some((node) => node.core !== null && node.core.role === 'leader' && (node.core.voters.includes(id) || node.core.learners.includes(id)));
  }

  // A new empty disk: no log, no snapshot, no hard state (a new data directory).
  private replaceDisk(node: SimNode): void {
    node.storage = new MemoryStorage();
    node.diskReplaced = true;
    node.snapshot = null;
    node.syncedEndOffset = 0;
    node.durableEndOffset = 0;
    node.corruptAtOffset = null;
    this.checker.wiped(node.id);
  }

  // ---- liveness: heal everything, then a leader must appear and a new proposal must commit.

  private liveness(): void {
    this.healed = true;
    this.blocked.clear();
    this.trace('liveness phase: faults healed');
    for (const node of this.nodes) {
      if (node.core === null && !node.decommissioned) this.start(node);
      else if (node.core !== null && node.flushDueTick !== null) this.flush(node);
    }
    const startTick = this.tickNow;
    // One client: proposes a value and waits for it; proposes again only if its leader lost office.
    let attempt: { value: string; leader: SimNode; epoch: number } | null = null;
    for (; this.tickNow < startTick + livenessTicksMax && this.checker.ok(); this.tickNow += 1) {
      this.tickAll();
      if (attempt !== null && this.checker.isAcknowledged(attempt.value)) {
        this.trace(`liveness reached: ${attempt.value} committed after ${this.tickNow - startTick} ticks`);
        this.checker.checkAcknowledgedKept(this.tickNow, attempt.leader.id, attempt.leader.storage);
        this.converge(attempt.leader);
        return;
      }
      const core = attempt?.leader.core ?? null;
      if (attempt !== null && core !== null && core.role === 'leader' && core.epoch === attempt.epoch) continue;
      const leader = this.currentLeader();
      if (leader === null) continue;
      const value = `v${this.valueCounter}`;
      if (this.propose(leader)) attempt = { value, leader, epoch: leader.core!.epoch };
    }
    if (this.checker.ok()) this.checker.violation(this.tickNow, `liveness: no new proposal committed within ${livenessTicksMax} ticks after healing`);
  }

  // Every voter and learner applies what the leader committed (followers that fell behind a
  // compaction get there by snapshot), and then all state machines agree (checker.applied at each
  // apply). A member far behind may take long (small Fetches); what fails is a stall: no member
  // that is behind applies anything new for convergenceTicksMax ticks.
  private converge(leader: SimNode): void {
    const core = leader.core;
    if (core === null || !this.checker.ok()) return;
    const target = core.highWatermark;
    const voters = [...core.voters, ...core.learners].map((id) => this.node(id));
    const appliedSum = (): number => voters.reduce((sum, node) => sum + Math.min(node.machine.appliedOffset, target), 0);
    const startTick = this.tickNow;
    let progressTick = this.tickNow;
    let progress = appliedSum();
    for (; this.tickNow < progressTick + convergenceTicksMax && this.checker.ok(); this.tickNow += 1) {
      if (voters.every((node) => node.core !== null && node.machine.appliedOffset >= target)) {
        this.trace(`converged: every voter and learner applied ${target} after ${this.tickNow - startTick} ticks`);
        return;
      }
      this.tickAll();
      if (appliedSum() > progress) {
        progress = appliedSum();
        progressTick = this.tickNow;
      }
    }
    const behind = voters.filter((node) => node.machine.appliedOffset < target).map((node) => `${node.id}@${node.machine.appliedOffset}`);
    if (this.checker.ok())
      this.checker.violation(this.tickNow, `convergence: members ${behind.join(',')} applied nothing new towards ${target} for ${convergenceTicksMax} ticks`);
  }

  private node(id: ReplicaId): SimNode {
    const node = this.nodesById.get(id);
    if (node === undefined) throw new Error(`unknown node ${id}`);
    return node;
  }
}

export function describe(message: Message): string {
  const head = `${message.type} ${message.from}->${message.to} e${message.epoch}`;
  switch (message.type) {
    case 'FetchRequest':
      return `${head} offset ${message.fetchOffset} lastEpoch ${message.lastFetchedEpoch}${message.recovering === true ? ' recovering' : ''}`;
    case 'FetchResponse': {
      const range = message.entries.length === 0 ? 'none' : `${message.entries[0]!.offset}..${message.entries.at(-1)!.offset + message.entries.at(-1)!.count}`;
      const diverging = message.divergingEpoch === undefined ? '' : ` diverging e${message.divergingEpoch.epoch}@${message.divergingEpoch.endOffset}`;
      const snapshot = message.snapshotNeeded === undefined ? '' : ` snapshotNeeded e${message.snapshotNeeded.epoch}@${message.snapshotNeeded.endOffset}`;
      return `${head}${message.error === undefined ? '' : ` ${message.error}`}${diverging}${snapshot} entries ${range} hw ${message.highWatermark}`;
    }
    case 'VoteRequest':
    case 'PreVoteRequest':
      return `${head} last e${message.lastEpoch}@${message.lastOffset}`;
    case 'VoteResponse':
    case 'PreVoteResponse':
      return `${head} ${message.granted ? 'granted' : 'refused'}`;
    default:
      return head;
  }
}

// Nothing on disk: no epoch, vote, promise or commit mark, no entry, no snapshot.
function emptyDataDirectory(storage: MemoryStorage): boolean {
  const hardState = storage.hardState();
  const promised = hardState.promisedOffset ?? 0;
  const nothingStored = storage.endOffset() === 0 && storage.snapshot() === null && storage.commitMarkOffset() === 0;
  return hardState.epoch === 0 && hardState.votedFor === null && promised === 0 && nothingStored;
}

function describePacket(packet: SnapshotPacket): string {
  const id = packet.kind === 'FetchSnapshot' ? packet.snapshot : packet.snapshot.meta;
  return `${packet.kind} ${packet.from}->${packet.to} e${id.epoch}@${id.endOffset}`;
}

export type SimSettings = Pick<SimOptions, 'diskFaults' | 'recoveringRuleDisabled' | 'ruleBrokenForTest'>;

export function runSeed(seed: number, trace?: (line: string) => void, settings: SimSettings = {}): SimResult {
  const options: SimOptions = trace === undefined ? { seed, ...settings } : { seed, trace, ...settings };
  return new Simulation(options).run();
}
