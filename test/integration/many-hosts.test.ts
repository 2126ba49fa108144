// Many hosts (issue 14): brokers, clients and the CLI work when every broker has an address of its
// own. Each broker of two groups runs in its own network namespace with its own address, and the
// client in another one (scripts/chaos/netns.ts); the client is a child process under
// `ip netns exec` (many-hosts-client.ts) that uses the SDK alone, so its only way to the brokers is
// the hosts' network, and the CLI runs from there too. The story, one step after the other:
//   1. a topic with queues on both groups, created and described with the CLI from the client host;
//   2. `status` from the client host: every group has a leader (the hook for the metadata group);
//   3. the client produces with quorum acks (pinned and round-robin messages);
//   4. kill -9 of g1's leader while it produces: g1 fails over to a broker on another host and
//      acknowledges again; the killed broker comes back;
//   5. g2's leader's host cut off entirely (iptables drops all it sends and receives): g2 elects a
//      leader on another host and both groups go on acknowledging; the cut host is unreachable;
//   6. healed: the cut host catches up (its end offset reaches its leader's high watermark);
//   7. production ends: every message sent was acknowledged;
//   8. every queue read back from every replica (from the client host), checked by the chaos
//      checker: every acknowledged message stored exactly once (by its unique id), at the queue
//      and offset its acknowledgement named, on every replica, and in order per queue.
// Needs root and `ip netns` (skipped, saying why, otherwise). Namespaces, veths, the bridge and
// every iptables rule are removed in `after`, also when a step failed; those of a run that died
// are removed by the next run.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NamespaceNetwork, partitionUnavailableReason } from '../../scripts/chaos/netns.js';
import { countFindings, type FaultEvent } from '../../scripts/chaos/checker.js';
import type { Acknowledgement } from '../../scripts/chaos/workload.js';
import { TestCluster, cliPath, waitFor } from './cluster-harness.js';
import type { GroupView } from './grpc-client.js';

const clientScript = join(dirname(fileURLToPath(import.meta.url)), 'many-hosts-client.js');
const groupIds = ['g1', 'g2'];
const brokerIds = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6'];
const clientHost = 'c1';
const queueCount = 4;
const produceRatePerS = 200;
const producedMessagesMax = 20_000;
/** Acknowledgements each step waits for on the groups it is about (well under 2 s of production each). */
const acksPerStep = 100;
const startWaitMs = 40_000;
const failoverWaitMs = 20_000;
const catchUpWaitMs = 20_000;
const childWaitMs = 40_000;
const cliTimeoutMs = 30_000;

const unavailable = partitionUnavailableReason((text) => process.stderr.write(`${text}\n`));

/** One run of the client program inside the client host's namespace, its JSON lines parsed as they come. */
class ClientRun {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly acks: Acknowledgement[] = [];
  readonly failedIds: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  /** Rejects when the program exits before it was asked to stop (a wait racing it ends at once). */
  readonly exitedEarly: Promise<never>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (text) => this.take(text));
    child.stderr!.on('data', (data: Buffer) => {
      this.stderr = (this.stderr + data.toString()).slice(-8000);
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    this.exitedEarly = this.exited.then((code) => {
      throw new Error(`${name} exited (code ${code}) before it was asked to stop: ${this.stderr.trim().split('\n').slice(-5).join(' | ')}`);
    });
    void this.exitedEarly.catch(() => undefined); // only a wait that races it reports it
  }

  private take(text: string): void {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      this.stderr += `(stdout) ${text}\n`;
      return;
    }
    this.lines.push(line);
    if (line.ack) this.acks.push(line.ack as Acknowledgement);
    if (line.failed) this.failedIds.push((line.failed as { id: string }).id);
  }

  /** Ends its stdin (the producer stops sending), then its last line, {"done": ...}, once it exited with code 0 (bounded). */
  async finish(timeoutMs: number): Promise<Record<string, number>> {
    this.child.stdin?.end();
    await waitFor(`${this.name} to exit`, timeoutMs, () => (this.child.exitCode !== null || this.child.signalCode !== null ? true : undefined));
    const code = await this.exited;
    const done = this.lines.at(-1)?.done as Record<string, number> | undefined;
    if (code !== 0 || !done)
      throw new Error(`${this.name} ended with code ${code} and no summary line: ${this.stderr.trim().split('\n').slice(-10).join(' | ')}`);
    return done;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

describe('many hosts: every broker and the client on an address of its own', {
  skip: unavailable ? `needs root and \`ip netns\`: ${unavailable}` : false,
}, () => {
  let network: NamespaceNetwork | null = null;
  let cluster: TestCluster | null = null;
  const clients: ClientRun[] = [];
  const startMs = Date.now();
  const story: string[] = [];
  const note = (text: string): void => {
    story.push(`${((Date.now() - startMs) / 1000).toFixed(1)} s  ${text}`);
  };
  const cleanUp = async (): Promise<void> => {
    for (const client of clients) client.kill();
    try {
      const stopping = cluster;
      cluster = null;
      await stopping?.stop();
    } finally {
      network?.destroy();
    }
  };
  // A run interrupted by a signal still removes its namespaces, bridge and rules (and its brokers).
  const onSignal = (): void => {
    void cleanUp().finally(() => process.exit(130));
  };

  before(async () => {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    network = NamespaceNetwork.create([...brokerIds, clientHost]);
    const hosts = network;
    cluster = await TestCluster.create({
      name: 'mamba-hosts',
      groups: groupIds.length,
      settings: { segmentBytes: 4 * 1024 * 1024, messageBytesMax: 64 * 1024 },
      placement: (id) => hosts.placement(id),
    });
    cluster.launchAll();
    for (const group of groupIds) await cluster.waitForLeader(group, startWaitMs);
    note(`brokers up: ${cluster.brokers.map((b) => `${b.id}@${b.clientAddress}`).join(' ')}; client ${clientHost}@${hosts.hostOf(clientHost)}`);
  });

  after(async () => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await cleanUp();
  });

  it('produce, consume, leader failover and a host cut off and healed, all across hosts', { timeout: 110_000 }, async (t) => {
    const hosts = network!;
    const brokers = cluster!;
    try {
      await runStory(hosts, brokers, clients, note);
    } finally {
      for (const line of story) t.diagnostic(line);
    }
  });
});

/** Runs `args` with the CLI inside the client host's namespace, with no MAMBA_* variables and no credentials of the caller's. */
function cli(network: NamespaceNetwork, cluster: TestCluster, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { command, args: argv } = network.commandIn(clientHost, process.execPath, [cliPath, '--cluster', cluster.file, ...args]);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MAMBA_')));
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { env, cwd: cluster.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let [stdout, stderr] = ['', ''];
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mambamq ${args.join(' ')} (in ${clientHost}) did not finish in ${cliTimeoutMs} ms`));
    }, cliTimeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function cliJson<T>(network: NamespaceNetwork, cluster: TestCluster, args: string[]): Promise<T> {
  const run = await cli(network, cluster, ['--json', ...args]);
  assert.equal(run.code, 0, `mambamq ${args.join(' ')} from ${clientHost}: exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

interface StatusJson {
  groups: Array<{ id: string; leader: string | null; epoch: number; highWatermark: number; replicas: Array<{ id: string; role: string }> }>;
}

/**
 * `mambamq status` from the client host: every group the cluster reports has a leader, and the
 * data groups are among them. The hook for the metadata group (issue 12, built elsewhere): once
 * `status` reports it, this step checks it like any other group with no change here; should it
 * come as a section of its own, its leader is checked here as well.
 */
async function assertEveryGroupLed(network: NamespaceNetwork, cluster: TestCluster, note: (text: string) => void): Promise<Map<string, string>> {
  const status = await cliJson<StatusJson>(network, cluster, ['status']);
  const leaders = new Map<string, string>();
  for (const group of status.groups) {
    assert.ok(group.leader, `status from ${clientHost}: group ${group.id} has no leader: ${JSON.stringify(group)}`);
    leaders.set(group.id, group.leader);
  }
  for (const group of groupIds) assert.ok(leaders.has(group), `status from ${clientHost} lacks group ${group}: ${JSON.stringify(status)}`);
  note(`status from ${clientHost}: ${[...leaders].map(([g, l]) => `${g} led by ${l}`).join(', ')}`);
  return leaders;
}

function startClient(network: NamespaceNetwork, clients: ClientRun[], name: string, args: string[]): ClientRun {
  const { command, args: argv } = network.commandIn(clientHost, process.execPath, [clientScript, ...args]);
  const run = new ClientRun(name, spawn(command, argv, { stdio: ['pipe', 'pipe', 'pipe'] }));
  clients.push(run);
  return run;
}

/** Waits for `check` to hold, ending at once when the producer exits before it was asked to stop. */
async function whileProducing<T>(producer: ClientRun, what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  return Promise.race([waitFor(what, timeoutMs, check), producer.exitedEarly]);
}

/** A group's leader as the group's running brokers (except `exclude`) agree on it, other than `exclude`. */
function leaderOf(cluster: TestCluster, group: string, timeoutMs: number, exclude: string[] = []): Promise<GroupView> {
  return cluster.waitForLeader(group, timeoutMs, exclude);
}

async function runStory(network: NamespaceNetwork, cluster: TestCluster, clients: ClientRun[], note: (text: string) => void): Promise<void> {
  const addresses = cluster.brokers.map((b) => b.clientAddress).join(',');
  const topic = `hosts-${process.pid}-${Date.now() % 100_000}`;
  const events: FaultEvent[] = [];

  // 1. A topic with queues on both groups, from the client host.
  const created = await cliJson<{ name: string; queues: number }>(network, cluster, ['topic', 'create', topic, '--queues', String(queueCount)]);
  assert.deepEqual(created, { name: topic, queues: queueCount });
  const described = await cliJson<{ queues: Array<{ queue: number; group: string; leader: string }> }>(network, cluster, ['topic', 'describe', topic]);
  const groupOfQueue = new Map(described.queues.map((q) => [q.queue, q.group]));
  for (const group of groupIds) assert.ok([...groupOfQueue.values()].includes(group), `no queue of ${topic} in ${group}: ${JSON.stringify(described)}`);
  note(`topic ${topic}: ${described.queues.map((q) => `queue ${q.queue} in ${q.group} (leader ${q.leader})`).join(', ')}`);

  // 2. Every group led, seen from the client host.
  await assertEveryGroupLed(network, cluster, note);

  // 3. Production from the client host.
  const producer = startClient(network, clients, 'the producer', [
    'produce',
    '--brokers',
    addresses,
    '--topic',
    topic,
    '--queues',
    String(queueCount),
    '--tag',
    topic,
    '--rate',
    String(produceRatePerS),
    '--messages-max',
    String(producedMessagesMax),
  ]);
  const acksSince = (sinceMs: number, group: string): number => producer.acks.filter((a) => a.atMs >= sinceMs && groupOfQueue.get(a.queue) === group).length;
  await whileProducing(producer, `${acksPerStep} acknowledgements on each group`, failoverWaitMs, () =>
    groupIds.every((g) => acksSince(0, g) >= acksPerStep) ? true : undefined,
  );
  note(`producing: ${producer.acks.length} acknowledged`);

  // 4. kill -9 of g1's leader while producing: a broker on another host takes over.
  const killed = (await leaderOf(cluster, 'g1', failoverWaitMs)).leaderId;
  const killMs = Date.now();
  await cluster.kill(killed);
  const successor = await leaderOf(cluster, 'g1', failoverWaitMs, [killed]);
  assert.notEqual(cluster.broker(successor.leaderId).host, cluster.broker(killed).host);
  await whileProducing(producer, `${acksPerStep} acknowledgements on g1 after its leader ${killed} was killed`, failoverWaitMs, () =>
    acksSince(killMs, 'g1') >= acksPerStep ? true : undefined,
  );
  events.push({ fault: 'kill', detail: `g1 leader ${killed} killed`, startMs: killMs, endMs: Date.now() });
  note(
    `g1: leader ${killed} (${cluster.broker(killed).host}) killed; ${successor.leaderId} (${cluster.broker(successor.leaderId).host}) leads in epoch ${successor.epoch}; ${acksSince(killMs, 'g1')} acks on g1 since`,
  );
  const afterKill = await assertEveryGroupLed(network, cluster, note);
  assert.notEqual(afterKill.get('g1'), killed, `status from ${clientHost} still names the killed ${killed} as g1's leader`);
  cluster.launch(killed);

  // 5. g2's leader's host cut off from everyone: g2 elects a leader on another host, both groups serve.
  const cut = (await leaderOf(cluster, 'g2', failoverWaitMs)).leaderId;
  const cutMs = Date.now();
  network.isolate(cut);
  const cutSuccessor = await leaderOf(cluster, 'g2', failoverWaitMs, [cut]);
  await whileProducing(producer, `${acksPerStep} acknowledgements on each group with ${cut} cut off`, failoverWaitMs, () =>
    groupIds.every((g) => acksSince(cutMs, g) >= acksPerStep) ? true : undefined,
  );
  await assert.rejects(cluster.client(cut).describeGroup('g2', 1000), `${cut} answered although its host is cut off`);
  const duringCut = await assertEveryGroupLed(network, cluster, note);
  assert.notEqual(duringCut.get('g2'), cut, `status from ${clientHost} names the cut-off ${cut} as g2's leader`);
  note(
    `g2: leader ${cut} (${cluster.broker(cut).host}) cut off; ${cutSuccessor.leaderId} leads in epoch ${cutSuccessor.epoch}; acks since: g1 ${acksSince(cutMs, 'g1')}, g2 ${acksSince(cutMs, 'g2')}`,
  );

  // 6. Healed: the cut host catches up with its leader's high watermark.
  network.heal();
  const healMs = Date.now();
  events.push({ fault: 'cut', detail: `g2 leader ${cut} cut off`, startMs: cutMs, endMs: healMs });
  // (Should the healed host win leadership back, it holds everything committed, by Raft's election rule.)
  const caughtUp = await whileProducing(producer, `${cut} to catch up after the heal`, catchUpWaitMs, async () => {
    const view = await leaderOf(cluster, 'g2', 2000).catch(() => undefined);
    const replica = view?.replicas.find((r) => r.id === cut);
    return view && replica?.reachable && replica.endOffset >= view.highWatermark ? { view, replica } : undefined;
  });
  note(
    `healed: ${cut} (${caughtUp.replica.role}) holds ${caughtUp.replica.endOffset} of g2's high watermark ${caughtUp.view.highWatermark} (leader ${caughtUp.view.leaderId}) ${Date.now() - healMs} ms after the heal`,
  );

  // 7. Production ends; everything sent was acknowledged.
  const produced = await producer.finish(childWaitMs);
  note(`produced: ${JSON.stringify(produced)}`);
  assert.deepEqual(
    { failed: produced.failed, dropped: produced.dropped },
    { failed: 0, dropped: 0 },
    `messages not acknowledged: ${producer.failedIds.slice(0, 10).join(', ')}`,
  );
  assert.equal(produced.acked, produced.sent);
  assert.equal(producer.acks.length, produced.acked);

  // Every replica of both groups at its leader's high watermark before the read-back.
  for (const group of groupIds) {
    await waitFor(`every replica of ${group} at its high watermark`, catchUpWaitMs, async () => {
      const view = await leaderOf(cluster, group, 2000).catch(() => undefined);
      return view?.replicas.every((r) => r.reachable && r.endOffset >= view.highWatermark) ? true : undefined;
    });
  }
  await assertEveryGroupLed(network, cluster, note);

  // 8. Read back from every replica, from the client host, and check.
  const reader = startClient(network, clients, 'the reader', ['read', '--brokers', addresses, '--topic', topic]);
  await reader.finish(childWaitMs);
  const reads = reader.lines.filter((l) => l.read).map((l) => l.read as { queue: number; group: string; replica: string; role: string; ids: string[] });
  const replicas = replicaViews(reads);
  const findings = countFindings({
    acks: producer.acks,
    unknownIds: new Set(producer.failedIds),
    observation: { values: new Map(), changed: [], readCount: 0 },
    replicas,
    events,
  });
  const summary = `acked ${findings.acked}, faults' longest gaps ${findings.faultGapsMs.map((g) => `${Math.round(g)} ms`).join(', ')}; ${findings.examples.join('; ')}`;
  note(`checked: ${summary}`);
  assert.deepEqual(
    { lost: findings.lost, duplicated: findings.duplicated, reordered: findings.reordered, changed: findings.changed, replicaShort: findings.replicaShort },
    { lost: 0, duplicated: 0, reordered: 0, changed: 0, replicaShort: 0 },
    summary,
  );
  assert.equal(replicas.length, 3, 'a leader and two followers read for every queue');
  const cutQueues = reads.filter((r) => r.replica === cut);
  assert.ok(cutQueues.length > 0 && cutQueues.every((r) => r.ids.length > 0), `${cut} was read back and holds its queues`);
  for (let queue = 0; queue < queueCount; queue++) {
    const pinned = producer.acks.filter((a) => a.queue === queue && a.sequence !== null).length;
    assert.ok(pinned >= acksPerStep / queueCount, `queue ${queue}: only ${pinned} pinned messages acknowledged`);
  }
  assert.ok(
    producer.acks.some((a) => a.sequence === null),
    'no round-robin message was acknowledged',
  );
  for (const gapMs of findings.faultGapsMs) assert.ok(gapMs < failoverWaitMs, `a silence of ${gapMs} ms around a fault; ${summary}`);
}

/**
 * The reads as the checker takes replicas: the first holds every queue as its group's leader
 * serves it, the second and third every queue as its group's first and second follower do.
 */
function replicaViews(reads: Array<{ queue: number; group: string; replica: string; role: string; ids: string[] }>): Array<{ id: string; queues: string[][] }> {
  const views: Array<{ queues: string[][]; names: Set<string> }> = [];
  for (let queue = 0; queue < queueCount; queue++) {
    const ofQueue = reads.filter((r) => r.queue === queue);
    const leader = ofQueue.filter((r) => r.role === 'leader');
    assert.equal(leader.length, 1, `queue ${queue}: ${leader.length} leader reads`);
    const ordered = [...leader, ...ofQueue.filter((r) => r.role !== 'leader').sort((a, b) => a.replica.localeCompare(b.replica))];
    ordered.forEach((read, index) => {
      views[index] ??= { queues: [], names: new Set() };
      views[index]!.queues[queue] = read.ids;
      views[index]!.names.add(`${read.group}:${read.replica}`);
    });
  }
  return views.map((view, index) => ({ id: `${index === 0 ? 'leaders' : `followers ${index}`} (${[...view.names].join(' ')})`, queues: view.queues }));
}
