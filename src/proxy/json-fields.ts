/**
 * Reads a few top-level fields (`model`, `usage`) of one JSON object that arrives in
 * pieces, keeping only those fields' text: a pass-through body of any size (an embeddings
 * batch can be tens of MB) is read in bounded memory, on the side, without parsing the rest.
 *
 * It follows the structure (strings, escapes, nesting) byte by byte; it does not validate
 * the skipped values. UTF-8 needs no decoding for that: every structural byte is ASCII and
 * never occurs inside a multi-byte sequence (RFC 3629 §3). One per body, not shared.
 *
 * @example
 * const fields = new TopLevelFields(['model', 'usage']);
 * for await (const chunk of body) fields.push(chunk);
 * fields.end(); // { model: 'text-embedding-3-small', usage: { prompt_tokens: 8, total_tokens: 8 } } or undefined
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
/** A UTF-8 byte order mark: skipped before the object, as clients decoding the body drop it. */
const BOM = [0xef, 0xbb, 0xbf];
/** Longer keys are not among the wanted ones: their bytes are not kept. */
const MAX_KEY_BYTES = 64;
const DEFAULT_MAX_FIELD_BYTES = 64 * 1024;

/** RFC 8259 §2: insignificant whitespace. */
function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

export class TopLevelFields {
  readonly #wanted: ReadonlySet<string>;
  readonly #maxFieldBytes: number;
  /** Raw JSON text of each wanted field seen (the last one wins, as in JSON.parse). */
  readonly #values = new Map<string, string>();
  #state: 'before' | 'open' | 'closed' | 'invalid' = 'before';
  #depth = 0;
  /** Bytes of a leading byte order mark seen so far (3 once past where one may be). */
  #bomBytes = 0;
  #inString = false;
  #escape = false;
  /** At depth 1: the next string is a key. */
  #expectKey = false;
  /** Bytes of the depth-1 key being read; null when not reading one. */
  #key: number[] | null = null;
  /** A wanted key was read; its value starts after the colon. */
  #pendingName: string | undefined;
  /** The value being kept: its name and the bytes so far (from earlier pieces). */
  #capture: { name: string; parts: Uint8Array[]; bytes: number } | undefined;

  constructor(names: Iterable<string>, options: { maxFieldBytes?: number } = {}) {
    this.#wanted = new Set(names);
    this.#maxFieldBytes = options.maxFieldBytes ?? DEFAULT_MAX_FIELD_BYTES;
  }

  /** True once every wanted field was read (a caller that needs nothing else may stop). */
  get complete(): boolean {
    return this.#values.size === this.#wanted.size;
  }

  /** Feeds the next piece of the body. */
  push(chunk: Uint8Array): void {
    if (this.#state === 'invalid') return;
    let from = this.#capture ? 0 : -1;
    let nextBackslash = -2; // the next backslash at or after i in this piece (-1: none), found lazily
    for (let i = 0; i < chunk.length; i++) {
      let b = chunk[i];
      if (this.#inString) {
        if (this.#escape) {
          this.#escape = false;
          this.#keyByte(b);
          continue;
        }
        if (this.#key === null) {
          // A value's string: jump to its next quote or backslash (native scans; strings
          // such as base64 embeddings are most of a body).
          if (nextBackslash !== -1 && nextBackslash < i) nextBackslash = chunk.indexOf(BACKSLASH, i);
          const quote = chunk.indexOf(QUOTE, i);
          const next = quote === -1 ? nextBackslash : nextBackslash === -1 ? quote : Math.min(quote, nextBackslash);
          if (next === -1) break;
          i = next;
          b = chunk[i];
        }
        if (b === BACKSLASH) this.#escape = true;
        else if (b === QUOTE) this.#endString();
        this.#keyByte(b);
        continue;
      }
      if (this.#state !== 'open') {
        if (this.#bomBytes < BOM.length) {
          if (b === BOM[this.#bomBytes]) {
            this.#bomBytes++;
            continue;
          }
          this.#bomBytes = BOM.length;
        }
        if (isSpace(b)) continue;
        if (this.#state === 'before' && b === OPEN_OBJECT) {
          this.#state = 'open';
          this.#depth = 1;
          this.#expectKey = true;
          continue;
        }
        this.#fail(); // not an object, or something after it
        return;
      }
      switch (b) {
        case QUOTE:
          this.#inString = true;
          if (this.#depth === 1 && this.#expectKey) {
            this.#expectKey = false;
            this.#key = [];
          }
          break;
        case OPEN_OBJECT:
        case OPEN_ARRAY:
          this.#depth++;
          break;
        case CLOSE_OBJECT:
        case CLOSE_ARRAY:
          if (this.#depth === 1) {
            if (b !== CLOSE_OBJECT) return this.#fail();
            this.#endValue(chunk, from, i);
            from = -1;
            this.#state = 'closed';
          }
          this.#depth--;
          break;
        case COLON:
          if (this.#depth === 1 && this.#pendingName !== undefined) {
            this.#capture = { name: this.#pendingName, parts: [], bytes: 0 };
            this.#pendingName = undefined;
            from = i + 1;
          }
          break;
        case COMMA:
          if (this.#depth === 1) {
            this.#endValue(chunk, from, i);
            from = -1;
            this.#expectKey = true;
          }
          break;
        default:
          break;
      }
    }
    const capture = this.#capture;
    if (capture && from >= 0 && from < chunk.length) {
      capture.bytes += chunk.length - from;
      if (capture.bytes > this.#maxFieldBytes) this.#capture = undefined; // too big to be what we read
      else capture.parts.push(chunk.slice(from));
    }
  }

  /**
   * The wanted fields found, parsed, when the body was one complete JSON object; undefined
   * for anything else (not JSON, not an object, cut short). A field whose text does not
   * parse is left out.
   */
  end(): Record<string, unknown> | undefined {
    return this.#state === 'closed' ? this.found() : undefined;
  }

  /**
   * The wanted fields read so far, parsed, however the text goes on (a caller that stopped
   * once `complete`). A field whose text does not parse is left out.
   */
  found(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, text] of this.#values) {
      try {
        out[name] = JSON.parse(text);
      } catch {
        // not a JSON value: left out
      }
    }
    return out;
  }

  #keyByte(b: number): void {
    const key = this.#key;
    if (key === null) return;
    if (key.length < MAX_KEY_BYTES) key.push(b);
    else this.#key = null; // too long to be wanted
  }

  #endString(): void {
    this.#inString = false;
    const key = this.#key;
    if (key === null) return;
    this.#key = null;
    // Compared as raw bytes: a key spelt with escapes (`"mod\u0065l"`) is not recognised.
    const name = Buffer.from(key).toString('utf8');
    this.#pendingName = this.#wanted.has(name) ? name : undefined;
  }

  /** Ends the depth-1 value that ends at `end` of `chunk` (kept from `from` of it, when kept). */
  #endValue(chunk: Uint8Array, from: number, end: number): void {
    const capture = this.#capture;
    if (!capture) return;
    this.#capture = undefined;
    const last = from >= 0 ? chunk.subarray(from, end) : new Uint8Array(0);
    if (capture.bytes + last.length > this.#maxFieldBytes) return;
    const text = Buffer.concat([...capture.parts, last]).toString('utf8');
    this.#values.set(capture.name, text);
  }

  #fail(): void {
    this.#state = 'invalid';
    this.#capture = undefined;
    this.#values.clear();
  }
}
