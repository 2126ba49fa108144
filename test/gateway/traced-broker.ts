// One in-process broker with a gateway listener whose spans go to an in-memory exporter: the
// setting of the gateways' tracing tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { MambaClient } from '../../src/client/client.js';
import { parseClusterConfig } from '../../src/config/cluster.js';
import { Logger } from '../../src/replica/logger.js';
import { startBroker, type RunningBroker } from '../../src/rpc/broker-server.js';
import { formatBrokerDirectory } from '../../src/rpc/storage-format.js';
import { freePort, waitFor } from '../integration/cluster-harness.js';

export interface TracedBroker {
  spans: InMemorySpanExporter;
  running: RunningBroker;
  /** An untraced SDK client: the only client-side spans are the gateway's. */
  client: MambaClient;
  /** The gateway's port. */
  gatewayPort: number;
  stop(): Promise<void>;
}

/** A one-broker group `cluster` serving `gateway` (mqttPort or stompPort), leading once this resolves. */
export async function startTracedBroker(cluster: string, gateway: 'mqttPort' | 'stompPort'): Promise<TracedBroker> {
  const dir = mkdtempSync(join(tmpdir(), `mamba-${cluster}-`));
  const spans = new InMemorySpanExporter();
  const [clientPort, peerPort, metricsPort, gatewayPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const text = [
    `cluster: ${cluster}`,
    `dataDir: ${join(dir, 'data')}`,
    'groups:',
    '  - id: g1',
    '    brokers:',
    `      - { id: b1, host: 127.0.0.1, clientPort: ${clientPort}, peerPort: ${peerPort}, metricsPort: ${metricsPort}, ${gateway}: ${gatewayPort} }`,
  ].join('\n');
  const config = parseClusterConfig(text, `${cluster}.yaml`, dir);
  formatBrokerDirectory(config, 'b1');
  const running = await startBroker(config, 'b1', new Logger('b1', 'g1', () => {}), { spanExporter: spans });
  await waitFor('b1 to lead', 10_000, () => (running.replica.isLeader ? true : undefined));
  const client = new MambaClient({ brokers: [`127.0.0.1:${clientPort}`] });
  return {
    spans,
    running,
    client,
    gatewayPort,
    async stop() {
      client.close();
      await running.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
