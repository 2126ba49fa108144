// Gateway metrics on the broker's registry, labelled by protocol so MQTT and STOMP share them:
// connections (opened and open now), frames received by command, refusals by reason, and messages
// in (SEND) and out (MESSAGE) per topic. Reasons and commands only, never key material.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface GatewayMetrics {
  connectionOpened(): void;
  connectionClosed(): void;
  frame(command: string): void;
  refusal(reason: string): void;
  message(direction: 'in' | 'out', topic: string, bytes: number): void;
}

export const noGatewayMetrics: GatewayMetrics = { connectionOpened() {}, connectionClosed() {}, frame() {}, refusal() {}, message() {} };

export function gatewayMetrics(registry: Registry, protocol: string): GatewayMetrics {
  const opened = new Counter({
    name: 'mamba_gateway_connections_total',
    help: 'Gateway connections accepted, by protocol',
    labelNames: ['protocol'],
    registers: [registry],
  });
  const open = new Gauge({
    name: 'mamba_gateway_connections_open',
    help: 'Gateway connections open now, by protocol',
    labelNames: ['protocol'],
    registers: [registry],
  });
  const frames = new Counter({
    name: 'mamba_gateway_frames_total',
    help: 'Frames received by gateways, by protocol and command',
    labelNames: ['protocol', 'command'],
    registers: [registry],
  });
  const refusals = new Counter({
    name: 'mamba_gateway_refusals_total',
    help: 'Gateway connections closed with an error, by protocol and reason (frame, login, permission, destination, heartbeat, ...)',
    labelNames: ['protocol', 'reason'],
    registers: [registry],
  });
  const messages = new Counter({
    name: 'mamba_gateway_messages_total',
    help: 'Messages through gateways, by protocol, direction (in: produced, out: delivered) and topic',
    labelNames: ['protocol', 'direction', 'topic'],
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'mamba_gateway_message_bytes_total',
    help: 'Message body bytes through gateways, by protocol, direction and topic',
    labelNames: ['protocol', 'direction', 'topic'],
    registers: [registry],
  });
  return {
    connectionOpened: () => {
      opened.inc({ protocol });
      open.inc({ protocol });
    },
    connectionClosed: () => open.dec({ protocol }),
    frame: (command) => frames.inc({ protocol, command }),
    refusal: (reason) => refusals.inc({ protocol, reason }),
    message: (direction, topic, size) => {
      messages.inc({ protocol, direction, topic });
      bytes.inc({ protocol, direction, topic }, size);
    },
  };
}
