/**
 * Step 4 of the injection normaliser (normalize.ts): per word, undo the character
 * substitutions an attacker makes inside a word. Cyrillic, Greek and Armenian homoglyphs
 * are folded to Latin when the word mixes them with Latin letters ("іgnоrе" -> "ignore",
 * while "инструкции" stays Cyrillic); leetspeak (0 1 3 4 5 7 @ $) is decoded in words with
 * two or more letters ("1gn0r3" -> "ignore", but not "12345", "$50" or "$var1").
 *
 * Works in place on the normaliser's buffer, after the fold pass (step 3), and only on the
 * words that pass listed as holding such a character (the "suspects").
 */
import { getMixedTable, isAsciiLetter, isWordChar, leetTable } from './char-tables.js';
import type { WordList } from './word-list.js';

/**
 * Changed words listed again one at a time per `fold` call, at most; past this the whole
 * list is made again once at the end. A word whose '@' or '$' became a letter joins two
 * listed words, and listing it again moves the rest of the list: one at a time, a text of
 * such words ("p@ss p@ss ...") cost time quadratic in its length.
 */
const MAX_WORD_RELISTS = 32;

/** Folds homoglyphs and leetspeak in the words of one buffer. One per normaliser, reused by every call. */
export class WordFolder {
  private readonly mixed = getMixedTable();
  /** Words whose lookalikes the current `fold` call folded. */
  private lookalikeWords = 0;
  /** Words the current `fold` call changed (see MAX_WORD_RELISTS). */
  private changedWords = 0;

  /**
   * @param buf the normaliser's buffer, changed in place
   * @param words its word list, kept in step where a word changes
   */
  constructor(
    private readonly buf: Uint16Array,
    private readonly words: WordList,
  ) {}

  /**
   * Folds the words of `buf[0, n)` that start at `suspectAt[0, suspects)` (ascending); past
   * `suspectAt.length` suspects the list is incomplete and every word is looked at. Returns
   * the number of mixed-script words folded (obfuscation undone).
   */
  fold(n: number, suspectAt: Int32Array, suspects: number): number {
    const buf = this.buf;
    this.lookalikeWords = 0;
    this.changedWords = 0;
    if (suspects <= suspectAt.length) {
      // The words were listed while folding (ascending): visit just those.
      let end = 0;
      for (let s = 0; s < suspects; s++) {
        const pos = suspectAt[s];
        if (pos >= end) end = this.foldWordAt(pos, n);
      }
    } else {
      // Past the list's capacity the list is incomplete: look at every word.
      const mixed = this.mixed;
      for (let i = 0; i < n; ) {
        const c = buf[i];
        i = (c < 128 ? leetTable[c] !== 0 : mixed[c] !== 0) ? this.foldWordAt(i, n) : i + 1;
      }
    }
    if (this.changedWords > MAX_WORD_RELISTS) this.words.relist(buf, n);
    return this.lookalikeWords;
  }

  /** Folds the word around `i` (and, for the first MAX_WORD_RELISTS changed words, keeps the word list in step); returns the index after it. */
  private foldWordAt(i: number, n: number): number {
    const buf = this.buf;
    const mixed = this.mixed;
    let begin = i;
    while (begin > 0 && isWordChar(buf[begin - 1])) begin--;
    let end = begin;
    let ascii = 0;
    let lookalikes = 0;
    let leet = 0;
    let changed = false;
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
      this.lookalikeWords++;
      changed = true;
    }
    // Leetspeak, except in "$variable1" / "@handle1" style names.
    if (leet > 0 && ascii >= 2 && buf[begin] !== 0x24 && buf[begin] !== 0x40) {
      for (let k = begin; k < end; k++) {
        const c = buf[k];
        // '@' only inside a word ("p@ss"), '$' also at its end ("in$truction$").
        if (c < 128 && leetTable[c] !== 0 && ((c !== 0x40 && c !== 0x24) || (k > begin && (k < end - 1 || c === 0x24)))) {
          buf[k] = leetTable[c];
          changed = true;
        }
      }
    }
    // Past MAX_WORD_RELISTS changed words, `fold` lists the whole text again instead.
    if (changed && ++this.changedWords <= MAX_WORD_RELISTS) this.words.relistRange(buf, n, begin, end);
    return Math.max(end, i + 1);
  }
}
