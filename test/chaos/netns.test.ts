// The hosts of scripts/chaos/netns.ts on their own: each host's programs see only its own address
// and reach the others over the bridge; `isolate` cuts a host off both ways and `heal` undoes it;
// `create` removes what a dead run left (namespaces, bridge, FORWARD rule) and nothing of a live
// one; `destroy` removes everything it made. Needs root and `ip netns` (skipped otherwise).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { NamespaceNetwork, partitionUnavailableReason } from '../../scripts/chaos/netns.js';
import { waitFor } from '../../scripts/lib/cluster.js';

const unavailable = partitionUnavailableReason((text) => process.stderr.write(`${text}\n`));
const port = 7000;

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

function quietly(command: string, args: string[]): void {
  spawnSync(command, args, { stdio: 'ignore', timeout: 10_000 });
}

/** The pid of a process that has exited (a dead run's). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', ''], { stdio: 'ignore' });
  assert.ok(child.pid && child.status === 0);
  return child.pid;
}

/** Whether a TCP connection from host `from` to `address` opens within 1 s. */
function connects(network: NamespaceNetwork, from: string, address: string): boolean {
  const script = `const s = require('net').connect({ host: '${address}', port: ${port}, timeout: 1000 });
    s.on('connect', () => process.exit(0)); s.on('error', () => process.exit(1)); s.on('timeout', () => process.exit(2));`;
  const { command, args } = network.commandIn(from, process.execPath, ['-e', script]);
  return spawnSync(command, args, { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

describe('hosts in network namespaces', { skip: unavailable ? `needs root and \`ip netns\`: ${unavailable}` : false }, () => {
  const dead = deadPid();
  const live = `mchaos${process.pid}-z9`;
  let network: NamespaceNetwork | null = null;
  let server: ChildProcess | null = null;

  after(() => {
    server?.kill('SIGKILL');
    network?.destroy();
    quietly('ip', ['netns', 'del', live]);
    quietly('ip', ['netns', 'del', `mchaos${dead}-b1`]);
    quietly('ip', ['link', 'del', `mchaos${dead}br`]);
    quietly('iptables', ['-w', '-D', 'FORWARD', '-i', `mchaos${dead}br`, '-o', `mchaos${dead}br`, '-j', 'ACCEPT']);
  });

  it("removes a dead run's namespaces, bridge and FORWARD rule, and leaves a live run's namespace alone", () => {
    run('ip', ['netns', 'add', `mchaos${dead}-b1`]);
    run('ip', ['link', 'add', `mchaos${dead}br`, 'type', 'bridge']);
    run('iptables', ['-w', '-I', 'FORWARD', '-i', `mchaos${dead}br`, '-o', `mchaos${dead}br`, '-j', 'ACCEPT']);
    run('ip', ['netns', 'add', live]);
    network = NamespaceNetwork.create(['b1', 'b2', 'c1']);
    const namespaces = run('ip', ['netns', 'list']);
    assert.doesNotMatch(namespaces, new RegExp(`mchaos${dead}-`));
    assert.match(namespaces, new RegExp(`${live}\\b`));
    assert.doesNotMatch(run('ip', ['-o', 'link', 'show', 'type', 'bridge']), new RegExp(`mchaos${dead}br`));
    assert.doesNotMatch(run('iptables', ['-w', '-S', 'FORWARD']), new RegExp(`mchaos${dead}br`));
    for (const id of ['b1', 'b2', 'c1']) assert.match(namespaces, new RegExp(`${network.namespaceOf(id)}\\b`));
  });

  it('gives each host its own address, reached over the bridge; isolate cuts a host off both ways and heal undoes it', async () => {
    const hosts = network!;
    const addresses = ['b1', 'b2', 'c1'].map((id) => hosts.hostOf(id));
    assert.equal(new Set(addresses).size, 3);
    const { command, args } = hosts.commandIn('c1', 'ip', ['-4', '-o', 'addr', 'show']);
    const seen = run(command, args);
    assert.match(seen, new RegExp(`inet ${hosts.hostOf('c1').replaceAll('.', '\\.')}/24`));
    for (const other of ['b1', 'b2']) assert.ok(!seen.includes(`inet ${hosts.hostOf(other)}/`), `c1 holds ${other}'s address`);

    const listen = hosts.commandIn('b1', process.execPath, [
      '-e',
      `require('net').createServer((s) => s.end()).listen(${port}, '${hosts.hostOf('b1')}', () => console.log('listening'))`,
    ]);
    server = spawn(listen.command, listen.args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let listening = false;
    createInterface({ input: server.stdout! }).on('line', (line) => {
      listening ||= line === 'listening';
    });
    await waitFor('the server in b1 to listen', 10_000, () => (listening ? true : undefined));

    assert.ok(connects(hosts, 'c1', hosts.hostOf('b1')), 'c1 reaches b1');
    assert.ok(connects(hosts, 'b2', hosts.hostOf('b1')), 'b2 reaches b1');
    hosts.isolate('b1');
    assert.ok(!connects(hosts, 'c1', hosts.hostOf('b1')), 'c1 still reaches b1 once b1 is isolated');
    assert.ok(!connects(hosts, 'b2', hosts.hostOf('b1')), 'b2 still reaches b1 once b1 is isolated');
    hosts.heal();
    assert.ok(connects(hosts, 'c1', hosts.hostOf('b1')), 'c1 does not reach b1 after the heal');
    server.kill('SIGKILL');
  });

  it('destroy removes its namespaces and bridge', () => {
    const hosts = network!;
    const names = ['b1', 'b2', 'c1'].map((id) => hosts.namespaceOf(id));
    hosts.destroy();
    const namespaces = run('ip', ['netns', 'list']);
    for (const name of names) assert.doesNotMatch(namespaces, new RegExp(`${name}\\b`));
    assert.doesNotMatch(run('ip', ['-o', 'link', 'show', 'type', 'bridge']), new RegExp(`mchaos${process.pid}br`));
  });
});
