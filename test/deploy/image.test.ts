// The container image (Dockerfile, .dockerignore). No Docker engine runs here, so the image is
// never built in this test: it checks what can be checked without one. The build stage has the
// native addon's tools and runs `make build`; everything it copies from the context exists and
// passes .dockerignore; the runtime stage runs as a numeric non-root user, copies what the broker
// needs from paths the build produces, exposes the ports and keeps data in a volume. Then the
// image's own command line (ENTRYPOINT + CMD, the id from MAMBA_BROKER_ID) starts a broker from
// this checkout's files laid out as in the image, its HEALTHCHECK command passes while it runs,
// SIGTERM (docker stop) ends it with exit code 0, and the HEALTHCHECK fails once it is gone.
// The example cluster file for containers (deploy/docker/cluster.yaml) fits the image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contextAdmits, copyOf, execForm, readDockerfile, repoRoot, type Stage } from './dockerfile.js';
import { releasePorts, reservePorts, waitFor } from '../../scripts/lib/cluster.js';
import { parseClusterConfig } from '../../src/config/cluster.js';

const stages = readDockerfile();
const ignoreText = readFileSync(join(repoRoot, '.dockerignore'), 'utf8');

function stage(name: string): Stage {
  const found = stages.find((s) => s.name === name);
  assert.ok(found, `a stage named ${name} (stages: ${stages.map((s) => s.name).join(', ')})`);
  return found;
}

function args(s: Stage, keyword: string): string[] {
  return s.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
}

test('build stage: python3, make and g++ for the addon, `make build`, then only production dependencies', () => {
  const build = stage('build');
  assert.match(build.from, /node:20/, 'Node 20, as package.json engines');
  const runs = args(build, 'RUN').join('\n');
  for (const tool of ['python3', 'make', 'g++'])
    assert.match(runs, new RegExp(`apt-get install[^\\n]*\\s${tool.replace('+', '\\+')}(\\s|$)`), `installs ${tool}`);
  assert.match(runs, /npm ci\b/);
  assert.match(runs, /\bmake build\b/);
  assert.match(runs, /npm prune --omit=dev\b/, 'the node_modules the runtime copies are production only');
});

test('every file COPY takes from the build context exists and passes .dockerignore; nothing else does', () => {
  const fromContext = stages.flatMap((s) => s.instructions.filter((i) => i.keyword === 'COPY').map(copyOf)).filter((c) => c.from === null);
  assert.ok(fromContext.length > 0);
  for (const { sources } of fromContext)
    for (const source of sources) {
      assert.ok(existsSync(join(repoRoot, source)), `${source} exists`);
      assert.ok(contextAdmits(ignoreText, source), `.dockerignore admits ${source}`);
      if (source === 'src') assert.ok(contextAdmits(ignoreText, 'src/cli/main.ts'), '.dockerignore admits files under src/');
    }
  for (const kept of ['node_modules', 'dist', 'build/Release/mamba_native.node', 'data', 'test', '.git', 'deploy'])
    assert.equal(contextAdmits(ignoreText, kept), false, `.dockerignore keeps ${kept} out of the context`);
});

test('runtime stage: numeric non-root user, what the broker needs from the build, ports, volume, health check', () => {
  const runtime = stages[stages.length - 1]!;
  assert.equal(runtime.name, 'runtime', 'the last stage is the image');
  const [user] = args(runtime, 'USER');
  assert.match(user ?? '', /^[1-9][0-9]*:[1-9][0-9]*$/, 'USER uid:gid, numeric (runAsNonRoot can check it) and not root');
  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map(copyOf);
  assert.ok(
    copies.every((c) => c.from === 'build'),
    'the runtime copies from the build stage only',
  );
  const copied = copies.flatMap((c) => c.sources.map((s) => s.replace(/^\/src\//, '')));
  assert.deepEqual([...copied].sort(), ['build/Release/mamba_native.node', 'dist/src', 'node_modules', 'package.json', 'proto']);
  // The build stage produces these at the same paths as `make build` does here.
  for (const path of ['dist/src/cli/main.js', 'build/Release/mamba_native.node', 'proto/mamba.proto', 'package.json'])
    assert.ok(existsSync(join(repoRoot, path)), `${path} is built`);
  assert.deepEqual(args(runtime, 'EXPOSE').join(' ').split(/\s+/), ['7101', '7201', '7301']);
  assert.deepEqual(execForm(args(runtime, 'VOLUME')[0] ?? ''), ['/var/lib/mamba']);
  assert.deepEqual(execForm(args(runtime, 'ENTRYPOINT')[0] ?? ''), ['node', 'dist/src/cli/main.js']);
  assert.deepEqual(execForm(args(runtime, 'CMD')[0] ?? ''), ['broker', '--cluster', '/etc/mamba/cluster.yaml']);
  const health = args(runtime, 'HEALTHCHECK')[0] ?? '';
  assert.match(health, /\/healthz/);
});

test("deploy/docker/cluster.yaml parses with the broker's loader and uses the image's ports, volume and health check port", () => {
  const runtime = stages[stages.length - 1]!;
  const cluster = parseClusterConfig(readFileSync(join(repoRoot, 'deploy', 'docker', 'cluster.yaml'), 'utf8'), 'deploy/docker/cluster.yaml', '/');
  const exposed = args(runtime, 'EXPOSE').join(' ').split(/\s+/).map(Number);
  const brokers = cluster.groups.flatMap((g) => g.brokers);
  assert.equal(brokers.length, 3);
  for (const b of brokers) {
    assert.deepEqual([b.clientPort, b.peerPort, b.metricsPort], exposed, `${b.id} uses the exposed ports`);
    assert.equal(b.metricsPort, Number(imageEnv().MAMBA_METRICS_PORT), `${b.id}: the HEALTHCHECK asks its metrics port`);
    assert.equal(b.listenHost, '0.0.0.0', `${b.id} binds all addresses (the HEALTHCHECK asks 127.0.0.1)`);
    assert.equal(b.host, `mamba-${b.id}`, `${b.id} is dialled at its container's name`);
    assert.equal(b.dataDir, `/var/lib/mamba/${b.id}`, `${b.id} keeps its data in the volume`);
  }
});

/** The image's environment (ENV lines of the runtime stage). */
function imageEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of args(stages[stages.length - 1]!, 'ENV'))
    for (const match of line.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[match[1]!] = match[2]!.replace(/^"(.*)"$/, '$1');
  return env;
}

/** Runs the HEALTHCHECK command (exec form, `node` replaced by this Node); its exit code. */
function healthCheck(env: Record<string, string>): number | null {
  const command = execForm(args(stages[stages.length - 1]!, 'HEALTHCHECK')[0]!.replace(/^.*?CMD\s+/, ''));
  assert.ok(command && command[0] === 'node', `HEALTHCHECK CMD is an exec-form node command: ${command}`);
  return spawnSync(process.execPath, command.slice(1), { env: { ...process.env, ...env }, cwd: repoRoot, timeout: 10_000 }).status;
}

test("the image's command starts a broker (id from MAMBA_BROKER_ID); HEALTHCHECK passes; SIGTERM stops it with 0", { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-image-'));
  const ports = await reservePorts(3);
  const [clientPort, peerPort, metricsPort] = ports as [number, number, number];
  let child: ChildProcess | null = null;
  try {
    // A one-broker group, as a cluster file mounted at /etc/mamba/cluster.yaml would give it.
    const clusterFile = join(dir, 'cluster.yaml');
    writeFileSync(
      clusterFile,
      `cluster: image\ndataDir: ${join(dir, 'data')}\nlistenHost: 127.0.0.1\ngroups:\n  - id: g1\n    brokers:\n` +
        `      - { id: b1, host: localhost, clientPort: ${clientPort}, peerPort: ${peerPort}, metricsPort: ${metricsPort} }\n`,
    );
    const runtime = stages[stages.length - 1]!;
    const command = [...execForm(args(runtime, 'ENTRYPOINT')[0]!)!, ...execForm(args(runtime, 'CMD')[0]!)!].map((a) =>
      a === '/etc/mamba/cluster.yaml' ? clusterFile : a,
    );
    const env = { ...imageEnv(), MAMBA_METRICS_PORT: String(metricsPort) };
    assert.equal(command[0], 'node');
    const output: string[] = [];
    // A new group's directory is formatted before its first start (README, Deploy).
    const format = spawnSync(process.execPath, [command[1]!, '--cluster', clusterFile, 'storage', 'format', '--broker', 'b1'], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    assert.equal(format.status, 0, format.stderr);
    child = spawn(process.execPath, command.slice(1), {
      cwd: repoRoot,
      env: { ...process.env, ...env, MAMBA_BROKER_ID: 'b1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const running = child;
    await waitFor('the HEALTHCHECK command to pass', 30_000, () => {
      assert.equal(running.exitCode, null, `the broker exited: ${output.join('')}`);
      return healthCheck(env) === 0 ? true : undefined;
    });
    // A one-broker group elects itself: ready.
    await waitFor('/readyz 200', 20_000, async () => {
      const response = await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { signal: AbortSignal.timeout(1000) }).catch(() => null);
      return response?.status === 200 ? true : undefined;
    });
    await waitFor('the broker.started log line', 10_000, () => (/"event":"broker\.started"/.test(output.join('')) ? true : undefined));
    assert.match(output.join(''), /"event":"broker\.started"[^\n]*"broker":"b1"/, 'the id came from MAMBA_BROKER_ID');

    const exited = new Promise<number | null>((resolve) => running.once('exit', (code) => resolve(code)));
    running.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 15_000))]);
    assert.equal(code, 0, `SIGTERM stops the broker cleanly: ${output.join('').slice(-2000)}`);
    assert.match(output.join(''), /"event":"broker\.stopped"/);
    assert.notEqual(healthCheck(env), 0, 'the HEALTHCHECK fails once nothing answers');
    child = null;
  } finally {
    child?.kill('SIGKILL');
    releasePorts(ports);
    rmSync(dir, { recursive: true, force: true });
  }
});
