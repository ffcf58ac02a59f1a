/**
 * Credential masking: what looks like a key, token or password in text (`redact`), in a
 * field name (`SECRET_FIELD`) or in a request path (`redactPath`). Every log line, and what
 * spans and metric labels take from a client, pass through it.
 */

/**
 * Names of secrets in log text and field names (`x-api-key` is matched as `api-key`, Azure's
 * `Ocp-Apim-Subscription-Key` as `subscription-key`, `x-functions-key` as `functions-key`).
 */
const SECRET_NAME = String.raw`api[_-]?key|x-api-key|subscription[_-]?key|functions[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|password|secret|authorization|cookie`;

/**
 * Field names whose value the logger masks whole, before serializing: a number, `true`,
 * `null` or an object would not stay JSON if `redact` masked it (`"password":***`), and a
 * string with a space (`"authorization": "Token abc"`, a passphrase) would keep all but its
 * first word. `redact` still masks such names in text (messages, JSON held by a string).
 * A field named `token` (`admin_token`, `id_token`) too; in text that word is too common.
 */
export const SECRET_FIELD = new RegExp(`(?:${SECRET_NAME}|token)$`, 'i');

const SECRET_PATTERNS: ReadonlyArray<[RegExp, string]> = [
  // RFC 6750 bearer tokens (a token has a digit or symbol, or is long: "the bearer of" is prose)
  [/\bBearer\s+(?:(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{6,}|[A-Za-z]{20,})/gi, 'Bearer ***'],
  // RFC 7617 basic credentials
  [/\bBasic\s+[A-Za-z0-9+/=]{8,}/gi, 'Basic ***'],
  // OpenAI-style keys: sk-..., sk-proj-..., sk-ant-... (Anthropic), sk-or-... (OpenRouter)
  [/\bsk-[A-Za-z0-9_-]{8,}/g, 'sk-***'],
  // Credentials in a URL (`https://user:token@collector`). The scheme is capped at 32 characters: unbounded,
  // a logged model name like "A+A+A+..." cost time quadratic in its length (the scheme tried at every \b).
  // The user info stops at a `"` (a URL has none unescaped): a match never runs across the fields of a line.
  [/\b([a-z][a-z0-9+.-]{0,31}:\/\/)[^\s/@:"]+:[^\s/@"]+@/gi, '$1***@'],
  // Google API keys
  [/\bAIza[0-9A-Za-z_-]{30,}/g, 'AIza***'],
  // Credentials in a URL's query under short names (`?key=` of Gemini and others, `&token=`,
  // `&sig=` of an Azure SAS URL, `?code=` of Azure Functions): too common as words to mask outside a query.
  [/([?&](?:key|token|auth|sig|signature|code)=)[^&#\s"'\\]+/gi, '$1***'],
  // key=value / "key": "value" for key-like names. Lines are redacted as serialized JSON: a
  // backslash takes the character after it (a JSON escape such as `\"`) into the masked value,
  // so a mask never ends between the two and turns an escaped quote into a closing one. The
  // quotes around the name and the value may be escaped too: JSON text inside a string value
  // (`"body":"{\"password\":\"...\"}"`); an escaped quote before a delimiter closes the value.
  [
    new RegExp(String.raw`((?:${SECRET_NAME})(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)(?!Bearer\b|Basic\b|\*\*\*|[A-Za-z]+\*\*\*)(?:\\"(?![\s"',;&}\]\\]|$)|\\[^"]|[^\s"',;&}\\])+`, 'gi'),
    '$1***',
  ],
];

/**
 * Masks anything that looks like a credential: `sk-...` keys, `Bearer`/`Basic` credentials,
 * `user:password@` in URLs, Google `AIza...` keys, and the value of `api_key=`,
 * `"password": "..."` and the like.
 *
 * @example
 * redact('Authorization: Bearer sk-abc123456789') // 'Authorization: Bearer ***'
 */
export function redact(s: string): string {
  let out = s;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** Whether `s` holds something `redact` masks (a client value that must not be published as it is). */
export function holdsCredential(s: string): boolean {
  return redact(s) !== s;
}

/** An optional `scheme://`, then the authority: up to the first `/`, `?` or `#`. */
const SCHEME_AND_AUTHORITY = /^([a-z][a-z0-9+.-]{0,31}:\/\/)?([^/?#]*)/i;

/**
 * An exporter endpoint as a log line may show it: the user info of its authority masked
 * (everything before the authority's last `@`), with or without a scheme, then redacted as
 * any text. `redact` sees user info only after `scheme://`, and an endpoint set without one
 * (`otel:pw@collector:4318`, a slip the startup warning is about) would be logged as it is.
 * An `@` in the path or query is no user info: the host stays readable.
 *
 * @example
 * redactEndpoint('otel:Hunter2@collector:4318') // '***@collector:4318'
 */
export function redactEndpoint(endpoint: string): string {
  const masked = endpoint.replace(SCHEME_AND_AUTHORITY, (whole, scheme: string | undefined, authority: string) => {
    const at = authority.lastIndexOf('@');
    return at < 0 ? whole : `${scheme ?? ''}***${authority.slice(at)}`;
  });
  return redact(masked);
}

/**
 * The path with its runs of percent-escapes decoded as UTF-8: the log's key redactor matches
 * keys as written (`key=sk-...`, `?key=AIza...`), and a client can escape them
 * (`key%3Dsk-...`). In a run that is no UTF-8 the ASCII escapes are still decoded (they are
 * never part of a multi-byte character) and the others stay as sent, so an invalid byte
 * cannot hide the key escaped after it (`%FF%73k-...`). The logger's JSON escapes what decodes
 * to control characters or quotes, so the line stays one line.
 */
export function decodedPath(path: string): string {
  return path.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run.replace(/%[0-7][0-9A-Fa-f]/g, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)));
    }
  });
}

/**
 * A request path as a span may record it (`url.path`): as sent, unless it holds a credential
 * (plain or percent-escaped: a client that put its key in the path), then decoded and masked
 * as a log line would be.
 */
export function redactPath(path: string): string {
  const decoded = decodedPath(path);
  const masked = redact(decoded);
  return masked === decoded ? path : masked;
}
