// Permissions: which access key may produce to, consume from or administer which topics.
// A YAML or JSON file of grants; a topic pattern may use `*` (any run of characters) and `?`
// (one character); a grant's key may be `*` (every key). Anything not granted is refused.
import { at, fail, parseDocument, readArray, readObject, readString, rejectUnknownKeys, type Where } from '../validation.js';

export type Action = 'produce' | 'consume' | 'admin';
export const actions: readonly Action[] = ['produce', 'consume', 'admin'];

interface Grant {
  key: string;
  topics: RegExp[];
  actions: Set<Action>;
}

const topicPatternText = /^[A-Za-z0-9_.*?-]{1,255}$/;

export class Permissions {
  constructor(private readonly grants: readonly Grant[]) {}

  get grantCount(): number {
    return this.grants.length;
  }

  allows(keyId: string, action: Action, topic: string): boolean {
    return this.grants.some((g) => (g.key === '*' || g.key === keyId) && g.actions.has(action) && g.topics.some((t) => t.test(topic)));
  }

  /** True when the key holds any action on the topic (describing a topic needs no more). */
  allowsAny(keyId: string, topic: string): boolean {
    return actions.some((a) => this.allows(keyId, a, topic));
  }
}

export function topicPattern(pattern: string): RegExp {
  const body = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\-]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`);
}

/**
 * grants:
 *   - { key: AK12..., topics: ["orders.*"], actions: [produce, consume] }
 */
export function parsePermissions(text: string, source: string): Permissions {
  const document = parseDocument(text, source);
  const where: Where = { source, path: '' };
  const top = readObject(document, where);
  rejectUnknownKeys(top, ['grants'], where);
  const grants = readArray(top.grants, at(where, 'grants')).map((g, i) => readGrant(g, at(at(where, 'grants'), i)));
  return new Permissions(grants);
}

function readGrant(value: unknown, where: Where): Grant {
  const fields = readObject(value, where);
  rejectUnknownKeys(fields, ['key', 'topics', 'actions'], where);
  const key = readString(fields.key, at(where, 'key'), /^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$/);
  const topicsWhere = at(where, 'topics');
  const topics = readArray(fields.topics, topicsWhere).map((t, i) => topicPattern(readString(t, at(topicsWhere, i), topicPatternText)));
  if (topics.length === 0) fail(topicsWhere, 'must name at least one topic pattern');
  const actionsWhere = at(where, 'actions');
  const list = readArray(fields.actions, actionsWhere).map((a, i) => {
    const text = readString(a, at(actionsWhere, i));
    if (!(actions as readonly string[]).includes(text)) fail(at(actionsWhere, i), `must be one of ${actions.join(', ')}, got "${text}"`);
    return text as Action;
  });
  if (list.length === 0) fail(actionsWhere, `must name at least one of ${actions.join(', ')}`);
  return { key, topics, actions: new Set(list) };
}
