/**
 * Reads a request body with a size limit. On Node it reads straight from the
 * `IncomingMessage` (`c.env.incoming`): going through the Web `Request` stream costs
 * more than half the throughput of a small proxy. Without a Node request (tests calling
 * `app.request()`), it falls back to the Web API.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { ClientGoneError, GatewayError } from '../errors.js';

/**
 * The request body, at most `limit` bytes (413 `body_too_large` above). Throws
 * `ClientGoneError` when the client disconnects before the body is complete.
 */
export async function readBody(incoming: IncomingMessage | undefined, webRequest: Request, limit: number): Promise<Buffer> {
  if (incoming) refuseTransferCodings(incoming);
  const declared = Number(incoming ? incoming.headers['content-length'] : webRequest.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  if (!incoming) {
    const buf = Buffer.from(await webRequest.arrayBuffer());
    if (buf.byteLength > limit) throw tooLarge(limit);
    return buf;
  }
  const read = await readUpTo(incoming, limit);
  if (read.overflow) {
    incoming.resume(); // discard the rest; the 413 goes out once the error is rendered
    throw tooLarge(limit);
  }
  return read.body;
}

/**
 * A pass-through request body: whole when it fits in `limit` (a retry or the next upstream
 * can send it again), else streamed to the upstream as it arrives: what was read, then the
 * rest (the upstream enforces its own limits: OpenAI takes 512 MB files). A streamed body
 * can be sent only once. Without a Node request (`app.request()`) it is read whole, up to
 * `limit`.
 */
export async function readPassThroughBody(incoming: IncomingMessage | undefined, webRequest: Request, limit: number): Promise<PassThroughBody> {
  if (!incoming) return { bytes: await readBody(incoming, webRequest, limit) };
  refuseTransferCodings(incoming);
  const declared = Number(incoming.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return { stream: rest([], incoming) };
  const read = await readUpTo(incoming, limit);
  if (!read.overflow) return { bytes: read.body };
  return { stream: rest(read.chunks, incoming) };
}

/**
 * What was read, then the rest of `incoming`, as one stream for the upstream call. The
 * upstream client destroys it when it stops sending (the upstream answered before the
 * upload was complete, a timeout): that must not destroy `incoming` too, which leaves the
 * kept-alive connection stalled (its next request never read). Left alone, the unread rest
 * is discarded after the answer (@hono/node-server drains it, or closes the connection).
 */
function rest(head: Buffer[], incoming: IncomingMessage): Readable {
  return Readable.from(
    (async function* () {
      yield* head;
      yield* incoming.iterator({ destroyOnReturn: false });
    })(),
    { objectMode: false },
  );
}

/**
 * RFC 9112 §6.1: 501 for a request body in a transfer coding other than `chunked` (Node
 * takes `gzip, chunked` and removes only the chunking): its bytes would go on, and be read,
 * as the body itself.
 */
function refuseTransferCodings(incoming: IncomingMessage): void {
  const codings = incoming.headers['transfer-encoding'];
  if (codings === undefined) return;
  if (codings.split(',').every((t) => t.trim().toLowerCase() === 'chunked')) return;
  throw new GatewayError('not_implemented', 'Transfer codings other than chunked are not supported in requests.');
}

/** A pass-through body: read whole (`bytes`), or to be streamed once (`stream`). */
export type PassThroughBody = { bytes: Buffer; stream?: undefined } | { bytes?: undefined; stream: Readable };

type ReadResult = { overflow: false; body: Buffer } | { overflow: true; chunks: Buffer[] };

/**
 * Reads `incoming` to its end, or until more than `limit` bytes came: then it stops
 * listening, pauses the request and returns what it read (the rest is the caller's).
 */
function readUpTo(incoming: IncomingMessage, limit: number): Promise<ReadResult> {
  if (incoming.destroyed && !incoming.complete) return Promise.reject(new ClientGoneError()); // left before we listened: no event will come
  return new Promise<ReadResult>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      chunks.push(chunk);
      if (size > limit) {
        cleanup();
        incoming.pause();
        resolve({ overflow: true, chunks });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ overflow: false, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) });
    };
    // A client that leaves mid-body is a client abort (499, like any other disconnect), not
    // a bad request: Node reports it as `aborted` and then an ECONNRESET `error`.
    const onError = (err: NodeJS.ErrnoException) => {
      cleanup();
      reject(incoming.aborted || err.code === 'ECONNRESET' ? new ClientGoneError() : new GatewayError('invalid_request', 'The request body could not be read.'));
    };
    const onAborted = () => {
      cleanup();
      reject(new ClientGoneError());
    };
    const cleanup = () => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('aborted', onAborted);
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('aborted', onAborted);
  });
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('body_too_large', `Request body exceeds the limit of ${limit} bytes.`);
}
