/**
 * Step 5 of the injection normaliser (normalize.ts): letter-spaced words are joined.
 * "i g n o r e", "i.g.n.o.r.e" or "i-g-n-o-r-e" (single letters with one separator
 * between, 6+ of them) read as "ignore"; a wider gap inside such a run stays a word break
 * ("p r i n t   y o u r" -> "print your"). Shorter runs are left alone ("plan a b c"), and
 * digits are no letters: "seats 1 2 3 4 5 6" is a list of numbers, not a hidden word. A
 * leetspeak digit between letters is read as its letter, as inside a word (word-fold.ts):
 * "i g n 0 r e" -> "ignore".
 *
 * Works in place on the normaliser's buffer, after steps 3 and 4. The fold pass (step 3)
 * notes the longest run, so this step runs only when there is one to join, and where a
 * whitespace run of two or more characters became one space (the wide gaps).
 */
import * as tables from './char-tables.js';
import { isSpacedSeparator, isWordChar } from './char-tables.js';
import type { CodeUnits } from './code-units.js';
import type { WordList } from './word-list.js';

// Module-local copies: V8 compiles them to constants (see normalize.ts).
const { SPACE, leetTable } = tables;

/** Letter-spaced words are joined from this many letters on. */
export const MIN_SPACED_LETTERS = 6;
/**
 * Leetspeak digits a run reads as letters in a row, at most ("r 3 v 3 4 l"). A run ends
 * where more follow, so where a run ends depends on its neighbourhood only: a run that is
 * not joined is short, and looking for runs stays linear in the text.
 */
export const MAX_DIGITS_IN_A_ROW = 2;

/** A word character letter-spacing can hide a word with: a letter, not a digit, '@' or '$'. */
export const isSpacedLetter = (c: number): boolean => isWordChar(c) && (c < 0x30 || c > 0x39) && c !== 0x40 && c !== 0x24;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
/** A leetspeak digit (0 1 3 4 5 7): read as a letter between the letters of a run ("i g n 0 r e"). */
const isLeetDigit = (c: number): boolean => isDigit(c) && leetTable[c] !== 0;

/**
 * A character that may stand in a letter-spaced run: a letter or a leetspeak digit. The
 * fold pass counts runs of these; the joiner keeps a digit only between letters.
 */
export const isSpacedUnit = (c: number): boolean => isSpacedLetter(c) || isLeetDigit(c);

/**
 * Parts of attack words: a joined run holding one anywhere (no word boundaries) counts as
 * obfuscation. Single spaces join a whole phrase into one word ("i g n o r e a l l p r e v
 * i o u s" -> "ignoreallprevious"), which the phrase patterns, written for words, never
 * match. Long and specific enough not to turn up in a letter list ("a b c d a b c d") or in
 * letter-spaced emphasis ("W E L C O M E"); the spaces a wide gap keeps are left out first
 * ("s y s t e m   p r o m p t"). A strong part counts alone; the weak ones are everyday
 * words spelled out for emphasis ("the P R E V I O U S chapter", "a R E V E A L party",
 * "typed d i s r e g a r d on the spelling test") and count only two different together
 * ("disregardprevious", "revealinstructions").
 */
const STRONG_ATTACK_WORD = /ignor|systemprompt|yourprompt|jailbreak|developermode|vergiss|oubliez|olvida|игнор/;
const WEAK_ATTACK_WORD = /disregard|instruc|previous|reveal|override|anweisung|vorherig|bisherig|инструкц/g;

/** Whether a joined run (its wide gaps' spaces left out) holds a strong attack word, or two different weak ones. */
export function holdsAttackWord(run: string): boolean {
  if (STRONG_ATTACK_WORD.test(run)) return true;
  const weak = run.match(WEAK_ATTACK_WORD);
  return weak !== null && new Set(weak).size >= 2;
}

/** Joins letter-spaced words in one buffer. One per normaliser, reused by every call. */
export class SpacedLetterJoiner {
  /** Letter-spaced runs joined by the last `join` call (obfuscation undone). */
  joined = 0;
  /** Of those, the runs that hold attack words (`holdsAttackWord`). */
  spellingAttackWord = 0;
  /**
   * Where they are in the joined text: [start, end) pairs, ascending, `joined` of them. The
   * feature extractor counts a run as obfuscation only where it spells a phrase.
   */
  readonly runs: Int32Array;
  /** The normaliser's buffer (`text.units`), changed in place. */
  private readonly buf: Uint16Array;

  /**
   * @param text the normaliser's buffer, changed in place, and read back as strings
   * @param words its word list, listed again when text moved
   */
  constructor(
    private readonly text: CodeUnits,
    private readonly words: WordList,
  ) {
    this.buf = text.units;
    // A run takes 6 letters and 5 separators at least, and something not a separator before the next.
    this.runs = new Int32Array(2 * (Math.floor(this.buf.length / 12) + 1));
  }

  /**
   * "i g n o r e" -> "ignore" in `buf[0, n)` for runs of 6+ single letters (leetspeak digits
   * between them count and are read as letters; a run starts and ends with a letter and has
   * at most MAX_DIGITS_IN_A_ROW digits in a row: "i g n 0 r e"). A wider gap
   * in a run stays a space: `gaps[0, gapCount)` are, ascending, the positions of the spaces
   * that stand for two or more whitespace characters. Returns the new length.
   */
  join(n: number, gaps: Int32Array, gapCount: number): number {
    const buf = this.buf;
    this.joined = 0;
    this.spellingAttackWord = 0;
    let g = 0; // the first wide gap not before the letter being copied
    // A lone letter or leet digit: no word character on either side. In a run, a unit that
    // is no digit is a letter.
    const single = (k: number): boolean =>
      isSpacedUnit(buf[k]) && (k === 0 || !isWordChar(buf[k - 1])) && (k + 1 >= n || !isWordChar(buf[k + 1]));
    let w = 0;
    let i = 0;
    while (i < n) {
      if (single(i) && !isDigit(buf[i])) {
        let k = i; // the run's last letter: it starts and ends with one
        let digitsInARow = 0;
        for (let j = i; j + 2 < n && isSpacedSeparator(buf[j + 1]) && single(j + 2); ) {
          j += 2;
          if (!isDigit(buf[j])) {
            k = j;
            digitsInARow = 0;
          } else if (++digitsInARow > MAX_DIGITS_IN_A_ROW) break;
        }
        if ((k - i) / 2 + 1 >= MIN_SPACED_LETTERS) {
          this.runs[2 * this.joined] = w;
          for (let j = i; j <= k; j += 2) {
            buf[w++] = isDigit(buf[j]) ? leetTable[buf[j]] : buf[j];
            while (g < gapCount && gaps[g] <= j) g++;
            if (j < k && g < gapCount && gaps[g] === j + 1) buf[w++] = SPACE;
          }
          this.runs[2 * this.joined + 1] = w;
          if (this.holdsAttackWord(this.runs[2 * this.joined], w)) this.spellingAttackWord++;
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

  /** Whether the joined run `buf[from, to)`, without the spaces of its wide gaps, holds attack words. */
  private holdsAttackWord(from: number, to: number): boolean {
    return holdsAttackWord(this.text.toString(from, to).replaceAll(' ', ''));
  }
}
