/**
 * Step 5 of the injection normaliser (normalize.ts): letter-spaced words are joined.
 * "i g n o r e", "i.g.n.o.r.e" or "i-g-n-o-r-e" (single letters with one separator
 * between, 6+ of them) read as "ignore"; a wider gap inside such a run stays a word break
 * ("p r i n t   y o u r" -> "print your"). Shorter runs are left alone ("plan a b c"), and
 * digits are no letters: "seats 1 2 3 4 5 6" is a list of numbers, not a hidden word.
 *
 * Works in place on the normaliser's buffer, after steps 3 and 4. The fold pass (step 3)
 * notes the longest run, so this step runs only when there is one to join, and where a
 * whitespace run of two or more characters became one space (the wide gaps).
 */
import * as tables from './char-tables.js';
import { isSpacedSeparator, isWordChar } from './char-tables.js';
import type { WordList } from './word-list.js';

// A module-local copy: V8 compiles it to a constant (see normalize.ts).
const { SPACE } = tables;

/** Letter-spaced words are joined from this many letters on. */
export const MIN_SPACED_LETTERS = 6;

/** A word character letter-spacing can hide a word with: a letter, not a digit, '@' or '$'. */
export const isSpacedLetter = (c: number): boolean => isWordChar(c) && (c < 0x30 || c > 0x39) && c !== 0x40 && c !== 0x24;

/** Joins letter-spaced words in one buffer. One per normaliser, reused by every call. */
export class SpacedLetterJoiner {
  /** Letter-spaced runs joined by the last `join` call (obfuscation undone). */
  joined = 0;
  /**
   * Where they are in the joined text: [start, end) pairs, ascending, `joined` of them. The
   * feature extractor counts a run as obfuscation only where it spells a phrase.
   */
  readonly runs: Int32Array;

  /**
   * @param buf the normaliser's buffer, changed in place
   * @param words its word list, listed again when text moved
   */
  constructor(
    private readonly buf: Uint16Array,
    private readonly words: WordList,
  ) {
    // A run takes 6 letters and 5 separators at least, and something not a separator before the next.
    this.runs = new Int32Array(2 * (Math.floor(buf.length / 12) + 1));
  }

  /**
   * "i g n o r e" -> "ignore" in `buf[0, n)` for runs of 6+ single letters. A wider gap in a
   * run stays a space: `gaps[0, gapCount)` are, ascending, the positions of the spaces that
   * stand for two or more whitespace characters. Returns the new length.
   */
  join(n: number, gaps: Int32Array, gapCount: number): number {
    const buf = this.buf;
    this.joined = 0;
    let g = 0; // the first wide gap not before the letter being copied
    // A lone letter: no word character on either side.
    const single = (k: number): boolean =>
      isSpacedLetter(buf[k]) && (k === 0 || !isWordChar(buf[k - 1])) && (k + 1 >= n || !isWordChar(buf[k + 1]));
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
        if (letters >= MIN_SPACED_LETTERS) {
          this.runs[2 * this.joined] = w;
          for (let j = i; j <= k; j += 2) {
            buf[w++] = buf[j];
            while (g < gapCount && gaps[g] <= j) g++;
            if (j < k && g < gapCount && gaps[g] === j + 1) buf[w++] = SPACE;
          }
          this.runs[2 * this.joined + 1] = w;
          this.joined++;
          i = k + 1;
          continue;
        }
      }
      buf[w++] = buf[i++];
    }
    if (w !== n) this.words.relist(buf, w);
    return w;
  }
}
