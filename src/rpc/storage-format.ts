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

/**
 * What a broker's data directory holds, as its metrics port tells its group's other brokers (GET
 * /directory): nothing; a format record only (or a running replica that never saw an epoch or an
 * entry); history; or not known yet (its replica is opening).
 */
export type DirectoryState = 'unused' | 'formatted-unused' | 'data' | 'starting';

export interface DirectoryReport {
  cluster: string;
  group: string;
  broker: string;
  state: DirectoryState;
}

export function directoryState(dataDir: string): DirectoryState {
  if (!dataDirectoryUnused(dataDir)) return 'data';
  return readDirectoryFormat(dataDir) === null ? 'unused' : 'formatted-unused';
}

/** How often the other brokers are asked, and how often the wait says so in the log. */
const probeIntervalMs = 500;
const probeReportIntervalMs = 10_000;

/**
 * A seed broker on an empty, unformatted directory (setting formatNewGroup): asks every other
 * seed broker of its group, on its metrics port, what its directory holds, until it can tell.
 * All of them empty (formatted or not): the group is new (no replica of it ever ran, so no
 * vote was ever cast), and the directory is formatted. One of them holding data: this is a
 * replaced disk, left unformatted to join as recovering. Brokers that do not answer are waited
 * for. Returns what it decided; `stopped` ends the wait.
 */
export async function formatIfGroupIsNew(
  cluster: ClusterConfig,
  brokerId: string,
  log: { info(event: string, fields: Record<string, unknown>): void; warn(event: string, fields: Record<string, unknown>): void },
  stopped: () => boolean = () => false,
  fetchJson: (url: string) => Promise<unknown> = fetchDirectoryReport,
): Promise<'formatted' | 'replaced-disk' | 'not-empty' | 'stopped'> {
  const broker = findBroker(cluster, brokerId);
  const group = groupOf(cluster, brokerId);
  if (broker.joining || directoryState(broker.dataDir) !== 'unused') return 'not-empty';
  const others = group.brokers.filter((b) => !b.joining && b.id !== brokerId);
  let lastReportMs = 0;
  while (!stopped()) {
    const answers = await Promise.all(
      others.map(async (other) => {
        try {
          const report = (await fetchJson(`http://${other.host}:${other.metricsPort}/directory`)) as DirectoryReport;
          if (report.cluster !== cluster.name || report.group !== group.id || report.broker !== other.id) return { id: other.id, state: null };
          return { id: other.id, state: report.state };
        } catch {
          return { id: other.id, state: null };
        }
      }),
    );
    const withData = answers.filter((a) => a.state === 'data').map((a) => a.id);
    if (withData.length > 0) {
      log.warn('storage.replaced_disk', { reason: `empty, unformatted directory while ${withData.join(', ')} hold data: joining as recovering` });
      return 'replaced-disk';
    }
    const silent = answers.filter((a) => a.state === null || a.state === 'starting').map((a) => a.id);
    if (silent.length === 0) {
      formatBrokerDirectory(cluster, brokerId);
      log.info('storage.formatted', { reason: `every broker of group ${group.id} has an empty directory: a new group`, peers: others.map((b) => b.id) });
      return 'formatted';
    }
    if (Date.now() - lastReportMs >= probeReportIntervalMs) {
      lastReportMs = Date.now();
      log.info('storage.waiting_for_group', {
        waitingFor: silent,
        detail: 'an empty directory: new group or replaced disk? the other brokers of the group tell',
      });
    }
    await new Promise((resolve) => setTimeout(resolve, probeIntervalMs));
  }
  return 'stopped';
}

async function fetchDirectoryReport(url: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}
