/**
 * Upstream clients. An `Upstream` sends one request and returns the status, headers and a
 * body to iterate; it knows nothing of retries or breakers (see `forward.ts`).
 *
 * - `HttpUpstream`: one undici `Pool` per upstream (keep-alive), timeouts from config:
 *   connect (`connect.timeout`), first byte (`headersTimeout`, from when the request is
 *   written: see `PooledAttempt` for one that waits for a connection), idle between body
 *   chunks (`bodyTimeout`); the total deadline is the caller's AbortSignal.
 * - `SimulatedUpstream`: the in-process simulator (the embedded default).
 */
import type { Readable } from 'node:stream';
import { Client, Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { CompiledUpstream } from '../config/compile.js';
import { simulate } from '../simulator/simulator.js';

export interface UpstreamRequest {
  method: string;
  /** Path relative to the API root, with query: `/chat/completions`, `/files?purpose=x` */
  path: string;
  headers: Record<string, string>;
  /** Whole, or (a pass-through upload over `max_body_bytes`) streamed as it arrives: sent once. */
  body: Uint8Array | Readable | null;
  /** The parsed JSON body when the gateway has it (the simulator uses it, skipping a parse). */
  json?: unknown;
  signal: AbortSignal;
  /**
   * Noted by the upstream client once the request is written to the upstream: `at_once` on
   * a connection that was free (or opened for it), `after_wait` on one that came free after
   * the request waited for it (every one of `connections` busy). Unset: the request never
   * reached the upstream. An upstream that did not answer a request it got `after_wait`
   * before `total_ms` ran out had less than the whole deadline (see `forward.ts`).
   */
  sent?: 'at_once' | 'after_wait';
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Uint8Array>;
  /** Discards the body (before a retry) so the connection can be reused. */
  dump(): Promise<void>;
}

export interface Upstream {
  readonly spec: CompiledUpstream;
  request(req: UpstreamRequest): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/** Why an upstream call failed before a response arrived. */
export type TransportFailure = 'connect' | 'first_byte_timeout' | 'idle_timeout' | 'aborted' | 'protocol';

/** Classifies an error thrown by an upstream call or while reading its body. */
export function classifyTransportError(err: unknown): TransportFailure {
  if (err instanceof undiciErrors.HeadersTimeoutError) return 'first_byte_timeout';
  if (err instanceof undiciErrors.BodyTimeoutError) return 'idle_timeout';
  if (err instanceof undiciErrors.ConnectTimeoutError) return 'connect';
  if (err instanceof undiciErrors.RequestAbortedError) return 'aborted';
  // undici 7 builds its HTTPParserError with `code: undefined` (it indexes llhttp's
  // name -> number table with the number), so the HPE_ check below never sees it.
  if (err instanceof undiciErrors.HTTPParserError) return 'protocol';
  const name = (err as { name?: string } | null)?.name;
  if (name === 'AbortError' || name === 'TimeoutError') return 'aborted';
  const code = (err as { code?: string } | null)?.code;
  if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') return 'aborted';
  // undici refuses a `100 Continue` (which it never asks for: `expect` is not sent) and an
  // unasked-for upgrade as a `bad response`, and a body its content-length does not match
  // (content-length next to transfer-encoding): the upstream answered, invalidly.
  // Headers past undici's `maxHeaderSize` (16 KiB): answered, but not an answer it can read.
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_HEADERS_OVERFLOW') return 'protocol';
  if (code === 'UND_ERR_SOCKET' && /^bad (response|upgrade)$/.test((err as Error).message)) return 'protocol';
  if (code === 'UND_ERR_INFO' || code === 'HPE_INVALID_CONSTANT' || code?.startsWith('HPE_')) return 'protocol';
  return 'connect'; // ECONNREFUSED, ECONNRESET, ENOTFOUND, UND_ERR_SOCKET, UND_ERR_CLOSED...
}

/**
 * The request target at the upstream: the base URL's path, the request's path, and the query
 * of both. The base URL's parameters (Azure's `api-version`) replace a client parameter of
 * the same name, as configured `headers` replace a client header: the operator pins what
 * the upstream gets. The client's other parameters keep their order and bytes.
 *
 * @example
 * // base_url https://x.openai.azure.com/openai?api-version=2024-10-21
 * upstreamPath(spec, '/files?purpose=batch&api-version=old') // '/openai/files?purpose=batch&api-version=2024-10-21'
 */
export function upstreamPath(spec: Pick<CompiledUpstream, 'basePath' | 'baseQuery' | 'baseQueryNames'>, path: string): string {
  if (spec.baseQuery === '') return spec.basePath + path;
  const q = path.indexOf('?');
  if (q < 0) return `${spec.basePath}${path}?${spec.baseQuery}`;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((pair) => pair !== '' && !spec.baseQueryNames.includes(paramName(pair)));
  return `${spec.basePath}${path.slice(0, q)}?${[...kept, spec.baseQuery].join('&')}`;
}

/** The decoded name of one `name=value` pair (application/x-www-form-urlencoded, as URLSearchParams reads it). */
function paramName(pair: string): string {
  return new URLSearchParams(pair).keys().next().value ?? '';
}

/**
 * One attempt's undici dispatch handler, in front of undici's own (api-request's
 * `RequestHandler`: the legacy handler API, its five methods). It follows the request through
 * the pool (HTTP/1.1, `pipelining: 1`: a connection carries one request at a time):
 *   1. given a connection during `dispatch` (one was free, or a new one opens): `at_once`;
 *   2. else it waits in the pool's queue for another request's connection. The wait ends
 *      when the request's signal aborts (the client left, `total_ms` ran out): the request
 *      fails then (undici's own handler would notice only once a connection came free,
 *      minutes later behind a long stream), lets go of its body, and is skipped when its turn
 *      comes: never written, the connection goes to the next one. Given a connection, it is
 *      `after_wait`, and `first_byte_ms` (undici's `headersTimeout`) runs from then;
 *   3. `onConnect` (undici writes it to the socket, client-h1 `writeH1`) notes `sent` on the
 *      request, and the attempt lets go of the request (a stream's relay holds this handler
 *      as long as the stream lasts, and must not hold the parsed request body with it).
 * One per attempt. A request with a free connection costs this object and one call per
 * handler event; the abort listener is only for one that waits.
 */
class PooledAttempt implements Dispatcher.DispatchHandler {
  /** undici's handler for the request and the request's options, set by `AttemptPool.dispatch`. */
  handler: Dispatcher.DispatchHandler | undefined;
  opts: Dispatcher.DispatchOptions | undefined;
  #state: 'dispatching' | 'waiting' | 'assigned' | 'given_up' = 'dispatching';
  #sentAs: 'at_once' | 'after_wait' = 'at_once';
  #req: UpstreamRequest | undefined;

  constructor(req: UpstreamRequest) {
    this.#req = req;
  }

  /** `dispatch` returned: a request still without a connection waits in the pool's queue. */
  dispatched(): void {
    if (this.#state !== 'dispatching' || this.#req === undefined) return;
    this.#state = 'waiting';
    this.#req.signal.addEventListener('abort', this);
    if (this.#req.signal.aborted) this.handleEvent(); // aborted before: no event to come
  }

  /** A connection takes the request. False when it was given up on: the pool then gives the connection to the next request. */
  assign(): boolean {
    if (this.#state === 'given_up') return false;
    if (this.#state === 'waiting') {
      this.#req?.signal.removeEventListener('abort', this);
      this.#sentAs = 'after_wait';
    }
    this.#state = 'assigned';
    return true;
  }

  /** The request's signal aborted while it waited: it fails with the reason, as undici fails it, and lets go of its body. */
  handleEvent(): void {
    if (this.#state !== 'waiting' || this.#req === undefined) return;
    const req = this.#req;
    req.signal.removeEventListener('abort', this);
    this.#state = 'given_up';
    const handler = this.handler;
    // The pool's queue keeps `{opts, handler}` until a connection frees: nothing large stays with them.
    this.handler = undefined;
    this.#req = undefined;
    if (this.opts) this.opts.body = null;
    handler?.onError!(req.signal.reason ?? new undiciErrors.RequestAbortedError());
  }

  onConnect(abort: (err?: Error) => void, context?: object): void {
    if (this.#req) this.#req.sent = this.#sentAs;
    this.#req = undefined;
    (this.handler!.onConnect as (abort: (err?: Error) => void, context?: object) => void)(abort, context);
  }

  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    return this.handler!.onHeaders!(statusCode, headers, resume, statusText);
  }

  onData(chunk: Buffer): boolean {
    return this.handler!.onData!(chunk);
  }

  onComplete(trailers: string[] | null): void {
    this.handler!.onComplete!(trailers);
  }

  onError(err: Error): void {
    if (this.#state === 'given_up') return; // failed already, when it was given up
    if (this.#state === 'waiting') this.#req?.signal.removeEventListener('abort', this);
    this.#req = undefined;
    this.handler!.onError!(err);
  }
}

/** An upstream's pool: puts the attempt's `PooledAttempt` (its `opaque`) in front of undici's handler. */
class AttemptPool extends Pool {
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const attempt = (opts as Dispatcher.RequestOptions<unknown>).opaque;
    if (!(attempt instanceof PooledAttempt)) return super.dispatch(opts, handler);
    attempt.handler = handler;
    attempt.opts = opts;
    const more = super.dispatch(opts, attempt);
    attempt.dispatched();
    return more;
  }
}

/** One connection of an `AttemptPool` (its `factory`): tells an attempt it has a connection, skips one given up on. */
class AttemptClient extends Client {
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (handler instanceof PooledAttempt && !handler.assign()) return true; // this connection is still free
    return super.dispatch(opts, handler);
  }
}

function attemptClient(origin: URL, opts: object): Dispatcher {
  return new AttemptClient(origin, opts);
}

export class HttpUpstream implements Upstream {
  readonly spec: CompiledUpstream;
  readonly #pool: Pool;

  constructor(spec: CompiledUpstream) {
    this.spec = spec;
    const t = spec.config.timeout;
    this.#pool = new AttemptPool(spec.origin, {
      factory: attemptClient,
      connections: spec.config.connections,
      pipelining: 1,
      connect: { timeout: t.connect_ms },
      headersTimeout: t.first_byte_ms,
      bodyTimeout: t.idle_ms,
      keepAliveTimeout: 30_000,
    });
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const res = await this.#pool.request({
      method: req.method as 'POST',
      path: upstreamPath(this.spec, req.path),
      headers: req.headers,
      body: req.body ?? undefined,
      signal: req.signal,
      opaque: new PooledAttempt(req),
    });
    const body = res.body;
    return {
      status: res.statusCode,
      headers: res.headers,
      body,
      dump: async () => {
        await body.dump().catch(() => undefined);
      },
    };
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

export class SimulatedUpstream implements Upstream {
  readonly spec: CompiledUpstream;

  constructor(spec: CompiledUpstream) {
    this.spec = spec;
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    req.sent = 'at_once'; // in process: no connection to wait for
    let json = req.json;
    if (json === undefined && req.body instanceof Uint8Array && req.body.byteLength > 0) {
      try {
        json = JSON.parse(Buffer.from(req.body).toString('utf8'));
      } catch {
        json = null;
      }
    }
    const res = await simulate(this.spec.config.simulate!, { method: req.method, path: req.path, body: json ?? null, signal: req.signal });
    return { status: res.status, headers: res.headers, body: res.body, dump: async () => undefined };
  }

  async close(): Promise<void> {}
}

export function createUpstream(spec: CompiledUpstream): Upstream {
  return spec.kind === 'simulate' ? new SimulatedUpstream(spec) : new HttpUpstream(spec);
}
