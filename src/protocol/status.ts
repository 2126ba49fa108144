// The one table from the product's error classes to gRPC status codes (and back, for clients).
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import {
  MambaError,
  NotLeaderError,
  type ErrorKind,
  InvalidArgumentError,
  NotFoundError,
  AlreadyExistsError,
  OutOfRangeError,
  ResourceExhaustedError,
  UnavailableError,
  TimeoutError,
  PermissionDeniedError,
  UnauthenticatedError,
  AbortedError,
  FailedPreconditionError,
} from '../errors.js';
import { InvariantError } from '../assert.js';

const codeOfKind: Record<ErrorKind, status> = {
  invalid_argument: status.INVALID_ARGUMENT,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  out_of_range: status.OUT_OF_RANGE,
  not_leader: status.FAILED_PRECONDITION,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  permission_denied: status.PERMISSION_DENIED,
  unauthenticated: status.UNAUTHENTICATED,
  timeout: status.DEADLINE_EXCEEDED,
  aborted: status.ABORTED,
  failed_precondition: status.FAILED_PRECONDITION,
  internal: status.INTERNAL,
};

/** Trailing metadata keys a "not leader" refusal carries. */
export const leaderIdKey = 'mamba-leader-id';
export const leaderAddressKey = 'mamba-leader-address';
/** Trailing metadata keys an OUT_OF_RANGE refusal carries: the queue's valid range. */
export const startOffsetKey = 'mamba-start-offset';
export const endOffsetKey = 'mamba-end-offset';
/**
 * Trailing metadata key of a FAILED_PRECONDITION that is not "not the leader" (FailedPreconditionError):
 * without it, FAILED_PRECONDITION means NotLeaderError, as it always has.
 */
export const failedPreconditionKey = 'mamba-failed-precondition';

export interface StatusObject {
  code: status;
  details: string;
  metadata: Metadata;
}

/**
 * Turns anything a handler threw into a gRPC status. An InvariantError is a bug: it is rethrown
 * outside the handler so the process stops rather than serve from a state it cannot trust.
 */
export function toStatus(error: unknown): StatusObject {
  const metadata = new Metadata();
  if (error instanceof InvariantError) {
    process.nextTick(() => {
      throw error;
    });
    return { code: status.INTERNAL, details: 'internal invariant failed', metadata };
  }
  if (error instanceof NotLeaderError) {
    if (error.leaderId) metadata.set(leaderIdKey, error.leaderId);
    if (error.leaderAddress) metadata.set(leaderAddressKey, error.leaderAddress);
  }
  if (error instanceof FailedPreconditionError) metadata.set(failedPreconditionKey, '1');
  if (error instanceof OutOfRangeError) {
    metadata.set(startOffsetKey, String(error.startOffset));
    metadata.set(endOffsetKey, String(error.endOffset));
  }
  if (error instanceof MambaError) return { code: codeOfKind[error.kind], details: error.message, metadata };
  return { code: status.INTERNAL, details: `internal error: ${(error as Error)?.message ?? String(error)}`, metadata };
}

/** The client side: a gRPC error back into the product's error classes. */
export function fromServiceError(error: ServiceError): MambaError {
  const details = error.details || error.message;
  switch (error.code) {
    case status.INVALID_ARGUMENT:
      return new InvalidArgumentError(details);
    case status.NOT_FOUND:
      return new NotFoundError(details);
    case status.ALREADY_EXISTS:
      return new AlreadyExistsError(details);
    case status.OUT_OF_RANGE:
      return new OutOfRangeError(details, offsetOf(error.metadata, startOffsetKey), offsetOf(error.metadata, endOffsetKey));
    case status.FAILED_PRECONDITION: {
      if ((error.metadata?.get(failedPreconditionKey).length ?? 0) > 0) return new FailedPreconditionError(details);
      const id = error.metadata?.get(leaderIdKey)[0];
      const address = error.metadata?.get(leaderAddressKey)[0];
      return new NotLeaderError(details, id ? String(id) : null, address ? String(address) : null);
    }
    case status.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(details);
    case status.PERMISSION_DENIED:
      return new PermissionDeniedError(details);
    case status.UNAUTHENTICATED:
      return new UnauthenticatedError(details);
    case status.DEADLINE_EXCEEDED:
      return new TimeoutError(details);
    case status.ABORTED:
      return new AbortedError(details);
    case status.UNAVAILABLE:
    case status.CANCELLED:
      return new UnavailableError(details);
    default:
      return new MambaError('internal', details, false);
  }
}

/** An offset from trailing metadata, -1 when absent or not a non-negative integer. */
function offsetOf(metadata: Metadata | undefined, key: string): number {
  const value = Number(metadata?.get(key)[0] ?? Number.NaN);
  return Number.isSafeInteger(value) && value >= 0 ? value : -1;
}
