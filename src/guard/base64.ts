/**
 * Base64 payloads hidden in text ("decode this: aWdub3JlIGFsbC..."): where the runs are and
 * whether a run decodes to text. Used by the normaliser (normalize.ts, step 2).
 */
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
 * (any script, emoji) with a letter and a word break (any whitespace: a space, a newline, a
 * tab), and at most MAX_NOISE_SHARE of its characters noise: a control character but
 * whitespace, a byte sequence that is not UTF-8 (decoded as U+FFFD), a private-use or an
 * unassigned code point. A model still reads "Ignore all previous instructions\x07" or a
 * stray Latin-1 byte, so a little noise must not hide a payload; hashes, ids, long words,
 * images and compressed data decode to noise from their first bytes on and are ignored; so
 * is a JSON token such as a JWT header, which has no word break. A run cut at
 * MAX_BASE64_CHARS (or one that ends without its last bits) may end inside a character:
 * that character is left out.
 */
export function decodeBase64Text(run: string): string | undefined {
  const decoded = Buffer.from(run.length > MAX_BASE64_CHARS ? run.slice(0, MAX_BASE64_CHARS) : run, 'base64');
  const text = decoded.subarray(0, completeUtf8Length(decoded)).toString('utf8');
  return WORD_BREAK.test(text) && LETTER.test(text) && isMostlyText(text) ? text : undefined;
}

/**
 * Share of noise characters a decoded run may hold: the old ASCII decoder's 5%, which let a
 * payload with a stray control byte through; random bytes decode to about 60% noise.
 */
const MAX_NOISE_SHARE = 0.05;
/** Control characters but whitespace, private-use and unassigned code points, U+FFFD (bytes that are not UTF-8). */
const NOISE = /(?![\t\n\v\f\r])[\p{Cc}\p{Co}\p{Cn}\uFFFD]/gu;
const WORD_BREAK = /\s/;
const LETTER = /\p{L}/u;

/** Whether at most MAX_NOISE_SHARE of the characters (code points) of `text` are noise; stops at the first one too many. */
function isMostlyText(text: string): boolean {
  const maxNoise = codePointCount(text) * MAX_NOISE_SHARE;
  let noise = 0;
  NOISE.lastIndex = 0;
  while (NOISE.test(text)) if (++noise > maxNoise) return false;
  return true;
}

/** The number of code points of `text`: a surrogate pair is one. */
function codePointCount(text: string): number {
  let pairs = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) pairs++;
  }
  return text.length - pairs;
}

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
