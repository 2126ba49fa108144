// Little-endian writing and checked reading of the broker's own binary formats (log commands,
// commands.ts; state snapshots, state-snapshot.ts). str = u16 byte length + UTF-8; f64 holds
// integers below 2^53 exactly. A reader throws the error its format names (never an assert: the
// bytes come from disk or from a peer).
import { assert } from '../assert.js';

export class ByteWriter {
  private readonly parts: Buffer[] = [];
  private byteCount = 0;

  constructor(private readonly what: string) {}

  u8(v: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(v);
    return this.push(b);
  }

  u16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16LE(v);
    return this.push(b);
  }

  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v);
    return this.push(b);
  }

  f64(v: number): this {
    assert(Number.isSafeInteger(v), `${this.what} field ${v} is not a safe integer`);
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleLE(v);
    return this.push(b);
  }

  str(v: string): this {
    const s = Buffer.from(v, 'utf8');
    assert(s.length <= 0xffff, `${this.what} string over 64 KiB`);
    this.u16(s.length);
    return this.push(s);
  }

  bytes(v: Uint8Array): this {
    return this.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  }

  done(): Buffer {
    return Buffer.concat(this.parts, this.byteCount);
  }

  private push(b: Buffer): this {
    this.parts.push(b);
    this.byteCount += b.length;
    return this;
  }
}

export class ByteReader {
  private at = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
    private readonly fail: (message: string) => Error,
  ) {}

  get remainingBytes(): number {
    return this.buf.length - this.at;
  }

  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.at++);
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.at);
    this.at += 8;
    if (!Number.isSafeInteger(v)) throw this.fail(`${this.what} number ${v} is not a safe integer`);
    return v;
  }

  str(): string {
    const n = this.u16();
    this.need(n);
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }

  /** The next `n` bytes. */
  take(n: number): Buffer {
    this.need(n);
    const r = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return r;
  }

  rest(): Buffer {
    const r = this.buf.subarray(this.at);
    this.at = this.buf.length;
    return r;
  }

  end(): void {
    if (this.at !== this.buf.length) throw this.fail(`${this.what} has ${this.buf.length - this.at} trailing bytes`);
  }

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw this.fail(`${this.what} truncated at byte ${this.at}`);
  }
}
