/**
 * Variables as a build reads and gives them: a builder output as a template sees it, the
 * tokens of the client's own variables, and the query (the last user message's text).
 */
import { countValueTokens, textOf } from './tokens.js';
import type { BuilderOutput } from './types.js';

/** What a template (or a dependent builder) sees of an output. */
export function variableOf(output: BuilderOutput): unknown {
  return output.shape === 'object' ? output.value : output.items.map((i) => i.value);
}

/**
 * Tokens of the client's template variables, each value once (as text, or JSON): the
 * template renders them into the prompt beside the context (its own text, counted at load,
 * has only their placeholders). Builder names are the gateway's to fill, not the client's.
 * A value nested too deeply to write as JSON (a RangeError) counts 0: rendering refuses it
 * (400 `invalid_variable`).
 */
export function clientVariableTokens(variables: Readonly<Record<string, unknown>>, builderNames: readonly string[]): number {
  let n = 0;
  for (const [name, value] of Object.entries(variables)) {
    if (builderNames.includes(name)) continue;
    try {
      n += countValueTokens(value);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
    }
  }
  return n;
}

/** The text of the last `user` message (the query builders search with); '' when there is none. */
export function lastUserText(messages: readonly unknown[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown; content?: unknown } | null;
    if (m !== null && typeof m === 'object' && m.role === 'user') return textOf(m.content);
  }
  return '';
}
