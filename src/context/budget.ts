/**
 * Fits builder outputs into a token budget. The lowest-priority section shrinks first,
 * down to nothing, before the next one is touched: list outputs lose one item at a time
 * (knowledge from the end — lowest relevance first; history from the start — oldest
 * first), object outputs (http, rules) are dropped whole. When dropping a big section left
 * room, the sections shrunk before it get back what fits, highest priority first (a
 * passage too big for the room is passed over, so one over the whole budget does not take
 * the smaller ones with it). Equal
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
 * reverse order they went (newest history turn, best passage first): history until a turn
 * does not fit (it stays contiguous), knowledge every passage that fits (one too big is
 * passed over). Returns the number of items given back.
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
    let tokens = s.tokens;
    if (full.trimFrom === 'end') {
      // Passages stand alone: one too big for the room (a whole article over the budget) is
      // passed over, and the lower-scored ones after it that fit come back, in score order.
      // Trimming kept a prefix of the list; the rest is read in order.
      const items = [...kept];
      for (let j = kept.length; j < full.items.length; j++) {
        const next = full.items[j];
        if (next.tokens > room) continue;
        room -= next.tokens;
        tokens += next.tokens;
        items.push(next);
      }
      const back = items.length - kept.length;
      restored += back;
      if (back > 0) state[i] = { ...s, output: { ...full, items }, tokens, trimmed: s.trimmed - back };
      continue;
    }
    // History turns keep a contiguous run ending at the newest: a conversation with a gap
    // (an older turn back, the one after it not) would misread what was said.
    let lo = full.items.length - kept.length;
    while (lo > 0) {
      const next = full.items[lo - 1];
      if (next.tokens > room) break;
      room -= next.tokens;
      tokens += next.tokens;
      lo--;
      restored++;
    }
    const back = full.items.length - lo - kept.length;
    if (back > 0) state[i] = { ...s, output: { ...full, items: full.items.slice(lo) }, tokens, trimmed: s.trimmed - back };
  }
  return restored;
}
