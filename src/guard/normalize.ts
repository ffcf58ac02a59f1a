/**
 * The injection normaliser: turns what a person (or an attacker) typed into one canonical
 * form that the phrase families and the model read. Steps, in order:
 *
 * 1. Cap: inputs longer than `maxChars` are scanned as the first 3/4 and last 1/4 of that
 *    budget (injections sit at the start or are appended at the end; the middle of a very
 *    long document is not scanned).
 * 2. Encoded payloads: runs of 24+ base64 characters that decode to printable text are
 *    decoded and appended (so "aWdub3JlIGFsbC..." is read as "ignore all ...").
 * 3. Unicode NFKC, then per character: lower case, accents folded (ä -> a, ß -> ss),
 *    zero-width / bidi / soft-hyphen characters dropped, Unicode tag characters (invisible
 *    "ASCII smuggling") decoded, quotes and dashes unified, Latin lookalikes (small
 *    capitals, ı, ɡ) folded, whitespace runs collapsed to one space (or one newline when the
 *    run held a line break). Single-character NFKC mappings (full-width, circled, super-
 *    script letters) are part of the fold table; `normalize('NFKC')` itself only runs for
 *    text holding a character NFKC expands (ligatures, non-BMP letters such as 𝐚, Hangul).
 * 4. Per word: Cyrillic/Greek/Armenian homoglyphs folded to Latin when the word mixes them
 *    with Latin letters; leetspeak (0 1 3 4 5 7 @ $) decoded in words with 2+ letters.
 * 5. Letter-spaced words ("i g n o r e", "i.g.n.o.r.e", 6+ letters) joined.
 *
 * The result lives in a buffer owned by the normaliser, reused by every call (one per
 * scanner; `scan` is synchronous so calls never interleave). Only the final string and,
 * for long input or text that needs NFKC, the capped/NFKC copy are allocated.
 */
import {
  B64_VALUES, C_BASE64, C_SUSPECT, C_VISIBLE, C_WORD, DROP, EXPAND_SS, getClassTable, getFoldClassTable, getMixedTable,
  isAsciiLetter, isSpacedSeparator, isWordChar, leetTable, NEEDS_NFKC, NEWLINE, SPACE, TAG_LEAD,
} from './char-tables.js';

const MAX_BASE64_PAYLOADS = 4;
const MAX_SUSPECTS = 256;
const MIN_BASE64_RUN = 24;
const MAX_BASE64_CHARS = 4096;

export interface NormalizerOptions {
  /** Input characters scanned at most (default 8192): head 3/4, tail 1/4. */
  maxChars?: number;
}

/**
 * Decodes a base64 run into printable text, or returns undefined when it is not text
 * (hashes, ids and long words decode to binary noise and are ignored).
 */
export function decodeBase64Text(run: string): string | undefined {
  const len = Math.min(run.length, MAX_BASE64_CHARS) & ~3;
  let out = '';
  let printable = 0;
  let spaces = 0;
  let total = 0;
  for (let i = 0; i + 3 < len; i += 4) {
    const a = B64_VALUES[run.charCodeAt(i)];
    const b = B64_VALUES[run.charCodeAt(i + 1)];
    const c = run.charCodeAt(i + 2) === 0x3d ? 0 : B64_VALUES[run.charCodeAt(i + 2)];
    const d = run.charCodeAt(i + 3) === 0x3d ? 0 : B64_VALUES[run.charCodeAt(i + 3)];
    if (a < 0 || b < 0 || c < 0 || d < 0) return undefined;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    const bytes = run.charCodeAt(i + 3) === 0x3d ? (run.charCodeAt(i + 2) === 0x3d ? 1 : 2) : 3;
    for (let k = 0; k < bytes; k++) {
      const byte = (n >> (16 - 8 * k)) & 0xff;
      total++;
      if ((byte >= 0x20 && byte < 0x7f) || byte === 0x0a || byte === 0x0d || byte === 0x09) printable++;
      if (byte === 0x20) spaces++;
      out += String.fromCharCode(byte);
    }
  }
  // Text: almost all printable ASCII and at least some word breaks.
  if (total < 12 || printable < total * 0.95 || spaces === 0) return undefined;
  return out;
}

/**
 * Reusable normaliser. Not shared across concurrent async work: `normalize` is
 * synchronous and the buffer is overwritten by the next call.
 */
export class TextNormalizer {
  readonly maxChars: number;
  /** Normalised UTF-16 code units; valid up to the length `normalize` returned. */
  readonly buf: Uint16Array;
  private readonly mixed = getMixedTable();
  private readonly cls = getClassTable();
  /** fold[c] | cls[fold[c]] << 16: one read per input character. */
  private readonly foldClass = getFoldClassTable();
  private readonly decoder = new TextDecoder('utf-16le');
  /** Obfuscation undone by the last call: base64 payloads, tag characters, mixed-script and letter-spaced words. */
  obfuscations = 0;
  /** Base64 runs seen by the last fold: [start, end) pairs into `runText`. */
  private readonly runs = new Int32Array(MAX_BASE64_PAYLOADS * 2);
  private runCount = 0;
  private runText = '';
  /** Characters the word pass must look at (leet digits, lookalikes), counted while folding. */
  private suspects = 0;
  /** Where they are in `buf` (up to MAX_SUSPECTS per fold). */
  private readonly suspectAt = new Int32Array(MAX_SUSPECTS * 2);
  /** Longest run of single-character words seen while folding ("i g n o r e"). */
  private singles = 0;

  constructor(opts: NormalizerOptions = {}) {
    this.maxChars = Math.max(256, opts.maxChars ?? 8192);
    // ß may expand to two units; decoded base64 payloads are appended.
    this.buf = new Uint16Array(this.maxChars * 2 + MAX_BASE64_PAYLOADS * (MAX_BASE64_CHARS + 1));
  }

  /** Normalises `text` into `buf` and returns the number of code units written. */
  normalizeToBuffer(text: string): number {
    let input = text;
    if (input.length > this.maxChars) {
      const head = Math.floor(this.maxChars * 0.75);
      input = `${input.slice(0, head)}\n${input.slice(input.length - (this.maxChars - head))}`;
    }
    this.obfuscations = 0;
    this.suspects = 0;
    this.singles = 0;
    let n = this.foldInto(input, 0, true);
    const runs = this.runCount;
    const runText = this.runText;
    for (let r = 0; r < runs; r++) {
      const decoded = decodeBase64Text(runText.slice(this.runs[2 * r], this.runs[2 * r + 1]));
      if (decoded === undefined) continue;
      this.obfuscations++;
      this.buf[n++] = NEWLINE;
      n = this.foldInto(decoded, n, false);
    }
    if (this.suspects > 0) this.foldWords(n);
    return this.singles >= 6 ? this.joinSpacedLetters(n) : n;
  }

  /** Normalises `text` and returns it as a string. */
  normalize(text: string): string {
    const n = this.normalizeToBuffer(text);
    return this.toString(n);
  }

  /** The first `n` units of `buf` as a string (one allocation). */
  toString(n: number): string {
    return this.decoder.decode(this.buf.subarray(0, n));
  }

  /**
   * Step 3: NFKC + per-character folding, whitespace collapsing; with `findBase64`, also
   * records runs of 24+ base64 characters. Returns the new length.
   */
  private foldInto(raw: string, start: number, findBase64: boolean): number {
    const obfuscations = this.obfuscations;
    const n = this.foldPass(raw, start, findBase64, true);
    if (n >= 0) return n;
    // Only text with characters NFKC changes into several pays for normalize('NFKC');
    // single-character compatibility forms are already in the fold table.
    this.obfuscations = obfuscations;
    return this.foldPass(raw.normalize('NFKC'), start, findBase64, false);
  }

  /** One folding pass; returns -1 when `text` needs NFKC first and `canRestart`. */
  private foldPass(text: string, start: number, findBase64: boolean, canRestart: boolean): number {
    const buf = this.buf;
    const foldClass = this.foldClass;
    // Each character writes at most two units, so this bound keeps `n` inside `buf`.
    const len = Math.min(text.length, (buf.length - 2 - start) >> 1);
    let n = start;
    let tokenStart = n; // where the current whitespace-delimited token began in buf
    let longest = 0;
    let wordStart = n; // where the current word began in buf
    let singles = this.singles;
    let suspects = 0;
    let run = 0;
    for (let i = 0; i < len; i++) {
      const c = text.charCodeAt(i);
      const fk = foldClass[c];
      let m = fk & 0xffff;
      const k = fk >>> 16;
      if ((k & C_VISIBLE) !== 0) {
        // The common case: a visible character.
        if ((k & C_SUSPECT) !== 0) {
          if (suspects < MAX_SUSPECTS) this.suspectAt[this.suspects + suspects] = n;
          suspects++;
        }
        buf[n++] = m;
        if ((k & C_WORD) === 0) {
          // Punctuation ends a word; count single-character words for the join pass.
          const wordLen = n - 1 - wordStart;
          if (wordLen === 1) run++;
          else if (wordLen > 1) run = 0;
          if (run > singles) singles = run;
          wordStart = n;
        }
        continue;
      }
      if (m === TAG_LEAD) {
        // Plane 14: tag characters U+E0020..U+E007E carry hidden ASCII ("ASCII smuggling");
        // variation selectors U+E0100.. are invisible.
        const lo = i + 1 < len ? text.charCodeAt(i + 1) : 0;
        if (lo < 0xdc00 || lo > 0xdfff) continue;
        i++;
        if (lo > 0xdc7f) continue;
        this.obfuscations++;
        const ascii = lo - 0xdc00;
        if (ascii < 0x21 || ascii > 0x7e) continue;
        m = foldClass[ascii] & 0xffff;
        buf[n++] = m;
        if ((foldClass[ascii] >>> 16 & C_WORD) === 0) wordStart = n;
        continue;
      }
      if (m === DROP) continue;
      if (m === NEEDS_NFKC) {
        if (canRestart) return -1;
        buf[n++] = c; // already NFKC (a Hangul syllable, an emoji half): keep as is
        continue;
      }
      if (m === EXPAND_SS) {
        buf[n++] = 0x73;
        buf[n++] = 0x73;
        continue;
      }
      // Whitespace: collapse runs; a run holding a newline becomes one newline.
      if (n - tokenStart > longest) longest = n - tokenStart;
      const wordLen = n - wordStart;
      if (wordLen === 1) run++;
      else if (wordLen > 1) run = 0;
      if (run > singles) singles = run;
      const last = n === 0 ? SPACE : buf[n - 1];
      if (last === SPACE || last === NEWLINE) {
        if (m === NEWLINE && n > start) buf[n - 1] = NEWLINE;
      } else buf[n++] = m;
      tokenStart = n;
      wordStart = n;
    }
    const lastWord = n - wordStart;
    if (findBase64) {
      // A base64 payload is one long token: look for runs only when there is one.
      this.runCount = 0;
      if (Math.max(longest, n - tokenStart) >= MIN_BASE64_RUN) this.findBase64Runs(text);
    }
    // Past MAX_SUSPECTS the list is incomplete: foldWords then scans every word.
    this.suspects = suspects > MAX_SUSPECTS ? MAX_SUSPECTS * 2 : this.suspects + suspects;
    this.singles = lastWord === 1 && run + 1 > singles ? run + 1 : singles;
    return n;
  }

  /** Records up to MAX_BASE64_PAYLOADS runs of MIN_BASE64_RUN+ base64 characters in `text`. */
  private findBase64Runs(text: string): void {
    this.runText = text;
    const cls = this.cls;
    let start = -1;
    for (let i = 0; i <= text.length && this.runCount < MAX_BASE64_PAYLOADS; i++) {
      if (i < text.length && (cls[text.charCodeAt(i)] & C_BASE64) !== 0) {
        if (start < 0) start = i;
        continue;
      }
      if (start >= 0 && i - start >= MIN_BASE64_RUN) {
        this.runs[2 * this.runCount] = start;
        this.runs[2 * this.runCount + 1] = i;
        this.runCount++;
      }
      start = -1;
    }
  }

  /** Step 4: per word, fold mixed-script homoglyphs and decode leetspeak, in place. */
  private foldWords(n: number): void {
    const buf = this.buf;
    if (this.suspects < MAX_SUSPECTS * 2) {
      // The positions were listed while folding (ascending): visit just those words.
      let end = 0;
      for (let s = 0; s < this.suspects; s++) {
        const pos = this.suspectAt[s];
        if (pos >= end) end = this.foldWordAt(pos, n);
      }
      return;
    }
    const mixed = this.mixed;
    for (let i = 0; i < n; ) {
      const c = buf[i];
      i = (c < 128 ? leetTable[c] !== 0 : mixed[c] !== 0) ? this.foldWordAt(i, n) : i + 1;
    }
  }

  /** Folds the word around `i`; returns the index after it. */
  private foldWordAt(i: number, n: number): number {
    const buf = this.buf;
    const mixed = this.mixed;
    let begin = i;
    while (begin > 0 && isWordChar(buf[begin - 1])) begin--;
    let end = begin;
    let ascii = 0;
    let lookalikes = 0;
    let leet = 0;
    for (; end < n && isWordChar(buf[end]); end++) {
      const c = buf[end];
      if (isAsciiLetter(c)) ascii++;
      else if (c < 128) {
        if (leetTable[c] !== 0) leet++;
      } else if (mixed[c] !== 0) lookalikes++;
    }
    if (lookalikes > 0 && ascii > 0) {
      for (let k = begin; k < end; k++) if (mixed[buf[k]] !== 0) buf[k] = mixed[buf[k]];
      ascii += lookalikes;
      this.obfuscations++;
    }
    // Leetspeak, except in "$variable1" / "@handle1" style names.
    if (leet > 0 && ascii >= 2 && buf[begin] !== 0x24 && buf[begin] !== 0x40) {
      for (let k = begin; k < end; k++) {
        const c = buf[k];
        // '@' and '$' only inside a word ("p@ss").
        if (c < 128 && leetTable[c] !== 0 && ((c !== 0x40 && c !== 0x24) || (k > begin && k < end - 1))) buf[k] = leetTable[c];
      }
    }
    return Math.max(end, i + 1);
  }

  /** True when `buf` holds 6+ lone word characters in a row, each one separator apart. */
  private hasSpacedRun(n: number): boolean {
    const buf = this.buf;
    let letters = 0;
    let i = 0;
    while (i < n) {
      const lone = isWordChar(buf[i]) && (i === 0 || !isWordChar(buf[i - 1])) && (i + 1 >= n || !isWordChar(buf[i + 1]));
      if (!lone) {
        letters = 0;
        i++;
        continue;
      }
      if (++letters >= 6) return true;
      if (i + 1 < n && isSpacedSeparator(buf[i + 1])) i += 2;
      else {
        letters = 0;
        i++;
      }
    }
    return false;
  }

  /** Step 5: "i g n o r e" -> "ignore" for runs of 6+ single letters. Returns the new length. */
  private joinSpacedLetters(n: number): number {
    const buf = this.buf;
    if (!this.hasSpacedRun(n)) return n;
    // A lone word character: no word character on either side.
    const single = (k: number): boolean =>
      isWordChar(buf[k]) && (k === 0 || !isWordChar(buf[k - 1])) && (k + 1 >= n || !isWordChar(buf[k + 1]));
    let w = 0;
    let i = 0;
    while (i < n) {
      if (single(i)) {
        let k = i;
        let letters = 1;
        while (k + 2 < n && isSpacedSeparator(buf[k + 1]) && single(k + 2)) {
          k += 2;
          letters++;
        }
        if (letters >= 6) {
          for (let j = i; j <= k; j += 2) buf[w++] = buf[j];
          this.obfuscations++;
          i = k + 1;
          continue;
        }
      }
      buf[w++] = buf[i++];
    }
    return w;
  }
}
