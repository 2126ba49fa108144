// ProduceStream (proto/mamba.proto) against real brokers on 127.0.0.1: requests answered in order
// with their client sequence, every unary check applied to each request (answered in place, the
// stream goes on), a burst written before any answer is read, a stream cut mid-way (nothing
// acknowledged lost, no half batch), and the access key and permission checks of a secure cluster.
import { test, describe, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { TestCluster, waitFor, sleep } from './cluster-harness.js';
import { readAll, type Wire } from './grpc-client.js';
import { SecureCluster } from '../security/secure-cluster.js';
import { signCall } from '../../src/auth/signature.js';

type Duplex = grpc.ClientDuplexStream<Wire, Wire>;

function openStream(client: grpc.Client, metadata = new grpc.Metadata()): Duplex {
  return (client as unknown as { ProduceStream: (m: grpc.Metadata) => Duplex }).ProduceStream(metadata);
}

/** Collects a stream's answers and how it ended. */
function collect(stream: Duplex): { answers: Wire[]; ended: Promise<grpc.StatusObject> } {
  const answers: Wire[] = [];
  stream.on('data', (a: Wire) => answers.push(a));
  const ended = new Promise<grpc.StatusObject>((resolve) => {
    stream.on('status', (s: grpc.StatusObject) => resolve(s));
    stream.on('error', () => undefined); // the status carries it
  });
  return { answers, ended };
}

const request = (topic: string, queue: number, bodies: string[], extra: Wire = {}): Wire => ({
  topic,
  queue,
  ack: 3,
  messages: bodies.map((b) => ({ body: Buffer.from(b) })),
  ...extra,
});

describe('ProduceStream', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let leader: string;
  before(async () => {
    // A small per-connection bound: a stream's flow control is exercised on every burst.
    cluster = await TestCluster.start({ settings: { inflightPerConnectionMax: 16 } });
    leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
    await cluster.client(leader).call('CreateTopic', { name: 'stream', queues: 4 });
  });
  // On a loaded machine leadership may move between tests: each starts from the group's leader now.
  beforeEach(async () => {
    leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
  });
  after(async () => cluster?.stop());

  test('many requests on one stream are answered in order, each with its client sequence and its offsets', async () => {
    const stream = openStream(cluster.client(leader).raw);
    const { answers, ended } = collect(stream);
    for (let i = 1; i <= 200; i++) stream.write({ clientSequence: i, request: request('stream', 0, [`a${i}-0`, `a${i}-1`]) });
    stream.end();
    const status = await ended;
    assert.equal(status.code, grpc.status.OK, status.details);
    assert.deepEqual(
      answers.map((a) => Number(a.clientSequence)),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      answers.map((a) => Number(a.result.baseOffset)),
      Array.from({ length: 200 }, (_, i) => 2 * i),
    );
    const bodies = await readAll(cluster.client(leader), 'stream', 0, 0, 400);
    assert.deepEqual(bodies.slice(0, 4), ['a1-0', 'a1-1', 'a2-0', 'a2-1']);
  });

  test('each request gets the unary checks, answered in place; the requests after a refused one are served', async () => {
    const stream = openStream(cluster.client(leader).raw);
    const { answers, ended } = collect(stream);
    const requests: Wire[] = [
      request('stream', 1, ['ok-1']),
      request('nope', 0, ['x']),
      request('stream', 9, ['x']),
      { topic: 'stream', queue: 1, ack: 3, messages: [] },
      request('stream', 1, ['x'], { ack: 7 }),
      { topic: 'stream', queue: 1, ack: 3, messages: [{ body: Buffer.alloc(4 * 1024 * 1024 + 1) }] },
      request('stream', 1, ['ok-2']),
    ];
    requests.forEach((r, i) => stream.write({ clientSequence: i + 1, request: r }));
    stream.write({ clientSequence: requests.length + 1 }); // no request at all
    stream.end();
    assert.equal((await ended).code, grpc.status.OK);
    const codes = answers.map((a) => (a.error ? `${a.error.code}: ${a.error.details}` : `ok ${a.result.baseOffset}`));
    assert.match(codes[0]!, /^ok 0$/);
    assert.match(codes[1]!, new RegExp(`^${grpc.status.NOT_FOUND}: topic "nope" does not exist`));
    assert.match(codes[2]!, new RegExp(`^${grpc.status.NOT_FOUND}: .*no queue 9`));
    assert.match(codes[3]!, new RegExp(`^${grpc.status.INVALID_ARGUMENT}: messages is empty`));
    assert.match(codes[4]!, new RegExp(`^${grpc.status.INVALID_ARGUMENT}: ack 7 is not a known level`));
    assert.match(codes[5]!, new RegExp(`^${grpc.status.INVALID_ARGUMENT}: messages\\[0\\] is 4194305 bytes, over the limit of 4194304 \\(messageBytesMax\\)`));
    assert.match(codes[6]!, /^ok 1$/);
    assert.match(codes[7]!, new RegExp(`^${grpc.status.INVALID_ARGUMENT}: ProduceStream: request is required`));
  });

  test('a follower refuses each request as not the leader, naming the leader', async () => {
    const follower = cluster.groupBrokers('g1').find((b) => b.id !== leader)!;
    // Bounded retries: a follower may not know the leader for a moment (and a loaded box may
    // hold an election); each round is a fresh stream with one request.
    const error = await waitFor(
      'a redirect naming the leader',
      15_000,
      async () => {
        const stream = openStream(cluster.client(follower.id).raw);
        const { answers, ended } = collect(stream);
        stream.write({ clientSequence: 1, request: request('stream', 0, ['x']) });
        stream.end();
        await ended;
        const e = answers[0]?.error as Wire | undefined;
        return e?.leaderId ? e : undefined;
      },
      200,
    );
    assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
    assert.match(String(error.details), /is not the leader/);
    assert.ok(
      cluster.groupBrokers('g1').some((b) => b.id === error.leaderId && b.id !== follower.id),
      `names a broker of g1: ${String(error.leaderId)}`,
    );
  });

  test('an idempotent producer pipelining with a sequence gap is told so (sequence_gap), and nothing is stored for it', async () => {
    const stream = openStream(cluster.client(leader).raw);
    const { answers, ended } = collect(stream);
    stream.write({ clientSequence: 1, request: request('stream', 2, ['p0', 'p1'], { producerId: 4242, sequence: 0 }) });
    stream.write({ clientSequence: 2, request: request('stream', 2, ['p5'], { producerId: 4242, sequence: 5 }) });
    stream.write({ clientSequence: 3, request: request('stream', 2, ['p0', 'p1'], { producerId: 4242, sequence: 0 }) });
    stream.end();
    await ended;
    assert.equal(answers[0]!.result.baseOffset, 0);
    assert.equal(answers[1]!.error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(answers[1]!.error.sequenceGap, true);
    assert.equal(answers[2]!.result.duplicate, true);
  });

  test('a client_sequence out of order ends the stream with INVALID_ARGUMENT', async () => {
    const stream = openStream(cluster.client(leader).raw);
    const { ended } = collect(stream);
    stream.write({ clientSequence: 1, request: request('stream', 3, ['x']) });
    stream.write({ clientSequence: 3, request: request('stream', 3, ['y']) });
    const status = await ended;
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, /client_sequence 3 where 2 was expected/);
  });

  test('a client that writes thousands of requests before reading any answer gets every answer, in order', async () => {
    // (The broker's own bound on what it takes from a stream is unit-tested in
    // test/rpc/produce-stream-session.test.ts; here, the whole path under a burst.)
    const stream = openStream(cluster.client(leader).raw);
    const total = 3000;
    let refusedWrites = 0;
    for (let i = 1; i <= total; i++)
      if (!stream.write({ clientSequence: i, request: { topic: 'stream', queue: 3, ack: 3, messages: [{ body: Buffer.alloc(100, 0x62) }] } })) refusedWrites++;
    stream.end();
    assert.ok(refusedWrites > 0, 'the client saw backpressure (write() returned false)');
    await sleep(300);
    const { answers, ended } = collect(stream);
    assert.equal((await ended).code, grpc.status.OK);
    assert.equal(answers.length, total);
    assert.ok(answers.every((a, i) => Number(a.clientSequence) === i + 1 && a.result));
    assert.ok(answers.every((a, i) => i === 0 || Number(a.result.baseOffset) === Number(answers[i - 1]!.result.baseOffset) + 1));
  });

  test('a stream cut mid-way loses no acknowledged request and leaves no half batch', async () => {
    const stream = openStream(cluster.client(leader).raw);
    const acked: number[] = [];
    stream.on('data', (a: Wire) => {
      if (a.result) acked.push(Number(a.result.baseOffset));
    });
    stream.on('error', () => undefined);
    const batch = 10;
    const begin = Number((await cluster.client(leader).call('DescribeTopic', { name: 'stream' })).queues[1].highWatermark);
    for (let i = 1; i <= 300; i++)
      stream.write({
        clientSequence: i,
        request: request(
          'stream',
          1,
          Array.from({ length: batch }, (_, j) => `c${i}-${j}`),
        ),
      });
    await waitFor('some answers', 10_000, () => (acked.length >= 20 ? true : undefined), 1);
    stream.cancel();
    await sleep(500); // requests already proposed finish committing
    const end = Number((await cluster.client(leader).call('DescribeTopic', { name: 'stream' })).queues[1].highWatermark);
    const bodies = await readAll(cluster.client(leader), 'stream', 1, begin, end);
    assert.equal(bodies.length % batch, 0, 'whole batches only');
    for (let b = 0; b < bodies.length; b += batch) {
      const [request0] = bodies[b]!.split('-');
      assert.deepEqual(
        bodies.slice(b, b + batch),
        Array.from({ length: batch }, (_, j) => `${request0}-${j}`),
        'each batch whole and in order',
      );
    }
    for (const offset of acked) assert.ok(offset + batch <= end, `acknowledged batch at ${offset} is stored`);
  });
});

describe('ProduceStream with access keys', { timeout: 120_000 }, () => {
  let cluster: SecureCluster;
  before(async () => {
    cluster = await SecureCluster.start({ tls: false });
    const leader = await cluster.leaderOf('g1');
    const client = cluster.rawClient(leader.clientAddress);
    await cluster.call(client, 'CreateTopic', { name: 'orders.eu', queues: 1 }, cluster.signer(cluster.keys.admin));
    await cluster.call(client, 'CreateTopic', { name: 'private', queues: 1 }, cluster.signer(cluster.keys.admin));
  });
  after(async () => cluster?.stop());

  test('a stream without a valid signature is refused UNAUTHENTICATED, like the unary call', async () => {
    const leader = await cluster.leaderOf('g1');
    const stream = openStream(cluster.rawClient(leader.clientAddress));
    const { answers, ended } = collect(stream);
    stream.write({ clientSequence: 1, request: request('orders.eu', 0, ['x']) });
    const status = await ended;
    assert.equal(status.code, grpc.status.UNAUTHENTICATED);
    assert.equal(answers.length, 0);
  });

  test('each request is authorized for its topic: a refused one is answered PERMISSION_DENIED in place, the others are stored', async () => {
    const leader = await cluster.leaderOf('g1');
    const metadata = new grpc.Metadata();
    signCall(metadata, cluster.signer(cluster.keys.app), '/mamba.v1.Mamba/ProduceStream');
    const stream = openStream(cluster.rawClient(leader.clientAddress), metadata);
    const { answers, ended } = collect(stream);
    stream.write({ clientSequence: 1, request: request('orders.eu', 0, ['ok']) });
    stream.write({ clientSequence: 2, request: request('private', 0, ['secret']) });
    stream.write({ clientSequence: 3, request: request('orders.eu', 0, ['ok-too']) });
    stream.end();
    assert.equal((await ended).code, grpc.status.OK);
    assert.deepEqual(
      answers.map((a) => Number(a.clientSequence)),
      [1, 2, 3],
    );
    assert.ok(answers[0]!.result && answers[2]!.result);
    assert.equal(answers[1]!.error.code, grpc.status.PERMISSION_DENIED);
    assert.match(answers[1]!.error.details, /may not produce topic "private"/);
  });
});
