/**
 * The streaming relay: passes an upstream `text/event-stream` to the client event by event,
 * as each arrives, bytes unchanged, while an incremental scanner reads `id`, `model`,
 * `finish_reason` and `usage` on the side.
 *
 * The one change it may make: when the gateway added `stream_options.include_usage` for its
 * own accounting (the client did not ask), the usage-only chunk (`choices: []` + `usage`)
 * is read and then dropped (a `usage` on a chunk with choices is removed from it, and the
 * `"usage":null` OpenAI then adds to every chunk too), so the client sees exactly the
 * stream it asked for.
 *
 * Only complete events (ended by a blank line, per the WHATWG SSE spec) are forwarded; a
 * partial event waits for its end, so a dropped event can never be half-sent. A partial
 * event is held up to `MAX_EVENT_BYTES`: an upstream that sends more without a blank line
 * (one endless line) ends the stream with an error event instead of filling memory.
 */
import type { ServerResponse } from 'node:http';
import { dataOf, EventFramer, MAX_EVENT_BYTES, SseEventTooLargeError, splitEvents } from './sse-framing.js';
import { StreamText } from './stream-text.js';
import { classifyTransportError } from './upstream.js';

export { lastBoundary, SseEventTooLargeError } from './sse-framing.js';

export interface StreamSummary {
  id?: string;
  model?: string;
  finishReasons: string[];
  /** The raw `usage` object of the stream, when one was sent. */
  usage?: unknown;
  /** `service_tier` of the chunks (the tier that served the request sets its prices). */
  serviceTier?: string;
  /** The chunks' text, kept only to estimate tokens when usage is missing (and for content capture). */
  text: StreamText;
  sawDone: boolean;
  /**
   * ms (performance.now()) when the first chunk (an event with data) went to the client: the
   * time to first chunk. Not a comment or field-only event: an upstream may send those at
   * once while the model thinks (`: keep-alive`, OpenRouter's `: OPENROUTER PROCESSING`).
   */
  firstEventAt?: number;
  /** An error event the upstream itself sent mid-stream. */
  upstreamError?: unknown;
}

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
}

const encoder = new TextEncoder();
// RFC 8259 §2: whitespace may surround the name separator (Python's json.dumps writes `": `).
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
const FINISH_REASON = /"finish_reason"\s*:\s*"/;
// JSON whitespace inside an event: spaces and tabs, and line ends between `data:` lines (a
// multi-line `data` is joined by LF; the next line's `data:` prefix goes with its line end; the
// space after it is a `[ \t]`: an optional one there too made the match time exponential).
const WS = String.raw`(?:[ \t]|(?:\r\n|\r|\n)data:)*`;
const SPACED_USAGE_NULL = new RegExp(`,${WS}"usage"${WS}:${WS}null(?=${WS}[,}])|"usage"${WS}:${WS}null${WS},${WS}`);

/** Reads what the gateway needs from complete events; returns the bytes to forward. */
export class SseScanner {
  readonly summary: StreamSummary;
  readonly #framer: EventFramer;
  /** The last events sent ended with a CR (an LF may follow in the next chunk). */
  #endedWithCR = false;
  /** The last event was the dropped usage chunk. */
  #droppedLast = false;
  /** An event with data (a chunk, an error) was among those returned so far. */
  #returnedData = false;
  /** Each choice's finish reason, by choice index (made at the first: an open stream has none yet). */
  #finishByChoice: Map<number, string> | undefined;
  /** The stream sent a top-level `usage` (preferred over Groq's `x_groq.usage`). */
  #topLevelUsage = false;

  /** @param keepText keep the stream's whole text (content capture), not a sample of a long one (stream-text.ts). */
  constructor(
    private readonly stripUsageChunk: boolean,
    maxEventBytes = MAX_EVENT_BYTES,
    keepText = false,
  ) {
    this.#framer = new EventFramer(maxEventBytes);
    this.summary = { finishReasons: [], text: new StreamText(keepText), sawDone: false };
  }

  /**
   * Feeds one upstream chunk; returns the bytes to send now (possibly empty). Throws
   * `SseEventTooLargeError` when the partial event passes `maxEventBytes`.
   */
  push(chunk: Uint8Array): Uint8Array {
    const complete = this.#framer.push(chunk);
    return complete ? this.#inspect(complete) : EMPTY;
  }

  /** Notes the time to first chunk when bytes just returned by `push` hold the first chunk. */
  sent(): void {
    if (this.#returnedData) this.summary.firstEventAt ??= performance.now();
  }

  /** Whatever is left when the upstream ends (an unterminated last event is passed on). */
  flush(): Uint8Array {
    const rest = this.#framer.flush();
    return rest ? this.#inspect(rest) : EMPTY;
  }

  #inspect(bytes: Uint8Array): Uint8Array {
    let text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
    let changed = false;
    // The last events ended with a CR at the end of a chunk: an LF here is its CR LF, and
    // goes (or not, when that event was dropped) with it.
    let head = '';
    if (this.#endedWithCR && text.charCodeAt(0) === 0x0a) {
      head = this.#droppedLast ? '' : '\n';
      changed = this.#droppedLast;
      text = text.slice(1);
    }
    this.#endedWithCR = text.charCodeAt(text.length - 1) === 0x0d;
    // Events and, at odd indexes, their line ends and blank line.
    const parts = splitEvents(text);
    let dropped = -1;
    for (let i = 0; i < parts.length; i += 2) {
      const event = parts[i];
      if (event === '') continue;
      const data = dataOf(event);
      if (data === undefined) {
        this.#noteErrorField(event);
        continue;
      }
      if (data === '[DONE]') {
        this.summary.sawDone = true;
        continue;
      }
      const read = this.#readEvent(data);
      if (read !== 'drop') this.#returnedData = true;
      if (read === 'drop') {
        parts[i] = '';
        parts[i + 1] = '';
        changed = true;
        dropped = i;
      } else if (read !== 'keep') {
        parts[i] = withData(event, read.data);
        changed = true;
      } else if (this.stripUsageChunk) {
        // With include_usage every chunk carries "usage":null; the client did not ask for it.
        const stripped = withoutUsageNull(event);
        if (stripped !== event) {
          parts[i] = stripped;
          changed = true;
        }
      }
    }
    this.#droppedLast = dropped === parts.length - 3;
    return changed ? Buffer.from(head + parts.join(''), 'utf8') : bytes;
  }

  /**
   * llama.cpp's server reports a failure mid-stream as an `error:` field, not as `data:`:
   * SSE clients (openai-node) ignore the field, as they do through the gateway, but the
   * request failed and is accounted so.
   */
  #noteErrorField(event: string): void {
    if (this.summary.sawDone || !event.includes('error:')) return;
    for (const line of event.split(/\r\n|\n|\r/)) {
      if (!line.startsWith('error:')) continue;
      let value: unknown;
      try {
        value = JSON.parse(line.slice(6));
      } catch {
        value = line.slice(6).trim();
      }
      const error = typeof value === 'object' && value !== null && 'error' in value ? (value as { error: unknown }).error : value;
      this.summary.upstreamError ??= error === '' || error === null ? 'error' : error;
    }
  }

  /** `drop` the event, `keep` it, or send `data` in its place. */
  #readEvent(data: string): 'keep' | 'drop' | { data: string } {
    const s = this.summary;
    const first = s.id === undefined;
    // Parse only events that carry something we need: the first (id, model), a finish
    // reason, usage, or an error. Content deltas are kept as text for estimation.
    const interesting = first || FINISH_REASON.test(data) || USAGE_OBJECT.test(data) || data.includes('"error"');
    if (!interesting) {
      this.summary.text.add(data);
      return 'keep';
    }
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(data);
    } catch {
      return 'keep';
    }
    // Azure OpenAI opens with a prompt filter chunk whose id and model are "": skip those.
    if (first && typeof obj.id === 'string' && obj.id !== '') s.id = obj.id;
    if (s.model === undefined && typeof obj.model === 'string' && obj.model !== '') s.model = obj.model;
    // An error after `[DONE]` failed nothing: clients stop reading there (openai-node skips
    // what follows, openai-python closes the response), with the whole answer.
    if (!s.sawDone) {
      if (obj.error !== undefined && obj.error !== null) s.upstreamError = obj.error;
      // vLLM (before 0.10) streams a failure as a bare error object: `{"object":"error","message":...}`.
      else if (obj.object === 'error') s.upstreamError = obj;
    }
    if (typeof obj.service_tier === 'string') s.serviceTier = obj.service_tier;
    const choices = Array.isArray(obj.choices) ? (obj.choices as Array<Record<string, unknown>>) : [];
    // One reason per choice: some upstreams repeat it on a later chunk (the usage chunk), or
    // send `"finish_reason": ""` on every chunk before it (not a reason).
    let finished = false;
    for (const c of choices) {
      if (typeof c.finish_reason !== 'string' || c.finish_reason === '') continue;
      (this.#finishByChoice ??= new Map()).set(typeof c.index === 'number' ? c.index : 0, c.finish_reason);
      finished = true;
    }
    if (finished) s.finishReasons = [...this.#finishByChoice!].sort((a, b) => a[0] - b[0]).map(([, reason]) => reason);
    this.summary.text.add(data);
    // Groq reports usage in `x_groq.usage` on its last chunk (the client gets it as sent); a
    // top-level usage, on this chunk or an earlier one, is the one that counts.
    const groqUsage = (obj.x_groq as { usage?: unknown } | null | undefined)?.usage;
    if (!this.#topLevelUsage && !(obj.usage && typeof obj.usage === 'object') && groqUsage && typeof groqUsage === 'object') s.usage = groqUsage;
    if (obj.usage && typeof obj.usage === 'object') {
      s.usage = obj.usage;
      this.#topLevelUsage = true;
      if (this.stripUsageChunk) {
        if (choices.length === 0) return 'drop';
        // An upstream that puts the usage on its last content chunk: the chunk stays, the
        // usage the client did not ask for goes (the one event rewritten, JSON semantics kept).
        const rest = { ...obj };
        delete rest.usage;
        try {
          return { data: JSON.stringify(rest) };
        } catch (err) {
          // JSON.parse takes any depth; JSON.stringify runs out of stack (a RangeError) on a
          // chunk nested some thousands deep. Dropping the usage is the gateway's own tidying:
          // the chunk goes as sent, one field more, rather than the stream cut as if failed.
          if (err instanceof RangeError) return 'keep';
          throw err;
        }
      }
    }
    return 'keep';
  }
}

const EMPTY = new Uint8Array(0);

/** `event` with `data` as its only `data:` line, where the first one was; other fields kept. */
function withData(event: string, data: string): string {
  const eol = /\r\n|\n|\r/.exec(event)?.[0];
  if (eol === undefined) return `data: ${data}`;
  const lines: string[] = [];
  let placed = false;
  for (const line of event.split(/\r\n|\n|\r/)) {
    if (!line.startsWith('data:')) lines.push(line);
    else if (!placed) {
      lines.push(`data: ${data}`);
      placed = true;
    }
  }
  return lines.join(eol);
}

/** Removes the top-level `"usage":null` field (inside a JSON string the quotes are escaped). */
function withoutUsageNull(event: string): string {
  let at = event.indexOf(',"usage":null');
  if (at !== -1) {
    const next = event.charCodeAt(at + 13);
    if (next === 0x2c /* , */ || next === 0x7d /* } */) return event.slice(0, at) + event.slice(at + 13);
  }
  at = event.indexOf('"usage":null,');
  if (at !== -1) return event.slice(0, at) + event.slice(at + 13);
  // RFC 8259 §2: whitespace may surround the separators (Python's json.dumps writes `"usage": null`).
  return event.includes('"usage"') ? event.replace(SPACED_USAGE_NULL, '') : event;
}

/** The SSE event a client gets when the upstream fails mid-stream (openai-node raises it). */
export function errorEvent(message: string, code: string, type = 'server_error'): Uint8Array {
  return encoder.encode(`data: ${JSON.stringify({ error: { message, type, param: null, code } })}\n\n`);
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
              const rest = scanner.flush();
              if (rest.length) controller.enqueue(rest);
              scanner.sent();
              controller.close();
              end(completed(scanner.summary));
              return;
            }
            const out = scanner.push(value);
            if (out.length === 0) continue; // a partial event: read more before yielding
            controller.enqueue(out);
            scanner.sent();
            return;
          }
        } catch (err) {
          if (ended) return;
          if (options.clientGone()) {
            // The client left and the upstream read failed because we aborted it.
            end(clientLeft(scanner.summary));
            controller.error(err);
            return;
          }
          if (scanner.summary.sawDone) {
            // Failed after its `[DONE]` (see `completed`): the client's stream just ends.
            controller.close();
            end(completed(scanner.summary));
            void iterator.return?.().catch(() => undefined);
            return;
          }
          const failure = streamFailure(err, options);
          controller.enqueue(failure.event);
          controller.close();
          end({ outcome: 'error', errorType: failure.errorType });
          // The scanner gave up on a body still open (an oversized event): stop reading it.
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
        const bytes = scanner.push(chunk);
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
      const rest = scanner.flush();
      out.end(rest.length ? rest : undefined);
      scanner.sent();
      options.onEnd(scanner.summary, completed(scanner.summary));
    } catch (err) {
      if (options.clientGone() || out.destroyed) {
        options.onEnd(scanner.summary, clientLeft(scanner.summary));
        return;
      }
      if (scanner.summary.sawDone) {
        // Failed after its `[DONE]` (see `completed`): the client's stream just ends.
        out.end();
        options.onEnd(scanner.summary, completed(scanner.summary));
        return;
      }
      const failure = streamFailure(err, options);
      out.end(failure.event);
      options.onEnd(scanner.summary, { outcome: 'error', errorType: failure.errorType });
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
