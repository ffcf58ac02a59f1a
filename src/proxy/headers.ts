/**
 * Header filtering between client, gateway and upstream, and `maskSecrets`: an upstream's
 * key never goes back to the client, in an answer's headers or its body.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Exchange } from './exchange.js';
import type { Upstream, UpstreamResponse } from './upstream.js';
import type { UpstreamSecrets } from '../config/compile.js';

// RFC 9110 §7.6.1: hop-by-hop fields apply to one connection and are never forwarded;
// `Connection` may name more of them.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Request headers the gateway sets itself or must not forward. */
const NOT_FORWARDED = new Set([
  'host',
  'content-length', // recomputed for the body actually sent
  'accept-encoding', // the gateway reads bodies (usage), so it asks for identity
  'traceparent', // exactly one traceparent goes upstream: the gateway's own
  'tracestate',
  'baggage', // sent by the gateway's propagator (or passed through as is with tracing off)
  'expect',
]);

/**
 * Response headers not passed back: framing is redone by the gateway's own server.
 * `content-encoding` is returned: it describes the bytes, which pass through unchanged
 * unless the chat route decodes them (and then drops it, see `content-coding.ts`).
 */
const NOT_RETURNED = new Set(['content-length', 'date', 'server']);

function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  if (!value || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return undefined;
  const list = (Array.isArray(value) ? value.join(',') : value).split(',').map((s) => s.trim().toLowerCase());
  return new Set(list.filter(Boolean));
}

/** Headers to send upstream, from the client's headers (lower-case names, Node's shape). */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, via: string): Record<string, string> {
  const listed = connectionListed(incoming.connection);
  const out: Record<string, string> = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name) || listed?.has(name) || name.startsWith('x-promptgate-')) continue;
    const value = incoming[name];
    if (value === undefined) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  out['accept-encoding'] = 'identity';
  // RFC 9110 §7.6.3: a proxy adds itself to `via`; a request that comes back shows it (`refuseLoop`).
  out.via = out.via === undefined ? via : `${out.via}, ${via}`;
  return out;
}

/**
 * A gateway's `via` entry, `1.1 promptgate-<8 hex digits>`, new for each app: a request
 * that arrives with its own entry went round a loop (request-shape.ts `refuseLoop`).
 */
export function viaEntry(): string {
  return `1.1 promptgate-${randomBytes(4).toString('hex')}`;
}

/**
 * The client's forwarded headers plus one upstream's own: its extra headers and API key.
 * The client's credential headers go only to an upstream without a credential of its own
 * (`CompiledUpstream.withheldClientHeaders`).
 */
export function upstreamHeaders(upstream: Upstream, clientHeaders: Readonly<Record<string, string>>): Record<string, string> {
  const { config: cfg, withheldClientHeaders } = upstream.spec;
  const headers: Record<string, string> = { ...clientHeaders, ...cfg.headers };
  for (const name of withheldClientHeaders) if (name in clientHeaders) delete headers[name];
  if (cfg.api_key !== '') headers.authorization = `Bearer ${cfg.api_key}`;
  return headers;
}

/**
 * Headers to return to the client from an upstream response. `x-promptgate-*` is this
 * gateway's namespace (README "Response headers"): an upstream's own (another promptgate in
 * front of the provider) would read as this gateway's cost, template or score, so it is
 * dropped, as the client's `x-promptgate-*` request headers are not sent upstream.
 */
export function clientResponseHeaders(upstream: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const listed = connectionListed(upstream.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    if (HOP_BY_HOP.has(name) || NOT_RETURNED.has(name) || listed?.has(name) || name.startsWith('x-promptgate-')) continue;
    const value = upstream[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * Upstream headers for the client, plus the gateway's own. A plain object (not `Headers`):
 * @hono/node-server hands it straight to `writeHead`, keeping repeated fields such as
 * `set-cookie` as arrays.
 */
export function responseHeaders(response: UpstreamResponse, exchange: Exchange): Record<string, string | string[]> {
  const headers = clientResponseHeaders(response.headers);
  // The upstream's x-request-id is what OpenAI SDKs expose as `_request_id`: keep it.
  headers['x-request-id'] ??= exchange.requestId;
  headers['x-promptgate-request-id'] = exchange.requestId;
  Object.assign(headers, exchange.gatewayHeaders);
  return headers;
}

/**
 * The answer with every credential of its upstream replaced by as many `*`: an upstream (or
 * a proxy in front of it) that echoes the request's `authorization` in an error message or
 * a header (`www-authenticate`, `x-request-id`) would hand the gateway's key to the client.
 * Same length, so `content-length` stays right. Headers are always checked; the body of an
 * answer that is not a 2xx (where such echoes are: a 401 quoting the request), and of a
 * successful one with `successBody` (pass-through routes). A chat completion is the model's
 * output, which never saw the key, and looking through every streamed chunk would cost
 * every request. A body in a content coding is not looked into. The same object when there
 * is nothing to mask.
 */
export function maskSecrets(response: UpstreamResponse, secrets: UpstreamSecrets, successBody = false): UpstreamResponse {
  const texts = secrets.texts;
  if (texts.length === 0) return response;
  const holds = (v: string | string[] | undefined): boolean => v !== undefined && texts.some((s) => (Array.isArray(v) ? v.some((x) => x.includes(s)) : v.includes(s)));
  const headers = Object.values(response.headers).some(holds) ? maskedHeaders(response.headers, texts) : response.headers;
  const coding = response.headers['content-encoding'];
  const plain = coding === undefined || (typeof coding === 'string' && /^\s*identity\s*$/i.test(coding));
  const maskBody = plain && (successBody || response.status < 200 || response.status >= 300);
  if (headers === response.headers && !maskBody) return response;
  return { ...response, headers, body: maskBody ? maskedBody(response.body, secrets.bytes) : response.body };
}

/** Every header value with each secret replaced by as many `*`. */
function maskedHeaders(headers: UpstreamResponse['headers'], secrets: readonly string[]): UpstreamResponse['headers'] {
  const mask = (v: string): string => secrets.reduce((out, s) => (out.includes(s) ? out.split(s).join('*'.repeat(s.length)) : out), v);
  const out: UpstreamResponse['headers'] = {};
  for (const name in headers) {
    const v = headers[name];
    out[name] = v === undefined ? v : Array.isArray(v) ? v.map(mask) : mask(v);
  }
  return out;
}

/** The body with each secret masked, also one split across chunks: only a tail that could start one is held back. */
async function* maskedBody(body: AsyncIterable<Uint8Array>, secrets: readonly Buffer[]): AsyncGenerator<Uint8Array> {
  let held: Buffer | undefined;
  for await (const chunk of body) {
    const buf = held ? maskedBytes(Buffer.concat([held, chunk]), secrets, true) : maskedBytes(chunk, secrets);
    const keep = secretPrefixAtEnd(buf, secrets);
    held = keep > 0 ? Buffer.from(buf.subarray(buf.length - keep)) : undefined;
    if (buf.length > keep) yield buf.subarray(0, buf.length - keep);
  }
  if (held) yield held;
}

/**
 * `bytes` with each secret replaced by as many `*`: the same bytes when none is in them,
 * else a copy (never written into the upstream's buffer), unless `own` says it is ours.
 */
export function maskedBytes(bytes: Uint8Array, secrets: readonly Buffer[], own = false): Buffer {
  let buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let copied = own;
  for (const s of secrets) {
    for (let at = buf.indexOf(s); at >= 0; at = buf.indexOf(s, at + s.length)) {
      if (!copied) (buf = Buffer.from(buf)), (copied = true);
      buf.fill(0x2a, at, at + s.length);
    }
  }
  return buf;
}

/** The length of the longest end of `buf` that is the start of a secret (0: none). */
function secretPrefixAtEnd(buf: Buffer, secrets: readonly Buffer[]): number {
  let longest = 0;
  for (const s of secrets) {
    for (let k = Math.min(s.length - 1, buf.length); k > longest; k--) {
      if (buf[buf.length - k] === s[0] && buf.subarray(buf.length - k).equals(s.subarray(0, k))) {
        longest = k;
        break;
      }
    }
  }
  return longest;
}
