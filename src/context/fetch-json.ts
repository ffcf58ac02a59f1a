/**
 * One JSON call to a service of the user's own (http builders, knowledge search) through
 * undici. Failures become a `ContextSourceError` whose `reason` is a bounded label value
 * (metrics `promptgate_context_failures_total{reason}`); messages never carry the URL's
 * query or the response body.
 */
import { request, type Dispatcher } from 'undici';
import { decodeContent } from '../proxy/content-coding.js';

/** Why a source failed: `timeout`, `unreachable`, `http_3xx` (redirects are not followed), `http_4xx`, `http_5xx`, `invalid_response`, `too_large`. */
export class ContextSourceError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ContextSourceError';
    this.reason = reason;
  }
}

/**
 * A source failed, but the builder still has an answer from its other sources (a knowledge
 * builder whose search endpoint failed serves its local index). Thrown rather than returned
 * so that a cache treats it as the failure it is: not stored (the next request asks again),
 * counted in `promptgate_context_source_errors_total`, and covered by a `stale_if_error`
 * entry; without such an entry the request gets `partial`.
 */
export class PartialAnswer<T> extends ContextSourceError {
  readonly partial: T;
  constructor(partial: T, cause: unknown) {
    const reason = cause instanceof ContextSourceError ? cause.reason : 'error';
    super(reason, 'a source failed; the answer is partial', { cause });
    this.name = 'PartialAnswer';
    this.partial = partial;
  }
}

export interface FetchJsonOptions {
  url: string;
  method: 'GET' | 'POST';
  headers: Readonly<Record<string, string>>;
  body?: unknown;
  signal: AbortSignal;
  maxBytes: number;
  /** The runtime's Agent (connection reuse); undici's global one when absent. */
  dispatcher?: Dispatcher;
}

/** GET/POST `url` and parse the JSON answer; throws `ContextSourceError`. */
export async function fetchJson(o: FetchJsonOptions): Promise<unknown> {
  const headers: Record<string, string> = { accept: 'application/json', ...o.headers };
  let payload: string | undefined;
  if (o.method === 'POST') {
    payload = JSON.stringify(o.body ?? {});
    headers['content-type'] = 'application/json';
  }
  let res: Dispatcher.ResponseData;
  try {
    res = await request(o.url, { method: o.method, headers, body: payload, signal: o.signal, dispatcher: o.dispatcher });
  } catch (err) {
    if (o.signal.aborted) throw new ContextSourceError('timeout', 'the source did not answer in time', { cause: err });
    throw new ContextSourceError('unreachable', `the source is unreachable (${(err as { code?: string }).code ?? 'error'})`, { cause: err });
  }
  if (res.statusCode < 200 || res.statusCode >= 300) {
    // Read the (small) error body away so the connection can be reused.
    await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    const reason = res.statusCode >= 500 ? 'http_5xx' : res.statusCode >= 400 ? 'http_4xx' : res.statusCode >= 300 ? 'http_3xx' : 'invalid_response';
    throw new ContextSourceError(reason, `the source answered ${res.statusCode}`);
  }
  // A service may compress though nobody asked (no accept-encoding is sent): gzip, deflate
  // and br are decoded; `maxBytes` bounds the decoded answer (a small bomb stops there).
  const { response: decoded, opaque } = decodeContent({ status: res.statusCode, headers: res.headers, body: res.body, dump: () => res.body.dump() });
  if (opaque) {
    await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    throw new ContextSourceError('invalid_response', `the answer is in a content coding the gateway cannot decode (${String(res.headers['content-encoding']).slice(0, 40)})`);
  }
  const coded = decoded.body !== res.body;
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of decoded.body) {
      size += (chunk as Buffer).length;
      if (size > o.maxBytes) throw new ContextSourceError('too_large', `the answer exceeds ${o.maxBytes} bytes`);
      chunks.push(chunk as Buffer);
    }
    try {
      // RFC 8259 §8.1: a parser may ignore a byte order mark; some services send one.
      const text = decodeText(Buffer.concat(chunks), res.headers['content-type']);
      return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    } catch (err) {
      throw new ContextSourceError('invalid_response', 'the answer is not JSON', { cause: err });
    }
  } catch (err) {
    res.body.on('error', () => undefined); // destroy() without a reason emits an AbortError
    res.body.destroy();
    if (coded) (decoded.body as unknown as { destroy?: () => void }).destroy?.();
    if (err instanceof ContextSourceError) throw err;
    if (o.signal.aborted) throw new ContextSourceError('timeout', 'the source did not answer in time', { cause: err });
    // zlib's errors (Z_DATA_ERROR, ...) are the answer's; undici's (UND_ERR_*) the connection's.
    const code = (err as { code?: unknown }).code;
    if (coded && !(typeof code === 'string' && code.startsWith('UND_ERR'))) {
      throw new ContextSourceError('invalid_response', 'the compressed answer could not be decoded', { cause: err });
    }
    throw new ContextSourceError('unreachable', 'the answer was cut off', { cause: err });
  }
}

/**
 * The answer as text. RFC 8259 §8.1 asks for UTF-8, but older services label JSON with
 * another charset (`application/json; charset=iso-8859-1`): read as UTF-8, every "ë" in a
 * customer's name became U+FFFD. A charset the runtime does not know is `invalid_response`.
 */
function decodeText(bytes: Buffer, contentType: string | string[] | undefined): string {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(String(contentType ?? ''))?.[1].toLowerCase();
  if (charset === undefined || charset === 'utf-8' || charset === 'utf8') return bytes.toString('utf8');
  return new TextDecoder(charset, { ignoreBOM: true }).decode(bytes);
}
