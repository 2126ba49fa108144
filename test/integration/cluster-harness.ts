// Real broker processes on 127.0.0.1 for integration tests: the shared launcher
// (scripts/lib/cluster.ts) plus a raw gRPC client per broker and a wait for an agreed leader.
import { LocalCluster, waitFor, type ClusterOptions } from '../../scripts/lib/cluster.js';
import { MambaClient, type GroupView } from './grpc-client.js';

export { assertHoldsFor, cliPath, freePort, sleep, waitFor, type BrokerProcess } from '../../scripts/lib/cluster.js';

export class TestCluster extends LocalCluster {
  private readonly clients = new Map<string, MambaClient>();

  /** Starts every broker of a fresh cluster and waits until each group has a leader. */
  static async start(options: Omit<ClusterOptions, 'name' | 'placement'> = {}): Promise<TestCluster> {
    const cluster = await TestCluster.create({ ...options, name: 'mamba-it' });
    try {
      cluster.launchAll();
      for (let g = 1; g <= (options.groups ?? 1); g++) await cluster.waitForLeader(`g${g}`, 30_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  client(id: string): MambaClient {
    let client = this.clients.get(id);
    if (!client) {
      client = new MambaClient(this.broker(id).clientAddress);
      this.clients.set(id, client);
    }
    return client;
  }

  /** The group as a running broker of it describes it, once it names a leader everyone agrees on. */
  async waitForLeader(group: string, timeoutMs: number, exclude: string[] = []): Promise<GroupView> {
    return waitFor(`a leader in ${group}`, timeoutMs, async () => {
      for (const broker of this.groupBrokers(group)) {
        if (!this.isRunning(broker.id) || exclude.includes(broker.id)) continue;
        const view = await this.client(broker.id)
          .describeGroup(group, 500)
          .catch(() => undefined);
        if (view?.leaderId && !exclude.includes(view.leaderId) && this.isRunning(view.leaderId)) {
          const leaderView = await this.client(view.leaderId)
            .describeGroup(group, 500)
            .catch(() => undefined);
          if (leaderView && leaderView.leaderId === view.leaderId) return leaderView;
        }
      }
      return undefined;
    });
  }

  async stop(): Promise<void> {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    // MAMBA_KEEP_TEST_DIR=1 keeps data and broker logs for a post-mortem.
    await this.stopAll(!!process.env.MAMBA_KEEP_TEST_DIR);
  }
}
