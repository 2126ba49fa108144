// `make chaos RUNS=N DURATION=S FAULTS=kill,pause,partition,torn,lose-tail,corrupt,powerloss [SEED=k]`:
// N runs of S seconds each, the faults taken in turn (run i gets the i-th fault of the list,
// cycling), progress on stderr, and as the last line on stdout
//   chaos: N runs, acked=A lost=L duplicated=D reordered=R short=S max_gap_ms=G skipped=[...]
// short counts replicas that had not caught up when their run ended; skipped names the faults
// that could not run here (partition without root): their runs are not done, never replaced by
// another fault, so N counts the runs done. The exit status is 1 when L, D, R or S is above 0,
// when an offset changed value, or when a run failed; 0 otherwise. A run with problems keeps its
// directory (data, broker logs) and names it. Brokers keep the test-only sync record
// (MAMBA_TEST_SYNC_RECORD=1) that powerloss cuts logs back to.
//
// Duplicates: the workload never retries a request whose outcome is unknown under the same id
// (see workload.ts), so every duplicate counted is a broker bug, not a client retry.
// Partitions need root and `ip netns`; without them the partition fault is skipped and named.
import { Command } from 'commander';
import { progress } from '../bench/bench-lib.js';
import { faultNames, type FaultName } from './faults.js';
import { partitionUnavailableReason } from './netns.js';
import { activeCleanups, runChaos, type RunResult } from './run.js';

const faultAliases: Record<string, FaultName> = {
  kill: 'kill',
  'kill-leader': 'kill',
  pause: 'pause',
  partition: 'partition',
  torn: 'torn',
  'torn-tail': 'torn',
  'lose-tail': 'lose-tail',
  corrupt: 'corrupt',
  powerloss: 'powerloss',
};

function parseFaults(text: string): FaultName[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw new Error(`--faults: give at least one of ${faultNames.join(', ')}`);
  return names.map((name) => {
    const fault = faultAliases[name];
    if (!fault) throw new Error(`--faults: unknown fault "${name}" (known: ${faultNames.join(', ')})`);
    return fault;
  });
}

type Summed = Pick<RunResult, 'acked' | 'lost' | 'duplicated' | 'reordered' | 'replicasNotCaughtUp' | 'gapMsMax'>;

function summaryLine(results: readonly Summed[], skipped: readonly string[]): string {
  const sum = (pick: (r: Summed) => number): number => results.reduce((total, r) => total + pick(r), 0);
  const gapMsMax = Math.round(Math.max(0, ...results.map((r) => r.gapMsMax)));
  return `chaos: ${results.length} runs, acked=${sum((r) => r.acked)} lost=${sum((r) => r.lost)} duplicated=${sum((r) => r.duplicated)} reordered=${sum((r) => r.reordered)} short=${sum((r) => r.replicasNotCaughtUp)} max_gap_ms=${gapMsMax} skipped=[${skipped.join(',')}]`;
}

function report(result: RunResult): void {
  const gaps = result.faultGapsMs.map((g) => Math.round(g)).join(',');
  progress(
    `run ${result.run} ${result.fault} seed ${result.seed}: faults=${result.events.length} acked=${result.acked} lost=${result.lost} duplicated=${result.duplicated} reordered=${result.reordered} changed=${result.changed} not_caught_up=${result.replicasNotCaughtUp} replica_short=${result.replicaShort} unknown=${result.unknownSent} (stored ${result.unknownStored}) max_gap_ms=${Math.round(result.gapMsMax)} fault_gaps_ms=[${gaps}]`,
  );
  for (const example of result.examples) progress(`    ${example}`);
  if (result.keptDir) progress(`    data and broker logs kept in ${result.keptDir}; replay with SEED=${result.seed}`);
}

async function main(): Promise<number> {
  const program = new Command()
    .name('chaos')
    .option('--runs <n>', 'number of runs', '4')
    .option('--duration-s <s>', 'seconds of faults per run', '30')
    .option('--faults <list>', `comma-separated faults: ${faultNames.join(',')}`, faultNames.join(','))
    .option('--seed <k>', 'seed of the first run (run i uses seed + i)', String(Date.now() % 1_000_000))
    .parse();
  const options = program.opts<{ runs: string; durationS: string; faults: string; seed: string }>();
  const runs = Number(options.runs);
  const durationS = Number(options.durationS);
  const seed = Number(options.seed);
  if (!Number.isInteger(runs) || runs < 1 || runs > 1000) throw new Error(`--runs: ${options.runs} is out of range 1..1000`);
  if (!Number.isInteger(durationS) || durationS < 1 || durationS > 3600) throw new Error(`--duration-s: ${options.durationS} is out of range 1..3600`);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed: ${options.seed} is not a non-negative integer`);
  const selected = parseFaults(options.faults);
  const skipped: FaultName[] = [];
  if (selected.includes('partition')) {
    const reason = partitionUnavailableReason(progress);
    if (reason) {
      progress(`partition: SKIPPED — ${reason}; its runs are not done`);
      skipped.push('partition');
    }
  }
  process.env.MAMBA_TEST_SYNC_RECORD = '1'; // inherited by the brokers (powerloss reads it)
  progress(`chaos: ${runs} runs of ${durationS} s, faults ${selected.join(',')}, seeds ${seed}..${seed + runs - 1}`);
  const results: RunResult[] = [];
  let failedRuns = 0;
  for (let run = 0; run < runs; run++) {
    const fault = selected[run % selected.length]!;
    if (skipped.includes(fault)) continue;
    progress(`run ${run} ${fault} seed ${seed + run}: starting`);
    try {
      const result = await runChaos({ run, seed: seed + run, fault, durationS, log: progress });
      results.push(result);
      report(result);
    } catch (error) {
      failedRuns++;
      progress(`run ${run} FAILED: ${(error as Error).message}`);
    }
  }
  const line = summaryLine(results, skipped);
  const bad = results.some((r) => r.lost + r.duplicated + r.reordered + r.changed + r.replicasNotCaughtUp > 0);
  if (failedRuns > 0) progress(`${failedRuns} of ${runs} runs failed to complete (not counted in the line below)`);
  process.stdout.write(`${line}\n`);
  return bad || failedRuns > 0 ? 1 : 0;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const cleanup of activeCleanups) cleanup();
    process.exit(130);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`chaos: ${error.message}\n`);
    process.exitCode = 2;
  },
);
