// The cluster as a gateway reaches it: an in-process SDK client (src/client) over every broker's
// client API, signed with the brokers' own key when the cluster has access keys. Produce and
// consume then take the normal gRPC path (forwarding to the queue's leader, read advice, limits,
// metrics and the broker's spans); the gateway checks its own user's permissions first, since
// the brokers' key passes every permission check.
import type { SigningKey } from '../../auth/signature.js';
import { MambaClient } from '../../client/client.js';

export interface BackendOptions {
  /** host:port of every broker's client API (this broker's first). */
  brokers: string[];
  /** The brokers' key (null: the cluster has no access keys). */
  signingKey: SigningKey | null;
  /** The CA that signed the brokers' certificates (null: plain text). */
  tlsCaFile: string | null;
  requestTimeoutMs: number;
}

export function backendClient(options: BackendOptions): MambaClient {
  return new MambaClient({
    brokers: options.brokers,
    requestTimeoutMs: options.requestTimeoutMs,
    tls: options.tlsCaFile === null ? false : { caFile: options.tlsCaFile },
    ...(options.signingKey ? { signingKey: options.signingKey } : {}),
    // Through a leader change (election timeout and a little) before a gateway client sees an error.
    retry: { attemptsMax: 30, backoffMsInitial: 20, backoffMsMax: 500 },
  });
}
