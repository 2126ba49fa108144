// `mambamq cluster up|down`: starts every broker of a cluster file in the background (logs in
// <dataDir>/logs, pid files in <dataDir>/pids) and stops exactly those processes again.
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterConfig } from '../config/cluster.js';
import { MambaClient, type ClientOptions } from '../client/client.js';
import type { GroupRoute } from '../client/router.js';

const cliPath = join(dirname(fileURLToPath(import.meta.url)), 'main.js');

export function clusterDataDir(cluster: ClusterConfig): string {
  // Every broker's dataDir is <cluster dataDir>/<id>: logs and pids sit beside them.
  return dirname(cluster.groups[0]!.brokers[0]!.dataDir);
}

function pidFile(cluster: ClusterConfig, id: string): string {
  return join(clusterDataDir(cluster), 'pids', `${id}.pid`);
}

export function logFile(cluster: ClusterConfig, id: string): string {
  return join(clusterDataDir(cluster), 'logs', `${id}.log`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function runningPid(cluster: ClusterConfig, id: string): number | null {
  const file = pidFile(cluster, id);
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return null;
  // A stale pid file may name a process that reused the pid: only ours count.
  try {
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return command.includes('broker') && command.includes(id) ? pid : null;
  } catch {
    return pid; // no /proc: trust the pid file
  }
}

export function brokerAddresses(cluster: ClusterConfig): string[] {
  return cluster.groups.flatMap((g) => g.brokers.map((b) => `${b.host}:${b.clientPort}`));
}

/** Starts the brokers that are not running yet; returns the ids started. */
export function startBrokers(cluster: ClusterConfig, clusterFile: string): string[] {
  const started: string[] = [];
  for (const broker of cluster.groups.flatMap((g) => g.brokers)) {
    if (runningPid(cluster, broker.id) !== null) continue;
    const log = logFile(cluster, broker.id);
    mkdirSync(dirname(log), { recursive: true });
    mkdirSync(dirname(pidFile(cluster, broker.id)), { recursive: true });
    const fd = openSync(log, 'a');
    const child = spawn(process.execPath, [cliPath, 'broker', '--cluster', clusterFile, '--id', broker.id], { detached: true, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.unref();
    writeFileSync(pidFile(cluster, broker.id), `${child.pid}\n`);
    started.push(broker.id);
  }
  return started;
}

/** Waits (bounded) until every group names a leader; returns the groups. */
export async function waitForLeaders(
  cluster: ClusterConfig,
  timeoutMs: number,
  onProgress: (text: string) => void,
  security: Partial<ClientOptions> = {},
): Promise<GroupRoute[]> {
  const client = new MambaClient({ ...security, brokers: brokerAddresses(cluster), requestTimeoutMs: 1000, retry: { attemptsMax: 1 } });
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    while (Date.now() < deadline) {
      const groups = await client.describeCluster().catch(() => [] as GroupRoute[]);
      const led = groups.filter((g) => g.leaderId);
      const text = `${led.length}/${cluster.groups.length} groups have a leader`;
      if (text !== last) onProgress((last = text));
      if (groups.length === cluster.groups.length && led.length === groups.length) return groups;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    client.close();
  }
  throw new Error(`no leader within ${timeoutMs} ms; see the logs in ${join(clusterDataDir(cluster), 'logs')}`);
}

/** Stops the brokers this cluster file started (SIGTERM, then SIGKILL after a grace period). */
export async function stopBrokers(cluster: ClusterConfig, graceMs = 5000): Promise<string[]> {
  const stopped: string[] = [];
  for (const broker of cluster.groups.flatMap((g) => g.brokers)) {
    const pid = runningPid(cluster, broker.id);
    if (pid !== null) {
      process.kill(pid, 'SIGTERM');
      const deadline = Date.now() + graceMs;
      while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      if (alive(pid)) process.kill(pid, 'SIGKILL');
      stopped.push(broker.id);
    }
    rmSync(pidFile(cluster, broker.id), { force: true });
  }
  return stopped;
}
