// The chaos checker: what the brokers store, read back from every replica, against what the
// workload was told. `countFindings` is pure (the unit tests feed it made-up histories);
// `readReplica` reads one queue from one broker, without falling back to another.
//
// Counted:
// - lost: an acknowledged id that the leader does not store;
// - duplicated: every extra copy of an id (acknowledged or of unknown outcome) in the leader's log;
// - reordered: per queue, an acknowledged message stored at a lower offset than the one
//   before it in the queue's promised order (`sequence`; the chaos workload has one sequential
//   producer per queue, so there ack order is send order); messages with no order promise
//   (`sequence` null) are left out;
// - changed: (queue, offset) places whose value differs between replicas, between a read during
//   the run and the final read, or from what the acknowledgement for that offset said;
// - replicaShort: acknowledged ids a caught-up follower does not store;
// - gaps: the longest time between consecutive acks of a queue, overall and around each fault.
import type { MambaClient } from '../../src/client/client.js';
import { sleep } from '../lib/cluster.js';
import { idOfBody, type Acknowledgement, type Observation } from './workload.js';

export interface FaultEvent {
  fault: string;
  detail: string;
  startMs: number;
  endMs: number;
}

export interface CheckInput {
  acks: Acknowledgement[];
  unknownIds: Set<string>;
  observation: Observation;
  /** Per replica (leader first), per queue, the ids stored at offsets 0, 1, 2, ... */
  replicas: Array<{ id: string; queues: string[][] }>;
  events: FaultEvent[];
}

export interface Findings {
  acked: number;
  lost: number;
  duplicated: number;
  reordered: number;
  changed: number;
  replicaShort: number;
  unknownSent: number;
  unknownStored: number;
  gapMsMax: number;
  /** The longest gap between consecutive acks overlapping each fault, in event order. */
  faultGapsMs: number[];
  /** A few concrete examples of each problem, for the report. */
  examples: string[];
}

const examplesMax = 20;

export function countFindings(input: CheckInput): Findings {
  const examples: string[] = [];
  const note = (text: string): void => {
    if (examples.length < examplesMax) examples.push(text);
  };
  const leader = input.replicas[0];
  if (!leader) throw new Error('countFindings needs at least the leader replica');
  const stored = new Map<string, { queue: number; offset: number; copies: number }>();
  leader.queues.forEach((ids, queue) =>
    ids.forEach((id, offset) => {
      const first = stored.get(id);
      if (first) {
        first.copies++;
        note(`duplicate: ${id} at ${queue}:${offset}, first at ${first.queue}:${first.offset}`);
      } else {
        stored.set(id, { queue, offset, copies: 1 });
      }
    }),
  );
  let duplicated = 0;
  for (const place of stored.values()) duplicated += place.copies - 1;
  const changedPlaces = new Set<string>();
  const lost = countLost(input.acks, stored, leader.queues, changedPlaces, note);
  compareReplicas(input.replicas, changedPlaces, note);
  for (const change of input.observation.changed) {
    changedPlaces.add(`${change.queue}:${change.offset}`);
    note(`changed during the run: ${change.queue}:${change.offset} was ${change.before}, then ${change.after} (served by ${change.servedBy})`);
  }
  for (const [place, id] of input.observation.values) {
    const [queue, offset] = place.split(':').map(Number) as [number, number];
    const final = leader.queues[queue]?.[offset];
    if (final !== undefined && final !== id) {
      changedPlaces.add(place);
      note(`changed: ${place} read as ${id} during the run, ${final} at the end`);
    }
  }
  const { gapMsMax, faultGapsMs } = gaps(input.acks, input.events);
  return {
    acked: input.acks.length,
    lost,
    duplicated,
    reordered: countReordered(input.acks, stored, note),
    changed: changedPlaces.size,
    replicaShort: countReplicaShort(input.acks, input.replicas, note),
    unknownSent: input.unknownIds.size,
    unknownStored: [...input.unknownIds].filter((id) => stored.has(id)).length,
    gapMsMax,
    faultGapsMs,
    examples,
  };
}

function countLost(
  acks: Acknowledgement[],
  stored: Map<string, { queue: number; offset: number }>,
  queues: string[][],
  changedPlaces: Set<string>,
  note: (text: string) => void,
): number {
  let lost = 0;
  for (const ack of acks) {
    if (!stored.has(ack.id)) {
      lost++;
      note(`lost: ${ack.id} acknowledged at ${ack.queue}:${ack.offset}`);
    }
    const atAckedOffset = queues[ack.queue]?.[ack.offset];
    if (atAckedOffset !== ack.id) {
      changedPlaces.add(`${ack.queue}:${ack.offset}`);
      note(`changed: ${ack.id} acknowledged at ${ack.queue}:${ack.offset}, which holds ${atAckedOffset ?? 'nothing'}`);
    }
  }
  return lost;
}

function compareReplicas(replicas: CheckInput['replicas'], changedPlaces: Set<string>, note: (text: string) => void): void {
  const leader = replicas[0]!;
  for (const replica of replicas.slice(1)) {
    replica.queues.forEach((ids, queue) =>
      ids.forEach((id, offset) => {
        const expected = leader.queues[queue]?.[offset];
        if (expected !== undefined && expected !== id) {
          changedPlaces.add(`${queue}:${offset}`);
          note(`changed: ${queue}:${offset} holds ${expected} on ${leader.id} and ${id} on ${replica.id}`);
        }
      }),
    );
  }
}

function countReordered(acks: Acknowledgement[], stored: Map<string, { queue: number; offset: number }>, note: (text: string) => void): number {
  let reordered = 0;
  const previousByQueue = new Map<number, { id: string; offset: number }>();
  const ordered = acks.filter((ack): ack is Acknowledgement & { sequence: number } => ack.sequence !== null);
  for (const ack of ordered.sort((a, b) => a.queue - b.queue || a.sequence - b.sequence)) {
    const place = stored.get(ack.id);
    if (!place) continue;
    const previous = previousByQueue.get(ack.queue);
    if (previous && (place.queue !== ack.queue || place.offset < previous.offset)) {
      reordered++;
      note(`reordered: ${ack.id} stored at ${place.queue}:${place.offset}, before ${previous.id} at ${ack.queue}:${previous.offset} acknowledged earlier`);
    }
    previousByQueue.set(ack.queue, { id: ack.id, offset: place.offset });
  }
  return reordered;
}

function countReplicaShort(acks: Acknowledgement[], replicas: CheckInput['replicas'], note: (text: string) => void): number {
  let short = 0;
  for (const replica of replicas.slice(1)) {
    const ids = new Set(replica.queues.flat());
    for (const ack of acks) {
      if (ids.has(ack.id)) continue;
      short++;
      note(`replica ${replica.id} lacks ${ack.id} acknowledged at ${ack.queue}:${ack.offset}`);
    }
  }
  return short;
}

function gaps(acks: Acknowledgement[], events: FaultEvent[]): { gapMsMax: number; faultGapsMs: number[] } {
  const byQueue = new Map<number, number[]>();
  for (const ack of acks) {
    const times = byQueue.get(ack.queue) ?? [];
    times.push(ack.atMs);
    byQueue.set(ack.queue, times);
  }
  let gapMsMax = 0;
  const faultGapsMs = events.map(() => 0);
  for (const times of byQueue.values()) {
    times.sort((a, b) => a - b);
    for (let i = 1; i < times.length; i++) {
      const [from, to] = [times[i - 1]!, times[i]!];
      gapMsMax = Math.max(gapMsMax, to - from);
      events.forEach((event, e) => {
        if (to >= event.startMs && from <= event.endMs) faultGapsMs[e] = Math.max(faultGapsMs[e]!, to - from);
      });
    }
  }
  return { gapMsMax, faultGapsMs };
}

/**
 * Every id stored in one queue of one broker, by offset; reads only from `address`. A follower
 * serves up to the high watermark it has learned, which trails the leader's briefly: while it
 * serves fewer than `lengthWanted` ids, it is asked again for up to `waitMsMax`.
 */
export async function readReplica(
  client: MambaClient,
  address: string,
  topic: string,
  queue: number,
  lengthWanted = 0,
  waitMsMax = 0,
  roundsMax = 10_000,
): Promise<string[]> {
  const ids: string[] = [];
  const deadlineMs = Date.now() + waitMsMax;
  for (let round = 0, failures = 0; round < roundsMax; round++) {
    try {
      const result = await client.read(topic, queue, ids.length, { messagesMax: 2000, address });
      if (result.messages.length === 0) {
        if (ids.length >= lengthWanted || Date.now() >= deadlineMs) return ids;
        await sleep(100);
        continue;
      }
      for (const message of result.messages) {
        if (message.offset !== ids.length) throw new Error(`${address} returned offset ${message.offset} where ${ids.length} was next`);
        ids.push(idOfBody(message.body));
      }
    } catch (error) {
      if (++failures > 20) throw new Error(`reading ${topic}/${queue} from ${address}: ${(error as Error).message}`);
      await sleep(100);
    }
  }
  throw new Error(`reading ${topic}/${queue} from ${address} did not end within ${roundsMax} rounds`);
}
