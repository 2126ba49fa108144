// One message at a time with quorum ack against a real three-broker group: prints the latency
// percentiles and, with MAMBA_BROKER_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR', leaves one CPU
// profile per broker (brokers are stopped with SIGTERM so Node writes the profile), and a
// summary of the self time per message by function for the leader and for one follower.
//   node dist/test/replication/seq-latency.js [messages=3000] [warmup=300] [flush=async|sync]
// Not a test file: run it by hand when measuring the replication path.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster } from '../integration/cluster-harness.js';

const messagesCount = Math.min(100_000, Number(process.argv[2] ?? 3000));
const warmupCount = Math.min(10_000, Number(process.argv[3] ?? 300));
const flushMode = process.argv[4] === 'sync' ? 'sync' : 'async';

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time by function (µs), from a .cpuprofile. */
function selfTimes(profile: Profile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!)!;
    const url = node.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/');
    const name = `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber + 1}`;
    totals.set(name, (totals.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  return totals;
}

/** Keeps the samples taken in [endTime - fromEndUs, endTime - toEndUs] (the measured phase). */
function windowed(profile: Profile, fromEndUs: number, toEndUs: number): Profile {
  const samples: number[] = [];
  const deltas: number[] = [];
  let atUs = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    atUs += profile.timeDeltas[i] ?? 0;
    if (atUs < profile.endTime - fromEndUs || atUs > profile.endTime - toEndUs) continue;
    samples.push(profile.samples[i]!);
    deltas.push(profile.timeDeltas[i] ?? 0);
  }
  return { ...profile, samples, timeDeltas: deltas };
}

const categories: Array<[RegExp, string]> = [
  [/^\((program|garbage collector|idle)\)/, '($1)'],
  [/node_modules\/@grpc|node:internal\/http2|node:http2/, 'grpc-js + http2'],
  [/node_modules\/protobufjs/, 'protobuf'],
  [/node_modules\/lmdb/, 'lmdb'],
  [/node_modules\/prom-client/, 'metrics'],
  [/dist\/src\/raft/, 'raft core'],
  [/dist\/src\/replica/, 'replica'],
  [/dist\/src\/log/, 'segment log'],
  [/dist\/src\/broker/, 'broker'],
  [/dist\/src\/(rpc|observe|auth)/, 'rpc + observe'],
  [/^(writeBuffer|writev|writeUtf8String|fdatasync|fsync|pwrite\w*|read\w*) :0/, 'syscalls from JS'],
  [/node:internal\/(timers|process\/task_queues)|runMicrotasks/, 'timers + microtasks'],
  [/node:/, 'other node internals'],
];

function categoryOf(name: string): string {
  for (const [pattern, label] of categories) {
    const match = pattern.exec(name);
    if (match) return label.replace('$1', match[1] ?? '');
  }
  return 'other';
}

function summarise(label: string, file: string, messages: number, window: { fromEndUs: number; toEndUs: number }): void {
  const profile = windowed(JSON.parse(readFileSync(file, 'utf8')) as Profile, window.fromEndUs, window.toEndUs);
  const totals = selfTimes(profile);
  let busyUs = 0;
  for (const [name, us] of totals) if (!name.startsWith('(idle)')) busyUs += us;
  const groups = new Map<string, number>();
  for (const [name, us] of totals) {
    const key = categoryOf(name);
    groups.set(key, (groups.get(key) ?? 0) + us);
  }
  process.stdout.write(`\n${label}: ${file}\n  on CPU ${(busyUs / messages).toFixed(1)} µs/msg (samples not idle)\n`);
  for (const [key, us] of [...groups].sort((a, b) => b[1] - a[1]))
    if (key !== '(idle)') process.stdout.write(`  ${key.padEnd(22)} ${(us / messages).toFixed(1)} µs/msg\n`);
  const top = [...totals]
    .filter(([n]) => !n.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 30);
  for (const [name, us] of top) process.stdout.write(`    ${(us / messages).toFixed(1).padStart(6)} µs  ${name}\n`);
}

async function main(): Promise<void> {
  const cluster = await TestCluster.start({ settings: flushMode === 'sync' ? { flush: { mode: 'sync' } } : {} });
  const pids = new Map<string, number>();
  try {
    const leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
    for (const b of cluster.brokers) pids.set(b.id, b.process!.pid!);
    const client = cluster.client(leader);
    await client.call('CreateTopic', { name: 'seq', queues: 1 });
    const body = Buffer.alloc(1024, 7);
    for (let i = 0; i < warmupCount; i++) await client.produce('seq', 0, [body]);
    const latenciesMs: number[] = [];
    const cpuBefore = new Map([...pids].map(([id, pid]) => [id, cpuSeconds(pid)]));
    const startMs = performance.now();
    for (let i = 0; i < messagesCount; i++) {
      const t0 = performance.now();
      await client.produce('seq', 0, [body]);
      latenciesMs.push(performance.now() - t0);
    }
    const elapsedMs = performance.now() - startMs;
    const cpuUsPerMessage = [...pids].map(
      ([id, pid]) => `${id === leader ? 'leader' : 'follower'} ${id} ${(((cpuSeconds(pid) - cpuBefore.get(id)!) * 1e6) / messagesCount).toFixed(0)}`,
    );
    latenciesMs.sort((a, b) => a - b);
    process.stdout.write(
      `flush ${flushMode}, leader ${leader}: ${messagesCount} messages one at a time, ${(messagesCount / (elapsedMs / 1000)).toFixed(0)} msg/s, p50 ${percentile(latenciesMs, 50).toFixed(2)} ms, p90 ${percentile(latenciesMs, 90).toFixed(2)} ms, p99 ${percentile(latenciesMs, 99).toFixed(2)} ms, max ${latenciesMs[latenciesMs.length - 1]!.toFixed(2)} ms; CPU µs/msg (/proc): ${cpuUsPerMessage.join(', ')}\n`,
    );
    const endMs = performance.now();
    const profileDir = /--cpu-prof-dir=(\S+)/.exec(process.env.MAMBA_BROKER_NODE_ARGS ?? '')?.[1];
    // SIGTERM: the broker stops cleanly and Node writes its profile on exit; the exit time places
    // the measured phase on the profile's clock (to a few ms).
    const exitMs = new Map<string, number>();
    await Promise.all(
      cluster.brokers.map(async (b) => {
        await cluster.kill(b.id, 'SIGTERM');
        exitMs.set(b.id, performance.now());
      }),
    );
    if (profileDir && existsSync(profileDir)) {
      const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
      for (const [id, pid] of pids) {
        const file = files.find((f) => f.includes(`.${pid}.`));
        const exit = exitMs.get(id)!;
        const window = { fromEndUs: (exit - startMs) * 1000, toEndUs: (exit - endMs) * 1000 };
        if (file) summarise(`${id === leader ? 'leader' : 'follower'} ${id} (measured phase only, per message)`, join(profileDir, file), messagesCount, window);
      }
    }
  } finally {
    await cluster.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
