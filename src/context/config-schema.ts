/**
 * Config schemas of context injection (see README "Context injection"):
 * - `context:` in gateway.config.yaml — the builders and the overall deadline;
 * - `context:` of a template version — which builders it uses, its token budget, recipes.
 *
 * Structural checks only; references (a template naming an unknown builder, a rules
 * builder reading another builder, cycles) are checked in `compile.ts`.
 */
import { z } from 'zod';
import { nonNegativeMs, positiveMs } from '../config/ms.js';
import { FEEDBACK_METRIC, FEEDBACK_METRIC_RULE } from '../experiments/metric-names.js';
import { FIELD_VALUE } from './paths.js';

/** Builder names become render variables (`{{customer.tier}}`), so they are identifiers. */
export const BUILDER_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const builderName = z.string().regex(BUILDER_NAME, 'expected a name of letters, digits and "_" (it becomes a template variable)');

/**
 * A cache's default memory bound (estimated bytes): with the two cached builders of a typical
 * config, 128 MiB on top of a sidecar's ~190 MB peak stays inside the Kubernetes example's
 * 384 MB heap and 512Mi limit (README "Resource sizing").
 */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

export const cacheSchema = z.strictObject({
  /** A fresh entry is served without calling the source. */
  ttl_ms: positiveMs(),
  max_entries: z.number().int().positive().default(1000),
  /** Estimated memory of the entries (answers, passages and keys); an entry larger on its own is not stored. */
  max_bytes: z.number().int('expected a whole number of bytes').min(1024, 'expected at least 1024 bytes').default(DEFAULT_CACHE_MAX_BYTES),
  /** After `ttl_ms`, an entry is still served for this long while one refresh runs in the background. */
  stale_while_revalidate_ms: nonNegativeMs().default(0),
  /** After `ttl_ms`, an entry is served for this long when the refresh fails. */
  stale_if_error_ms: nonNegativeMs().default(0),
});

const common = {
  /** Not `user_id`: placeholders and rules read the request's user id under that name. */
  name: builderName.refine((n) => n !== 'user_id', '"user_id" is the request\'s user id in placeholders and rules: name the builder otherwise'),
  /** A required builder that fails fails the request (424 context_unavailable); others are skipped. */
  required: z.boolean().default(false),
  /** Per-builder time limit; defaults to the context `deadline_ms`. */
  timeout_ms: positiveMs().optional(),
  /** Budget trimming: the lowest priority shrinks first. Defaults by kind: rules 100, http 80, knowledge 50, history 40. */
  priority: z.number().int().optional(),
};
/** Only builders that call a source have a cache (rules and history are computed per request). */
const cached = { cache: cacheSchema.optional() };

/** `path: expected` pairs; a value may be a scalar (equals), a list (one of) or an operator object. */
const conditionValue = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.null(),
  z.array(z.union([z.string(), z.number(), z.boolean()])),
  z.strictObject({
    eq: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
    ne: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
    in: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
    not_in: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
    gt: z.number().optional(),
    gte: z.number().optional(),
    lt: z.number().optional(),
    lte: z.number().optional(),
    exists: z.boolean().optional(),
    // `{}` tests nothing, so it would match every request: a condition left unfinished.
  }).refine((o) => Object.keys(o).length > 0, 'expected at least one operator (eq, ne, in, not_in, gt, gte, lt, lte, exists)'),
]);
const dottedPath = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$/, 'expected a dotted path such as customer.tier');

export const ruleSchema = z.strictObject({
  /** All conditions must hold; an empty or absent `when` always matches. */
  when: z.record(dottedPath, conditionValue).default({}),
  /** Values merged into the output (shallow, later matches win). */
  set: z.record(z.string(), z.unknown()),
});

export const rulesBuilderSchema = z.strictObject({
  ...common,
  kind: z.literal('rules'),
  /** The output before any rule matches. */
  defaults: z.record(z.string(), z.unknown()).default({}),
  rules: z.array(ruleSchema).default([]),
  /** `all`: every matching rule is applied in order; `first`: only the first match. */
  match: z.enum(['all', 'first']).default('all'),
});

export const historyBuilderSchema = z.strictObject({
  ...common,
  kind: z.literal('history'),
  /** Most recent messages kept (before the token limit). */
  max_turns: z.number().int().positive().default(10),
  /** Token limit of the history on its own (o200k_base tokens); oldest out first. */
  max_tokens: z.number().int().positive().optional(),
  roles: z.array(z.enum(['user', 'assistant', 'system', 'developer', 'tool'])).default(['user', 'assistant']),
  /** Keep the last user message (the current question) in the history too. */
  include_current: z.boolean().default(false),
});

/** Values HTTP cannot carry (RFC 9110 §5.5) fail here, not as `unreachable` on every call. */
const headersSchema = z
  .record(
    z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'expected an HTTP header name'),
    z.string().regex(FIELD_VALUE, 'expected a header value of printable ASCII or Latin-1 text, without control characters'),
  )
  .default({});

/** Header names are case-insensitive: two spellings of one name would send only one of them. */
function checkHeaderNames(headers: Readonly<Record<string, string>>, ctx: z.RefinementCtx): void {
  const seen = new Map<string, string>();
  for (const name of Object.keys(headers)) {
    const known = seen.get(name.toLowerCase());
    if (known !== undefined) ctx.addIssue({ code: 'custom', message: `header "${name}" is also set as "${known}" (header names are case-insensitive)`, path: ['headers', name] });
    seen.set(name.toLowerCase(), name);
  }
}

/** A body is only sent with POST: with GET it would be left out without a word (and out of the cache key). */
function checkBodyMethod(cfg: { method: string; body?: unknown }, ctx: z.RefinementCtx): void {
  if (cfg.body !== undefined && cfg.method !== 'POST') ctx.addIssue({ code: 'custom', message: 'a body is only sent with method: POST', path: ['body'] });
}

/** A pick path names fields at every step (`a..b` or `a.` reads nothing); list entries must name distinct fields. */
const PICK_PATH = /^[^.]+(\.[^.]+)*$/;
function checkPick(pick: Readonly<Record<string, string>> | readonly string[] | undefined, ctx: z.RefinementCtx): void {
  if (pick === undefined) return;
  const entries: [string | number, string][] = Array.isArray(pick) ? pick.map((p, i) => [i, p]) : Object.entries(pick);
  const fields = new Map<string, string>();
  for (const [at, p] of entries) {
    if (!PICK_PATH.test(p)) {
      ctx.addIssue({ code: 'custom', message: `expected a dotted path such as profile.first_name, not "${p}"`, path: ['pick', at] });
      continue;
    }
    if (!Array.isArray(pick)) continue;
    const field = p.split('.').at(-1)!;
    const known = fields.get(field);
    if (known !== undefined) ctx.addIssue({ code: 'custom', message: `"${p}" and "${known}" both become field "${field}" (use pick: {field: path} to name them)`, path: ['pick', at] });
    fields.set(field, p);
  }
}

export const httpBuilderSchema = z.strictObject({
  ...common,
  ...cached,
  kind: z.literal('http'),
  /** `{{name}}` placeholders (user_id, template variables, other builders' fields) are URL-encoded. */
  url: z.string().regex(/^https?:\/\//, 'expected an http:// or https:// URL'),
  method: z.enum(['GET', 'POST']).default('GET'),
  headers: headersSchema,
  /** POST body (JSON); string values are templates, `"{{x}}"` alone keeps x's type. */
  body: z.record(z.string(), z.unknown()).optional(),
  /** Output field -> dotted path in the response; the whole response object when absent. */
  pick: z.union([z.record(z.string(), z.string()), z.array(z.string())]).optional(),
  /** Responses larger than this are a failure. */
  max_bytes: z.number().int().positive().default(1024 * 1024),
}).superRefine((cfg, ctx) => {
  checkHeaderNames(cfg.headers, ctx);
  checkBodyMethod(cfg, ctx);
  checkPick(cfg.pick, ctx);
});

export const knowledgeHttpSchema = z.strictObject({
  /** `{{query}}` and `{{top_k}}` placeholders (URL-encoded). */
  url: z.string().regex(/^https?:\/\//, 'expected an http:// or https:// URL'),
  method: z.enum(['GET', 'POST']).default('GET'),
  headers: headersSchema,
  /** POST body; string values are templates (`{{query}}`, `{{top_k}}`). */
  body: z.record(z.string(), z.unknown()).optional(),
  /** Dotted path to the result array in the response (`""` = the response itself). */
  results: z.string().default('results'),
  /** Result field names. */
  fields: z
    .strictObject({
      title: z.string().default('title'),
      text: z.string().default('text'),
      score: z.string().default('score'),
      source: z.string().default('source'),
    })
    .prefault({}),
  timeout_ms: positiveMs().optional(),
  max_bytes: z.number().int().positive().default(1024 * 1024),
}).superRefine((cfg, ctx) => {
  checkHeaderNames(cfg.headers, ctx);
  checkBodyMethod(cfg, ctx);
});

export const knowledgeBuilderSchema = z.strictObject({
  ...common,
  ...cached,
  kind: z.literal('knowledge'),
  /** Directory of `.md` / `.txt` files, relative to the config file; omit for HTTP search only. */
  dir: z.string().optional(),
  top_k: z.number().int().positive().max(50).default(3),
  /** Local results scoring below this (BM25+) are left out. */
  min_score: z.number().nonnegative().default(0),
  /** Target chunk size in tokens (approximate at load: 4 characters a token). */
  chunk_tokens: z.number().int().min(16).max(4096).default(200),
  /** Fuzzy matching (edit distance as a fraction of term length, 0 = off) and prefix matching. */
  fuzzy: z.number().min(0).max(0.5).default(0),
  prefix: z.boolean().default(false),
  /** A search endpoint of your own, queried alongside the local index. */
  http: knowledgeHttpSchema.optional(),
});

export const builderSchema = z.discriminatedUnion('kind', [rulesBuilderSchema, historyBuilderSchema, httpBuilderSchema, knowledgeBuilderSchema]);

export const contextConfigSchema = z.strictObject({
  /** Overall time the builders of one request get; what is not ready by then is skipped. */
  deadline_ms: positiveMs().default(150),
  builders: z.array(builderSchema).default([]),
});

export type ContextConfig = z.infer<typeof contextConfigSchema>;
export type BuilderConfig = z.infer<typeof builderSchema>;
export type RulesBuilderConfig = z.infer<typeof rulesBuilderSchema>;
export type HistoryBuilderConfig = z.infer<typeof historyBuilderSchema>;
export type HttpBuilderConfig = z.infer<typeof httpBuilderSchema>;
export type KnowledgeBuilderConfig = z.infer<typeof knowledgeBuilderSchema>;
export type KnowledgeHttpConfig = z.infer<typeof knowledgeHttpSchema>;
export type CacheConfig = z.infer<typeof cacheSchema>;
export type RuleCondition = z.infer<typeof conditionValue>;

// ---- template version `context:` ----

export const recipeSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected letters, digits, ".", "_" or "-"'),
  /** Builders this recipe uses (a subset of the version's `use`); all of them when absent. */
  use: z.array(builderName).optional(),
  /** Overrides `top_k` of the knowledge builders. */
  knowledge_top_k: z.number().int().positive().max(50).optional(),
  /** Overrides `max_turns` of the history builders. */
  history_max_turns: z.number().int().positive().optional(),
  /** Overrides the version's `budget_tokens`. */
  budget_tokens: z.number().int().positive().optional(),
  /** Share of users in `experiment` mode (relative weights, like experiment variants). */
  weight: z.number().positive().default(1),
});

export const recipeSelectionSchema = z.strictObject({
  /** `experiment`: by the user id's hash (reproducible); `bandit`: Thompson sampling on `metric`. */
  mode: z.enum(['experiment', 'bandit']).default('experiment'),
  /** Bandit reward: `success` (request outcome ok) or `feedback.<name>` (POST /v1/feedback). */
  metric: z
    .string()
    .refine((m) => m === 'success' || FEEDBACK_METRIC.test(m), `expected success or ${FEEDBACK_METRIC_RULE}`)
    .default('success'),
  /** Share of bandit requests spread uniformly over all recipes, whatever the posteriors say. */
  min_exploration: z.number().min(0).max(1).default(0.1),
});

export const templateContextSchema = z
  .strictObject({
    /** Builders (by name, from gateway.config.yaml `context.builders`); each output is the variable of that name. */
    use: z.array(builderName).min(1),
    /** Cap on the tokens of injected context (builder outputs) for this version. */
    budget_tokens: z.number().int().positive().default(2000),
    recipes: z.array(recipeSchema).optional(),
    recipe_selection: recipeSelectionSchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.use.forEach((n, i) => {
      if (seen.has(n)) ctx.addIssue({ code: 'custom', message: `"${n}" is listed twice`, path: ['use', i] });
      seen.add(n);
    });
    const names = new Set<string>();
    c.recipes?.forEach((r, i) => {
      if (names.has(r.name)) ctx.addIssue({ code: 'custom', message: `duplicate recipe name "${r.name}"`, path: ['recipes', i, 'name'] });
      names.add(r.name);
      r.use?.forEach((n, j) => {
        if (!seen.has(n)) ctx.addIssue({ code: 'custom', message: `"${n}" is not in this version's context.use`, path: ['recipes', i, 'use', j] });
      });
    });
  });

export type TemplateContextConfig = z.infer<typeof templateContextSchema>;
export type RecipeConfig = z.infer<typeof recipeSchema>;
