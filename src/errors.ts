// The product's error classes (a leaf module, like assert.ts: every layer may throw these).
// Each class names its kind and whether a client may retry; src/protocol/status.ts maps the kinds to
// gRPC status codes in one table, and the SDK maps them back.

export type ErrorKind =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'out_of_range'
  | 'not_leader'
  | 'resource_exhausted'
  | 'unavailable'
  | 'permission_denied'
  | 'unauthenticated'
  | 'timeout'
  | 'aborted'
  | 'failed_precondition'
  | 'internal';

export class MambaError extends Error {
  override readonly name: string = 'MambaError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** True when the same request may succeed later or elsewhere. */
    readonly retriable: boolean,
  ) {
    super(message);
  }
}

export class InvalidArgumentError extends MambaError {
  override readonly name = 'InvalidArgumentError';
  constructor(message: string) {
    super('invalid_argument', message, false);
  }
}

/**
 * An idempotent producer the broker does not know sent a batch that does not start a new
 * producer (sequence 0): it expired from the broker's producer table (the least recently active
 * go first) or the batches it had stored were lost, so whether this batch is stored already
 * cannot be told. Not retriable as it is: the producer starts over under a new producer id at
 * sequence 0. INVALID_ARGUMENT on the wire (FAILED_PRECONDITION means "not the leader" there).
 */
export class ProducerExpiredError extends MambaError {
  override readonly name = 'ProducerExpiredError';
  constructor(
    message: string,
    readonly producerId: number,
  ) {
    super('invalid_argument', message, false);
  }
}

export class NotFoundError extends MambaError {
  override readonly name = 'NotFoundError';
  constructor(message: string) {
    super('not_found', message, false);
  }
}

export class AlreadyExistsError extends MambaError {
  override readonly name = 'AlreadyExistsError';
  constructor(message: string) {
    super('already_exists', message, false);
  }
}

export class OutOfRangeError extends MambaError {
  override readonly name = 'OutOfRangeError';
  constructor(
    message: string,
    readonly startOffset: number,
    readonly endOffset: number,
  ) {
    super('out_of_range', message, false);
  }
}

/** This broker is not the group's leader; `leaderAddress` is the client address of the one it knows. */
export class NotLeaderError extends MambaError {
  override readonly name = 'NotLeaderError';
  constructor(
    message: string,
    readonly leaderId: string | null,
    readonly leaderAddress: string | null,
  ) {
    super('not_leader', message, true);
  }
}

export class ResourceExhaustedError extends MambaError {
  override readonly name = 'ResourceExhaustedError';
  constructor(message: string) {
    super('resource_exhausted', message, true);
  }
}

export class UnavailableError extends MambaError {
  override readonly name = 'UnavailableError';
  constructor(message: string) {
    super('unavailable', message, true);
  }
}

export class TimeoutError extends MambaError {
  override readonly name = 'TimeoutError';
  constructor(message: string) {
    super('timeout', message, true);
  }
}

export class PermissionDeniedError extends MambaError {
  override readonly name = 'PermissionDeniedError';
  constructor(message: string) {
    super('permission_denied', message, false);
  }
}

/** The call carried no valid access key signature (missing, unknown, wrong, stale or replayed). */
export class UnauthenticatedError extends MambaError {
  override readonly name = 'UnauthenticatedError';
  constructor(message: string) {
    super('unauthenticated', message, false);
  }
}

/**
 * The operation met a conflicting one in progress (a leadership transfer, an uncommitted
 * membership change) or an attempt that ended without effect: nothing was changed; retry shortly.
 */
export class AbortedError extends MambaError {
  override readonly name = 'AbortedError';
  constructor(message: string) {
    super('aborted', message, true);
  }
}

/**
 * The cluster is not in a state that allows the operation (e.g. removing a voter would leave fewer
 * than three, the transfer target is behind or down); the message says what to change (or --force).
 * FAILED_PRECONDITION on the wire with the failedPreconditionKey metadata, which tells it apart from
 * a "not the leader" refusal (the same code without that key).
 */
export class FailedPreconditionError extends MambaError {
  override readonly name = 'FailedPreconditionError';
  constructor(message: string) {
    super('failed_precondition', message, false);
  }
}
