// The SDK's one retrier (as kafkajs has one): every call the SDK repeats after a failure goes
// through `retry()`. The rules, in the order it applies them after a failed attempt:
//   1. The attempt bailed out (`attempt.bail(error)`): that error, at once.
//   2. The error is not retriable: it, at once. Retriable means a MambaError whose class says so
//      (src/errors.ts; src/protocol/status.ts maps every gRPC status to one): not-leader,
//      unavailable, timeout, resource-exhausted. Anything else (a bug, a refusal) is final.
//   3. `attemptsMax` attempts made: the last error.
//   4. The next backoff would end past `elapsedMsMax` since the first attempt started: the last
//      error (so a retried call never runs much beyond its time budget).
//   5. Otherwise back off — `backoffMsInitial × multiplier^retry`, capped at `backoffMsMax`, each
//      delay drawn within ±`jitter` of that (and still capped) — and try again. An aborted
//      `signal` ends the wait at once and rejects with the last error.
import { InvalidArgumentError, MambaError } from '../errors.js';

export interface RetryPolicy {
  /** Attempts in all, the first one included (retries + 1). */
  attemptsMax: number;
  /** The wait before the first retry. */
  backoffMsInitial: number;
  /** No wait is longer than this. */
  backoffMsMax: number;
  /** Each wait is this many times the one before (until backoffMsMax). */
  multiplier: number;
  /** 0..1: each wait is drawn from ±jitter around its nominal value. */
  jitter: number;
  /** No retry starts that would begin later than this after the first attempt started. */
  elapsedMsMax: number;
}

/** The named defaults: 8 attempts, waits of 50, 100, 200 … 2000 ms (±20%), at most 30 s in all. */
export const retryDefaults: Readonly<RetryPolicy> = {
  attemptsMax: 8,
  backoffMsInitial: 50,
  backoffMsMax: 2000,
  multiplier: 2,
  jitter: 0.2,
  elapsedMsMax: 30_000,
};

/** Bounds on the options (a policy beyond them is an InvalidArgumentError naming the field). */
const attemptsLimit = 1000;
const backoffMsInitialLimit = 60_000;
const backoffMsLimit = 600_000;
const multiplierLimit = 10;
const elapsedMsLimit = 86_400_000;

/** The policy for `options` over the defaults, checked; errors name `retry.<field>`. */
export function retryPolicyOf(options: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...retryDefaults, ...options };
  if (!Number.isInteger(policy.attemptsMax) || policy.attemptsMax < 1 || policy.attemptsMax > attemptsLimit)
    throw new InvalidArgumentError(`retry.attemptsMax: ${policy.attemptsMax} is out of range 1..${attemptsLimit}`);
  if (!(policy.backoffMsInitial >= 0 && policy.backoffMsInitial <= backoffMsInitialLimit))
    throw new InvalidArgumentError(`retry.backoffMsInitial: ${policy.backoffMsInitial} is out of range 0..${backoffMsInitialLimit}`);
  if (!(policy.backoffMsMax >= policy.backoffMsInitial && policy.backoffMsMax <= backoffMsLimit))
    throw new InvalidArgumentError(`retry.backoffMsMax: ${policy.backoffMsMax} must be within backoffMsInitial..${backoffMsLimit}`);
  if (!(policy.multiplier >= 1 && policy.multiplier <= multiplierLimit))
    throw new InvalidArgumentError(`retry.multiplier: ${policy.multiplier} is out of range 1..${multiplierLimit}`);
  if (!(policy.jitter >= 0 && policy.jitter <= 1)) throw new InvalidArgumentError(`retry.jitter: ${policy.jitter} is out of range 0..1`);
  if (!(policy.elapsedMsMax >= 1 && policy.elapsedMsMax <= elapsedMsLimit))
    throw new InvalidArgumentError(`retry.elapsedMsMax: ${policy.elapsedMsMax} is out of range 1..${elapsedMsLimit}`);
  return policy;
}

/** Time and chance, injectable so tests run the rules without waiting. */
export interface RetryClock {
  now(): number;
  /** Waits `ms`, or less when `signal` aborts (then resolves at once). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Uniform in [0, 1). */
  random(): number;
}

/** Waits `ms`; an abort of `signal` ends the wait early (resolves, never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export const systemClock: RetryClock = { now: () => Date.now(), sleep, random: () => Math.random() };

/** Rule 2: whether a failure may succeed when tried again (later, or elsewhere). */
export function isRetriable(error: unknown): error is MambaError {
  return error instanceof MambaError && error.retriable;
}

/**
 * Rule 5: the wait before retry number `retryIndex` (0 for the first retry). Never above
 * backoffMsMax; the exponent is bounded so a long run of retries cannot overflow to NaN.
 */
export function backoffMs(policy: RetryPolicy, retryIndex: number, random: () => number = Math.random): number {
  const nominal = Math.min(policy.backoffMsMax, policy.backoffMsInitial * policy.multiplier ** Math.min(retryIndex, 64));
  const drawn = nominal * (1 - policy.jitter + 2 * policy.jitter * random());
  return Math.round(Math.min(policy.backoffMsMax, drawn));
}

export interface RetryAttempt {
  /** 0 for the first attempt. */
  readonly index: number;
  /** Rule 1: stop retrying; the retry rejects with `error`. */
  bail(error: unknown): never;
}

export interface RetryOptions {
  clock?: RetryClock;
  /** Aborting stops the retries (see rule 5). */
  signal?: AbortSignal;
  /** Told of each failure about to be retried, before the wait (for logs and 'error' events). */
  onRetry?: (error: MambaError, attemptIndex: number, delayMs: number) => void;
}

/** What `bail` throws, so the loop can tell a bail-out from a failure. */
class BailOut {
  constructor(readonly error: unknown) {}
}

function bail(error: unknown): never {
  throw new BailOut(error);
}

/** Runs `work` until it succeeds or one of the rules above ends it. */
export async function retry<T>(policy: RetryPolicy, work: (attempt: RetryAttempt) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const clock = options.clock ?? systemClock;
  const startMs = clock.now();
  for (let index = 0; ; index++) {
    let error: unknown;
    try {
      return await work({ index, bail });
    } catch (failure) {
      if (failure instanceof BailOut) throw failure.error;
      error = failure;
    }
    if (!isRetriable(error) || index + 1 >= policy.attemptsMax) throw error;
    const delayMs = backoffMs(policy, index, () => clock.random());
    if (clock.now() - startMs + delayMs > policy.elapsedMsMax) throw error;
    options.onRetry?.(error, index, delayMs);
    await clock.sleep(delayMs, options.signal);
    if (options.signal?.aborted) throw error;
  }
}
