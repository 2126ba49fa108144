// `make bench`: three Mamba MQ brokers against a three-node NATS JetStream cluster on this
// machine, on the same workloads (workloads.ts, written once for both), 1 KiB messages, each
// acknowledged once 2 of 3 servers hold it in the page cache (async durability on both sides):
//   (a) one message at a time on the raw protocol: p50/p99 ack latency
//   (b) 256 single-message requests outstanding on the raw protocol: msg/s, and CPU µs per
//       message of the three server processes (/proc/<pid>/stat before and after)
//   (c) each system's own client, one message per call, 256 outstanding: msg/s, p99
//   (d) everything (b) and (c) wrote read back, 4 readers (one per partition), 500 per fetch,
//       stopping at the acknowledged count: msg/s, and acknowledged messages not read back
//   (e) leader kill -9 during one-at-a-time sends: time to the next ack
// Rounds alternate (ours, peer, ours, peer, ours, peer); each figure is the median of the rounds,
// failover figures are over the kills of all rounds together. When the peer's version has
// `sync_interval: always`, our `sync` flush mode is compared with it on (a) and (b) in as many
// alternating rounds (BENCH_SYNC=off skips that; =ours runs our side even without the peer's).
// Progress goes to stderr; stdout has the peer's description and config, then the JSON summary as
// its last line.
import { MambaSystem, ourFlushDescription, ourRaw } from './mamba-side.js';
import { ensureNatsServer, describePeer, peerDurability, NatsSystem, type PeerDescription, type PeerSync } from './nats-side.js';
import {
  IdSource,
  consumeAll,
  failover,
  outstanding,
  sequential,
  type BenchSystem,
  type ConsumeResult,
  type FailoverResult,
  type OutstandingResult,
  type SequentialResult,
} from './workloads.js';
import { median, nowMs, percentile, progress, ratio, round } from './bench-lib.js';

const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
};
// Sized so that the whole run takes about 10 minutes on a 2-core machine.
const roundCount = env('BENCH_ROUNDS', 3);
const sequentialCount = env('BENCH_SEQUENTIAL_MESSAGES', 2000);
const loadCount = env('BENCH_LOAD_MESSAGES', 20_000);
const killCount = env('BENCH_KILLS', 21);
const killsPerRound = Math.ceil(killCount / roundCount);
const inflight = 256;
const partitions = 4;
const consumeBatch = 500;
const warmupCount = 200;
const messagesBetweenKills = 50;
const failoverAttemptTimeoutMs = 1000;
const syncChoice = process.env.BENCH_SYNC ?? 'auto';
if (!['auto', 'off', 'ours'].includes(syncChoice)) throw new Error('BENCH_SYNC must be auto, off or ours');

interface RoundResult {
  a: SequentialResult;
  b: OutstandingResult;
  c: OutstandingResult;
  d: ConsumeResult;
  e: FailoverResult;
}

async function runRound(system: BenchSystem): Promise<RoundResult> {
  const ids = new IdSource();
  const tag = system.label;
  progress(`${tag}: (a) ${sequentialCount} messages one at a time (raw protocol)`);
  const a = await sequential(system.rawSender('sequential'), ids, sequentialCount, warmupCount);
  progress(`${tag}: (a) p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, ${a.msgsPerS} msg/s`);
  const acked = Array.from({ length: partitions }, (): number[] => []);
  progress(`${tag}: (b) ${loadCount} single-message requests, ${inflight} outstanding (raw protocol)`);
  const b = await outstanding(system, system.rawSender('load'), ids, loadCount, inflight, acked);
  progress(`${tag}: (b) ${describeOutstanding(b)}`);
  progress(`${tag}: (c) ${loadCount} messages through the own client, one per call, ${inflight} outstanding`);
  const client = system.clientSender('load');
  const c = await outstanding(system, client.send, ids, loadCount, inflight, acked);
  await client.close();
  progress(`${tag}: (c) ${describeOutstanding(c)}`);
  progress(`${tag}: (d) reading ${b.acked + c.acked} messages back, ${partitions} readers, ${consumeBatch} per fetch`);
  const d = await consumeAll(system, 'load', acked, consumeBatch, nowMs() + 120_000);
  progress(`${tag}: (d) ${d.msgsPerS} msg/s, ${d.read} read, ${d.missing} acknowledged not read back`);
  progress(`${tag}: (e) ${killsPerRound} leader kills (kill -9) during one-at-a-time sends`);
  const e = await failover(system, ids, killsPerRound, messagesBetweenKills, failoverAttemptTimeoutMs);
  progress(`${tag}: (e) next ack after a kill: median ${median(e.gapsMs)} ms, max ${Math.max(...e.gapsMs)} ms; ${e.missing} of ${e.acked} acked missing`);
  return { a, b, c, d, e };
}

function roundLine(r: RoundResult): string {
  return (
    `(a) p50 ${r.a.p50Ms} p99 ${r.a.p99Ms} ms | (b) ${r.b.msgsPerS} msg/s, ${r.b.cpuUsPerMsg} µs/msg | (c) ${r.c.msgsPerS} msg/s, p99 ${r.c.p99Ms} ms | ` +
    `(d) ${r.d.msgsPerS} msg/s | (e) median ${median(r.e.gapsMs)} ms | missing ${r.d.missing + r.e.missing}`
  );
}

function describeOutstanding(r: OutstandingResult): string {
  return `${r.msgsPerS} msg/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, servers ${r.cpuUsPerMsg} CPU µs/msg, client ${r.clientCpuUsPerMsg} CPU µs/msg, ${r.failed} failed`;
}

/** The durability comparison: (a) and (b) only, half the counts. */
async function runSyncRound(system: BenchSystem): Promise<Pick<RoundResult, 'a' | 'b'>> {
  const ids = new IdSource();
  const tag = `${system.label} (sync)`;
  const a = await sequential(system.rawSender('sequential'), ids, Math.ceil(sequentialCount / 2), warmupCount);
  progress(`${tag}: (a) p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, ${a.msgsPerS} msg/s`);
  const acked = Array.from({ length: partitions }, (): number[] => []);
  const b = await outstanding(system, system.rawSender('load'), ids, Math.ceil(loadCount / 2), inflight, acked);
  progress(`${tag}: (b) ${describeOutstanding(b)}`);
  return { a, b };
}

async function ourRound<T>(flush: 'default' | 'sync', run: (system: BenchSystem) => Promise<T>): Promise<T> {
  progress(`mamba: starting three brokers${flush === 'sync' ? ' (flush: sync)' : ''}`);
  const system = await MambaSystem.start(partitions, ...(flush === 'sync' ? [{ mode: 'sync' } as const] : []));
  try {
    return await run(system);
  } finally {
    await system.stop();
  }
}

async function peerRound<T>(peer: PeerDescription, sync: PeerSync, printConfig: boolean, run: (system: BenchSystem) => Promise<T>): Promise<T> {
  progress(`peer: starting three NATS JetStream servers (stream R3, file storage${sync === 'always' ? ', sync_interval: always' : ''})`);
  const system = await NatsSystem.start(
    peer,
    partitions,
    (text) => {
      if (printConfig) console.log(`peer config (server n1; n2 and n3 differ only in name and ports):\n${text}`);
    },
    sync,
  );
  try {
    return await run(system);
  } finally {
    await system.stop();
  }
}

/** Runs one round, logging and returning null on failure so the other rounds still count. */
async function attempt<T>(label: string, run: () => Promise<T>): Promise<T | null> {
  try {
    return await run();
  } catch (error) {
    progress(`${label} round failed: ${(error as Error).stack ?? (error as Error).message}`);
    return null;
  }
}

function medianOf<R>(rounds: R[], pick: (r: R) => number): number | null {
  const values = rounds.map(pick).filter((v) => Number.isFinite(v));
  return values.length ? round(median(values), 3) : null;
}

function gapsOf(rounds: RoundResult[]): number[] {
  return rounds.flatMap((r) => r.e.gapsMs).sort((x, y) => x - y);
}

function summary(ours: RoundResult[], peers: RoundResult[]): Record<string, number | string | null> {
  const m = medianOf;
  const ourGaps = gapsOf(ours);
  const peerGaps = gapsOf(peers);
  const single = m(ours, (r) => r.b.msgsPerS);
  const peerSingle = m(peers, (r) => r.b.msgsPerS);
  const clientRate = m(ours, (r) => r.c.msgsPerS);
  const peerClientRate = m(peers, (r) => r.c.msgsPerS);
  const consume = m(ours, (r) => r.d.msgsPerS);
  const peerConsume = m(peers, (r) => r.d.msgsPerS);
  return {
    bench: 'broker',
    seq_p50_ms: m(ours, (r) => r.a.p50Ms),
    seq_p99_ms: m(ours, (r) => r.a.p99Ms),
    peer_seq_p50_ms: m(peers, (r) => r.a.p50Ms),
    peer_seq_p99_ms: m(peers, (r) => r.a.p99Ms),
    single_msgs_s: single,
    peer_single_msgs_s: peerSingle,
    single_ratio: ratio(single, peerSingle),
    client_msgs_s: clientRate,
    client_p99_ms: m(ours, (r) => r.c.p99Ms),
    peer_client_msgs_s: peerClientRate,
    peer_client_p99_ms: m(peers, (r) => r.c.p99Ms),
    client_ratio: ratio(clientRate, peerClientRate),
    consume_msgs_s: consume,
    peer_consume_msgs_s: peerConsume,
    consume_ratio: ratio(consume, peerConsume),
    cpu_us_per_msg: m(ours, (r) => r.b.cpuUsPerMsg),
    peer_cpu_us_per_msg: m(peers, (r) => r.b.cpuUsPerMsg),
    failover_ms_median: ourGaps.length ? median(ourGaps) : null,
    failover_ms_p99: ourGaps.length ? percentile(ourGaps, 99) : null,
    peer_failover_ms_median: peerGaps.length ? median(peerGaps) : null,
    acked_missing: ours.length ? ours.reduce((sum, r) => sum + r.d.missing + r.e.missing, 0) : null,
  };
}

function describeRun(peer: PeerDescription | null): void {
  console.log(
    `workloads: 1 KiB messages; (a) ${sequentialCount} one at a time after ${warmupCount} warm-up; (b) and (c) ${loadCount} each, ${inflight} outstanding over ${partitions} partitions; (d) ${partitions} readers x ${consumeBatch} per fetch; (e) ${killsPerRound} kills per round, ${killsPerRound * roundCount} in all; ${roundCount} rounds per system, alternating`,
  );
  console.log(
    `ours: Mamba MQ, 3 brokers, 1 group; flush ${ourFlushDescription()}; raw protocol: ${ourRaw === 'stream' ? 'ProduceStream, one message per request' : 'unary Produce, one message per request'}`,
  );
  if (peer === null) {
    console.log('peer: none (nats-server not available); peer figures are null');
    return;
  }
  console.log(`peer: NATS JetStream nats-server ${peer.version} (Debian package ${peer.debianPackage}), 3 servers, stream R3 on file storage`);
  console.log(`peer durability: ${peerDurability(peer)}`);
  console.log('peer client: nats.js; its JetStream publish is both the raw protocol (b) and the own client (c) (nats.js has no batching producer)');
}

/** Our sync flush mode against `sync_interval: always`, when the peer has it (see the header). */
async function syncComparison(peer: PeerDescription | null): Promise<void> {
  const withPeer = peer?.hasSyncAlways && syncChoice === 'auto';
  if (!withPeer && syncChoice !== 'ours') return;
  type SyncRound = Pick<RoundResult, 'a' | 'b'>;
  const ours: SyncRound[] = [];
  const peers: SyncRound[] = [];
  for (let r = 1; r <= roundCount; r++) {
    progress(`sync round ${r}/${roundCount}`);
    const our = await attempt('mamba sync', () => ourRound('sync', runSyncRound));
    if (our) ours.push(our);
    if (withPeer) {
      const theirs = await attempt('peer sync', () => peerRound(peer, 'always', r === 1, runSyncRound));
      if (theirs) peers.push(theirs);
    }
  }
  const m = medianOf;
  const single = m(ours, (r) => r.b.msgsPerS);
  const peerSingle = m(peers, (r) => r.b.msgsPerS);
  console.log(
    `sync comparison, our flush sync vs ${withPeer ? 'JetStream sync_interval: always' : 'no peer'} (medians of ${roundCount}, (a) and (b) at half the counts): ` +
      `seq p50 ${m(ours, (r) => r.a.p50Ms)} vs ${m(peers, (r) => r.a.p50Ms)} ms, p99 ${m(ours, (r) => r.a.p99Ms)} vs ${m(peers, (r) => r.a.p99Ms)} ms; ` +
      `single ${single} vs ${peerSingle} msg/s (ratio ${ratio(single, peerSingle)}); CPU ${m(ours, (r) => r.b.cpuUsPerMsg)} vs ${m(peers, (r) => r.b.cpuUsPerMsg)} µs/msg`,
  );
}

async function main(): Promise<void> {
  const startedMs = nowMs();
  const binary = ensureNatsServer();
  const peer = binary ? describePeer(binary) : null;
  describeRun(peer);
  const ours: RoundResult[] = [];
  const peers: RoundResult[] = [];
  for (let r = 1; r <= roundCount; r++) {
    progress(`round ${r}/${roundCount}`);
    const our = await attempt('mamba', () => ourRound('default', runRound));
    if (our) ours.push(our);
    if (peer) {
      const theirs = await attempt('peer', () => peerRound(peer, 'default', r === 1, runRound));
      if (theirs) peers.push(theirs);
    }
  }
  await syncComparison(peer);
  const missingRounds = roundCount - ours.length + (peer ? roundCount - peers.length : 0);
  if (missingRounds > 0) progress(`${missingRounds} round(s) failed: medians are over the rounds that finished`);
  progress(`peer acknowledged messages not read back: ${peers.reduce((sum, r) => sum + r.d.missing + r.e.missing, 0)}`);
  for (const [label, rounds] of [
    ['mamba', ours],
    ['peer', peers],
  ] as const) {
    for (const [index, r] of rounds.entries()) progress(`${label} round ${index + 1}: ${roundLine(r)}`);
  }
  progress(`bench took ${round((nowMs() - startedMs) / 1000, 0)} s`);
  console.log(JSON.stringify(summary(ours, peers)));
  if (ours.length === 0) throw new Error('no round of ours finished');
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`bench failed: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
