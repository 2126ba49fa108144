// The one place a call is checked before it reaches a handler (grpc-js server interceptor), for
// every method of a service: connection and in-flight limits (RESOURCE_EXHAUSTED), the access
// key signature (UNAUTHENTICATED), malformed request bytes (INVALID_ARGUMENT) and the
// permission for the topic and action the request names (PERMISSION_DENIED, one audit line).
// A stream is admitted once (limits, signature: checked when it opens, refused like a unary
// call); each request of a ProduceStream is authorized on its own (see MethodRule.requestField).
import * as grpc from '@grpc/grpc-js';
import { MambaError } from '../errors.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { Action, Permissions } from '../auth/permissions.js';
import type { Logger } from '../replica/logger.js';
import { MalformedRequest } from '../protocol/protos.js';
import type { ConnectionLimiter } from './listener.js';
import { toStatus } from '../protocol/status.js';
import { forwardedKey } from './client-service.js';
import { RefusedRequest } from './produce-stream.js';

/**
 * What each client API method needs: an action on the topic a request field names (one action,
 * one of a list, or 'any' action), or only a valid key (null).
 */
interface MethodRule {
  action: Action | readonly Action[] | 'any' | null;
  topicField: 'topic' | 'name' | null;
  /**
   * Client-streaming methods that carry many requests (ProduceStream): the field of each stream
   * message that holds the request. Each request is authorized on its own; a refused one reaches
   * the handler as a RefusedRequest, answered in place, and the stream goes on.
   */
  requestField?: 'request';
  /**
   * A fixed topic instead of a request field (topicField null): cluster operations that touch no
   * one topic are checked as the action on topic "*", so only a key granted it on every topic
   * (a grant whose pattern matches "*", e.g. `*`) passes.
   */
  topic?: string;
}

export const clientMethodRules: Record<string, MethodRule> = {
  Produce: { action: 'produce', topicField: 'topic' },
  ProduceStream: { action: 'produce', topicField: 'topic', requestField: 'request' },
  Consume: { action: 'consume', topicField: 'topic' },
  Subscribe: { action: 'consume', topicField: 'topic' },
  CommitOffset: { action: 'consume', topicField: 'topic' },
  FetchOffset: { action: 'consume', topicField: 'topic' },
  CreateTopic: { action: 'admin', topicField: 'name' },
  DeleteTopic: { action: 'admin', topicField: 'name' },
  DescribeTopic: { action: 'any', topicField: 'name' },
  ListTopics: { action: null, topicField: null },
  DescribeCluster: { action: null, topicField: null },
  // Joining a consumer group hands out the topic's queues: a key that may not read them may not
  // take them from the members that do.
  Heartbeat: { action: 'consume', topicField: 'topic' },
  // Names and counts only, like ListTopics; offsets and members need DescribeConsumerGroup.
  ListConsumerGroups: { action: null, topicField: null },
  // Committed offsets (FetchOffset needs consume) and member ids: a consumer watching its own lag
  // holds consume; an operator's key holds admin and should not need consume (reading messages).
  DescribeConsumerGroup: { action: ['consume', 'admin'], topicField: 'topic' },
  // Membership and leadership (issue 13.4) change the cluster, not a topic: admin on "*".
  AddReplica: { action: 'admin', topicField: null, topic: '*' },
  RemoveReplica: { action: 'admin', topicField: null, topic: '*' },
  TransferLeader: { action: 'admin', topicField: null, topic: '*' },
  // Topic names and where their queues live, like ListTopics and DescribeCluster (issue 14.1).
  GetMetadata: { action: null, topicField: null },
  AddGroup: { action: 'admin', topicField: null, topic: '*' },
  AddQueues: { action: 'admin', topicField: 'topic' },
  // A copy of every topic of a group: admin on "*", like the cluster operations.
  Backup: { action: 'admin', topicField: null, topic: '*' },
};

/** The action label of a rule (refusal metrics, audit lines): 'consume|admin' for a list. */
function actionLabel(action: MethodRule['action']): string {
  return action === null ? '' : typeof action === 'string' ? action : action.join('|');
}

export interface CallGuardOptions {
  /** Null: no access keys (every call is let through unsigned). */
  authenticator: Authenticator | null;
  permissions: (() => Permissions) | null;
  /** Calls signed with this key come from brokers of the cluster and may do anything. */
  brokerKeyId: string | null;
  limiter: ConnectionLimiter | null;
  inflightPerConnectionMax: number;
  logger: Logger;
  /** Peer API with mutual TLS: whether a certificate's common name is a broker of the group. */
  certificateAllowed?: (commonName: string | undefined) => boolean;
  /** Counts refusals for the metrics: the status code name and, for permissions, the action. */
  onRefusal?: (code: string, action: string) => void;
}

const auditLinesPerSecondMax = 20;

export class CallGuard {
  private readonly inflightByPeer = new Map<string, number>();
  private auditSecond = 0;
  private auditLines = 0;

  constructor(private readonly options: CallGuardOptions) {}

  /** Calls in flight on one connection (0 when none). */
  inflight(peer: string): number {
    return this.inflightByPeer.get(peer) ?? 0;
  }

  readonly interceptor: grpc.ServerInterceptor = (method, call) => {
    const path = method.path;
    const name = path.slice(path.lastIndexOf('/') + 1);
    const peer = call.getPeer();
    let done = false;
    let refused = false;
    let keyId: string | null = null;
    const finish = (): void => {
      if (done) return;
      done = true;
      const left = this.inflight(peer) - 1;
      if (left <= 0) this.inflightByPeer.delete(peer);
      else this.inflightByPeer.set(peer, left);
    };
    const refuse = (code: grpc.status, details: string, action = ''): void => {
      refused = true;
      this.options.onRefusal?.(grpc.status[code], action);
      finish();
      call.sendStatus({ code, details, metadata: new grpc.Metadata() });
    };
    this.inflightByPeer.set(peer, this.inflight(peer) + 1);
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const problem = this.admit(path, peer, metadata, () => commonName(call.getAuthContext().sslPeerCertificate?.subject?.CN));
        if (problem) return refuse(problem.code, problem.details);
        keyId = problem === null && this.options.authenticator ? String(metadata.get(authenticatedKeyHeader)[0]) : null;
        next(metadata);
      })
      .withOnReceiveMessage((message, next) => {
        if (refused) return;
        if (message instanceof MalformedRequest)
          return refuse(grpc.status.INVALID_ARGUMENT, `${name}: request is not a valid protobuf message: ${message.reason.slice(0, 200)}`);
        const rule = clientMethodRules[name];
        const wire = message as Record<string, unknown>;
        const request = rule?.requestField ? ((wire[rule.requestField] ?? {}) as Record<string, unknown>) : wire;
        const denial = keyId === null ? null : this.authorize(name, keyId, request, peer);
        if (denial && rule?.requestField) {
          this.options.onRefusal?.(grpc.status[grpc.status.PERMISSION_DENIED], actionLabel(rule.action));
          return next(new RefusedRequest(wire.clientSequence, grpc.status.PERMISSION_DENIED, denial));
        }
        if (denial) return refuse(grpc.status.PERMISSION_DENIED, denial, actionLabel(rule?.action ?? null));
        next(message);
      })
      .withOnReceiveHalfClose((next) => {
        if (!refused) next();
      })
      .withOnCancel(() => finish())
      .build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        finish();
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };

  /** Limits and signature; null when the call may go on (its key id then in the metadata). */
  private admit(path: string, peer: string, metadata: grpc.Metadata, certificateName: () => string | undefined): { code: grpc.status; details: string } | null {
    const { limiter, authenticator, certificateAllowed } = this.options;
    if (certificateAllowed) {
      const name = certificateName();
      if (!certificateAllowed(name))
        return { code: grpc.status.PERMISSION_DENIED, details: `the certificate of "${String(name).slice(0, 64)}" is not one of this group's brokers` };
    }
    if (limiter?.isOverLimit(peer)) {
      return {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `too many connections from ${peer.slice(0, peer.lastIndexOf(':'))} (limit ${limiter.connectionsPerClientMax}, connectionsPerClientMax); reuse one channel`,
      };
    }
    const inflight = this.inflight(peer);
    if (inflight > this.options.inflightPerConnectionMax) {
      return {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `${inflight - 1} calls already in flight on this connection (limit ${this.options.inflightPerConnectionMax}, inflightPerConnectionMax); retry`,
      };
    }
    metadata.remove(authenticatedKeyHeader);
    if (!authenticator) return null;
    let keyId: string;
    try {
      keyId = authenticator.authenticate(path, metadata);
    } catch (error) {
      const s = toStatus(error);
      if (error instanceof MambaError && error.kind === 'unauthenticated')
        this.audit('auth.unauthenticated', { peer, method: path, reason: s.details.slice(0, 200) });
      return { code: s.code, details: s.details };
    }
    // Only brokers may ask another broker not to carry a request on to the other groups.
    if (keyId !== this.options.brokerKeyId) metadata.remove(forwardedKey);
    metadata.set(authenticatedKeyHeader, keyId);
    return null;
  }

  /** The refusal text when `keyId` may not make this request, else null. */
  private authorize(name: string, keyId: string, request: Record<string, unknown>, peer: string): string | null {
    const rule = clientMethodRules[name];
    const permissions = this.options.permissions;
    if (!rule?.action || (!rule.topicField && rule.topic === undefined) || !permissions || keyId === this.options.brokerKeyId) return null;
    const value = rule.topicField ? request[rule.topicField] : rule.topic;
    const topic = typeof value === 'string' ? value : '';
    const granted = grantsRule(permissions(), keyId, rule.action, topic);
    if (granted) return null;
    const action = rule.action === 'any' ? 'any action' : typeof rule.action === 'string' ? rule.action : rule.action.join(' or ');
    this.audit('auth.permission_denied', { key: keyId, action, topic: topic.slice(0, 255), method: name, peer });
    return `access key "${keyId}" may not ${verbOf(rule.action)} topic "${topic.slice(0, 255)}" (${action} not granted)`;
  }

  /** Audit lines, at most auditLinesPerSecondMax a second so a flood cannot fill the disk. */
  private audit(event: string, fields: Record<string, unknown>): void {
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.auditSecond) {
      if (this.auditLines > auditLinesPerSecondMax) this.options.logger.warn('auth.audit_suppressed', { lines: this.auditLines - auditLinesPerSecondMax });
      this.auditSecond = second;
      this.auditLines = 0;
    }
    if (++this.auditLines <= auditLinesPerSecondMax) this.options.logger.warn(event, fields);
  }
}

function grantsRule(permissions: Permissions, keyId: string, action: Action | readonly Action[] | 'any', topic: string): boolean {
  if (action === 'any') return permissions.allowsAny(keyId, topic);
  if (typeof action === 'string') return permissions.allows(keyId, action, topic);
  return action.some((a) => permissions.allows(keyId, a, topic));
}

/** "produce", "administer", "consume or administer", "use". */
function verbOf(action: Action | readonly Action[] | 'any'): string {
  if (action === 'any') return 'use';
  return (typeof action === 'string' ? [action] : action).map((a) => (a === 'admin' ? 'administer' : a)).join(' or ');
}

function commonName(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

/** Set by the guard (after removing any value a client sent): the key a call was signed with. */
export const authenticatedKeyHeader = 'mamba-authenticated-key';
