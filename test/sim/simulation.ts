// Deterministic simulation of a group of Raft cores: one seed drives fake time, a faulty network
// (drops, delays, duplicates, reordering, symmetric and asymmetric partitions), crashes that lose
// whatever was not durable, clients, membership changes and leadership transfers. A safety phase
// with faults is followed by a liveness phase with faults healed.
//
// Disks (DESIGN §12, on at most a minority of the voters at a time, until the damaged replica has
// fetched back what it lost): (a) a synced suffix is lost with the metadata intact, (b) an entry
// anywhere in the log is corrupt, detected by CRC on recovery, which truncates the log there,
// (c) in async flush mode (the page cache is reported durable, a periodic flush syncs it) a
// machine crash loses what was not synced yet. Metadata (hard state, commit mark) is never lost.

import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { Message, RaftEvent, Ready, ReplicaId } from '../../src/raft/types.js';
import { Checker } from './checker.js';
import { Prng } from './prng.js';

export interface SimOptions {
  seed: number;
  trace?: (line: string) => void;
  // Disk faults (a)-(c) above; on unless false.
  diskFaults?: boolean;
  // TEST ONLY: cores ignore their promises (never recovering), to show what the rule prevents.
  recoveringRuleDisabled?: boolean;
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
}

// sync: durable once appended (fdatasync per append); group: durable at the next group flush, a
// few ticks later; async: the page cache is reported durable at once and synced at the next flush.
type FlushMode = 'sync' | 'group' | 'async';
type DiskFault = 'lose-suffix' | 'corrupt' | 'machine-crash';

interface Scenario {
  voterCount: number;
  spareCount: number;
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  flushMode: FlushMode;
  flushDelayTicksMax: number;
  maxFetchBytes: number;
  crashRate: number;
  diskFaultRate: number;
  partitionRate: number;
  proposeRate: number;
  membershipRate: number;
  transferRate: number;
  safetyTicks: number;
}

interface SimNode {
  id: ReplicaId;
  storage: MemoryStorage;
  core: RaftCore | null;
  durableEndOffset: number; // what the core is told is durable
  syncedEndOffset: number; // what a machine crash keeps
  flushDueTick: number | null;
  restartTick: number;
  // A disk fault broke this replica's promise: the offset it promised, until it holds it again.
  damageMarkOffset: number | null;
  // A corrupt entry that recovery on the next start will find (the log is cut there).
  corruptAtOffset: number | null;
}

interface InFlight {
  deliverTick: number;
  sequence: number;
  message: Message;
}

const electionTicks = 10;
const livenessTicksMax = 1000;
const drainIterationsMax = 1000;
// (a) loses at most this many entries from the end of the log.
const lostSuffixEntriesMax = 8;
const encoder = new TextEncoder();

function chooseScenario(random: Prng, diskFaults: boolean): Scenario {
  const calm = random.chance(0.15);
  const diskFaultRate = random.pick([0.002, 0.005, 0.01, 0.02]);
  return {
    voterCount: random.chance(0.5) ? 3 : 5,
    spareCount: random.chance(0.5) ? 1 : 0,
    dropRate: calm ? 0 : random.pick([0, 0.02, 0.05, 0.1, 0.2]),
    duplicateRate: calm ? 0 : random.pick([0, 0.01, 0.05]),
    delayTicksMax: random.pick([1, 2, 3, 5, 8]),
    flushMode: random.pick<FlushMode>(['sync', 'group', 'async']),
    flushDelayTicksMax: random.int(1, 6),
    maxFetchBytes: random.pick([120, 400, 4096]),
    crashRate: calm ? 0 : random.pick([0.002, 0.005, 0.01, 0.02]),
    diskFaultRate: calm || !diskFaults ? 0 : diskFaultRate,
    partitionRate: calm ? 0 : random.pick([0, 0.005, 0.01, 0.03]),
    proposeRate: random.pick([0.1, 0.3, 0.6]),
    membershipRate: random.chance(0.4) ? random.pick([0.005, 0.02]) : 0,
    transferRate: random.chance(0.4) ? random.pick([0.005, 0.02]) : 0,
    safetyTicks: random.int(400, 1000),
  };
}

export class Simulation {
  private readonly random: Prng;
  private readonly scenario: Scenario;
  private readonly nodes: SimNode[] = [];
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

  constructor(private readonly options: SimOptions) {
    this.random = new Prng(options.seed);
    this.scenario = chooseScenario(this.random, options.diskFaults !== false);
    const total = this.scenario.voterCount + this.scenario.spareCount;
    for (let index = 1; index <= total; index += 1) {
      this.nodes.push({
        id: `b${index}`,
        storage: new MemoryStorage(),
        core: null,
        durableEndOffset: 0,
        syncedEndOffset: 0,
        flushDueTick: null,
        restartTick: 0,
        damageMarkOffset: null,
        corruptAtOffset: null,
      });
    }
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
    };
  }

  private trace(line: string): void {
    if (this.options.trace !== undefined) this.options.trace(`[${this.tickNow}] ${line}`);
  }

  private start(node: SimNode): void {
    if (node.corruptAtOffset !== null) {
      // Recovery scans the log, finds the bad CRC and truncates at the first bad entry.
      this.trace(`${node.id} recovery: corrupt entry at ${node.corruptAtOffset}, log cut there`);
      node.storage.truncateTo(node.corruptAtOffset);
      this.checker.crashed(node.id, node.storage);
      node.corruptAtOffset = null;
    }
    node.core = new RaftCore(
      {
        id: node.id,
        voters: this.initialVoters,
        electionTicks,
        electionJitterTicks: electionTicks,
        fetchTimeoutTicks: electionTicks + electionTicks / 2,
        fetchRetryTicks: 4,
        beginQuorumEpochResendTicks: 3,
        maxFetchBytes: this.scenario.maxFetchBytes,
        uncommittedOffsetsMax: 60,
        random: (
          (generator: Prng) => () =>
            generator.next()
        )(new Prng(this.random.fork())),
        recoveringRuleDisabled: this.options.recoveringRuleDisabled === true,
      },
      node.storage,
    );
    node.durableEndOffset = node.storage.endOffset();
    node.syncedEndOffset = node.storage.endOffset();
    node.flushDueTick = null;
    this.checker.restarted(node.id);
  }

  private safetyStep(): void {
    this.injectFaults();
    this.clientActions();
    this.tickAll();
  }

  private tickAll(): void {
    this.deliverDue();
    for (const node of this.nodes) {
      if (node.core === null) continue;
      if (node.flushDueTick !== null && node.flushDueTick <= this.tickNow) this.flush(node);
      node.core.tick();
      this.drain(node);
    }
  }

  // ---- network

  private send(message: Message): void {
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
      if (this.options.trace !== undefined) this.trace(`deliver ${describe(item.message)}`);
      node.core.step(item.message);
      this.drain(node);
    }
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
    if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
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
    for (const event of ready.events ?? []) this.onEvent(node, event);
    if (ready.roleChange !== undefined) {
      const change = ready.roleChange;
      this.trace(`${node.id} role ${change.role} epoch ${change.epoch} leader ${change.leaderId ?? '-'}`);
      if (change.role === 'leader') this.checker.leaderElected(this.tickNow, node.id, change.epoch, node.storage);
    }
    this.checker.observeHighWatermark(this.tickNow, node.id, core, node.storage);
    node.storage.recordCommitMark(core.highWatermark); // the driver's metadata (kept by disk faults)
    for (const message of ready.messages) this.send(message);
  }

  private onEvent(node: SimNode, event: RaftEvent): void {
    this.trace(`${node.id} event ${JSON.stringify(event)}`);
    if (event.type === 'replica.recovering') this.recoveringStartCount += 1;
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
      if (node.core === null && this.tickNow >= node.restartTick) {
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
    if (this.scenario.flushMode !== 'async') node.storage.truncateTo(node.syncedEndOffset);
    this.stop(node, restartTick);
  }

  private stop(node: SimNode, restartTick: number): void {
    this.checker.crashed(node.id, node.storage);
    node.core = null;
    node.flushDueTick = null;
    node.restartTick = restartTick;
  }

  // A disk that forgets what it confirmed. The replica stops (faults show on the next start).
  private diskFault(node: SimNode, restartTick: number): void {
    const kinds: DiskFault[] = this.scenario.flushMode === 'async' ? ['lose-suffix', 'corrupt', 'machine-crash'] : ['lose-suffix', 'corrupt'];
    const kind = this.random.pick(kinds);
    node.storage.truncateTo(node.syncedEndOffset); // every kind is (at least) a machine crash
    const entries = node.storage.allEntries();
    if (kind === 'lose-suffix' && entries.length > 0) {
      const lost = this.random.int(1, Math.min(lostSuffixEntriesMax, entries.length));
      node.storage.truncateTo(entries[entries.length - lost]!.offset);
    }
    if (kind === 'corrupt' && entries.length > 0) node.corruptAtOffset = this.random.pick(entries).offset;
    const endAfterOffset = node.corruptAtOffset ?? node.storage.endOffset();
    const promisedOffset = node.storage.hardState().promisedOffset ?? 0;
    this.trace(`${node.id} disk fault ${kind}: log end ${endAfterOffset} after recovery, promised ${promisedOffset}`);
    this.diskFaultCount += 1;
    if (endAfterOffset < promisedOffset) node.damageMarkOffset = promisedOffset;
    this.stop(node, restartTick);
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
  private damagedCount(): number {
    let count = 0;
    for (const node of this.nodes) {
      if (node.damageMarkOffset === null) continue;
      const core = node.core;
      const ruleOn = this.options.recoveringRuleDisabled !== true;
      const healed = core !== null && (ruleOn ? !core.recovering : node.storage.endOffset() >= node.damageMarkOffset);
      if (healed) node.damageMarkOffset = null;
      else count += 1;
    }
    return count;
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

  private transfer(leader: SimNode): void {
    const core = leader.core!;
    const others = core.voters.filter((id) => id !== leader.id);
    if (others.length === 0) return;
    const target = this.random.pick(others);
    const result = core.transferLeadership(target);
    this.trace(`${leader.id} transfer to ${target}: ${result.ok ? 'started' : result.error}`);
    this.drain(leader);
  }

  // Graceful shutdown of a leader: resign (hands over to its most caught-up voter), then stop.
  private shutdown(leader: SimNode): void {
    this.trace(`${leader.id} resign and shut down`);
    leader.core!.resign();
    this.drain(leader);
    this.crash(leader, this.tickNow + this.random.int(5, 40));
  }

  private changeMembership(leader: SimNode): void {
    const core = leader.core!;
    const voters = core.voters;
    const outsiders = this.nodes.map((node) => node.id).filter((id) => !voters.includes(id));
    const add = outsiders.length > 0 && (voters.length <= 2 || this.random.chance(0.5));
    const target = add ? this.random.pick(outsiders) : this.random.pick(voters);
    if (!add && voters.length <= 2) return;
    const result = add ? core.addVoter(target) : core.removeVoter(target);
    this.trace(`${leader.id} ${add ? 'add' : 'remove'} voter ${target}: ${result.ok ? `at ${result.offset}` : result.error}`);
    this.drain(leader);
  }

  // ---- liveness: heal everything, then a leader must appear and a new proposal must commit.

  private liveness(): void {
    this.healed = true;
    this.blocked.clear();
    this.trace('liveness phase: faults healed');
    for (const node of this.nodes) {
      if (node.core === null) this.start(node);
      else if (node.flushDueTick !== null) this.flush(node);
    }
    const startTick = this.tickNow;
    // One client: proposes a value and waits for it; proposes again only if its leader lost office.
    let attempt: { value: string; leader: SimNode; epoch: number } | null = null;
    for (; this.tickNow < startTick + livenessTicksMax && this.checker.ok(); this.tickNow += 1) {
      this.tickAll();
      if (attempt !== null && this.checker.isAcknowledged(attempt.value)) {
        this.trace(`liveness reached: ${attempt.value} committed after ${this.tickNow - startTick} ticks`);
        this.checker.checkAcknowledgedKept(this.tickNow, attempt.leader.id, attempt.leader.storage);
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

  private node(id: ReplicaId): SimNode {
    const node = this.nodes.find((candidate) => candidate.id === id);
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
      return `${head}${message.error === undefined ? '' : ` ${message.error}`}${diverging} entries ${range} hw ${message.highWatermark}`;
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

export type SimSettings = Pick<SimOptions, 'diskFaults' | 'recoveringRuleDisabled'>;

export function runSeed(seed: number, trace?: (line: string) => void, settings: SimSettings = {}): SimResult {
  const options: SimOptions = trace === undefined ? { seed, ...settings } : { seed, trace, ...settings };
  return new Simulation(options).run();
}
