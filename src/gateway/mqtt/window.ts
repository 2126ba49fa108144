// The outgoing QoS 1 window of one connection: packet identifiers in use and the PUBACKs awaited,
// bounded by the client's Receive Maximum (and ours). A delivery takes a slot before its PUBLISH
// is written and gives it back on the PUBACK; a closed window fails every waiter.
import { assert } from '../../assert.js';

const packetIdMax = 65_535;

export class OutgoingWindow {
  private readonly awaiting = new Map<number, (acked: boolean) => void>();
  private readonly slotWaiters: Array<() => void> = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly sizeMax: number) {
    assert(sizeMax >= 1 && sizeMax <= packetIdMax, 'window size out of range');
  }

  get inflight(): number {
    return this.awaiting.size;
  }

  /** Waits for a free slot; a packet id and a promise of its PUBACK (false when the window closed first); null once closed. */
  async take(): Promise<{ packetId: number; acked: Promise<boolean> } | null> {
    while (!this.closed && this.awaiting.size >= this.sizeMax) await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    if (this.closed) return null;
    while (this.awaiting.has(this.nextId)) this.nextId = (this.nextId % packetIdMax) + 1;
    const packetId = this.nextId;
    this.nextId = (this.nextId % packetIdMax) + 1;
    let settle: (acked: boolean) => void = () => undefined;
    const acked = new Promise<boolean>((resolve) => {
      settle = resolve;
    });
    this.awaiting.set(packetId, settle);
    return { packetId, acked };
  }

  /** A PUBACK arrived; false when nothing waited for that id (the client's protocol error, ignored). */
  acknowledge(packetId: number): boolean {
    const settle = this.awaiting.get(packetId);
    if (!settle) return false;
    this.awaiting.delete(packetId);
    settle(true);
    this.slotWaiters.shift()?.();
    return true;
  }

  /** Every waiter wakes; unacknowledged deliveries answer false (not committed, so delivered again later). */
  close(): void {
    this.closed = true;
    for (const settle of this.awaiting.values()) settle(false);
    this.awaiting.clear();
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
