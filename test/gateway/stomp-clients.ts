// STOMP clients for the gateway tests: @stomp/stompjs (a well-kept independent client) over its
// TCP wrapper, here over TLS, and a raw socket that writes bytes and collects the frames it gets
// back (for bad input). Every wait is bounded.
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as tcpConnect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Client, IMessage } from '@stomp/stompjs';
import { waitFor } from '../../scripts/lib/cluster.js';

type StompModules = { stompjs: typeof import('@stomp/stompjs'); wrapper: typeof import('@stomp/tcp-wrapper') };

/** The client library, or null (the tests then skip, saying so) when it is not installed. */
export async function loadStompClient(): Promise<StompModules | null> {
  try {
    return { stompjs: await import('@stomp/stompjs'), wrapper: await import('@stomp/tcp-wrapper') };
  } catch {
    return null;
  }
}

export const skipWithoutClient = '@stomp/stompjs and @stomp/tcp-wrapper are not installed (npm install, they are devDependencies)';

export interface Endpoint {
  host: string;
  port: number;
  /** The CA file for TLS; null: plain TCP. */
  caFile: string | null;
}

export interface Connected {
  client: Client;
  errors: string[];
  /** Closes and waits (bounded) for the socket to be gone. */
  close(): Promise<void>;
}

export async function connectStomp(modules: StompModules, endpoint: Endpoint, login: string, passcode: string, timeoutMs = 10_000): Promise<Connected> {
  const { stompjs, wrapper } = modules;
  const ca = endpoint.caFile ? readFileSync(endpoint.caFile) : null;
  class TlsWrapper extends wrapper.TCPWrapper {
    protected override getSocket(port: number, host: string): Socket {
      return ca ? tlsConnect({ host, port, ca, servername: 'localhost' }) : tcpConnect(port, host);
    }
  }
  const errors: string[] = [];
  let connected = false;
  const client = new stompjs.Client({
    webSocketFactory: () => new TlsWrapper(endpoint.host, endpoint.port),
    connectHeaders: { login, passcode },
    reconnectDelay: 0,
    heartbeatIncoming: 10_000,
    heartbeatOutgoing: 10_000,
    onConnect: () => {
      connected = true;
    },
    onStompError: (frame) => errors.push(frame.headers.message ?? frame.body),
    onWebSocketClose: () => {
      connected = false;
    },
  });
  client.activate();
  try {
    await waitFor(`a STOMP CONNECTED from ${endpoint.host}:${endpoint.port}`, timeoutMs, () => (connected ? true : errors.length > 0 ? false : undefined));
  } catch (error) {
    await client.deactivate({ force: true });
    throw error;
  }
  return {
    client,
    errors,
    close: async () => {
      await Promise.race([client.deactivate(), new Promise((resolve) => setTimeout(resolve, 3000))]);
    },
  };
}

/** Publishes with a receipt and waits for it (or an ERROR, or the bound). */
export function sendWithReceipt(
  connected: Connected,
  destination: string,
  body: string,
  headers: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<void> {
  const receipt = `r-${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no RECEIPT ${receipt} within ${timeoutMs} ms`)), timeoutMs);
    const errorsBefore = connected.errors.length;
    const poll = setInterval(() => {
      if (connected.errors.length > errorsBefore || !connected.client.connected) {
        clearInterval(poll);
        clearTimeout(timer);
        reject(new Error(`send failed: ${connected.errors.at(-1) ?? 'connection closed'}`));
      }
    }, 20);
    connected.client.watchForReceipt(receipt, () => {
      clearInterval(poll);
      clearTimeout(timer);
      resolve();
    });
    connected.client.publish({ destination, body, headers: { ...headers, receipt } });
  });
}

/** Messages a subscription got, in order. */
export function collect(connected: Connected, destination: string, headers: Record<string, string> = {}, onMessage?: (m: IMessage) => void): IMessage[] {
  const got: IMessage[] = [];
  connected.client.subscribe(
    destination,
    (m) => {
      got.push(m);
      onMessage?.(m);
    },
    headers,
  );
  return got;
}

/** A raw STOMP connection: what it writes is up to the test; frames received are split at NUL. */
export class RawStomp {
  readonly frames: string[] = [];
  closed = false;
  private buffered = '';
  private constructor(readonly socket: Socket | TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('latin1');
      for (let nul = this.buffered.indexOf('\0'); nul >= 0; nul = this.buffered.indexOf('\0')) {
        this.frames.push(this.buffered.slice(0, nul).replace(/^\n+/, ''));
        this.buffered = this.buffered.slice(nul + 1);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
    });
  }

  static async open(endpoint: Endpoint): Promise<RawStomp> {
    const socket = endpoint.caFile
      ? tlsConnect({ host: endpoint.host, port: endpoint.port, ca: readFileSync(endpoint.caFile), servername: 'localhost' })
      : tcpConnect(endpoint.port, endpoint.host);
    const raw = new RawStomp(socket);
    await waitFor('a raw STOMP socket', 5000, () =>
      endpoint.caFile ? ((socket as TLSSocket).encrypted && !socket.connecting) || undefined : !socket.connecting || undefined,
    );
    return raw;
  }

  write(text: string | Buffer): void {
    this.socket.write(text);
  }

  connectFrame(login: string, passcode: string, heartBeat = '0,0'): string {
    return `CONNECT\naccept-version:1.2\nhost:mamba\nlogin:${login}\npasscode:${passcode}\nheart-beat:${heartBeat}\n\n\0`;
  }

  /** Waits for a frame whose text starts with `command`. */
  async frame(command: string, timeoutMs = 10_000): Promise<string> {
    return waitFor(`a ${command} frame`, timeoutMs, () => this.frames.find((f) => f.startsWith(`${command}\n`)));
  }

  async closedWithin(timeoutMs: number): Promise<void> {
    await waitFor('the gateway to close the connection', timeoutMs, () => (this.closed ? true : undefined));
  }

  destroy(): void {
    this.socket.destroy();
  }
}
