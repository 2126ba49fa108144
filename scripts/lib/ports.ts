// Ports for test, benchmark and chaos servers that no other server of the run can be given.
//
// The old helper bound port 0, closed the socket and returned the number: the kernel was then
// free to hand the same number to the next call (seen: two brokers of one cluster file given one
// client port) or to any process's outgoing connection. Here a port is
//   1. taken from below the kernel's ephemeral range, so no port-0 bind and no outgoing
//      connection on this machine can ever be given it;
//   2. claimed across processes by creating a lock file exclusively (`wx`), which names the
//      owning pid so that a crashed run's claims can be taken back;
//   3. checked by binding it on 127.0.0.1 (something outside our runs may hold it), all of one
//      request's sockets held open until every port of the request is chosen.
// Claims last until `releasePorts` or the process exits.
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const lockDir = join(tmpdir(), 'mamba-mq-ports');
/** Lowest port handed out: above the well-known and registered ports most daemons use. */
const portMin = 20_000;
/** How many candidate ports one request may try before it gives up (a full or hostile range). */
const attemptsMax = 2_000;

const claimed = new Set<number>();
let exitHookInstalled = false;

/** The first port of the kernel's ephemeral range (32768 on Linux unless configured). */
function ephemeralPortMin(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const value = Number(low);
    if (Number.isInteger(value) && value > portMin + 1_000) return value;
  } catch {
    // not Linux: keep the usual default
  }
  return 32_768;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates the lock file of `port` for this process; takes it back from a dead owner once. */
function claim(port: number): boolean {
  const file = join(lockDir, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      claimed.add(port);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let owner = Number.NaN;
      try {
        owner = Number(readFileSync(file, 'utf8'));
      } catch {
        // removed meanwhile: try again
      }
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) return false;
      // An empty file is a claim being written right now, unless its writer died: leave it.
      if (!Number.isInteger(owner) || owner <= 0) return false;
      try {
        unlinkSync(file);
      } catch {
        // another process took it back first
      }
    }
  }
  return false;
}

function unclaim(port: number): void {
  if (!claimed.delete(port)) return;
  try {
    unlinkSync(join(lockDir, String(port)));
  } catch {
    // already gone
  }
}

function listenOnce(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(server));
  });
}

function closeAll(servers: Server[]): Promise<void> {
  return Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
}

/**
 * `count` distinct ports that no other reservation on this machine holds and that nothing
 * listens on right now. Throws when the range is exhausted rather than handing out a doubtful one.
 */
export async function reservePorts(count: number, options: { firstPort?: number } = {}): Promise<number[]> {
  if (!Number.isInteger(count) || count < 1 || count > 1_000) throw new RangeError(`reservePorts: count ${count} outside [1, 1000]`);
  mkdirSync(lockDir, { recursive: true });
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const port of [...claimed]) unclaim(port);
    });
  }
  const portMax = ephemeralPortMin() - 1;
  const span = portMax - portMin + 1;
  // A random start spreads concurrent runs over the range; the walk from it is sequential.
  // `firstPort` (tests of this module) makes the walk start at a known port.
  const first = options.firstPort ?? portMin + Math.floor(Math.random() * span);
  if (first < portMin || first > portMax) throw new RangeError(`reservePorts: firstPort ${first} outside [${portMin}, ${portMax}]`);
  let candidate = first - 1;
  const ports: number[] = [];
  const held: Server[] = [];
  try {
    for (let attempt = 0; attempt < attemptsMax && ports.length < count; attempt++) {
      candidate = candidate >= portMax || candidate < portMin ? portMin : candidate + 1;
      if (claimed.has(candidate) || !claim(candidate)) continue;
      const server = await listenOnce(candidate);
      if (!server) {
        unclaim(candidate);
        continue;
      }
      held.push(server);
      ports.push(candidate);
    }
  } finally {
    await closeAll(held);
  }
  if (ports.length < count) {
    for (const port of ports) unclaim(port);
    throw new Error(`reservePorts: found only ${ports.length} of ${count} free ports in [${portMin}, ${portMax}] after ${attemptsMax} tries`);
  }
  return ports;
}

/** One reserved port (see `reservePorts`). */
export async function freePort(): Promise<number> {
  const [port] = await reservePorts(1);
  if (port === undefined) throw new Error('reservePorts returned no port');
  return port;
}

/** Gives ports back (their servers must be stopped); unknown ports are ignored. */
export function releasePorts(ports: Iterable<number>): void {
  for (const port of ports) unclaim(port);
}
