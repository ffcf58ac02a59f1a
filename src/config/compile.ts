/**
 * Compiles a validated config file into the frozen `RuntimeConfig` the hot path reads:
 * upstream names resolved, keyless redirections applied, URLs split once, templates and
 * experiments loaded. Cross-references are checked here (an unknown upstream in a route is
 * an error naming the route).
 */
import path from 'node:path';
import type { ConfigFile, UpstreamConfig } from './schema.js';
import { compileContext, type CompiledContext } from '../context/compile.js';
import { compilePrompts, type CompiledPrompts } from '../prompts/compile.js';
import { createInjectionGuard, type InjectionGuard } from '../guard/policy.js';
import { createPriceBook, DEFAULT_PRICES, type PriceBook } from '../telemetry/pricing.js';

export interface CompileIssue {
  /** YAML path inside the config file, or `@file: path` for another file. */
  path: string;
  message: string;
}

/** An upstream ready for a client to be built from it. */
export interface CompiledUpstream {
  readonly name: string;
  readonly kind: 'http' | 'simulate';
  readonly config: UpstreamConfig;
  /** `gen_ai.provider.name` */
  readonly provider: string;
  /** `https://api.openai.com` (http kind only) */
  readonly origin: string;
  /** `/v1` — prefix put before the client's path after `/v1` */
  readonly basePath: string;
  /** `api-version=2024-10-21` — the base URL's query, without `?` ('' for none), added to every request */
  readonly baseQuery: string;
  /** Decoded names of the `baseQuery` parameters: a client parameter of one of these names is replaced. */
  readonly baseQueryNames: readonly string[];
  readonly serverAddress: string;
  readonly serverPort: number;
  /** Prices for this upstream: shipped defaults < global `pricing:` < the upstream's `pricing:`. */
  readonly priceBook: PriceBook;
  /** Equal fingerprints mean a client built for the old config can be reused after a reload. */
  readonly fingerprint: string;
  /** The credentials sent to this upstream, masked in its answers (proxy/headers.ts `maskSecrets`). */
  readonly secrets: UpstreamSecrets;
  /**
   * The client's credential headers not sent to this upstream (and not replaced by its own).
   * The client's `authorization`, `api-key`, `x-api-key`, `ocp-apim-subscription-key` and
   * `x-functions-key` go only to an upstream without a credential of its own (no `api_key`,
   * none of those names in its `headers`, no secret-named `base_url` query parameter): a key
   * the client meant for one provider never reaches another (an OpenAI key on a fallback to
   * an Azure upstream with its own `api-key`). Empty for such an upstream.
   */
  readonly withheldClientHeaders: readonly string[];
}

/**
 * Request headers that carry an API credential, in the spellings OpenAI-compatible APIs use
 * (Azure API Management's and Azure Functions' keys included).
 */
const CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'api-key', 'x-api-key', 'ocp-apim-subscription-key', 'x-functions-key'];

function withheldClientHeaders(u: UpstreamConfig): readonly string[] {
  const own = new Set(Object.keys(u.headers ?? {}));
  if (u.api_key !== '') own.add('authorization');
  const hasCredential = CREDENTIAL_HEADERS.some((name) => own.has(name)) || queryCredentials(u.base_url).length > 0;
  if (!hasCredential) return [];
  return CREDENTIAL_HEADERS.filter((name) => !own.has(name));
}

/** One upstream's credentials, as text (headers) and bytes (bodies). */
export interface UpstreamSecrets {
  readonly texts: readonly string[];
  readonly bytes: readonly Buffer[];
}

/**
 * Configured upstream header names whose values are credentials (`api-key`, `x-api-key`,
 * `authorization`, Azure API Management's `Ocp-Apim-Subscription-Key`, Azure Functions'
 * `x-functions-key`).
 */
const SECRET_HEADER = /authorization|api[-_]?key|subscription[-_]?key|functions[-_]?key|token|secret|password/i;
/** Shorter values are not looked for: masking them would garble ordinary text. */
const MIN_SECRET_CHARS = 8;

/**
 * `base_url` query parameters whose values are credentials: `?key=` (Gemini and others),
 * `&sig=` (an Azure SAS URL), `?code=` (an Azure Functions key), `?subscription-key=` (Azure
 * API Management), and the names of secret headers: more than the query names the log
 * redactor masks (telemetry/redact.ts: `key`, `token`, `auth`, `sig`, `signature`, `code`).
 */
const SECRET_PARAM = /^(?:key|auth|sig|signature|code)$|authorization|api[-_]?key|subscription[-_]?key|functions[-_]?key|token|secret|password/i;

/**
 * The `api_key`, the values of secret-named configured headers (without a `Bearer`/`Basic`
 * scheme) and of secret-named `base_url` query parameters: an upstream that quotes the
 * request's URL (an error naming the path, an echo) would otherwise hand back a key sent there.
 */
function secretsOf(u: UpstreamConfig): UpstreamSecrets {
  const headers = Object.entries(u.headers ?? {}).filter(([name]) => SECRET_HEADER.test(name)).map(([, v]) => v.replace(/^(?:Bearer|Basic)\s+/i, ''));
  const values = [u.api_key, ...headers, ...queryCredentials(u.base_url)];
  const texts = [...new Set(values.map((v) => v.trim()).filter((v) => v.length >= MIN_SECRET_CHARS))];
  return { texts, bytes: texts.map((v) => Buffer.from(v, 'latin1')) };
}

/** The values of `baseUrl`'s secret-named query parameters, as written (an echoed URL) and decoded (a quoted value). */
function queryCredentials(baseUrl: string | undefined): string[] {
  if (baseUrl === undefined) return [];
  const out: string[] = [];
  for (const pair of new URL(baseUrl).search.slice(1).split('&')) {
    const [name, value] = new URLSearchParams(pair).entries().next().value ?? ['', ''];
    if (!pair.includes('=') || !SECRET_PARAM.test(name)) continue;
    out.push(pair.slice(pair.indexOf('=') + 1), value);
  }
  return out;
}

export interface RuntimeConfig {
  readonly file: string;
  readonly baseDir: string;
  readonly server: ConfigFile['server'];
  readonly admin: ConfigFile['admin'];
  readonly identity: ConfigFile['identity'];
  readonly guard: ConfigFile['guard'];
  readonly pricing: ConfigFile['pricing'];
  /** Shipped defaults with the global `pricing:` over them. */
  readonly priceBook: PriceBook;
  readonly telemetry: ConfigFile['telemetry'];
  readonly logging: ConfigFile['logging'];
  readonly upstreams: ReadonlyMap<string, CompiledUpstream>;
  /** Ordered upstream names per requested model, keyless redirections applied. */
  readonly routing: { readonly default: readonly string[]; readonly models: ReadonlyMap<string, readonly string[]> };
  /**
   * `timeout.total_ms` of the default route's first upstream: the deadline of a whole
   * exchange (a chat request routed by `routing.models` gets its route's first upstream's).
   */
  readonly totalTimeoutMs: number;
  readonly prompts: CompiledPrompts;
  /** Context builders and the per-version context plans. */
  readonly context: CompiledContext;
  /** `guard.injection` compiled (scanner weights and patterns are shared per process). */
  readonly injectionGuard: InjectionGuard;
  /** Facts worth one log line at load, e.g. which upstream serves when no key is set. */
  readonly notes: readonly string[];
  /**
   * The directories this config reads besides its own file (templates, knowledge), absolute,
   * whether or not they exist: what hot reload watches (config/watch.ts).
   */
  readonly watchDirs: readonly string[];
}

/** `gen_ai.provider.name` of a simulated upstream's calls (its answers are priced as if real: the spend alerts leave it out). */
export const SIMULATOR_PROVIDER = 'promptgate.simulator';

export function compileConfig(file: ConfigFile, where: { file: string; baseDir: string }): { config: RuntimeConfig; issues: CompileIssue[] } {
  const issues: CompileIssue[] = [];
  const notes: string[] = [];

  const priceBook = createPriceBook(DEFAULT_PRICES, file.pricing);
  const upstreams = new Map<string, CompiledUpstream>();
  file.upstreams.forEach((u, i) => {
    if (upstreams.has(u.name)) issues.push({ path: `upstreams[${i}].name`, message: `duplicate upstream name "${u.name}"` });
    upstreams.set(u.name, compileUpstream(u, u.pricing ? createPriceBook(priceBook, u.pricing) : priceBook));
  });

  // keyless: an upstream without a key may hand its traffic to another upstream. The target
  // may itself be keyless and redirected: followed to the end, so traffic never reaches an
  // upstream that was told not to pass the client's Authorization on. A loop is an error.
  const redirectsTo = (u: UpstreamConfig): string | undefined => (u.keyless === 'pass_through' || u.api_key !== '' ? undefined : u.keyless);
  const byName = new Map(file.upstreams.map((u) => [u.name, u]));
  const redirect = new Map<string, string>();
  file.upstreams.forEach((u, i) => {
    if (redirectsTo(u) === undefined) return;
    const chain = [u.name];
    let target: UpstreamConfig | undefined = u;
    for (let next = redirectsTo(target); next !== undefined; next = redirectsTo(target)) {
      target = byName.get(next);
      // Reported once, by the upstream whose own keyless is unknown or that is in the loop.
      if (target === undefined) {
        if (chain.length === 1) issues.push({ path: `upstreams[${i}].keyless`, message: `unknown upstream "${next}" (expected pass_through or an upstream name)` });
        return;
      }
      if (chain.includes(next)) {
        if (next === u.name) issues.push({ path: `upstreams[${i}].keyless`, message: `keyless redirections go round in a loop (${[...chain, next].join(' -> ')}): one of them needs an api_key or keyless: pass_through` });
        return;
      }
      chain.push(next);
    }
    redirect.set(u.name, target.name);
    notes.push(`upstream "${u.name}" has no API key: its traffic goes to "${target.name}"${chain.length > 2 ? ` (via ${chain.slice(1, -1).join(', ')})` : ''}`);
  });

  const resolveRoute = (names: string[], at: string): string[] => {
    const out: string[] = [];
    names.forEach((n, i) => {
      if (!upstreams.has(n)) {
        issues.push({ path: `${at}[${i}]`, message: `unknown upstream "${n}" (known: ${[...upstreams.keys()].join(', ')})` });
        return;
      }
      const target = redirect.get(n) ?? n;
      if (!out.includes(target)) out.push(target);
    });
    return out;
  };
  const routing = {
    default: resolveRoute(file.routing.default, 'routing.default'),
    models: new Map(Object.entries(file.routing.models).map(([m, names]) => [m, resolveRoute(names, `routing.models.${m}`)])),
  };

  const templatesDir = path.resolve(where.baseDir, file.templates.dir);
  const prompts = compilePrompts(file, templatesDir);
  issues.push(...prompts.issues);
  const context = compileContext(file.context, prompts.compiled.registry, where.baseDir);
  issues.push(...context.issues);
  notes.push(...context.notes);

  const config: RuntimeConfig = {
    file: where.file,
    baseDir: where.baseDir,
    server: file.server,
    admin: file.admin,
    identity: file.identity,
    guard: file.guard,
    pricing: file.pricing,
    priceBook,
    injectionGuard: createInjectionGuard(file.guard.injection),
    telemetry: file.telemetry,
    logging: file.logging,
    upstreams,
    routing,
    totalTimeoutMs: upstreams.get(routing.default[0])?.config.timeout.total_ms ?? 3_600_000,
    prompts: prompts.compiled,
    context: context.compiled,
    notes,
    watchDirs: [templatesDir, ...context.compiled.watchDirs],
  };
  return { config: deepFreeze(config), issues };
}

function compileUpstream(u: UpstreamConfig, priceBook: PriceBook): CompiledUpstream {
  const fingerprint = JSON.stringify(u);
  if (u.simulate) {
    return { name: u.name, kind: 'simulate', config: u, provider: u.provider ?? SIMULATOR_PROVIDER, origin: '', basePath: '', baseQuery: '', baseQueryNames: [], serverAddress: 'simulator', serverPort: 0, priceBook, fingerprint, secrets: secretsOf(u), withheldClientHeaders: withheldClientHeaders(u) };
  }
  const url = new URL(u.base_url!);
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  return {
    name: u.name,
    kind: 'http',
    config: u,
    provider: u.provider ?? 'openai',
    origin: url.origin,
    basePath: url.pathname.replace(/\/+$/, ''),
    baseQuery: url.search.slice(1),
    baseQueryNames: [...new Set(url.searchParams.keys())],
    // server.address is the bare IP for an IPv6 host: URL keeps its brackets (`[::1]`).
    serverAddress: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    serverPort: port,
    priceBook,
    fingerprint,
    secrets: secretsOf(u),
    withheldClientHeaders: withheldClientHeaders(u),
  };
}

/** Freezes plain objects, arrays and Maps (Map contents frozen, the Map made read-only). */
function deepFreeze<T>(value: T, seen = new WeakSet<object>()): T {
  if (value === null || typeof value !== 'object' || seen.has(value)) return value;
  seen.add(value);
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v, seen);
    const ro = value as Map<unknown, unknown>;
    ro.set = ro.delete = ro.clear = () => {
      throw new TypeError('RuntimeConfig is frozen');
    };
    return Object.freeze(value);
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && !Array.isArray(value)) return value; // class instances own their invariants
  for (const v of Object.values(value)) deepFreeze(v, seen);
  return Object.freeze(value);
}
