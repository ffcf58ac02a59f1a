/**
 * Character folding data for the injection normaliser: homoglyphs (after lower-casing)
 * and invisible characters. Kept as data so the normaliser reads as an algorithm.
 *
 * Sources: Unicode TR39 confusables (the Latin lookalikes an attacker can type on a
 * normal keyboard layout: Cyrillic, Greek, Armenian, Latin small capitals and IPA).
 * NFKC already folds full-width, mathematical, circled and super-/subscript letters.
 */

/** Lookalikes that are themselves Latin-ish: always folded. */
export const ALWAYS_FOLD: Readonly<Record<string, string>> = {
  ı: 'i', ȷ: 'j', ɡ: 'g', ɑ: 'a', ɩ: 'i', ʟ: 'l', ɪ: 'i', ᴀ: 'a', ʙ: 'b', ᴄ: 'c', ᴅ: 'd',
  ᴇ: 'e', ɢ: 'g', ʜ: 'h', ᴊ: 'j', ᴋ: 'k', ᴍ: 'm', ɴ: 'n', ᴏ: 'o', ᴘ: 'p', ʀ: 'r', ꜱ: 's',
  ᴛ: 't', ᴜ: 'u', ᴠ: 'v', ᴡ: 'w', ʏ: 'y', ᴢ: 'z', ɾ: 'r', ʋ: 'v', ɛ: 'e', ɔ: 'c', ƅ: 'b',
  // punctuation variants, so patterns can use ASCII quotes and dashes
  '\u2018': "'", '\u2019': "'", '\u201a': "'", '\u201b': "'", '\u2032': "'", '\u02bc': "'", '`': "'",
  '\u00b4': "'", '\u201c': '"', '\u201d': '"', '\u201e': '"', '\u201f': '"', '\u00ab': '"',
  '\u00bb': '"', '\u2033': '"', '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-',
  '\u2014': '-', '\u2015': '-', '\u2212': '-',
};

/**
 * Non-Latin letters that look like Latin ones. Folded only inside a token that also holds
 * an ASCII letter (a mixed-script word such as "іgnоrе"), so real Russian or Greek text
 * keeps its own letters and the Russian phrase patterns still match.
 */
export const MIXED_SCRIPT_FOLD: Readonly<Record<string, string>> = {
  // Cyrillic (lower case; some map the upper-case glyph after lower-casing: в, н, м, т, к)
  а: 'a', в: 'b', е: 'e', ё: 'e', к: 'k', м: 'm', н: 'h', о: 'o', р: 'p', с: 'c', т: 't',
  у: 'y', х: 'x', ѕ: 's', і: 'i', ї: 'i', ј: 'j', һ: 'h', ԁ: 'd', ԛ: 'q', ԝ: 'w', ӏ: 'l',
  ь: 'b', ѵ: 'v', ү: 'y', ɜ: 'e',
  // Greek
  α: 'a', β: 'b', γ: 'y', ε: 'e', ζ: 'z', η: 'n', ι: 'i', κ: 'k', μ: 'u', ν: 'v', ο: 'o',
  ρ: 'p', τ: 't', υ: 'u', χ: 'x', ω: 'w', ϲ: 'c', ϳ: 'j', ς: 'c',
  // Armenian
  օ: 'o', ս: 'u', ո: 'n', հ: 'h', ց: 'g', զ: 'q',
};

/**
 * Code points removed outright: zero-width and joiner characters, bidi controls, soft
 * hyphen, variation selectors and zero-width fillers. Ranges are inclusive pairs.
 */
export const INVISIBLE_RANGES: readonly (readonly [number, number])[] = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x061c, 0x061c], [0x17b4, 0x17b5],
  [0x180b, 0x180f], [0x200b, 0x200f], [0x202a, 0x202e], [0x2060, 0x206f],
  [0xfe00, 0xfe0f], [0xfeff, 0xfeff], [0xfff9, 0xfffb],
];

/**
 * Characters that are not symbols (\p{S}) yet stand between words as a space does, read as
 * a space: the middle dots and bullets that divide words (·, •, ‧, ⸱, ・), and the Hangul
 * fillers, letters that render as a wide blank (U+115F, U+1160, U+3164, U+FFA0; NFKC
 * makes the last two U+1160). Deleting a filler ran the words around it together.
 */
export const WORD_DIVIDERS: readonly number[] = [0x00b7, 0x2022, 0x2027, 0x2e31, 0x30fb, 0x115f, 0x1160, 0x3164, 0xffa0];
