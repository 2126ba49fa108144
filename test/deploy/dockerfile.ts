// Reads the Dockerfile and .dockerignore at the repository's top for the deployment tests: the
// instructions of each stage (continuation lines joined, comments dropped), and whether a path
// of the build context passes the ignore file (Docker's rules for the patterns we use: `*` and
// `?` within one path segment, `**` across segments, `!` to admit again, the last match wins, a
// path is matched by itself or by any of its parent directories).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface Instruction {
  keyword: string; // upper case: FROM, RUN, COPY...
  args: string; // the rest of the line, continuations joined
}

export interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

export function readDockerfile(text = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8')): Stage[] {
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (pending !== '' && line.startsWith('#')) continue; // a comment inside a continued instruction
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push((pending + line).trim());
    pending = '';
  }
  if (pending !== '') logical.push(pending.trim());
  const stages: Stage[] = [];
  /** ARGs before the first FROM, with their defaults: what a FROM line may name as ${NAME}. */
  const globalArgs = new Map<string, string>();
  for (const line of logical) {
    const [keyword, ...rest] = line.split(/\s+/);
    const instruction = { keyword: keyword!.toUpperCase(), args: rest.join(' ') };
    if (instruction.keyword === 'ARG' && stages.length === 0) {
      const [name, value] = instruction.args.split('=', 2);
      globalArgs.set(name!, value ?? '');
    }
    if (instruction.keyword === 'FROM') {
      const image = instruction.args.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => globalArgs.get((a ?? b)!) ?? '');
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(image);
      if (!match || match[1] === '') throw new Error(`Dockerfile: cannot read FROM ${instruction.args}`);
      stages.push({ from: match[1]!, name: match[2] ?? String(stages.length), instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') throw new Error(`Dockerfile: ${instruction.keyword} before the first FROM`);
    } else stages[stages.length - 1]!.instructions.push(instruction);
  }
  return stages;
}

/** The JSON array of an exec-form instruction (ENTRYPOINT, CMD, HEALTHCHECK ... CMD), or null for shell form. */
export function execForm(args: string): string[] | null {
  const start = args.indexOf('[');
  if (start < 0) return null;
  const value: unknown = JSON.parse(args.slice(start));
  return Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : null;
}

/** Sources and destination of a COPY, with its --from stage (null: the build context). */
export function copyOf(instruction: Instruction): { from: string | null; sources: string[]; destination: string } {
  const words = instruction.args.split(/\s+/);
  let from: string | null = null;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  const destination = words.pop();
  if (destination === undefined || words.length === 0) throw new Error(`Dockerfile: COPY ${instruction.args}: no source or destination`);
  return { from, sources: words, destination };
}

function patternRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      source += '.*';
      i++;
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** True when `.dockerignore` (its text given) lets `path` (relative, with /) into the build context. */
export function contextAdmits(ignoreText: string, path: string): boolean {
  const rules = ignoreText
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const admit = l.startsWith('!');
      const pattern = (admit ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      return { admit, pattern: patternRegExp(pattern) };
    });
  const segments = path.replace(/\/+$/, '').split('/');
  const prefixes = segments.map((_, i) => segments.slice(0, i + 1).join('/'));
  let admitted = true;
  for (const rule of rules) if (prefixes.some((p) => rule.pattern.test(p))) admitted = rule.admit;
  return admitted;
}
