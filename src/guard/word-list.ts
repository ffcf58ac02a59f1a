/**
 * The words of a normalised text as the model and the phrase triggers read them: maximal
 * runs of letters, digits, apostrophes and non-ASCII characters other than symbols (an
 * emoji breaks words like a space; "don't" is one word, "a@b" two), each with its FNV-1a
 * hash. The normaliser lists them while it folds the text
 * (normalize.ts, step 6); the feature extractor hashes word n-grams and looks up trigger
 * words from the list, without reading the text again.
 */

/** 0x811c9dc5 as an int32, so a hash is a small integer from its first step. */
export const FNV_OFFSET = 0x811c9dc5 | 0;
/** One FNV-1a step over a UTF-16 code unit. */
export const fnvStep = (h: number, c: number): number => Math.imul(h ^ c, 0x01000193);

/** FNV-1a over UTF-16 code units: the hash of a listed word. */
export function wordHash(word: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < word.length; i++) h = fnvStep(h, word.charCodeAt(i));
  return h;
}

/** A character of a listed word: a letter, digit, apostrophe or anything non-ASCII. */
export const isListedWordChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x27 || c >= 0x80;

/**
 * Words of one text: `count` of them, word i starting at `at[i]` in the text's buffer,
 * with hash `hashes[i]` (see `wordHash`), in text order. Owned by a normaliser and
 * overwritten by its next call.
 */
export class WordList {
  count = 0;
  readonly at: Int32Array;
  readonly hashes: Int32Array;

  constructor(capacity: number) {
    this.at = new Int32Array(capacity);
    this.hashes = new Int32Array(capacity);
  }

  /** Lists the words of `buf[0, n)` from scratch. */
  relist(buf: Uint16Array, n: number): void {
    let count = 0;
    for (let i = 0; i < n; i++) {
      if (!isListedWordChar(buf[i])) continue;
      this.at[count] = i;
      let hash = FNV_OFFSET;
      for (; i < n && isListedWordChar(buf[i]); i++) hash = fnvStep(hash, buf[i]);
      this.hashes[count++] = hash;
    }
    this.count = count;
  }

  /**
   * Lists again the words that overlap `buf[from, to)`, after characters there changed into
   * letters: the hashes change, and a '@' or '$' that became a letter joins the two words
   * beside it into one. `n` is the text's length. The words around are left as they are.
   */
  relistRange(buf: Uint16Array, n: number, from: number, to: number): void {
    const { at, hashes } = this;
    // First word that may overlap: the last one starting at or before `from`.
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (at[mid] <= from) lo = mid + 1;
      else hi = mid;
    }
    const first = Math.max(0, lo - 1);
    let last = first; // one past the last word starting before `to`
    while (last < this.count && at[last] < to) last++;
    if (last === first) return;
    // Read again the words starting before `to` (the last may reach past it; words starting
    // later did not change). Joins only merge words, so the new ones fit in the old entries.
    let k = first;
    for (let i = at[first]; i < to; i++) {
      if (!isListedWordChar(buf[i])) continue;
      at[k] = i;
      let hash = FNV_OFFSET;
      for (; i < n && isListedWordChar(buf[i]); i++) hash = fnvStep(hash, buf[i]);
      hashes[k++] = hash;
    }
    if (k < last) {
      at.copyWithin(k, last, this.count);
      hashes.copyWithin(k, last, this.count);
      this.count -= last - k;
    }
  }
}
