/**
 * Server-sent events framing (WHATWG HTML "Server-sent events" §9.2.6): a byte stream cut
 * into complete events, each ended by a blank line, holding only the event still partial,
 * and bounded. The chat stream's scanner (sse-scanner.ts) and the Responses stream reader
 * (response-events.ts) both read upstream streams through it.
 */

const LF = 0x0a;
const CR = 0x0d;

/** The most a single event may take by default (chat chunks are a few hundred bytes). */
export const MAX_EVENT_BYTES = 16 << 20;

/**
 * Index just past the last event boundary (blank line) in `buf`, or -1; `buf` starts where
 * an event starts. WHATWG SSE: CR LF, LF or CR end a line (CR LF is one line end, so
 * `LF CR LF`, `CR CR LF` and `CR LF CR` end an event too).
 */
export function lastBoundary(buf: Uint8Array): number {
  return scanLines(buf, { lineStart: true, afterCR: false });
}

/** Where a scan of a stream's bytes is: at a line's start, right after a CR. */
interface LineState {
  lineStart: boolean;
  afterCR: boolean;
}

/**
 * Scans `buf` on from `state` (updated); returns the index just past the last blank line in
 * it, or -1. A blank line ended by a CR at the very end of `buf` ends the event there, so it
 * goes without waiting for the next byte; an LF that then follows completes that CR LF and
 * starts the next chunk (`splitEvents` callers see it as a lone leading LF).
 */
function scanLines(buf: Uint8Array, state: LineState): number {
  let end = -1;
  let { lineStart, afterCR } = state;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (b === LF) {
      // The LF of a CR LF: the line end was counted at the CR (a blank line then ends here).
      if (afterCR) {
        if (end === i) end = i + 1;
      } else if (lineStart) end = i + 1;
      lineStart = true;
      afterCR = false;
    } else if (b === CR) {
      if (lineStart) end = i + 1;
      lineStart = true;
      afterCR = true;
    } else {
      lineStart = false;
      afterCR = false;
    }
  }
  state.lineStart = lineStart;
  state.afterCR = afterCR;
  return end;
}

/**
 * Complete events cut into `[event, line ends, event, line ends, ..., rest]` (the shape of
 * `text.split(/(\n\n)/)`): each event's lines, then its last line end and the blank line.
 * Two blank lines in a row make an empty event (`''`). `text` starts where an event starts.
 */
export function splitEvents(text: string): string[] {
  // OpenAI-style upstreams use LF only: the blank line is the first LF LF.
  if (!text.includes('\r')) return splitLf(text);
  const parts: string[] = [];
  let from = 0;
  let contentEnd = 0;
  let lineStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== LF && c !== CR) {
      lineStart = false;
      contentEnd = i + 1;
      continue;
    }
    if (c === CR && text.charCodeAt(i + 1) === LF) i++;
    if (lineStart) {
      parts.push(text.slice(from, contentEnd), text.slice(contentEnd, i + 1));
      from = contentEnd = i + 1;
    }
    lineStart = true;
  }
  parts.push(text.slice(from));
  return parts;
}

function splitLf(text: string): string[] {
  const parts: string[] = [];
  let from = 0;
  for (;;) {
    if (text.charCodeAt(from) === LF) {
      parts.push('', '\n'); // a blank line right after one: an empty event
      from++;
      continue;
    }
    const at = text.indexOf('\n\n', from);
    if (at === -1) break;
    parts.push(text.slice(from, at), '\n\n');
    from = at + 2;
  }
  parts.push(text.slice(from));
  return parts;
}

/** Thrown by `EventFramer.push` when an event grows past its limit without ending. */
export class SseEventTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`an upstream event exceeded ${limit} bytes`);
    this.name = 'SseEventTooLargeError';
  }
}

/**
 * Cuts a byte stream into complete events. Work is linear however the stream is split: a
 * partial event is kept as the chunks it came in and joined once, when it ends, and each
 * byte is looked at once (the line state carries over from chunk to chunk). One per stream.
 *
 * @example
 * const framer = new EventFramer();
 * framer.push(enc('data: {"a":1}\n\ndata: {"b"')); // 'data: {"a":1}\n\n' (the complete event)
 * framer.push(enc(':2}\n\n'));                      // 'data: {"b":2}\n\n'
 * framer.flush();                                  // undefined: nothing left
 */
export class EventFramer {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  readonly #state: LineState = { lineStart: true, afterCR: false };

  constructor(private readonly maxEventBytes = MAX_EVENT_BYTES) {}

  /**
   * The complete events `chunk` ends (the held partial event first), or undefined when it
   * ends none. Throws `SseEventTooLargeError` when the partial event passes `maxEventBytes`.
   */
  push(chunk: Uint8Array): Uint8Array | undefined {
    const boundary = scanLines(chunk, this.#state);
    if (boundary < 0) {
      this.#hold(chunk);
      return undefined;
    }
    const end = this.#pendingBytes + boundary;
    const buf = this.#pendingBytes === 0 ? chunk : concat([...this.#pending, chunk], this.#pendingBytes + chunk.length);
    this.#pending = [];
    this.#pendingBytes = 0;
    if (end < buf.length) this.#hold(buf.slice(end));
    return end === buf.length ? buf : buf.subarray(0, end);
  }

  /** What is held when the stream ends (an unterminated last event), or undefined. */
  flush(): Uint8Array | undefined {
    if (this.#pendingBytes === 0) return undefined;
    const rest = concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    return rest;
  }

  #hold(bytes: Uint8Array): void {
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes > this.maxEventBytes) throw new SseEventTooLargeError(this.maxEventBytes);
  }
}

/** The `data` of one event (multiple `data:` lines joined by LF), or undefined. */
export function dataOf(event: string): string | undefined {
  // Fast path: one `data: ...` line.
  if (event.startsWith('data: ') && !event.includes('\n') && !event.includes('\r')) return event.slice(6);
  let data: string | undefined;
  // WHATWG SSE: the UTF-8 decoder drops a byte order mark at the start of the stream.
  const lines = (event.charCodeAt(0) === 0xfeff ? event.slice(1) : event).split(/\r\n|\n|\r/);
  for (const line of lines) {
    if (!line.startsWith('data:')) continue;
    const value = line.charCodeAt(5) === 0x20 ? line.slice(6) : line.slice(5);
    data = data === undefined ? value : `${data}\n${value}`;
  }
  return data;
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
