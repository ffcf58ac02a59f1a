/**
 * Every other `/v1/*` route (embeddings, files, models, responses, ...): method, query,
 * headers and body go to the default route's upstreams; status, headers and body (streamed
 * as it arrives) come back. Accounting is basic: status, latency, upstream, attempts, and
 * the error code of an error answer; `POST /v1/embeddings` and `POST /v1/responses` add usage
 * and cost (passthrough-usage.ts).
 */
import type { ServerResponse } from 'node:http';
import type { Context } from 'hono';
import type { AppEnv, GatewayDeps } from '../app-types.js';
import type { Exchange } from './exchange.js';
import { GatewayError, unknownRouteError } from '../errors.js';
import { forward } from './forward.js';
import { bodyReadError } from './upstream-body.js';
import { decodeContent } from './content-coding.js';
import { readPassThroughBody } from './read-body.js';
import { BackgroundResponses, type MeteredResponse, meterUsage, meteredRoute, noteErrorCode, noteMeteredRequest, noteRequestModel, UPSTREAM_STREAM_ERROR } from './passthrough-usage.js';
import { routeForModel } from './model-route.js';
import { dotSegment } from '../context/paths.js';
import { headerGetter, openExchange, refuseLoop, refuseWhileDraining } from './request-shape.js';
import { noteUpstreamAnswer } from './accounting.js';
import { responseHeaders, upstreamHeaders, upstreamRequestHeaders } from './headers.js';
import type { UpstreamResponse } from './upstream.js';

// Methods that seldom carry a body: one is read only when the request's framing declares it.
const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

export function passThrough(deps: GatewayDeps) {
  // Background responses created through this app and not yet accounted (across reloads).
  const background = new BackgroundResponses();
  return async function passThroughHandler(c: Context<AppEnv>): Promise<Response> {
    const runtime = deps.holder.current;
    const config = runtime.config;
    const method = c.req.method;
    const header = headerGetter(c);
    // Always from `/`: `/v1?x` is `/?x` (undici refuses a path without it).
    const rest = originForm(c).replace(/^\/v1(?=\/|\?|$)/, '');
    const path = rest.startsWith('/') ? rest : `/${rest}`;
    const pathname = path.split('?', 1)[0];
    const own = ownRouteOf(pathname);
    if ((own === 'chat/completions' && pathname !== '/chat/completions') || own === 'feedback') throw unknownRouteError(method, c.req.url);
    // The refusals below come after the exchange opens, so they are accounted under the route.
    const exchange = openExchange(c, deps, config, { route: routeOf(path), header, captureContent: false });
    refuseWhileDraining(deps);
    refuseLoop(header('via'), deps.via);
    refuseEncodedDotSegment(pathname);
    refuseWebSocket(header);

    const read = BODYLESS.has(method) && !declaresBody(c) ? null : await readPassThroughBody(c.env?.incoming, c.req.raw, config.server.max_body_bytes);
    const clientHeaders = upstreamRequestHeaders(c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers), deps.via);
    if (read?.bytes) clientHeaders['content-length'] = String(read.bytes.byteLength);
    else if (read?.stream) {
      // An upload over max_body_bytes goes as it arrives, with the length the client declared (if any).
      const declared = c.env?.incoming?.headers['content-length'];
      if (declared !== undefined) clientHeaders['content-length'] = declared;
    }
    const body = read?.bytes ?? read?.stream ?? null;
    // Embeddings and Responses: usage and cost read like chat's (passthrough-usage.ts).
    const metered = meteredRoute(method, path, background);
    if (metered === 'embeddings' || metered === 'responses') noteMeteredRequest(exchange, metered, read?.bytes);
    else if (read?.bytes) noteRequestModel(exchange, read.bytes, header('content-type'));
    // The model list gets the binding aliases, an alias the upstream does not know its
    // entry: a HEAD of either asks the upstream with GET, to answer as the GET would (RFC 9110 §9.3.2).
    const bindings = [...config.prompts.bindings.keys()];
    const listing = (method === 'GET' || method === 'HEAD') && path.split('?', 1)[0] === '/models' && bindings.length > 0;
    const headAsGet = method === 'HEAD' && (listing || boundAliasOf(path, config.prompts.bindings) !== undefined);

    const forwarded = await forward({
      runtime,
      route: routeForModel(config, exchange, exchange.record.requestModel ?? deps.routedObjects.modelFor(pathname)),
      once: read?.stream !== undefined, // a streamed body cannot be sent again
      maskSuccessBody: true, // any API: an echo of the request would carry the key
      ...exchange.forwarding(),
      build: (upstream) => {
        const headers = upstreamHeaders(upstream, clientHeaders);
        const span = exchange.spans.startUpstream({
          operation: operationOf(path),
          provider: upstream.spec.provider,
          serverAddress: upstream.spec.serverAddress,
          serverPort: upstream.spec.serverPort,
          requestModel: exchange.record.requestModel,
          stream: exchange.record.stream,
        });
        span.applyTo(headers);
        return { method: headAsGet ? 'GET' : method, path, headers, body, signal: exchange.signal };
      },
    });
    const { response } = forwarded;
    exchange.record.ttfbMs = performance.now() - exchange.startedAt;
    noteUpstreamAnswer(exchange, response.headers);
    const alias = (method === 'GET' || method === 'HEAD') && response.status === 404 ? boundAliasOf(path, config.prompts.bindings) : undefined;
    if (alias !== undefined) return await retrieveAlias(response, alias, exchange, method === 'HEAD');
    exchange.record.status = response.status;
    if (response.status >= 400) {
      exchange.record.outcome = 'error';
      exchange.record.errorType = `upstream_${response.status}`;
    }
    if (listing && response.status === 200) {
      // The list is rewritten, so a compressed one is decoded first (and sent without content-encoding).
      const { response: decoded, opaque } = decodeContent(response);
      if (!opaque) return await listWithAliases(decoded, responseHeaders(decoded, exchange), bindings, exchange, method === 'HEAD');
    }
    const headers = responseHeaders(response, exchange);
    // RFC 9110 §15.3.5, §15.3.6, §15.4.5: 204, 205 and 304 have no content (what came with one is dropped).
    if (method === 'HEAD' || response.status === 204 || response.status === 205 || response.status === 304) {
      await response.dump();
      // RFC 9110 §9.3.2: a HEAD answer carries the length the GET body would have.
      const length = response.headers['content-length'];
      if (method === 'HEAD' && typeof length === 'string') headers['content-length'] = length;
      exchange.finish();
      return new Response(null, { status: response.status, headers: headers as HeadersInit });
    }
    // Relayed as it came: a compressed body keeps its content-encoding, and its length
    // (RFC 9110 §8.6: a download's size, which clients show as progress).
    const length = response.headers['content-length'];
    if (typeof length === 'string') headers['content-length'] = length;
    // An error answer's code is read on the way; a success is read on metered routes only.
    // A stream's stored object is routed by its model from its first event (model-route.ts).
    const onObjectId = () => deps.routedObjects.note(exchange.record, config);
    const relayed: MeteredResponse =
      response.status >= 400
        ? noteErrorCode(response, exchange)
        : metered
          ? await meterUsage({ route: metered, response, exchange, upstream: forwarded.upstream, headers, background, onObjectId })
          : response;
    return new Response(streamBody(relayed, exchange, c.env?.outgoing), { status: response.status, headers: headers as HeadersInit });
  };
}

/**
 * The request target as path and query. RFC 9112 §3.2.2: a server accepts the absolute-form
 * (`GET http://host/v1/models`); only its path and query go on, so a client never names the
 * authority of an upstream call that carries the upstream's key. The path is the one the
 * route matched (`c.req.url`: the client's bytes, with dot segments resolved as RFC 3986
 * §5.2.4 and WHATWG URL do, `%2e%2e` included), so `/v1/../../x` cannot climb out of the
 * `base_url` path; the query is the client's bytes.
 */
function originForm(c: Context<AppEnv>): string {
  // A `#` is no part of a request target (RFC 9112 §3.2): what follows it is dropped, as a
  // URL parser drops a fragment. Sent on, `/v1/models#/../../admin` reached an upstream that
  // takes `#` for a path character and resolves the dot segments after it outside `base_url`.
  const routed = withoutFragment(c.req.url);
  const start = routed.indexOf('/', routed.indexOf('//') + 2);
  const end = routed.indexOf('?');
  const pathname = start < 0 ? '/' : routed.slice(start, end < 0 ? undefined : end);
  // The query as the client wrote it (WHATWG URL re-encodes some bytes, `'` among them).
  const target = withoutFragment(c.env?.incoming?.url ?? routed);
  const at = target.indexOf('?');
  return at < 0 ? pathname : pathname + target.slice(at);
}

function withoutFragment(target: string): string {
  const hash = target.indexOf('#');
  return hash < 0 ? target : target.slice(0, hash);
}

/**
 * The gateway's own route an upstream may read `pathname` as: with a trailing or doubled
 * slash (nginx merges slashes), an escaped one (`chat%2Fcompletions`, `%5C`, `\`: uvicorn
 * and nginx decode them), in other case (ASP.NET, IIS), with `;parameters` on a segment
 * (Tomcat, Spring, Jetty cut them) or a trailing dot or space (IIS trims them):
 * `chat/completions` (relayed, it would be served past templates, guard and accounting) or
 * `feedback` (the upstream has none, and would get the gateway's key).
 */
function ownRouteOf(pathname: string): 'chat/completions' | 'feedback' | undefined {
  let decoded = withSlashesRead(pathname);
  try {
    decoded = decodeURIComponent(decoded);
  } catch {
    // not percent-encoded UTF-8: compared as it is
  }
  const normal = decoded
    .toLowerCase()
    .split('/')
    .map((segment) => segment.replace(/;.*$/s, '').replace(/[.\s]+$/, ''))
    .filter(Boolean)
    .join('/');
  return normal === 'chat/completions' || normal === 'feedback' ? normal : undefined;
}

/**
 * `/v1/..%2Fadmin`: a server that decodes `%2F` (or `%5C`, `\`) before resolving dot
 * segments (nginx does) reads it as `/admin`, outside the base path; so does Tomcat
 * `/v1/..;/admin` (it cuts `;parameters` first). No API path has one.
 */
function refuseEncodedDotSegment(pathname: string): void {
  if (encodedDotSegment(pathname)) throw new GatewayError('invalid_request', 'The request path has a disguised dot segment (such as ..%2F or ..;).');
}

/** `pathname` with `%2F`, `%5C` and `\` read as `/`, as servers that decode them (nginx, uvicorn) read it. */
function withSlashesRead(pathname: string): string {
  return pathname.replace(/%2f|%5c|\\/gi, '/');
}

/**
 * Whether the path has a `.` or `..` segment once `%2F`, `%5C`, `\` and `%2E` are read as
 * `/`, `/`, `/` and `.`, and a segment's `;parameters` are cut.
 */
function encodedDotSegment(pathname: string): boolean {
  if (!/%2f|%5c|\\|%2e|;/i.test(pathname)) return false;
  return dotSegment(withSlashesRead(pathname).replace(/%2e/gi, '.'));
}

/**
 * RFC 9112 §6.3: a request has a body when its framing says so (`content-length`,
 * `transfer-encoding`), whatever its method: a `DELETE` with a body keeps it.
 */
function declaresBody(c: Context<AppEnv>): boolean {
  const headers = c.env?.incoming?.headers;
  if (!headers) return c.req.raw.body !== null;
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * A WebSocket handshake (`/v1/realtime`; RFC 6455 §4.1: `Upgrade: websocket` with the
 * `upgrade` option in `Connection`) cannot be relayed: the gateway speaks HTTP to the
 * upstream and never switches protocols, so the client gets a clear error rather than the
 * upstream's answer to a plain GET. Other upgrades (`h2c`) are optional for the server and
 * ignored (RFC 9110 §7.8), as is an `Upgrade` that `Connection` does not name.
 */
function refuseWebSocket(header: (name: string) => string | undefined): void {
  if (!tokens(header('connection')).includes('upgrade') || !tokens(header('upgrade')).includes('websocket')) return;
  throw new GatewayError('not_implemented', 'WebSocket connections (such as the Realtime API) are not supported by this gateway; use the HTTP API.', {
    headers: { connection: 'close' },
  });
}

/** The lower-case tokens of a comma-separated header value. */
function tokens(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(',').map((t) => t.trim().toLowerCase());
}

// OpenAI API families: used as the route label (bounded); anything else is `/v1/*`.
const KNOWN_SEGMENTS = new Set(['models', 'embeddings', 'completions', 'responses', 'files', 'batches', 'images', 'audio', 'moderations', 'assistants', 'threads', 'vector_stores', 'fine_tuning', 'uploads', 'realtime', 'conversations']);

/** Resources whose collection path is a GenAI operation (`POST /v1/responses`). */
const GENAI_SEGMENTS = new Set(['embeddings', 'completions', 'responses']);

/**
 * The `route` label: `/v1/<resource>` for a known resource, `/v1/*` for any other path. A
 * path under a GenAI resource (`/v1/responses/{id}`, `/v1/responses/{id}/cancel`,
 * `/v1/responses/input_tokens`) is `/v1/<resource>/*`: not the operation itself, so it
 * never lands in the operation's latency and token histograms.
 */
function routeOf(path: string): string {
  const { segment, sub } = resourceOf(path);
  if (!KNOWN_SEGMENTS.has(segment)) return '/v1/*';
  return sub && GENAI_SEGMENTS.has(segment) ? `/v1/${segment}/*` : `/v1/${segment}`;
}

/**
 * The first path segment (`responses`), and whether the path goes below it. Empty segments
 * do not count: an upstream that merges slashes serves `//embeddings` as `/embeddings`.
 */
function resourceOf(path: string): { segment: string; sub: boolean } {
  const parts = path.split('?', 1)[0].split('/').filter(Boolean);
  return { segment: parts[0] ?? '', sub: parts.length > 1 };
}

/**
 * `gen_ai.operation.name` (and the CLIENT span's name) for the GenAI routes; the API
 * resource (`models`, `files`...) for the other known ones; `http` for any other path, so
 * a client cannot name spans (or fill Jaeger's operation list) by the paths it requests.
 */
function operationOf(path: string): string {
  const { segment, sub } = resourceOf(path);
  if (sub && GENAI_SEGMENTS.has(segment)) return segment; // retrieving or cancelling a response is no `chat`
  if (segment === 'embeddings') return 'embeddings';
  if (segment === 'completions') return 'text_completion';
  if (segment === 'responses') return 'chat';
  return KNOWN_SEGMENTS.has(segment) ? segment : 'http';
}

/**
 * `GET /v1/models` with the binding aliases added (`support-bot`), so clients that check
 * the model list accept them. An unexpected body passes through unchanged. A `HEAD` gets
 * the headers and length of that answer, without the body.
 */
async function listWithAliases(response: UpstreamResponse, headers: Record<string, string | string[]>, aliases: string[], exchange: Exchange, head: boolean): Promise<Response> {
  const chunks: Uint8Array[] = [];
  try {
    for await (const chunk of response.body) chunks.push(chunk);
  } catch {
    throw bodyReadError(exchange); // nothing went to the client yet: 502/504, as on the chat route
  }
  let bytes: Uint8Array = Buffer.concat(chunks);
  try {
    const list = JSON.parse(Buffer.from(bytes).toString('utf8')) as { data?: Array<{ id?: string }> };
    if (Array.isArray(list.data)) {
      const known = new Set(list.data.map((m) => m.id));
      for (const id of aliases) if (!known.has(id)) list.data.push(aliasModel(id));
      bytes = Buffer.from(JSON.stringify(list));
    }
  } catch {
    // not JSON: pass it on as it came
  }
  exchange.finish();
  if (head) return new Response(null, { status: 200, headers: { ...headers, 'content-length': String(bytes.byteLength) } as HeadersInit });
  return new Response(bytes as Uint8Array<ArrayBuffer>, { status: 200, headers: headers as HeadersInit });
}

/** The model object a binding alias gets in `GET /v1/models` and `GET /v1/models/{alias}`. */
function aliasModel(id: string): { id: string; object: 'model'; created: number; owned_by: string } {
  return { id, object: 'model', created: 0, owned_by: 'promptgate' };
}

/** The binding alias `GET /v1/models/{model}` asks for, or undefined for any other path. */
function boundAliasOf(path: string, bindings: ReadonlyMap<string, unknown>): string | undefined {
  const match = /^\/models\/([^/?]+)(?:\?|$)/.exec(path);
  if (!match) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
  return bindings.has(id) ? id : undefined;
}

/**
 * `GET /v1/models/{alias}` (or `HEAD`) for a binding alias the upstream does not know (it answered 404):
 * the entry the model list shows for it, so a client that checks its model by id (as
 * `models.list` lets it) accepts the alias too. An upstream model of the same name wins, as
 * in the list.
 */
async function retrieveAlias(response: UpstreamResponse, id: string, exchange: Exchange, head: boolean): Promise<Response> {
  await response.dump();
  const headers = responseHeaders(response, exchange);
  delete headers['content-encoding']; // the body is the gateway's, not the upstream's
  headers['content-type'] = 'application/json';
  exchange.finish({ status: 200 });
  const body = JSON.stringify(aliasModel(id));
  if (head) return new Response(null, { status: 200, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } as HeadersInit });
  return new Response(body, { status: 200, headers: headers as HeadersInit });
}

/**
 * The upstream body as a Web stream, finishing the exchange when it ends. Bytes go as they
 * come (no event boundaries known), so a body that fails (the upstream cut it, an idle
 * timeout, the shutdown) cuts the client's connection: the client sees it incomplete.
 * Only a Responses stream past its terminal event is whole: it just ends.
 * `finish` accounts it (as a shutdown when the shutdown aborted it).
 */
function streamBody(response: MeteredResponse, exchange: Exchange, outgoing: ServerResponse | undefined): ReadableStream<Uint8Array> {
  const iterator = response.body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { value, done } = await iterator.next();
          if (done) {
            controller.close();
            exchange.finish();
          } else {
            controller.enqueue(value);
          }
        } catch (err) {
          if (!exchange.clientGone && response.complete?.()) {
            // Failed after a Responses stream's terminal event: the client has the whole
            // answer, and its stream just ends (as a chat stream failing after `[DONE]`).
            controller.close();
            exchange.finish();
            return;
          }
          exchange.finish(
            exchange.clientGone ? clientLeft(exchange, response) : { outcome: 'error', errorType: 'upstream_body_error' },
          );
          // Erroring the stream cuts it too, but @hono/node-server then prints the upstream's
          // error (stack, socket addresses) to stderr: cut the connection here instead.
          if (outgoing) outgoing.destroy();
          else controller.error(err);
        }
      },
      cancel() {
        exchange.finish(clientLeft(exchange, response));
        exchange.abort();
        void iterator.return?.().catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * How a body the client stopped reading ends: a client abort, unless the upstream had failed
 * the stream (its `error` event: openai-node throws on it and closes the connection at once)
 * or the answer was whole (a Responses stream's terminal event went by): the record stays as it is.
 */
function clientLeft(exchange: Exchange, response: MeteredResponse): Partial<Exchange['record']> {
  if (exchange.record.errorType === UPSTREAM_STREAM_ERROR || response.complete?.() === true) return {};
  return { outcome: 'client_abort', errorType: 'client_abort' };
}
