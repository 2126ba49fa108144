// Loads proto/*.proto once and builds gRPC service definitions whose (de)serializers are the
// protobufjs message types themselves: `encode(obj).finish()` and `decode(bytes)`, with no
// object conversion pass. Measured with `node dist/scripts/bench/codec-bench.js`: a Produce batch
// of 100 × 1 KiB costs ~105 µs this way against ~195 µs through @grpc/proto-loader's
// serializers, so proto-loader is used only to feed server reflection.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { ServiceDefinition, MethodDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { encodeConsumeResponse } from './consume-response.js';

export const protoDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');
export const protoFiles = ['mamba.proto', 'raft.proto'];

// 64-bit fields decode to plain numbers: offsets and ids stay below 2^53 (asserted where made).
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

let root: protobuf.Root | null = null;

export function protoRoot(): protobuf.Root {
  if (!root) root = protobuf.loadSync(protoFiles.map((f) => join(protoDir, f)));
  return root;
}

export function messageType(name: string): protobuf.Type {
  return protoRoot().lookupType(name);
}

/** A grpc-js service definition for `service` (e.g. "mamba.v1.Mamba") with direct codecs. */
export function serviceDefinition(service: string): ServiceDefinition {
  const svc = protoRoot().lookupService(service);
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of svc.methodsArray) {
    method.resolve();
    const requestType = method.resolvedRequestType!;
    const responseType = method.resolvedResponseType!;
    definition[method.name] = {
      path: `/${service}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: (value: unknown) => asBuffer(requestType.encode(value as protobuf.Message).finish()),
      requestDeserialize: (bytes: Buffer) => decodeRequest(requestType, bytes),
      responseSerialize: responseSerializerOf(responseType),
      responseDeserialize: (bytes: Buffer) => responseType.decode(bytes),
      originalName: method.name[0]!.toLowerCase() + method.name.slice(1),
    };
  }
  return definition as ServiceDefinition;
}

/**
 * Hand encoders by message type, tried first; one that returns null leaves the value to
 * protobufjs. consume-response.ts says why ConsumeResponse has one.
 */
const handEncoders: ReadonlyMap<string, (value: never) => Buffer | null> = new Map([['mamba.v1.ConsumeResponse', encodeConsumeResponse]]);

function responseSerializerOf(type: protobuf.Type): (value: unknown) => Buffer {
  const encode = (value: unknown): Buffer => asBuffer(type.encode(value as protobuf.Message).finish());
  const hand = handEncoders.get(type.fullName.replace(/^\./, ''));
  if (hand === undefined) return encode;
  return (value: unknown) => hand(value as never) ?? encode(value);
}

/**
 * A request whose bytes are not a valid message. The server's deserializer returns it instead of
 * throwing (grpc-js would answer INTERNAL); the security interceptor answers INVALID_ARGUMENT.
 */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

function decodeRequest(type: protobuf.Type, bytes: Buffer): unknown {
  try {
    return type.decode(bytes);
  } catch (error) {
    return new MalformedRequest((error as Error).message);
  }
}

/** protobufjs hands out Buffers on Node already; wrap (never copy) anything else. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The package definition server reflection needs (grpcurl lists and calls with no .proto). */
export function reflectionPackageDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(
    protoFiles.map((f) => join(protoDir, f)),
    { keepCase: false, longs: Number, defaults: true },
  );
}
