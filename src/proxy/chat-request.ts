/**
 * The chat request body: as the gateway reads it (`ChatBody`) and as each upstream of the
 * route gets it (`bodiesFor`: with or without `include_usage`; `buildRequest`: its headers).
 */
import type { RuntimeConfig } from '../config/compile.js';
import { keepExactNumbers } from './exact-json.js';
import { upstreamHeaders } from './headers.js';
import { serializeJson } from './request-shape.js';
import type { Upstream, UpstreamRequest } from './upstream.js';

/** The parsed chat request, as far as the gateway reads it. */
export interface ChatBody {
  model?: unknown;
  messages?: unknown;
  stream?: unknown;
  stream_options?: { include_usage?: unknown } | null;
  [key: string]: unknown;
}

export interface UpstreamChat {
  upstream: Upstream;
  /** The client's headers that may go upstream (`upstreamRequestHeaders`). */
  clientHeaders: Record<string, string>;
  /** The body this upstream gets (`bodiesFor`). */
  body: OutgoingBody;
  signal: AbortSignal;
}

/** The request for one upstream: auth and extra headers are per upstream. */
export function buildRequest(o: UpstreamChat): UpstreamRequest {
  const headers = upstreamHeaders(o.upstream, o.clientHeaders);
  headers['content-type'] = 'application/json';
  headers['content-length'] = String(o.body.bytes.byteLength);
  return { method: 'POST', path: '/chat/completions', headers, body: o.body.bytes, json: o.body.json, signal: o.signal };
}

/** A request body as sent upstream: its JSON and bytes, and whether the gateway added `include_usage` to it. */
export interface OutgoingBody {
  json: ChatBody;
  bytes: Uint8Array;
  asksUsage: boolean;
}

export interface OutgoingBodiesInput {
  /** The client's body as parsed, and its bytes. */
  received: ChatBody;
  raw: Uint8Array;
  /** The body to send (rendered, or `received` itself when nothing changed it). */
  body: ChatBody;
  stream: boolean;
  route: readonly string[];
  config: RuntimeConfig;
}

/**
 * The body each upstream of the route gets. A stream whose client did not ask for usage is
 * sent with `stream_options.include_usage: true`, for exact accounting (the relay removes
 * the usage chunk again), except to an upstream with `ask_stream_usage: false`: that one
 * gets the body as the client sent it (rendered). Each form is serialised once, before the
 * first attempt; the client's own body, when unchanged, is sent as its bytes. A rewritten body
 * keeps the client's numbers as sent (`serializeJson`: JSON.stringify alone would round
 * integers past 2^53, a 64-bit `seed`), so its copies here are declared `keepExactNumbers`.
 */
export function bodiesFor(o: OutgoingBodiesInput): { for(upstream: Upstream): OutgoingBody } {
  const { received, raw, body, stream, route, config } = o;
  const plainBytes = () => (body === received ? raw : serializeJson(body));
  const addUsage = stream && mayAskUsage(body.stream_options);
  if (!addUsage) {
    const plain: OutgoingBody = { json: body, bytes: plainBytes(), asksUsage: false };
    return { for: () => plain };
  }
  const json: ChatBody = keepExactNumbers({ ...body, stream_options: keepExactNumbers({ ...(body.stream_options ?? {}), include_usage: true }, body.stream_options) }, body);
  const bytes = body === received && !Object.hasOwn(received, 'stream_options') ? withIncludeUsage(raw) : serializeJson(json);
  const asking: OutgoingBody = { json, bytes, asksUsage: true };
  const upstreams = config.upstreams;
  const plain: OutgoingBody | undefined = route.some((name) => upstreams.get(name)?.config.ask_stream_usage === false)
    ? { json: body, bytes: plainBytes(), asksUsage: false }
    : undefined;
  return { for: (upstream) => (plain && !upstream.spec.config.ask_stream_usage ? plain : asking) };
}

/**
 * Whether the gateway may ask for usage in the client's `stream_options`: absent, null, or an
 * object whose `include_usage` is absent or false. Anything else (a string, a list, a
 * non-boolean `include_usage`) goes as sent, for the upstream to refuse as it would directly.
 */
function mayAskUsage(options: unknown): boolean {
  if (options === undefined || options === null) return true;
  if (typeof options !== 'object' || Array.isArray(options)) return false;
  const include = (options as { include_usage?: unknown }).include_usage;
  return include === undefined || include === false;
}

const INCLUDE_USAGE_MEMBER = Buffer.from('"stream_options":{"include_usage":true},');

/** A JSON object's bytes (`model` and `messages` at least) with `stream_options.include_usage` as its first member. */
function withIncludeUsage(raw: Uint8Array): Buffer {
  const open = raw.indexOf(0x7b /* { */) + 1; // only JSON whitespace before it
  return Buffer.concat([raw.subarray(0, open), INCLUDE_USAGE_MEMBER, raw.subarray(open)]);
}
