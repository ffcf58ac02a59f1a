/**
 * `knowledge`: the top-k passages for the last user message, each `{title, text, score,
 * source}`, from the local knowledge base (BM25+, see knowledge-base.ts) and/or a search
 * endpoint of your own:
 *
 * ```yaml
 * - name: knowledge
 *   kind: knowledge
 *   dir: config/knowledge
 *   top_k: 3
 *   http: {url: "https://search.internal/q?text={{query}}&k={{top_k}}", results: hits}
 *   cache: {ttl_ms: 300000, max_entries: 5000}
 * ```
 *
 * With both sources, each list is normalised by its best score and the union is ordered by
 * that relative score; every passage keeps its source's own `score`. The budget drops
 * passages from the end of that order (lowest relevance first). When the search endpoint
 * fails, the local results are served on their own (the builder fails only when every
 * source it has failed). Passages are untrusted text: they are scanned for injection.
 */
import type { KnowledgeBuilderConfig, KnowledgeHttpConfig } from '../config-schema.js';
import { ContextSourceError, PartialAnswer, fetchJson } from '../fetch-json.js';
import type { KnowledgeBase } from '../knowledge-base.js';
import {
  bodyTemplateRoots,
  fillBody,
  fillHeaderTemplate,
  fillUrlTemplate,
  getPath,
  parseBodyTemplate,
  parseStringTemplate,
  parseUrlTemplate,
  splitPath,
  type BodyTemplate,
  type StringTemplate,
  type UrlTemplate,
} from '../paths.js';
import { countTokens, countTokensRemembered } from '../tokens.js';
import type { Builder, BuilderOutput, BuildInput, BuildPlan, ContextItem } from '../types.js';
import { commonSettings, deepFreeze, type BuilderContext } from './common.js';

/**
 * Per-passage framing tokens besides its title, text and source (separators). The budget
 * uses this count only when no template section lists the passages (`{{#knowledge}}`); a
 * section's own text and tags are counted from the template (item-rendering.ts).
 */
const TOKENS_PER_PASSAGE = 4;

/**
 * The query is at most this much of the message (about 500 tokens, far more than a
 * question): the search runs on the event loop in time that grows with the query, and a
 * message can be megabytes (a 2 MB one took seconds). It also bounds cache keys.
 */
const MAX_QUERY_CHARS = 2000;

interface RemoteSearch {
  readonly method: 'GET' | 'POST';
  readonly url: UrlTemplate;
  readonly headers: readonly (readonly [string, StringTemplate])[];
  readonly body: BodyTemplate | undefined;
  readonly results: readonly string[];
  readonly fields: { title: readonly string[]; text: readonly string[]; score: readonly string[]; source: readonly string[] };
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

interface Passage {
  title: string;
  text: string;
  score: number;
  source: string;
  tokens: number;
  relative: number;
}

export class KnowledgeBuilder implements Builder {
  readonly name: string;
  readonly kind = 'knowledge' as const;
  readonly output = 'items' as const;
  readonly required: boolean;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly cache: KnowledgeBuilderConfig['cache'];
  readonly untrusted = true;
  readonly dependsOn: readonly string[] = [];
  readonly fingerprint: string;
  readonly topK: number;
  readonly kb: KnowledgeBase | undefined;
  readonly #minScore: number;
  readonly #fuzzy: number;
  readonly #prefix: boolean;
  readonly #remote: RemoteSearch | undefined;

  /** `kb` is loaded by compile (so a reload can reuse it); throws for an invalid placeholder. */
  constructor(cfg: KnowledgeBuilderConfig, ctx: BuilderContext, kb: KnowledgeBase | undefined) {
    const common = commonSettings(cfg, ctx);
    this.name = common.name;
    this.required = common.required;
    this.timeoutMs = common.timeoutMs;
    this.priority = common.priority;
    this.cache = common.cache;
    this.fingerprint = `${common.fingerprint}|${kb?.stamp ?? ''}`;
    this.topK = cfg.top_k;
    this.kb = kb;
    this.#minScore = cfg.min_score;
    this.#fuzzy = cfg.fuzzy;
    this.#prefix = cfg.prefix;
    this.#remote = cfg.http && compileRemote(cfg.http, this.timeoutMs);
  }

  plan(input: BuildInput): BuildPlan {
    const query = queryOf(input.query);
    if (query === '') return { missing: 'query' };
    const topK = input.topK ?? this.topK;
    return { key: `${topK}\u0000${query}`, produce: (signal) => this.retrieve(query, topK, signal, input) };
  }

  async retrieve(query: string, topK: number, signal: AbortSignal, input: Pick<BuildInput, 'dispatcher'> = {}): Promise<BuilderOutput> {
    const local: Passage[] = (this.kb?.search(query, { topK, minScore: this.#minScore, fuzzy: this.#fuzzy, prefix: this.#prefix }) ?? []).map((h) => ({
      title: h.chunk.title,
      text: h.chunk.text,
      score: h.score,
      source: h.chunk.source,
      tokens: h.tokens + countTokensRemembered(h.chunk.source) + TOKENS_PER_PASSAGE,
      relative: 0,
    }));
    let remote: Passage[] = [];
    let searchError: unknown;
    if (this.#remote) {
      try {
        remote = await searchRemote(this.#remote, query, topK, signal, input);
      } catch (err) {
        if (!this.kb) throw err;
        searchError = err;
      }
    }
    const output = this.#output(merge(local, remote, topK));
    // The local index still answers (the span shows the builder as ok with its local items),
    // but not as a full answer: a cache must neither keep it nor hide the endpoint's failure.
    if (searchError !== undefined) throw new PartialAnswer(output, searchError);
    return output;
  }

  #output(passages: readonly Passage[]): BuilderOutput {
    // Every string a template can render is scanned: a search endpoint's `source` is its text too.
    const items: ContextItem[] = passages.map((p) =>
      deepFreeze({ value: { title: p.title, text: p.text, score: round(p.score), source: p.source }, tokens: p.tokens, score: p.relative, text: `${p.title}\n${p.text}\n${p.source}` }),
    );
    return Object.freeze({ shape: 'items', items: Object.freeze(items), trimFrom: 'end' });
  }
}

/** The message trimmed and cut to `MAX_QUERY_CHARS`, never inside a surrogate pair. */
function queryOf(message: string): string {
  let query = message.trim();
  if (query.length > MAX_QUERY_CHARS) {
    const end = /[\uD800-\uDBFF]/.test(query[MAX_QUERY_CHARS - 1]) ? MAX_QUERY_CHARS - 1 : MAX_QUERY_CHARS;
    query = query.slice(0, end).trimEnd();
  }
  return query;
}

/** Both lists normalised by their best score, best first, `topK` kept. */
function merge(local: Passage[], remote: Passage[], topK: number): Passage[] {
  for (const list of [local, remote]) {
    const best = Math.max(0, ...list.map((p) => p.score));
    list.forEach((p, i) => (p.relative = best > 0 ? p.score / best : 1 - i / Math.max(1, list.length)));
  }
  if (remote.length === 0) return local;
  if (local.length === 0) return remote.slice(0, topK);
  return [...local, ...remote].sort((a, b) => b.relative - a.relative).slice(0, topK);
}

/** A string or number field as text; an object (`{"en": "..."}`) or null is not one (`[object Object]`). */
function scalarText(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined;
}

function round(score: number): number {
  return Math.round(score * 1000) / 1000;
}

const SEARCH_PLACEHOLDERS = new Set(['query', 'top_k']);

function compileRemote(cfg: KnowledgeHttpConfig, builderTimeoutMs: number): RemoteSearch {
  const url = parseUrlTemplate(cfg.url);
  const templates = [url, ...Object.values(cfg.headers).map(parseStringTemplate)];
  const roots = [...templates.flatMap((t) => t.paths.map((p) => p[0])), ...(cfg.body ? bodyTemplateRoots(parseBodyTemplate(cfg.body)) : [])];
  const unknown = roots.find((r) => !SEARCH_PLACEHOLDERS.has(r));
  if (unknown !== undefined) throw new Error(`unknown placeholder {{${unknown}}} (a search knows {{query}} and {{top_k}})`);
  return {
    method: cfg.method,
    url,
    headers: Object.entries(cfg.headers).map(([k, v]) => [k.toLowerCase(), parseStringTemplate(v)] as const),
    body: cfg.method === 'POST' && cfg.body ? parseBodyTemplate(cfg.body) : undefined,
    results: splitPath(cfg.results),
    fields: { title: splitPath(cfg.fields.title), text: splitPath(cfg.fields.text), score: splitPath(cfg.fields.score), source: splitPath(cfg.fields.source) },
    timeoutMs: Math.min(cfg.timeout_ms ?? builderTimeoutMs, builderTimeoutMs),
    maxBytes: cfg.max_bytes,
  };
}

async function searchRemote(r: RemoteSearch, query: string, topK: number, signal: AbortSignal, input: Pick<BuildInput, 'dispatcher'>): Promise<Passage[]> {
  const scope = { query, top_k: topK };
  const url = fillUrlTemplate(r.url, scope);
  if ('missing' in url) throw new ContextSourceError('invalid_request', `search placeholder ${url.missing} has no value`);
  const headers: Record<string, string> = {};
  for (const [name, t] of r.headers) {
    // A question with a line break or text beyond Latin-1 cannot go in a header: say so, not `unreachable`.
    const v = fillHeaderTemplate(t, scope);
    if ('missing' in v) throw new ContextSourceError('invalid_request', `search header ${name} cannot carry the query`);
    headers[name] = v.text;
  }
  const body = r.body ? fillBody(r.body, scope) : undefined;
  const answer = await fetchJson({
    url: url.text,
    method: r.method,
    headers,
    body: body && 'value' in body ? body.value : undefined,
    signal: AbortSignal.any([signal, AbortSignal.timeout(r.timeoutMs)]),
    maxBytes: r.maxBytes,
    dispatcher: input.dispatcher,
  });
  const list = getPath(answer, r.results);
  if (!Array.isArray(list)) throw new ContextSourceError('invalid_response', 'the search answer has no result list');
  const out: Passage[] = [];
  for (const [i, hit] of list.entries()) {
    if (out.length >= topK) break;
    const text = getPath(hit, r.fields.text);
    if (typeof text !== 'string' || text === '') continue;
    const title = scalarText(getPath(hit, r.fields.title)) ?? '';
    const score = getPath(hit, r.fields.score);
    const source = scalarText(getPath(hit, r.fields.source)) ?? 'search';
    out.push({
      title,
      text,
      score: typeof score === 'number' && Number.isFinite(score) ? score : list.length - i,
      source,
      // The source is rendered too (`[{{source}}] {{title}}`): a URL is tens of tokens.
      tokens: countTokens(title) + countTokens(text) + countTokensRemembered(source) + TOKENS_PER_PASSAGE,
      relative: 0,
    });
  }
  return out;
}
