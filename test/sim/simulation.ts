// Deterministic simulation of a group of Raft cores: one seed drives fake time, a faulty network
// (drops, delays, duplicates, reordering, symmetric and asymmetric partitions), crashes that lose
// whatever was not durable, clients, membership changes and leadership transfers. A safety phase
// with faults is followed by a liveness phase with faults healed.

import { RaftCore } from '../../src/raft/core.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { Message, Ready, ReplicaId } from '../../src/raft/types.js';
import { Checker } from './checker.js';
import { Prng } from './prng.js';

export interface SimOptions {
  seed: number;
  trace?: (line: string) => void;
}

export interface SimResult {
  seed: number;
  violations: string[];
  ticks: number;
  committedEntries: number;
  acknowledged: number;
  leaderEpochs: number;
}

interface Scenario {
  voterCount: number;
  spareCount: number;
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  asyncFlush: boolean;
  flushDelayTicksMax: number;
  maxFetchBytes: number;
  crashRate: number;
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
  durableEndOffset: number;
  flushDueTick: number | null;
  restartTick: number;
}

interface InFlight {
  deliverTick: number;
  sequence: number;
  message: Message;
}

const electionTicks = 10;
const livenessTicksMax = 1000;
const drainIterationsMax = 1000;
const encoder = new TextEncoder();

function chooseScenario(random: Prng): Scenario {
  const calm = random.chance(0.15);
  return {
    voterCount: random.chance(0.5) ? 3 : 5,
    spareCount: random.chance(0.5) ? 1 : 0,
    dropRate: calm ? 0 : random.pick([0, 0.02, 0.05, 0.1, 0.2]),
    duplicateRate: calm ? 0 : random.pick([0, 0.01, 0.05]),
    delayTicksMax: random.pick([1, 2, 3, 5, 8]),
    asyncFlush: random.chance(0.5),
    flushDelayTicksMax: random.int(1, 6),
    maxFetchBytes: random.pick([120, 400, 4096]),
    crashRate: calm ? 0 : random.pick([0.002, 0.005, 0.01, 0.02]),
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

  constructor(private readonly options: SimOptions) {
    this.random = new Prng(options.seed);
    this.scenario = chooseScenario(this.random);
    const total = this.scenario.voterCount + this.scenario.spareCount;
    for (let index = 1; index <= total; index += 1) {
      this.nodes.push({ id: `b${index}`, storage: new MemoryStorage(), core: null, durableEndOffset: 0, flushDueTick: null, restartTick: 0 });
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
    };
  }

  private trace(line: string): void {
    if (this.options.trace !== undefined) this.options.trace(`[${this.tickNow}] ${line}`);
  }

  private start(node: SimNode): void {
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
        random: ((generator: Prng) => () => generator.next())(new Prng(this.random.fork())),
      },
      node.storage,
    );
    node.durableEndOffset = node.storage.endOffset();
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
    }
    if (ready.entries.length > 0) {
      node.storage.append(ready.entries);
      this.checker.appended(this.tickNow, node.id, node.storage, ready.entries);
      if (!this.scenario.asyncFlush || this.healed) node.durableEndOffset = node.storage.endOffset();
      else node.flushDueTick ??= this.tickNow + this.random.int(0, this.scenario.flushDelayTicksMax);
    }
    core.advance(ready, node.durableEndOffset);
    if (ready.roleChange !== undefined) {
      const change = ready.roleChange;
      this.trace(`${node.id} role ${change.role} epoch ${change.epoch} leader ${change.leaderId ?? '-'}`);
      if (change.role === 'leader') this.checker.leaderElected(this.tickNow, node.id, change.epoch, node.storage);
    }
    this.checker.observeHighWatermark(this.tickNow, node.id, core, node.storage);
    for (const message of ready.messages) this.send(message);
  }

  private flush(node: SimNode): void {
    node.flushDueTick = null;
    node.durableEndOffset = node.storage.endOffset();
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
      }
    }
    if (this.blocked.size > 0 && this.tickNow >= this.partitionHealTick) {
      this.trace('partition healed');
      this.blocked.clear();
    }
    if (this.blocked.size === 0 && this.random.chance(scenario.partitionRate)) this.partition();
  }

  private crash(node: SimNode, restartTick: number): void {
    this.trace(`${node.id} crash (durable end ${node.durableEndOffset} of ${node.storage.endOffset()})`);
    node.storage.truncateTo(node.durableEndOffset);
    this.checker.crashed(node.id, node.storage);
    node.core = null;
    node.flushDueTick = null;
    node.restartTick = restartTick;
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
    if (this.random.chance(this.scenario.membershipRate) && leads()) this.changeMembership(leader);
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
      return `${head} offset ${message.fetchOffset} lastEpoch ${message.lastFetchedEpoch}`;
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

export function runSeed(seed: number, trace?: (line: string) => void): SimResult {
  const options: SimOptions = trace === undefined ? { seed } : { seed, trace };
  return new Simulation(options).run();
}
