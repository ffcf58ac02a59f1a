/**
 * The incremental SSE scanner: reads `id`, `model`, `finish_reason`, `usage` and errors from
 * complete events as they pass, and drops the usage chunk the client did not ask for. One per
 * stream; the relay (sse-relay.ts) forwards what it returns.
 */
import { dataOf, EventFramer, MAX_EVENT_BYTES, splitEvents } from './sse-framing.js';
import { StreamText } from './stream-text.js';

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

// RFC 8259 §2: whitespace may surround the name separator (Python's json.dumps writes `": `).
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
const FINISH_REASON = /"finish_reason"\s*:\s*"/;
// JSON whitespace inside an event: spaces and tabs, and line ends between `data:` lines (a
// multi-line `data` is joined by LF; the next line's `data:` prefix goes with its line end; the
// space after it is a `[ \t]`: an optional one there too made the match time exponential).
const WS = String.raw`(?:[ \t]|(?:\r\n|\r|\n)data:)*`;
const SPACED_USAGE_NULL = new RegExp(`,${WS}"usage"${WS}:${WS}null(?=${WS}[,}])|"usage"${WS}:${WS}null${WS},${WS}`);

/** A choice that says nothing: an index, an empty (or no) delta, no finish reason, no logprobs. */
function isEmptyChoice(choice: Record<string, unknown>): boolean {
  for (const key in choice) {
    const value = choice[key];
    if (key === 'index') continue;
    if (key === 'delta' && value !== null && typeof value === 'object' && Object.keys(value).length === 0) continue;
    if ((key === 'finish_reason' || key === 'logprobs' || key === 'delta') && (value === null || value === undefined)) continue;
    return false;
  }
  return true;
}

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
        // No choice, or only empty ones (LiteLLM: `[{"index":0,"delta":{}}]`): the chunk exists
        // because the gateway asked for usage, and goes whole.
        if (choices.every(isEmptyChoice)) return 'drop';
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
