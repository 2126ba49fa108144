// Who a STOMP connection is, and what it may do: login is an access key id, passcode its secret,
// checked as every gateway checks them (../common/access.ts: derived off the event loop, compared
// in constant time; the permissions file per topic). Without access keys in the cluster every
// connection is let in and may do everything, as on the gRPC API. This class only puts the check
// in STOMP's terms: a refusal with a reason and a message for the ERROR frame.
import { keyIdPattern } from '../../auth/keys.js';
import type { Action } from '../../auth/permissions.js';
import { allows, login, type GatewayAccess } from '../common/access.js';

export type LoginFailure = 'missing' | 'unknown_key' | 'bad_secret';

export class LoginRefused extends Error {
  override readonly name = 'LoginRefused';
  constructor(
    readonly reason: LoginFailure,
    message: string,
  ) {
    super(message);
  }
}

/** The key id who connects; '' on a cluster without access keys and no login. */
export type Principal = string;

export class GatewayAuth {
  constructor(private readonly access: GatewayAccess | null) {}

  get required(): boolean {
    return this.access !== null;
  }

  /** The key id `loginId`/`passcode` prove; LoginRefused names the reason (never the secret). */
  async login(loginId: string | undefined, passcode: string | undefined): Promise<Principal> {
    const result = await login(this.access, loginId || undefined, passcode);
    if (result.ok) return result.keyId ?? loginId ?? '';
    // Named only when it is a known key id: a mangled CONNECT can run the passcode into the login.
    const known = loginId !== undefined && this.access?.keys().has(loginId) === true;
    const shown = known ? loginId : `(${(loginId ?? '').length} characters)`;
    switch (result.reason) {
      case 'missing':
        throw new LoginRefused('missing', 'this broker requires login (an access key id) and passcode (its secret)');
      case 'unknown_key':
        throw new LoginRefused('unknown_key', `unknown access key ${known ? `"${shown}"` : shown}`);
      case 'malformed':
        if (!keyIdPattern.test(loginId ?? '')) throw new LoginRefused('unknown_key', `unknown access key ${shown}`);
        throw new LoginRefused('bad_secret', `wrong passcode for access key "${shown}"`);
      case 'bad_secret':
        throw new LoginRefused('bad_secret', `wrong passcode for access key "${shown}"`);
    }
  }

  allows(principal: Principal, action: Action, topic: string): boolean {
    return allows(this.access, principal === '' ? null : principal, action, topic);
  }
}
