import { describe, expect, it } from 'vitest';
import { DEFAULT_PRICES, costOf, createPriceBook, formatUsd } from '../../src/telemetry/pricing.js';
import type { Usage } from '../../src/telemetry/types.js';

const usage = (inputTokens: number, outputTokens: number, cachedInputTokens = 0, reasoningTokens = 0): Usage => ({
  inputTokens,
  outputTokens,
  cachedInputTokens,
  reasoningTokens,
  estimated: false,
});

describe('price lookup', () => {
  const book = createPriceBook();

  it('ships a price for every model the README lists', () => {
    for (const model of [
      'gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'o1', 'o3', 'o3-mini', 'o4-mini',
      'gpt-3.5-turbo', 'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'text-embedding-3-small', 'text-embedding-3-large', 'text-embedding-ada-002',
    ]) {
      expect(book.price(model), model).not.toBeNull();
    }
  });

  it('maps dated snapshots to their family, never to a shorter family', () => {
    expect(book.price('gpt-4o-mini-2024-07-18')).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
    expect(book.price('gpt-4o-2024-08-06')).toEqual(DEFAULT_PRICES['gpt-4o']);
    expect(book.price('o3-mini-2025-01-31')).toEqual(DEFAULT_PRICES['o3-mini']);
    expect(book.price('gpt-3.5-turbo-0125')).toEqual(DEFAULT_PRICES['gpt-3.5-turbo']);
    expect(book.price('gpt-4.1-nano-2025-04-14')).toEqual(DEFAULT_PRICES['gpt-4.1-nano']);
    expect(book.price('gpt-4o-mini')).not.toEqual(book.price('gpt-4o'));
  });

  it('prefers an exact snapshot entry over its family', () => {
    expect(book.price('gpt-4o-2024-05-13')).toEqual({ input: 5, output: 15, priority: { input: 8.75, output: 26.25 } });
  });

  it('returns null for unknown models and look-alikes that are not snapshots', () => {
    expect(book.price('my-finetune')).toBeNull();
    expect(book.price('gpt-4o-mini-search-preview')).toBeNull();
    expect(book.price('gpt-4o-minimal')).toBeNull();
    expect(book.price('gpt-4o-2024')).toBeNull();
    expect(book.price(undefined)).toBeNull();
    expect(book.price('')).toBeNull();
    expect(book.cost(usage(10, 10), 'my-finetune')).toBeNull();
  });

  it('ignores case and a vendor prefix', () => {
    expect(book.price('GPT-4o-Mini')).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
    expect(book.price('openai/gpt-4o-mini-2024-07-18')).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
  });

  it('gives the same answer from the cache and after eviction', () => {
    const small = createPriceBook(DEFAULT_PRICES, {}, { cacheSize: 2 });
    const names = ['gpt-4o', 'gpt-4o-mini-2024-07-18', 'nope', 'gpt-5', 'gpt-4o'];
    const first = names.map((n) => small.price(n));
    const second = names.map((n) => small.price(n));
    expect(second).toEqual(first);
    expect(first[2]).toBeNull();
    expect(first[4]).toEqual(DEFAULT_PRICES['gpt-4o']);
  });
});

describe('overrides', () => {
  it('config entries win and replace the default entry as a whole', () => {
    const book = createPriceBook(DEFAULT_PRICES, { 'gpt-4o': { input: 2, output: 8 } });
    expect(book.price('gpt-4o')).toEqual({ input: 2, output: 8 });
    // no cached_input in the override: cached tokens cost the input price
    expect(book.cost(usage(1000, 0, 1000), 'gpt-4o')).toBeCloseTo(0.002, 15);
    expect(book.price('gpt-4o-2024-11-20')).toEqual({ input: 2, output: 8 });
  });

  it('adds new models and snapshot-specific prices', () => {
    const book = createPriceBook(DEFAULT_PRICES, { 'My-Model': { input: 1, output: 1 }, 'gpt-4o-mini-2024-07-18': { input: 9, output: 9 } });
    expect(book.price('my-model')).toEqual({ input: 1, output: 1 });
    expect(book.price('gpt-4o-mini-2024-07-18')).toEqual({ input: 9, output: 9 });
    expect(book.price('gpt-4o-mini')).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
    expect(book.models).toContain('my-model');
  });

  it('layers: a per-upstream book over the global book keeps the global overrides', () => {
    const global = createPriceBook(DEFAULT_PRICES, { 'gpt-4o': { input: 2, output: 8 } });
    const upstream = createPriceBook(global, { 'gpt-4o-mini': { input: 0.2, output: 0.8 } });
    expect(upstream.price('gpt-4o')).toEqual({ input: 2, output: 8 });
    expect(upstream.price('gpt-4o-mini')).toEqual({ input: 0.2, output: 0.8 });
    expect(global.price('gpt-4o-mini')).toEqual(DEFAULT_PRICES['gpt-4o-mini']);
  });

  it('freezes the compiled table', () => {
    const book = createPriceBook();
    expect(Object.isFrozen(book.table)).toBe(true);
    expect(Object.isFrozen(book.table['gpt-4o'])).toBe(true);
  });
});

describe('cost arithmetic', () => {
  const book = createPriceBook();

  it('prices cached input and reasoning output (gpt-4o-mini: 0.15 / 0.075 / 0.60)', () => {
    // (1000-200)*0.15 + 200*0.075 + (500-100)*0.60 + 100*0.60 = 120 + 15 + 240 + 60 = 435 per 1M
    const cost = book.cost(usage(1000, 500, 200, 100), 'gpt-4o-mini-2024-07-18');
    expect(cost).toBeCloseTo(0.000435, 15);
    expect(formatUsd(cost as number)).toBe('0.000435');
  });

  it('uses separate cached and reasoning prices when set', () => {
    const price = { input: 1, cached_input: 0.5, output: 2, reasoning: 3 };
    // 750000*1 + 250000*0.5 + 60000*2 + 40000*3 = 750000 + 125000 + 120000 + 120000 = 1115000 per 1M
    expect(costOf(usage(1_000_000, 100_000, 250_000, 40_000), price)).toBeCloseTo(1.115, 12);
  });

  it('falls back to the input price for cached tokens when none is listed (gpt-3.5-turbo)', () => {
    // 600*0.5 + 400*0.5 + 10*1.5 = 515 per 1M
    expect(book.cost(usage(1000, 10, 400), 'gpt-3.5-turbo')).toBeCloseTo(0.000515, 15);
  });

  it('gpt-5 with heavy caching: 10000 in (8000 cached), 2000 out (1500 reasoning)', () => {
    // 2000*1.25 + 8000*0.125 + 500*10 + 1500*10 = 2500 + 1000 + 5000 + 15000 = 23500 per 1M
    expect(book.cost(usage(10_000, 2_000, 8_000, 1_500), 'gpt-5')).toBeCloseTo(0.0235, 15);
  });

  it('is 0 for zero usage of a known model and clamps inconsistent counts', () => {
    expect(book.cost(usage(0, 0), 'gpt-4o')).toBe(0);
    // cached > input is clamped to input; negative counts are 0
    expect(costOf(usage(100, -5, 500, 3), { input: 1, cached_input: 0.5, output: 2 })).toBeCloseTo(0.00005, 15);
  });

  it('embeddings price input only', () => {
    expect(book.cost(usage(1_000_000, 0), 'text-embedding-3-small')).toBeCloseTo(0.02, 15);
    expect(book.cost(usage(1_000_000, 0), 'text-embedding-3-large')).toBeCloseTo(0.13, 15);
    expect(book.cost(usage(1_000_000, 0), 'text-embedding-ada-002')).toBeCloseTo(0.1, 15);
  });
});

describe('formatUsd', () => {
  it('renders up to 10 significant digits without exponents', () => {
    expect(formatUsd(0)).toBe('0');
    expect(formatUsd(0.1 + 0.2)).toBe('0.3');
    expect(formatUsd(1 / 3)).toBe('0.3333333333');
    expect(formatUsd(12.5)).toBe('12.5');
    expect(formatUsd(1000)).toBe('1000');
    expect(formatUsd(1e-12)).toBe('0.000000000001');
    expect(formatUsd(5e-7)).toBe('0.0000005');
    expect(formatUsd(12345678901.5)).toBe('12345678900');
    expect(formatUsd(2 / 3)).toBe('0.6666666667');
    expect(formatUsd(-0.25)).toBe('-0.25');
    expect(formatUsd(Number.NaN)).toBe('0');
  });
});
