// Gateway metrics on the broker's registry, one `protocol` label for every gateway (mqtt, stomp):
// connections open and accepted, messages and payload bytes in and out, and refusals by reason.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface GatewayMetrics {
  connectionOpened(): void;
  connectionClosed(): void;
  /** A message the gateway stored (`in`) or delivered (`out`). */
  message(direction: 'in' | 'out', payloadBytes: number): void;
  /** A refused connection or frame, by a short reason (never key material). */
  refusal(reason: string): void;
  /** A frame or packet received, by its command (STOMP) or packet type (MQTT). */
  frame(command: string): void;
}

const byRegistry = new WeakMap<Registry, { open: Gauge; accepted: Counter; messages: Counter; bytes: Counter; refusals: Counter; frames: Counter }>();

function instruments(registry: Registry) {
  let found = byRegistry.get(registry);
  if (!found) {
    const registers = [registry];
    found = {
      open: new Gauge({ name: 'mamba_gateway_connections', help: 'Gateway connections open, by protocol', labelNames: ['protocol'], registers }),
      accepted: new Counter({
        name: 'mamba_gateway_connections_total',
        help: 'Gateway connections accepted, by protocol',
        labelNames: ['protocol'],
        registers,
      }),
      messages: new Counter({
        name: 'mamba_gateway_messages_total',
        help: 'Messages stored (in) or delivered (out) through a gateway, by protocol',
        labelNames: ['protocol', 'direction'],
        registers,
      }),
      bytes: new Counter({
        name: 'mamba_gateway_payload_bytes_total',
        help: 'Payload bytes stored (in) or delivered (out) through a gateway, by protocol',
        labelNames: ['protocol', 'direction'],
        registers,
      }),
      refusals: new Counter({
        name: 'mamba_gateway_refusals_total',
        help: 'Connections and frames a gateway refused, by protocol and reason',
        labelNames: ['protocol', 'reason'],
        registers,
      }),
      frames: new Counter({
        name: 'mamba_gateway_frames_total',
        help: 'Frames (STOMP) or packets (MQTT) a gateway received, by protocol and command',
        labelNames: ['protocol', 'command'],
        registers,
      }),
    };
    byRegistry.set(registry, found);
  }
  return found;
}

export function gatewayMetrics(registry: Registry | null, protocol: string): GatewayMetrics {
  if (registry === null) return { connectionOpened() {}, connectionClosed() {}, message() {}, refusal() {}, frame() {} };
  const m = instruments(registry);
  return {
    connectionOpened: () => {
      m.open.inc({ protocol });
      m.accepted.inc({ protocol });
    },
    connectionClosed: () => m.open.dec({ protocol }),
    message: (direction, payloadBytes) => {
      m.messages.inc({ protocol, direction });
      m.bytes.inc({ protocol, direction }, payloadBytes);
    },
    refusal: (reason) => m.refusals.inc({ protocol, reason }),
    frame: (command) => m.frames.inc({ protocol, command }),
  };
}

/** The structured logger a gateway writes to (the broker's: one JSON object a line). */
export interface GatewayLog {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
}
