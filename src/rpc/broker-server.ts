// One broker process: opens its replica, binds the broker to it, and serves the client API
// (with server reflection) and the peer API on their own ports.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { type BrokerConfig, type ClusterConfig, type GroupConfig, findBroker, groupOf, seedVoters } from '../config/cluster.js';
import { Broker } from '../broker/broker.js';
import { StateStore, stateDirName } from '../broker/state-store.js';
import { Replica } from '../replica/replica.js';
import { Logger } from '../replica/logger.js';
import { entriesFromFetchedBatches, batchOfEntry } from '../replica/log-storage.js';
import { formatIfGroupIsNew } from './storage-format.js';
import { addPeerService, PeerClients, type EntryWireCodec } from './peer.js';
import { addClientService } from './client-service.js';
import { GrpcForwarder } from './forwarder.js';
import { reflectionPackageDefinition } from '../protocol/protos.js';
import { BrokerObservability, type ObservabilityOptions } from './broker-observability.js';
import { MeteredServer } from '../observe/grpc-metrics.js';
import { openBrokerSecurity, securityMetrics } from './broker-security.js';
import { listen } from './listener.js';
import { startMqttListener, startStompListener } from './gateways.js';

export interface RunningBroker {
  broker: Broker;
  replica: Replica;
  observability: BrokerObservability;
  stop(): Promise<void>;
}

const wireCodec: EntryWireCodec = {
  toBatch: (entry) => batchOfEntry(entry, Date.now()),
  fromBatches: entriesFromFetchedBatches,
};

export async function startBroker(cluster: ClusterConfig, brokerId: string, logger?: Logger, observability: ObservabilityOptions = {}): Promise<RunningBroker> {
  const config = findBroker(cluster, brokerId);
  const group = groupOf(cluster, brokerId);
  const log = logger ?? new Logger(brokerId, group.id);
  const observe = new BrokerObservability(config, log, { clusterName: cluster.name, ...observability });
  try {
    // /healthz answers while the replica opens (a long recovery is alive); /readyz says not started.
    await observe.listen();
    // A new group formats itself once its brokers tell each other their directories are all empty.
    // (A signal ends the process while it waits: nothing is written before the decision.)
    if (config.settings.formatNewGroup) await formatIfGroupIsNew(cluster, brokerId, log);
    observe.noteReplicaOpening();
    return await startServing(cluster, config, group, log, observe);
  } catch (error) {
    await observe.stop();
    throw error;
  }
}

/** Everything after the metrics port: the replica, the broker, the client and peer servers. */
async function startServing(
  cluster: ClusterConfig,
  config: BrokerConfig,
  group: GroupConfig,
  log: Logger,
  observe: BrokerObservability,
): Promise<RunningBroker> {
  const brokerId = config.id;
  const s = config.settings;
  const replica = await Replica.open({
    id: brokerId,
    // The seed (the brokers without `joining`); a joining broker starts with it too and learns
    // its membership from the leader's log.
    voters: seedVoters(group),
    dataDir: config.dataDir,
    flush: s.flush,
    segmentBytes: s.segmentBytes,
    retentionBytesMax: s.retentionBytesMax,
    retentionAgeMsMax: s.retentionAgeMsMax,
    tickMs: s.tickMs,
    electionTimeoutMs: s.electionTimeoutMs,
    fetchTimeoutMs: s.fetchTimeoutMs,
    fetchWaitMsMax: s.fetchWaitMsMax,
    fetchBytesMax: s.fetchBytesMax,
    pendingProposalsMax: s.pendingProposalsMax,
    snapshotIntervalEntries: s.snapshotIntervalEntries,
    snapshotIntervalBytes: s.snapshotIntervalBytes,
    logger: log,
    observer: observe.metrics,
    formatIdentity: { cluster: cluster.name, group: group.id },
  });
  const security = openBrokerSecurity(cluster, brokerId, s, log, securityMetrics(observe.metrics.registry));
  const forwarder = new GrpcForwarder(security.tls?.channel, security.signForward);
  // Beside the replica's files, under the data directory's lock; takes over a former layout's state once.
  const store = StateStore.open(join(config.dataDir, stateDirName), log, replica);
  const broker = new Broker(config, cluster, replica, store, forwarder, log, { observer: observe.metrics, tracing: observe.brokerTracing });
  const identity = { cluster: cluster.name, group: group.id, replicaId: brokerId };

  const serverOptions = {
    'grpc.max_receive_message_length': s.requestBytesMax,
    'grpc.max_send_message_length': Math.max(s.requestBytesMax, s.fetchBytesMax + 1024 * 1024),
    'grpc.max_concurrent_streams': 2 * s.inflightPerConnectionMax, // the guard refuses beyond 1×
  };
  const peerServer = new MeteredServer(
    { ...serverOptions, 'grpc.max_receive_message_length': s.fetchBytesMax + 1024 * 1024, interceptors: [security.peerGuard.interceptor] },
    observe.metrics,
    'peer',
  );
  addPeerService(peerServer, identity, wireCodec, {
    // The cluster file's brokers of the group, and the members the log added (a learner that joined).
    isMember: (id) => id !== brokerId && (group.brokers.some((b) => b.id === id) || isLogMember(replica, id)),
    handle: (request, waitMsMax, channel) => replica.handle(request, waitMsMax, channel),
    dropChannel: (channel) => replica.dropChannel(channel),
    fetchSnapshot: (request) => replica.serveSnapshotChunk(request),
    requireCertificate: security.tls !== null,
  });
  const clientServer = new MeteredServer({ ...serverOptions, interceptors: [security.clientGuard.interceptor] }, observe.metrics, 'client');
  addClientService(clientServer, broker, s, { cluster: cluster.name });
  new ReflectionService(reflectionPackageDefinition()).addToServer(clientServer);

  const peers = new PeerClients(
    identity,
    group.brokers.map((b) => ({ id: b.id, address: `${b.host}:${b.peerPort}` })),
    wireCodec,
    (answer) => replica.deliver(answer),
    { fetchWaitMsMax: s.fetchWaitMsMax, requestTimeoutMs: Math.max(100, s.electionTimeoutMs) },
    (peer, rpc, error) => log.debug('peer.call.failed', { peer, rpc, code: error.code, details: error.details }),
    security.tls?.channel,
    (id) => replica.membership.endpoints.find((m) => m.id === id)?.peerAddress ?? null,
  );
  const insecure = grpc.ServerCredentials.createInsecure();
  const peerListening = await listen(peerServer, security.tls?.peerServer ?? insecure, config.listenHost, config.peerPort, null);
  const clientListening = await listen(clientServer, security.tls?.clientServer ?? insecure, config.listenHost, config.clientPort, security.limiter);
  replica.start(broker, peers);
  broker.startMetadata();
  await observe.start(broker, replica);
  // ---- gateways (src/gateway): one listener per protocol whose port the cluster file gives
  const mqtt = await startMqttListener(cluster, config, security, observe.metrics.registry, log, observe.tracing.tracer);
  const stomp = await startStompListener(cluster, config, security, observe.metrics.registry, log, observe.tracing.tracer);
  // ---- end of gateways
  log.info('broker.started', {
    client: `${config.host}:${config.clientPort}`,
    peer: `${config.host}:${config.peerPort}`,
    ...(config.listenHost !== config.host ? { listenHost: config.listenHost } : {}),
    dataDir: config.dataDir,
    flush: s.flush.mode,
    tls: security.tls !== null,
    auth: cluster.security.auth !== null,
  });

  let stopped = false;
  return {
    broker,
    replica,
    observability: observe,
    async stop() {
      if (stopped) return;
      stopped = true;
      observe.markStopping();
      // Gateways first: their sessions use the client listener.
      await mqtt?.stop();
      await stomp?.close();
      await broker.close();
      clientListening.close();
      peerListening.close();
      clientServer.forceShutdown();
      peerServer.forceShutdown();
      security.close();
      forwarder.close();
      await replica.close();
      await observe.stop();
      log.info('broker.stopped');
    },
  };
}

function isLogMember(replica: Replica, id: string): boolean {
  const membership = replica.membership;
  return membership.voters.includes(id) || membership.learners.includes(id);
}
