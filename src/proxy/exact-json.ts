/**
 * JSON parsing and serialising that keeps the client's numbers exact.
 *
 * `JSON.parse` reads every number as a double, so a rewritten body would reach the upstream
 * with integers past 2^53 rounded (`"seed": 12345678901234567891` as `12345678901234567000`;
 * Python upstreams read JSON integers exactly) and `1e400` as `null`. Node 20 has neither
 * `JSON.rawJSON` nor the reviver's `context.source`, so the few literals that a double cannot
 * carry are set aside by hand:
 *
 * - `parseExact` replaces each such literal (outside strings) by a placeholder string with a
 *   random per-parse prefix, parses, and turns the placeholders back into numbers (the
 *   nearest double: what the gateway itself reads, `max_tokens` etc.), remembering the
 *   literal for that object and key;
 * - `stringifyExact` writes a remembered literal again wherever the same object (or a copy
 *   declared with `keepExactNumbers`) still holds the same number under that key. A value the
 *   gateway replaced is written as usual.
 *
 * Kept verbatim: a literal with a run of 16 or more digits (every integer past 2^53 has one),
 * one that overflows to Infinity (`1e400`, which `JSON.stringify` writes as `null`) and one
 * that underflows to 0 (`1e-400`). Other numbers go through the double as before, so `1.0`
 * is written `1` and `1e2` `100`: the same value (JSON has one number type; an upstream
 * that reads `1.0` as a float reads `1` as a number a float field takes).
 *
 * The common body has none of these: a regular-expression test of the text sends it through
 * plain `JSON.parse`, and `JSON.stringify` runs without a replacer unless its value came from
 * the exact path.
 */
import { randomBytes } from 'node:crypto';

/**
 * A digit run a double may not hold exactly (16 digits), or a three-digit exponent (which
 * may overflow or underflow). Spelled out: V8 runs `\d{15}` about ten times slower.
 */
const MAY_LOSE = /\d(?:\d\d\d\d\d\d\d\d\d\d\d\d\d\d\d|[eE][+-]?\d\d\d)/;
const LONG_DIGITS = /\d\d\d\d\d\d\d\d\d\d\d\d\d\d\d\d/;

/**
 * Whether the JSON text may hold a number `JSON.parse` + `JSON.stringify` would change
 * (about 0.6 µs for 2 KB; a false positive, such as digits in a string, only costs time).
 */
export function mayLoseNumbers(text: string): boolean {
  return MAY_LOSE.test(text);
}

/** A JSON number token (RFC 8259 grammar: no leading zeros, digits after `.`), at `lastIndex`. */
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Whether a number literal has to be written as sent (see the module comment). */
export function needsVerbatim(literal: string): boolean {
  if (LONG_DIGITS.test(literal)) return true;
  const value = Number(literal);
  if (!Number.isFinite(value)) return true;
  if (value === 0) {
    const e = literal.search(/[eE]/);
    return /[1-9]/.test(e < 0 ? literal : literal.slice(0, e));
  }
  return false;
}

/**
 * The JSON text with each literal `needsVerbatim` replaces by `"<prefix><index>"`, and the
 * literals by index. Strings (with their escapes) are copied as they are; text that is not
 * JSON stays not JSON (a number and a string stand in the same places; an unterminated
 * string ends the scan).
 */
export function setAsideNumbers(text: string, prefix: string): { text: string; literals: string[] } {
  const literals: string[] = [];
  let out = '';
  let copied = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // The string's closing quote: the next quote not escaped (an even run of backslashes before it).
      let q = i + 1;
      for (;;) {
        q = text.indexOf('"', q);
        if (q < 0) break;
        let backslashes = 0;
        while (text.charCodeAt(q - 1 - backslashes) === 0x5c /* \ */) backslashes++;
        if (backslashes % 2 === 0) break;
        q++;
      }
      if (q < 0) break;
      i = q + 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (m === null) {
        i++;
        continue;
      }
      const literal = m[0];
      const end = i + literal.length;
      if (needsVerbatim(literal)) {
        out += text.slice(copied, i) + '"' + prefix + literals.length + '"';
        literals.push(literal);
        copied = end;
      }
      i = end;
    } else {
      i++;
    }
  }
  return { text: copied === 0 ? text : out + text.slice(copied), literals };
}

/** Literals as sent, by holder object and key (array indexes as strings, as revivers and replacers see them). */
const LITERALS = new WeakMap<object, Map<string, string>>();
/** Copies of exactly parsed objects (`keepExactNumbers`), to the object holding the literals. */
const ORIGINALS = new WeakMap<object, object>();
/** Roots whose serialisation needs the replacer. */
const EXACT_ROOTS = new WeakSet<object>();

/** `JSON.parse`, except that the numbers `needsVerbatim` names are written back as sent by `stringifyExact`. Throws as `JSON.parse` does. */
export function parseExact(text: string): unknown {
  if (!mayLoseNumbers(text)) return JSON.parse(text);
  const prefix = `pg-exact-${randomBytes(12).toString('hex')}:`;
  const { text: marked, literals } = setAsideNumbers(text, prefix);
  if (literals.length === 0) return JSON.parse(text);
  let root: unknown;
  try {
    root = JSON.parse(marked, function revive(this: object, key: string, value: unknown) {
      if (typeof value !== 'string' || !value.startsWith(prefix)) return value;
      const index = value.slice(prefix.length);
      const literal = literals[Number(index)];
      if (literal === undefined || index !== String(Number(index))) return value;
      let held = LITERALS.get(this);
      if (held === undefined) LITERALS.set(this, (held = new Map()));
      held.set(key, literal);
      return Number(literal);
    });
  } catch (err) {
    // The reviver recurses: a body nested thousands deep is read as JSON.parse reads it (a
    // rewrite of it fails anyway: `JSON.stringify` recurses too).
    if (err instanceof RangeError) return JSON.parse(text);
    throw err;
  }
  if (root !== null && typeof root === 'object') EXACT_ROOTS.add(root);
  return root;
}

/**
 * The number literal the client sent at `holder[key]`, when `parseExact` set it aside (an
 * integer past 2^53, `1e400`): the text a double could not carry. Undefined otherwise.
 */
export function exactLiteral(holder: object, key: string): string | undefined {
  return LITERALS.get(ORIGINALS.get(holder) ?? holder)?.get(key);
}

/**
 * Declares `copy` a shallow copy of `original` (an object from `parseExact`, or a copy of
 * one): its members that still hold the original's numbers are written as sent. Returns `copy`.
 */
export function keepExactNumbers<T>(copy: T, original: unknown): T {
  if (copy === original || copy === null || typeof copy !== 'object' || original === null || typeof original !== 'object') return copy;
  const source = ORIGINALS.get(original) ?? original;
  if (!LITERALS.has(source) && !EXACT_ROOTS.has(original)) return copy;
  ORIGINALS.set(copy, source);
  if (EXACT_ROOTS.has(original)) EXACT_ROOTS.add(copy);
  return copy;
}

/** `JSON.stringify`, writing the numbers `parseExact` set aside as the client sent them. Throws as `JSON.stringify` does. */
export function stringifyExact(value: unknown): string {
  if (value === null || typeof value !== 'object' || !EXACT_ROOTS.has(value)) return JSON.stringify(value);
  const prefix = `pg-exact-${randomBytes(12).toString('hex')}:`;
  const written: string[] = [];
  const json = JSON.stringify(value, function replace(this: object, key: string, v: unknown) {
    if (typeof v !== 'number') return v;
    const held = LITERALS.get(this) ?? LITERALS.get(ORIGINALS.get(this) as object);
    const literal = held?.get(key);
    if (literal === undefined || !Object.is(Number(literal), v)) return v;
    written.push(literal);
    return prefix + (written.length - 1);
  });
  if (written.length === 0) return json;
  return json.replace(new RegExp(`"${prefix}(\\d+)"`, 'g'), (_, index: string) => written[Number(index)]);
}
