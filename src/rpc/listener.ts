// The listening sockets of a broker's gRPC servers. Connections arrive on a plain net.Server and
// are handed to grpc-js (its connection injector), so a broker counts connections per remote
// address: beyond `connectionsPerClientMax` a connection is still served (its calls then get
// RESOURCE_EXHAUSTED, see security-interceptor.ts) but closed after a short grace period, and
// beyond twice the limit it is closed at once. Nothing here grows without bound.
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import type * as grpc from '@grpc/grpc-js';

const overLimitGraceMs = 1000;

export class ConnectionLimiter {
  private readonly countByAddress = new Map<string, number>();
  /** "address:port" of connections over the limit, whose calls are refused. */
  readonly overLimitPeers = new Set<string>();

  constructor(readonly connectionsPerClientMax: number) {}

  isOverLimit(peer: string): boolean {
    return this.overLimitPeers.has(peer);
  }

  /** Returns false when the socket must be closed at once. */
  admit(socket: Socket): boolean {
    const address = socket.remoteAddress ?? '?';
    const peer = `${address}:${socket.remotePort ?? 0}`;
    const count = (this.countByAddress.get(address) ?? 0) + 1;
    if (count > 2 * this.connectionsPerClientMax) return false;
    this.countByAddress.set(address, count);
    if (count > this.connectionsPerClientMax) {
      this.overLimitPeers.add(peer);
      setTimeout(() => socket.destroy(), overLimitGraceMs).unref();
    }
    socket.once('close', () => {
      this.overLimitPeers.delete(peer);
      const left = (this.countByAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.countByAddress.delete(address);
      else this.countByAddress.set(address, left);
    });
    return true;
  }
}

export interface Listening {
  close(): void;
}

/** Serves `server` on host:port with `credentials`, through `limiter` when given. */
export function listen(
  server: grpc.Server,
  credentials: grpc.ServerCredentials,
  host: string,
  port: number,
  limiter: ConnectionLimiter | null,
): Promise<Listening> {
  const injector = server.createConnectionInjector(credentials);
  const sockets = new Set<Socket>();
  const net: NetServer = createServer({ noDelay: true }, (socket) => {
    if (limiter && !limiter.admit(socket)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    injector.injectConnection(socket);
  });
  return new Promise((resolve, reject) => {
    net.once('error', (error) => reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`)));
    net.listen({ host, port, backlog: 1024 }, () => {
      resolve({
        close() {
          net.close();
          injector.destroy();
          for (const socket of sockets) socket.destroy();
        },
      });
    });
  });
}
