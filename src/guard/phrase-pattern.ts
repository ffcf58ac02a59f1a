/**
 * The shape of a phrase family and the helpers its patterns are written with.
 *
 * A pattern is a regular expression over the *normalised* text (see normalize.ts: lower
 * case, accents folded, one space or line break between words) plus the words a match can
 * start with. The scanner tries the pattern, compiled with the sticky flag, only where one
 * of those trigger words occurs (see features.ts); a pattern that needs context before its
 * first word uses a lookbehind.
 */

export interface PhrasePattern {
  /** The words a match can start with (whole words of the normalised text). */
  readonly triggers: readonly string[];
  /** Regular-expression source; compiled with the sticky flag. */
  readonly source: string;
}

export interface PhraseFamily {
  /** Signal name reported by the scanner. */
  readonly name: string;
  /** Logit weight before training. */
  readonly prior: number;
  readonly patterns: readonly PhrasePattern[];
}

/** A non-capturing alternation of regular-expression sources. */
export const alt = (...xs: string[]): string => `(?:${xs.join('|')})`;
/**
 * The end of a lookaround body (where only whether a match exists counts, not where it
 * ends): `parts` in sequence, each after the first inside a lookahead of its own, so
 * `lookaheadChain(a, b, c)` is `a(?=b(?=c))` and matches exactly where `abc` does.
 *
 * Why: irregexp compiles the rest of an expression once for every way into it, up to ten
 * copies, so an optional word or a short alternation before a long word list multiplies
 * that list's machine code ("(?:the )?(?:\S+ )?(?:assembly|...)" compiles the list four
 * times). A lookahead is compiled once, whatever leads to it: measured, the
 * `notAboutThings` lookahead compiles to 72 KB instead of 282 KB. Only for the end of a
 * lookaround body, or of a whole pattern (the scanner asks only whether a pattern matches
 * where its trigger word starts, never where the match ends); anywhere else the match's
 * end matters, and a part could not backtrack into the ones after it.
 */
export const lookaheadChain = (...parts: string[]): string => parts.reduceRight((tail, part) => `${part}(?=${tail})`);
/** Up to `n` whole words (lazy), each followed by a space. */
export const upTo = (n: number): string => `(?:\\S+ ){0,${n}}?`;
/**
 * A pattern tried where one of the space-separated `triggers` words starts. Its spaces match
 * a line break too: the normaliser keeps one newline where a whitespace run held one, and a
 * phrase wrapped over two lines ("ignore all previous\ninstructions") is the same phrase.
 *
 * @example
 * pattern('forget ignore', `\\b(?:forget|ignore) everything\\b`) // also matches "forget\neverything"
 */
export const pattern = (triggers: string, source: string): PhrasePattern => ({ triggers: triggers.split(' '), source: spacesMatchLineBreaks(source) });

/**
 * `source` with every literal space outside a character class read as `[ \n]`. The parts
 * are joined once at the end: appending them one by one would leave each source (the phrase
 * families keep them for the life of the process) as a rope of one 32-byte heap object per
 * character, ~29,000 objects and ~0.9 MB for all the families.
 */
function spacesMatchLineBreaks(source: string): string {
  const out: string[] = [];
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      out.push(c, source[++i]);
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    out.push(c === ' ' && !inClass ? '[ \\n]' : c);
  }
  return out.join('');
}
