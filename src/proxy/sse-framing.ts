/**
 * Server-sent events framing (WHATWG HTML "Server-sent events" §9.2.6): a byte stream cut
 * into complete events, each ended by a blank line, holding only the event still partial,
 * and bounded. The chat relay (sse-relay.ts) and the Responses usage reader
 * (passthrough-usage.ts) both read upstream streams through it.
 */

const LF = 0x0a;
const CR = 0x0d;

/** The most a single event may take by default (chat chunks are a few hundred bytes). */
export const MAX_EVENT_BYTES = 16 << 20;

/** Index just past the last event boundary (blank line) in `buf`, or -1. */
export function lastBoundary(buf: Uint8Array): number {
  for (let i = buf.length - 1; i > 0; i--) {
    if (buf[i] !== LF && buf[i] !== CR) continue;
    // A blank line: LF LF, CR CR, or LF CR LF / CR LF CR LF.
    const prev = buf[i - 1];
    if (buf[i] === LF && prev === LF) return i + 1;
    if (buf[i] === CR && prev === CR && buf[i + 1] !== LF) return i + 1;
    if (buf[i] === LF && prev === CR && i >= 2 && buf[i - 2] === LF) return i + 1;
  }
  return -1;
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
 * partial event is kept as the chunks it came in and joined once, when it ends, and only a
 * new chunk (plus the 3 bytes before it) is searched for the blank line. One per stream.
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

  constructor(private readonly maxEventBytes = MAX_EVENT_BYTES) {}

  /**
   * The complete events `chunk` ends (the held partial event first), or undefined when it
   * ends none. Throws `SseEventTooLargeError` when the partial event passes `maxEventBytes`.
   */
  push(chunk: Uint8Array): Uint8Array | undefined {
    const end = this.#boundaryWith(chunk);
    if (end < 0) {
      this.#hold(chunk);
      return undefined;
    }
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

  /**
   * Index just past the last boundary in the held bytes + `chunk`, or -1. Only `chunk` and
   * the 3 bytes before it are searched: a boundary inside the held bytes would have ended
   * the event already.
   */
  #boundaryWith(chunk: Uint8Array): number {
    if (this.#pendingBytes === 0) return lastBoundary(chunk);
    const tail = tailOf(this.#pending, 3);
    const end = lastBoundary(concat([tail, chunk], tail.length + chunk.length));
    return end < 0 ? -1 : this.#pendingBytes - tail.length + end;
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

/** The last `n` bytes of `parts` (fewer if they hold fewer). */
function tailOf(parts: Uint8Array[], n: number): Uint8Array {
  const bytes: number[] = [];
  for (let p = parts.length - 1; p >= 0 && bytes.length < n; p--) {
    for (let i = parts[p].length - 1; i >= 0 && bytes.length < n; i--) bytes.unshift(parts[p][i]);
  }
  return Uint8Array.from(bytes);
}
