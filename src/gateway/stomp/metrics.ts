// The STOMP gateway's metrics: the gateways' shared instruments (src/gateway/common/metrics.ts, one
// `protocol` label), seen through the calls the session makes. Messages are counted without a
// topic label (a label per topic would grow without bound).
import type { Registry } from 'prom-client';
import { gatewayMetrics as sharedGatewayMetrics } from '../common/metrics.js';

export interface GatewayMetrics {
  connectionOpened(): void;
  connectionClosed(): void;
  frame(command: string): void;
  refusal(reason: string): void;
  message(direction: 'in' | 'out', topic: string, bytes: number): void;
}

export const noGatewayMetrics: GatewayMetrics = { connectionOpened() {}, connectionClosed() {}, frame() {}, refusal() {}, message() {} };

export function gatewayMetrics(registry: Registry, protocol: string): GatewayMetrics {
  const shared = sharedGatewayMetrics(registry, protocol);
  return {
    connectionOpened: () => shared.connectionOpened(),
    connectionClosed: () => shared.connectionClosed(),
    frame: (command) => shared.frame(command),
    refusal: (reason) => shared.refusal(reason),
    message: (direction, _topic, bytes) => shared.message(direction, bytes),
  };
}
