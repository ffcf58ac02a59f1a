/**
 * Fits builder outputs into a token budget. The lowest-priority section shrinks first,
 * down to nothing, before the next one is touched: list outputs lose one item at a time
 * (knowledge from the end — lowest relevance first; history from the start — oldest
 * first), object outputs (http, rules) are dropped whole. When dropping a big section left
 * room, the sections shrunk before it get back what fits, highest priority first. Equal
 * priorities: the section listed later in the template's `use` shrinks first. A required
 * builder's section is never trimmed (the request could not go without it): the others make
 * room, and when they cannot, the total stays over the budget.
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
    if (dropped > 0) dropped -= refill(sections, state, order, budget - total);
    total = state.reduce((n, s) => n + s.tokens, 0);
  }
  return { sections: state, tokens: total, dropped };
}

/**
 * Gives back what fits in `room`, highest priority first, once the budget is met: sections
 * shrunk before a bigger one was dropped whole (a 2,000-token profile over a 1,500-token
 * budget) would otherwise have been emptied for nothing. A list gets its items back in the
 * reverse order they went (newest history turn, best passage first) until one does not
 * fit. Returns the number of items given back.
 */
function refill(sections: readonly BudgetSection[], state: FittedSection[], order: readonly { i: number }[], room: number): number {
  let restored = 0;
  for (let k = order.length - 1; k >= 0 && room > 0; k--) {
    const i = order[k].i;
    const s = state[i];
    if (s.trimmed === 0) continue;
    const full = sections[i].output;
    if (full.shape === 'object') {
      if (s.output === undefined && full.tokens <= room) {
        room -= full.tokens;
        restored++;
        state[i] = { ...s, output: full, tokens: full.tokens, trimmed: 0 };
      }
      continue;
    }
    const kept = (s.output as Extract<BuilderOutput, { shape: 'items' }>).items;
    const fromStart = full.trimFrom === 'start';
    // Kept items are a contiguous run of the full list: history keeps its end, knowledge its start.
    let lo = fromStart ? full.items.length - kept.length : 0;
    let hi = fromStart ? full.items.length : kept.length;
    let tokens = s.tokens;
    while (lo > 0 || hi < full.items.length) {
      const next = fromStart ? full.items[lo - 1] : full.items[hi];
      if (next.tokens > room) break;
      room -= next.tokens;
      tokens += next.tokens;
      if (fromStart) lo--;
      else hi++;
      restored++;
    }
    const back = hi - lo - kept.length;
    if (back > 0) state[i] = { ...s, output: { ...full, items: full.items.slice(lo, hi) }, tokens, trimmed: s.trimmed - back };
  }
  return restored;
}
