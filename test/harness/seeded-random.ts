// The seeded generator of the fuzz and randomized tests (xorshift32): the same seed gives the same
// run, so a failure's printed seed replays it (MAMBA_FUZZ_SEED). The simulator has its own
// (test/sim/prng.ts), whose sequences its seed tables depend on.

/** Uniform numbers in [0, 1) from `seed` (0 is taken as 1). */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}
