// A thin promise wrapper over the raw gRPC client API, for integration tests: what "any gRPC
// client" sees, with no retries or routing of its own.
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/protocol/protos.js';

// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf objects; a typed request path (issue 12.4) replaces this
export type Wire = Record<string, any>;

export interface GroupView {
  id: string;
  leaderId: string;
  epoch: number;
  highWatermark: number;
  replicas: Array<{ id: string; role: string; endOffset: number; lagOffsets: number; lagMs: number; lastFetchAgeMs: number; reachable: boolean }>;
  advice: { replicaId: string; address: string; reason: string } | null;
}

const MambaClientConstructor = grpc.makeGenericClientConstructor(serviceDefinition('mamba.v1.Mamba'), 'Mamba');

export class MambaClient {
  readonly raw: grpc.Client;

  constructor(readonly address: string) {
    this.raw = new MambaClientConstructor(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  }

  call(method: string, request: Wire, timeoutMs = 10_000, metadata = new grpc.Metadata()): Promise<Wire> {
    const client = this.raw as unknown as Record<
      string,
      (r: Wire, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, w?: Wire) => void) => void
    >;
    return new Promise((resolve, reject) => {
      client[method]!.call(this.raw, request, metadata, { deadline: Date.now() + timeoutMs }, (error, reply) => (error ? reject(error) : resolve(reply ?? {})));
    });
  }

  async describeGroup(group: string, timeoutMs = 2000): Promise<GroupView | undefined> {
    const reply = await this.call('DescribeCluster', {}, timeoutMs);
    const g = (reply.groups as Wire[]).find((x) => x.id === group);
    if (!g) return undefined;
    return {
      id: g.id,
      leaderId: g.leaderId,
      epoch: Number(g.epoch),
      highWatermark: Number(g.highWatermark),
      advice: g.advice ?? null,
      replicas: (g.replicas as Wire[]).map((r) => ({
        id: r.id,
        role: r.role,
        endOffset: Number(r.endOffset),
        lagOffsets: Number(r.lagOffsets),
        lagMs: Number(r.lagMs),
        lastFetchAgeMs: Number(r.lastFetchAgeMs),
        reachable: !!r.reachable,
      })),
    };
  }

  /**
   * `idempotent`: the producer id and sequence of the batch's first message, so a retry after an
   * attempt whose outcome is unknown is answered with the offset already stored (never stored twice).
   */
  produce(topic: string, queue: number, bodies: Buffer[], ack = 3, timeoutMs = 10_000, idempotent?: { producerId: number; sequence: number }): Promise<Wire> {
    return this.call('Produce', { topic, queue, ack, messages: bodies.map((body) => ({ body })), ...idempotent }, timeoutMs);
  }

  consume(topic: string, queue: number, offset: number, messagesMax = 1000, waitMsMax = 0): Promise<Wire> {
    return this.call('Consume', { topic, queue, offset, messagesMax, waitMsMax }, waitMsMax + 10_000);
  }

  close(): void {
    this.raw.close();
  }
}

/** Reads a queue from `from` up to `end` (exclusive) and returns the bodies as strings. */
export async function readAll(client: MambaClient, topic: string, queue: number, from: number, end: number): Promise<string[]> {
  const bodies: string[] = [];
  let offset = from;
  for (let round = 0; round < 100_000 && offset < end; round++) {
    const reply = await client.consume(topic, queue, offset, 5000);
    const records = reply.records as Wire[];
    if (records.length === 0) break;
    for (const r of records) {
      if (Number(r.offset) !== offset) throw new Error(`expected offset ${offset}, got ${r.offset}`);
      bodies.push(Buffer.from(r.body).toString());
      offset++;
    }
  }
  return bodies;
}
