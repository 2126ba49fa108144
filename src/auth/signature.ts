// Call signatures: HMAC-SHA256 with the key's signing key over the method path, a timestamp and a
// nonce, carried in gRPC metadata. The same function signs (clients, brokers forwarding) and
// checks (authenticator.ts). The body is not signed: TLS protects it in transit.
import { createHmac, randomBytes } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';

export const keyIdHeader = 'mamba-key-id';
export const timestampHeader = 'mamba-timestamp-ms';
export const nonceHeader = 'mamba-nonce';
export const signatureHeader = 'mamba-signature';

/** The exact bytes signed: a version tag, the method path, the timestamp and the nonce. */
export function stringToSign(method: string, timestampMs: number, nonce: string): string {
  return `mamba-v1\n${method}\n${timestampMs}\n${nonce}`;
}

export function signatureOf(signingKey: Buffer, method: string, timestampMs: number, nonce: string): string {
  return createHmac('sha256', signingKey)
    .update(stringToSign(method, timestampMs, nonce))
    .digest('hex');
}

export interface SigningKey {
  keyId: string;
  signingKey: Buffer;
}

/** Adds a fresh signature for one call of `method` (e.g. "/mamba.v1.Mamba/Produce"). */
export function signCall(metadata: Metadata, key: SigningKey, method: string, nowMs = Date.now()): Metadata {
  const nonce = randomBytes(16).toString('hex');
  metadata.set(keyIdHeader, key.keyId);
  metadata.set(timestampHeader, String(nowMs));
  metadata.set(nonceHeader, nonce);
  metadata.set(signatureHeader, signatureOf(key.signingKey, method, nowMs, nonce));
  return metadata;
}
