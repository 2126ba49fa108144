// The workloads of `make bench`, written once for both systems. Each system (mamba-side.ts,
// nats-side.ts) implements `BenchSystem`: a way to send one message and wait for its ack, a way
// to fetch a batch back, leader lookup, kill -9 and restart. The drivers here decide what is sent,
// when, how many at once, and what is measured, so both systems get exactly the same workload.
import { bodyFor, idOf, cpuMicrosecondsOf, nowMs, percentile, progress, progressCounter, round, sleep } from './bench-lib.js';

/** Sends one message to `partition` and resolves once it is acknowledged (rejects if refused). */
export type Send = (body: Buffer, partition: number) => Promise<void>;

/** Where a workload writes: (a) one partition, (b)+(c) `partitions` partitions, (e) one partition. */
export type Target = 'sequential' | 'load' | 'failover';

export interface BenchSystem {
  readonly label: string;
  /** Partitions of the `load` target: our queues of one topic, the peer's subjects of one stream. */
  readonly partitions: number;
  /** The three server processes (for CPU time). */
  serverPids(): number[];
  /** (a), (b): the raw protocol, one message per request, no retry. */
  rawSender(target: Target): Send;
  /** (c): the system's own client library; `close` waits for what it still holds. */
  clientSender(target: Target): { send: Send; close: () => Promise<void> };
  /** (e): one attempt at sending, through the system's client, bounded by `timeoutMs`. */
  failoverSender(timeoutMs: number): Send;
  /** Prepares reading `target` from the start (peer: one pull consumer per partition). */
  openReaders(target: Target): Promise<void>;
  /** Up to `max` message bodies of `partition`, continuing where the last fetch stopped. */
  fetch(target: Target, partition: number, max: number, waitMs: number): Promise<Uint8Array[]>;
  /** The id of the process leading the partitions' replication group. */
  leader(): Promise<string>;
  kill(id: string): Promise<void>;
  restart(id: string): void;
  /** Resolves once every replica is back and caught up (bounded). */
  healthy(): Promise<void>;
  stop(): Promise<void>;
}

/** Ids handed out within one round: every message sent carries a distinct one. */
export class IdSource {
  private next = 1;
  take(): number {
    return this.next++;
  }
}

export interface SequentialResult {
  p50Ms: number;
  p99Ms: number;
  msgsPerS: number;
}

/** (a) One message at a time: each send waits for the previous ack. */
export async function sequential(send: Send, ids: IdSource, count: number, warmupCount: number): Promise<SequentialResult> {
  for (let i = 0; i < warmupCount; i++) await send(bodyFor(ids.take()), 0);
  const latencies: number[] = [];
  const tick = progressCounter('  one at a time', count);
  const startMs = nowMs();
  for (let i = 0; i < count; i++) {
    const body = bodyFor(ids.take());
    const sentMs = nowMs();
    await send(body, 0);
    latencies.push(nowMs() - sentMs);
    tick(i + 1);
  }
  const elapsedS = (nowMs() - startMs) / 1000;
  latencies.sort((a, b) => a - b);
  return { p50Ms: round(percentile(latencies, 50), 3), p99Ms: round(percentile(latencies, 99), 3), msgsPerS: round(count / elapsedS, 0) };
}

export interface OutstandingResult {
  msgsPerS: number;
  p50Ms: number;
  p99Ms: number;
  acked: number;
  failed: number;
  /** CPU µs of the three servers over the run, per acknowledged message. */
  cpuUsPerMsg: number;
  /** CPU µs of this process (the client side) over the run, per acknowledged message. */
  clientCpuUsPerMsg: number;
}

/**
 * (b), (c) `inflight` messages outstanding at all times, one message per send, spread over the
 * partitions in turn; acknowledged ids are added to `ackedIds[partition]`. A failed send is
 * counted and not retried (the raw protocol has no retry; the client library retries inside).
 */
export async function outstanding(
  system: BenchSystem,
  send: Send,
  ids: IdSource,
  count: number,
  inflight: number,
  ackedIds: number[][],
): Promise<OutstandingResult> {
  const latencies: number[] = [];
  const tick = progressCounter('  outstanding', count);
  let started = 0;
  let acked = 0;
  let failed = 0;
  const pids = system.serverPids();
  const cpuBeforeUs = cpuMicrosecondsOf(pids);
  const clientCpuBefore = process.cpuUsage();
  const startMs = nowMs();
  const worker = async (): Promise<void> => {
    while (started < count) {
      const partition = started++ % system.partitions;
      const id = ids.take();
      const sentMs = nowMs();
      try {
        await send(bodyFor(id), partition);
        latencies.push(nowMs() - sentMs);
        ackedIds[partition]!.push(id);
        acked++;
      } catch (error) {
        if (failed++ === 0) progress(`  first failed send: ${(error as Error).message}`);
      }
      tick(acked + failed);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, worker));
  const elapsedS = (nowMs() - startMs) / 1000;
  const cpuUs = cpuMicrosecondsOf(pids) - cpuBeforeUs;
  const clientCpu = process.cpuUsage(clientCpuBefore);
  latencies.sort((a, b) => a - b);
  return {
    msgsPerS: round(acked / elapsedS, 0),
    p50Ms: round(percentile(latencies, 50), 3),
    p99Ms: round(percentile(latencies, 99), 3),
    acked,
    failed,
    cpuUsPerMsg: acked > 0 ? round(cpuUs / acked, 1) : NaN,
    clientCpuUsPerMsg: acked > 0 ? round((clientCpu.user + clientCpu.system) / acked, 1) : NaN,
  };
}

export interface ConsumeResult {
  msgsPerS: number;
  read: number;
  /** Acknowledged ids not read back. */
  missing: number;
}

/**
 * (d) Reads every partition from the start, one reader per partition in parallel, `batchSize`
 * at a time, and stops when the partition's acknowledged count is reached (a fetch never asks
 * for more than is left, so none waits for an expiry). Afterwards, untimed, it checks that every
 * acknowledged id was read, draining further when one is missing.
 */
export async function consumeAll(system: BenchSystem, target: Target, ackedIds: number[][], batchSize: number, deadlineMs: number): Promise<ConsumeResult> {
  await system.openReaders(target);
  const seen = ackedIds.map(() => new Set<number>());
  let read = 0;
  const readPartition = async (partition: number): Promise<void> => {
    const expected = ackedIds[partition]!.length;
    let got = 0;
    for (let fetchCount = 0; got < expected && nowMs() < deadlineMs && fetchCount < expected + 1000; fetchCount++) {
      const bodies = await system.fetch(target, partition, Math.min(batchSize, expected - got), 5000);
      for (const body of bodies) seen[partition]!.add(idOf(body));
      got += bodies.length;
    }
    read += got;
  };
  const startMs = nowMs();
  await Promise.all(ackedIds.map((_, partition) => readPartition(partition)));
  const elapsedS = (nowMs() - startMs) / 1000;
  const missing = await countMissing(system, target, ackedIds, seen, batchSize);
  return { msgsPerS: round(read / elapsedS, 0), read, missing };
}

/**
 * Acknowledged ids not in `seen`; reads on (bounded) while some are missing, in case messages
 * whose send failed were stored anyway and came first.
 */
async function countMissing(system: BenchSystem, target: Target, ackedIds: number[][], seen: Array<Set<number>>, batchSize: number): Promise<number> {
  let missing = 0;
  for (let partition = 0; partition < ackedIds.length; partition++) {
    const isMissing = (id: number): boolean => !seen[partition]!.has(id);
    for (let fetchCount = 0; fetchCount < 100 && ackedIds[partition]!.some(isMissing); fetchCount++) {
      const bodies = await system.fetch(target, partition, batchSize, 1000);
      if (bodies.length === 0) break;
      for (const body of bodies) seen[partition]!.add(idOf(body));
    }
    missing += ackedIds[partition]!.filter(isMissing).length;
  }
  return missing;
}

export interface FailoverResult {
  gapsMs: number[];
  acked: number;
  missing: number;
}

/**
 * (e) Messages one at a time on the `failover` target; `kills` times the leader is killed with
 * SIGKILL and the time to the next acknowledged message is taken (the send is retried every 5 ms,
 * each attempt bounded by `attemptTimeoutMs`). The killed process is restarted and caught up
 * before the next kill. At the end every acknowledged message must be read back.
 */
export async function failover(system: BenchSystem, ids: IdSource, kills: number, between: number, attemptTimeoutMs: number): Promise<FailoverResult> {
  const send = system.failoverSender(attemptTimeoutMs);
  const acked: number[] = [];
  const gapsMs: number[] = [];
  const sendOne = async (): Promise<void> => {
    const id = ids.take();
    await send(bodyFor(id), 0);
    acked.push(id);
  };
  for (let k = 0; k < kills; k++) {
    for (let i = 0; i < between; i++) await sendOne();
    const leader = await system.leader();
    await system.kill(leader);
    const killedMs = nowMs();
    await retryUntilAcked(sendOne, killedMs + 30_000);
    gapsMs.push(round(nowMs() - killedMs, 0));
    progress(`  kill ${k + 1}/${kills}: ${leader} killed, next ack after ${gapsMs[gapsMs.length - 1]} ms`);
    system.restart(leader);
    await system.healthy();
  }
  for (let i = 0; i < between; i++) await sendOne();
  const read = await consumeAll(system, 'failover', [acked], 1000, nowMs() + 60_000);
  return { gapsMs, acked: acked.length, missing: read.missing };
}

async function retryUntilAcked(sendOne: () => Promise<void>, deadlineMs: number): Promise<void> {
  let lastError: unknown = null;
  for (let attempt = 0; attempt < 100_000 && nowMs() < deadlineMs; attempt++) {
    try {
      await sendOne();
      return;
    } catch (error) {
      lastError = error;
      await sleep(5);
    }
  }
  throw new Error(`no ack within 30 s of the kill: ${(lastError as Error | null)?.message ?? 'no attempt'}`);
}
