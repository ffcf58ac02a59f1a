/**
 * README's config reference and the zod schema of gateway.config.yaml describe the same keys,
 * with the same defaults.
 *
 * Where the reference is (the layout this test reads):
 * - "## Configuration reference": a `| key | default | meaning |` table. A key cell holds one
 *   or more code spans (`upstreams[].timeout`; `[]` marks the items of a list). A code span in
 *   the default or meaning cell that is a flow mapping (`{connect_ms: 5000, ...}`, also inside
 *   a list: `[{name, version}]`) documents the row's child keys; `a \| b` lists alternatives,
 *   `<model>` stands for any name (a map key), `...` for more of the same.
 * - `context.builders[]`: the `| key | default | meaning |` tables of "Context injection" >
 *   "Configuration" (every `####` subsection up to the next `###`), the keys of a knowledge
 *   builder's `http:` in the sentence "**Search endpoint.** Its keys are ...", and the `cache:` keys in the
 *   first paragraph of "Context injection" > "Cache".
 * Keys inside a free-form map (`headers`, `routing.models`, a rule's `when`) are data, not
 * config keys: the reference may show examples of them.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { z } from 'zod';
import { configSchema } from '../src/config/schema.js';

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

// ---- the schema ----

interface SchemaKeys {
  /** Every key path: `upstreams[].timeout.connect_ms`, `pricing.*.input` (`*`: any map key). */
  paths: Set<string>;
  /** Paths whose value is a free-form map (`upstreams[].headers`): their keys are data. */
  freeForm: Set<string>;
}

/** Walks the schema through wrappers (optional, default, prefault, transform), lists and unions. */
function schemaKeys(schema: z.ZodType): SchemaKeys {
  const keys: SchemaKeys = { paths: new Set(), freeForm: new Set() };
  const walk = (s: z.core.$ZodType, path: string): void => {
    const def = s._zod.def as z.core.$ZodTypeDef & Record<string, unknown>;
    switch (def.type) {
      case 'object':
        for (const [key, value] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) {
          const child = path ? `${path}.${key}` : key;
          keys.paths.add(child);
          walk(value, child);
        }
        break;
      case 'array':
        walk(def.element as z.core.$ZodType, `${path}[]`);
        break;
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
        walk(def.innerType as z.core.$ZodType, path);
        break;
      case 'pipe':
        walk(def.in as z.core.$ZodType, path);
        break;
      case 'union':
        for (const option of def.options as z.core.$ZodType[]) walk(option, path);
        break;
      case 'record': {
        const value = def.valueType as z.core.$ZodType;
        if (value._zod.def.type === 'object') {
          keys.paths.add(`${path}.*`);
          walk(value, `${path}.*`);
        } else {
          keys.freeForm.add(path);
        }
        break;
      }
      case 'unknown':
        keys.freeForm.add(path);
        break;
    }
  };
  walk(schema, '');
  return keys;
}

// ---- the README ----

/** The lines of the section that starts with `heading` (exactly), up to the next heading of its level or higher. */
function section(heading: string, from = 0): string[] {
  const lines = README.split('\n');
  const start = lines.findIndex((l, i) => i >= from && l === heading);
  expect(start, `README heading "${heading}"`).toBeGreaterThanOrEqual(0);
  const level = heading.match(/^#+/)![0].length;
  let end = start + 1;
  while (end < lines.length && !(/^#+ /.test(lines[end]) && lines[end].match(/^#+/)![0].length <= level)) end++;
  return lines.slice(start + 1, end);
}

/** The code spans of a line or cell, in order. */
function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

interface Row {
  /** As written: `bindings[]` documents the list `bindings` and, in its cells, its items' keys. */
  keys: string[];
  defaultCell: string;
  meaning: string;
}

/** Rows of every `| key | default | meaning |` table in `lines`. Cells split on `|` not written `\|`. */
function referenceRows(lines: string[]): Row[] {
  const rows: Row[] = [];
  let inTable = false;
  for (const line of lines) {
    if (/^\| key \| default \| meaning \|$/.test(line)) {
      inTable = true;
      continue;
    }
    if (!line.startsWith('|')) {
      inTable = false;
      continue;
    }
    if (!inTable || /^\|[-| ]+\|$/.test(line)) continue;
    const cells = line
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    expect(cells, line).toHaveLength(3);
    rows.push({ keys: codeSpans(cells[0]), defaultCell: cells[1], meaning: cells[2] });
  }
  return rows;
}

/**
 * Key paths a flow mapping documents under `parent`: `{a: 1, b: {c, d}, e: [{f}]}` ->
 * `parent.a`, `parent.b`, `parent.b.c`, `parent.b.d`, `parent.e`, `parent.e[].f`.
 */
function flowMappingKeys(text: string, parent: string): string[] {
  const out: string[] = [];
  let i = 0;
  const value = (path: string): void => {
    if (text[i] === '{') return mapping(path);
    if (text[i] === '[' && text[i + 1] === '{') {
      i++;
      mapping(`${path}[]`);
      while (i < text.length && text[i] !== ']') i++;
      i++;
      return;
    }
    // A scalar (or a list of scalars): skip to the `,` or `}` that ends it.
    let depth = 0;
    while (i < text.length && (depth > 0 || (text[i] !== ',' && text[i] !== '}'))) {
      if ('[{('.includes(text[i])) depth++;
      if (')]}'.includes(text[i])) depth--;
      i++;
    }
  };
  const mapping = (path: string): void => {
    i++; // {
    while (i < text.length && text[i] !== '}') {
      const m = /^\s*([^:,}]*?)\s*(:\s*|(?=[,}]))/.exec(text.slice(i))!;
      i += m[0].length;
      const names = m[1]
        .replace(/\\\|/g, '|')
        .split('|')
        .map((n) => n.trim())
        .filter((n) => n !== '' && n !== '...');
      const paths = names.map((n) => `${path}.${n.replace(/^<[^>]+>$/, '*')}`);
      out.push(...paths);
      if (m[2].startsWith(':')) value(paths[0] ?? `${path}.?`);
      if (text[i] === ',') i++;
    }
    i++; // }
  };
  value(parent);
  return out;
}

/** Flow mappings among `spans` (not Mustache `{{x}}`). */
function isFlowMapping(span: string): boolean {
  return (span.startsWith('{') && !span.startsWith('{{')) || span.startsWith('[{');
}

interface Documented {
  paths: Set<string>;
  /** Rows with the prefix their keys take, for the defaults check. */
  rows: { prefix: string; row: Row }[];
}

function documentedKeys(): Documented {
  const doc: Documented = { paths: new Set(), rows: [] };
  const add = (path: string) => doc.paths.add(path);
  const addRows = (prefix: string, rows: Row[]) => {
    for (const row of rows) {
      doc.rows.push({ prefix, row });
      for (const key of row.keys) {
        add(prefix + key);
        for (const span of [...codeSpans(row.defaultCell), ...codeSpans(row.meaning)].filter(isFlowMapping)) {
          flowMappingKeys(span.replace(/\\\|/g, '|'), prefix + key).forEach(add);
        }
      }
    }
  };

  addRows('', referenceRows(section('## Configuration reference')));

  const contextStart = README.split('\n').indexOf('## Context injection');
  const builders = section('### Configuration (`gateway.config.yaml`)', contextStart);
  addRows('context.builders[].', referenceRows(builders));

  // "**Search endpoint.** Its keys are `url` (...), ..., `fields` (`{title, ...}` field names), ... ."
  const search = builders
    .join('\n')
    .split('\n\n')
    .find((p) => p.startsWith('**Search endpoint.** Its keys are '));
  expect(search, 'the knowledge builder\'s "Search endpoint" paragraph').toBeDefined();
  const keysSentence = search!.split(/\.(?:\s|$)/)[0];
  let last = '';
  for (const span of codeSpans(keysSentence)) {
    if (/^[a-z_]+$/.test(span)) add((last = `context.builders[].http.${span}`));
    else if (isFlowMapping(span) && last) flowMappingKeys(span, last).forEach(add);
  }

  // "Each builder with a `cache:` block ... `ttl_ms` is required; `max_entries` defaults to 1000, ..."
  const cache = section('### Cache', contextStart).join('\n').trim().split('\n\n')[0];
  add('context.builders[].cache');
  for (const span of codeSpans(cache)) if (/^[a-z_]+$/.test(span)) add(`context.builders[].cache.${span}`);
  return doc;
}

/** `a.b[].c` -> `a`, `a.b`, `a.b[].c` (minus the `[]` forms of a list itself). */
function withAncestors(paths: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const p of paths) {
    const parts = p.split('.');
    for (let n = 1; n <= parts.length; n++) out.add(parts.slice(0, n).join('.').replace(/\[\]$/, ''));
  }
  return out;
}

const schema = schemaKeys(configSchema);
const doc = documentedKeys();
const documented = withAncestors(doc.paths);

describe('config reference (README) vs schema', () => {
  it('reads a plausible reference (the layout this test expects is still there)', () => {
    expect(documented).toContain('server.port');
    expect(documented).toContain('upstreams[].timeout.connect_ms');
    expect(documented).toContain('experiments[].variants[].weight');
    expect(documented).toContain('context.builders[].http.fields.title');
    expect(documented).toContain('context.builders[].cache.ttl_ms');
    expect(schema.paths).toContain('pricing.*.cached_input');
    expect(flowMappingKeys('{model, experiment | template, mode: replace|prepend, e: [{f, g: 1}], <m>: {x}, ...}', 'b')).toEqual(['b.model', 'b.experiment', 'b.template', 'b.mode', 'b.e', 'b.e[].f', 'b.e[].g', 'b.*', 'b.*.x']);
  });

  it('documents every key of the schema', () => {
    expect([...schema.paths].filter((p) => !documented.has(p)).sort()).toEqual([]);
  });

  it('documents no key the schema does not have', () => {
    const inFreeForm = (p: string) => [...schema.freeForm].some((f) => p.startsWith(`${f}.`));
    expect([...documented].filter((p) => !schema.paths.has(p) && !inFreeForm(p)).sort()).toEqual([]);
  });
});

// ---- defaults ----

const MINIMAL = { upstreams: [{ name: 'a', base_url: 'https://api.example.com/v1' }, { name: 's', simulate: {} }], routing: { default: ['a'] } };
/** The schema's defaults: a config of one upstream of each kind ... */
const DEFAULTS = configSchema.parse(MINIMAL) as unknown as Record<string, unknown>;
/** ... and one with a builder of each kind. */
const BUILDER_DEFAULTS = configSchema.parse({
  ...MINIMAL,
  context: {
    builders: [
      { name: 'r', kind: 'rules' },
      { name: 'h', kind: 'history' },
      { name: 'w', kind: 'http', url: 'https://example.com' },
      { name: 'k', kind: 'knowledge' },
    ],
  },
}) as unknown as Record<string, unknown>;

/** The default at `a.b[].c`: in the first list item that has the key. */
function defaultAt(path: string): unknown {
  let values: unknown[] = [path.startsWith('context.builders[].') ? BUILDER_DEFAULTS : DEFAULTS];
  for (const part of path.split('.')) {
    const list = part.endsWith('[]');
    const key = part.replace(/\[\]$/, '');
    values = values.flatMap((v) => (v !== null && typeof v === 'object' && key in v ? [(v as Record<string, unknown>)[key]] : []));
    if (list) values = values.flatMap((v) => (Array.isArray(v) ? v : []));
  }
  return values.find((v) => v !== undefined);
}

/** A default cell that is one code span (`8080`, `{a: 1}`) or a bare number (`10`); else undefined (`required`, `none`, prose). */
function documentedDefaults(row: Row): unknown[] | undefined {
  const spans = codeSpans(row.defaultCell);
  if (/^\d+(\.\d+)?$/.test(row.defaultCell)) return [Number(row.defaultCell)];
  if (spans.length !== row.keys.length || row.defaultCell.replace(/`[^`]+`/g, '').replace(/[,\s]/g, '') !== '') return undefined;
  return spans.map((s) => YAML.parse(s));
}

describe('config reference defaults', () => {
  const checked = doc.rows.flatMap(({ prefix, row }) => {
    const values = documentedDefaults(row);
    if (values === undefined) return [];
    // A key without a schema default (`timeout_ms`: `deadline_ms`) is filled in later, by compile.
    return row.keys.map((key, i) => ({ path: prefix + key.replace(/\[\]$/, ''), documented: values[i], actual: defaultAt(prefix + key) })).filter((c) => c.actual !== undefined);
  });

  it('checks a fair sample', () => {
    expect(checked.length).toBeGreaterThan(30);
  });

  it.each(checked)('$path: the documented default is the schema default', ({ documented, actual }) => {
    expect(actual).toEqual(documented);
  });

  it('documents the simulator defaults', () => {
    const row = doc.rows.find((r) => r.row.keys[0] === 'upstreams[].simulate')!.row;
    const documented = YAML.parse(codeSpans(row.meaning).find(isFlowMapping)!.replace('latency/chunks', 'null')) as Record<string, unknown>;
    expect({ ...(defaultAt('upstreams[].simulate') as object), chunk_interval_ms: null }).toEqual(documented);
  });
});
