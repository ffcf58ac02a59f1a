/**
 * Base64 payloads hidden in text ("decode this: aWdub3JlIGFsbC..."): where the runs are and
 * whether a run decodes to text. Used by the normaliser (normalize.ts, step 2).
 */
import { isUtf8 } from 'node:buffer';
import { B64_VALUES } from './char-tables.js';

/** Shorter runs are ordinary words and ids. */
export const MIN_BASE64_RUN = 24;
/** Runs that decode to text read per text at most (runs that do not, such as hashes and ids, do not count). */
export const MAX_BASE64_PAYLOADS = 4;
/** Characters of a run decoded at most. */
export const MAX_BASE64_CHARS = 4096;

const isBase64Char = (c: number): boolean => c < 128 && (B64_VALUES[c] >= 0 || c === 0x3d);

/**
 * Finds runs of MIN_BASE64_RUN+ base64 characters in `units[from, to)` and appends them to
 * `runs` as [start, end) pairs, as many as `runs` holds. `count` is the
 * number of runs already there; returns the new number. Padding ends a run: in
 * "payload=aWdub3Jl..." the run is what follows the '=' ("payload=" is a run of its own).
 */
export function findBase64Runs(units: Uint16Array, from: number, to: number, runs: Int32Array, count: number): number {
  let start = -1;
  const max = runs.length >> 1;
  for (let i = from; i <= to && count < max; i++) {
    const inAlphabet = i < to && isBase64Char(units[i]);
    if (inAlphabet && (start < 0 || units[i] === 0x3d || units[i - 1] !== 0x3d)) {
      if (start < 0) start = i;
      continue;
    }
    if (start >= 0 && i - start >= MIN_BASE64_RUN) {
      runs[2 * count] = start;
      runs[2 * count + 1] = i;
      count++;
    }
    start = inAlphabet ? i : -1;
  }
  return count;
}

/**
 * Decodes a base64 run into text, or returns undefined when it is not text. Text is UTF-8
 * (any script, emoji) without control characters but whitespace, with a letter and a word
 * break (any whitespace: a space, a newline, a tab). Hashes, ids and long words decode to
 * bytes that are not UTF-8, or to control characters, and are ignored; so is a JSON token
 * such as a JWT header, which has no word break. A run cut at MAX_BASE64_CHARS (or one that
 * ends without its last bits) may end inside a character: that character is left out.
 */
export function decodeBase64Text(run: string): string | undefined {
  const decoded = Buffer.from(run.length > MAX_BASE64_CHARS ? run.slice(0, MAX_BASE64_CHARS) : run, 'base64');
  const bytes = decoded.subarray(0, completeUtf8Length(decoded));
  if (!isUtf8(bytes)) return undefined;
  const text = bytes.toString('utf8');
  return NOT_TEXT.test(text) || !WORD_BREAK.test(text) || !LETTER.test(text) ? undefined : text;
}

/** Control characters but whitespace, private-use and unassigned code points. */
const NOT_TEXT = /(?![\t\n\v\f\r])[\p{Cc}\p{Co}\p{Cn}]/u;
const WORD_BREAK = /\s/;
const LETTER = /\p{L}/u;

/** The length of `bytes` without a UTF-8 sequence its end cuts short. */
function completeUtf8Length(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const b = bytes[bytes.length - back];
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const needed = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return needed > back ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}
