// STOMP destinations: `/queue/<topic>` (any queue of the topic: by `mamba-key`, else round-robin
// on SEND; every queue the consumer group assigns on SUBSCRIBE) and `/queue/<topic>/<queue>` (that
// one queue, on SEND and on SUBSCRIBE: read by a fixed assignment, no group membership). Topic
// names follow the broker's naming rule (letters, digits, . _ -).

export interface Destination {
  topic: string;
  /** null: any queue of the topic. */
  queue: number | null;
}

/** The broker's topic name rule (src/broker/names.ts), repeated here so the gateway stays above it. */
const topicPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
const queueIndexMax = 65_535;

/** The destination, or a sentence saying what is wrong with it. */
export function parseDestination(text: string | undefined): Destination | string {
  if (text === undefined || text === '') return 'a destination header is required (/queue/<topic> or /queue/<topic>/<queue>)';
  const parts = text.split('/');
  if (parts[0] !== '' || parts[1] !== 'queue' || parts.length < 3 || parts.length > 4)
    return `unknown destination "${text.slice(0, 300)}": use /queue/<topic> or /queue/<topic>/<queue>`;
  const topic = parts[2]!;
  if (!topicPattern.test(topic)) return `destination "${text.slice(0, 300)}": "${topic.slice(0, 200)}" is not a topic name (letters, digits, . _ -)`;
  if (parts.length === 3) return { topic, queue: null };
  const queueText = parts[3]!;
  if (!/^(0|[1-9][0-9]{0,4})$/.test(queueText) || Number(queueText) > queueIndexMax)
    return `destination "${text.slice(0, 300)}": "${queueText.slice(0, 20)}" is not a queue number`;
  return { topic, queue: Number(queueText) };
}

/** Why a queue number the topic does not have is refused, naming the topic's queue count. */
export function unknownQueueText(destination: Destination, queueCount: number): string {
  return `destination "${destinationText(destination)}": topic "${destination.topic}" has ${queueCount} queues (0..${queueCount - 1})`;
}

export function destinationText(destination: Destination): string {
  return destination.queue === null ? `/queue/${destination.topic}` : `/queue/${destination.topic}/${destination.queue}`;
}
