// Simulator runner.
//   --seeds N   run seeds 1..N (progress on stderr); prints the first failing seed and how to
//               replay it, and ends with `sim: N seeds, V violations` (exit code 1 when V > 0).
//   --seed K    replay one seed with a readable trace.
//   --from S    first seed of a --seeds run (default 1).
//   --no-disk-faults   the network and crash faults only.
//   --rule-off  TEST ONLY: cores ignore their promises (no recovering state), to show the data
//               loss the rule prevents (`node dist/test/sim/main.js --seeds 200 --rule-off`).
//   --break R   TEST ONLY: cores break membership rule R (learners-counted: learners count for
//               the high watermark; concurrent-changes: a change is accepted while another is
//               uncommitted; recovery-without-voters: a replaced disk recovers from any leader
//               whose log it holds, and recovering fetchers count for check-quorum and the high
//               watermark), the core invariant mirroring it off, to show the checker catches it.

import type { BrokenRuleForTest } from '../../src/raft/types.js';
import { emptyMembershipCounts, runSeed, type MembershipCounts, type SimResult, type SimSettings } from './simulation.js';

const brokenRules: readonly BrokenRuleForTest[] = ['learners-counted', 'concurrent-changes', 'recovery-without-voters'];

function brokenRule(): BrokenRuleForTest | null {
  const index = process.argv.indexOf('--break');
  if (index < 0) return null;
  const value = process.argv[index + 1] as BrokenRuleForTest;
  if (!brokenRules.includes(value)) {
    process.stderr.write(`--break needs one of ${brokenRules.join(', ')}\n`);
    process.exit(2);
  }
  return value;
}

const settings: SimSettings = {
  diskFaults: !process.argv.includes('--no-disk-faults'),
  recoveringRuleDisabled: process.argv.includes('--rule-off'),
  ruleBrokenForTest: brokenRule(),
};

function flagsOf(): string {
  const rule = settings.ruleBrokenForTest ? ` --break ${settings.ruleBrokenForTest}` : '';
  return `${settings.recoveringRuleDisabled ? ' --rule-off' : ''}${rule}${settings.diskFaults ? '' : ' --no-disk-faults'}`;
}

function describeCounts(counts: MembershipCounts): string {
  return (
    `membership: ${counts.learnersAdded} learners added (${counts.freshLearners} on empty disks), ${counts.promotions} promoted ` +
    `(${counts.promotionsRefused} refused as behind/unreachable/recovering), ${counts.learnersRemoved} learners, ${counts.followersRemoved} followers ` +
    `and ${counts.leadersRemoved} leaders removed, ${counts.legacyVotersAdded} legacy addVoter, ${counts.decommissioned} decommissioned, ` +
    `${counts.refusals} other refusals, ${counts.joinerSnapshotInstalls} snapshots installed by joining replicas; transfers ${counts.transfersStarted} started, ${counts.transfersRefused} refused`
  );
}

function addCounts(total: MembershipCounts, counts: MembershipCounts): void {
  for (const key of Object.keys(total) as Array<keyof MembershipCounts>) total[key] += counts[key];
}

function argumentValue(name: string): number | null {
  const index = process.argv.indexOf(name);
  if (index < 0) return null;
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 0) {
    process.stderr.write(`${name} needs a non-negative integer\n`);
    process.exit(2);
  }
  return value;
}

function replay(seed: number): void {
  const result = runSeed(seed, (line) => process.stdout.write(`${line}\n`), settings);
  report(result);
  process.stdout.write(`sim: 1 seeds, ${result.violations.length === 0 ? 0 : 1} violations\n`);
  process.exitCode = result.violations.length === 0 ? 0 : 1;
}

function report(result: SimResult): void {
  const summary = `seed ${result.seed}: ${result.ticks} ticks, ${result.leaderEpochs} leader epochs, ${result.committedEntries} committed entries, ${result.acknowledged} acknowledged, ${result.diskFaults} disk faults (${result.disksReplaced} disks replaced), ${result.recoveringStarts} recovering starts, ${result.identitylessJoins} identity-less joins, ${result.recoveries} recoveries, ${result.snapshotsTaken} snapshots taken, ${result.snapshotsInstalled} installed`;
  process.stdout.write(`${summary}\n  ${describeCounts(result.membership)}\n`);
  for (const violation of result.violations) process.stdout.write(`  violation: ${violation}\n`);
}

function runMany(count: number, first: number): void {
  let failures = 0;
  let diskFaults = 0;
  let recoveries = 0;
  let recoveringStarts = 0;
  let identitylessJoins = 0;
  let disksReplaced = 0;
  let snapshotsTaken = 0;
  let snapshotsInstalled = 0;
  const membership = emptyMembershipCounts();
  let firstFailure: SimResult | null = null;
  const startedMs = performance.now();
  for (let seed = first; seed < first + count; seed += 1) {
    const result = runSeed(seed, undefined, settings);
    diskFaults += result.diskFaults;
    recoveries += result.recoveries;
    recoveringStarts += result.recoveringStarts;
    identitylessJoins += result.identitylessJoins;
    disksReplaced += result.disksReplaced;
    snapshotsTaken += result.snapshotsTaken;
    snapshotsInstalled += result.snapshotsInstalled;
    addCounts(membership, result.membership);
    if (result.violations.length > 0) {
      failures += 1;
      if (firstFailure === null) {
        firstFailure = result;
        const flags = flagsOf();
        process.stdout.write(
          `FAIL seed ${seed}: ${result.violations[0]}\n  replay: ${flags === '' ? `make sim SEED=${seed}` : `node dist/test/sim/main.js --seed ${seed}${flags}`}\n`,
        );
      }
    }
    const done = seed - first + 1;
    if (done % 500 === 0 || done === count) {
      const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
      process.stderr.write(`sim: ${done}/${count} seeds, ${failures} violations, ${seconds}s\n`);
    }
  }
  const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
  const broken = settings.ruleBrokenForTest ? `, rule ${settings.ruleBrokenForTest} BROKEN` : '';
  const mode = `disk faults ${settings.diskFaults ? 'on' : 'off'}${settings.recoveringRuleDisabled ? ', recovering rule OFF' : ''}${broken}`;
  process.stdout.write(
    `sim: ${count} seeds (${mode}: ${diskFaults} disk faults (${disksReplaced} disks replaced), ${recoveringStarts} recovering starts, ${identitylessJoins} identity-less joins, ${recoveries} recoveries; ${snapshotsTaken} snapshots taken, ${snapshotsInstalled} installed), ${seconds}s\n`,
  );
  process.stdout.write(`sim: ${describeCounts(membership)}\n`);
  process.stdout.write(`sim: ${count} seeds, ${failures} violations\n`);
  process.exitCode = failures === 0 ? 0 : 1;
}

const single = argumentValue('--seed');
if (single !== null) replay(single);
else runMany(argumentValue('--seeds') ?? 1000, argumentValue('--from') ?? 1);
