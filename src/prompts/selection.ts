/**
 * Which template version a request gets, and the request body rewritten with it. Pure
 * functions (no Hono, no I/O); the proxy calls them once per chat request:
 *
 *   const sel = selectTemplate({ body, header, registry, bindings, userId, now });
 *   if (sel) body = applySelection(body, sel, collectVariables(body, header, sel));
 *
 * Selection order, first match wins:
 * 1. body `prompt_id` (+ `prompt_version`)           -> explicit
 * 2. header `x-promptgate-template: id[@version|@label]` -> explicit
 * 3. binding of the request's `model`: experiment -> assigned variant -> version, or the
 *    binding's template reference.
 * A body `prompt_version` alone pins the version of the template chosen by 2 or 3.
 */
import { assign, type AssignmentReason } from '../experiments/assignment.js';
import { GatewayError, shown } from '../errors.js';
import type { CompiledBinding, SwapMode } from './bindings.js';
import { headerText } from './identity.js';
import { parseTemplateRef, type TemplateRegistry, type TemplateVersion } from './registry.js';
import { coerceFromString, type VariableSpec } from './variables.js';

/** Header naming the template: `id`, `id@version` or `id@label`. */
export const TEMPLATE_HEADER = 'x-promptgate-template';
/** Prefix of variable headers: `x-promptgate-var-customer_name: Ada`. */
export const VARIABLE_HEADER_PREFIX = 'x-promptgate-var-';
/** Body fields consumed by the gateway and never forwarded (LiteLLM-compatible names). */
export const PROMPT_FIELDS = ['prompt_id', 'prompt_version', 'prompt_variables'] as const;

/** Header lookup, case-insensitive (names are passed lowercase). */
export type HeaderGetter = (name: string) => string | undefined;

/**
 * Why this version: an experiment reason, `explicit` (the client named the template) or
 * `binding` (a binding to a fixed template reference, no experiment).
 */
export type SelectionReason = AssignmentReason | 'explicit' | 'binding';

export interface Selection {
  readonly templateId: string;
  readonly version: string;
  readonly templateVersion: TemplateVersion;
  readonly experimentId?: string;
  readonly variant?: string;
  readonly assignmentReason: SelectionReason;
  readonly mode: SwapMode;
  /** The binding's `upstream_model`, when the request's model is a binding alias. */
  readonly upstreamModel?: string;
  /** The request's model was this binding alias (never forwarded as is when a model is known). */
  readonly bindingModel?: string;
}

export interface SelectionInput {
  /** The parsed request body (not modified). */
  body: Readonly<Record<string, unknown>>;
  header: HeaderGetter;
  registry: TemplateRegistry;
  /** Compiled bindings by model alias; each holds its compiled experiment. */
  bindings: ReadonlyMap<string, CompiledBinding>;
  userId: string | undefined;
  now: Date;
}

/**
 * Picks the template version for a request, or null (pure pass-through).
 * Throws `unknown_template` (404) for an unknown id, version or label, and
 * `invalid_request` (400) for malformed `prompt_*` fields.
 */
export function selectTemplate(input: SelectionInput): Selection | null {
  const { body, header, registry } = input;
  const promptId = optionalString(body, 'prompt_id');
  const promptVersion = optionalString(body, 'prompt_version');
  const hasVariables = readPromptVariables(body) !== undefined;
  const binding = typeof body.model === 'string' ? input.bindings.get(body.model) : undefined;
  const headerRef = header(TEMPLATE_HEADER)?.trim() || undefined;

  let id: string | undefined;
  let selector: string | undefined;
  if (promptId !== undefined) {
    ({ id, selector } = parseTemplateRef(promptId));
  } else if (headerRef !== undefined) {
    ({ id, selector } = parseTemplateRef(headerRef));
  } else if (promptVersion !== undefined && binding) {
    id = binding.experiment?.templateId ?? binding.templateVersion!.templateId;
  }

  if (id !== undefined) {
    // Both in the body: two answers to one question. (A body prompt_version over a header's is the selection order.)
    if (promptId !== undefined && selector !== undefined && promptVersion !== undefined && !sameVersion(registry, id, selector, promptVersion)) {
      throw new GatewayError('invalid_request', `prompt_id names "${shown(selector)}" and prompt_version "${shown(promptVersion)}": give one.`, { param: 'prompt_version' });
    }
    // A reference from the x-promptgate-template header is no body field: `param` is null.
    const idParam = promptId !== undefined ? 'prompt_id' : null;
    const version = resolveExplicit(registry, id, promptVersion ?? selector, promptVersion !== undefined ? 'prompt_version' : idParam, idParam);
    return {
      templateId: version.templateId,
      version: version.version,
      templateVersion: version,
      assignmentReason: 'explicit',
      mode: binding?.mode ?? 'replace',
      upstreamModel: binding?.upstreamModel,
      bindingModel: binding?.model,
    };
  }

  if (!binding) {
    if (promptVersion !== undefined || hasVariables) {
      const param = promptVersion !== undefined ? 'prompt_version' : 'prompt_variables';
      throw new GatewayError('invalid_request', `${param} was given but no template is selected: set prompt_id.`, { param });
    }
    return null;
  }

  const common = { mode: binding.mode, upstreamModel: binding.upstreamModel, bindingModel: binding.model };
  if (binding.experiment) {
    const a = assign(binding.experiment, input.userId, input.now);
    return {
      templateId: binding.experiment.templateId,
      version: a.variant.version,
      templateVersion: a.variant.templateVersion,
      experimentId: binding.experiment.id,
      variant: a.variant.name,
      assignmentReason: a.reason,
      ...common,
    };
  }
  const version = binding.templateVersion!;
  return { templateId: version.templateId, version: version.version, templateVersion: version, assignmentReason: 'binding', ...common };
}

/** Whether two selectors name one version: `t@production` and `"prompt_version": "1.0.0"` agree when production is 1.0.0. */
function sameVersion(registry: TemplateRegistry, id: string, a: string, b: string): boolean {
  if (a === b) return true;
  const version = registry.resolve(`${id}@${a}`);
  return version !== undefined && version === registry.resolve(`${id}@${b}`);
}

/** `idParam` / `selectorParam`: the body field each came from, for the error's `param` (null: the header). */
function resolveExplicit(registry: TemplateRegistry, id: string, selector: string | undefined, selectorParam: string | null, idParam: string | null): TemplateVersion {
  // `@1.0.0` is a reference missing its template, malformed like `id@` (400), not an unknown template "" (404).
  if (id === '') throw new GatewayError('invalid_request', 'The prompt template reference names no template before "@".', { param: idParam });
  const template = registry.get(id);
  if (!template) throw new GatewayError('unknown_template', `Unknown prompt template "${shown(id)}".`, { param: idParam });
  if (selector === undefined) return template.defaultVersion;
  if (selector === '') {
    // `id@` is a reference cut short, not a request for the default version.
    throw new GatewayError('invalid_request', `The prompt template reference "${shown(id)}@" names no version or label.`, { param: selectorParam });
  }
  const version = registry.resolve(`${id}@${selector}`);
  if (!version) {
    throw new GatewayError('unknown_template', `Prompt template "${shown(id)}" has no version or label "${shown(selector)}".`, {
      param: selectorParam,
    });
  }
  return version;
}

function optionalString(body: Readonly<Record<string, unknown>>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.trim() === '') {
    throw new GatewayError('invalid_request', `${field} must be a non-empty string.`, { param: field });
  }
  return value;
}

function readPromptVariables(body: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> | undefined {
  const value = body.prompt_variables;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('invalid_request', 'prompt_variables must be an object.', { param: 'prompt_variables' });
  }
  return value as Record<string, unknown>;
}

/**
 * The variables to render with: body `prompt_variables` win over `x-promptgate-var-<name>`
 * headers; header strings are converted to the declared type (`"42"` -> 42). Only declared
 * variables are read. A header name is the variable name lowercased, with `_` or `-`
 * (`x-promptgate-var-customer-name` fills `customer_name`: some proxies drop `_` headers).
 * Header values are read as UTF-8, like a header user id (`x-promptgate-var-name: Zoë`).
 * Context builders add their variables to the result before `applySelection`.
 */
export function collectVariables(body: Readonly<Record<string, unknown>>, header: HeaderGetter, selection: Selection): Record<string, unknown> {
  const fromBody = readPromptVariables(body);
  const vars: Record<string, unknown> = {};
  for (const { name, spec, headers } of planOf(selection.templateVersion).variables) {
    // A body null is "not set" (as rendering reads it): a header may still give the value.
    if (fromBody && Object.hasOwn(fromBody, name) && fromBody[name] !== undefined && fromBody[name] !== null) {
      vars[name] = fromBody[name];
      continue;
    }
    let raw: string | undefined;
    for (let i = 0; raw === undefined && i < headers.length; i++) raw = header(headers[i]);
    if (raw !== undefined) vars[name] = coerceFromString(name, spec, headerText(raw)!);
  }
  return vars;
}

/** What a request needs from a version beyond rendering, derived once per version. */
interface VersionPlan {
  readonly variables: readonly { name: string; spec: VariableSpec; headers: readonly string[] }[];
  readonly params: readonly (readonly [string, unknown])[];
}

/** Plans keyed by version object: filled on first use, gone with the registry on reload. */
const plans = new WeakMap<TemplateVersion, VersionPlan>();

function planOf(version: TemplateVersion): VersionPlan {
  let plan = plans.get(version);
  if (plan) return plan;
  const variables = version.variableEntries.map(([name, spec]) => {
    const lower = name.toLowerCase();
    const dashed = lower.replaceAll('_', '-');
    return { name, spec, headers: dashed === lower ? [VARIABLE_HEADER_PREFIX + lower] : [VARIABLE_HEADER_PREFIX + lower, VARIABLE_HEADER_PREFIX + dashed] };
  });
  const { extra_body: extra, ...direct } = version.params;
  const params = [...Object.entries(direct), ...Object.entries(extra ?? {})].filter(([, v]) => v !== undefined);
  plan = { variables, params };
  plans.set(version, plan);
  return plan;
}

const PROMPT_FIELD_SET: ReadonlySet<string> = new Set(PROMPT_FIELDS);
const SWAPPED_ROLES = new Set(['system', 'developer']);
const OUTPUT_TOKEN_FIELDS = ['max_completion_tokens', 'max_tokens'] as const;
const OUTPUT_TOKEN_FIELD_SET: ReadonlySet<string> = new Set(OUTPUT_TOKEN_FIELDS);

/**
 * Version params that are only valid next to another field of the request (OpenAI answers
 * 400 "'tool_choice' is only allowed when 'tools' are specified", likewise
 * `parallel_tool_calls`; `top_logprobs` needs `logprobs: true`). A version param fills the
 * field for clients that send the field it depends on; a client that does not would get a 400
 * for a field it never sent, so the version's value is left out. A client's own value is
 * never removed.
 */
const DEPENDENT_PARAMS: ReadonlySet<string> = new Set(['tool_choice', 'parallel_tool_calls', 'top_logprobs']);

function dependencyHolds(key: string, body: Readonly<Record<string, unknown>>): boolean {
  if (key === 'top_logprobs') return body.logprobs === true;
  const tools = body.tools;
  if (!Array.isArray(tools) || tools.length === 0) return false;
  if (key !== 'tool_choice') return true;
  // A named function (`{type: function, function: {name}}`) must be one of the request's
  // tools: the client's own tools win over the version's, and may not include it.
  const named = (body.tool_choice as { function?: { name?: unknown } } | null)?.function?.name;
  if (typeof named !== 'string') return true;
  return tools.some((t) => (t as { function?: { name?: unknown } } | null)?.function?.name === named);
}

/**
 * The client's messages the final prompt keeps after the template's: all of them
 * (`prepend`), or all but the system and developer messages the template replaces (`replace`).
 */
export function keptClientMessages(messages: readonly unknown[], mode: Selection['mode']): readonly unknown[] {
  if (mode === 'prepend') return messages;
  return messages.filter((m) => !(m !== null && typeof m === 'object' && SWAPPED_ROLES.has((m as { role?: unknown }).role as string)));
}

/**
 * The tool definitions and model `applySelection` will send (the client's `tools` and
 * `functions`, else the version's params; the binding's or the version's model, else the
 * client's), known before the template renders: the context budget counts the tools
 * before the body is built.
 */
export function toolRequestOf(body: Readonly<Record<string, unknown>>, selection: Selection): { tools: unknown; functions: unknown; model: unknown } {
  const params = planOf(selection.templateVersion).params;
  const filled = (key: string) => body[key] ?? params.find(([name]) => name === key)?.[1];
  return { tools: filled('tools'), functions: filled('functions'), model: selection.upstreamModel ?? selection.templateVersion.model ?? body.model };
}

/**
 * The body without its `prompt_*` fields, for a request that selected no template but sent
 * them anyway (`"prompt_id": null`): they are the gateway's, never the upstream's (which
 * would reject unknown fields). The same object when it has none.
 */
export function withoutPromptFields<T extends Record<string, unknown>>(body: T): T {
  if (!PROMPT_FIELDS.some((f) => Object.hasOwn(body, f))) return body;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(body)) if (!PROMPT_FIELD_SET.has(key)) setField(out, key, body[key]);
  return out as T;
}

/**
 * A new request body for the selected version (the input is not modified):
 * - `prompt_*` fields removed;
 * - rendered template messages first (one that renders empty or blank is left out); the client's system/developer messages dropped
 *   (`replace`) or kept in place after them (`prepend`); other turns kept in order;
 * - `model` = binding `upstream_model` ?? version `model` ?? the request's model;
 * - version `params` (and `params.extra_body`) fill only fields the client did not set
 *   (absent or null, as OpenAI reads null; `max_tokens` and `max_completion_tokens` count
 *   as one field); `tool_choice` and `parallel_tool_calls` only when the request has tools
 *   (a named `tool_choice` only when one of them has that name), `top_logprobs` only with
 *   `logprobs: true`;
 * - `constraints.max_output_tokens` caps the output-token field (setting
 *   `max_completion_tokens` when none is present); `constraints.response_format` is forced.
 *
 * Throws `missing_variable` / `invalid_variable` from rendering.
 */
/**
 * `out[key] = value`, also for a key named `__proto__`: JSON makes that an own field, and
 * an assignment would set the copy's prototype instead (dropping the field, and making its
 * members read as the client's own: a `max_tokens` there turned off the template's cap).
 */
function setField(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}

export function applySelection(
  body: Readonly<Record<string, unknown>>,
  selection: Selection,
  vars: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const version = selection.templateVersion;
  const rendered = version.render(vars);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(body)) {
    if (!PROMPT_FIELD_SET.has(key)) setField(out, key, body[key]);
  }

  const clientMessages = body.messages;
  if (clientMessages !== undefined && !Array.isArray(clientMessages)) {
    throw new GatewayError('invalid_request', 'messages must be an array.', { param: 'messages' });
  }
  out.messages = [...rendered, ...keptClientMessages(clientMessages ?? [], selection.mode)];

  const model = selection.upstreamModel ?? version.model;
  if (model !== undefined) out.model = model;

  // max_tokens and max_completion_tokens are one setting: OpenAI rejects a request with both.
  const clientLimitsOutput = OUTPUT_TOKEN_FIELDS.some((field) => out[field] !== undefined && out[field] !== null);
  let filled: string[] | undefined;
  for (const [key, value] of planOf(version).params) {
    if ((out[key] === undefined || out[key] === null) && !(clientLimitsOutput && OUTPUT_TOKEN_FIELD_SET.has(key))) {
      out[key] = value;
      if (DEPENDENT_PARAMS.has(key)) (filled ??= []).push(key);
    }
  }
  // Checked once every param is in: the field a filled one depends on may come from the client
  // or the version. Left out means as the client sent it (absent, or its null).
  if (filled) {
    for (const key of filled) {
      if (dependencyHolds(key, out)) continue;
      if (Object.hasOwn(body, key)) out[key] = body[key];
      else delete out[key];
    }
  }

  const { max_output_tokens: cap, response_format: format } = version.constraints;
  if (cap !== undefined) {
    let capped = false;
    for (const field of OUTPUT_TOKEN_FIELDS) {
      const current = out[field];
      if (typeof current === 'number') {
        capped = true;
        if (current > cap) out[field] = cap;
      }
    }
    if (!capped) out.max_completion_tokens = cap;
  }
  if (format !== undefined) out.response_format = format;
  return out;
}
