/**
 * Exact usage and cost on the two pass-through routes whose answers report them, accounted
 * like chat completions (the same record fields, so the same metrics, span attributes, log
 * fields and `x-promptgate-cost-usd` header):
 *
 * ```
 * POST /v1/embeddings  JSON  model, usage {prompt_tokens, total_tokens}
 * POST /v1/responses   JSON  id, model, usage {input_tokens, input_tokens_details.cached_tokens,
 *                            output_tokens, output_tokens_details.reasoning_tokens}
 *                      SSE   the same, in `response` of the last event
 *                            (response.completed, response.incomplete or response.failed)
 * GET /v1/responses/{id}     a background response this gateway saw created, the first
 * (JSON or SSE resume),      answer that shows it ended (see BackgroundResponses)
 * POST .../{id}/cancel
 * ```
 *
 * The client gets the upstream's bytes unchanged; usage is read on the side, in bounded
 * memory (side-reader.ts; a Responses stream's events: response-events.ts). Nothing is
 * estimated: an answer whose usage cannot be read (an error status, not JSON, a content
 * coding, a body or stream cut short, no usage in it) is accounted as any pass-through
 * answer (status, latency). A body cut short before anything went to the
 * client (while read for the cost header) is a gateway error, as on the chat route.
 *
 * An error answer on any pass-through route is read the same way for its error code only
 * (`noteErrorCode`), as the chat route records it.
 */
import { formatUsd } from '../telemetry/pricing.js';
import { usageFromOpenAI } from '../telemetry/usage.js';
import { MAX_ERROR_BYTES, noteUpstreamError, priceUsage } from './accounting.js';
import { contentCodings } from './content-coding.js';
import type { Exchange } from './exchange.js';
import { TopLevelFields } from './json-fields.js';
import { ResponseEvents } from './response-events.js';
import { NOTHING_READ, readHead, relayed, SideReader } from './side-reader.js';
import type { Upstream, UpstreamResponse } from './upstream.js';

/** `retrieve`: polling, resuming or cancelling a background response (BackgroundResponses). */
export type MeteredRoute = 'embeddings' | 'responses' | 'retrieve';

/** A response's `status` once it ended: a background response's usage is final then. */
const ENDED = new Set(['completed', 'incomplete', 'failed', 'cancelled']);
/** `/responses/{id}` and `/responses/{id}/cancel`: the id. */
const RESPONSE_PATH = /^\/responses\/([^/]+)(\/cancel)?$/;
/** The `error_type` of a Responses stream in which the upstream sent an `error` event, as on the chat route. */
export const UPSTREAM_STREAM_ERROR = 'upstream_stream_error';

/**
 * Background responses (`background: true`) this gateway saw created and not yet accounted:
 * their create call answers `queued` without usage (or its stream stops before the end), and
 * the usage comes with the first poll (`GET /v1/responses/{id}`), resumed stream
 * (`?stream=true&starting_after=n`) or cancel that shows the response ended. That request
 * accounts it and takes the id out, so each is accounted once, however often it is polled.
 * Ids past MAX_PENDING (oldest first) are forgotten, unaccounted. One per app, shared by its requests.
 */
export class BackgroundResponses {
  static readonly MAX_PENDING = 10_000;
  readonly #pending = new Set<string>();

  add(id: string): void {
    if (this.#pending.has(id)) return;
    this.#pending.add(id);
    if (this.#pending.size > BackgroundResponses.MAX_PENDING) this.#pending.delete(this.#pending.values().next().value as string);
  }

  has(id: string): boolean {
    return this.#pending.has(id);
  }

  /** True (once) when `id` was pending: the caller accounts it. */
  take(id: string): boolean {
    return this.#pending.delete(id);
  }
}

/**
 * The metered route of a pass-through request, or undefined. The create calls are; a stored
 * answer (`GET /v1/responses/{id}`) was accounted when it was made, unless it is a
 * background response still pending here.
 */
export function meteredRoute(method: string, path: string, background: BackgroundResponses): MeteredRoute | undefined {
  // As the route label reads it (passthrough.ts resourceOf): an upstream that merges
  // slashes serves `/embeddings/` and `//embeddings` as `/embeddings`.
  const pathname = `/${path.split('?', 1)[0].split('/').filter(Boolean).join('/')}`;
  if (method === 'POST' && pathname === '/embeddings') return 'embeddings';
  if (method === 'POST' && pathname === '/responses') return 'responses';
  const match = RESPONSE_PATH.exec(pathname);
  if (!match || method !== (match[2] ? 'POST' : 'GET')) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
  return background.has(id) ? 'retrieve' : undefined;
}

/**
 * Notes the request's `model` (and `stream`) on the record, for the CLIENT span and the
 * labels, from a JSON body the gateway holds anyway (up to `server.max_body_bytes`); read
 * until both are found, never parsed whole. Without it the answer's `model` stands in.
 */
export function noteMeteredRequest(exchange: Exchange, route: MeteredRoute, body: Uint8Array | undefined): void {
  if (!body) return;
  const { model, stream } = topLevelFields(body, route === 'responses' ? ['model', 'stream'] : ['model']);
  if (typeof model === 'string' && model !== '') exchange.record.requestModel = model;
  if (stream === true) exchange.record.stream = true;
}

/**
 * The `model` of another pass-through request's JSON body (legacy completions, moderations,
 * images), for `routing.models` and the spans; not read from multipart uploads.
 */
export function noteRequestModel(exchange: Exchange, body: Uint8Array, contentType: string | undefined): void {
  if (contentType === undefined || !/\bjson\b/i.test(contentType)) return;
  const { model } = topLevelFields(body, ['model']);
  if (typeof model === 'string' && model !== '') exchange.record.requestModel = model;
}

/** The named top-level members of a JSON body, read in slices until all are found. */
function topLevelFields(body: Uint8Array, names: string[]): Record<string, unknown> {
  const fields = new TopLevelFields(names);
  const SLICE = 16 * 1024;
  for (let at = 0; at < body.length && !fields.complete; at += SLICE) fields.push(body.subarray(at, at + SLICE));
  return fields.found();
}

export interface MeterOptions {
  route: MeteredRoute;
  response: UpstreamResponse;
  exchange: Exchange;
  /** The upstream that answered: its prices apply. */
  upstream: Upstream;
  /** The client's response headers: `x-promptgate-cost-usd` is added when the cost is known in time. */
  headers: Record<string, string | string[]>;
  /** The app's pending background responses. */
  background: BackgroundResponses;
  /**
   * Called once a stream names its stored object (`response.created`), with the id already on
   * the record: the calls on that object (cancel, poll, resume, delete) may come while the
   * stream is still open, or after it was cut, and must find the upstream that holds it
   * (`RoutedObjects`), which the end of the request would note too late or not at all.
   */
  onObjectId: () => void;
}

/** The answer `meterUsage` relays: the upstream's, read on the way. */
export interface MeteredResponse extends UpstreamResponse {
  /**
   * True once a Responses stream's terminal event went by: the answer is whole, so a client
   * that closes then (an app that stops at `response.completed`) is no client abort.
   */
  complete?: () => boolean;
}

/**
 * The answer to relay in place of `response`: the same bytes, read on the way. Usage, model
 * and cost go on the exchange's record when the body ends complete (a stream: at its
 * terminal event), before whoever relays it finishes the exchange. A non-stream answer up
 * to HEADER_WAIT_BYTES (side-reader.ts) is read first, so its cost header goes with it.
 */
export async function meterUsage(o: MeterOptions): Promise<MeteredResponse> {
  const { response, exchange } = o;
  if (response.status < 200 || response.status >= 300 || contentCodings(response.headers['content-encoding']).length > 0) return response;
  const type = mediaType(response.headers['content-type']);
  if (type === 'text/event-stream' && o.route !== 'embeddings') {
    const iterator = response.body[Symbol.asyncIterator]();
    exchange.record.stream = true;
    let terminal = false;
    /** The background response this stream noted pending, which a poll may account first. */
    let pending: string | undefined;
    const events = new ResponseEvents({
      // The usage is final at the terminal event, whether or not the client stays for the end of the body.
      onTerminal: (last) => {
        terminal = true;
        // A poll that saw it end while this stream was still open accounted it already.
        account(o, last, pending !== undefined && !o.background.has(pending));
      },
      onCreated: (created) => {
        if (typeof created.id !== 'string' || created.id === '') return;
        // Known from here on, so a stream cut before its terminal event still names its response.
        exchange.record.responseId = created.id;
        o.onObjectId();
        // A background stream that stops before its end is accounted when a poll sees it end.
        if (o.route === 'responses' && created.background === true) {
          o.background.add(created.id);
          pending = created.id;
        }
      },
      // The upstream failed the stream (an `error` event), as on the chat route; a client
      // that leaves after it (openai-node throws on it) does not make it a client abort.
      onError: () => {
        exchange.record.outcome = 'error';
        exchange.record.errorType = UPSTREAM_STREAM_ERROR;
      },
    });
    const onChunk = (chunk: Uint8Array) => {
      // Time to the first chunk, as on the chat route's streams.
      if (events.bytes === 0) exchange.record.ttfbMs = performance.now() - exchange.startedAt;
      events.push(chunk);
    };
    // The end reads an unterminated last event too (onTerminal accounts it).
    return { ...response, body: relayed(NOTHING_READ, iterator, new SideReader(exchange, onChunk, () => events.end())), complete: () => terminal };
  }
  if (type !== 'application/json') return response;
  const iterator = response.body[Symbol.asyncIterator]();
  const fields = new TopLevelFields(o.route === 'embeddings' ? ['model', 'usage'] : ['id', 'model', 'usage', 'service_tier', 'status', 'background']);
  const reader = new SideReader(exchange, (chunk) => fields.push(chunk), () => account(o, fields.end()));
  const head = await readHead(iterator, reader, exchange);
  if (head.done) {
    const cost = reader.end();
    if (typeof cost === 'number') o.headers['x-promptgate-cost-usd'] = formatUsd(cost);
  }
  return { ...response, body: relayed(head, iterator, reader) };
}

/**
 * The error answer (status >= 400) to relay in place of `response`: the same bytes, sent as
 * they come, its first MAX_ERROR_BYTES kept on the side. When the body ends within them, its
 * error code goes on the record as on the chat route (`noteUpstreamError`: `error.code`, else
 * `error.type`; a body that is not the JSON envelope has none). A longer body (an HTML page,
 * a dump) is let go past that size, and a compressed one is not read at all.
 */
export function noteErrorCode(response: UpstreamResponse, exchange: Exchange): UpstreamResponse {
  if (contentCodings(response.headers['content-encoding']).length > 0 || Number(response.headers['content-length']) > MAX_ERROR_BYTES) return response;
  const kept: Uint8Array[] = [];
  let bytes = 0;
  const keep = (chunk: Uint8Array) => {
    bytes += chunk.byteLength;
    if (bytes <= MAX_ERROR_BYTES) kept.push(chunk);
    else kept.length = 0;
  };
  const end = () => {
    if (bytes <= MAX_ERROR_BYTES) noteUpstreamError(exchange, Buffer.concat(kept));
  };
  return { ...response, body: relayed(NOTHING_READ, response.body[Symbol.asyncIterator](), new SideReader(exchange, keep, end)) };
}

/**
 * Writes what the answer said onto the record and prices it; the cost, or null/undefined
 * (unknown price, no usage, or `accountedElsewhere`: its usage went on another request).
 */
function account(o: MeterOptions, read: Record<string, unknown> | undefined, accountedElsewhere = false): number | null | undefined {
  if (!read) return undefined;
  const r = o.exchange.record;
  if (typeof read.model === 'string' && read.model !== '') {
    r.responseModel = read.model;
    r.requestModel ??= read.model; // the request body was not read (streamed upload, not JSON)
  }
  if (typeof read.id === 'string' && read.id !== '') r.responseId = read.id;
  if (typeof read.service_tier === 'string') r.serviceTier = read.service_tier;
  if (accountedElsewhere || !accountable(o, read)) return undefined;
  const usage = usageFromOpenAI(read.usage);
  if (!usage) return undefined;
  r.usage = usage;
  return priceUsage(o.exchange, o.upstream);
}

/**
 * Whether this answer's usage is accounted here. A background response still running (its
 * create call answers `queued`) is noted pending; a poll, resume or cancel accounts it only
 * once it ended, and only the first that sees that (`take`).
 */
function accountable(o: MeterOptions, read: Record<string, unknown>): boolean {
  if (o.route === 'embeddings') return true;
  const id = typeof read.id === 'string' ? read.id : undefined;
  const ended = typeof read.status !== 'string' || ENDED.has(read.status);
  if (o.route === 'responses') {
    if (read.background === true && !ended && id !== undefined) o.background.add(id);
    // The create call's own stream reached the end: accounted here, not by a later poll.
    else if (id !== undefined) o.background.take(id);
    return true;
  }
  return ended && id !== undefined && o.background.take(id);
}

/** The media type of a content-type, lower-case, without parameters. */
function mediaType(value: string | string[] | undefined): string {
  const v = Array.isArray(value) ? value[0] : value;
  return (v ?? '').split(';', 1)[0].trim().toLowerCase();
}
