/**
 * What the /v1 handlers do with a request before the pipeline reads it: open its exchange,
 * refuse it while draining, check the content type, strip a BOM, parse and serialise JSON.
 */
import { isUtf8 } from 'node:buffer';
import type { Context } from 'hono';
import type { AppEnv, GatewayDeps } from '../app-types.js';
import type { RuntimeConfig } from '../config/compile.js';
import { contentCodings } from './content-coding.js';
import { Exchange } from './exchange.js';
import { GatewayError, shuttingDownError } from '../errors.js';
import { parseExact, stringifyExact } from './exact-json.js';

/** 415 unless the content type is JSON (`application/json`, `application/*+json`). */
export function requireJson(contentType: string | undefined): void {
  const type = contentType?.split(';')[0].trim().toLowerCase();
  if (type === 'application/json' || (type?.startsWith('application/') && type.endsWith('+json'))) return;
  throw new GatewayError('unsupported_media_type', `Expected Content-Type application/json, got ${type ? JSON.stringify(type.slice(0, 100)) : 'none'}.`);
}

/**
 * 415 for a request body in a content coding (`content-encoding: gzip`): the chat route reads
 * the JSON itself, and a compressed body read as JSON was a misleading 400 "not UTF-8".
 * RFC 9110 §15.5.16: `accept-encoding` says what would do.
 */
export function refuseContentCoding(contentEncoding: string | undefined): void {
  const codings = contentCodings(contentEncoding);
  if (codings.length === 0) return;
  throw new GatewayError(
    'unsupported_media_type',
    `Request bodies in a content coding (${JSON.stringify(codings.join(', ').slice(0, 100))}) are not accepted on this route: send the JSON uncompressed.`,
    { headers: { 'accept-encoding': 'identity' } },
  );
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * The JSON bytes of a request body: a UTF-8 byte order mark before them dropped. RFC 8259
 * §8.1 lets a parser ignore it, and Python's `json.loads`, which OpenAI-compatible servers
 * parse request bytes with, does; it is not forwarded (Go's encoding/json refuses it).
 */
export function withoutBom(raw: Buffer): Buffer {
  return raw.subarray(0, 3).equals(BOM) ? raw.subarray(3) : raw;
}

/**
 * Parses a JSON object body; 400 `invalid_json` for anything else, bytes that are not UTF-8
 * included: decoded, they would turn into U+FFFD in a body the gateway rewrites and go on as
 * they came in one it forwards as its bytes (Python servers refuse them as well). Numbers a
 * double cannot carry (integers past 2^53) read as the nearest double and are written back
 * as sent by `serializeJson` below (`stringifyExact`, exact-json.ts).
 */
export function parseJsonObject(raw: Uint8Array): Record<string, unknown> {
  if (!isUtf8(raw)) throw new GatewayError('invalid_json', 'The request body is not valid UTF-8. Send the JSON encoded as UTF-8.');
  let value: unknown;
  try {
    value = parseExact(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    throw new GatewayError('invalid_json', 'We could not parse the JSON body of your request. Send a valid JSON object.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('invalid_json', 'The request body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

/**
 * The rewritten body as JSON bytes; 400 `invalid_request` for one nested too deeply to
 * serialise. `JSON.parse` takes any depth, `JSON.stringify` recurses and runs out of stack
 * (a `RangeError`) somewhere past a few thousand levels: the client's nesting, not a gateway fault.
 * The client's numbers are written as sent (`parseJsonObject`; a shallow copy of a parsed
 * object keeps them when declared with `keepExactNumbers`).
 */
export function serializeJson(body: unknown): Buffer {
  try {
    return Buffer.from(stringifyExact(body));
  } catch (err) {
    if (err instanceof RangeError) throw new GatewayError('invalid_request', 'The request body is nested too deeply.');
    throw err;
  }
}

/** 503 for new requests once the gateway drains (they reach it over kept-alive connections). */
export function refuseWhileDraining(deps: { lifecycle: { draining: boolean } }): void {
  if (deps.lifecycle.draining) {
    throw shuttingDownError();
  }
}

/**
 * More promptgate entries than this in `via` is a loop through several gateways (replicas
 * behind one Service), where no entry is this one's: a real chain has one or two.
 */
const MAX_PROMPTGATE_HOPS = 8;

/**
 * 508 for a request that came back to this gateway (`via` holds its own entry, see
 * headers.ts `viaEntry`): an upstream `base_url` pointing at the gateway itself, typically
 * the app's `OPENAI_BASE_URL` in the gateway's environment. Without it each request went
 * round until the upstream pool was full, and every request then hung.
 */
export function refuseLoop(via: string | undefined, own: string): void {
  if (via === undefined) return;
  if (!via.includes(own) && via.split('promptgate-').length - 1 <= MAX_PROMPTGATE_HOPS) return;
  throw new GatewayError(
    'loop_detected',
    'The request came back to this gateway: an upstream base_url points at the gateway itself (check OPENAI_BASE_URL in the gateway\'s environment).',
  );
}

/** Incoming header lookup without building a Web `Headers` object. */
export function headerGetter(c: Context<AppEnv>): (name: string) => string | undefined {
  const incoming = c.env?.incoming;
  if (!incoming) return (name) => c.req.header(name);
  return (name) => {
    const v = incoming.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
}

/**
 * Starts the exchange of a `/v1` request: request id, deadline, abort on client close, spans.
 * Registered on the context so the error boundary can finish it.
 */
export function openExchange(
  c: Context<AppEnv>,
  deps: GatewayDeps,
  config: RuntimeConfig,
  options: { route: string; header: (name: string) => string | undefined; captureContent: boolean },
): Exchange {
  const outgoing = c.env?.outgoing;
  const exchange = new Exchange({
    route: options.route,
    path: c.req.path,
    method: c.req.method,
    incomingRequestId: options.header('x-request-id'),
    totalTimeoutMs: config.totalTimeoutMs,
    incoming: c.env?.incoming,
    outgoing,
    webSignal: outgoing ? undefined : c.req.raw.signal,
    header: options.header,
    captureContent: options.captureContent,
    onFinish: deps.onRequestDone,
    logger: deps.logger,
    inflight: deps.lifecycle.exchanges,
  });
  c.set('exchange', exchange);
  return exchange;
}
