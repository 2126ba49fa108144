// STOMP 1.2 frames: a strict, bounded decoder for what clients send and an encoder for what the
// gateway answers. No STOMP library on npm offers a server-side parser with limits on frame,
// header count and header line length (the well-kept ones, @stomp/stompjs and stompit, are
// clients), so this one is ours: small, bounded, fuzzed (test/gateway/stomp-frame.test.ts).
//
// A frame: COMMAND EOL, header lines `name:value` EOL, an empty line, the body, NUL. EOL is LF or
// CR LF. Between frames any number of EOLs (heart-beats). With `content-length` the body is
// exactly that many bytes (it may hold NULs); without it the body ends at the first NUL. Header
// names and values escape \r \n : and \ as \\r \\n \\c \\\\ (not in CONNECT/CONNECTED); an
// undefined escape is an error. A repeated header: the first one counts (STOMP 1.2 §"Repeated
// Header Entries").

export const clientCommands = ['CONNECT', 'STOMP', 'SEND', 'SUBSCRIBE', 'UNSUBSCRIBE', 'ACK', 'NACK', 'BEGIN', 'COMMIT', 'ABORT', 'DISCONNECT'] as const;
export type ClientCommand = (typeof clientCommands)[number];
export type ServerCommand = 'CONNECTED' | 'MESSAGE' | 'RECEIPT' | 'ERROR';

export interface Frame<C extends string = ClientCommand> {
  command: C;
  /** First occurrence of each header name wins. */
  headers: Map<string, string>;
  body: Buffer;
}

export interface FrameLimits {
  /** Whole frame: command, headers and body. */
  frameBytesMax: number;
  /** Header lines per frame. */
  headerCountMax: number;
  /** One header line (name, colon and value, escaped) or the command line. */
  headerLineBytesMax: number;
}

export const frameLimitsDefault: Readonly<FrameLimits> = { frameBytesMax: 1024 * 1024 + 64 * 1024, headerCountMax: 64, headerLineBytesMax: 8192 };

/** Bad input: the gateway answers an ERROR frame with this message and closes the connection. */
export class FrameError extends Error {
  override readonly name = 'FrameError';
}

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;

/**
 * Feeds bytes in, takes whole frames out. Holds at most one frame's bytes plus one chunk: when the
 * bytes buffered for an unfinished frame pass frameBytesMax, `push` throws a FrameError.
 */
export class FrameDecoder {
  private buffered: Buffer = Buffer.alloc(0);
  /** Heart-beat EOLs seen between frames since the last call of takeHeartbeats(). */
  private heartbeats = 0;

  constructor(private readonly limits: FrameLimits = frameLimitsDefault) {}

  /** Adds `chunk`; returns the frames it completes, in order. Throws FrameError on bad input. */
  push(chunk: Buffer): Frame[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const frames: Frame[] = [];
    // Bounded: each round consumes at least one byte or stops.
    for (;;) {
      this.skipHeartbeats();
      if (this.buffered.length === 0) break;
      const decoded = decodeOne(this.buffered, this.limits);
      if (decoded === null) {
        if (this.buffered.length > this.limits.frameBytesMax) throw new FrameError(`frame larger than ${this.limits.frameBytesMax} bytes`);
        break;
      }
      frames.push(decoded.frame);
      this.buffered = this.buffered.subarray(decoded.length);
    }
    return frames;
  }

  /** Heart-beats (bare EOLs) received since the last call. */
  takeHeartbeats(): number {
    const count = this.heartbeats;
    this.heartbeats = 0;
    return count;
  }

  private skipHeartbeats(): void {
    let index = 0;
    while (index < this.buffered.length) {
      const byte = this.buffered[index]!;
      if (byte === LF) {
        this.heartbeats++;
        index++;
      } else if (byte === CR && index + 1 < this.buffered.length && this.buffered[index + 1] === LF) {
        this.heartbeats++;
        index += 2;
      } else break;
    }
    if (index > 0) this.buffered = this.buffered.subarray(index);
  }
}

/** The line starting at `from`: its end (exclusive, before any CR) and where the next line starts; null when incomplete. */
function lineAt(bytes: Buffer, from: number, limits: FrameLimits): { start: number; end: number; next: number } | null {
  const lf = bytes.indexOf(LF, from);
  if (lf < 0) {
    if (bytes.length - from > limits.headerLineBytesMax) throw new FrameError(`header line longer than ${limits.headerLineBytesMax} bytes`);
    return null;
  }
  if (lf - from > limits.headerLineBytesMax + 1) throw new FrameError(`header line longer than ${limits.headerLineBytesMax} bytes`);
  const end = lf > from && bytes[lf - 1] === CR ? lf - 1 : lf;
  return { start: from, end, next: lf + 1 };
}

/** Decodes the frame at the start of `bytes` (no leading EOL); null when more bytes are needed. */
export function decodeOne(bytes: Buffer, limits: FrameLimits = frameLimitsDefault): { frame: Frame; length: number } | null {
  const commandLine = lineAt(bytes, 0, limits);
  if (commandLine === null) return null;
  const commandText = bytes.toString('utf8', 0, commandLine.end);
  // A client's text is named in an error only where it cannot hold a secret: a mangled CONNECT
  // may run its passcode into the command line or a header line (found by the gateway fuzz run).
  if (!(clientCommands as readonly string[]).includes(commandText))
    throw new FrameError(
      /^[A-Z]{1,16}$/.test(commandText) ? `unknown command "${commandText}"` : `unknown command (a first line of ${commandText.length} characters)`,
    );
  const command = commandText as ClientCommand;
  const escapes = command !== 'CONNECT' && command !== 'STOMP';
  const headers = new Map<string, string>();
  let at = commandLine.next;
  let headerCount = 0;
  for (;;) {
    const line = lineAt(bytes, at, limits);
    if (line === null) return null;
    at = line.next;
    if (line.end === line.start) break; // the empty line ends the headers
    if (++headerCount > limits.headerCountMax) throw new FrameError(`more than ${limits.headerCountMax} headers`);
    const text = bytes.toString('utf8', line.start, line.end);
    const colon = text.indexOf(':');
    if (colon <= 0) throw new FrameError(`header line ${headerCount} has no name and colon`);
    const name = escapes ? unescapeHeader(text.slice(0, colon)) : text.slice(0, colon);
    const value = escapes ? unescapeHeader(text.slice(colon + 1)) : text.slice(colon + 1);
    if (!headers.has(name)) headers.set(name, value);
  }
  const bodyStart = at;
  const lengthText = headers.get('content-length');
  let bodyEnd: number;
  if (lengthText !== undefined) {
    if (!/^[0-9]{1,10}$/.test(lengthText)) throw new FrameError(`content-length "${printable(lengthText)}" is not a byte count`);
    const length = Number(lengthText);
    if (bodyStart + length + 1 > limits.frameBytesMax) throw new FrameError(`frame larger than ${limits.frameBytesMax} bytes`);
    if (bytes.length < bodyStart + length + 1) return null;
    bodyEnd = bodyStart + length;
    if (bytes[bodyEnd] !== NUL) throw new FrameError('the body is not followed by NUL at content-length');
  } else {
    const nul = bytes.indexOf(NUL, bodyStart);
    if (nul < 0) {
      if (bytes.length > limits.frameBytesMax) throw new FrameError(`frame larger than ${limits.frameBytesMax} bytes`);
      return null;
    }
    bodyEnd = nul;
  }
  if (bodyEnd + 1 > limits.frameBytesMax) throw new FrameError(`frame larger than ${limits.frameBytesMax} bytes`);
  return { frame: { command, headers, body: Buffer.from(bytes.subarray(bodyStart, bodyEnd)) }, length: bodyEnd + 1 };
}

const escapeOf: Record<string, string> = { r: '\r', n: '\n', c: ':', '\\': '\\' };

export function unescapeHeader(text: string): string {
  if (!text.includes('\\')) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const replaced = escapeOf[text[i + 1] ?? ''];
    if (replaced === undefined) throw new FrameError(`undefined escape "\\${printable(text[i + 1] ?? '')}" in a header`);
    out += replaced;
    i++;
  }
  return out;
}

export function escapeHeader(text: string): string {
  return text.replace(/[\\\r\n:]/g, (c) => (c === '\\' ? '\\\\' : c === '\r' ? '\\r' : c === '\n' ? '\\n' : '\\c'));
}

/** A server frame's bytes: escaped headers (except CONNECTED), content-length always, NUL. */
export function encodeFrame(command: ServerCommand, headers: ReadonlyArray<[string, string]>, body: Buffer = Buffer.alloc(0)): Buffer {
  const encodeText = command === 'CONNECTED' ? (t: string) => t.replace(/[\r\n]/g, ' ') : escapeHeader;
  const lines = [
    command,
    ...headers.filter(([n]) => n !== 'content-length').map(([n, v]) => `${encodeText(n)}:${encodeText(v)}`),
    `content-length:${body.length}`,
  ];
  return Buffer.concat([Buffer.from(`${lines.join('\n')}\n\n`, 'utf8'), body, Buffer.from([NUL])]);
}

/** Text from a client in an error message: bounded and printable. */
export function printable(text: string): string {
  return text.slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
}
