/**
 * The injection normaliser: turns what a person (or an attacker) typed into one canonical
 * form that the phrase families and the model read. Steps, in order:
 *
 * 1. Cap (input-cap.ts): inputs longer than `maxChars` are scanned as the first 3/4 and
 *    last 1/4 of that budget (injections sit at the start or are appended at the end; the
 *    middle of a very long document is not scanned).
 * 2. Encoded payloads: runs of 24+ base64 characters that decode to text (UTF-8 with word
 *    breaks, base64.ts) are decoded and appended (so "aWdub3JlIGFsbC..." is read as
 *    "ignore all ...").
 * 3. Unicode NFKC, then per character: lower case, accents folded (ä -> a, ß -> ss),
 *    zero-width / bidi / soft-hyphen characters dropped, Unicode tag characters (invisible
 *    "ASCII smuggling") decoded, quotes and dashes unified, Latin lookalikes (small
 *    capitals, ı, ɡ) folded, symbols outside ASCII (arrows, stars, emoji), middle dots,
 *    bullets, blank Hangul fillers and '/' (not after punctuation: `://`, `</`, `[/`) read
 *    as a space, whitespace runs collapsed to one space (or one newline when the run held a
 *    line break). Single-character NFKC mappings (full-width, circled, superscript letters)
 *    are part of the fold table; `normalize('NFKC')` itself only runs for text holding a
 *    character NFKC expands (ligatures, non-BMP letters such as 𝐚, Hangul).
 * 4. Per word (word-fold.ts): Cyrillic/Greek/Armenian homoglyphs folded to Latin when the
 *    word mixes them with Latin letters; leetspeak (0 1 3 4 5 7 @ $) decoded in words with
 *    2+ letters.
 * 5. Letter-spaced words ("i g n o r e", "i.g.n.o.r.e", 6+ letters, not digits) joined
 *    (spaced-letters.ts); a wider gap in the run stays a word break ("p r i n t   y o u r"
 *    -> "print your").
 * 6. Words as the model and the phrase triggers read them (runs of letters, digits,
 *    apostrophes and non-ASCII characters but symbols, which step 3 made spaces) listed
 *    with their FNV-1a hashes, while folding.
 *
 * The result lives in buffers owned by the normaliser, reused by every call (one per
 * scanner; `scan` is synchronous so calls never interleave). Only the final string and,
 * for long input or text that needs NFKC, the capped/NFKC copy are allocated.
 */
import { decodeBase64Text, findBase64Runs, MAX_BASE64_CHARS, MAX_BASE64_PAYLOADS, MIN_BASE64_RUN as MIN_RUN } from './base64.js';
import * as tables from './char-tables.js';
import { CodeUnits } from './code-units.js';
import { getAstralSymbolTable, getFoldClassTable, isAstralSymbol, isSpacedSeparator } from './char-tables.js';
import { headAndTail, nfkcWithin } from './input-cap.js';
import { isSpacedUnit, MAX_DIGITS_IN_A_ROW, MIN_SPACED_LETTERS, SpacedLetterJoiner } from './spaced-letters.js';
import { WordFolder } from './word-fold.js';
import { FNV_OFFSET as OFFSET, fnvStep as step, WordList } from './word-list.js';

// Module-local copies of what the fold loop reads per character: V8 compiles these to
// constants, while every read of an imported binding loads it and checks it is initialised.
const { EXPAND_SS, F_SPACE, F_SUSPECT, F_VISIBLE, F_WORD, NEEDS_NFKC, NEWLINE, SPACE, TAG_LEAD } = tables;
const MIN_BASE64_RUN = MIN_RUN;
const FNV_OFFSET = OFFSET;
const fnvStep = step;

const APOSTROPHE = 0x27;
/** The fold-class entries of '/' (also full-width '／') and of a space. */
const SLASH_CLASS = 0x2f | F_VISIBLE;
const SPACE_CLASS = SPACE | F_SPACE;
const MAX_SUSPECTS = 256;
/** `lastLone` before a pass's first one-character word: no word, not even one at 0, follows it (no `buf[-1]` read). */
const NO_LONE = -3;
/** Tokens long enough to hold a base64 run, remembered per fold; past this, every token is searched. */
const MAX_LONG_TOKENS = 16;

export interface NormalizerOptions {
  /** Input characters scanned at most (default 8192): head 3/4, tail 1/4. */
  maxChars?: number;
}

/**
 * Reusable normaliser. Not shared across concurrent async work: `normalize` is
 * synchronous and the buffer is overwritten by the next call.
 */
export class TextNormalizer {
  readonly maxChars: number;
  /** Normalised UTF-16 code units; valid up to the length `normalize` returned. */
  readonly buf: Uint16Array;
  private readonly result: CodeUnits;
  /** fold[c] | F_* flags: one read per input character. */
  private readonly foldClass = getFoldClassTable();
  /** Emoji and other astral symbols, read as a space (char-tables.ts). */
  private readonly astralSymbols = getAstralSymbolTable();
  /** The text being folded, copied in. */
  private readonly source: CodeUnits;
  /** Obfuscation undone by the last call: base64 payloads, tag characters, mixed-script and letter-spaced words. */
  obfuscations = 0;
  /**
   * Of those, the letter-spaced runs joined, at `spacedRuns` ([start, end) pairs into the
   * result): a letter list ("a b c d a b c d") is joined too, so the feature extractor counts
   * a run as obfuscation only where it spells a phrase.
   */
  spacedRunCount = 0;
  /**
   * Of those, the runs that hold part of an attack word ("ignoreallprevious", spaced-letters.ts):
   * obfuscation wherever they stand, though single spaces leave no word a pattern matches.
   */
  spacedAttackWordRuns = 0;
  /**
   * Base64 runs seen by the last fold: [start, end) pairs into the source units. Room for
   * every run the source can hold, so runs that are not text (hashes, ids) cannot use up
   * the MAX_BASE64_PAYLOADS payloads read before a later run that is.
   */
  private readonly runs: Int32Array;
  private runCount = 0;
  /** Tokens of MIN_BASE64_RUN+ units seen by the last fold: [start, end) pairs into the source units. */
  private readonly longTokens = new Int32Array(MAX_LONG_TOKENS * 2);
  /** Words holding a character the word pass must look at (leet digits, lookalikes), counted while folding. */
  private suspects = 0;
  /** Where they start in `buf` (the first MAX_SUSPECTS). */
  private readonly suspectAt = new Int32Array(MAX_SUSPECTS);
  /**
   * Where a whitespace run of two or more characters became one space in `buf`, ascending:
   * a word break inside a letter-spaced phrase (step 5).
   */
  private readonly wideGaps: Int32Array;
  private wideGapCount = 0;
  /** Longest letter-spaced run seen while folding ("i g n o r e" is 6), see `endWord`. */
  private spacedRun = 0;
  /** The run being read: its length and where its last letter is in `buf`. */
  private loneRun = 0;
  private lastLone = NO_LONE;
  /** Leet digits at the end of the run being read, in a row (at most MAX_DIGITS_IN_A_ROW, or the run ends). */
  private loneDigits = 0;
  /**
   * Words of the last call's result (step 6). Listed while folding; step 4 lists again the
   * words it changes, and step 5, which moves text, has the whole list made again.
   */
  readonly words: WordList;
  /** Step 4, on `buf` and `words`. */
  private readonly wordFolder: WordFolder;
  /** Step 5, on `buf` and `words`. */
  private readonly spacedLetters: SpacedLetterJoiner;

  constructor(opts: NormalizerOptions = {}) {
    this.maxChars = Math.max(256, opts.maxChars ?? 8192);
    // ß may expand to two units; decoded base64 payloads are appended.
    this.result = new CodeUnits(this.maxChars * 2 + MAX_BASE64_PAYLOADS * (MAX_BASE64_CHARS + 1));
    this.buf = this.result.units;
    // A fold reads at most buf.length / 2 input units (see `load`), plus a sentinel.
    this.source = new CodeUnits((this.buf.length >> 1) + 1);
    this.runs = new Int32Array(2 * (Math.floor(this.source.units.length / MIN_BASE64_RUN) + 1));
    // Every word but the last is followed by a unit that is not part of a word.
    this.words = new WordList((this.buf.length >> 1) + 1);
    // Each is a space followed by a non-space unit in `buf`.
    this.wideGaps = new Int32Array((this.buf.length >> 1) + 1);
    this.wordFolder = new WordFolder(this.buf, this.words);
    this.spacedLetters = new SpacedLetterJoiner(this.result, this.words);
  }

  /** Normalises `text` into `buf` and returns the number of code units written. */
  normalizeToBuffer(text: string): number {
    let input = text;
    if (input.length > this.maxChars) {
      input = headAndTail(input, Math.floor(this.maxChars * 0.75), this.maxChars + 1);
    }
    this.obfuscations = 0;
    this.spacedRunCount = 0;
    this.spacedAttackWordRuns = 0;
    this.suspects = 0;
    this.spacedRun = 0;
    this.wideGapCount = 0;
    this.words.count = 0;
    let n = this.foldInto(input, 0, true);
    if (this.runCount > 0) {
      // Decode every run before folding a payload: folding overwrites the source units.
      const payloads: string[] = [];
      for (let r = 0; r < this.runCount && payloads.length < MAX_BASE64_PAYLOADS; r++) {
        const decoded = decodeBase64Text(this.source.toString(this.runs[2 * r], this.runs[2 * r + 1]));
        if (decoded !== undefined) payloads.push(decoded);
      }
      for (const payload of payloads) {
        this.obfuscations++;
        this.buf[n++] = NEWLINE;
        n = this.foldInto(payload, n, false);
      }
    }
    if (this.suspects > 0) this.obfuscations += this.wordFolder.fold(n, this.suspectAt, this.suspects);
    if (this.spacedRun >= MIN_SPACED_LETTERS) {
      n = this.spacedLetters.join(n, this.wideGaps, this.wideGapCount);
      this.spacedRunCount = this.spacedLetters.joined;
      this.spacedAttackWordRuns = this.spacedLetters.spellingAttackWord;
      this.obfuscations += this.spacedRunCount;
    }
    return n;
  }

  /** Where the letter-spaced runs of the last call are: `spacedRunCount` [start, end) pairs. */
  get spacedRuns(): Int32Array {
    return this.spacedLetters.runs;
  }

  /** Normalises `text` and returns it as a string. */
  normalize(text: string): string {
    const n = this.normalizeToBuffer(text);
    return this.toString(n);
  }

  /** The first `n` units of `buf` as a string (one allocation). */
  toString(n: number): string {
    return this.result.toString(0, n);
  }

  /**
   * Step 3: NFKC + per-character folding, whitespace collapsing; with `findBase64`, also
   * records runs of 24+ base64 characters. Returns the new length.
   */
  private foldInto(raw: string, start: number, findBase64: boolean): number {
    const { obfuscations, suspects, spacedRun, wideGapCount } = this;
    const n = this.foldPass(this.load(raw, start), start, findBase64, true);
    if (n >= 0) return n;
    // Only text with characters NFKC changes into several pays for normalize('NFKC');
    // single-character compatibility forms are already in the fold table.
    this.obfuscations = obfuscations;
    this.suspects = suspects;
    this.spacedRun = spacedRun;
    this.wideGapCount = wideGapCount;
    const room = (this.buf.length - 2 - start) >> 1; // what a fold from buf[start] can read (see `load`)
    return this.foldPass(this.load(nfkcWithin(raw, room), start), start, findBase64, false);
  }

  /**
   * Copies the part of `text` a fold starting at `buf[start]` can read into the source units
   * and returns its length. Each character writes at most two units, so this bound keeps
   * the fold inside `buf`.
   */
  private load(text: string, start: number): number {
    const len = Math.min(text.length, (this.buf.length - 2 - start) >> 1);
    this.source.write(text, len);
    return len;
  }

  /**
   * One folding pass over the source units `[0, len)` into `buf` from `start`; returns -1
   * when the text needs NFKC first and `canRestart`.
   *
   * The text is read a word at a time: the inner loop copies characters that fold to one
   * letter, digit or non-ASCII character and hashes the word (most of the text); everything
   * else (whitespace, punctuation, the special characters) and the bookkeeping per word
   * happen between words. Besides folding, the pass notes what the later steps need, so
   * they do not rescan the text: words to fold (leet digits, lookalikes), the longest
   * letter-spaced run, the long tokens where base64 runs can be, and the listed words.
   *
   * Two word notions meet here: step 4 and 5 read words of letters, digits, '@' and '$'
   * (`wordStart`); step 6 lists words of letters, digits and apostrophes (`listedStart`).
   */
  private foldPass(len: number, start: number, findBase64: boolean, canRestart: boolean): number {
    const src = this.source.units;
    const buf = this.buf;
    const foldClass = this.foldClass;
    src[len] = SPACE; // a sentinel: ends the last word
    let n = start;
    let i = 0;
    let wordStart = n; // where the current word (steps 4, 5) began in buf
    let wordFlags = 0; // the F_* flags of its characters, or-ed
    let listedStart = n; // where the current listed word began in buf
    let hash = FNV_OFFSET; // and its hash so far
    const wordAt = this.words.at;
    const wordHashes = this.words.hashes;
    let words = this.words.count; // written back at the end (a restart leaves it as it was)
    let tokenStart = n; // where the current whitespace-delimited token began in buf
    let tokenStartIn = 0; // and in src
    let longTokens = 0;
    this.lastLone = NO_LONE;
    for (;; i++) {
      let fk = foldClass[src[i]];
      while ((fk & F_WORD) !== 0) {
        buf[n++] = fk; // the low 16 bits: the folded character
        wordFlags |= fk;
        hash = fnvStep(hash, fk & 0xffff);
        fk = foldClass[src[++i]];
      }
      if (i >= len) break;
      if (fk === TAG_LEAD) {
        // Plane 14: tag characters U+E0020..U+E007E carry hidden ASCII ("ASCII smuggling"),
        // read as the characters themselves (a letter not as a suspect, a tag space as a
        // space); variation selectors U+E0100.. are invisible.
        const lo = src[i + 1]; // the sentinel when i + 1 === len
        if (lo < 0xdc00 || lo > 0xdfff) continue;
        i++;
        if (lo > 0xdc7f) continue;
        this.obfuscations++;
        const ascii = lo - 0xdc00;
        if (ascii < 0x20 || ascii > 0x7e) continue;
        fk = foldClass[ascii] & ~F_SUSPECT;
        if ((fk & F_WORD) !== 0) {
          buf[n++] = fk;
          hash = fnvStep(hash, fk & 0xffff);
          continue;
        }
      }
      // '/' divides words ("and/or", "Ignore/all/previous") but is base64 too, so it does not
      // end a token; after punctuation it stays: a URL's "://", a closing tag ("</system>",
      // "[/INST]", "<</SYS>>"). An emoji left after NFKC reads as a space, as BMP symbols
      // do (the fold table).
      let endsToken = true;
      if (fk === SLASH_CLASS && !(n > start && isAsciiPunctuation(buf[n - 1]))) {
        fk = SPACE_CLASS;
        endsToken = false;
      } else if (fk === NEEDS_NFKC && !canRestart && isAstralSymbol(this.astralSymbols, src[i], src[i + 1])) {
        i++;
        fk = SPACE_CLASS;
      }
      if ((fk & F_SPACE) !== 0) {
        // Whitespace ends words and a token; runs collapse, a run holding a newline to one newline.
        this.endWord(wordStart, n, wordFlags);
        if (n > listedStart) {
          wordAt[words] = listedStart;
          wordHashes[words++] = hash;
        }
        if (endsToken && findBase64 && n - tokenStart >= MIN_BASE64_RUN) {
          if (longTokens < MAX_LONG_TOKENS) {
            this.longTokens[2 * longTokens] = tokenStartIn;
            this.longTokens[2 * longTokens + 1] = i;
          }
          longTokens++;
        }
        const last = n === 0 ? SPACE : buf[n - 1];
        if (last !== SPACE && last !== NEWLINE) buf[n++] = fk;
        else if (fk === (F_SPACE | NEWLINE) && n > start) buf[n - 1] = NEWLINE;
        else if (n > start) this.noteWideGap(n - 1);
        wordStart = listedStart = n;
        if (endsToken) {
          tokenStart = n;
          tokenStartIn = i + 1;
        }
        wordFlags = 0;
        hash = FNV_OFFSET;
        continue;
      }
      if ((fk & F_VISIBLE) === 0) {
        const c = src[i];
        const m = fk & 0xffff;
        if (m === NEEDS_NFKC) {
          if (canRestart) return -1;
          if (c < 0xd800 || c > 0xdbff) {
            buf[n++] = c; // already NFKC (a Hangul syllable): a word character, kept as is
            hash = fnvStep(hash, c);
            continue;
          }
          // Another non-BMP character NFKC left as it is (not a symbol: an ideograph of
          // CJK extension B, a historic script) is a break, as its low half (char-tables.ts).
          this.endWord(wordStart, n, wordFlags);
          wordFlags = 0;
          wordStart = n + 1;
          if (n > listedStart) {
            wordAt[words] = listedStart;
            wordHashes[words++] = hash;
          }
          hash = FNV_OFFSET;
          listedStart = n + 1;
          buf[n++] = c;
          continue;
        }
        if (m === EXPAND_SS) {
          buf[n++] = 0x73;
          buf[n++] = 0x73;
          hash = fnvStep(fnvStep(hash, 0x73), 0x73);
          continue;
        }
        continue; // DROP
      }
      // Punctuation. An apostrophe ends only the word of steps 4 and 5, '@' and '$' only
      // the listed word; anything else ends both.
      const m = fk & 0xffff;
      if (m !== 0x40 && m !== 0x24) {
        this.endWord(wordStart, n, wordFlags);
        wordFlags = 0;
        wordStart = n + 1;
      } else wordFlags |= fk;
      if (m !== APOSTROPHE) {
        if (n > listedStart) {
          wordAt[words] = listedStart;
          wordHashes[words++] = hash;
        }
        hash = FNV_OFFSET;
        listedStart = n + 1;
      } else hash = fnvStep(hash, m);
      buf[n++] = m;
    }
    this.endWord(wordStart, n, wordFlags);
    if (n > listedStart) {
      wordAt[words] = listedStart;
      wordHashes[words++] = hash;
    }
    this.words.count = words;
    if (findBase64) {
      if (n - tokenStart >= MIN_BASE64_RUN) {
        if (longTokens < MAX_LONG_TOKENS) {
          this.longTokens[2 * longTokens] = tokenStartIn;
          this.longTokens[2 * longTokens + 1] = len;
        }
        longTokens++;
      }
      // A base64 run lies inside one long token: look for runs only there (or, past
      // MAX_LONG_TOKENS of them, everywhere).
      this.runCount = 0;
      if (longTokens > MAX_LONG_TOKENS) this.runCount = findBase64Runs(src, 0, len, this.runs, 0);
      else {
        for (let t = 0; t < longTokens; t++) {
          this.runCount = findBase64Runs(src, this.longTokens[2 * t], this.longTokens[2 * t + 1], this.runs, this.runCount);
        }
      }
    }
    return n;
  }

  /**
   * The word `buf[from, to)` ended (it may be empty). Lists it for the word pass when it
   * holds a suspect character, and extends the letter-spaced run when it is one letter (or
   * leet digit) two units after the last such word with a separator between ("i g n",
   * "i.g.n", "i g n 0"). Runs are the joiner's (spaced-letters.ts): a run starts and ends
   * with a letter and has at most MAX_DIGITS_IN_A_ROW digits in a row, so spaced digits
   * ("1 3 5 7 0 1", "a 1 1 1 b 1 1 1") never make the joiner run.
   */
  private endWord(from: number, to: number, flags: number): void {
    if ((flags & F_SUSPECT) !== 0) {
      if (this.suspects < MAX_SUSPECTS) this.suspectAt[this.suspects] = from;
      this.suspects++;
    }
    if (to - from !== 1) return;
    const c = this.buf[from];
    if (!isSpacedUnit(c)) return;
    const continues = from === this.lastLone + 2 && isSpacedSeparator(this.buf[from - 1]);
    this.lastLone = from;
    if (c < 0x30 || c > 0x39) {
      // A letter (a spaced unit that is no digit): a run ends here.
      this.loneRun = continues ? this.loneRun + 1 : 1;
      this.loneDigits = 0;
      if (this.loneRun > this.spacedRun) this.spacedRun = this.loneRun;
    } else if (continues && this.loneRun > 0 && ++this.loneDigits <= MAX_DIGITS_IN_A_ROW) this.loneRun++;
    else this.loneRun = 0; // a digit neither starts a run nor is a third in a row
  }

  /** A whitespace run went on past the space at `buf[at]`. */
  private noteWideGap(at: number): void {
    const count = this.wideGapCount;
    if (count === 0 || this.wideGaps[count - 1] !== at) this.wideGaps[this.wideGapCount++] = at;
  }
}

/** ASCII punctuation and symbols: neither a letter, a digit nor whitespace. */
const isAsciiPunctuation = (c: number): boolean =>
  (c > 0x20 && c < 0x30) || (c > 0x39 && c < 0x41) || (c > 0x5a && c < 0x61) || (c > 0x7a && c < 0x7f);
