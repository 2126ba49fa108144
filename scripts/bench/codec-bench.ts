// Measures the encode+decode cost of one Produce batch (100 messages of 1 KiB) through the two
// ways gRPC can carry our protos: @grpc/proto-loader's (de)serializers (protobufjs reflection
// plus object conversion) and protobufjs message types used directly (no object conversion).
// Prints progress to stderr and one JSON line to stdout.
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const protoDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');
const protoFile = join(protoDir, 'mamba.proto');

function request(): Record<string, unknown> {
  const messages = [];
  for (let i = 0; i < 100; i++) {
    messages.push({
      key: Buffer.from(`key-${i}`),
      headers: [{ key: 'traceparent', value: Buffer.from('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01') }],
      body: Buffer.alloc(1024, i),
      timestampMs: Date.now(),
    });
  }
  return { topic: 'orders', queue: 3, messages, ack: 3, producerId: 7, sequence: 100 };
}

function time(label: string, rounds: number, fn: () => void): number {
  for (let i = 0; i < 200; i++) fn();
  const start = performance.now();
  for (let i = 0; i < rounds; i++) fn();
  const usPerOp = ((performance.now() - start) * 1000) / rounds;
  process.stderr.write(`${label}: ${usPerOp.toFixed(1)} µs per batch\n`);
  return usPerOp;
}

const rounds = 5000;
const definition = protoLoader.loadSync(protoFile, { longs: Number, enums: Number, defaults: true, oneofs: true, keepCase: false });
const produce = (definition['mamba.v1.Mamba'] as protoLoader.ServiceDefinition).Produce;
if (!produce) throw new Error('proto/mamba.proto has no Produce method');
const value = request();
const loaderUs = time('proto-loader serialize+deserialize', rounds, () => {
  produce.requestDeserialize(produce.requestSerialize(value));
});

const root = protobuf.loadSync(protoFile);
const ProduceRequest = root.lookupType('mamba.v1.ProduceRequest');
const message = ProduceRequest.fromObject(value);
const directUs = time('protobufjs encode+decode', rounds, () => {
  ProduceRequest.decode(ProduceRequest.encode(message).finish());
});
console.log(
  JSON.stringify({ bench: 'codec', proto_loader_us: +loaderUs.toFixed(1), protobufjs_us: +directUs.toFixed(1), ratio: +(loaderUs / directUs).toFixed(2) }),
);
