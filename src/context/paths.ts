/**
 * Dotted paths (`customer.tier`, `data.orders.0.id`) and the small `{{path}}` string
 * templates of http builders (URLs, headers, bodies). Parsed once at load; own properties
 * only, so `{{constructor}}` finds nothing.
 */

/** `a.b.c` -> ['a', 'b', 'c']; `""` -> [] (the value itself). */
export function splitPath(path: string): readonly string[] {
  return Object.freeze(path === '' ? [] : path.split('.'));
}

/** The value at `path` in `root`, or undefined. */
export function getPath(root: unknown, path: readonly string[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** A string with `{{path}}` placeholders, parsed once. */
export interface StringTemplate {
  readonly source: string;
  /** Literal parts; `parts.length === paths.length + 1`. */
  readonly parts: readonly string[];
  readonly paths: readonly (readonly string[])[];
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}/g;

/** Parses `"/customers/{{user_id}}"`. Throws for a `{{` that is not a valid placeholder. */
export function parseStringTemplate(source: string): StringTemplate {
  const parts: string[] = [];
  const paths: (readonly string[])[] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    parts.push(source.slice(last, m.index));
    paths.push(splitPath(m[1]));
    last = m.index + m[0].length;
  }
  parts.push(source.slice(last));
  for (const p of parts) {
    if (p.includes('{{') || p.includes('}}')) throw new Error(`invalid placeholder in "${source}" (expected {{name}} or {{a.b}})`);
  }
  return Object.freeze({ source, parts: Object.freeze(parts), paths: Object.freeze(paths) });
}

/** Root names a template reads (`customer` for `{{customer.id}}`). */
export function templateRoots(t: StringTemplate): string[] {
  return t.paths.map((p) => p[0]);
}

/**
 * Fills the placeholders from `scope` (body strings; URLs use `fillUrlTemplate`, headers
 * `fillHeaderTemplate`).
 * Returns `{ missing }` naming the first placeholder with no value (undefined, null or "");
 * objects are not valid values, nor integers beyond 2^53 (JSON rounds them: another id).
 */
export function fillTemplate(t: StringTemplate, scope: unknown): { text: string } | { missing: string } {
  return fill(t, scope, asIs);
}

/** Fills `t`; `encode` turns each value into text, or refuses it (undefined: reported as missing). */
function fill<T extends StringTemplate>(t: T, scope: unknown, encode: (value: string, i: number, t: T) => string | undefined): { text: string } | { missing: string } {
  let text = t.parts[0];
  for (let i = 0; i < t.paths.length; i++) {
    const v = getPath(scope, t.paths[i]);
    const s = v === undefined || v === null || v === '' || typeof v === 'object' || inexact(v) ? undefined : encode(String(v), i, t);
    if (s === undefined) return { missing: t.paths[i].join('.') };
    text += s + t.parts[i + 1];
  }
  return { text };
}

const asIs = (value: string): string => value;

/**
 * A number that does not stand for the value it was written as: an integer beyond 2^53
 * (JSON.parse rounds `12345678901234567891` to `12345678901234567000`, another record's id)
 * or not finite. Refused like a missing value rather than sent.
 */
function inexact(v: unknown): boolean {
  return typeof v === 'number' && (!Number.isFinite(v) || (Number.isInteger(v) && !Number.isSafeInteger(v)));
}

/**
 * Whether a value kept whole in a body is, or holds, an `inexact` number: an object or list
 * (`"{{customer.ids}}"`) goes out as JSON with its ids rounded, which are other records' ids.
 */
function holdsInexact(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return inexact(v);
  return Object.values(v).some(holdsInexact);
}

/** RFC 9110 §5.5: a field value is visible ASCII, obs-text (0x80-0xFF), spaces and tabs; never CR, LF or NUL. */
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Fills a header template. `{ missing }` as for `fillTemplate`, and also for a value that
 * cannot be sent as a header value (CR/LF, characters beyond Latin-1): the call is skipped
 * rather than refused by the HTTP client as if the service were unreachable.
 */
export function fillHeaderTemplate(t: StringTemplate, scope: unknown): { text: string } | { missing: string } {
  return fill(t, scope, headerValue);
}

const headerValue = (value: string): string | undefined => (FIELD_VALUE.test(value) ? value : undefined);

/**
 * A URL template: placeholders in the path, query or fragment only, so a request can never
 * choose the scheme or host. `inPath[i]`: placeholder `i` is in the path.
 */
export interface UrlTemplate extends StringTemplate {
  readonly inPath: readonly boolean[];
}

/** Scheme and authority up to where the path, query or fragment starts (RFC 3986 §3). */
const ORIGIN = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*[/?#]/;

/** Parses `"https://crm.internal/customers/{{user_id}}"`. Throws for a placeholder in the scheme or host. */
export function parseUrlTemplate(source: string): UrlTemplate {
  const t = parseStringTemplate(source);
  if (t.paths.length > 0 && !ORIGIN.test(t.parts[0])) {
    throw new Error(`placeholder {{${t.paths[0].join('.')}}} in the scheme or host of "${source}" (placeholders go in the path or query)`);
  }
  const inPath: boolean[] = [];
  let path = true;
  for (let i = 0; i < t.paths.length; i++) {
    path &&= !/[?#]/.test(i === 0 ? t.parts[0].slice(t.parts[0].indexOf('//') + 2) : t.parts[i]);
    inPath.push(path);
  }
  return Object.freeze({ ...t, inPath: Object.freeze(inPath) });
}

/** Lone UTF-16 surrogates: `encodeURIComponent` throws on them (and no service could read them). */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Fills a URL template, each value URL-encoded (`/`, `?`, `#` and `%` stay inside it).
 * `{ missing }` as for `fillTemplate`, and also for a value that would change the URL's
 * shape: a `.` or `..` segment in the path (WHATWG URL parsing resolves them, `/customers/..`
 * is `/`; `../x` is one once a server decodes `%2F`, see `dotSegment`) or a string with lone
 * surrogates.
 */
export function fillUrlTemplate(t: UrlTemplate, scope: unknown): { text: string } | { missing: string } {
  return fill(t, scope, urlValue);
}

function urlValue(value: string, i: number, t: UrlTemplate): string | undefined {
  if (LONE_SURROGATE.test(value) || (t.inPath[i] && dotSegment(value))) return undefined;
  return encodeURIComponent(value);
}

/**
 * Whether a path value is, or holds, a `.` or `..` segment once a server decodes it: `..`,
 * and also `../admin` or `..\admin`, sent as `..%2Fadmin`, which servers that decode `%2F`
 * before resolving dot segments (nginx, IIS with `\`) read as `/customers/../admin`: another
 * path of the service, called with the builder's credentials. `..;x` is Tomcat's `..`.
 */
export function dotSegment(value: string): boolean {
  return value.split(/[/\\]/).some((segment) => /^\.\.?(?:;.*)?$/.test(segment));
}

/**
 * A JSON body whose string values are templates. A string that is exactly one placeholder
 * keeps the value's type (`"{{order_count}}"` -> 3).
 */
export type BodyTemplate =
  | { readonly kind: 'literal'; readonly value: unknown }
  | { readonly kind: 'string'; readonly template: StringTemplate; readonly whole: boolean }
  | { readonly kind: 'array'; readonly items: readonly BodyTemplate[] }
  | { readonly kind: 'object'; readonly entries: readonly (readonly [string, BodyTemplate])[] };

export function parseBodyTemplate(value: unknown): BodyTemplate {
  if (typeof value === 'string') {
    const template = parseStringTemplate(value);
    if (template.paths.length === 0) return { kind: 'literal', value };
    const whole = template.paths.length === 1 && template.parts[0] === '' && template.parts[1] === '';
    return { kind: 'string', template, whole };
  }
  if (Array.isArray(value)) return { kind: 'array', items: value.map(parseBodyTemplate) };
  if (value !== null && typeof value === 'object') {
    return { kind: 'object', entries: Object.entries(value).map(([k, v]) => [k, parseBodyTemplate(v)] as const) };
  }
  return { kind: 'literal', value };
}

export function bodyTemplateRoots(t: BodyTemplate): string[] {
  switch (t.kind) {
    case 'literal':
      return [];
    case 'string':
      return templateRoots(t.template);
    case 'array':
      return t.items.flatMap(bodyTemplateRoots);
    case 'object':
      return t.entries.flatMap(([, v]) => bodyTemplateRoots(v));
  }
}

/** Fills a body template; `{ missing }` as for `fillTemplate`. */
export function fillBody(t: BodyTemplate, scope: unknown): { value: unknown } | { missing: string } {
  switch (t.kind) {
    case 'literal':
      return { value: t.value };
    case 'string': {
      if (t.whole) {
        const v = getPath(scope, t.template.paths[0]);
        return v === undefined || v === null || v === '' || holdsInexact(v) ? { missing: t.template.paths[0].join('.') } : { value: v };
      }
      const r = fillTemplate(t.template, scope);
      return 'missing' in r ? r : { value: r.text };
    }
    case 'array': {
      const out: unknown[] = [];
      for (const item of t.items) {
        const r = fillBody(item, scope);
        if ('missing' in r) return r;
        out.push(r.value);
      }
      return { value: out };
    }
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [k, v] of t.entries) {
        const r = fillBody(v, scope);
        if ('missing' in r) return r;
        out[k] = r.value;
      }
      return { value: out };
    }
  }
}
