/**
 * The template registry: every loaded template with its full version history, looked up by
 * `id`, `id@version` or `id@label`. Built once per config load and never mutated; requests
 * share it.
 */
import semver from 'semver';
import { compileText, MAX_RENDERED_CHARS, renderText, type CompiledText } from './renderer.js';
import { formatYamlPath, type ChatMessage } from './types.js';
import { resolveVariables, type VariableSpec } from './variables.js';
import type { TemplateConstraints, TemplateContext, TemplateParams, TemplateRole, TemplateVersionConfig } from './template-schema.js';

/** The label a plain `id` resolves to when a version carries it. */
export const DEFAULT_LABEL = 'production';

/** One version of a template, compiled: messages parsed once, ready to render. */
export class TemplateVersion {
  readonly templateId: string;
  readonly version: string;
  readonly labels: readonly string[];
  readonly role: TemplateRole;
  readonly model: string | undefined;
  readonly params: Readonly<TemplateParams>;
  readonly constraints: Readonly<TemplateConstraints>;
  readonly variables: Readonly<Record<string, VariableSpec>>;
  /** The messages as written (unrendered). */
  readonly messages: readonly ChatMessage[];
  /** The context spec (builders used, budget, recipes); resolved per config in `context/compile.ts`. */
  readonly context: Readonly<TemplateContext> | undefined;
  /** Variables filled by context builders (every name in `context.use`). */
  readonly contextNames: readonly string[];
  readonly #compiled: readonly { role: ChatMessage['role']; text: CompiledText }[];
  readonly #specs: ReadonlyArray<readonly [string, VariableSpec]>;

  /** `compiled` may be passed when the caller already parsed the messages (the loader does). */
  constructor(templateId: string, config: TemplateVersionConfig, compiled?: readonly CompiledText[]) {
    this.templateId = templateId;
    this.version = config.version;
    this.labels = Object.freeze([...config.labels]);
    this.role = config.role;
    this.model = config.model;
    // Deep-frozen: params values (tools, response_format, ...) are copied by reference into
    // every request body, so a stage mutating one must fail loudly, not leak across requests.
    this.params = deepFreeze(structuredClone(config.params));
    this.constraints = deepFreeze(structuredClone(config.constraints));
    this.variables = deepFreeze(structuredClone(config.variables));
    this.messages = Object.freeze(config.messages.map((m) => Object.freeze({ role: m.role, content: m.content })));
    this.#compiled = Object.freeze(config.messages.map((m, i) => ({ role: m.role, text: compiled?.[i] ?? compileText(m.content) })));
    this.#specs = Object.freeze(Object.entries(this.variables));
    this.context = config.context ? deepFreeze(structuredClone(config.context)) : undefined;
    this.contextNames = Object.freeze([...(config.context?.use ?? [])]);
  }

  /** `support-reply@1.1.0` */
  get ref(): string {
    return `${this.templateId}@${this.version}`;
  }

  /** The messages' templates as parsed at load, in order (what a context plan reads their sections from). */
  get parsedMessages(): readonly CompiledText[] {
    return this.#compiled.map((m) => m.text);
  }

  /** Declared variables as entries, in declaration order. */
  get variableEntries(): ReadonlyArray<readonly [string, VariableSpec]> {
    return this.#specs;
  }

  /**
   * Renders the messages. Applies defaults, then throws `missing_variable` /
   * `invalid_variable` (400, `param: prompt_variables.<name>`) before any output, and
   * `invalid_variable` (`param: prompt_variables`) when the messages together would be over
   * `MAX_RENDERED_CHARS`. A message that renders empty (or to whitespace only) is left out.
   * Variables not declared by this version are ignored, except context builder outputs
   * (`context.use` names), which pass as they are.
   *
   * @example
   * version.render({ customer_name: 'Ada' })
   * // [{ role: 'system', content: 'You are the support assistant of Acme...' }]
   */
  render(vars: Readonly<Record<string, unknown>>): ChatMessage[] {
    const view = resolveVariables(this.#specs, vars);
    for (const name of this.contextNames) {
      if (!Object.hasOwn(view, name) && Object.hasOwn(vars, name) && vars[name] !== undefined) view[name] = vars[name];
    }
    const budget = { left: MAX_RENDERED_CHARS };
    const out: ChatMessage[] = [];
    for (const m of this.#compiled) {
      const content = renderText(m.text, view, budget);
      // A message that renders to nothing (a section over no passages) is left out: several
      // providers reject an empty message (Anthropic's and Bedrock's OpenAI-compatible APIs).
      if (content.trim() !== '') out.push({ role: m.role, content });
    }
    return out;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** A template with every version, newest first. */
export interface Template {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly tags: readonly string[];
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Where it was loaded from (as shown in messages). */
  readonly file: string;
  /** Newest (highest semver) first. */
  readonly versions: readonly TemplateVersion[];
  /** label -> version */
  readonly labels: Readonly<Record<string, string>>;
  /** What a plain `id` resolves to: the `production` label, else the highest release. */
  readonly defaultVersion: TemplateVersion;
  /**
   * Where a setting of one version is in the file, for a problem found after loading
   * (context builders checked against its variables): `versions[1].variables.cust (line 14)`.
   */
  readonly locate: (version: string, segments: readonly PropertyKey[]) => string;
}

/** `support-reply@1.1.0` -> `{ id: 'support-reply', selector: '1.1.0' }` */
export function parseTemplateRef(ref: string): { id: string; selector?: string } {
  const at = ref.indexOf('@');
  if (at < 0) return { id: ref.trim() };
  return { id: ref.slice(0, at).trim(), selector: ref.slice(at + 1).trim() };
}

/**
 * Picks the default version: the `production` label if present, else the highest semver
 * release (pre-releases only when there is nothing else).
 */
export function pickDefaultVersion(versions: readonly TemplateVersion[]): TemplateVersion {
  const labelled = versions.find((v) => v.labels.includes(DEFAULT_LABEL));
  if (labelled) return labelled;
  return versions.find((v) => semver.prerelease(v.version) === null) ?? versions[0];
}

export interface TemplateInit {
  id: string;
  name?: string;
  description?: string;
  tags?: readonly string[];
  metadata?: Record<string, unknown>;
  file?: string;
  versions: readonly TemplateVersion[];
  /** Default: `version 1.0.0, variables.cust` (no file to point into). */
  locate?: (version: string, segments: readonly PropertyKey[]) => string;
}

/** Builds a `Template` from compiled versions (any order). */
export function makeTemplate(init: TemplateInit): Template {
  const versions = [...init.versions].sort((a, b) => semver.rcompare(a.version, b.version));
  // No prototype: a label named `constructor` or `toString` is a label like any other.
  const labels: Record<string, string> = Object.create(null);
  for (const v of versions) for (const l of v.labels) labels[l] ??= v.version;
  return Object.freeze({
    id: init.id,
    name: init.name ?? init.id,
    description: init.description ?? '',
    tags: Object.freeze([...(init.tags ?? [])]),
    metadata: Object.freeze({ ...(init.metadata ?? {}) }),
    file: init.file ?? '',
    versions: Object.freeze(versions),
    labels: Object.freeze(labels),
    defaultVersion: pickDefaultVersion(versions),
    locate: init.locate ?? ((version, segments) => `version ${version}, ${formatYamlPath(segments)}`),
  });
}

/**
 * Immutable set of templates.
 *
 * @example
 * registry.resolve('support-reply')            // production label, else highest version
 * registry.resolve('support-reply@1.1.0')      // exact version
 * registry.resolve('support-reply@staging')    // label
 */
export class TemplateRegistry {
  readonly #templates: ReadonlyMap<string, Template>;
  /** `id@selector` -> version, every version and label precomputed. */
  readonly #refs: ReadonlyMap<string, TemplateVersion>;

  constructor(templates: Iterable<Template> = []) {
    const byId = new Map<string, Template>();
    const refs = new Map<string, TemplateVersion>();
    for (const t of templates) {
      if (byId.has(t.id)) throw new Error(`duplicate template id "${t.id}"`);
      byId.set(t.id, t);
      refs.set(t.id, t.defaultVersion);
      for (const v of t.versions) refs.set(`${t.id}@${v.version}`, v);
      for (const [label, version] of Object.entries(t.labels)) refs.set(`${t.id}@${label}`, refs.get(`${t.id}@${version}`)!);
    }
    this.#templates = byId;
    this.#refs = refs;
  }

  /** Number of templates. */
  get size(): number {
    return this.#templates.size;
  }

  /** The template with its full version history, or undefined. */
  get(id: string): Template | undefined {
    return this.#templates.get(id);
  }

  /** All templates, sorted by id. */
  list(): Template[] {
    return [...this.#templates.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** `id`, `id@version` or `id@label`; undefined when the template, version or label is unknown. */
  resolve(ref: string): TemplateVersion | undefined {
    const direct = this.#refs.get(ref);
    if (direct) return direct;
    const { id, selector } = parseTemplateRef(ref);
    return this.#refs.get(selector === undefined ? id : `${id}@${selector}`);
  }
}
