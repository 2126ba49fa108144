// One chaos run: a fresh three-broker group (in network namespaces for partitions), a topic,
// the workload, one kind of fault injected again and again until the duration (or the fault
// count) is reached, a calm tail, then every replica read back and checked.
import { readFileSync } from 'node:fs';
import { MambaClient } from '../../src/client/client.js';
import { Prng } from '../../test/sim/prng.js';
import { LocalCluster, sleep } from '../lib/cluster.js';
import { countFindings, readReplica, type FaultEvent, type Findings } from './checker.js';
import { currentLeader, faults, replicasBehind, settingsFor, waitCaughtUp, type ChaosContext, type FaultName } from './faults.js';
import { NamespaceNetwork } from './netns.js';
import { Workload } from './workload.js';

export interface RunOptions {
  run: number;
  seed: number;
  fault: FaultName;
  durationS: number;
  /** Stop injecting after this many faults even when time is left. */
  faultCountMax?: number;
  queues?: number;
  log: (text: string) => void;
}

export interface RunResult extends Findings {
  run: number;
  seed: number;
  fault: FaultName;
  events: FaultEvent[];
  /** The run's directory (data and broker logs), kept when the checker found a problem. */
  keptDir: string | null;
  /** Replicas that had not caught up with the leader when the run ended. */
  replicasNotCaughtUp: number;
}

const queueCountDefault = 4;
const segmentBytes = 4 * 1024 * 1024;
const messageBytesMax = 64 * 1024;
const calmTailMs = 2000;
const faultPauseMsMin = 1000;
const faultPauseMsMax = 2500;
const caughtUpWaitMs = 20_000;
/** How long a follower may take to serve what the leader serves (it learns the high watermark late). */
const followerWaitMsMax = 5000;

/** Cleanups of the run in progress, for a signal that ends the process mid-run. */
export const activeCleanups = new Set<() => void>();

export async function runChaos(options: RunOptions): Promise<RunResult> {
  const network = options.fault === 'partition' ? NamespaceNetwork.create(['b1', 'b2', 'b3']) : null;
  const destroyNetwork = (): void => network?.destroy();
  activeCleanups.add(destroyNetwork);
  try {
    const cluster = await LocalCluster.create({
      name: 'mamba-chaos',
      settings: { segmentBytes, messageBytesMax, ...settingsFor(options.fault) },
      ...(network ? { placement: (id: string) => network.placement(id) } : {}),
    });
    const killBrokers = (): void => {
      for (const b of cluster.brokers) if (b.process && cluster.isRunning(b.id)) b.process.kill('SIGKILL');
    };
    activeCleanups.add(killBrokers);
    let keep = false;
    try {
      const result = await runOnCluster(options, cluster, network);
      keep = result.lost + result.duplicated + result.reordered + result.changed + result.replicasNotCaughtUp > 0;
      return { ...result, keptDir: keep ? cluster.dir : null };
    } catch (error) {
      keep = true;
      throw new Error(
        `run ${options.run} (seed ${options.seed}, ${options.fault}) failed: ${(error as Error).message}${exitedBrokers(cluster)}; data and broker logs kept in ${cluster.dir}`,
      );
    } finally {
      await cluster.stopAll(keep);
      activeCleanups.delete(killBrokers);
    }
  } finally {
    destroyNetwork();
    activeCleanups.delete(destroyNetwork);
  }
}

/** The brokers that exited on their own, with the last line each wrote. */
function exitedBrokers(cluster: LocalCluster): string {
  const exited = cluster.brokers.filter((b) => b.process && b.process.exitCode !== null);
  return exited.map((b) => `; ${b.id} exited (${b.process!.exitCode}): ${readFileSync(b.logFile, 'utf8').trim().split('\n').pop() ?? ''}`).join('');
}

async function runOnCluster(options: RunOptions, cluster: LocalCluster, network: NamespaceNetwork | null): Promise<Omit<RunResult, 'keptDir'>> {
  const addresses = cluster.brokers.map((b) => b.clientAddress);
  const admin = new MambaClient({ brokers: addresses, requestTimeoutMs: 2000, retry: { attemptsMax: 20, backoffMsInitial: 50, backoffMsMax: 500 } });
  const context: ChaosContext = { cluster, network, prng: new Prng(options.seed), admin, log: options.log };
  try {
    cluster.launchAll();
    await currentLeader(context, 20_000);
    const topic = `chaos-r${options.run}-s${options.seed}`;
    const queues = options.queues ?? queueCountDefault;
    await admin.createTopic(topic, queues);
    const workload = new Workload(addresses, topic, queues, `r${options.run}`);
    workload.start();
    const events = await injectFaults(options, context);
    await sleep(calmTailMs);
    await workload.stop();
    let replicasNotCaughtUp = 0;
    if (!(await waitCaughtUp(context, caughtUpWaitMs))) {
      replicasNotCaughtUp = await replicasBehind(context);
      options.log(`  run ${options.run}: ${replicasNotCaughtUp} replica(s) did not catch up within ${caughtUpWaitMs} ms; checking what they hold`);
    }
    const leader = await currentLeader(context, 20_000);
    const ordered = [cluster.broker(leader), ...cluster.brokers.filter((b) => b.id !== leader)];
    const reader = new MambaClient({ brokers: addresses, requestTimeoutMs: 5000, retry: { attemptsMax: 1 } });
    try {
      const replicas: Array<{ id: string; queues: string[][] }> = [];
      for (const broker of ordered) {
        const queueIds: string[][] = [];
        for (let queue = 0; queue < queues; queue++) {
          const leaderLength = replicas[0]?.queues[queue]?.length ?? 0;
          queueIds.push(await readReplica(reader, broker.clientAddress, topic, queue, leaderLength, followerWaitMsMax));
        }
        replicas.push({ id: broker.id, queues: queueIds });
      }
      const findings = countFindings({ acks: workload.acks, unknownIds: workload.unknownIds, observation: workload.observation, replicas, events });
      return { ...findings, run: options.run, seed: options.seed, fault: options.fault, events, replicasNotCaughtUp };
    } finally {
      reader.close();
    }
  } finally {
    admin.close();
  }
}

async function injectFaults(options: RunOptions, context: ChaosContext): Promise<FaultEvent[]> {
  const events: FaultEvent[] = [];
  const deadlineMs = Date.now() + options.durationS * 1000;
  const countMax = options.faultCountMax ?? Number.MAX_SAFE_INTEGER;
  while (events.length < countMax && Date.now() < deadlineMs) {
    await sleep(context.prng.int(faultPauseMsMin, faultPauseMsMax));
    if (Date.now() >= deadlineMs) break;
    const event = await faults[options.fault](context);
    events.push(event);
    options.log(`  run ${options.run} fault ${events.length}: ${event.detail}`);
    if (!(await waitCaughtUp(context, caughtUpWaitMs)))
      options.log(`  run ${options.run}: replicas not caught up ${caughtUpWaitMs} ms after the fault; going on`);
  }
  return events;
}
