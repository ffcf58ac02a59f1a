/**
 * An upstream answer's body read whole once it was forwarded (the chat route's non-stream
 * answers, a pass-through answer read for its cost header), and the error to throw when
 * that read fails: nothing has gone to the client yet, so the client still gets an answer.
 */
import { ClientGoneError, GatewayError, shuttingDownError } from '../errors.js';

/**
 * An answer's body read whole, at most `maxBytes`: 502 `upstream_error` past it (the read
 * stops there, which closes the upstream body). A transport error is thrown as it came.
 */
export async function readWholeBody(body: AsyncIterable<Uint8Array>, maxBytes: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new GatewayError('upstream_error', `The upstream response is larger than ${maxBytes} bytes.`);
    chunks.push(chunk);
  }
  return chunks.length === 1 ? Buffer.from(chunks[0].buffer, chunks[0].byteOffset, chunks[0].byteLength) : Buffer.concat(chunks);
}

/**
 * The error for an answer's body that failed while the gateway read it after forwarding
 * (nothing has gone to the client): the client left, the shutdown, the total timeout, or
 * 502 `upstream_error` (cut off, or a coding that does not decode).
 */
export function bodyReadError(exchange: { readonly clientGone: boolean; readonly shuttingDown: boolean; readonly signal: AbortSignal }): Error {
  if (exchange.clientGone) return new ClientGoneError();
  if (exchange.shuttingDown) return shuttingDownError();
  return new GatewayError(exchange.signal.aborted ? 'upstream_timeout' : 'upstream_error', 'The upstream response was cut off or could not be decoded.');
}
