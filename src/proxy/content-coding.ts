/**
 * Response content codings (RFC 9110 §8.4). The gateway asks upstreams for
 * `accept-encoding: identity`, but an upstream may compress anyway. Where the gateway reads
 * a body (chat completions: usage, finish reason; the SSE relay: events), it decodes the
 * codings Node can decode and hands the client the decoded content without
 * `content-encoding`; a coding it cannot decode is left alone, header and bytes, so the
 * client never gets bytes labelled as something they are not.
 */
import { Duplex, pipeline, Readable, type Transform } from 'node:stream';
import { constants, createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import type { UpstreamResponse } from './upstream.js';

// Like undici's fetch: flush what each chunk decodes (streams go on event by event), and
// let a body cut at a flush point end cleanly; a cut that breaks the data is an error.
const ZLIB = { flush: constants.Z_SYNC_FLUSH, finishFlush: constants.Z_SYNC_FLUSH };
const BROTLI = { flush: constants.BROTLI_OPERATION_FLUSH, finishFlush: constants.BROTLI_OPERATION_FLUSH };

// RFC 9110 §8.4.1: gzip (x-gzip is its old alias), deflate (the zlib format, or raw: see
// `inflateZlibOrRaw`), and br (RFC 7932).
const DECODERS: Record<string, () => Transform | Duplex> = {
  gzip: () => createGunzip(ZLIB),
  'x-gzip': () => createGunzip(ZLIB),
  deflate: () => inflateZlibOrRaw(),
  br: () => createBrotliDecompress(BROTLI),
};

/**
 * `deflate` as clients decode it: the zlib format RFC 9110 names, or the raw deflate some
 * servers send under that name. Browsers and undici's fetch (so openai-node) accept both,
 * so a client reading such an upstream directly must not get an error through the gateway.
 * Told apart by the first byte, as undici does: a zlib header's compression method is 8
 * (RFC 1950 §2.2). One per response. Pull-based like the other decoders (a generator), so
 * a small coded chunk that inflates to megabytes is decoded as the reader takes it, not
 * buffered whole.
 */
function inflateZlibOrRaw(): Duplex {
  return Duplex.from(async function* inflate(coded: AsyncIterable<Buffer>) {
    const chunks = coded[Symbol.asyncIterator]();
    let first = await chunks.next();
    while (!first.done && first.value.length === 0) first = await chunks.next();
    if (first.done) return;
    const head: Buffer = first.value;
    const decoder = (head[0] & 0x0f) === 0x08 ? createInflate(ZLIB) : createInflateRaw(ZLIB);
    const rest = { [Symbol.asyncIterator]: () => chunks };
    pipeline(
      Readable.from(
        (async function* () {
          yield head;
          yield* rest;
        })(),
        { objectMode: false },
      ),
      decoder,
      () => undefined, // an error reaches the loop below: pipeline destroys `decoder` with it
    );
    for await (const decoded of decoder) yield decoded as Buffer;
  });
}

/** What `decodeContent` made of a response. */
export interface DecodedResponse {
  /** The response to read and relay: decoded when it was coded in known codings. */
  response: UpstreamResponse;
  /** True when a coding could not be decoded: bytes and `content-encoding` are the upstream's. */
  opaque: boolean;
}

/**
 * Decodes a response body coded in gzip, deflate and/or br (in the order listed in
 * `content-encoding`, RFC 9110 §8.4), as a stream: chunks come out as they are decoded.
 * The returned response has no `content-encoding`. An identity response is returned as it
 * is; one in an unknown coding too, marked `opaque`. Decoding errors (and the upstream
 * body's own, such as an idle timeout) surface while the body is read.
 */
export function decodeContent(response: UpstreamResponse): DecodedResponse {
  const header = response.headers['content-encoding'];
  if (header === undefined) return { response, opaque: false };
  const codings = contentCodings(header);
  if (codings.some((c) => !Object.hasOwn(DECODERS, c))) return { response, opaque: true };
  const { 'content-encoding': _coded, ...headers } = response.headers;
  if (codings.length === 0) return { response: { ...response, headers }, opaque: false };
  // Applied in the listed order, so undone in reverse. pipeline() destroys every stage with
  // the first error, so the reader sees the upstream's own error (timeouts stay timeouts).
  const stages = codings.reverse().map((c) => DECODERS[c]());
  const body = pipeline([Readable.from(response.body, { objectMode: false }), ...stages], () => undefined) as unknown as Readable;
  return { response: { ...response, headers, body }, opaque: false };
}

/** The codings a `content-encoding` lists (RFC 9110 §8.4), lower-case, in order, without `identity`. */
export function contentCodings(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  return (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
}
