// The four faults. Each call injects one fault, undoes it (restart, resume, heal) and returns
// what it did with its start and end times; the run loop calls it again after a random pause.
// - kill: find the leader, kill -9 it, restart it after a random delay;
// - pause: SIGSTOP a random broker, SIGCONT it after a random time;
// - partition: either isolate a random broker from everyone, or cut the leader off from the two
//   other brokers (clients still reach it), then heal (needs a NamespaceNetwork);
// - torn: kill -9 a random broker, cut its last segment after the last batch's start, restart;
// - lose-tail (issue 11): pause follower B while the leader commits with follower A alone, kill A
//   and zero the newest ~128 KiB of its last segment, kill the leader, restart A, resume B; the
//   old leader comes back after a few seconds (A is recovering, so B alone cannot elect);
// - corrupt: kill -9 a follower, flip bits in (or zero the header of) an older segment, restart;
// - powerloss: (flush mode sync) kill -9 all three, cut each log back to what fdatasync covered
//   (test-only sync record), restart all three.
import { join } from 'node:path';
import type { MambaClient } from '../../src/client/client.js';
import type { Prng } from '../../test/sim/prng.js';
import { sleep, waitFor, type LocalCluster } from '../lib/cluster.js';
import type { FaultEvent } from './checker.js';
import type { NamespaceNetwork } from './netns.js';
import { tearLastSegment } from './torn-tail.js';
import { corruptOlderSegment, cutToSynced, loseTail } from './disk-faults.js';

export const faultNames = ['kill', 'pause', 'partition', 'torn', 'lose-tail', 'corrupt', 'powerloss'] as const;
export type FaultName = (typeof faultNames)[number];

export interface ChaosContext {
  cluster: LocalCluster;
  network: NamespaceNetwork | null;
  prng: Prng;
  admin: MambaClient;
  log: (text: string) => void;
}

interface GroupState {
  leaderId: string;
  epoch: number;
  highWatermark: number;
  replicas: Array<{ id: string; endOffset: number; reachable: boolean }>;
}

const describeTimeoutMs = 1000;

/** The group as each running broker describes it; the leader named with the highest epoch wins. */
async function groupState(context: ChaosContext): Promise<GroupState | undefined> {
  const views = await Promise.all(
    context.cluster.brokers
      .filter((b) => context.cluster.isRunning(b.id))
      .map(async (broker) => {
        const reply = await context.admin.pool.call(broker.clientAddress, 'DescribeCluster', {}, describeTimeoutMs).catch(() => undefined);
        const g = reply?.groups[0];
        if (!g?.leaderId) return undefined;
        return {
          leaderId: g.leaderId,
          epoch: g.epoch,
          highWatermark: g.highWatermark,
          replicas: g.replicas.map((r) => ({ id: r.id, endOffset: r.endOffset, reachable: r.reachable })),
        };
      }),
  );
  const known = views.filter((v): v is GroupState => v !== undefined && context.cluster.isRunning(v.leaderId));
  known.sort((a, b) => b.epoch - a.epoch);
  return known[0];
}

export async function currentLeader(context: ChaosContext, timeoutMs: number): Promise<string> {
  return waitFor('a leader', timeoutMs, async () => (await groupState(context))?.leaderId, 100);
}

/** Replicas the leader sees unreachable or below the high watermark (all of them without a leader). */
export async function replicasBehind(context: ChaosContext): Promise<number> {
  const state = await groupState(context);
  if (!state) return context.cluster.brokers.length;
  return state.replicas.filter((r) => !r.reachable || r.endOffset < state.highWatermark).length;
}

/** Waits until the leader sees every replica reachable and at the high watermark; false on timeout. */
export async function waitCaughtUp(context: ChaosContext, timeoutMs: number): Promise<boolean> {
  return waitFor(
    'every replica to catch up',
    timeoutMs,
    async () => {
      const state = await groupState(context);
      if (!state) return undefined;
      return state.replicas.every((r) => r.reachable && r.endOffset >= state.highWatermark) ? true : undefined;
    },
    200,
  ).catch(() => false);
}

type Fault = (context: ChaosContext) => Promise<FaultEvent>;

const killLeader: Fault = async (context) => {
  const leader = await currentLeader(context, 15_000);
  const startMs = Date.now();
  await context.cluster.kill(leader);
  const downMs = context.prng.int(300, 2000);
  await sleep(downMs);
  context.cluster.launch(leader);
  return { fault: 'kill', detail: `leader ${leader} killed, restarted after ${downMs} ms`, startMs, endMs: Date.now() };
};

const pause: Fault = async (context) => {
  const broker = context.prng.pick(context.cluster.brokers).id;
  const leader = await currentLeader(context, 15_000).catch(() => '?');
  const startMs = Date.now();
  context.cluster.signal(broker, 'SIGSTOP');
  const pausedMs = context.prng.int(500, 4000);
  await sleep(pausedMs);
  context.cluster.signal(broker, 'SIGCONT');
  return { fault: 'pause', detail: `${broker}${broker === leader ? ' (leader)' : ''} paused for ${pausedMs} ms`, startMs, endMs: Date.now() };
};

const partition: Fault = async (context) => {
  const network = context.network;
  if (!network) throw new Error('partition needs brokers in network namespaces');
  const ids = context.cluster.brokers.map((b) => b.id);
  const leader = await currentLeader(context, 15_000);
  const isolateOne = context.prng.chance(0.5);
  const target = isolateOne ? context.prng.pick(ids) : leader;
  const heldMs = context.prng.int(1000, 5000);
  const startMs = Date.now();
  try {
    if (isolateOne) network.isolate(target);
    else
      network.cutOff(
        target,
        ids.filter((id) => id !== target),
      );
    await sleep(heldMs);
  } finally {
    network.heal();
  }
  const detail = isolateOne ? `${target}${target === leader ? ' (leader)' : ''} isolated from everyone` : `leader ${target} cut off from the majority`;
  return { fault: 'partition', detail: `${detail} for ${heldMs} ms`, startMs, endMs: Date.now() };
};

const tornTail: Fault = async (context) => {
  const broker = context.cluster.broker(context.prng.pick(context.cluster.brokers).id);
  const leader = await currentLeader(context, 15_000).catch(() => '?');
  const startMs = Date.now();
  await context.cluster.kill(broker.id);
  const torn = tearLastSegment(join(broker.dataDir, 'log'), context.prng);
  const downMs = context.prng.int(300, 1500);
  await sleep(downMs);
  context.cluster.launch(broker.id);
  const what = torn
    ? `${torn.file} ${torn.mode} at byte ${torn.cutPosition} (last batch at ${torn.lastBatchPosition}, data end ${torn.dataEndPosition})`
    : 'no batch in the last segment, nothing cut';
  return {
    fault: 'torn',
    detail: `${broker.id}${broker.id === leader ? ' (leader)' : ''} killed, ${what}, restarted after ${downMs} ms`,
    startMs,
    endMs: Date.now(),
  };
};

const loseTailFault: Fault = async (context) => {
  const { cluster, prng } = context;
  const leader = await currentLeader(context, 15_000);
  const followers = cluster.brokers.map((b) => b.id).filter((id) => id !== leader);
  const a = prng.pick(followers);
  const b = followers.find((id) => id !== a)!;
  const startMs = Date.now();
  cluster.signal(b, 'SIGSTOP');
  const aloneMs = prng.int(1000, 2500);
  await sleep(aloneMs); // the leader commits with A alone
  await cluster.kill(a);
  const lost = loseTail(join(cluster.broker(a).dataDir, 'log'));
  await cluster.kill(leader);
  cluster.launch(a);
  cluster.signal(b, 'SIGCONT');
  const leaderDownMs = prng.int(1500, 4000);
  await sleep(leaderDownMs); // A recovering and B: no election without the old leader
  cluster.launch(leader);
  return {
    fault: 'lose-tail',
    detail: `${b} paused ${aloneMs} ms while leader ${leader} committed with ${a}; ${a} killed, ${lost}; leader killed, ${a} restarted, ${b} resumed, leader back after ${leaderDownMs} ms`,
    startMs,
    endMs: Date.now(),
  };
};

const corrupt: Fault = async (context) => {
  const { cluster, prng } = context;
  const leader = await currentLeader(context, 15_000);
  const follower = prng.pick(cluster.brokers.map((b) => b.id).filter((id) => id !== leader));
  const startMs = Date.now();
  await cluster.kill(follower);
  const what = corruptOlderSegment(join(cluster.broker(follower).dataDir, 'log'), prng);
  const downMs = prng.int(300, 1500);
  await sleep(downMs);
  cluster.launch(follower);
  return { fault: 'corrupt', detail: `follower ${follower} killed, ${what}, restarted after ${downMs} ms`, startMs, endMs: Date.now() };
};

const powerloss: Fault = async (context) => {
  const { cluster, prng } = context;
  const startMs = Date.now();
  for (const b of cluster.brokers) cluster.signal(b.id, 'SIGCONT');
  await Promise.all(cluster.brokers.map((b) => cluster.kill(b.id)));
  const cuts = cluster.brokers.map((b) => `${b.id}: ${cutToSynced(join(b.dataDir, 'log'))}`);
  const downMs = prng.int(300, 1500);
  await sleep(downMs);
  cluster.launchAll();
  return { fault: 'powerloss', detail: `all killed; ${cuts.join('; ')}; restarted after ${downMs} ms`, startMs, endMs: Date.now() };
};

export const faults: Record<FaultName, Fault> = {
  kill: killLeader,
  pause,
  partition,
  torn: tornTail,
  'lose-tail': loseTailFault,
  corrupt,
  powerloss,
};

/**
 * Settings a fault needs for the whole run: powerloss is about fdatasync (flush mode sync);
 * corrupt wants older segments to damage within a short run (small segments).
 */
export function settingsFor(fault: FaultName): Record<string, unknown> {
  if (fault === 'powerloss') return { flush: { mode: 'sync' } };
  if (fault === 'corrupt') return { segmentBytes: 128 * 1024 };
  return {};
}
