// The read advice (DESIGN §5): on every Consume reply the leader says where to read next.
// It points at a follower only when the leader is loaded AND that follower is close behind the
// high watermark AND already holds the consumer's next message; otherwise at the leader itself.
/** The read-advice thresholds (the `advice:` settings of a cluster file, read by src/config). */
export interface AdviceSettings {
  /** Leader load above which it suggests a follower: in-flight client requests. */
  leaderInflightMax: number;
  /** Leader load above which it suggests a follower: process CPU share (0..1 of one core). */
  leaderCpuMax: number;
  /** A follower is suggested only while its lag behind the high watermark is under these. */
  followerLagOffsetsMax: number;
  followerLagMsMax: number;
}

export interface LeaderLoad {
  inflightRequests: number;
  cpuShare: number; // process CPU over the last sample window, 1.0 = one core
}

export interface FollowerView {
  id: string;
  address: string;
  endOffset: number; // the follower's log end as its last Fetch told (group-log offset)
  lagOffsets: number; // high watermark minus endOffset, never below 0
  lagMs: number;
  reachable: boolean; // fetched within the fetch timeout
}

export interface Advice {
  replicaId: string;
  address: string;
  reason: string;
}

export function loadReason(load: LeaderLoad, limits: AdviceSettings): string | null {
  if (load.inflightRequests > limits.leaderInflightMax) {
    return `leader has ${load.inflightRequests} requests in flight (limit ${limits.leaderInflightMax})`;
  }
  if (load.cpuShare > limits.leaderCpuMax) {
    return `leader CPU ${load.cpuShare.toFixed(2)} above ${limits.leaderCpuMax}`;
  }
  return null;
}

/**
 * `neededLogOffset`: the group-log offset a replica must have passed to serve the consumer's
 * next message (the end of the batch holding it, or the high watermark at the queue's end).
 */
export function adviseRead(
  self: { id: string; address: string },
  load: LeaderLoad,
  followers: readonly FollowerView[],
  neededLogOffset: number,
  limits: AdviceSettings,
): Advice {
  const busy = loadReason(load, limits);
  if (!busy) return { replicaId: self.id, address: self.address, reason: 'leader load is under its thresholds' };
  const candidates = followers
    .filter((f) => f.reachable && f.lagOffsets <= limits.followerLagOffsetsMax && f.lagMs <= limits.followerLagMsMax && f.endOffset >= neededLogOffset)
    .sort((a, b) => a.lagOffsets - b.lagOffsets || a.id.localeCompare(b.id));
  const best = candidates[0];
  if (!best)
    return { replicaId: self.id, address: self.address, reason: `${busy}, but no follower is within the lag bounds and caught up past the next offset` };
  return { replicaId: best.id, address: best.address, reason: `${busy}; ${best.id} lags ${best.lagOffsets} offsets / ${best.lagMs} ms` };
}
