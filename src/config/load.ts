/**
 * Config loading: YAML text -> `${ENV}` substitution -> strict schema -> compile -> freeze.
 * Every problem is collected (not just the first) and reported with its YAML path and line,
 * so `promptgate check` can print them all.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { maskSubstituted, referencedValues, substituteEnv, variableNames } from './env.js';
import { configSchema } from './schema.js';
import { suggestKey } from './suggest.js';
import { compileConfig, type RuntimeConfig } from './compile.js';
import { decodeUtf8 } from './utf8.js';

/** One problem in a config file (or a file it refers to, such as a template). */
export interface ConfigIssue {
  /** `file: yaml.path (line N)`, e.g. `gateway.config.yaml: upstreams[0].timeout (line 12)` */
  path: string;
  message: string;
}

/** Thrown when a config cannot be used; `issues` lists every problem found. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  /**
   * The directories the rejected config read or tried to read (`RuntimeConfig.watchDirs`),
   * when the load got that far: hot reload watches them for the edit that fixes it.
   */
  readonly watchDirs: readonly string[] | undefined;
  constructor(issues: ConfigIssue[], watchDirs?: readonly string[]) {
    super(`invalid config: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
    this.watchDirs = watchDirs;
  }
}

export interface LoadOptions {
  env?: Record<string, string | undefined>;
}

/** Reads, validates and compiles a config file. Throws `ConfigError`. */
export function loadConfigFile(file: string, options: LoadOptions = {}): RuntimeConfig {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'read error';
    throw new ConfigError([{ path: file, message: `cannot read the config file (${code})` }]);
  }
  return parseConfig(configText(bytes, path.basename(file)), { file, env: options.env });
}

/** The config file's text, read as strict UTF-8 (see `decodeUtf8`). Throws `ConfigError`. */
function configText(bytes: Buffer, name: string): string {
  const decoded = decodeUtf8(bytes);
  if ('text' in decoded) return decoded.text;
  throw new ConfigError([{ path: decoded.line === undefined ? name : `${name} (line ${decoded.line})`, message: decoded.error }]);
}

export interface ParseOptions extends LoadOptions {
  /** Path shown in messages; relative paths in the config resolve against its directory. */
  file: string;
}

/** Validates and compiles config text. Throws `ConfigError`. */
export function parseConfig(text: string, options: ParseOptions): RuntimeConfig {
  const name = path.basename(options.file);
  const env = options.env ?? process.env;
  const { text: substituted, missing, lineBreaks, unsupported, comments, missingColumns, unsupportedColumns } = substituteEnv(text, env);
  // YAML's messages quote the source, which now holds these values (API keys among them).
  const values = referencedValues(text, env);
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(substituted, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: true });
  // An unset variable, or a form promptgate does not know, is named with the setting it is
  // in (`upstreams[0].api_key`), not only its line.
  const settingAt = (line: number, column: number | undefined): string => {
    const at = doc.errors.length === 0 ? pathAt(doc.contents, (lineCounter.lineStarts[line - 1] ?? 0) + (column ?? 0), []) : undefined;
    return at !== undefined && at.length > 0 ? `${name}: ${maskedPath(at, values, text)} (line ${line})` : `${name} (line ${line})`;
  };
  const missingPaths = missing.map((m, i) => settingAt(m.line, missingColumns?.[i]));
  const issues: ConfigIssue[] = missing.map((m, i) => ({
    path: missingPaths[i],
    message: `environment variable ${m.variable} is not set (use \${${m.variable}:-default} for an optional value)`,
  }));
  for (const [i, u] of unsupported.entries()) {
    issues.push({
      path: settingAt(u.line, unsupportedColumns?.[i]),
      message: `\${${u.variable}...} is not a substitution promptgate knows: use \${${u.variable}}, \${${u.variable}:-default} or \${${u.variable}:+alternate}, closed by "}" on the same line ($$ is a literal $)`,
    });
  }
  for (const b of lineBreaks) {
    issues.push({
      path: `${name} (line ${b.line})`,
      message: `environment variable ${b.variable} contains a line break (the value is not shown; remove it where the variable is set)`,
    });
  }
  for (const c of comments ?? []) {
    issues.push({
      path: `${name} (line ${c.line})`,
      message: `environment variable ${c.variable} contains a "#" that YAML reads as the start of a comment, which would cut the value (the value is not shown; quote the substitution: "\${${c.variable}}")`,
    });
  }

  for (const e of doc.errors) {
    const pos = lineCounter.linePos(e.pos[0]);
    issues.push({ path: `${name} (line ${pos.line})`, message: maskSubstituted(yamlMessage(e), values) });
  }
  // YAML's warnings are errors here: an unknown tag (`api_key: !ENV OPENAI_API_KEY`, as other
  // tools read it) would otherwise leave the tagged text as the value, a key of "OPENAI_API_KEY".
  for (const w of doc.warnings) {
    const pos = lineCounter.linePos(w.pos[0]);
    const message = w.code === 'TAG_RESOLVE_FAILED' ? `${w.message.split('\n')[0]} (promptgate knows no custom YAML tags; for the environment use \${VAR})` : yamlMessage(w);
    issues.push({ path: `${name} (line ${pos.line})`, message: maskSubstituted(message, values) });
  }
  if (doc.errors.length > 0 || doc.warnings.length > 0) throw new ConfigError(issues);
  // Nothing but blanks and comments: what a file caught mid-write (truncated) reads as.
  if (doc.contents === null) throw new ConfigError([...issues, { path: name, message: 'the file is empty' }]);

  let data: unknown;
  try {
    data = doc.toJS() ?? {};
  } catch (err) {
    // An alias without its anchor (`api_key: *...`, a value starting with `*`) throws here, quoting the source.
    const aliases = unresolvedAliases(doc, lineCounter, text);
    if (aliases.length === 0) throw new ConfigError([...issues, { path: name, message: maskSubstituted((err as Error).message, values) }]);
    throw new ConfigError([...issues, ...aliases.map((a) => ({ path: `${name} (line ${a.line})`, message: a.message }))]);
  }
  const parsed = configSchema.safeParse(data);
  const sourceLines = text.split('\n');
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const found of schemaIssues(name, doc, lineCounter, issue, { data, values, source: text, emptyOn: (line) => emptyVariables(sourceLines[line - 1] ?? '', env) })) {
        // What an unset variable left at its setting (a null, an empty string) is that same error, already reported.
        if (issue.code !== 'unrecognized_keys' && missingPaths.includes(found.path)) continue;
        issues.push({ ...found, message: maskSubstituted(found.message, values) });
      }
    }
  }
  if (issues.length > 0 || !parsed.success) throw new ConfigError(issues);

  const compiled = compileConfig(parsed.data, { file: options.file, baseDir: path.dirname(path.resolve(options.file)) });
  if (compiled.issues.length > 0) {
    throw new ConfigError(
      compiled.issues.map((i) => {
        // Messages may quote a value (a context builder's URL with a `${KEY}` in its query).
        const message = maskSubstituted(i.message, values);
        if (i.path.startsWith('@')) return { path: i.path.slice(1), message }; // another file: its own path and line
        const segments = segmentsOf(i.path);
        const line = lineOf(doc, lineCounter, segments);
        // A route's model name or another key may be a substituted value.
        const at = maskSubstituted(i.path, values) === i.path ? i.path : maskedPath(segments, values, text);
        return { path: `${name}: ${at}${line ? ` (line ${line})` : ''}`, message };
      }),
      compiled.config.watchDirs,
    );
  }
  return compiled.config;
}

/** The first line of a YAML parser message, put in an operator's terms where it names the library's API. */
function yamlMessage(e: YAML.YAMLError): string {
  if (e.code === 'MULTIPLE_DOCS') return 'the file holds more than one YAML document (text after a "---" or "..." that ends the first); a config is one document';
  return e.message.split('\n')[0];
}

/** `upstreams[0].timeout.connect_ms` */
export function formatPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else out += out === '' ? String(s) : `.${String(s)}`;
  }
  return out || '(root)';
}

/**
 * The aliases (`*name`) whose anchor is missing, with their lines. One on a line with a
 * `${VAR}` is that variable's value starting with `*`: it is named, the value not shown.
 */
function unresolvedAliases(doc: YAML.Document, lineCounter: YAML.LineCounter, source: string): Array<{ line: number; message: string }> {
  const lines = source.split('\n');
  const found: Array<{ line: number; message: string }> = [];
  YAML.visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) !== undefined || !node.range) return;
      const line = lineCounter.linePos(node.range[0]).line;
      const variables = variableNames(lines[line - 1] ?? '').map((name) => `\${${name}}`);
      const message =
        variables.length > 0
          ? `the value of ${variables.join(' or ')} starts with "*", which YAML reads as an alias (the value is not shown; quote the substitution: "${variables[0]}")`
          : 'an alias (*name) whose anchor (&name) is not set before it';
      found.push({ line, message });
    },
  });
  return found;
}

/**
 * `formatPath` with each key that a substitution made shown as `***` (`upstreams[0].***`):
 * keys are read after substitution, and an unquoted `${VAR}` in a flow map makes the text
 * after a comma in its value a key (`{api_key: ${KEY}}`, KEY `abc,sk-...`). A key written in
 * the file (`source`) is shown as it is, also when a value happens to contain it (`prot` in a
 * `${LLM_URL}` of `http://llm-server:8000`, `models` in a GitHub Models URL).
 */
function maskedPath(segments: readonly PropertyKey[], values: readonly string[], source: string): string {
  return formatPath(segments.map((s) => (typeof s === 'string' && !source.includes(s) ? maskSubstituted(s, values) : s)));
}

interface SchemaIssueContext {
  /** The document as JS, as the schema read it (to find the keys allowed where one is unknown). */
  data: unknown;
  /** What `${VAR}`s put into the file: masked in the paths shown (a key may hold one). */
  values: readonly string[];
  /** The file as written, before substitution (a key written there is never masked). */
  source: string;
  /** The variables on a source line that are unset or empty. */
  emptyOn: (line: number) => string[];
}

/** One zod issue as config issues: one for each unknown key, at the key itself (`server.prot`, not `server`). */
function schemaIssues(name: string, doc: YAML.Document, lineCounter: YAML.LineCounter, issue: z.core.$ZodIssue, context: SchemaIssueContext): ConfigIssue[] {
  if (issue.code === 'unrecognized_keys') {
    const at = issue.path as PropertyKey[];
    return issue.keys.map((key) => {
      const line = lineOf(doc, lineCounter, [...at, key]);
      const meant = suggestKey(configSchema, context.data, at, key);
      return { path: `${name}: ${maskedPath([...at, key], context.values, context.source)}${line ? ` (line ${line})` : ''}`, message: meant === undefined ? 'unknown key' : `unknown key; did you mean ${meant}?` };
    });
  }
  return [schemaIssue(name, doc, lineCounter, issue, context)];
}

function schemaIssue(name: string, doc: YAML.Document, lineCounter: YAML.LineCounter, issue: z.core.$ZodIssue, { values, source, emptyOn }: SchemaIssueContext): ConfigIssue {
  const segments = issue.path as PropertyKey[];
  let message = issue.message;
  if (issue.code === 'invalid_key' && issue.issues[0]) {
    message = issue.issues[0].message; // what is wrong with the key, not just "Invalid key in record"
  } else if (issue.code === 'invalid_type' && message.includes('received undefined')) {
    message = `required (${message.replace(/^Invalid input: /, '')})`;
  } else {
    message = message.replace(/^Invalid input: /, '');
  }
  const line = lineOf(doc, lineCounter, segments);
  if (issue.code === 'invalid_type' && line !== undefined && message.endsWith('received null')) {
    // An unquoted `${VAR}` that is empty (`api_key: ${OPENAI_API_KEY}`, the variable set to
    // "") leaves nothing, which YAML reads as null.
    const empty = emptyOn(line);
    if (empty.length > 0) {
      const quote = message.startsWith('expected string') ? `; quote it, "\${${empty[0]}}", for an empty string` : '';
      message += ` (${empty.map((v) => `\${${v}}`).join(', ')} ${empty.length === 1 ? 'is' : 'are'} empty here, and an unquoted empty value is null${quote})`;
    }
  }
  return { path: `${name}: ${maskedPath(segments, values, source)}${line ? ` (line ${line})` : ''}`, message };
}

/**
 * The path of the node at `offset` in the substituted text: the deepest map value or list
 * item whose range holds it (a key holding it names its map). Undefined when none does.
 */
function pathAt(node: unknown, offset: number, segments: PropertyKey[]): PropertyKey[] | undefined {
  const holds = (n: unknown) => {
    const range = (n as { range?: [number, number, number] } | null)?.range;
    return range !== undefined && range[0] <= offset && offset <= range[1];
  };
  if (YAML.isMap(node)) {
    for (const pair of node.items) {
      const key = YAML.isScalar(pair.key) ? pair.key.value : pair.key;
      if (holds(pair.value) && (typeof key === 'string' || typeof key === 'number')) return pathAt(pair.value, offset, [...segments, String(key)]) ?? [...segments, String(key)];
      if (holds(pair.key)) return segments;
    }
    return undefined;
  }
  if (YAML.isSeq(node)) {
    for (const [i, item] of node.items.entries()) if (holds(item)) return pathAt(item, offset, [...segments, i]) ?? [...segments, i];
    return undefined;
  }
  return holds(node) ? segments : undefined;
}

/** The variables a source line refers to (`${NAME...`) that are unset or empty. */
function emptyVariables(sourceLine: string, env: Record<string, string | undefined>): string[] {
  return [...new Set(variableNames(sourceLine))].filter((n) => (env[n] ?? '') === '');
}

/** `upstreams[0].timeout` -> ['upstreams', 0, 'timeout'] (a key holding `.` reads as two; `lineOf` then finds its parent). */
function segmentsOf(path: string): PropertyKey[] {
  return [...path.matchAll(/\[(\d+)\]|[^.[\]]+/g)].map((m) => (m[1] !== undefined ? Number(m[1]) : m[0]));
}

/**
 * The line of the setting at `segments`: its key's line when it is a key (a block value,
 * `routng:` with its mapping below, starts on the next line, which is not where the
 * operator typed the name), else its node's; a missing key reports its parent's.
 */
function lineOf(doc: YAML.Document, lineCounter: YAML.LineCounter, segments: readonly PropertyKey[]): number | undefined {
  for (let n = segments.length; n >= 0; n--) {
    if (n > 0 && typeof segments[n - 1] === 'string') {
      const parent = doc.getIn(segments.slice(0, n - 1) as unknown[], true) as YAML.YAMLMap | undefined;
      if (YAML.isMap(parent)) {
        const pair = parent.items.find((p) => YAML.isScalar(p.key) && p.key.value === segments[n - 1]);
        const keyNode = pair?.key as { range?: [number, number, number] } | undefined;
        if (keyNode?.range) return lineCounter.linePos(keyNode.range[0]).line;
      }
    }
    const node = doc.getIn(segments.slice(0, n) as unknown[], true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lineCounter.linePos(node.range[0]).line;
  }
  return undefined;
}
