// Small readers that check one configuration value each and name the key on failure, and the
// read-and-parse step every YAML/JSON file of ours goes through (cluster file, permissions, alert
// rules). Every error says where the value came from (`file: key.path`), what was wrong, and what
// fits. A leaf: it imports nothing of ours, so every layer may use it.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type Fields = Record<string, unknown>;

export interface Where {
  source: string; // file name or "<defaults>"
  path: string; // dotted key path, e.g. "groups[0].brokers[1].clientPort"
}

export function at(where: Where, key: string | number): Where {
  const path = typeof key === 'number' ? `${where.path}[${key}]` : where.path ? `${where.path}.${key}` : key;
  return { source: where.source, path };
}

export function fail(where: Where, problem: string): never {
  throw new ConfigError(`${where.source}: ${where.path || '(top level)'}: ${problem}`);
}

/** A file's text, or a ConfigError naming the file, what it was for and the system's reason. */
export function readTextFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${file}: cannot read ${what}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** A YAML (or JSON, which is YAML) document, or a ConfigError naming the source and the first parse error. */
export function parseDocument(text: string, source: string): unknown {
  try {
    return parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${source}: not valid YAML or JSON: ${(error as Error).message.split('\n')[0]}`);
  }
}

export function readObject(value: unknown, where: Where): Fields {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(where, `must be a mapping, got ${describe(value)}`);
  }
  return value as Fields;
}

export function readArray(value: unknown, where: Where): unknown[] {
  if (!Array.isArray(value)) fail(where, `must be a list, got ${describe(value)}`);
  return value;
}

/** Rejects keys that this reader does not know, so a typo never passes silently. */
export function rejectUnknownKeys(fields: Fields, known: readonly string[], where: Where): void {
  for (const key of Object.keys(fields)) {
    if (!known.includes(key)) fail(at(where, key), `unknown key (known keys: ${known.join(', ')})`);
  }
}

export function readString(value: unknown, where: Where, pattern?: RegExp): string {
  if (typeof value !== 'string' || value.length === 0) fail(where, `must be a non-empty string, got ${describe(value)}`);
  if (pattern && !pattern.test(value)) fail(where, `"${value}" does not match ${pattern}`);
  return value;
}

export function readInteger(value: unknown, where: Where, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(where, `must be an integer, got ${describe(value)}`);
  if (value < min || value > max) fail(where, `${value} is out of range [${min}, ${max}]`);
  return value;
}

export function readNumber(value: unknown, where: Where, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(where, `must be a number, got ${describe(value)}`);
  if (value < min || value > max) fail(where, `${value} is out of range [${min}, ${max}]`);
  return value;
}

export function readChoice<T extends string>(value: unknown, where: Where, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    fail(where, `must be one of ${choices.join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

export function readBoolean(value: unknown, where: Where): boolean {
  if (typeof value !== 'boolean') fail(where, `must be true or false, got ${describe(value)}`);
  return value;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}
