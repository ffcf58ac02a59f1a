/**
 * Reads a request body with a size limit. On Node it reads straight from the
 * `IncomingMessage` (`c.env.incoming`): going through the Web `Request` stream costs
 * more than half the throughput of a small proxy. Without a Node request (tests calling
 * `app.request()`), it falls back to the Web API.
 */
import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors.js';
import { ClientGoneError } from './forward.js';

/**
 * The request body, at most `limit` bytes (413 `body_too_large` above). Throws
 * `ClientGoneError` when the client disconnects before the body is complete.
 */
export async function readBody(incoming: IncomingMessage | undefined, webRequest: Request, limit: number): Promise<Buffer> {
  const declared = Number(incoming ? incoming.headers['content-length'] : webRequest.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  if (!incoming) {
    const buf = Buffer.from(await webRequest.arrayBuffer());
    if (buf.byteLength > limit) throw tooLarge(limit);
    return buf;
  }
  if (incoming.destroyed && !incoming.complete) throw new ClientGoneError(); // left before we listened: no event will come
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limit) {
        cleanup();
        incoming.resume(); // discard the rest; the 413 goes out once the error is rendered
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
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
