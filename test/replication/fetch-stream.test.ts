// FetchStream (proto/raft.proto): pull replication on one long-lived stream per follower and
// leader. The peer server is started in this process on 127.0.0.1 with a scripted replica behind
// it; the follower side is the real PeerClients, or a raw stream for requests it never sends.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { addPeerService, PeerClients, fetchStreamInflightMax, type FetchChannel, type PeerRequestHandler } from '../../src/rpc/peer.js';
import { serviceDefinition } from '../../src/protocol/protos.js';
import { batchOfEntry, entriesFromFetchedBatches } from '../../src/replica/log-storage.js';
import { InvariantError } from '../../src/assert.js';
import { EntryType, type FetchRequest, type FetchResponse, type Message } from '../../src/raft/types.js';

const codec = { toBatch: (entry: Parameters<typeof batchOfEntry>[0]) => batchOfEntry(entry, 0), fromBatches: entriesFromFetchedBatches };
const leader = { cluster: 'c', group: 'g1', replicaId: 'b1' };
const follower = { cluster: 'c', group: 'g1', replicaId: 'b2' };
type Wire = Record<string, unknown>;

/** A scripted replica: records each Fetch with its channel; answers at once unless told to hold. */
class ScriptedReplica implements PeerRequestHandler {
  readonly fetches: Array<{ request: FetchRequest; channel: FetchChannel | undefined }> = [];
  readonly dropped: FetchChannel[] = [];
  hold = false;
  reject: Error | null = null;
  private readonly held: Array<{ request: FetchRequest; resolve: (m: Message | null) => void }> = [];

  isMember(id: string): boolean {
    return id === 'b2' || id === 'b3';
  }

  handle(request: Message, _maxWaitMs: number, channel?: FetchChannel): Promise<Message | null> {
    assert.equal(request.type, 'FetchRequest');
    const fetch = request as FetchRequest;
    this.fetches.push({ request: fetch, channel });
    if (this.reject) return Promise.reject(this.reject);
    if (this.hold) return new Promise((resolve) => this.held.push({ request: fetch, resolve }));
    return Promise.resolve(answerTo(fetch));
  }

  dropChannel(channel: FetchChannel): void {
    this.dropped.push(channel);
  }

  /** Answers every held Fetch, with one entry at its fetch offset. */
  release(): void {
    for (const { request, resolve } of this.held.splice(0)) {
      resolve(answerTo(request, [{ epoch: 1, offset: request.fetchOffset, count: 1, type: EntryType.Data, payload: new Uint8Array([1, 2, 3]) }]));
    }
  }
}

function answerTo(request: FetchRequest, entries: FetchResponse['entries'] = []): FetchResponse {
  return {
    type: 'FetchResponse',
    from: request.to,
    to: request.from,
    epoch: request.epoch,
    leaderId: request.to,
    fetchOffset: request.fetchOffset,
    lastFetchedEpoch: request.lastFetchedEpoch,
    requestId: request.requestId,
    entries,
    highWatermark: request.fetchOffset,
  };
}

function fetchRequest(requestId: number, fetchOffset = 0, to = 'b1'): FetchRequest {
  return { type: 'FetchRequest', from: 'b2', to, epoch: 1, fetchOffset, lastFetchedEpoch: 0, bytesMax: 1 << 20, requestId };
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function startLeader(replica: ScriptedReplica): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server();
  addPeerService(server, leader, codec, replica);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { server, address: `127.0.0.1:${port}` };
}

const RawPeer = grpc.makeGenericClientConstructor(serviceDefinition('mamba.raft.v1.RaftPeer'), 'RaftPeer');

/** Writes `requests` on one raw stream and resolves with the answers and the final status. */
function rawStream(
  address: string,
  requests: Wire[],
  keepOpen = false,
): Promise<{ answers: Wire[]; status: grpc.StatusObject | null; error: grpc.ServiceError | null }> {
  const client = new RawPeer(address, grpc.credentials.createInsecure());
  const call = (client as unknown as { FetchStream(): grpc.ClientDuplexStream<Wire, Wire> }).FetchStream();
  const answers: Wire[] = [];
  return new Promise((resolve) => {
    let error: grpc.ServiceError | null = null;
    call.on('data', (w: Wire) => answers.push(w));
    call.on('error', (e: grpc.ServiceError) => {
      error = e;
    });
    call.on('status', (status: grpc.StatusObject) => {
      client.close();
      resolve({ answers, status, error });
    });
    for (const request of requests) call.write(request);
    if (!keepOpen) call.end();
  });
}

const wireFetch = (requestId: number, sender: Wire = follower, extra: Wire = {}): Wire => ({
  sender,
  to: 'b1',
  epoch: 1,
  fetchOffset: 0,
  lastFetchedEpoch: 0,
  bytesMax: 1 << 20,
  waitMsMax: 200,
  requestId,
  ...extra,
});

describe('FetchStream: one stream per follower and leader', { timeout: 60_000 }, () => {
  let replica: ScriptedReplica;
  let server: grpc.Server;
  let address: string;
  before(async () => {
    replica = new ScriptedReplica();
    ({ server, address } = await startLeader(replica));
  });
  after(() => server.forceShutdown());

  test('every Fetch of a follower travels on one stream and each answer comes back with its request id', async () => {
    replica.fetches.length = 0;
    const delivered: Message[] = [];
    const errors: string[] = [];
    const clients = new PeerClients(
      follower,
      [{ id: 'b1', address }],
      codec,
      (m) => delivered.push(m),
      { fetchWaitMsMax: 200, requestTimeoutMs: 1000 },
      (_peer, rpc, error) => errors.push(`${rpc}: ${error.details}`),
    );
    try {
      for (let id = 1; id <= 20; id++) {
        clients.send(fetchRequest(id, id));
        await until(`answer ${id}`, () => delivered.length === id);
        const answer = delivered[id - 1] as FetchResponse;
        assert.equal(answer.requestId, id);
        assert.equal(answer.fetchOffset, id);
      }
      assert.equal(new Set(replica.fetches.map((f) => f.channel)).size, 1, 'one stream for all 20 Fetches');
      assert.ok(replica.fetches[0]!.channel !== undefined, 'stream Fetches carry their channel');
      assert.deepEqual(errors, []);
    } finally {
      clients.close();
    }
  });

  test('a held (long-poll) Fetch answered later carries entries the follower decodes from the stored batch bytes', async () => {
    replica.fetches.length = 0;
    replica.hold = true;
    const delivered: Message[] = [];
    const clients = new PeerClients(
      follower,
      [{ id: 'b1', address }],
      codec,
      (m) => delivered.push(m),
      { fetchWaitMsMax: 200, requestTimeoutMs: 1000 },
      () => undefined,
    );
    try {
      clients.send(fetchRequest(7, 5));
      await until('the Fetch to arrive', () => replica.fetches.length === 1);
      assert.equal(delivered.length, 0);
      replica.release();
      await until('the answer', () => delivered.length === 1);
      const answer = delivered[0] as FetchResponse;
      assert.equal(answer.requestId, 7);
      assert.equal(answer.entries.length, 1);
      assert.equal(answer.entries[0]!.offset, 5);
      assert.deepEqual([...answer.entries[0]!.payload], [1, 2, 3]);
    } finally {
      replica.hold = false;
      clients.close();
    }
  });

  test('fetching from another replica closes the stream to the old one, which drops what it parks for it', async () => {
    const other = new ScriptedReplica();
    const second = await startLeader(other);
    replica.fetches.length = 0;
    replica.dropped.length = 0;
    replica.hold = true;
    const delivered: Message[] = [];
    const clients = new PeerClients(
      follower,
      [
        { id: 'b1', address },
        { id: 'b3', address: second.address },
      ],
      codec,
      (m) => delivered.push(m),
      { fetchWaitMsMax: 200, requestTimeoutMs: 1000 },
      () => undefined,
    );
    try {
      clients.send(fetchRequest(1));
      await until('the Fetch to park on b1', () => replica.fetches.length === 1);
      clients.send({ ...fetchRequest(2, 0, 'b3'), epoch: 2 });
      await until('b1 to drop the parked Fetch of the closed stream', () => replica.dropped.includes(replica.fetches[0]!.channel!));
      await until('the answer from b3', () => delivered.length === 1);
      assert.equal((delivered[0] as FetchResponse).requestId, 2);
      replica.release(); // the old stream is gone: nothing arrives from it
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(delivered.length, 1);
    } finally {
      replica.hold = false;
      clients.close();
      second.server.forceShutdown();
    }
  });

  test('a broken stream is replaced on the next Fetch (the follower reopens it)', async () => {
    replica.fetches.length = 0;
    replica.reject = new InvariantError('scripted contradiction');
    const delivered: Message[] = [];
    const errors: number[] = [];
    const clients = new PeerClients(
      follower,
      [{ id: 'b1', address }],
      codec,
      (m) => delivered.push(m),
      { fetchWaitMsMax: 200, requestTimeoutMs: 1000 },
      (_peer, _rpc, error) => errors.push(error.code),
    );
    try {
      clients.send(fetchRequest(1));
      await until('the stream to fail', () => errors.length === 1);
      assert.equal(errors[0], grpc.status.FAILED_PRECONDITION);
      replica.reject = null;
      clients.send(fetchRequest(2));
      await until('the answer on a new stream', () => delivered.length === 1);
      assert.equal((delivered[0] as FetchResponse).requestId, 2);
      assert.notEqual(replica.fetches[0]!.channel, replica.fetches[1]!.channel);
    } finally {
      replica.reject = null;
      clients.close();
    }
  });

  test('a Fetch from a replica outside the group ends the stream with PERMISSION_DENIED before the replica sees it', async () => {
    replica.fetches.length = 0;
    const result = await rawStream(address, [wireFetch(1, { cluster: 'c', group: 'g1', replicaId: 'b9' })], true);
    assert.equal(result.status?.code, grpc.status.PERMISSION_DENIED);
    assert.match(result.status?.details ?? '', /not a member/);
    assert.equal(replica.fetches.length, 0);
  });

  test('a member of another group is refused with PERMISSION_DENIED, also after accepted requests on the same stream', async () => {
    replica.fetches.length = 0;
    const result = await rawStream(address, [wireFetch(1), wireFetch(2, { cluster: 'c', group: 'g2', replicaId: 'b2' })], true);
    assert.equal(result.status?.code, grpc.status.PERMISSION_DENIED);
    assert.equal(replica.fetches.length, 1);
  });

  test('a malformed Fetch ends the stream with INVALID_ARGUMENT', async () => {
    replica.fetches.length = 0;
    const result = await rawStream(address, [wireFetch(1, follower, { fetchOffset: 2 ** 60 })], true);
    assert.equal(result.status?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(result.status?.details ?? '', /malformed/);
    assert.equal(replica.fetches.length, 0);
  });

  test('bytes that are not a FetchRequest end the stream with INVALID_ARGUMENT', async () => {
    replica.fetches.length = 0;
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const status = await new Promise<grpc.StatusObject>((resolve) => {
        const call = client.makeBidiStreamRequest(
          '/mamba.raft.v1.RaftPeer/FetchStream',
          (b: Buffer) => b,
          (b: Buffer) => b,
        );
        call.on('error', () => undefined);
        call.on('status', resolve);
        call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff])); // field 1, a length running past the end
      });
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(replica.fetches.length, 0);
    } finally {
      client.close();
    }
  });

  test('a Fetch that contradicts the replica state ends the stream with FAILED_PRECONDITION and drops its channel', async () => {
    replica.dropped.length = 0;
    replica.reject = new InvariantError('two leaders in one epoch');
    try {
      const result = await rawStream(address, [wireFetch(1)], true);
      assert.equal(result.status?.code, grpc.status.FAILED_PRECONDITION);
      assert.match(result.status?.details ?? '', /contradicts/);
      assert.equal(replica.dropped.length, 1);
    } finally {
      replica.reject = null;
    }
  });

  test(`more than ${fetchStreamInflightMax} unanswered Fetches on one stream end it with RESOURCE_EXHAUSTED`, async () => {
    replica.fetches.length = 0;
    replica.hold = true;
    try {
      const requests = Array.from({ length: fetchStreamInflightMax + 1 }, (_, i) => wireFetch(i + 1));
      const result = await rawStream(address, requests, true);
      assert.equal(result.status?.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(replica.fetches.length, fetchStreamInflightMax, 'the request over the bound never reaches the replica');
    } finally {
      replica.release();
      replica.hold = false;
    }
  });

  test('a follower that cancels its stream makes the leader drop the Fetches it parks for it', async () => {
    replica.fetches.length = 0;
    replica.dropped.length = 0;
    replica.hold = true;
    const client = new RawPeer(address, grpc.credentials.createInsecure());
    try {
      const call = (client as unknown as { FetchStream(): grpc.ClientDuplexStream<Wire, Wire> }).FetchStream();
      call.on('error', () => undefined);
      call.write(wireFetch(1));
      await until('the Fetch to park', () => replica.fetches.length === 1);
      call.cancel();
      await until('the channel to be dropped', () => replica.dropped.includes(replica.fetches[0]!.channel!));
    } finally {
      replica.release();
      replica.hold = false;
      client.close();
    }
  });
});
