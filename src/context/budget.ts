/**
 * Fits builder outputs into a token budget. The lowest-priority section shrinks first,
 * down to nothing, before the next one is touched: list outputs lose one item at a time
 * (knowledge from the end — lowest relevance first; history from the start — oldest
 * first), object outputs (http, rules) are dropped whole. Equal priorities: the section
 * listed later in the template's `use` shrinks first. A required builder's section is never
 * trimmed (the request could not go without it): the others make room, and when they cannot,
 * the total stays over the budget.
 */
import type { BuilderOutput } from './types.js';

export interface BudgetSection {
  readonly name: string;
  readonly priority: number;
  readonly output: BuilderOutput;
  /** The builder is `required`: its section is kept whole. */
  readonly required?: boolean;
}

export interface FittedSection {
  readonly name: string;
  /** undefined when the whole section was dropped. */
  readonly output: BuilderOutput | undefined;
  readonly tokens: number;
  /** Items removed (an object output counts 1). */
  readonly trimmed: number;
}

/** Tokens of an output. */
export function outputTokens(output: BuilderOutput): number {
  if (output.shape === 'object') return output.tokens;
  let n = 0;
  for (const item of output.items) n += item.tokens;
  return n;
}

/**
 * @example
 * fitBudget([{ name: 'knowledge', priority: 50, output }, { name: 'customer', priority: 80, output: profile }], 1500)
 * // [{ name: 'knowledge', output: {...2 of 3 passages}, tokens: 610, trimmed: 1 }, { name: 'customer', ..., trimmed: 0 }]
 */
export function fitBudget(sections: readonly BudgetSection[], budget: number): { sections: FittedSection[]; tokens: number; dropped: number } {
  const state = sections.map((s) => ({ name: s.name, output: s.output as BuilderOutput | undefined, tokens: outputTokens(s.output), trimmed: 0 }));
  let total = state.reduce((n, s) => n + s.tokens, 0);
  let dropped = 0;
  if (total > budget) {
    const order = sections
      .map((s, i) => ({ i, priority: s.priority, required: s.required === true }))
      .filter((s) => !s.required)
      .sort((a, b) => a.priority - b.priority || b.i - a.i);
    for (const { i } of order) {
      if (total <= budget) break;
      const s = state[i];
      const out = s.output!;
      if (out.shape === 'object') {
        total -= s.tokens;
        dropped++;
        state[i] = { ...s, output: undefined, tokens: 0, trimmed: 1 };
        continue;
      }
      const items = [...out.items];
      let trimmed = 0;
      let tokens = s.tokens;
      while (total > budget && items.length > 0) {
        const item = out.trimFrom === 'start' ? items.shift()! : items.pop()!;
        total -= item.tokens;
        tokens -= item.tokens;
        trimmed++;
      }
      dropped += trimmed;
      state[i] = { ...s, output: { ...out, items }, tokens, trimmed };
    }
  }
  return { sections: state, tokens: total, dropped };
}
