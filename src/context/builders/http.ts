/**
 * `http`: one JSON endpoint of the user's own services (customer profile, order status).
 *
 * ```yaml
 * - name: customer
 *   kind: http
 *   url: "${CUSTOMERS_URL}/customers/{{user_id}}"   # placeholders are URL-encoded
 *   headers: {authorization: "Bearer ${CUSTOMERS_TOKEN}"}
 *   timeout_ms: 80
 *   pick: {tier: tier, name: profile.first_name}     # output field -> path in the answer
 *   cache: {ttl_ms: 60000, stale_while_revalidate_ms: 30000, stale_if_error_ms: 600000}
 * ```
 *
 * Placeholders read `user_id`, the template variables and other builders' outputs (which
 * makes those builders dependencies). A placeholder with no value skips the builder
 * (`missing_input`), and so does a value that would leave its path segment (`.`, `..`); no
 * placeholder may stand in the scheme or host. A header value that HTTP cannot carry (CR/LF,
 * text beyond Latin-1) skips the builder too, rather than failing as `unreachable`. The
 * cache key is the method, the filled URL, the headers that have placeholders and the body;
 * fixed headers (tokens) are not part of it. The answer is untrusted text: its strings are
 * scanned for injection.
 */
import type { HttpBuilderConfig } from '../config-schema.js';
import { fetchJson, ContextSourceError } from '../fetch-json.js';
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
  templateRoots,
  type BodyTemplate,
  type StringTemplate,
  type UrlTemplate,
} from '../paths.js';
import { countValueTokens } from '../tokens.js';
import type { Builder, BuilderOutput, BuildInput, BuildPlan } from '../types.js';
import { commonSettings, deepFreeze, dependencies, type BuilderContext } from './common.js';

export class HttpBuilder implements Builder {
  readonly name: string;
  readonly kind = 'http' as const;
  readonly output = 'object' as const;
  readonly required: boolean;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly cache: HttpBuilderConfig['cache'];
  readonly untrusted = true;
  readonly dependsOn: readonly string[];
  readonly fingerprint: string;
  readonly #method: 'GET' | 'POST';
  readonly #url: UrlTemplate;
  readonly #headers: readonly (readonly [string, StringTemplate])[];
  readonly #body: BodyTemplate | undefined;
  readonly #pick: readonly (readonly [string, readonly string[]])[] | undefined;
  readonly #maxBytes: number;

  /** Throws for an invalid placeholder (compile reports it at `url`/`headers`/`body`). */
  constructor(cfg: HttpBuilderConfig, ctx: BuilderContext) {
    const common = commonSettings(cfg, ctx);
    this.name = common.name;
    this.required = common.required;
    this.timeoutMs = common.timeoutMs;
    this.priority = common.priority;
    this.cache = common.cache;
    this.fingerprint = common.fingerprint;
    this.#method = cfg.method;
    this.#url = parseUrlTemplate(cfg.url);
    this.#headers = Object.entries(cfg.headers).map(([k, v]) => [k.toLowerCase(), parseStringTemplate(v)] as const);
    this.#body = cfg.method === 'POST' && cfg.body ? parseBodyTemplate(cfg.body) : undefined;
    const pick = Array.isArray(cfg.pick) ? Object.fromEntries(cfg.pick.map((p) => [p.split('.').at(-1)!, p])) : cfg.pick;
    this.#pick = pick && Object.entries(pick).map(([field, path]) => [field, splitPath(path)] as const);
    this.#maxBytes = cfg.max_bytes;
    this.dependsOn = dependencies(
      [...templateRoots(this.#url), ...this.#headers.flatMap(([, t]) => templateRoots(t)), ...(this.#body ? bodyTemplateRoots(this.#body) : [])],
      ctx,
    );
  }

  plan(input: BuildInput): BuildPlan {
    const url = fillUrlTemplate(this.#url, input.scope);
    if ('missing' in url) return { missing: url.missing };
    const headers: Record<string, string> = {};
    // Headers filled from the request (`x-customer-id: {{user_id}}`) choose the answer as the URL does.
    let filledHeaders = '';
    for (const [name, t] of this.#headers) {
      const v = fillHeaderTemplate(t, input.scope);
      if ('missing' in v) return { missing: v.missing };
      headers[name] = v.text;
      if (t.paths.length > 0) filledHeaders += `\n${name}: ${v.text}`;
    }
    let body: unknown;
    if (this.#body) {
      const b = fillBody(this.#body, input.scope);
      if ('missing' in b) return { missing: b.missing };
      body = b.value;
    }
    const key = `${this.#method} ${url.text}${filledHeaders}${body === undefined ? '' : `\n${JSON.stringify(body)}`}`;
    return {
      key,
      produce: async (signal) => {
        const answer = await fetchJson({ url: url.text, method: this.#method, headers, body, signal, maxBytes: this.#maxBytes, dispatcher: input.dispatcher });
        return this.shape(answer);
      },
    };
  }

  /** The output object from an answer: the picked fields, or the answer itself. */
  shape(answer: unknown): BuilderOutput {
    let value: Record<string, unknown>;
    if (this.#pick) {
      // `null`, a string or a number has none of the fields: an empty profile would pass for one.
      if (answer === null || typeof answer !== 'object') throw new ContextSourceError('invalid_response', 'the answer is not a JSON object or array');
      value = {};
      for (const [field, path] of this.#pick) {
        const v = getPath(answer, path);
        if (v !== undefined) value[field] = v;
      }
    } else if (answer !== null && typeof answer === 'object' && !Array.isArray(answer)) {
      value = answer as Record<string, unknown>;
    } else {
      throw new ContextSourceError('invalid_response', 'the answer is not a JSON object (set pick to read into it)');
    }
    try {
      return Object.freeze({ shape: 'object', value: deepFreeze(value), tokens: countValueTokens(value) });
    } catch (err) {
      // JSON.parse takes any depth; JSON.stringify (token count) runs out of stack.
      if (err instanceof RangeError) throw new ContextSourceError('invalid_response', 'the answer is nested too deeply', { cause: err });
      throw err;
    }
  }
}
