// The client of the many-hosts test (many-hosts.test.ts). The test runs it inside the client's own
// network namespace (`ip netns exec`), so its only way to the brokers is the hosts' network. It
// uses the SDK alone and prints one JSON object a line on stdout; two modes:
//
//   produce --brokers A,B,... --topic T --queues Q --tag X --rate R --messages-max N
//     An idempotent SDK Producer with quorum acks sends until its stdin ends or N messages were
//     sent, at most R a second and at most `windowMax` unacknowledged at once. Even messages are
//     pinned to queue (k mod Q), so each queue has an order to keep (`sequence`: the k-th message
//     pinned to that queue); odd ones go round-robin (the SDK picks the queue and moves a batch to
//     another group's queue when a group stays unavailable), which promises no order (`sequence`
//     null). Lines: {"ack": Acknowledgement} per acknowledged message, {"failed": {id, error}}
//     per message the SDK gave up on, then {"done": {sent, acked, failed, dropped}}.
//
//   read --brokers A,B,... --topic T
//     Every queue of the topic read back from each replica of its group, leader first, through
//     the SDK's read and nothing else (the chaos checker's readReplica): one
//     {"read": {queue, group, replica, role, ids}} line per queue and replica, then {"done": {...}}.
import { Command } from 'commander';
import { MambaClient } from '../../src/client/client.js';
import { Producer } from '../../src/client/producer.js';
import { readReplica } from '../../scripts/chaos/checker.js';
import { messageBody, type Acknowledgement } from '../../scripts/chaos/workload.js';

/** Messages sent and not yet settled, at most. */
const windowMax = 64;
/** A batch to a broker that went silent (cut off) is given up and retried after this long. */
const requestTimeoutMs = 2000;
/** After stdin ends: how long the producer may take to deliver what it holds before it refuses the rest. */
const closeTimeoutMs = 30_000;
/** A follower serves up to the high watermark it has learned, which trails the leader's briefly. */
const followerWaitMsMax = 5000;

function print(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function brokerList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function count(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name}: ${text} is out of range ${min}..${max}`);
  return value;
}

interface ProduceOptions {
  brokers: string;
  topic: string;
  queues: string;
  tag: string;
  rate: string;
  messagesMax: string;
}

/** Wakes whoever waits for a send to settle or for stdin to end. */
class Signal {
  private waiters: Array<() => void> = [];

  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, timeoutMs));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  fire(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}

async function produce(options: ProduceOptions): Promise<void> {
  const queues = count('--queues', options.queues, 1, 1024);
  const ratePerS = count('--rate', options.rate, 1, 100_000);
  const messagesMax = count('--messages-max', options.messagesMax, 1, 1_000_000);
  const producer = new Producer({ brokers: brokerList(options.brokers), ack: 'quorum', idempotent: true, requestTimeoutMs });
  const signal = new Signal();
  let stopping = false;
  process.stdin.on('end', () => {
    stopping = true;
    signal.fire();
  });
  process.stdin.resume();
  const pinnedCounts = new Array<number>(queues).fill(0);
  const settled: Array<Promise<void>> = [];
  let outstanding = 0;
  let [acked, failed] = [0, 0];
  const startMs = Date.now();
  let sent = 0;
  while (sent < messagesMax && !stopping) {
    const dueMs = startMs + (sent * 1000) / ratePerS;
    if (outstanding >= windowMax || Date.now() < dueMs) {
      await signal.wait(outstanding >= windowMax ? requestTimeoutMs : dueMs - Date.now());
      continue;
    }
    const k = sent >> 1;
    const pinnedQueue = sent % 2 === 0 ? k % queues : null;
    const sequence = pinnedQueue === null ? null : pinnedCounts[pinnedQueue]!++;
    const id = pinnedQueue === null ? `${options.tag}-r${k}` : `${options.tag}-p${pinnedQueue}-${sequence}`;
    const body = messageBody(id, pinnedQueue ?? -1, sent);
    sent++;
    outstanding++;
    const sending = producer.send(options.topic, { body }, pinnedQueue === null ? {} : { queue: pinnedQueue });
    settled.push(
      sending
        .then(
          (result) => {
            acked++;
            const ack: Acknowledgement = { queue: result.queue, offset: result.offset, id, sequence, atMs: Date.now() };
            print({ ack });
          },
          (error: Error) => {
            failed++;
            print({ failed: { id, error: error.message } });
          },
        )
        .finally(() => {
          outstanding--;
          signal.fire();
        }),
    );
  }
  await producer.close(closeTimeoutMs);
  await Promise.all(settled);
  print({ done: { sent, acked, failed, dropped: producer.stats().droppedMessages } });
}

async function read(options: { brokers: string; topic: string }): Promise<void> {
  const brokers = brokerList(options.brokers);
  const admin = new MambaClient({ brokers, requestTimeoutMs: 5000, retry: { attemptsMax: 5, backoffMsInitial: 100 } });
  // One attempt per read, so a replica's answer is its own and never another broker's.
  const reader = new MambaClient({ brokers, requestTimeoutMs: 5000, retry: { attemptsMax: 1 } });
  try {
    const topic = await admin.retry(() => admin.describeTopic(options.topic));
    const groups = await admin.retry(() => admin.describeCluster());
    let lines = 0;
    for (const queue of topic.queues) {
      const group = groups.find((g) => g.id === queue.group);
      if (!group?.leaderId) throw new Error(`queue ${queue.queue}: group ${queue.group} has no leader (${JSON.stringify(groups)})`);
      const replicas = [...group.replicas].sort((a, b) => Number(b.id === group.leaderId) - Number(a.id === group.leaderId));
      let leaderLength = 0;
      for (const replica of replicas) {
        const ids = await readReplica(reader, replica.address, options.topic, queue.queue, leaderLength, followerWaitMsMax);
        const role = replica.id === group.leaderId ? 'leader' : 'follower';
        if (role === 'leader') leaderLength = ids.length;
        print({ read: { queue: queue.queue, group: group.id, replica: replica.id, role, ids } });
        lines++;
      }
    }
    print({ done: { queues: topic.queues.length, lines } });
  } finally {
    admin.close();
    reader.close();
  }
}

const program = new Command().name('many-hosts-client').exitOverride();
program
  .command('produce')
  .requiredOption('--brokers <list>')
  .requiredOption('--topic <name>')
  .requiredOption('--queues <n>')
  .requiredOption('--tag <text>')
  .requiredOption('--rate <perSecond>')
  .requiredOption('--messages-max <n>')
  .action(produce);
program.command('read').requiredOption('--brokers <list>').requiredOption('--topic <name>').action(read);

program.parseAsync().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`many-hosts-client: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
