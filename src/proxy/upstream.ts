/**
 * Upstream clients. An `Upstream` sends one request and returns the status, headers and a
 * body to iterate; it knows nothing of retries or breakers (see `forward.ts`).
 *
 * - `HttpUpstream`: one undici `Pool` per upstream (keep-alive), timeouts from config:
 *   connect (`connect.timeout`), first byte (`headersTimeout`), idle between body chunks
 *   (`bodyTimeout`); the total deadline is the caller's AbortSignal.
 * - `SimulatedUpstream`: the in-process simulator (the embedded default).
 */
import type { Readable } from 'node:stream';
import { Pool, errors as undiciErrors } from 'undici';
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

export class HttpUpstream implements Upstream {
  readonly spec: CompiledUpstream;
  readonly #pool: Pool;

  constructor(spec: CompiledUpstream) {
    this.spec = spec;
    const t = spec.config.timeout;
    this.#pool = new Pool(spec.origin, {
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
