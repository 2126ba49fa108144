// The leader's load sample (src/broker/load.ts), the input of the read advice: each test names
// the rule it checks. Time and CPU counters are mocked, so the CPU share is exact and no test sleeps.
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { LoadMonitor } from '../../src/broker/load.js';

describe('load: requests in flight', () => {
  test('track counts a request while its work runs and uncounts it when the work resolves', async () => {
    const monitor = new LoadMonitor();
    try {
      let finish!: (value: string) => void;
      const first = monitor.track(
        () =>
          new Promise<string>((resolve) => {
            finish = resolve;
          }),
      );
      const second = monitor.track(() => new Promise<void>(() => {}));
      assert.equal(monitor.sample().inflightRequests, 2);
      finish('done');
      assert.equal(await first, 'done', 'track returns what the work returned');
      assert.equal(monitor.sample().inflightRequests, 1);
      void second;
    } finally {
      monitor.close();
    }
  });

  test('track uncounts a request whose work fails, and passes the error on', async () => {
    const monitor = new LoadMonitor();
    try {
      const failure = new Error('refused');
      await assert.rejects(
        monitor.track(() => Promise.reject(failure)),
        (e: unknown) => e === failure,
      );
      await assert.rejects(
        monitor.track(async () => {
          throw failure;
        }),
        (e: unknown) => e === failure,
      );
      assert.equal(monitor.sample().inflightRequests, 0);
    } finally {
      monitor.close();
    }
  });

  test('a new monitor reports no load: nothing in flight, CPU share 0 before the first sample', () => {
    const monitor = new LoadMonitor();
    try {
      assert.deepEqual(monitor.sample(), { inflightRequests: 0, cpuShare: 0 });
    } finally {
      monitor.close();
    }
  });
});

describe('load: CPU share over the last sample window', () => {
  let cpuUs = { user: 0, system: 0 };
  let nowNs = 0n;

  beforeEach(() => {
    cpuUs = { user: 0, system: 0 };
    nowNs = 1_000_000_000n;
    mock.method(process, 'cpuUsage', () => ({ ...cpuUs }));
    mock.method(process.hrtime, 'bigint', () => nowNs);
    mock.timers.enable({ apis: ['setInterval'] });
  });

  afterEach(() => {
    mock.timers.reset();
    mock.restoreAll();
  });

  /** Advances the mocked clock and CPU counters by one window and fires the sampling timer. */
  function window(monitor: LoadMonitor, elapsedMs: number, userUs: number, systemUs: number): number {
    nowNs += BigInt(elapsedMs) * 1_000_000n;
    cpuUs = { user: cpuUs.user + userUs, system: cpuUs.system + systemUs };
    mock.timers.tick(1000);
    return monitor.sample().cpuShare;
  }

  const table: Array<{ rule: string; elapsedMs: number; userUs: number; systemUs: number; share: number }> = [
    { rule: 'an idle process has share 0', elapsedMs: 1000, userUs: 0, systemUs: 0, share: 0 },
    { rule: 'half a core of user time is 0.5', elapsedMs: 1000, userUs: 500_000, systemUs: 0, share: 0.5 },
    { rule: 'user and system time both count', elapsedMs: 1000, userUs: 300_000, systemUs: 200_000, share: 0.5 },
    { rule: 'two busy threads make a share above 1 (1.0 = one core)', elapsedMs: 1000, userUs: 2_000_000, systemUs: 0, share: 2 },
    { rule: 'the share is over the real elapsed time, not the nominal interval', elapsedMs: 2000, userUs: 1_000_000, systemUs: 0, share: 0.5 },
  ];
  for (const { rule, elapsedMs, userUs, systemUs, share } of table) {
    test(rule, () => {
      const monitor = new LoadMonitor();
      try {
        assert.equal(window(monitor, elapsedMs, userUs, systemUs), share);
      } finally {
        monitor.close();
      }
    });
  }

  test('each window counts only the CPU used since the previous sample', () => {
    const monitor = new LoadMonitor();
    try {
      assert.equal(window(monitor, 1000, 900_000, 0), 0.9);
      assert.equal(window(monitor, 1000, 100_000, 0), 0.1);
      assert.equal(window(monitor, 1000, 0, 0), 0);
    } finally {
      monitor.close();
    }
  });

  test('a window of no elapsed time reports 0 instead of dividing by zero', () => {
    const monitor = new LoadMonitor();
    try {
      assert.equal(window(monitor, 0, 500_000, 0), 0);
    } finally {
      monitor.close();
    }
  });

  test('close stops sampling: the share stays at its last value', () => {
    const monitor = new LoadMonitor();
    assert.equal(window(monitor, 1000, 400_000, 0), 0.4);
    monitor.close();
    assert.equal(window(monitor, 1000, 1_000_000, 0), 0.4);
  });
});
