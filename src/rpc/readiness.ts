// The broker's /readyz decision (DESIGN §12, Deployment), a pure function of what the replica
// shows so that it is tested as a table: ready when the replica has started and is either the
// leader or has had an answer to a Fetch from a leader within the election timeout. A recovering
// replica (its log ends below what it promised, or a replaced disk catching up) and one refusing
// a leader that lacks committed data are not ready, whatever their fetches say. /healthz only
// says that the process answers.
import type { Role } from '../raft/types.js';

export interface ReadinessInput {
  /** The broker is shutting down (SIGTERM): a load balancer should stop sending at once. */
  stopping: boolean;
  /** The replica's start() ran: the state machine is restored and the replica ticks. */
  started: boolean;
  role: Role;
  leaderId: string | null;
  /** The log ends below the replica's promise (or a replaced disk has not caught up yet). */
  recovering: boolean;
  /** The promise it must reach again, null when unknown (a replaced disk); read while recovering. */
  recoveryMarkOffset: number | null;
  logEndOffset: number;
  /** The leader it refuses in this epoch because it lacks committed data, or null. */
  refusedLeaderId: string | null;
  /** When it last had a Fetch answer without error from the leader it follows, null if never. */
  lastLeaderFetchAnswerAtMs: number | null;
  /** On the same (monotonic) clock as lastLeaderFetchAnswerAtMs. */
  nowMs: number;
  electionTimeoutMs: number;
}

export interface Readiness {
  ready: boolean;
  /** Why it is not ready, in a sentence an operator can act on; absent when ready. */
  reason?: string;
  role: Role | 'recovering' | 'refusing';
  leader: string | null;
  /** How long ago the last Fetch answer from a leader came, on a follower that had one. */
  lastFetchAgoMs?: number;
}

export function readiness(input: ReadinessInput): Readiness {
  const base = { role: input.role, leader: input.leaderId };
  if (input.stopping) return { ready: false, reason: 'the broker is stopping', ...base };
  if (!input.started) return { ready: false, reason: 'the replica has not started (opening the data directory, replaying the log)', ...base };
  if (input.recovering) {
    const behind =
      input.recoveryMarkOffset === null
        ? 'an empty data directory in a group with history (a replaced disk)'
        : `its log ends at ${input.logEndOffset}, below the ${input.recoveryMarkOffset} it promised`;
    return { ready: false, reason: `recovering: ${behind}; catching up from the leader`, ...base, role: 'recovering' };
  }
  if (input.refusedLeaderId !== null)
    return { ready: false, reason: `refusing leader ${input.refusedLeaderId}: it lacks committed data`, ...base, role: 'refusing' };
  if (input.role === 'leader') return { ready: true, ...base };
  const last = input.lastLeaderFetchAnswerAtMs;
  if (last === null) return { ready: false, reason: `no fetch from a leader since the replica started (${input.role})`, ...base };
  // Whole milliseconds: the monotonic clock has fractions.
  const agoMs = Math.max(0, Math.round(input.nowMs - last));
  if (agoMs > input.electionTimeoutMs)
    return { ready: false, reason: `no fetch from a leader for ${agoMs} ms (election timeout ${input.electionTimeoutMs} ms; ${input.role})`, ...base };
  return { ready: true, ...base, lastFetchAgoMs: agoMs };
}
