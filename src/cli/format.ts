// How `mambamq status` prints the cluster: a fixed JSON shape for scripts, a table for people.
import type { GroupRoute } from '../client/router.js';

export function statusJson(groups: GroupRoute[]): unknown {
  return {
    groups: groups.map((g) => ({
      id: g.id,
      leader: g.leaderId || null,
      epoch: g.epoch,
      highWatermark: g.highWatermark,
      replicas: g.replicas.map((r) => ({
        id: r.id,
        role: r.role,
        endOffset: r.endOffset,
        lagOffsets: r.lagOffsets,
        lagMs: r.lagMs,
        lastFetchAgeMs: r.lastFetchAgeMs,
      })),
      advice: g.advice ? { replica: g.advice.replicaId, reason: g.advice.reason } : null,
    })),
  };
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

export function statusText(groups: GroupRoute[]): string {
  const lines: string[] = [];
  for (const g of groups) {
    lines.push(`group ${g.id}  leader ${g.leaderId || '(none)'}  epoch ${g.epoch}  high watermark ${g.highWatermark}`);
    lines.push(`  ${pad('replica', 9)}${pad('role', 12)}${pad('end offset', 12)}${pad('lag', 10)}${pad('lag ms', 9)}${pad('last fetch', 11)}address`);
    for (const r of g.replicas) {
      const fetchAge = r.role === 'leader' ? '-' : r.lastFetchAgeMs < 0 ? 'never' : `${r.lastFetchAgeMs} ms`;
      lines.push(
        `  ${pad(r.id, 9)}${pad(r.role, 12)}${pad(String(r.endOffset), 12)}${pad(String(r.lagOffsets), 10)}${pad(String(r.lagMs), 9)}${pad(fetchAge, 11)}${r.address}`,
      );
    }
    lines.push(g.advice ? `  read advice: ${g.advice.replicaId} (${g.advice.reason})` : '  read advice: (no leader)');
  }
  return lines.join('\n');
}
