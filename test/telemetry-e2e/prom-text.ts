/**
 * A small reader of the Prometheus text exposition format, enough to assert on the
 * gateway's `GET /metrics`: samples with their labels, filtered by name and a label subset.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseProm(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

export class PromText {
  readonly samples: PromSample[];

  constructor(readonly text: string) {
    this.samples = parseProm(text);
  }

  /** Samples of `name` whose labels include every `match` pair. */
  select(name: string, match: Record<string, string> = {}): PromSample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  }

  /** Sum over the selected samples; undefined when there is none. */
  sum(name: string, match: Record<string, string> = {}): number | undefined {
    const hits = this.select(name, match);
    return hits.length ? hits.reduce((a, s) => a + s.value, 0) : undefined;
  }

  /** The one sample's value; throws when several match (an ambiguous assertion), undefined when none. */
  one(name: string, match: Record<string, string> = {}): number | undefined {
    const hits = this.select(name, match);
    if (hits.length > 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(match)}:\n${hits.map((h) => JSON.stringify(h.labels)).join('\n')}`);
    return hits[0]?.value;
  }
}
