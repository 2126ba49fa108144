// Whether a failed produce request may have stored its batch: the one rule the producer follows
// to decide whether a batch may leave its queue (producer-lane.ts, rule 4). A batch some attempt
// may have stored stays in its queue under its producer id and sequence, where the broker answers
// a resent copy with the offsets it already has; sent to another queue, it could be stored twice.
// "May be stored" is the safe side: whatever the client cannot rule out counts as stored.
import { MambaError, type ErrorKind } from '../errors.js';
import type { Ack } from '../protocol/messages.js';
import type { RequestProgress } from './produce-stream.js';

/**
 * What a broker's answer of each kind to a produce request says about its batch, from the
 * broker's produce path (src/broker/produce.ts, src/replica/replica.ts, src/rpc/produce-stream.ts):
 * false when every refusal of that kind comes before the batch is appended, true when some come
 * after. Only an answer to that very request counts: a stream that breaks fails every request
 * written on it with its one status, whatever became of each (see mayBeStored).
 */
const answerMayBeStored: Record<ErrorKind, boolean> = {
  // Placement (queue owned elsewhere, not the leader) and propose (not the leader, transferring)
  // refuse before the append; no path turns a failure after it into "not the leader".
  not_leader: false,
  // The security guard's limits and propose's bounds (pendingProposalsMax, uncommitted entries)
  // refuse before the append; the exception, ack 'leader', is handled in mayBeStored.
  resource_exhausted: false,
  // Validation, encoding, and the idempotent sequence check (gap, stale, expired producer).
  invalid_argument: false,
  not_found: false,
  already_exists: false,
  out_of_range: false,
  permission_denied: false,
  unauthenticated: false,
  failed_precondition: false,
  // The class's contract (src/errors.ts): nothing was changed.
  aborted: false,
  // After the append: leadership lost or the entry truncated before it committed, the broker
  // shutting down with the entry waiting; before it too (shutting down), but not told apart.
  unavailable: true,
  // The acknowledgement did not arrive within the broker's wait: the entry is in its log.
  timeout: true,
  // A fault anywhere, after the append included.
  internal: true,
};

/**
 * Whether the batch of a failed request may be stored, from how far the request got
 * (produce-stream.ts, RequestProgress) and what it failed with:
 *   - 'unsent': it never left the client (no route, no leader known, no connection could be
 *     made, the producer closed): not stored.
 *   - 'written': no answer to it arrived (the stream broke, ended or timed out, whatever its
 *     status): it may have reached a leader and been stored.
 *   - 'answered': the broker answered it with a refusal: as answerMayBeStored says for its kind.
 *     RESOURCE_EXHAUSTED with ack 'leader' may come after the append (the bound on flush waits,
 *     src/replica/waiters.ts), so it counts as stored then.
 */
export function mayBeStored(error: unknown, progress: RequestProgress['stage'], ack: Ack): boolean {
  if (progress === 'unsent') return false;
  if (progress === 'written' || !(error instanceof MambaError)) return true;
  if (error.kind === 'resource_exhausted' && ack === 'leader') return true;
  return answerMayBeStored[error.kind];
}

/**
 * A batch that may be stored (mayBeStored held for one of its attempts) was not acknowledged
 * before the producer gave up on it: the retry policy ran out (whenUnavailable 'drop'), a refusal
 * was final, or the producer closed. Whether its messages are in `queue` cannot be told here, so
 * they were never sent to another queue; sending them again may store them twice. Not retriable.
 */
export class OutcomeUnknownError extends MambaError {
  override readonly name = 'OutcomeUnknownError';
  constructor(
    readonly topic: string,
    readonly queue: number,
    count: number,
    /** Why the last attempt failed. */
    readonly lastError: MambaError,
  ) {
    const [what, were, they] = count === 1 ? ['1 message', 'was', 'it was'] : [`${count} messages`, 'were', 'they were'];
    super(
      lastError.kind,
      `${what} for queue ${queue} of "${topic}" ${were} not acknowledged and may or may not be stored there ` +
        `(the outcome of an attempt is unknown, so ${they} not sent to another queue); last error: ${lastError.message}`,
      false,
    );
  }
}
