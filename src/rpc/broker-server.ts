// One broker process: opens its replica, binds the broker to it, and serves the client API
// (with server reflection) and the peer API on their own ports.
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { type ClusterConfig, findBroker, groupOf } from '../config/cluster.js';
import { Broker } from '../broker/broker.js';
import { Replica } from '../replica/replica.js';
import { Logger } from '../replica/logger.js';
import { entriesFromFetchedBatches, batchOfEntry } from '../replica/log-storage.js';
import { addPeerService, PeerClients, type EntryWireCodec } from './peer.js';
import { addClientService } from './client-service.js';
import { GrpcForwarder } from './forwarder.js';
import { reflectionPackageDefinition } from './protos.js';

export interface RunningBroker {
  broker: Broker;
  replica: Replica;
  stop(): Promise<void>;
}

const wireCodec: EntryWireCodec = {
  toBatch: (entry) => batchOfEntry(entry, Date.now()),
  fromBatches: entriesFromFetchedBatches,
};

function bind(server: grpc.Server, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(new Error(`cannot listen on ${address}: ${error.message}`)) : resolve()));
  });
}

export async function startBroker(cluster: ClusterConfig, brokerId: string, logger?: Logger): Promise<RunningBroker> {
  const config = findBroker(cluster, brokerId);
  const group = groupOf(cluster, brokerId);
  const log = logger ?? new Logger(brokerId, group.id);
  const s = config.settings;
  const replica = await Replica.open({
    id: brokerId, voters: group.brokers.map((b) => b.id), dataDir: config.dataDir, flush: s.flush,
    segmentBytes: s.segmentBytes, retentionBytesMax: s.retentionBytesMax, retentionAgeMsMax: s.retentionAgeMsMax,
    tickMs: s.tickMs, electionTimeoutMs: s.electionTimeoutMs, fetchTimeoutMs: s.fetchTimeoutMs, fetchMaxWaitMs: s.fetchMaxWaitMs,
    fetchBytesMax: s.fetchBytesMax, pendingProposalsMax: s.pendingProposalsMax, logger: log,
  });
  const forwarder = new GrpcForwarder();
  const broker = new Broker(config, cluster, replica, forwarder, log);
  const identity = { cluster: cluster.name, group: group.id, replicaId: brokerId };

  const serverOptions = {
    'grpc.max_receive_message_length': s.requestBytesMax,
    'grpc.max_send_message_length': Math.max(s.requestBytesMax, s.fetchBytesMax + 1024 * 1024),
  };
  const peerServer = new grpc.Server({ ...serverOptions, 'grpc.max_receive_message_length': s.fetchBytesMax + 1024 * 1024 });
  addPeerService(peerServer, identity, wireCodec, {
    isMember: (id) => group.brokers.some((b) => b.id === id) && id !== brokerId,
    handle: (request, maxWaitMs) => replica.handle(request, maxWaitMs),
  });
  const clientServer = new grpc.Server(serverOptions);
  addClientService(clientServer, broker);
  new ReflectionService(reflectionPackageDefinition()).addToServer(clientServer);

  const peers = new PeerClients(
    identity,
    group.brokers.map((b) => ({ id: b.id, address: `${b.host}:${b.peerPort}` })),
    wireCodec,
    (answer) => replica.deliver(answer),
    { fetchMaxWaitMs: s.fetchMaxWaitMs, requestTimeoutMs: Math.max(100, s.electionTimeoutMs) },
    (peer, rpc, error) => log.debug('peer.call.failed', { peer, rpc, code: error.code, details: error.details }),
  );
  await bind(peerServer, `${config.host}:${config.peerPort}`);
  await bind(clientServer, `${config.host}:${config.clientPort}`);
  replica.start(broker, peers);
  log.info('broker.started', { client: `${config.host}:${config.clientPort}`, peer: `${config.host}:${config.peerPort}`, dataDir: config.dataDir, flush: s.flush.mode });

  let stopped = false;
  return {
    broker,
    replica,
    async stop() {
      if (stopped) return;
      stopped = true;
      broker.close();
      clientServer.forceShutdown();
      peerServer.forceShutdown();
      forwarder.close();
      await replica.close();
      log.info('broker.stopped');
    },
  };
}
