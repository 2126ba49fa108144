// Hosts on one machine, for chaos runs and the many-hosts test: each host (a broker, or a client
// such as `c1`) in its own network namespace with its own address, joined by a veth pair to one
// bridge in the caller's namespace, on a private /24 this module picks and owns. A host's
// programs run under `ip netns exec` (`commandIn`), so their only way to the others is that
// network. iptables rules inside a host's namespace cut it off.
// Namespace and bridge names carry the creating process's pid, so parallel runs never share one.
// Everything created here is removed by `destroy()`; namespaces, bridges and FORWARD rules left
// behind by an earlier run that died (its pid is gone) are removed on the next `create()`.
import { execFileSync } from 'node:child_process';

/** A host id: a letter and a number (b1..b6 brokers, c1 a client); it goes into interface names of at most 15 bytes. */
const hostIdPattern = /^[a-z]\d{1,2}$/;
const namePattern = /^mchaos(\d+)-([a-z]\d{1,2})$/;
const bridgePattern = /^mchaos(\d+)br$/;
/** The FORWARD rule `build()` adds when the chain's policy is not ACCEPT, as `iptables -S` prints it. */
const forwardRulePattern = /^-A FORWARD -i (mchaos(\d+)br) -o mchaos\2br -j ACCEPT$/;
const subnetSecondOctet = 213;

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

function runQuietly(command: string, args: string[]): void {
  try {
    run(command, args);
  } catch {
    // cleanup of something that may already be gone
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Null when partitions can run here, else the reason they cannot (installs iptables if missing). */
export function partitionUnavailableReason(log: (text: string) => void): string | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root (network namespaces and iptables need root)';
  try {
    run('ip', ['netns', 'list']);
  } catch (error) {
    return `\`ip netns\` is unavailable: ${(error as Error).message.split('\n')[0]}`;
  }
  if (!hasIptables()) {
    log('partition: iptables is missing; installing it with apt-get');
    try {
      execFileSync('apt-get', ['install', '-y', '-q', 'iptables'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 300_000,
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch (error) {
      return `iptables is missing and apt-get could not install it: ${(error as Error).message.split('\n')[0]}`;
    }
    if (!hasIptables()) return 'iptables is missing and the install did not provide it';
  }
  return null;
}

function hasIptables(): boolean {
  try {
    run('iptables', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** Removes namespaces, bridges and FORWARD rules named by this module whose creating process is gone. */
function removeLeftovers(): void {
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const match = namePattern.exec(line.split(' ')[0] ?? '');
    if (match && !processAlive(Number(match[1]))) runQuietly('ip', ['netns', 'del', match[0]]);
  }
  for (const line of run('ip', ['-o', 'link', 'show', 'type', 'bridge']).split('\n')) {
    const name = (line.split(': ')[1] ?? '').split('@')[0] ?? '';
    const match = bridgePattern.exec(name);
    if (match && !processAlive(Number(match[1]))) runQuietly('ip', ['link', 'del', name]);
  }
  for (const line of run('iptables', ['-w', '-S', 'FORWARD']).split('\n')) {
    const match = forwardRulePattern.exec(line.trim());
    if (match && !processAlive(Number(match[2]))) runQuietly('iptables', ['-w', '-D', 'FORWARD', '-i', match[1]!, '-o', match[1]!, '-j', 'ACCEPT']);
  }
}

/** A free 10.213.x.0/24: no address or route of this host uses it. */
function pickSubnet(): string {
  const used = run('ip', ['-4', '-o', 'addr', 'show']) + run('ip', ['-4', 'route', 'show', 'table', 'all']);
  for (let attempt = 0; attempt < 250; attempt++) {
    const third = ((process.pid + attempt) % 250) + 1;
    const prefix = `10.${subnetSecondOctet}.${third}.`;
    if (!used.includes(prefix)) return prefix;
  }
  throw new Error(`no free 10.${subnetSecondOctet}.x.0/24 subnet`);
}

export class NamespaceNetwork {
  private readonly hosts = new Map<string, string>();
  private forwardRuleAdded = false;
  private destroyed = false;

  private constructor(
    private readonly hostIds: string[],
    private readonly prefix: string,
    private readonly bridge: string,
  ) {}

  /** One namespace per id (brokers and clients alike), addresses .10, .11, ... in the order given. */
  static create(hostIds: string[]): NamespaceNetwork {
    const bad = hostIds.find((id) => !hostIdPattern.test(id));
    if (bad !== undefined) throw new Error(`host id "${bad}" is not a letter and one or two digits`);
    if (new Set(hostIds).size !== hostIds.length) throw new Error(`host ids repeat: ${hostIds.join(', ')}`);
    removeLeftovers();
    const prefix = pickSubnet();
    const network = new NamespaceNetwork(hostIds, prefix, `mchaos${process.pid}br`);
    try {
      network.build();
    } catch (error) {
      network.destroy();
      throw error;
    }
    return network;
  }

  namespaceOf(id: string): string {
    return `mchaos${process.pid}-${id}`;
  }

  hostOf(id: string): string {
    const host = this.hosts.get(id);
    if (!host) throw new Error(`no namespace address for ${id}`);
    return host;
  }

  placement(id: string): { host: string; namespace: string } {
    return { host: this.hostOf(id), namespace: this.namespaceOf(id) };
  }

  /** `command args` as run inside host `id`'s namespace (`ip netns exec` execs it in place: same pid). */
  commandIn(id: string, command: string, args: string[]): { command: string; args: string[] } {
    this.hostOf(id);
    return { command: 'ip', args: ['netns', 'exec', this.namespaceOf(id), command, ...args] };
  }

  private build(): void {
    run('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${this.prefix}1/24`, 'dev', this.bridge]);
    run('ip', ['link', 'set', this.bridge, 'up']);
    // Bridged frames pass the FORWARD chain when br_netfilter is loaded: let ours through.
    if (!run('iptables', ['-w', '-S', 'FORWARD']).includes('-P FORWARD ACCEPT')) {
      run('iptables', ['-w', '-I', 'FORWARD', '-i', this.bridge, '-o', this.bridge, '-j', 'ACCEPT']);
      this.forwardRuleAdded = true;
    }
    this.hostIds.forEach((id, index) => {
      const namespace = this.namespaceOf(id);
      const outside = `mc${process.pid % 100_000}${id}h`;
      const inside = `mc${process.pid % 100_000}${id}n`;
      const host = `${this.prefix}${index + 10}`;
      run('ip', ['netns', 'add', namespace]);
      run('ip', ['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside, 'netns', namespace]);
      run('ip', ['link', 'set', outside, 'master', this.bridge]);
      run('ip', ['link', 'set', outside, 'up']);
      run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
      run('ip', ['-n', namespace, 'addr', 'add', `${host}/24`, 'dev', inside]);
      run('ip', ['-n', namespace, 'link', 'set', inside, 'up']);
      this.hosts.set(id, host);
    });
    // A rule that changes nothing proves iptables works inside a namespace before a run relies on it.
    this.iptables(this.hostIds[0]!, ['-A', 'INPUT', '-s', `${this.prefix}254`, '-j', 'ACCEPT']);
    this.heal();
  }

  private iptables(id: string, args: string[]): void {
    run('ip', ['netns', 'exec', this.namespaceOf(id), 'iptables', '-w', ...args]);
  }

  /** Drops everything `id` sends to or receives from anyone but itself (clients included). */
  isolate(id: string): void {
    this.iptables(id, ['-A', 'INPUT', '!', '-i', 'lo', '-j', 'DROP']);
    this.iptables(id, ['-A', 'OUTPUT', '!', '-o', 'lo', '-j', 'DROP']);
  }

  /** Drops traffic between `id` and each of `others`; clients still reach every broker. */
  cutOff(id: string, others: string[]): void {
    for (const other of others) {
      this.iptables(id, ['-A', 'INPUT', '-s', this.hostOf(other), '-j', 'DROP']);
      this.iptables(id, ['-A', 'OUTPUT', '-d', this.hostOf(other), '-j', 'DROP']);
    }
  }

  /** Removes every rule in every host's namespace. */
  heal(): void {
    for (const id of this.hostIds) {
      this.iptables(id, ['-F', 'INPUT']);
      this.iptables(id, ['-F', 'OUTPUT']);
    }
  }

  /** Deletes the namespaces (their veth ends and rules go with them), the bridge and our rule. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const id of this.hostIds) runQuietly('ip', ['netns', 'del', this.namespaceOf(id)]);
    runQuietly('ip', ['link', 'del', this.bridge]);
    if (this.forwardRuleAdded) runQuietly('iptables', ['-w', '-D', 'FORWARD', '-i', this.bridge, '-o', this.bridge, '-j', 'ACCEPT']);
  }
}
