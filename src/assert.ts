// Invariant checks shared by every layer (a leaf module: imports nothing of ours).
// A failed assertion is a bug, never an operating error: it throws InvariantError, which no
// code catches, so the process stops instead of going on with corrupt state.

export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
