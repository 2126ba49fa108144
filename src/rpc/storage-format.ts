// Formatting brokers' data directories (issue 13.3; KRaft's `kafka-storage format`): a new
// group's directories are formatted before their first start, a replaced disk never is (it then
// opens recovering: src/replica/format.ts). `mambamq storage format` formats named brokers;
// `mambamq cluster up` and the test launcher format a group only while none of its seed brokers
// has run, since an empty directory beside used ones is a replaced disk.
import { findBroker, groupOf, type ClusterConfig, type GroupConfig } from '../config/cluster.js';
import { dataDirectoryUnused, formatDataDirectory, readDirectoryFormat, type DirectoryFormat } from '../replica/format.js';

export { FormatError, type DirectoryFormat } from '../replica/format.js';

/** Formats one broker's data directory; throws FormatError when it holds data or is formatted. */
export function formatBrokerDirectory(cluster: ClusterConfig, brokerId: string): DirectoryFormat {
  const broker = findBroker(cluster, brokerId);
  return formatDataDirectory(broker.dataDir, { cluster: cluster.name, group: groupOf(cluster, brokerId).id, brokerId });
}

/** What formatNewGroups did for one group. */
export interface GroupFormatOutcome {
  group: string;
  /** Brokers whose directories were formatted now. */
  formatted: string[];
  /** Why nothing was formatted, or null. */
  skipped: string | null;
}

/**
 * Formats the seed brokers of every group that is new: none of its seed brokers' directories
 * holds data (format records aside). In a group with history an empty directory is left alone:
 * it is a replaced disk and must join as recovering. Joining brokers are never formatted here.
 */
export function formatNewGroups(cluster: ClusterConfig): GroupFormatOutcome[] {
  return cluster.groups.map((group) => formatNewGroup(cluster, group));
}

function formatNewGroup(cluster: ClusterConfig, group: GroupConfig): GroupFormatOutcome {
  const seeds = group.brokers.filter((b) => !b.joining);
  const used = seeds.filter((b) => !dataDirectoryUnused(b.dataDir));
  if (used.length > 0) {
    const empty = seeds.filter((b) => dataDirectoryUnused(b.dataDir) && readDirectoryFormat(b.dataDir) === null).map((b) => b.id);
    const skipped =
      empty.length > 0
        ? `group has data (${used.map((b) => b.id).join(', ')}): ${empty.join(', ')} start unformatted and join as recovering (replaced disks)`
        : 'group has data';
    return { group: group.id, formatted: [], skipped };
  }
  const formatted: string[] = [];
  for (const broker of seeds) {
    if (readDirectoryFormat(broker.dataDir) !== null) continue;
    formatDataDirectory(broker.dataDir, { cluster: cluster.name, group: group.id, brokerId: broker.id });
    formatted.push(broker.id);
  }
  return { group: group.id, formatted, skipped: null };
}

/** What a broker's data directory was formatted for, and whether anything ran there yet. */
export function describeBrokerDirectory(cluster: ClusterConfig, brokerId: string): { broker: string; format: DirectoryFormat | null; unused: boolean } {
  const broker = findBroker(cluster, brokerId);
  return { broker: brokerId, format: readDirectoryFormat(broker.dataDir), unused: dataDirectoryUnused(broker.dataDir) };
}
