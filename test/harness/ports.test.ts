// The port reservation that test, benchmark and chaos clusters use: no port is handed out twice,
// across calls and across processes, and nothing listening is handed out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reservePorts, releasePorts } from '../../scripts/lib/ports.js';

const portsModule = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'lib', 'ports.js');

/** Reserves `count` ports in a child process and returns them; the child exits (releasing them) after printing. */
function reserveInChild(count: number, holdMs: number): Promise<number[]> {
  const script = `import { reservePorts } from ${JSON.stringify(portsModule)};
const ports = await reservePorts(${count});
process.stdout.write(JSON.stringify(ports) + '\\n');
setTimeout(() => process.exit(0), ${holdMs});`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
    });
    child.on('exit', (code) => {
      if (!out.includes('\n')) reject(new Error(`child exited ${code} without ports`));
    });
  });
}

test('one call hands out distinct ports, and later calls never repeat a port still reserved', async () => {
  const first = await reservePorts(60);
  const second = await reservePorts(60);
  try {
    assert.equal(new Set(first).size, 60);
    const all = [...first, ...second];
    assert.equal(new Set(all).size, 120, 'a port was handed out twice');
    // Below the kernel's ephemeral range: no port-0 bind or outgoing connection can take them.
    for (const port of all) assert.ok(port >= 20_000 && port < 32_768, `port ${port}`);
  } finally {
    releasePorts([...first, ...second]);
  }
});

test('processes reserving at the same time get disjoint ports', async () => {
  const children = await Promise.all(Array.from({ length: 4 }, () => reserveInChild(40, 1500)));
  const all = children.flat();
  assert.equal(all.length, 160);
  assert.equal(new Set(all).size, 160, 'two processes were given the same port');
});

test('a port something listens on is skipped', async () => {
  const [port] = await reservePorts(1);
  releasePorts([port!]);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  try {
    const next = await reservePorts(3, { firstPort: port! });
    releasePorts(next);
    assert.ok(!next.includes(port!), `port ${port} is in use and was handed out`);
  } finally {
    server.close();
  }
});

test('the claims of a process killed with -9 are taken back; those of a live one are not', async () => {
  const [start] = await reservePorts(1);
  releasePorts([start!]);
  const script = `import { reservePorts } from ${JSON.stringify(portsModule)};
process.stdout.write(JSON.stringify(await reservePorts(3, { firstPort: ${start} })) + '\\n');
setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const held = await new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
    });
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  try {
    const whileAlive = await reservePorts(3, { firstPort: start! });
    releasePorts(whileAlive);
    assert.deepEqual(
      whileAlive.filter((p) => held.includes(p)),
      [],
      "a live process's port was handed out",
    );
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
  const afterDeath = await reservePorts(3, { firstPort: start! });
  releasePorts(afterDeath);
  assert.deepEqual(afterDeath, held, "the dead process's ports were not taken back");
});
