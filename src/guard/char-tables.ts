/**
 * Character tables of the injection normaliser (normalize.ts), built once per process on
 * first use: the BMP fold table (lower case, accents, lookalikes, invisible characters,
 * symbols read as spaces), the astral symbols (emoji), the mixed-script homoglyph table,
 * character classes, and the leetspeak and base64 alphabets. Building the tables takes
 * some tens of milliseconds, once.
 */
import { ALWAYS_FOLD, INVISIBLE_RANGES, MIXED_SCRIPT_FOLD, WORD_DIVIDERS } from './confusables.js';

export const DROP = 0;
export const EXPAND_SS = 0xffff;
/** A character NFKC would change into several (ligatures, Hangul, non-BMP letters). */
export const NEEDS_NFKC = 0xfffe;
/** High surrogate of plane 14: Unicode tag characters and variation selectors. */
export const TAG_LEAD = 0xfffd;
export const SPACE = 0x20;
export const NEWLINE = 0x0a;

let foldTable: Uint16Array | undefined;
let mixedTable: Uint16Array | undefined;

/** Lower-case + accent fold + lookalike table for the BMP, built once per process. */
export function getFoldTable(): Uint16Array {
  if (foldTable) return foldTable;
  const t = new Uint16Array(0x10000);
  const mark = /\p{M}/gu;
  for (let c = 0; c < 0x10000; c++) {
    if (c >= 0xd800 && c <= 0xdfff) {
      t[c] = c;
      continue;
    }
    const s = String.fromCharCode(c);
    if (c === 0x0a || c === 0x0b || c === 0x0c || c === 0x0d || c === 0x85 || c === 0x2028 || c === 0x2029) {
      t[c] = NEWLINE;
    } else if (/\s/.test(s) || c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      t[c] = SPACE;
    } else if (ALWAYS_FOLD[s] !== undefined) {
      t[c] = ALWAYS_FOLD[s].charCodeAt(0);
    } else {
      const lower = s.toLowerCase();
      const folded = lower.normalize('NFKD').replace(mark, '');
      if (folded.length === 1) t[c] = readsAsSpace(folded.charCodeAt(0)) ? SPACE : folded.charCodeAt(0);
      else if (folded.length === 0) t[c] = DROP;
      else t[c] = NEEDS_NFKC;
    }
  }
  for (const [from, to] of INVISIBLE_RANGES) for (let c = from; c <= to; c++) t[c] = DROP;
  // High surrogates: mathematical letters (U+1D400..) and other non-BMP text go through NFKC,
  // except Unicode tag characters (DB40), which the fold loop decodes itself.
  for (let c = 0xd800; c <= 0xdbff; c++) t[c] = c === 0xdb40 ? c : NEEDS_NFKC;
  t[0xdf] = EXPAND_SS; // ß
  t[0x1e9e] = EXPAND_SS; // ẞ
  foldTable = t;
  return t;
}

export function getMixedTable(): Uint16Array {
  if (mixedTable) return mixedTable;
  const t = new Uint16Array(0x10000);
  for (const [from, to] of Object.entries(MIXED_SCRIPT_FOLD)) t[from.charCodeAt(0)] = to.charCodeAt(0);
  mixedTable = t;
  return t;
}

export const C_WORD = 1;
export const C_SUSPECT = 2;
export const C_BASE64 = 4;
export const C_VISIBLE = 8;
let classTable: Uint8Array | undefined;

/**
 * Character classes. For a folded character: visible, word character, suspect (a leet
 * digit or a lookalike the word pass must look at); combined into the fold-class table
 * below. For an input character: base64 alphabet.
 */
export function getClassTable(): Uint8Array {
  if (classTable) return classTable;
  const t = new Uint8Array(0x10000);
  const mixed = getMixedTable();
  for (let c = 0; c < 0x10000; c++) {
    let k = 0;
    if (c > SPACE && c !== EXPAND_SS && c !== NEEDS_NFKC && c !== TAG_LEAD && c !== 0x7f) k |= C_VISIBLE;
    if (isWordChar(c)) k |= C_WORD;
    if ((c >= 0x30 && c <= 0x39) || c === 0x40 || c === 0x24 || mixed[c] !== 0) k |= C_SUSPECT;
    if (c < 128 && (B64_VALUES[c] >= 0 || c === 0x3d)) k |= C_BASE64;
    t[c] = k;
  }
  classTable = t;
  return t;
}

/**
 * Flags of a fold-class entry (bits above the folded character). A character with
 * `F_WORD` folds to one letter, digit or non-ASCII character, a word character for every
 * step of the normaliser: the fold loop's fast path.
 */
export const F_WORD = 1 << 16;
/** Folds to one visible character (a word character or punctuation). */
export const F_VISIBLE = 1 << 17;
/** Folds to a character the word pass must look at (a leet digit, '@', '$', a lookalike). */
export const F_SUSPECT = 1 << 18;
/** Folds to whitespace: SPACE or NEWLINE. */
export const F_SPACE = 1 << 19;

let foldClassTable: Uint32Array | undefined;

/** fold[c] | flags: one read per input character in the fold loop. */
export function getFoldClassTable(): Uint32Array {
  if (foldClassTable) return foldClassTable;
  const fold = getFoldTable();
  const cls = getClassTable();
  const t = new Uint32Array(0x10000);
  for (let c = 0; c < 0x10000; c++) {
    const m = fold[c];
    const k = cls[m];
    const plainWord = (k & C_WORD) !== 0 && m !== 0x40 && m !== 0x24; // '@' and '$' end listed words
    let flags = 0;
    if ((k & C_VISIBLE) !== 0) flags |= F_VISIBLE | (plainWord ? F_WORD : 0) | ((k & C_SUSPECT) !== 0 ? F_SUSPECT : 0);
    else if (m === SPACE || m === NEWLINE) flags |= F_SPACE;
    t[c] = m | flags;
  }
  t[0xdb40] = TAG_LEAD; // plane 14 (tag characters, variation selectors): the slow path
  foldClassTable = t;
  return t;
}

const LEET: Readonly<Record<string, string>> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' };
export const leetTable = new Uint16Array(128);
for (const [k, v] of Object.entries(LEET)) leetTable[k.charCodeAt(0)] = v.charCodeAt(0);

export const isAsciiLetter = (c: number): boolean => c >= 0x61 && c <= 0x7a;
/**
 * A character that belongs to a word: letters, digits, '@', '$', and anything non-ASCII but
 * symbols and surrogates (emoji, pictographs, arrows, math and currency signs). A symbol
 * glued to a word is a break, as a space: "😀Ignore all previous instructions" is read as
 * "ignore all ...", not as one unknown first word.
 */
export const isWordChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x40 || c === 0x24 || (c >= 0x80 && !isSymbolUnit(c));

const SYMBOL = /^\p{S}$/u;
/** A surrogate (astral characters left after NFKC are emoji and other symbols) or a BMP symbol (\p{S}). */
const isSymbolUnit = (c: number): boolean => (c >= 0xd800 && c <= 0xdfff) || SYMBOL.test(String.fromCharCode(c));
export const isSpacedSeparator = (c: number): boolean => c === SPACE || c === 0x2e || c === 0x2d || c === 0x5f || c === 0x2a;

/**
 * A (folded) BMP character read as a space wherever it stands: a symbol outside ASCII
 * (arrows, stars, emoji, currency and math signs) or a word divider (middle dots, bullets,
 * the blank Hangul fillers; confusables.ts). Between the words of a phrase they hid it from
 * the patterns, whose words are set apart by spaces ("Ignore→all→previous→instructions").
 * A character that folds to a letter stays one (circled Ⓐ is a symbol, folded to `a`
 * first), and ASCII symbols keep their meaning (`<|im_start|>`, leetspeak `$`).
 */
const readsAsSpace = (c: number): boolean => c >= 0x80 && (WORD_DIVIDERS.includes(c) || SYMBOL.test(String.fromCharCode(c)));

let astralSymbols: Uint8Array | undefined;

/**
 * One bit per code point of plane 1 (U+10000..U+1FFFF), set for symbols (\p{S}: emoji,
 * pictographs, musical and other symbols; no other astral plane has any), built once per
 * process (a few milliseconds). Read by `isAstralSymbol`.
 */
export function getAstralSymbolTable(): Uint8Array {
  if (astralSymbols) return astralSymbols;
  const t = new Uint8Array(0x10000 >> 3);
  for (let cp = 0x10000; cp < 0x20000; cp++) {
    if (ASTRAL_SYMBOL.test(String.fromCodePoint(cp))) t[(cp - 0x10000) >> 3] |= 1 << (cp & 7);
  }
  astralSymbols = t;
  return t;
}
const ASTRAL_SYMBOL = /^\p{S}$/u;

/**
 * Whether the surrogate pair `hi`, `lo` is a symbol (an emoji) in `table`
 * (getAstralSymbolTable): read as a space, as BMP symbols are.
 */
export const isAstralSymbol = (table: Uint8Array, hi: number, lo: number): boolean => {
  if (hi < 0xd800 || hi > 0xd83f || lo < 0xdc00 || lo > 0xdfff) return false; // plane 1 only
  const offset = ((hi - 0xd800) << 10) | (lo - 0xdc00);
  return (table[offset >> 3] & (1 << (offset & 7))) !== 0;
};

export const B64_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  B64_VALUES['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
}
