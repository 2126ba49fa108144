// The promised offset (DESIGN §12, issue 11): the highest log offset this replica has reported
// durable to any leader. It must be durable before the report leaves, and it rises with almost
// every Fetch a follower sends and every commit a leader counts, so it has its own small file
// instead of a synchronous LMDB commit on the event loop:
//   - group commit: at most one write in flight; every value wanted while it runs is covered by
//     the next single write (pwrite + fdatasync on the thread pool, off the event loop);
//   - two slots, written alternately, each with a sequence number and a CRC32C: a torn write
//     damages only the slot being written and the older value in the other slot stays readable.
// Measured on this machine (issue 11 note): synchronous LMDB putSync per Fetch vs this file; the
// file is one fdatasync of one page where an LMDB commit syncs the data and the meta page.
import { closeSync, fdatasync, fsyncSync, openSync, readSync, write, writeSync } from 'node:fs';
import { assert } from '../assert.js';
import { crc32c } from '../log/index.js';

const slotBytes = 4096; // one slot per page: a torn page write never reaches the other slot
const recordBytes = 28; // magic u32, sequence u64, offset u64, reserved u32, crc u32
const magic = 0x4d50524f; // "MPRO"

interface Slot {
  sequence: number;
  offset: number;
}

function encodeSlot(slot: Slot): Buffer {
  const buffer = Buffer.alloc(recordBytes);
  buffer.writeUInt32LE(magic, 0);
  buffer.writeBigUInt64LE(BigInt(slot.sequence), 4);
  buffer.writeBigUInt64LE(BigInt(slot.offset), 12);
  buffer.writeUInt32LE(0, 20);
  buffer.writeUInt32LE(crc32c(buffer.subarray(0, 24)) >>> 0, 24);
  return buffer;
}

function decodeSlot(buffer: Buffer): Slot | null {
  if (buffer.length < recordBytes || buffer.readUInt32LE(0) !== magic) return null;
  if (crc32c(buffer.subarray(0, 24)) >>> 0 !== buffer.readUInt32LE(24)) return null;
  return { sequence: Number(buffer.readBigUInt64LE(4)), offset: Number(buffer.readBigUInt64LE(12)) };
}

/** The newest valid slot of the file at `path`, or null when there is none (new or old directory). */
export function readPromiseFile(path: string): Slot | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const slots: Slot[] = [];
    for (let index = 0; index < 2; index++) {
      const buffer = Buffer.alloc(recordBytes);
      const bytesRead = readSync(fd, buffer, 0, recordBytes, index * slotBytes);
      const slot = decodeSlot(buffer.subarray(0, bytesRead));
      if (slot) slots.push(slot);
    }
    slots.sort((a, b) => b.sequence - a.sequence);
    return slots[0] ?? null;
  } finally {
    closeSync(fd);
  }
}

function openForWrite(path: string): number {
  try {
    return openSync(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return openSync(path, 'w+', 0o644);
  }
}

export class PromiseFile {
  private readonly fd: number;
  private sequence: number;
  /** The value durable on disk (covered by a completed fdatasync). */
  private durable: number;
  /** The value the core wants stored last (may be lower than durable after a truncation). */
  private wanted: number;
  private writing = false;
  private closed = false;
  private failure: Error | null = null;
  private readonly listeners: Array<(durableOffset: number) => void> = [];
  /** Writes completed (tests and metrics). */
  writesCount = 0;

  private constructor(path: string, initial: Slot | null, initialOffset: number) {
    this.fd = openForWrite(path);
    this.sequence = initial?.sequence ?? 0;
    this.durable = initialOffset;
    this.wanted = initialOffset;
    // Nothing is written until a value is stored: a data directory from before promises keeps
    // reading "no promise" (the core then falls back on the commit mark) until one is made.
  }

  /** Opens (creating) the file at `path`; `fallbackOffset` stands when it holds no valid slot. */
  static open(path: string, fallbackOffset: number): PromiseFile {
    const slot = readPromiseFile(path);
    return new PromiseFile(path, slot, slot?.offset ?? fallbackOffset);
  }

  get durableOffset(): number {
    return this.durable;
  }

  get wantedOffset(): number {
    return this.wanted;
  }

  /** True when the stored value is the wanted one and nothing is being written. */
  get settled(): boolean {
    return !this.writing && this.durable === this.wanted;
  }

  /** Called after every completed write with the value now durable. */
  onDurable(listener: (durableOffset: number) => void): void {
    this.listeners.push(listener);
  }

  /** Wants `offset` stored (higher or lower); durable once a listener hears a value covering it. */
  store(offset: number): void {
    assert(Number.isInteger(offset) && offset >= 0, `promise: bad offset ${offset}`);
    if (this.failure) throw this.failure;
    this.wanted = offset;
    this.startWrite();
  }

  private startWrite(): void {
    if (this.writing || this.closed || this.durable === this.wanted) return;
    this.writing = true;
    const offset = this.wanted;
    this.sequence += 1;
    const position = (this.sequence % 2) * slotBytes;
    const buffer = encodeSlot({ sequence: this.sequence, offset });
    write(this.fd, buffer, 0, buffer.length, position, (writeError) => {
      if (writeError) return this.fail(writeError);
      fdatasync(this.fd, (syncError) => {
        if (syncError) return this.fail(syncError);
        this.writing = false;
        this.durable = offset;
        this.writesCount += 1;
        if (this.closed) return this.finishClose();
        this.startWrite(); // a value wanted meanwhile: one more write covers all of them
        for (const listener of this.listeners) listener(offset);
      });
    });
  }

  /** A failed promise write cannot be retried safely in place: the replica must stop. */
  private fail(error: NodeJS.ErrnoException): void {
    this.writing = false;
    this.failure = new Error(`promise file write failed: ${error.code ?? error.message}`);
    for (const listener of this.listeners) listener(this.durable);
  }

  get error(): Error | null {
    return this.failure;
  }

  /**
   * Stores `offset` now, synchronously (one fdatasync on the event loop): for a rare change that
   * must be durable before the next message is handled (a wiped replica joining as recovering).
   * Refused while a write is in flight (its callback would then report an older value).
   */
  storeSync(offset: number): void {
    assert(Number.isInteger(offset) && offset >= 0, `promise: bad offset ${offset}`);
    assert(!this.writing && !this.closed, 'promise: storeSync while a write is in flight or after close');
    if (this.failure) throw this.failure;
    this.writeNowSync(offset);
    for (const listener of this.listeners) listener(offset);
  }

  /** Writes `offset` synchronously (open, close): the event loop waits for one fdatasync. */
  private writeNowSync(offset: number): void {
    this.sequence += 1;
    const buffer = encodeSlot({ sequence: this.sequence, offset });
    writeSync(this.fd, buffer, 0, buffer.length, (this.sequence % 2) * slotBytes);
    fsyncSync(this.fd);
    this.durable = offset;
    this.wanted = offset;
  }

  /** Stores the wanted value if it is not stored yet (after a write in flight), then closes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.length = 0;
    if (!this.writing) this.finishClose(); // else the in-flight write's callback finishes it
  }

  private finishClose(): void {
    if (this.durable !== this.wanted && !this.failure) this.writeNowSync(this.wanted);
    closeSync(this.fd);
  }
}
