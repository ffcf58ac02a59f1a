/**
 * The Responses API stream as read on the side of a pass-through relay: its terminal,
 * `response.created` and `error` events, in bounded memory. One reader per stream.
 */
import { dataOf, EventFramer, splitEvents, SseEventTooLargeError } from './sse-framing.js';

/** A stream event held longer than this (the last one repeats the whole output) is not read. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const TERMINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);
/** Cheap test before parsing an event: its text names an event type that is read. */
const READ_TEXT = /"response\.(?:completed|incomplete|failed|created)"|"type"\s*:\s*"error"|^event:\s*error\s*$/m;

/** What a Responses stream reader reports, event by event. */
interface ResponseEventHooks {
  /** `response` of a terminal event (`response.completed`, `.incomplete`, `.failed`). */
  onTerminal(response: Record<string, unknown>): void;
  /** `response` of `response.created`. */
  onCreated(response: Record<string, unknown>): void;
  /** The first `error` event (`{"type": "error", "code", "message", ...}`). */
  onError(): void;
}

/**
 * Reads the Responses API stream on the side: events are framed as the chat relay frames
 * them (`EventFramer`), only an event naming a type that is read (terminal, created, error)
 * is parsed, and only the current event's bytes are held (up to MAX_EVENT_BYTES; past that,
 * reading stops and the stream has no usage). One per stream.
 */
export class ResponseEvents {
  /** Bytes seen. */
  bytes = 0;
  readonly #framer = new EventFramer(MAX_EVENT_BYTES);
  /** An event outgrew MAX_EVENT_BYTES: nothing more is read (the bytes still go to the client). */
  #gaveUp = false;
  #failed = false;
  readonly #hooks: ResponseEventHooks;

  constructor(hooks: ResponseEventHooks) {
    this.#hooks = hooks;
  }

  push(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    if (this.#gaveUp) return;
    let events: Uint8Array | undefined;
    try {
      events = this.#framer.push(chunk);
    } catch (err) {
      if (!(err instanceof SseEventTooLargeError)) throw err;
      this.#gaveUp = true;
      return;
    }
    // A fault in reading or accounting the events goes to the SideReader, which reports it.
    if (events) this.#read(events);
  }

  /** The stream ended complete: an unterminated last event is read too (as the relay sends it). */
  end(): void {
    const rest = this.#gaveUp ? undefined : this.#framer.flush();
    if (rest) this.#read(rest);
  }

  #read(bytes: Uint8Array): void {
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
    if (!READ_TEXT.test(text)) return;
    const parts = splitEvents(text); // events at even indexes
    for (let i = 0; i < parts.length; i += 2) {
      const event = parts[i];
      if (!READ_TEXT.test(event)) continue;
      const data = dataOf(event);
      let obj: { type?: unknown; response?: unknown } | undefined;
      try {
        obj = data === undefined ? undefined : (JSON.parse(data) as { type?: unknown; response?: unknown });
      } catch {
        // not JSON: only its `event:` line can say what it is
      }
      const type = isObject(obj) ? obj.type : undefined;
      if (type === 'error' || (type === undefined && /^event:\s*error\s*$/m.test(event))) this.#fail();
      else if (typeof type === 'string' && TERMINAL_EVENTS.has(type) && isObject(obj!.response)) this.#hooks.onTerminal(obj!.response);
      else if (type === 'response.created' && isObject(obj!.response)) this.#hooks.onCreated(obj!.response);
    }
  }

  #fail(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#hooks.onError();
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
