// One broker per data directory: the lock refuses a second holder while the first runs, names
// its pid, and is taken over once the holder is gone (kill -9 leaves the file behind).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataDirLock, DataDirLockedError } from '../../src/replica/data-dir-lock.js';

const lockModule = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'replica', 'data-dir-lock.js');

test('a second lock on a held directory fails at once naming the holder; release frees it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-lock-'));
  try {
    const lock = DataDirLock.acquire(dir);
    assert.equal(readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid));
    assert.throws(
      () => DataDirLock.acquire(dir),
      (e: Error) => e instanceof DataDirLockedError && e.message.includes(`in use by process ${process.pid}`),
    );
    lock.release();
    assert.equal(existsSync(join(dir, 'LOCK')), false);
    DataDirLock.acquire(dir).release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lock held by another live process is refused; after that process is killed -9 it is taken over', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-lock-'));
  const script = `import { DataDirLock } from ${JSON.stringify(lockModule)};
DataDirLock.acquire(${JSON.stringify(dir)}); process.stdout.write('held\\n'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('held')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    assert.throws(
      () => DataDirLock.acquire(dir),
      (e: Error) => e instanceof DataDirLockedError && e.message.includes(`in use by process ${child.pid}`),
    );
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
  try {
    assert.equal(readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(child.pid), 'kill -9 leaves the lock file');
    const lock = DataDirLock.acquire(dir);
    assert.equal(readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid));
    lock.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lock file without a pid (a holder that died while writing it) is stale', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-lock-'));
  try {
    writeFileSync(join(dir, 'LOCK'), '');
    DataDirLock.acquire(dir).release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lock file naming our own pid that this process does not hold is stale (a restarted container gets the same pid)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mamba-lock-'));
  try {
    // A broker that was pid 1 in its container, killed -9, left this; the restarted one is pid 1 again.
    writeFileSync(join(dir, 'LOCK'), `${process.pid}\n`);
    const lock = DataDirLock.acquire(dir);
    assert.equal(readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid));
    // Held here now: a second open in this process is still refused.
    assert.throws(
      () => DataDirLock.acquire(dir),
      (e: Error) => e instanceof DataDirLockedError && e.message.includes(`in use by process ${process.pid}`),
    );
    lock.release();
    assert.equal(existsSync(join(dir, 'LOCK')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
