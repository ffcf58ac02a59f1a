/**
 * `${VAR}`, `${VAR:-default}` and `${VAR:+alternate}` substitution in config text, with the
 * meanings POSIX shells and Docker Compose give them: `:-` uses the default when VAR is unset
 * or empty, `:+` uses the alternate when VAR is set and non-empty (else nothing). `$$` is a
 * literal `$`. A plain `${VAR}` that is unset is an error, so a forgotten secret fails loudly.
 * The word after `:-` / `:+` may itself hold substitutions (`${A:-${B:-x}}`); only the
 * word that is used is expanded. YAML comments are left alone, so a comment may mention
 * `${VAR}` (a `#` in a block scalar's text, `key: |`, starts no comment). Values are
 * inserted as text before the YAML is parsed: quote a substitution that may hold YAML
 * syntax (inside quotes a value is escaped for them, so it stays the text it is). Line
 * breaks at the end of a value are dropped (a secret file's final newline, which YAML would
 * drop from a plain scalar anyway); one inside a value is reported by variable and line,
 * never the value.
 */

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;

export interface SubstitutionIssue {
  variable: string;
  line: number;
}

/**
 * Substitutes variables in `text`; returns the result and the variables that were missing,
 * held a line break, were referenced in a form it does not have, or (`comments`, only when
 * there are any) held a `#` that starts a YAML comment where they were inserted.
 */
export function substituteEnv(
  text: string,
  env: Record<string, string | undefined> = process.env,
): {
  text: string;
  missing: SubstitutionIssue[];
  lineBreaks: SubstitutionIssue[];
  unsupported: SubstitutionIssue[];
  comments?: SubstitutionIssue[];
  missingColumns?: number[];
  unsupportedColumns?: number[];
} {
  const missing: SubstitutionIssue[] = [];
  // Per missing variable: where the outermost `${...}` holding it starts in its line after
  // substitution (0-based), which finds the YAML node, so the error can name its path.
  const missingColumns: number[] = [];
  // `${NAME` not followed by `}`, `:-` or `:+` (a shell form such as `${KEY:?required}` or
  // `${KEY-x}`, or no closing `}`): an error. Left as text, it would reach the config as a
  // literal value, an API key of "${KEY:?required}".
  const unsupported: SubstitutionIssue[] = [];
  // Per unsupported form, the same as `missingColumns`: its error names the setting too.
  const unsupportedColumns: number[] = [];
  // A used value with a line break inside it: an error. Substitution is line by line, so
  // the break would cut the YAML around it.
  const lineBreaks: SubstitutionIssue[] = [];
  // A used value holding a `#` that YAML reads as the start of a comment (` #` in an
  // unquoted scalar): an error. The rest of the value would be dropped without a word, an
  // `admin.token` of "abc #def" read as "abc".
  const commentIssues: SubstitutionIssue[] = [];
  const lines = text.split('\n');
  // Inside a block scalar (`text: |`), a `#` is text, not a comment: its lines are
  // substituted whole (a `${VAR}` after "#support" was left as literal text). Set to the
  // indentation its lines must be deeper than.
  let block: number | undefined;
  const out = lines.map((line, i) => {
    if (block !== undefined) {
      if (/^\s*$/.test(line) || /^ */.exec(line)![0].length > block) return substituteLine(line, i + 1, false);
      block = undefined;
    }
    const cut = commentStart(line);
    block = blockScalarParent(line.slice(0, cut));
    return substituteLine(line.slice(0, cut), i + 1, true) + line.slice(cut);
  });
  return {
    text: out.join('\n'),
    missing,
    lineBreaks,
    unsupported,
    ...(commentIssues.length > 0 ? { comments: commentIssues } : {}),
    ...(missing.length > 0 ? { missingColumns } : {}),
    ...(unsupported.length > 0 ? { unsupportedColumns } : {}),
  };

  /** `comments`: the line may end in a YAML comment (it is not a block scalar's text). */
  function substituteLine(line: string, lineNo: number, comments: boolean): string {
    const hashes: string[] = []; // used variables whose value holds a `#`
    let column = 0; // where the outermost `${...}` being expanded starts in the output
    // The quoted scalar the line is in at the outermost `${...}` being expanded (read as
    // `commentStart` reads quotes): a value inserted there is escaped for it, so it stays
    // the text it is (`\\` or `\/` in a token was read as an escape, a `"` ended the scalar).
    let quote: '"' | "'" | undefined;
    const out = expand(line, 0, false, true).out;
    // The line had no comment before substitution (it was cut at its comment): one now came from a value.
    if (comments && hashes.length > 0 && commentStart(out) < out.length) {
      for (const variable of new Set(hashes)) commentIssues.push({ variable, line: lineNo });
    }
    return out;

    /**
     * Expands from `from` to the end of the line or, `nested`, to the `}` that closes the
     * enclosing `${...}` (`end` -1 when there is none). `used` false: a word that is not
     * used, whose unset variables are no error.
     */
    function expand(text: string, from: number, nested: boolean, used: boolean): { out: string; end: number } {
      let out = '';
      let i = from;
      while (i < text.length) {
        if (nested && text[i] === '}') return { out, end: i };
        if (text[i] !== '$') {
          if (!nested && comments) {
            // An escape in "..." (`\"`) or a doubled quote in '...' ends nothing: taken whole.
            if ((quote === '"' && text[i] === '\\' && i + 1 < text.length && text[i + 1] !== '$') || (quote === "'" && text[i] === "'" && text[i + 1] === "'")) {
              out += text[i] + text[i + 1];
              i += 2;
              continue;
            }
            quote = quoteAfter(text, i, quote);
          }
          out += text[i++];
        } else if (text[i + 1] === '$') {
          out += '$';
          i += 2;
        } else {
          if (!nested) column = out.length;
          const ref = text[i + 1] === '{' ? reference(text, i + 2, used) : undefined;
          if (ref) {
            out += ref.out;
            i = ref.end + 1;
          } else {
            out += text[i++]; // not a substitution: a literal `$`
          }
        }
      }
      return { out, end: nested ? -1 : i };
    }

    /** `NAME}`, `NAME:-word}` or `NAME:+word}` from `at`; undefined when it is none of them. */
    function reference(text: string, at: number, used: boolean): { out: string; end: number } | undefined {
      NAME.lastIndex = at;
      const name = NAME.exec(text)?.[0];
      if (name === undefined) return undefined;
      const i = at + name.length;
      const value = env[name];
      if (text[i] === '}') {
        if (value === undefined && used) {
          missing.push({ variable: name, line: lineNo });
          missingColumns.push(column);
        }
        return { out: inserted(name, value ?? '', used), end: i };
      }
      const op = text.slice(i, i + 2);
      if (op !== ':-' && op !== ':+') {
        if (used) reportUnsupported(name);
        return undefined;
      }
      const isSet = value !== undefined && value !== '';
      const useWord = op === ':-' ? !isSet : isSet;
      const reported = missing.length;
      const reportedBreaks = lineBreaks.length;
      const reportedUnsupported = unsupported.length;
      const word = expand(text, i + 2, true, used && useWord);
      if (word.end < 0) {
        missing.length = reported; // unterminated: reported as itself, not by what it holds
        missingColumns.length = reported;
        lineBreaks.length = reportedBreaks;
        unsupported.length = reportedUnsupported;
        unsupportedColumns.length = reportedUnsupported;
        if (used) reportUnsupported(name);
        return undefined;
      }
      if (op === ':-') return { out: isSet ? inserted(name, value, used) : word.out, end: word.end };
      return { out: isSet ? word.out : '', end: word.end };
    }

    function reportUnsupported(name: string): void {
      unsupported.push({ variable: name, line: lineNo });
      unsupportedColumns.push(column);
    }

    /**
     * The value without trailing line breaks, reporting one inside it when it is used. Inner
     * breaks are left out of the text only so that the rest of the file can still be
     * checked: the config is rejected.
     */
    function inserted(name: string, value: string, used: boolean): string {
      if (used && value.includes('#')) hashes.push(name);
      if (!/[\r\n]/.test(value)) return escaped(value);
      const trimmed = value.replace(/[\r\n]+$/, '');
      if (!/[\r\n]/.test(trimmed)) return escaped(trimmed);
      if (used) lineBreaks.push({ variable: name, line: lineNo });
      return escaped(trimmed.replace(/[\r\n]+/g, ''));
    }

    /** `value` as the text of the quoted scalar it goes into (YAML 1.2 §7.3.1, §7.3.2). */
    function escaped(value: string): string {
      if (quote === '"') return value.replace(/[\\"]/g, (ch) => `\\${ch}`);
      if (quote === "'") return value.replace(/'/g, "''");
      return value;
    }
  }
}

/**
 * For a line (its comment cut off) whose value is a block scalar header (`key: |`,
 * `- >-`, `key: |2`), the column of its key or `-`: the block's lines are those indented
 * deeper (YAML 1.2 §8.1). Undefined for any other line.
 */
function blockScalarParent(code: string): number | undefined {
  const m = /^( *)((?:- +)*)((?:[^\s'"#|>][^]*?|"(?:[^"\\]|\\.)*"|'(?:[^']|'')*') *: +)?[|>](?:[1-9][+-]?|[+-][1-9]?)?\s*$/.exec(code);
  if (!m) return undefined;
  // The key's column; for `- |`, the last `-`'s (-1 for a document that is a block scalar).
  return m[3] !== undefined ? m[1].length + m[2].length : m[1].length + m[2].lastIndexOf('-');
}

/** The quote state after `line[i]`, given the state before it (escapes and doubled quotes are taken whole by the caller). */
function quoteAfter(line: string, i: number, quote: '"' | "'" | undefined): '"' | "'" | undefined {
  const ch = line[i];
  if (quote !== undefined) return ch === quote ? undefined : quote;
  // A quote opens a quoted scalar only where a scalar starts; in `O'Brien` it is text.
  return (ch === '"' || ch === "'") && (i === 0 || ' \t[{,'.includes(line[i - 1])) ? ch : undefined;
}

/** Index where a YAML comment starts on this line (`#` after whitespace, outside quotes), or the line length. */
function commentStart(line: string): number {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === '\\' && quote === '"') i++;
      else if (ch === "'" && quote === "'" && line[i + 1] === "'") i++; // '' is a quote inside '...'
      else if (ch === quote) quote = undefined;
    } else if ((ch === '"' || ch === "'") && (i === 0 || ' \t[{,'.includes(line[i - 1]))) {
      // A quote opens a quoted scalar only where a scalar starts; in `O'Brien` it is text.
      quote = ch;
    } else if (ch === '#' && (i === 0 || line[i - 1] === ' ' || line[i - 1] === '\t')) {
      return i;
    }
  }
  return line.length;
}

/** The names of the variables `text` refers to (`${NAME...`), in order, repeats kept. */
export function variableNames(text: string): string[] {
  return [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
}

/** The values of the variables `text` refers to (`${NAME...`): what substitution may put into it. */
export function referencedValues(text: string, env: Record<string, string | undefined> = process.env): string[] {
  const values = variableNames(text).map((name) => env[name]);
  return values.filter((v): v is string => v !== undefined && v !== '');
}

/**
 * `message` with each substituted value, and each word that shares 4 or more characters
 * with one (inside it, holding it, or overlapping its start or end), shown as `***`. YAML's
 * messages quote the source (`Unexpected scalar token in YAML stream: "sk-..."`,
 * `Unresolved alias ...: sk-...`), and the source holds the values of `${VAR}`s, API keys
 * among them; a token may hold part of a value and the text next to it (`sk-...}`), and
 * `JSON.stringify` quotes it with escapes (a backslash doubled). Values under 4 characters
 * are left alone.
 *
 * @example
 * maskSubstituted('Block scalar header includes extra characters: |sk-abc', ['|sk-abc']) // '... characters: ***'
 */
export function maskSubstituted(message: string, values: readonly string[]): string {
  // As the source holds each value, and as JSON.stringify quotes it.
  const long = values.flatMap((v) => [v, JSON.stringify(v).slice(1, -1)]).filter((v) => v.length >= MIN_MASKED);
  if (long.length === 0) return message;
  let out = message;
  for (const v of long) out = out.split(v).join(MASK); // a value with spaces or quotes is more than one word
  return out.replace(/[^\s"]{4,}/g, (word) => (word.includes(MASK) || long.some((v) => overlaps(word, v)) ? MASK : word));
}

const MASK = '***';
const MIN_MASKED = 4;

/** `word` and `value` share MIN_MASKED or more characters: one holds the other, or `word` starts with the end of `value` or ends with its start. */
function overlaps(word: string, value: string): boolean {
  if (value.includes(word) || word.includes(value)) return true;
  for (let n = MIN_MASKED; n < Math.min(word.length, value.length); n++) {
    if (word.startsWith(value.slice(-n)) || word.endsWith(value.slice(0, n))) return true;
  }
  return false;
}
