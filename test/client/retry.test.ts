// The SDK's retrier (src/client/retry.ts) on a fake clock: each test names the rule of the header
// it checks. Nothing here waits for real time.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs, isRetriable, retry, retryDefaults, retryPolicyOf, sleep, type RetryClock, type RetryPolicy } from '../../src/client/retry.js';
import { InvalidArgumentError, NotLeaderError, PermissionDeniedError, ResourceExhaustedError, TimeoutError, UnavailableError } from '../../src/errors.js';

/** Faster defaults for tests: the same shape, small waits (the fake clock makes them free anyway). */
const fast: RetryPolicy = { attemptsMax: 5, backoffMsInitial: 10, backoffMsMax: 80, multiplier: 2, jitter: 0, elapsedMsMax: 10_000 };

/** A clock whose sleep only moves time forward, recording each wait. */
class FakeClock implements RetryClock {
  nowMs = 1_000_000;
  readonly waits: number[] = [];
  constructor(private readonly draw: () => number = () => 0.5) {}
  now(): number {
    return this.nowMs;
  }
  async sleep(ms: number): Promise<void> {
    this.waits.push(ms);
    this.nowMs += ms;
  }
  random(): number {
    return this.draw();
  }
}

/** Work that fails with `errors` in turn, then answers `value`; counts its attempts. */
function scripted<T>(errors: Error[], value: T): { work: () => Promise<T>; attempts: () => number } {
  let attempts = 0;
  return {
    work: async () => {
      const error = errors[attempts++];
      if (error) throw error;
      return value;
    },
    attempts: () => attempts,
  };
}

describe('retry', () => {
  test('rule 2: retriable errors (not leader, unavailable, timeout, resource exhausted) are retried until success', async () => {
    const clock = new FakeClock();
    const errors = [new NotLeaderError('moved', 'b2', null), new UnavailableError('down'), new TimeoutError('slow'), new ResourceExhaustedError('full')];
    const { work, attempts } = scripted(errors, 'ok');
    assert.equal(await retry(fast, work, { clock }), 'ok');
    assert.equal(attempts(), 5);
    assert.equal(clock.waits.length, 4);
  });

  test('rule 2: an error that is not retriable ends the retries at once, unchanged', async () => {
    for (const error of [new InvalidArgumentError('bad'), new PermissionDeniedError('no'), new TypeError('a bug')]) {
      const clock = new FakeClock();
      const { work, attempts } = scripted([error], 'never');
      await assert.rejects(retry(fast, work, { clock }), (thrown) => thrown === error);
      assert.equal(attempts(), 1, error.message);
      assert.deepEqual(clock.waits, []);
    }
  });

  test('rule 2: isRetriable follows the error class flag only', () => {
    assert.equal(isRetriable(new UnavailableError('x')), true);
    assert.equal(isRetriable(new InvalidArgumentError('x')), false);
    assert.equal(isRetriable(new Error('x')), false);
    assert.equal(isRetriable('unavailable'), false);
  });

  test('rule 1: bail ends the retries at once with the error given', async () => {
    const clock = new FakeClock();
    const reason = new Error('closing');
    let attempts = 0;
    await assert.rejects(
      retry(
        fast,
        async (attempt) => {
          attempts++;
          if (attempt.index === 2) attempt.bail(reason);
          throw new UnavailableError('down');
        },
        { clock },
      ),
      (thrown) => thrown === reason,
    );
    assert.equal(attempts, 3);
    assert.equal(clock.waits.length, 2, 'no wait after the bail');
  });

  test('rule 3: after attemptsMax attempts the last error is thrown', async () => {
    const clock = new FakeClock();
    const errors = Array.from({ length: 10 }, (_, i) => new UnavailableError(`down ${i}`));
    const { work, attempts } = scripted(errors, 'never');
    await assert.rejects(retry(fast, work, { clock }), (thrown) => thrown === errors[4]);
    assert.equal(attempts(), fast.attemptsMax);
    assert.equal(clock.waits.length, fast.attemptsMax - 1);
  });

  test('rule 3: attemptsMax 1 means one attempt and no wait', async () => {
    const clock = new FakeClock();
    const { work, attempts } = scripted([new UnavailableError('down')], 'never');
    await assert.rejects(retry({ ...fast, attemptsMax: 1 }, work, { clock }), UnavailableError);
    assert.equal(attempts(), 1);
    assert.deepEqual(clock.waits, []);
  });

  test('rule 4: no retry starts past elapsedMsMax; the time the attempts take counts', async () => {
    const clock = new FakeClock();
    let attempts = 0;
    const policy = { ...fast, attemptsMax: 1000, backoffMsMax: 10, elapsedMsMax: 100 };
    await assert.rejects(
      retry(
        policy,
        async () => {
          attempts++;
          clock.nowMs += 25; // each attempt takes 25 ms
          throw new UnavailableError('down');
        },
        { clock },
      ),
      UnavailableError,
    );
    // 25 + 10 = 35 per round: a wait that would end past 100 ms does not start.
    assert.equal(attempts, 3);
    assert.ok(clock.nowMs - 1_000_000 <= policy.elapsedMsMax);
  });

  test('rule 5: the waits grow by the multiplier and are capped at backoffMsMax', async () => {
    const clock = new FakeClock();
    const errors = Array.from({ length: 7 }, () => new UnavailableError('down'));
    const { work } = scripted(errors, 'ok');
    await retry({ ...fast, attemptsMax: 8 }, work, { clock });
    assert.deepEqual(clock.waits, [10, 20, 40, 80, 80, 80, 80]);
  });

  test('rule 5: jitter keeps every wait within ±jitter of its nominal value, and under the cap', () => {
    const policy: RetryPolicy = { ...fast, backoffMsInitial: 100, backoffMsMax: 1000, jitter: 0.2 };
    for (const draw of [0, 0.25, 0.5, 0.999999]) {
      for (let retryIndex = 0; retryIndex < 8; retryIndex++) {
        const nominal = Math.min(1000, 100 * 2 ** retryIndex);
        const wait = backoffMs(policy, retryIndex, () => draw);
        assert.ok(wait >= Math.floor(nominal * 0.8) && wait <= Math.ceil(nominal * 1.2), `retry ${retryIndex}, draw ${draw}: ${wait}`);
        assert.ok(wait <= policy.backoffMsMax, `retry ${retryIndex}: ${wait} above the cap`);
      }
    }
    assert.equal(
      backoffMs(policy, 0, () => 0),
      80,
      'the lowest draw is nominal × (1 - jitter)',
    );
    assert.equal(
      backoffMs(policy, 0, () => 0.5),
      100,
      'the middle draw is nominal',
    );
  });

  test('rule 5: a long run of retries neither overflows nor turns NaN', () => {
    assert.equal(backoffMs({ ...fast, backoffMsInitial: 0 }, 10_000), 0);
    assert.equal(
      backoffMs({ ...fast, multiplier: 10 }, 10_000, () => 0.5),
      fast.backoffMsMax,
    );
  });

  test('rule 5: onRetry hears each failure about to be retried, with its wait', async () => {
    const clock = new FakeClock();
    const heard: Array<[string, number, number]> = [];
    const { work } = scripted([new UnavailableError('a'), new TimeoutError('b')], 'ok');
    await retry(fast, work, { clock, onRetry: (error, index, delayMs) => heard.push([error.message, index, delayMs]) });
    assert.deepEqual(heard, [
      ['a', 0, 10],
      ['b', 1, 20],
    ]);
  });

  test('rule 5: an aborted signal ends a wait at once and rejects with the last error', async () => {
    const controller = new AbortController();
    const error = new UnavailableError('down');
    const startMs = Date.now();
    const pending = retry({ ...fast, backoffMsInitial: 60_000, backoffMsMax: 60_000, elapsedMsMax: 600_000 }, async () => Promise.reject(error), {
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(pending, (thrown) => thrown === error);
    assert.ok(Date.now() - startMs < 5000, 'the minute-long wait was cut short');
  });

  test('sleep resolves early on abort, and at once when already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const startMs = Date.now();
    await sleep(60_000, controller.signal);
    assert.ok(Date.now() - startMs < 1000);
  });
});

describe('retry policy', () => {
  test('the named defaults', () => {
    assert.deepEqual(retryDefaults, { attemptsMax: 8, backoffMsInitial: 50, backoffMsMax: 2000, multiplier: 2, jitter: 0.2, elapsedMsMax: 30_000 });
    assert.deepEqual(retryPolicyOf(), retryDefaults);
    assert.deepEqual(retryPolicyOf({ attemptsMax: 3 }), { ...retryDefaults, attemptsMax: 3 });
  });

  test('options out of range are refused, naming the field', () => {
    const cases: Array<[Partial<RetryPolicy>, RegExp]> = [
      [{ attemptsMax: 0 }, /^retry\.attemptsMax: 0 is out of range/],
      [{ attemptsMax: 1.5 }, /^retry\.attemptsMax/],
      [{ backoffMsInitial: -1 }, /^retry\.backoffMsInitial/],
      [{ backoffMsInitial: 100, backoffMsMax: 50 }, /^retry\.backoffMsMax: 50 must be within backoffMsInitial/],
      [{ multiplier: 0.5 }, /^retry\.multiplier/],
      [{ jitter: 2 }, /^retry\.jitter: 2 is out of range/],
      [{ elapsedMsMax: 0 }, /^retry\.elapsedMsMax/],
    ];
    for (const [options, pattern] of cases) {
      assert.throws(
        () => retryPolicyOf(options),
        (error: Error) => error instanceof InvalidArgumentError && pattern.test(error.message),
        String(pattern),
      );
    }
  });
});
