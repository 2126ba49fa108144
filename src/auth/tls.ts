// TLS material for brokers and clients, read from PEM files. Client listener: server TLS only
// (clients prove who they are with access keys). Peer listener: mutual TLS, so only holders of a
// certificate from the cluster's CA reach the peer API; peer.ts then matches the certificate's
// common name against the replica id the request claims.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ConfigError } from '../validation.js';

/** The `security.tls` section of a cluster file, read by src/config. */
export interface TlsConfig {
  caFile: string;
  /** May contain `{broker}`, replaced by the broker id. */
  certFile: string;
  keyFile: string;
}

/** A TLS path for one broker (`{broker}` replaced by its id). */
export function brokerPath(template: string, brokerId: string): string {
  return template.replaceAll('{broker}', brokerId);
}

function pem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(`${file}: cannot read ${what}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

export interface BrokerTls {
  clientServer: grpc.ServerCredentials;
  peerServer: grpc.ServerCredentials;
  /** For calls to other brokers: peer API (mutual) and client API (forwarding). */
  channel: grpc.ChannelCredentials;
}

/** A broker's PEM material: the CA, its certificate and its private key (for listeners that are not gRPC). */
export function brokerPem(config: TlsConfig, brokerId: string): { ca: Buffer; cert: Buffer; key: Buffer } {
  return {
    ca: pem(config.caFile, 'tls.caFile (CA certificate)'),
    cert: pem(brokerPath(config.certFile, brokerId), `tls.certFile (certificate of ${brokerId})`),
    key: pem(brokerPath(config.keyFile, brokerId), `tls.keyFile (private key of ${brokerId})`),
  };
}

export function brokerTls(config: TlsConfig, brokerId: string): BrokerTls {
  const { ca, cert, key } = brokerPem(config, brokerId);
  const pair = [{ cert_chain: cert, private_key: key }];
  return {
    clientServer: grpc.ServerCredentials.createSsl(ca, pair, false),
    peerServer: grpc.ServerCredentials.createSsl(ca, pair, true),
    channel: grpc.credentials.createSsl(ca, key, cert),
  };
}

/** Client side: verify brokers against `caFile` (or the system CAs when null). */
export function clientTls(caFile: string | null): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(caFile ? pem(caFile, 'the CA certificate') : null);
}
