// The broker's naming rules (what a topic, a consumer group and a group member may be called)
// and its key encodings (how a tuple of names becomes one map or store key, and back). Consumer
// offset keys are stored (state-store.ts), so their encoding is part of the data format.
import { assert } from '../assert.js';
import { InvalidArgumentError } from '../errors.js';

export const topicNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
export const consumerGroupPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
export const memberIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
export const queuesPerTopicMax = 1024;

export function checkTopicName(name: string): void {
  if (!topicNamePattern.test(name)) throw new InvalidArgumentError(`topic name "${name}" is not valid (letters, digits, '.', '_', '-'; at most 200)`);
}

export function checkConsumerGroup(consumerGroup: string): void {
  if (!consumerGroupPattern.test(consumerGroup)) throw new InvalidArgumentError(`consumer_group "${consumerGroup}" is not valid`);
}

export function checkMemberId(memberId: string): void {
  if (!memberIdPattern.test(memberId)) throw new InvalidArgumentError(`member_id "${memberId}" is not valid`);
}

export function checkQueueCount(queues: number): void {
  if (!Number.isInteger(queues) || queues < 1 || queues > queuesPerTopicMax)
    throw new InvalidArgumentError(`queues must be 1..${queuesPerTopicMax}, got ${queues}`);
}

/**
 * Between the parts of a key. The patterns above admit no control character, so the parts of two
 * different tuples never join into the same key.
 */
const keySeparator = '\u0000';

/** A queue of a topic (queue index, consume waiters). */
export function queueKey(topic: string, queue: number): string {
  return `${topic}${keySeparator}${queue}`;
}

/** An idempotent producer on one queue (producer table). */
export function producerKey(producerId: number, topic: string, queue: number): string {
  return `${producerId}${keySeparator}${topic}${keySeparator}${queue}`;
}

export interface ProducerKeyParts {
  producerId: number;
  topic: string;
  queue: number;
}

export function decodeProducerKey(key: string): ProducerKeyParts {
  const parts = key.split(keySeparator);
  const [producerText, topic, queueText] = parts;
  const producerId = Number(producerText);
  const queue = Number(queueText);
  assert(
    parts.length === 3 && topic !== undefined && Number.isSafeInteger(producerId) && Number.isSafeInteger(queue),
    `producer key ${JSON.stringify(key)} is not valid`,
  );
  return { producerId, topic, queue };
}

/** A consumer group's committed offset on one queue (stored: keep the encoding). */
export function offsetKey(consumerGroup: string, topic: string, queue: number): string {
  return `${consumerGroup}${keySeparator}${topic}${keySeparator}${queue}`;
}

export interface OffsetKeyParts {
  consumerGroup: string;
  topic: string;
  queue: number;
}

export function decodeOffsetKey(key: string): OffsetKeyParts {
  const parts = key.split(keySeparator);
  const [consumerGroup, topic, queueText] = parts;
  const queue = Number(queueText);
  assert(
    parts.length === 3 && consumerGroup !== undefined && topic !== undefined && Number.isSafeInteger(queue),
    `consumer offset key ${JSON.stringify(key)} is not valid`,
  );
  return { consumerGroup, topic, queue };
}
