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
 * Decodes a base64 run into printable text, or returns undefined when it is not text
 * (hashes, ids and long words decode to binary noise and are ignored).
 */
export function decodeBase64Text(run: string): string | undefined {
  const len = Math.min(run.length, MAX_BASE64_CHARS) & ~3;
  let out = '';
  let printable = 0;
  let spaces = 0;
  let total = 0;
  // More bytes outside printable ASCII than this and the run is not text, however it ends
  // (a hash or an id decodes to noise from its first bytes on).
  const maxNoise = ((len >> 2) * 3) * 0.05;
  for (let i = 0; i + 3 < len; i += 4) {
    if (total - printable > maxNoise) return undefined;
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
