// The call guard's limits on a real gRPC server in this process: connections per client address
// and calls in flight per connection, each refused with RESOURCE_EXHAUSTED beyond its bound; and
// a request over the size limit (grpc.max_receive_message_length).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/protocol/protos.js';
import { CallGuard } from '../../src/rpc/security-interceptor.js';
import { ConnectionLimiter, listen } from '../../src/rpc/listener.js';
import { Logger } from '../../src/replica/logger.js';
import { freePort, waitFor, type Wire } from './secure-cluster.js';

const Client = grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba');

async function serve(options: { connectionsPerClientMax: number; inflightPerConnectionMax: number; requestBytesMax: number }, hold: Promise<void>) {
  const limiter = new ConnectionLimiter(options.connectionsPerClientMax);
  const lines: string[] = [];
  const guard = new CallGuard({
    authenticator: null,
    permissions: null,
    brokerKeyId: null,
    limiter,
    inflightPerConnectionMax: options.inflightPerConnectionMax,
    logger: new Logger('t', 'g', (l) => lines.push(l)),
  });
  const server = new grpc.Server({ interceptors: [guard.interceptor], 'grpc.max_receive_message_length': options.requestBytesMax });
  server.addService(serviceDefinition('mamba.v1.Mamba'), {
    ListTopics: (_call: unknown, callback: grpc.sendUnaryData<Wire>) => {
      void hold.then(() => callback(null, { topics: [] }));
    },
    Produce: (_call: unknown, callback: grpc.sendUnaryData<Wire>) => callback(null, {}),
  });
  const port = await freePort();
  const listening = await listen(server, grpc.ServerCredentials.createInsecure(), '127.0.0.1', port, limiter);
  return {
    address: `127.0.0.1:${port}`,
    guard,
    stop: () => {
      listening.close();
      server.forceShutdown();
    },
  };
}

function call(client: grpc.Client, method: string, request: Wire = {}): Promise<grpc.status> {
  return new Promise((resolve) =>
    (client as unknown as Record<string, (r: Wire, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void>)[method]!.call(
      client,
      request,
      { deadline: Date.now() + 5000 },
      (e) => resolve(e ? e.code : grpc.status.OK),
    ),
  );
}

test('calls beyond inflightPerConnectionMax on one connection get RESOURCE_EXHAUSTED; the count returns to zero', async () => {
  let release!: () => void;
  const s = await serve(
    { connectionsPerClientMax: 10, inflightPerConnectionMax: 3, requestBytesMax: 1024 * 1024 },
    new Promise((r) => {
      release = r;
    }),
  );
  const client = new Client(s.address, grpc.credentials.createInsecure());
  try {
    let settled = 0;
    const calls = Array.from({ length: 7 }, () =>
      call(client, 'ListTopics').then((code) => {
        settled++;
        return code;
      }),
    );
    // Three calls are held by the handler; the other four are refused at once.
    await waitFor('the calls beyond the limit to be refused', 5000, () => (settled >= 4 ? true : undefined), 5);
    assert.equal(settled, 4);
    release();
    const codes = await Promise.all(calls);
    assert.equal(codes.filter((c) => c === grpc.status.OK).length, 3, codes.map((c) => grpc.status[c]).join());
    assert.equal(codes.filter((c) => c === grpc.status.RESOURCE_EXHAUSTED).length, 4);
    assert.equal(await call(client, 'ListTopics'), grpc.status.OK);
  } finally {
    client.close();
    s.stop();
  }
});

test('connections beyond connectionsPerClientMax from one address get RESOURCE_EXHAUSTED; oversized requests too', async () => {
  const s = await serve({ connectionsPerClientMax: 2, inflightPerConnectionMax: 10, requestBytesMax: 64 * 1024 }, Promise.resolve());
  // A local subchannel pool per client: each is its own TCP connection.
  const clients = Array.from({ length: 4 }, () => new Client(s.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  try {
    const codes: grpc.status[] = [];
    for (const c of clients) codes.push(await call(c, 'ListTopics'));
    assert.deepEqual(
      codes.map((c) => grpc.status[c]),
      ['OK', 'OK', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED'],
    );
    assert.equal(await call(clients[0]!, 'Produce', { topic: 't', messages: [{ body: Buffer.alloc(100 * 1024) }] }), grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(await call(clients[0]!, 'Produce', { topic: 't', messages: [{ body: Buffer.alloc(1024) }] }), grpc.status.OK);
  } finally {
    for (const c of clients) c.close();
    s.stop();
  }
});
