// MQTT topic names and filters ↔ our topics and queues (README "MQTT"):
//   publish  `orders/3`  → topic `orders`, queue 3
//            `orders`    → topic `orders`, the queue its message key hashes to (an MQTT 5 user
//                          property `key`), else the queue the MQTT topic name hashes to
//   deliver  a message of queue q of topic t is delivered under `t/q`, except to a filter of one
//            level (`orders`, `+`), which takes every queue of the topic and names it `t`
//   filters  `orders/+`, `orders/#`, `orders/2`, `+/2`, `#`, `orders`, `+`
// Anything else (more levels, `$` topics, shared subscriptions, partial wildcards) is refused.
// Pure functions: no I/O.
import { queueForKey } from '../../client/client.js';

/** Our topic names (src/broker/names.ts, repeated so the gateway needs no broker import). */
const topicNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/** A queue level: a decimal number without leading zeros, below the queue bound (1024). */
const queuePattern = /^(0|[1-9][0-9]{0,3})$/;

export type Destination = { topic: string; queue: number | null };

export type Refusal = { refused: 'invalid' | 'unsupported'; why: string };

export function isRefusal<T extends object>(value: T | Refusal): value is Refusal {
  return 'refused' in value;
}

/** Where a PUBLISH's topic name points (the queue is checked against the topic later). */
export function destinationOf(name: string): Destination | Refusal {
  const levels = name.split('/');
  const topic = levels[0]!;
  if (levels.length > 2) return { refused: 'invalid', why: `"${printable(name)}": a topic name is <topic> or <topic>/<queue>` };
  if (!topicNamePattern.test(topic)) return { refused: 'invalid', why: `"${printable(topic)}" is not a topic name (letters, digits, '.', '_', '-')` };
  if (levels.length === 1) return { topic, queue: null };
  const queue = levels[1]!;
  if (!queuePattern.test(queue)) return { refused: 'invalid', why: `"${printable(queue)}" is not a queue number` };
  return { topic, queue: Number(queue) };
}

/** The queue a message goes to: the named one, else its key's hash, else the MQTT topic name's hash. */
export function queueOf(destination: Destination, queues: number, mqttTopicName: string, key: Buffer | null): number | Refusal {
  if (destination.queue !== null) {
    if (destination.queue >= queues) return { refused: 'invalid', why: `topic "${destination.topic}" has queues 0..${queues - 1}, not ${destination.queue}` };
    return destination.queue;
  }
  return queueForKey(key && key.length > 0 ? key : mqttTopicName, queues);
}

export interface Filter {
  /** A topic name, or null for every topic. */
  topic: string | null;
  /** A queue, or null for every queue. */
  queue: number | null;
  /** One level (`orders`, `+`): deliveries are named after the topic alone. */
  topicOnly: boolean;
}

export function parseFilter(text: string): Filter | Refusal {
  if (text.startsWith('$share/')) return { refused: 'unsupported', why: 'shared subscriptions are not supported' };
  if (text === '#') return { topic: null, queue: null, topicOnly: false };
  const levels = text.split('/');
  if (levels.length > 2) return { refused: 'invalid', why: `"${printable(text)}": a filter has at most two levels, <topic>/<queue>` };
  const first = levels[0]!;
  if (first !== '+' && !topicNamePattern.test(first)) return { refused: 'invalid', why: `"${printable(first)}" is neither + nor a topic name` };
  const topic = first === '+' ? null : first;
  if (levels.length === 1) return { topic, queue: null, topicOnly: true };
  const second = levels[1]!;
  if (second === '+' || second === '#') return { topic, queue: null, topicOnly: false };
  if (!queuePattern.test(second)) return { refused: 'invalid', why: `"${printable(second)}" is neither +, # nor a queue number` };
  return { topic, queue: Number(second), topicOnly: false };
}

export interface Source {
  topic: string;
  queue: number;
  /** The topic name deliveries carry. */
  name: string;
}

/** The (topic, queue) pairs a filter covers among `topics`, in topic then queue order. */
export function sourcesOf(filter: Filter, topics: ReadonlyArray<{ name: string; queues: number }>): Source[] {
  const sources: Source[] = [];
  for (const t of topics) {
    if (filter.topic !== null && t.name !== filter.topic) continue;
    if (!topicNamePattern.test(t.name)) continue;
    for (let queue = 0; queue < t.queues; queue++) {
      if (filter.queue !== null && filter.queue !== queue) continue;
      sources.push({ topic: t.name, queue, name: filter.topicOnly ? t.name : `${t.name}/${queue}` });
    }
  }
  return sources;
}

/** Names from clients in messages: bounded and printable. */
export function printable(text: string): string {
  return text.slice(0, 100).replace(/[^\x20-\x7e]/g, '?');
}
