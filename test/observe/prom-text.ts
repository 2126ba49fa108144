// A strict parser of the Prometheus text exposition format (version 0.0.4), as promtool reads
// it: HELP and TYPE lines, metric and label names, label value escapes, sample values, families
// kept together, no duplicate series, and histogram consistency (le order, cumulative buckets,
// +Inf bucket equal to _count). Any violation throws with the line number.

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: MetricType;
  help: string | null;
  samples: PromSample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const types: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

export class PromSyntaxError extends Error {}

function fail(line: number, problem: string, text: string): never {
  throw new PromSyntaxError(`line ${line}: ${problem}: ${JSON.stringify(text.slice(0, 200))}`);
}

export function parseFloatStrict(text: string): number | null {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return null;
  return Number(text);
}

/** The family a sample name belongs to (histogram and summary suffixes stripped when declared). */
function familyOf(name: string, families: Map<string, PromFamily>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const family = families.get(base);
    if (family && (family.type === 'histogram' || (family.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return name;
}

function readLabels(text: string, at: number, line: number, whole: string): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at + 1; // after '{'
  for (let guard = 0; guard < 10_000; guard++) {
    if (text[i] === '}') return { labels, end: i + 1 };
    const nameMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i));
    if (!nameMatch) fail(line, 'bad label name', whole);
    const name = nameMatch[0];
    if (name.startsWith('__')) fail(line, `label name ${name} is reserved`, whole);
    if (name in labels) fail(line, `label ${name} given twice`, whole);
    i += name.length;
    if (text[i] !== '=' || text[i + 1] !== '"') fail(line, `label ${name} needs ="value"`, whole);
    i += 2;
    let value = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) fail(line, 'unterminated label value', whole);
      if (c === '"') break;
      if (c === '\\') {
        const next = text[i + 1];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else fail(line, `bad escape \\${next ?? ''} in label value`, whole);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    labels[name] = value;
    i++; // closing quote
    if (text[i] === ',') i++;
    else if (text[i] !== '}') fail(line, 'expected , or } after a label', whole);
  }
  fail(line, 'too many labels', whole);
}

export function parsePromText(text: string): Map<string, PromFamily> {
  if (text.length > 0 && !text.endsWith('\n')) throw new PromSyntaxError('the exposition does not end with a newline');
  const families = new Map<string, PromFamily>();
  const seriesSeen = new Set<string>();
  const closed = new Set<string>(); // families whose samples ended (samples must be contiguous)
  let current: string | null = null;
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, index) => {
    const n = index + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw);
      if (!m) {
        if (/^#\s*(HELP|TYPE)\b/.test(raw)) fail(n, 'malformed HELP/TYPE line', raw);
        return; // a plain comment
      }
      const [, kind, name, rest] = m as unknown as [string, string, string, string | undefined];
      if (!metricName.test(name)) fail(n, `bad metric name ${name}`, raw);
      if (closed.has(name) || (current !== null && current !== name && families.get(name)?.samples.length))
        fail(n, `${kind} for ${name} after its samples`, raw);
      let family = families.get(name);
      if (!family) families.set(name, (family = { name, type: 'untyped', help: null, samples: [] }));
      if (family.samples.length > 0) fail(n, `${kind} for ${name} after its samples`, raw);
      if (kind === 'HELP') {
        if (family.help !== null) fail(n, `second HELP for ${name}`, raw);
        family.help = (rest ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      } else {
        if (!types.includes(rest as MetricType)) fail(n, `unknown type ${rest}`, raw);
        if ((family as { typed?: boolean }).typed) fail(n, `second TYPE for ${name}`, raw);
        family.type = rest as MetricType;
        (family as { typed?: boolean }).typed = true;
      }
      if (current !== name && current !== null) closed.add(current);
      current = name;
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw);
    if (!nameMatch) fail(n, 'bad metric name', raw);
    const name = nameMatch[0];
    let i = name.length;
    let labels: Record<string, string> = {};
    if (raw[i] === '{') ({ labels, end: i } = readLabels(raw, i, n, raw));
    if (raw[i] !== ' ') fail(n, 'expected a space before the value', raw);
    const parts = raw.slice(i + 1).split(' ');
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') fail(n, 'expected a value and an optional timestamp', raw);
    const value = parseFloatStrict(parts[0]!);
    if (value === null) fail(n, `bad value ${parts[0]}`, raw);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1]!)) fail(n, `bad timestamp ${parts[1]}`, raw);
    const familyName = familyOf(name, families);
    if (closed.has(familyName)) fail(n, `samples of ${familyName} are not together`, raw);
    if (current !== familyName && current !== null) closed.add(current);
    current = familyName;
    let family = families.get(familyName);
    if (!family) families.set(familyName, (family = { name: familyName, type: 'untyped', help: null, samples: [] }));
    if (family.type === 'histogram' && name === familyName) fail(n, `histogram ${familyName} has a bare sample`, raw);
    if (family.type === 'histogram' && name.endsWith('_bucket') && labels.le === undefined) fail(n, 'bucket without le', raw);
    const key = `${name}{${Object.keys(labels)
      .sort()
      .map((k) => `${k}=${JSON.stringify(labels[k])}`)
      .join(',')}}`;
    if (seriesSeen.has(key)) fail(n, `duplicate series ${key}`, raw);
    seriesSeen.add(key);
    family.samples.push({ name, labels, value });
  });
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

function checkHistogram(family: PromFamily): void {
  const byLabels = new Map<string, { buckets: Array<[number, number]>; count: number | null }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let h = byLabels.get(key);
    if (!h) byLabels.set(key, (h = { buckets: [], count: null }));
    if (s.name.endsWith('_bucket')) {
      const bound = parseFloatStrict(le!);
      if (bound === null) throw new PromSyntaxError(`${family.name}: bad le "${le}"`);
      h.buckets.push([bound, s.value]);
    } else if (s.name.endsWith('_count')) h.count = s.value;
  }
  for (const [key, h] of byLabels) {
    for (let i = 1; i < h.buckets.length; i++) {
      if (!(h.buckets[i]![0] > h.buckets[i - 1]![0])) throw new PromSyntaxError(`${family.name}${key}: le bounds not increasing`);
      if (h.buckets[i]![1] < h.buckets[i - 1]![1]) throw new PromSyntaxError(`${family.name}${key}: bucket counts not cumulative`);
    }
    const last = h.buckets[h.buckets.length - 1];
    if (!last || last[0] !== Infinity) throw new PromSyntaxError(`${family.name}${key}: no +Inf bucket`);
    if (h.count === null || h.count !== last[1]) throw new PromSyntaxError(`${family.name}${key}: _count ${h.count} differs from the +Inf bucket ${last[1]}`);
  }
}

/** The value of the one sample of `name` whose labels include `labels`, or undefined. */
export function sampleValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
