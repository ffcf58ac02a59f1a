/**
 * Loads every `*.yaml` / `*.yml` file (not hidden) of the templates directory into a `TemplateRegistry`.
 * Synchronous: it runs once per config load, never during a request. Problems are collected
 * across all files (a broken file is left out of the registry) and reported as
 * `config/templates/support-reply.yaml: versions[1].version (line 12)`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { decodeUtf8 } from '../config/utf8.js';
import { compileTemplate } from './compile-template.js';
import { TemplateRegistry, type Template } from './registry.js';
import { formatYamlPath, type ConfigIssue } from './types.js';

export interface LoadTemplatesOptions {
  /** How the directory is shown in issue paths (default: `dir` relative to the cwd). */
  displayDir?: string;
}

/**
 * Reads and validates the templates directory.
 *
 * @example
 * const { registry, issues } = loadTemplateRegistry('config/templates');
 * if (issues.length) throw new ConfigError(issues);
 */
export function loadTemplateRegistry(dir: string, options: LoadTemplatesOptions = {}): { registry: TemplateRegistry; issues: ConfigIssue[] } {
  const shownDir = options.displayDir ?? displayPath(dir);
  const issues: ConfigIssue[] = [];
  let names: string[];
  try {
    names = readdirSync(dir)
      // Hidden files are not templates: macOS `._<name>.yaml` copies, Emacs `.#<name>.yaml` locks.
      .filter((n) => !n.startsWith('.') && (n.endsWith('.yaml') || n.endsWith('.yml')))
      .sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'read error';
    return { registry: new TemplateRegistry(), issues: [{ path: shownDir, message: `cannot read the templates directory (${code})` }] };
  }

  const templates = new Map<string, Template>();
  const fileOf = new Map<string, string>();
  for (const name of names) {
    const shown = path.join(shownDir, name);
    const loaded = loadTemplateFile(path.join(dir, name), shown, issues);
    if (!loaded) continue;
    const { template, idLine } = loaded;
    const other = fileOf.get(template.id);
    if (other) {
      issues.push({ path: `${shown}: id${idLine ? ` (line ${idLine})` : ''}`, message: `template "${template.id}" is also defined in ${other}` });
      continue;
    }
    templates.set(template.id, template);
    fileOf.set(template.id, shown);
  }
  return { registry: new TemplateRegistry(templates.values()), issues };
}

/**
 * Loads one template file, with the line of its `id` (where a second file with the same id
 * is reported); pushes its issues and returns undefined when it has any.
 */
export function loadTemplateFile(file: string, shown: string, issues: ConfigIssue[]): { template: Template; idLine: number | undefined } | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    issues.push({ path: shown, message: `cannot read the template file (${(err as NodeJS.ErrnoException).code ?? 'read error'})` });
    return undefined;
  }
  // Strict, as the config file is read: an invalid byte would reach the prompt as U+FFFD.
  const decoded = decodeUtf8(bytes);
  if ('error' in decoded) {
    issues.push({ path: decoded.line === undefined ? shown : `${shown} (line ${decoded.line})`, message: decoded.error });
    return undefined;
  }
  const text = decoded.text;
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      issues.push({ path: `${shown} (line ${lineCounter.linePos(e.pos[0]).line})`, message: e.message.split('\n')[0] });
    }
    return undefined;
  }
  // Nothing but blanks and comments: a file caught mid-write reads as empty.
  if (doc.contents === null) {
    issues.push({ path: shown, message: 'the file is empty' });
    return undefined;
  }
  let data: unknown;
  try {
    data = doc.toJS() ?? {};
  } catch (err) {
    // An alias whose anchor is missing (`*name`) is not a parse error; it throws here.
    issues.push({ path: shown, message: (err as Error).message.split('\n')[0] });
    return undefined;
  }
  const expectedId = path.basename(file).replace(/\.ya?ml$/, '');
  const { template, problems } = compileTemplate(data, { expectedId, file: shown, locate: locator(data, doc, lineCounter) });
  for (const p of problems) {
    const line = lineOf(doc, lineCounter, p.segments);
    issues.push({ path: `${shown}: ${formatYamlPath(p.segments)}${line ? ` (line ${line})` : ''}`, message: p.message });
  }
  return problems.length > 0 || !template ? undefined : { template, idLine: lineOf(doc, lineCounter, ['id']) };
}

/**
 * `Template.locate` for the settings checked after loading (each version's `variables.<name>`
 * and `context.recipes[i].weight`), their lines looked up now: the YAML document is not
 * kept alive with the template for it.
 */
function locator(data: unknown, doc: YAML.Document, lineCounter: YAML.LineCounter): (index: number, segments: readonly PropertyKey[]) => string {
  const lines = new Map<string, number | undefined>();
  const versions = (data as { versions?: unknown }).versions;
  (Array.isArray(versions) ? versions : []).forEach((v, i) => {
    const version = (v ?? {}) as { variables?: unknown; context?: { recipes?: unknown } };
    const at = (segments: PropertyKey[]) => lines.set(JSON.stringify(['versions', i, ...segments]), lineOf(doc, lineCounter, ['versions', i, ...segments]));
    for (const name of Object.keys(version.variables ?? {})) at(['variables', name]);
    const recipes = version.context?.recipes;
    if (Array.isArray(recipes)) recipes.forEach((_r, j) => at(['context', 'recipes', j, 'weight']));
  });
  return (index, segments) => {
    const path = ['versions', index, ...segments];
    const line = lines.get(JSON.stringify(path));
    return `${formatYamlPath(path)}${line ? ` (line ${line})` : ''}`;
  };
}

function displayPath(dir: string): string {
  const rel = path.relative(process.cwd(), path.resolve(dir));
  return rel === '' ? '.' : rel.startsWith('..') ? path.resolve(dir) : rel;
}

/** Line of the deepest existing node on the path (a missing key reports its parent's line). */
function lineOf(doc: YAML.Document, lineCounter: YAML.LineCounter, segments: readonly PropertyKey[]): number | undefined {
  for (let n = segments.length; n >= 0; n--) {
    const parentPath = segments.slice(0, Math.max(0, n - 1));
    const parent = n === 0 ? undefined : doc.getIn(parentPath as unknown[], true);
    // Prefer the key's own position: `versions[0].version` points at `version:`.
    if (YAML.isMap(parent)) {
      const pair = parent.items.find((p) => YAML.isScalar(p.key) && p.key.value === segments[n - 1]);
      const keyRange = YAML.isScalar(pair?.key) ? pair.key.range : undefined;
      if (keyRange) return lineCounter.linePos(keyRange[0]).line;
    }
    const node = doc.getIn(segments.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lineCounter.linePos(node.range[0]).line;
  }
  return undefined;
}
