// The chaos workload: one sequential producer per queue sends unique, numbered messages, one
// message per request, with quorum acks, and records every acknowledgement (queue, offset, id,
// time). A background reader follows every queue on random brokers and records what each
// (queue, offset) held, so a value that later changes is caught.
//
// No blind retries. The SDK client is built with a single attempt, and this loop decides:
// - a refusal that proves nothing was stored (not_leader, resource_exhausted: the broker refused
//   before appending) is retried with the same id;
// - any other failure (timeout, unavailable, lost leadership before commit, a dropped
//   connection) leaves the outcome unknown: the id is recorded as "unknown", never counted as
//   acknowledged, and the next attempt goes out under a NEW id.
// So one id is sent at most once after any failure whose outcome is unknown, and an id stored
// twice can only come from the brokers, not from a client retry.
import { MambaClient } from '../../src/client/client.js';
import type { MambaError } from '../../src/errors.js';
import { sleep } from '../lib/cluster.js';

export interface Acknowledgement {
  queue: number;
  offset: number;
  id: string;
  /**
   * Position in the order this queue was promised to keep (0, 1, 2, ...): here the order of
   * acknowledgements of the one sequential producer per queue. Null for a message that carries no
   * order promise (sent round-robin, the queue chosen by the SDK): only its place is checked.
   */
  sequence: number | null;
  atMs: number;
}

/** The (queue, offset) → id values the background reader saw, and any that changed between reads. */
export interface Observation {
  values: Map<string, string>;
  changed: Array<{ queue: number; offset: number; before: string; after: string; servedBy: string }>;
  readCount: number;
}

const definiteRefusals = new Set(['not_leader', 'resource_exhausted']);
const sendTimeoutMs = 2000;
const refusalBackoffMs = 20;
const readBatchMax = 500;

export function messageBody(id: string, queue: number, number: number): string {
  return JSON.stringify({ id, queue, number });
}

export function idOfBody(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { id?: unknown };
    return typeof parsed.id === 'string' ? parsed.id : `<no id: ${body.toString('utf8').slice(0, 40)}>`;
  } catch {
    return `<not json: ${body.toString('hex').slice(0, 40)}>`;
  }
}

export class Workload {
  readonly acks: Acknowledgement[] = [];
  readonly unknownIds = new Set<string>();
  readonly observation: Observation = { values: new Map(), changed: [], readCount: 0 };
  refusalCount = 0;
  private readonly producer: MambaClient;
  private readonly reader: MambaClient;
  private stopping = false;
  private loops: Array<Promise<void>> = [];

  constructor(
    private readonly addresses: string[],
    private readonly topic: string,
    private readonly queues: number,
    private readonly runTag: string,
  ) {
    this.producer = new MambaClient({ brokers: addresses, requestTimeoutMs: sendTimeoutMs, retry: { attemptsMax: 1 } });
    this.reader = new MambaClient({ brokers: addresses, requestTimeoutMs: sendTimeoutMs, retry: { attemptsMax: 2, backoffMsInitial: 20, backoffMsMax: 100 } });
  }

  start(): void {
    for (let queue = 0; queue < this.queues; queue++) this.loops.push(this.produceLoop(queue));
    this.loops.push(this.readLoop());
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
    this.producer.close();
    this.reader.close();
  }

  private async produceLoop(queue: number): Promise<void> {
    let number = 0;
    let sequence = 0;
    while (!this.stopping) {
      const id = `${this.runTag}-q${queue}-n${number}`;
      const outcome = await this.sendOnce(queue, id, number);
      if (outcome === 'refused') {
        this.refusalCount++;
        await sleep(refusalBackoffMs);
        continue; // same id: nothing was stored
      }
      number++;
      if (outcome === 'unknown') {
        this.unknownIds.add(id);
        await sleep(refusalBackoffMs);
      } else {
        this.acks.push({ queue, offset: outcome.offset, id, sequence: sequence++, atMs: Date.now() });
      }
    }
  }

  private async sendOnce(queue: number, id: string, number: number): Promise<{ offset: number } | 'refused' | 'unknown'> {
    try {
      const result = await this.producer.send(this.topic, [{ body: messageBody(id, queue, number) }], { queue, ack: 'quorum' });
      if (result.count !== 1) throw new Error(`send of one message acknowledged ${result.count}`);
      return { offset: result.baseOffset };
    } catch (error) {
      return definiteRefusals.has((error as MambaError).kind) ? 'refused' : 'unknown';
    }
  }

  /** Follows every queue from a random broker each round and records the values it reads. */
  private async readLoop(): Promise<void> {
    const nextOffsets = new Array<number>(this.queues).fill(0);
    let round = 0;
    while (!this.stopping) {
      const queue = round % this.queues;
      const address = this.addresses[Math.floor(Math.random() * this.addresses.length)]!;
      round++;
      try {
        const result = await this.reader.read(this.topic, queue, nextOffsets[queue]!, { messagesMax: readBatchMax, address });
        this.observation.readCount++;
        for (const message of result.messages) this.observe(queue, message.offset, idOfBody(message.body), result.servedBy);
        if (result.messages.length > 0) nextOffsets[queue] = result.nextOffset;
        // Now and then read an old stretch again, from wherever the broker is.
        if (round % 7 === 0 && nextOffsets[queue]! > 0) nextOffsets[queue] = Math.floor(Math.random() * nextOffsets[queue]!);
      } catch {
        // a broker that is down, paused or cut off: try another one next round
      }
      await sleep(queue === this.queues - 1 ? 100 : 0);
    }
  }

  private observe(queue: number, offset: number, id: string, servedBy: string): void {
    const key = `${queue}:${offset}`;
    const before = this.observation.values.get(key);
    if (before === undefined) this.observation.values.set(key, id);
    else if (before !== id) this.observation.changed.push({ queue, offset, before, after: id, servedBy });
  }
}
