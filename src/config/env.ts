/**
 * `${VAR}`, `${VAR:-default}` and `${VAR:+alternate}` substitution in config text, with the
 * meanings POSIX shells and Docker Compose give them: `:-` uses the default when VAR is unset
 * or empty, `:+` uses the alternate when VAR is set and non-empty (else nothing). `$$` is a
 * literal `$`. A plain `${VAR}` that is unset is an error, so a forgotten secret fails loudly.
 * YAML comments are left alone, so a comment may mention `${VAR}`. Values are inserted as
 * text before the YAML is parsed: quote a substitution that may hold YAML syntax.
 */

const PATTERN = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\+)([^}]*))?\}/g;

export interface SubstitutionIssue {
  variable: string;
  line: number;
}

/** Substitutes variables in `text`; returns the result and the variables that were missing. */
export function substituteEnv(
  text: string,
  env: Record<string, string | undefined> = process.env,
): { text: string; missing: SubstitutionIssue[] } {
  const missing: SubstitutionIssue[] = [];
  const lines = text.split('\n');
  const out = lines.map((line, i) => {
    const cut = commentStart(line);
    return substituteLine(line.slice(0, cut), i + 1) + line.slice(cut);
  });
  return { text: out.join('\n'), missing };

  function substituteLine(line: string, lineNo: number): string {
    return line.replace(PATTERN, (match, name: string | undefined, op: string | undefined, arg: string | undefined) => {
      if (match === '$$') return '$';
      const value = env[name!];
      const isSet = value !== undefined && value !== '';
      if (op === ':-') return isSet ? value : (arg ?? '');
      if (op === ':+') return isSet ? (arg ?? '') : '';
      if (value === undefined) {
        missing.push({ variable: name!, line: lineNo });
        return '';
      }
      return value;
    });
  }
}

/** Index where a YAML comment starts on this line (`#` after whitespace, outside quotes), or the line length. */
function commentStart(line: string): number {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === '\\' && quote === '"') i++;
      else if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === '#' && (i === 0 || line[i - 1] === ' ' || line[i - 1] === '\t')) {
      return i;
    }
  }
  return line.length;
}
