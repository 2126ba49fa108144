// Our side of `make bench`: three brokers on 127.0.0.1 started by the shared launcher with the
// broker's default settings (flush: async at the default interval, so an ack means 2 of 3 hold
// the message in the page cache), one group, and the `BenchSystem` calls the workloads use:
//   raw protocol   one message per request, sent straight to the leader with no retry: the unary
//                  Produce (a plain gRPC client; the SDK's connection pool only carries it), or
//                  with BENCH_OUR_RAW=stream each request on one ProduceStream (proto/mamba.proto);
//   own client     the SDK Producer with its defaults (it may batch inside), bounded retries;
//   reads          the SDK's read by offset on the leader (stateless: nothing is written), answered
//                  in RecordBlocks (the stored bytes; proto/mamba.proto) and decoded by the SDK.
import type * as grpc from '@grpc/grpc-js';
import { MambaClient, messageToWire } from '../../src/client/client.js';
import { AckLevel, type ProduceRequest, type ProduceStreamRequest, type ProduceStreamResponse } from '../../src/protocol/messages.js';
import { Producer } from '../../src/client/producer.js';
import { defaultBrokerSettings } from '../../src/config/cluster.js';
import type { FlushPolicy } from '../../src/log/index.js';
import { LocalCluster } from '../lib/cluster.js';
import { waitFor } from './bench-lib.js';
import type { BenchSystem, Send, Target } from './workloads.js';

const topics: Record<Target, string> = { sequential: 'seq', load: 'load', failover: 'fail' };
const ackQuorum = AckLevel.quorum;
const requestTimeoutMs = 10_000;

/** Our raw protocol for (a) and (b): the unary Produce (default) or ProduceStream. */
export type OurRaw = 'unary' | 'stream';
export const ourRaw: OurRaw = (() => {
  const value = process.env.BENCH_OUR_RAW ?? 'unary';
  if (value !== 'unary' && value !== 'stream') throw new Error('BENCH_OUR_RAW must be unary or stream');
  return value;
})();

/**
 * One ProduceStream used as a plain client would: request i carries client_sequence i, answers
 * come back in order and settle the request with the same sequence. Every request is bounded by
 * the request timeout; a broken stream fails what waits, and the next request opens a new one.
 */
type Duplex = grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse>;

class ProduceStreamSender {
  private stream: Duplex | null = null;
  private nextSequence = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();

  constructor(private readonly open: () => Duplex) {}

  send(request: ProduceRequest): Promise<void> {
    const stream = this.stream ?? this.openStream();
    const clientSequence = this.nextSequence++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settle(clientSequence, new Error(`no answer within ${requestTimeoutMs} ms`)), requestTimeoutMs);
      this.waiting.set(clientSequence, { resolve, reject, timer });
      stream.write({ clientSequence, request });
    });
  }

  private openStream(): Duplex {
    const stream = this.open();
    stream.on('data', (reply: ProduceStreamResponse) => {
      const error = reply.error ? new Error(`produce refused: code ${reply.error.code} ${reply.error.details}`) : null;
      this.settle(reply.clientSequence, error);
    });
    const broken = (error: Error): void => {
      if (this.stream !== stream) return;
      this.stream = null;
      this.nextSequence = 1;
      for (const clientSequence of [...this.waiting.keys()]) this.settle(clientSequence, error);
    };
    stream.on('error', broken);
    stream.on('end', () => broken(new Error('ProduceStream ended')));
    this.stream = stream;
    return stream;
  }

  private settle(clientSequence: number, error: Error | null): void {
    const waiter = this.waiting.get(clientSequence);
    if (!waiter) return;
    this.waiting.delete(clientSequence);
    clearTimeout(waiter.timer);
    if (error) waiter.reject(error);
    else waiter.resolve();
  }

  close(): void {
    this.stream?.end();
    this.stream = null;
  }
}

/** A flush setting as the bench prints it; the bench runs the broker default unless told `sync`. */
export function ourFlushDescription(flush: FlushPolicy = defaultBrokerSettings.flush): string {
  return flush.mode === 'async'
    ? `async, fdatasync every ${flush.intervalMs} ms (broker default); acked once 2 of 3 hold it in the page cache`
    : 'sync (group commit: acked once 2 of 3 have it on disk after fdatasync)';
}

export class MambaSystem implements BenchSystem {
  readonly label = 'mamba';
  private readonly admin: MambaClient;
  private readonly raw: MambaClient;
  private readonly reader: MambaClient;
  private readonly closers: Array<() => Promise<void> | void> = [];
  private readonly readOffsets = new Map<string, number>();
  private leaderAddress = '';
  private produceStream: ProduceStreamSender | null = null;

  private constructor(
    private readonly local: LocalCluster,
    readonly partitions: number,
  ) {
    const brokers = local.brokers.map((b) => b.clientAddress);
    this.admin = new MambaClient({ brokers, requestTimeoutMs: 2000, retry: { attemptsMax: 50, backoffMsInitial: 20, backoffMsMax: 200 } });
    this.raw = new MambaClient({ brokers, requestTimeoutMs, retry: { attemptsMax: 1 } });
    this.reader = new MambaClient({ brokers, requestTimeoutMs, retry: { attemptsMax: 5, backoffMsInitial: 20, backoffMsMax: 200 } });
  }

  static async start(partitions: number, flush: FlushPolicy = defaultBrokerSettings.flush): Promise<MambaSystem> {
    const local = await LocalCluster.create({ name: 'mamba-bench', settings: { flush } });
    const system = new MambaSystem(local, partitions);
    try {
      local.launchAll();
      await system.leader();
      await system.admin.createTopic(topics.sequential, 1);
      await system.admin.createTopic(topics.load, partitions);
      await system.admin.createTopic(topics.failover, 1);
      await system.healthy();
    } catch (error) {
      await system.stop();
      throw error;
    }
    return system;
  }

  serverPids(): number[] {
    return this.local.brokers.map((b) => {
      const pid = b.process?.pid;
      if (pid === undefined) throw new Error(`broker ${b.id} has no process`);
      return pid;
    });
  }

  rawSender(target: Target): Send {
    const topic = topics[target];
    if (ourRaw === 'stream') {
      const stream = this.openProduceStream();
      return (body, partition) => stream.send({ topic, queue: partition, ack: ackQuorum, messages: [messageToWire({ body })] });
    }
    return async (body, partition) => {
      await this.raw.pool.call(
        this.leaderAddress,
        'Produce',
        { topic, queue: partition, ack: ackQuorum, messages: [messageToWire({ body })] },
        requestTimeoutMs,
      );
    };
  }

  /** One ProduceStream to the current leader, shared by the raw senders (as one connection would). */
  private openProduceStream(): ProduceStreamSender {
    this.produceStream?.close();
    const address = this.leaderAddress;
    const open = (): Duplex => this.raw.pool.produceStream(address);
    this.produceStream = new ProduceStreamSender(open);
    return this.produceStream;
  }

  clientSender(target: Target): { send: Send; close: () => Promise<void> } {
    const topic = topics[target];
    // Defaults but for `drop`: a batch no broker takes fails after the retries instead of waiting on.
    const producer = new Producer({ brokers: this.local.brokers.map((b) => b.clientAddress), ack: 'quorum', whenUnavailable: 'drop' });
    this.closers.push(() => producer.close(1000));
    return {
      send: async (body, partition) => {
        await producer.send(topic, { body }, { queue: partition });
      },
      close: () => producer.close(30_000),
    };
  }

  failoverSender(timeoutMs: number): Send {
    const client = new MambaClient({ brokers: this.local.brokers.map((b) => b.clientAddress), requestTimeoutMs: timeoutMs, retry: { attemptsMax: 1 } });
    this.closers.push(() => client.close());
    return async (body, partition) => {
      await client.send(topics.failover, [{ body }], { queue: partition });
    };
  }

  async openReaders(target: Target): Promise<void> {
    for (let partition = 0; partition < this.partitions; partition++) this.readOffsets.set(`${target}/${partition}`, 0);
  }

  async fetch(target: Target, partition: number, max: number): Promise<Uint8Array[]> {
    const key = `${target}/${partition}`;
    const reply = await this.reader.read(topics[target], partition, this.readOffsets.get(key) ?? 0, { messagesMax: max });
    this.readOffsets.set(key, reply.nextOffset);
    return reply.messages.map((m) => m.body);
  }

  async leader(): Promise<string> {
    return waitFor(
      'a Mamba leader',
      30_000,
      async () => {
        const group = (await this.admin.describeCluster())[0];
        return group?.leaderId ? group.leaderId : undefined;
      },
      20,
    );
  }

  async kill(id: string): Promise<void> {
    await this.local.kill(id);
  }

  restart(id: string): void {
    this.local.launch(id);
  }

  /** Every replica reachable and at the high watermark; the raw sender then targets the leader. */
  async healthy(): Promise<void> {
    const group = await waitFor(
      'every Mamba replica to catch up',
      60_000,
      async () => {
        const g = (await this.admin.describeCluster())[0];
        return g?.leaderId && g.replicas.length === 3 && g.replicas.every((r) => r.reachable && r.endOffset >= g.highWatermark) ? g : undefined;
      },
      50,
    );
    this.leaderAddress = this.local.broker(group.leaderId).clientAddress;
  }

  async stop(): Promise<void> {
    this.produceStream?.close();
    for (const close of this.closers.splice(0)) await Promise.resolve(close()).catch(() => undefined);
    this.admin.close();
    this.raw.close();
    this.reader.close();
    await this.local.stopAll();
  }
}
