// What a broker needs to know about itself and its cluster, declared here as plain types so the
// broker does not import src/config/: the configuration's types (BrokerConfig, GroupConfig,
// ClusterConfig) carry more and satisfy these structurally.
import { assert } from '../assert.js';
import type { AdviceSettings } from './advice.js';

/**
 * What Consume with use_committed does when the consumer group's committed offset fell below the
 * queue's start (retention removed messages the group had not read): go on from the start, logged
 * and counted (Kafka's auto.offset.reset=earliest), or refuse with OUT_OF_RANGE (=none).
 */
export type ConsumerOffsetReset = 'earliest' | 'fail';
export const consumerOffsetResetChoices: readonly ConsumerOffsetReset[] = ['earliest', 'fail'];
export const consumerOffsetResetDefault: ConsumerOffsetReset = 'earliest';

/** The settings the broker reads (config's BrokerSettings has these among others). */
export interface ServingSettings {
  messageBytesMax: number;
  consumeWaitMsMax: number;
  tickMs: number;
  fetchTimeoutMs: number;
  advice: AdviceSettings;
  /** consumerOffsetResetDefault when absent. */
  consumerOffsetReset?: ConsumerOffsetReset;
}

/** A broker as clients reach it. */
export interface BrokerEndpoint {
  id: string;
  host: string;
  clientPort: number;
}

/** This broker: who it is, its group, and its settings. */
export interface BrokerIdentity extends BrokerEndpoint {
  group: string;
  settings: ServingSettings;
}

/** A group and its brokers (their order is the order a forwarded request tries them in). */
export interface GroupLayout {
  id: string;
  brokers: readonly BrokerEndpoint[];
}

export interface ClusterLayout {
  groups: readonly GroupLayout[];
}

export function clientAddress(b: BrokerEndpoint): string {
  return `${b.host}:${b.clientPort}`;
}

/** The group that holds queue `queue` of a topic: queues are dealt over groups in order. */
export function groupOfQueue(cluster: ClusterLayout, queue: number): GroupLayout {
  const group = cluster.groups[queue % cluster.groups.length];
  assert(group !== undefined, `no group for queue ${queue} among ${cluster.groups.length}`);
  return group;
}

export function groupOf(cluster: ClusterLayout, self: BrokerIdentity): GroupLayout {
  const group = cluster.groups.find((g) => g.id === self.group);
  assert(group !== undefined, `broker ${self.id} names group ${self.group}, which the cluster does not have`);
  return group;
}
