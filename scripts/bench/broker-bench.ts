// `make bench`: three Mamba MQ brokers and the client on this machine against a three-node NATS
// JetStream cluster, measured in the same run on the same workloads (1 KiB messages, each
// acknowledged once 2 of 3 replicas hold it in the page cache):
//   (a) one at a time — p50/p99 ack latency   (b) as fast as possible — msg/s and MB/s
//   (c) consume everything back — msg/s       (d) leader kills during (a) — time to next ack
// Our `sync` flush mode is measured on (a) and (b) and printed on its own line. Progress goes to
// stderr; the last line of stdout is the JSON summary.
import { MambaCluster, oneAtATime, pipelined, consumeAll, failover } from './mamba-side.js';
import { ensureNatsServer, NatsCluster, natsOneAtATime, natsPipelined, natsConsumeAll, natsFailover } from './nats-side.js';
import { progress, round } from './bench-lib.js';

const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
};
const latencyCount = env('BENCH_LATENCY_MESSAGES', 5000);
const throughputCount = env('BENCH_THROUGHPUT_MESSAGES', 200_000);
const kills = env('BENCH_KILLS', 10);
const queues = 4;

async function ours(flushMode: 'async' | 'sync', full: boolean) {
  progress(`mamba (${flushMode} flush): starting three brokers`);
  const cluster = await MambaCluster.start(flushMode);
  try {
    await cluster.client.createTopic('lat', 1);
    await cluster.client.createTopic('tput', queues);
    await cluster.client.createTopic('fail', 1);
    progress(`mamba (${flushMode}): (a) ${latencyCount} messages one at a time`);
    const a = await oneAtATime(cluster, 'lat', latencyCount);
    progress(`mamba (${flushMode}): (a) p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, ${a.msgsPerS} msg/s`);
    progress(`mamba (${flushMode}): (b) ${throughputCount} messages pipelined`);
    const b = await pipelined(cluster, 'tput', queues, throughputCount);
    progress(`mamba (${flushMode}): (b) ${b.msgsPerS} msg/s, ${b.mbPerS} MB/s`);
    if (!full) return { a, b, c: null, d: null };
    progress('mamba: (c) consuming everything back');
    const c = await consumeAll(cluster, 'tput', queues);
    progress(`mamba: (c) ${c.count} messages, ${c.msgsPerS} msg/s`);
    progress(`mamba: (d) ${kills} leader kills during one-at-a-time production`);
    const d = await failover(cluster, 'fail', kills);
    progress(`mamba: (d) next ack after a kill: median ${d.medianMs} ms, max ${d.maxMs} ms; ${d.ackedMissing} of ${d.acked} acked messages missing`);
    return { a, b, c, d };
  } finally {
    await cluster.stop();
  }
}

async function peer() {
  const binary = ensureNatsServer();
  if (!binary) return null;
  progress('peer: starting a three-node NATS JetStream cluster (stream R3, file storage)');
  const cluster = await NatsCluster.start(binary);
  try {
    progress(`peer: (a) ${latencyCount} messages one at a time`);
    const a = await natsOneAtATime(cluster, latencyCount);
    progress(`peer: (a) p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, ${a.msgsPerS} msg/s`);
    progress(`peer: (b) ${throughputCount} messages, 256 in flight`);
    const b = await natsPipelined(cluster, throughputCount);
    progress(`peer: (b) ${b.msgsPerS} msg/s, ${b.mbPerS} MB/s`);
    progress('peer: (c) pull consumer, 500 at a time');
    const c = await natsConsumeAll(cluster, 'bench.tput');
    progress(`peer: (c) ${c.count} messages, ${c.msgsPerS} msg/s`);
    progress(`peer: (d) ${kills} stream-leader kills`);
    const d = await natsFailover(cluster, kills);
    progress(`peer: (d) next ack after a kill: median ${d.medianMs} ms, max ${d.maxMs} ms`);
    return { a, b, c, d };
  } finally {
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const mamba = await ours('async', true);
  const sync = await ours('sync', false);
  const nats = await peer();
  console.log(JSON.stringify({
    bench: 'broker-sync', produce_msgs_s: sync.b.msgsPerS, produce_MBps: sync.b.mbPerS, p50_ms: sync.a.p50Ms, p99_ms: sync.a.p99Ms,
  }));
  console.log(JSON.stringify({
    bench: 'broker',
    produce_msgs_s: mamba.b.msgsPerS,
    peer_produce_msgs_s: nats?.b.msgsPerS ?? null,
    produce_ratio: nats ? round(mamba.b.msgsPerS / nats.b.msgsPerS, 2) : null,
    p99_ms: mamba.a.p99Ms,
    peer_p99_ms: nats?.a.p99Ms ?? null,
    consume_msgs_s: mamba.c!.msgsPerS,
    peer_consume_msgs_s: nats?.c.msgsPerS ?? null,
    failover_ms_median: mamba.d!.medianMs,
    failover_ms_max: mamba.d!.maxMs,
    peer_failover_ms_median: nats?.d.medianMs ?? null,
    acked_missing: mamba.d!.ackedMissing,
  }));
}

main().then(() => process.exit(0), (error: Error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
