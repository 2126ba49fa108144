// Crash test: a child appends in sync mode and reports durable offsets; it is killed with
// SIGKILL at a random moment; every offset it reported durable must be there, byte for byte.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stampBatch } from '../../src/log/index.js';
import { makeBatch, openLog, readAll, temporaryDirectory } from './helpers.js';

const childPath = fileURLToPath(new URL('./crash-child.js', import.meta.url));

/** Runs the child until `killAfterMs` after it is ready, kills it, returns the highest durable offset seen. */
function runAndKill(dir: string, killAfterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childPath, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let durableOffset = 0;
    let pending = '';
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        const match = /^durable (\d+)$/.exec(line);
        if (match !== null) durableOffset = Math.max(durableOffset, Number(match[1]));
      }
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') reject(new Error(`child ended without being killed (${signal})`));
      else resolve(durableOffset);
    });
  });
}

describe('crash (kill -9) in sync mode', () => {
  it('keeps every offset reported durable with its exact bytes', async () => {
    for (let round = 0; round < 4; round++) {
      const { dir, remove } = temporaryDirectory('crash');
      try {
        const durableOffset = await runAndKill(dir, 150 + Math.floor(Math.random() * 600));
        assert.ok(durableOffset > 0, 'the child made progress before the kill');
        const log = await openLog(dir, { segmentBytes: 64 * 1024, indexIntervalBytes: 1024 });
        assert.ok(log.endOffset >= durableOffset, `end ${log.endOffset} below reported durable ${durableOffset}`);
        const stored = readAll(log);
        // Rebuild what the child wrote, batch by batch, and compare byte for byte.
        let offset = 0;
        stored.forEach((bytes, index) => {
          const expected = makeBatch(index, 1 + (index % 4), 100 + (index % 7) * 150);
          stampBatch(expected, offset, 1 + Math.floor(index / 50));
          assert.ok(bytes.equals(expected), `batch ${index} at offset ${offset} differs`);
          offset += 1 + (index % 4);
        });
        assert.equal(offset, log.endOffset);
        await log.close();
      } finally {
        remove();
      }
    }
  });
});
