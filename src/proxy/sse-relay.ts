/**
 * The streaming relay: passes an upstream `text/event-stream` to the client event by event,
 * as each arrives, with backpressure, and ends it with an OpenAI-shaped error event when the
 * upstream fails mid-stream. What each event holds is read on the side by `SseScanner`
 * (sse-scanner.ts), which also drops the usage chunk the client did not ask for; partial
 * events are held, bounded, by sse-framing.ts.
 */
import type { ServerResponse } from 'node:http';
import { maskedBytes } from './headers.js';
import { MAX_EVENT_BYTES, SseEventTooLargeError } from './sse-framing.js';
import { SseScanner, type StreamSummary } from './sse-scanner.js';
import { classifyTransportError } from './upstream.js';

export type StreamEnd =
  | { outcome: 'ok' }
  | { outcome: 'client_abort' }
  | { outcome: 'error'; errorType: string };

export interface RelayOptions {
  /** Drop the usage-only chunk (the gateway asked for it, the client did not). */
  stripUsageChunk: boolean;
  /** Keep the stream's whole text for the span (content capture), not only a sample for an estimate. */
  keepText?: boolean;
  /** Called exactly once, when the stream is over for any reason. */
  onEnd: (summary: StreamSummary, end: StreamEnd) => void;
  /** Aborts the upstream request (client left). */
  abortUpstream: () => void;
  /** True once the client has gone (its close may be seen before the stream's cancel). */
  clientGone: () => boolean;
  /** True once the exchange's total timeout has aborted the upstream request. */
  timedOut?: () => boolean;
  /** True once the gateway aborted the upstream request at the end of its drain. */
  shuttingDown?: () => boolean;
  /**
   * The exchange's signal (total timeout, shutdown): a wait for a client that stopped
   * reading ends when it aborts, so the stream still ends and is accounted.
   */
  signal?: AbortSignal;
  /**
   * The upstream's credentials (config `UpstreamSecrets.bytes`), masked from its first error
   * event on: an error event may quote the request's Authorization. The model's output
   * before it never saw the key and is relayed without the extra pass.
   */
  secrets?: readonly Buffer[];
}

const encoder = new TextEncoder();

/** The SSE event a client gets when the upstream fails mid-stream (openai-node raises it). */
export function errorEvent(message: string, code: string, type = 'server_error'): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify({ error: { message, type, param: null, code } })}\n\n`);
}

/** `out` masked (headers.ts `maskedBytes`) once the upstream has sent an error event; else as it is. */
function maskedAfterError(out: Uint8Array, scanner: SseScanner, secrets: readonly Buffer[] | undefined): Uint8Array {
  if (secrets === undefined || secrets.length === 0 || scanner.summary.upstreamError === undefined || out.length === 0) return out;
  return maskedBytes(out, secrets);
}

/**
 * How a stream that is over ended: with the upstream's own error event, or ok. Also for an
 * upstream read that fails after `[DONE]` (an upstream that resets or stalls instead of
 * ending its body): the answer, usage included, is whole, and an error event after `[DONE]`
 * would make a whole answer an error for clients that read on (the AI SDK: finish reason
 * `error`), so the client's stream ends as a complete one.
 */
function completed(summary: StreamSummary): StreamEnd {
  return summary.upstreamError ? { outcome: 'error', errorType: 'upstream_stream_error' } : { outcome: 'ok' };
}

/**
 * How a stream ends whose client left: a client abort, unless the client had the whole
 * answer (its `[DONE]`). openai-python stops reading at `[DONE]` and closes the response,
 * the connection with it when the upstream has not ended its body yet (a proxy, a CDN, a
 * server slow to close): that client got everything, and the request is not an abort.
 */
function clientLeft(summary: StreamSummary): StreamEnd {
  return summary.sawDone ? completed(summary) : { outcome: 'client_abort' };
}

/** The error event and error type for an upstream read that failed with the client still there. */
function streamFailure(err: unknown, options: RelayOptions): { event: Uint8Array; errorType: string } {
  if (options.shuttingDown?.()) {
    // The code of the 503 a draining gateway gives new requests.
    return { event: errorEvent('The gateway is shutting down.', 'shutting_down'), errorType: 'shutdown' };
  }
  if (err instanceof SseEventTooLargeError) {
    return { event: errorEvent(`The upstream sent an event larger than ${err.limit} bytes.`, 'upstream_error'), errorType: 'upstream_event_too_large' };
  }
  if (classifyTransportError(err) === 'idle_timeout') {
    return { event: errorEvent('The upstream stopped sending data (idle timeout).', 'upstream_timeout', 'timeout_error'), errorType: 'idle_timeout' };
  }
  if (options.timedOut?.()) {
    // The same code and error type as a non-stream request cut by the total timeout.
    return { event: errorEvent('The upstream did not finish within the total timeout.', 'upstream_timeout', 'timeout_error'), errorType: 'upstream_timeout' };
  }
  return { event: errorEvent('The upstream connection failed during the stream.', 'upstream_error'), errorType: 'upstream_stream_error' };
}

/**
 * How a stream ends whose upstream read failed: the client had left (nothing more goes to
 * it), the answer was whole (`[DONE]` seen, see `completed`: the stream just ends), or an
 * error event goes last.
 */
function afterReadError(err: unknown, summary: StreamSummary, gone: boolean, options: RelayOptions): { end: StreamEnd; last?: Uint8Array } {
  if (gone) return { end: clientLeft(summary) };
  if (summary.sawDone) return { end: completed(summary) };
  const failure = streamFailure(err, options);
  return { end: { outcome: 'error', errorType: failure.errorType }, last: failure.event };
}

/**
 * Builds the client's stream from the upstream body. Pull-based: one upstream chunk is read
 * per client read, so a slow client slows the upstream read (backpressure) instead of
 * buffering in the gateway.
 */
export function relaySse(source: AsyncIterable<Uint8Array>, options: RelayOptions): ReadableStream<Uint8Array> {
  const scanner = new SseScanner(options.stripUsageChunk, MAX_EVENT_BYTES, options.keepText);
  const iterator = source[Symbol.asyncIterator]();
  let ended = false;
  const end = (result: StreamEnd) => {
    if (ended) return;
    ended = true;
    options.onEnd(scanner.summary, result);
  };

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const { value, done } = await iterator.next();
            if (done) {
              const rest = maskedAfterError(scanner.flush(), scanner, options.secrets);
              if (rest.length) controller.enqueue(rest);
              scanner.sent();
              controller.close();
              end(completed(scanner.summary));
              return;
            }
            const out = maskedAfterError(scanner.push(value), scanner, options.secrets);
            if (out.length === 0) continue; // a partial event: read more before yielding
            controller.enqueue(out);
            scanner.sent();
            return;
          }
        } catch (err) {
          if (ended) return;
          // Gone: the upstream read failed because the client's leaving aborted it.
          const gone = options.clientGone();
          const { end: how, last } = afterReadError(err, scanner.summary, gone, options);
          if (gone) {
            end(how);
            controller.error(err);
            return;
          }
          if (last) controller.enqueue(last);
          controller.close();
          end(how);
          // Stop reading a body that may still be open (an oversized event, a failure after `[DONE]`).
          void iterator.return?.().catch(() => undefined);
        }
      },
      cancel() {
        end(clientLeft(scanner.summary));
        options.abortUpstream();
        void iterator.return?.().catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The same relay written straight to the Node response (the served path): no Web stream
 * per request, and the headers leave with the first event in one write when it came with
 * them (else on their own, see `sendHeadersIfNoEvent`). Backpressure: the next upstream
 * chunk is read only after the socket took the last one (`drain`).
 */
export function writeSse(
  source: AsyncIterable<Uint8Array>,
  out: ServerResponse,
  head: { status: number; headers: Record<string, string | string[]> },
  options: RelayOptions,
): void {
  const scanner = new SseScanner(options.stripUsageChunk, MAX_EVENT_BYTES, options.keepText);
  out.writeHead(head.status, head.headers);
  let wrote = false;
  sendHeadersIfNoEvent(out, () => wrote);
  void (async () => {
    try {
      for await (const chunk of source) {
        const bytes = maskedAfterError(scanner.push(chunk), scanner, options.secrets);
        if (bytes.length === 0) continue;
        wrote = true;
        const more = out.write(bytes);
        scanner.sent();
        if (!more) await drained(out, options.signal);
        if (out.destroyed) break;
      }
      if (options.clientGone() || out.destroyed) {
        options.onEnd(scanner.summary, clientLeft(scanner.summary));
        return;
      }
      const rest = maskedAfterError(scanner.flush(), scanner, options.secrets);
      out.end(rest.length ? rest : undefined);
      scanner.sent();
      options.onEnd(scanner.summary, completed(scanner.summary));
    } catch (err) {
      const gone = options.clientGone() || out.destroyed;
      const { end: how, last } = afterReadError(err, scanner.summary, gone, options);
      if (!gone) out.end(last);
      options.onEnd(scanner.summary, how);
    }
  })();
}

/**
 * Sends the response head on its own when the upstream's first event did not come with its
 * headers (it was not read by the next turn of the event loop). The upstream has answered:
 * its client would have the status and headers now, and openai-node's `timeout` runs only
 * until the headers arrive, so a model slow to its first event (reasoning, a long prompt)
 * must not time the client out (and make it retry) through the gateway when it would not
 * directly. An event read in time leaves with the head in one write (@hono/node-server
 * treats a streamed `Response` the same way).
 */
function sendHeadersIfNoEvent(out: ServerResponse, wrote: () => boolean): void {
  setImmediate(() => {
    // Not `headersSent`: it is true from `writeHead` on, while the head waits for a write.
    if (!wrote() && !out.writableEnded && !out.destroyed) out.flushHeaders();
  });
}

/**
 * Resolves when `out` can take more, is closed, or `signal` aborts (at once if either
 * already happened: no event would come). Without the signal, a client that never reads
 * would keep the stream, and its accounting, open past the total timeout.
 */
function drained(out: ServerResponse, signal?: AbortSignal): Promise<void> {
  if (out.destroyed || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    out.once('drain', done);
    out.once('close', done);
    signal?.addEventListener('abort', done, { once: true });
  });
}
