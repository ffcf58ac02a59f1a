/**
 * Model prices and request cost. A `PriceBook` is compiled once per config load from the
 * shipped defaults and the config's `pricing:` overrides; per-upstream price maps layer on
 * top of it the same way (`createPriceBook(globalBook, upstream.pricing)`).
 *
 * Arithmetic: cost is computed in USD with plain doubles, summing token x price-per-1M
 * products and dividing by 1e6 once. Nothing is rounded here nor in the cost counter (sums
 * stay as exact as doubles allow); `formatUsd` renders a value for headers and logs with at
 * most 10 significant digits, never in exponent notation.
 */
import { ownCopy } from '../own-copy.js';
import type { ModelPrice } from './config-schema.js';
import type { Usage } from './types.js';

export type { ModelPrice } from './config-schema.js';

/** Model name (or dated-snapshot prefix) -> USD per 1M tokens. */
export type PriceTable = Readonly<Record<string, ModelPrice>>;

/**
 * OpenAI list prices, standard tier, USD per 1M tokens, from https://openai.com/api/pricing
 * as published on 2025-08-07 (GPT-5 launch; o3 after its 2025-06-10 price cut). Reasoning
 * tokens are billed as output tokens by OpenAI, so no entry sets `reasoning`. Audio tokens
 * have their own prices (`audio_input`, `audio_output`); a model without them that answers
 * with audio tokens has unknown cost. Flex processing (`service_tier: "flex"`, o3, o4-mini
 * and the gpt-5 family) is billed at half the standard prices (its Batch rates). Priority
 * processing (`service_tier: "priority"`) has prices of its own, from
 * https://openai.com/api-priority-processing (models without them there, such as
 * gpt-5-nano, are not served at that tier: an answer that says so has unknown cost).
 * Prices change: override them in `pricing:`.
 */
export const DEFAULT_PRICES: PriceTable = Object.freeze({
  'gpt-5': { input: 1.25, cached_input: 0.125, output: 10, flex: { input: 0.625, cached_input: 0.0625, output: 5 }, priority: { input: 2.5, cached_input: 0.25, output: 20 } },
  'gpt-5-mini': { input: 0.25, cached_input: 0.025, output: 2, flex: { input: 0.125, cached_input: 0.0125, output: 1 }, priority: { input: 0.45, cached_input: 0.045, output: 3.6 } },
  'gpt-5-nano': { input: 0.05, cached_input: 0.005, output: 0.4, flex: { input: 0.025, cached_input: 0.0025, output: 0.2 } },
  'gpt-4.1': { input: 2, cached_input: 0.5, output: 8, priority: { input: 3.5, cached_input: 0.875, output: 14 } },
  'gpt-4.1-mini': { input: 0.4, cached_input: 0.1, output: 1.6, priority: { input: 0.7, cached_input: 0.175, output: 2.8 } },
  'gpt-4.1-nano': { input: 0.1, cached_input: 0.025, output: 0.4, priority: { input: 0.2, cached_input: 0.05, output: 0.8 } },
  'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10, priority: { input: 4.25, cached_input: 2.125, output: 17 } },
  // The first gpt-4o snapshot kept its launch price.
  'gpt-4o-2024-05-13': { input: 5, output: 15, priority: { input: 8.75, output: 26.25 } },
  'gpt-4o-mini': { input: 0.15, cached_input: 0.075, output: 0.6, priority: { input: 0.25, cached_input: 0.125, output: 1 } },
  'gpt-4o-audio-preview': { input: 2.5, output: 10, audio_input: 40, audio_output: 80 },
  // The first audio snapshot kept its launch audio price.
  'gpt-4o-audio-preview-2024-10-01': { input: 2.5, output: 10, audio_input: 100, audio_output: 200 },
  'gpt-4o-mini-audio-preview': { input: 0.15, output: 0.6, audio_input: 10, audio_output: 20 },
  o1: { input: 15, cached_input: 7.5, output: 60 },
  'o1-mini': { input: 1.1, cached_input: 0.55, output: 4.4 },
  o3: { input: 2, cached_input: 0.5, output: 8, flex: { input: 1, cached_input: 0.25, output: 4 }, priority: { input: 3.5, cached_input: 0.875, output: 14 } },
  'o3-mini': { input: 1.1, cached_input: 0.55, output: 4.4 },
  'o4-mini': { input: 1.1, cached_input: 0.275, output: 4.4, flex: { input: 0.55, cached_input: 0.1375, output: 2.2 }, priority: { input: 2, cached_input: 0.5, output: 8 } },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  // The 1106 snapshot kept its launch price (0125 halved the input price).
  'gpt-3.5-turbo-1106': { input: 1, output: 2 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
});

/** Dated snapshot suffixes: `-2024-07-18` and the older `-MMDD` (`-0125`, `-1106`). */
const SNAPSHOT_SUFFIX = /-(?:\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])|(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))$/;
const DEFAULT_CACHE_SIZE = 1_000;
/** Longer model names (a client's, up to the body limit) are looked up each time, not remembered. */
const MAX_REMEMBERED_MODEL_CHARS = 256;

export interface PriceBook {
  /** The merged table (lower-case names), frozen; layer another book on it. */
  readonly table: PriceTable;
  /** Names in the table: label values that never collapse to `other`. */
  readonly models: readonly string[];
  /** The price of a model, or null when unknown. */
  price(model: string | undefined): ModelPrice | null;
  /**
   * Request cost in USD, or null when the model (or its audio price, or its price in the
   * answer's service tier) is unknown (never 0 for unknown).
   */
  cost(usage: Usage, model: string | undefined, serviceTier?: string): number | null;
}

export interface PriceBookOptions {
  /** Model names whose lookup result is cached (FIFO beyond this many). */
  cacheSize?: number;
}

/**
 * Compiles a price book: `overrides` replace entries of `base` of the same name as a whole
 * (a config entry without `cached_input` does not inherit the default's).
 *
 * Lookup of a model name (trimmed, lower-cased): the exact name, else the name without a
 * dated snapshot suffix (`gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`), else the same two
 * steps on the part after the last `/` (`openai/gpt-4o`). Only whole suffixes are
 * stripped, so `gpt-4o-mini` never prices as `gpt-4o`.
 *
 * @example
 * const book = createPriceBook(DEFAULT_PRICES, config.pricing);
 * const upstreamBook = createPriceBook(book, upstream.pricing);
 * upstreamBook.cost(usage, record.responseModel ?? record.requestModel); // number | null
 */
export function createPriceBook(base: PriceTable | PriceBook = DEFAULT_PRICES, overrides: PriceTable = {}, options: PriceBookOptions = {}): PriceBook {
  const baseTable = isPriceBook(base) ? base.table : base;
  const merged: Record<string, ModelPrice> = {};
  for (const [name, price] of Object.entries(baseTable)) merged[normalize(name)] = Object.freeze({ ...price });
  for (const [name, price] of Object.entries(overrides)) merged[normalize(name)] = Object.freeze({ ...price });
  const table: PriceTable = Object.freeze(merged);
  const byName = new Map(Object.entries(table));
  const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
  const cache = new Map<string, ModelPrice | null>();

  function price(model: string | undefined): ModelPrice | null {
    if (!model) return null;
    const hit = cache.get(model);
    if (hit !== undefined) return hit;
    const found = lookup(byName, normalize(model));
    if (model.length > MAX_REMEMBERED_MODEL_CHARS) return found;
    if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
    cache.set(ownCopy(model), found);
    return found;
  }

  return Object.freeze({
    table,
    models: Object.freeze([...byName.keys()]),
    price,
    cost(usage: Usage, model: string | undefined, serviceTier?: string): number | null {
      const p = tierPrice(price(model), serviceTier);
      return p === null ? null : costOf(usage, p);
    },
  });
}

/**
 * The prices of the service tier an answer names (`service_tier`): flex and priority are
 * billed at their own prices (null when the entry has none: unknown, not the standard
 * price); `default`, `auto`, `scale` or none at the standard ones.
 */
export function tierPrice(price: ModelPrice | null, serviceTier: string | undefined): ModelPrice | null {
  if (price === null) return null;
  if (serviceTier === 'flex') return price.flex ?? null;
  if (serviceTier === 'priority') return price.priority ?? null;
  return price;
}

/**
 * USD for one request at a price, per 1M tokens, with text = all - audio:
 * `(text_in - cached) * input + cached * (cached_input ?? input) + audio_in * audio_input
 *  + (text_out - reasoning) * output + reasoning * (reasoning ?? output) + audio_out * audio_output`.
 * Counts are clamped so that 0 <= audio <= all, 0 <= cached <= text_in and
 * 0 <= reasoning <= text_out. Null when there are audio tokens and the price has no audio
 * price for them: audio costs several times text, so pricing it as text would be wrong.
 */
export function costOf(usage: Usage, price: ModelPrice): number | null {
  const input = nonNegative(usage.inputTokens);
  const output = nonNegative(usage.outputTokens);
  const audioIn = Math.min(nonNegative(usage.audioInputTokens ?? 0), input);
  const audioOut = Math.min(nonNegative(usage.audioOutputTokens ?? 0), output);
  if ((audioIn > 0 && price.audio_input === undefined) || (audioOut > 0 && price.audio_output === undefined)) return null;
  const textIn = input - audioIn;
  const textOut = output - audioOut;
  const cached = Math.min(nonNegative(usage.cachedInputTokens), textIn);
  const reasoning = Math.min(nonNegative(usage.reasoningTokens), textOut);
  const perMillion =
    (textIn - cached) * price.input +
    cached * (price.cached_input ?? price.input) +
    audioIn * (price.audio_input ?? 0) +
    (textOut - reasoning) * price.output +
    reasoning * (price.reasoning ?? price.output) +
    audioOut * (price.audio_output ?? 0);
  return perMillion / 1_000_000;
}

/**
 * Decimal text of a USD amount with at most `significantDigits` significant digits,
 * trailing zeros dropped, never in exponent notation (`0.000435`, `12.5`, `0`).
 */
export function formatUsd(usd: number, significantDigits = 10): string {
  if (!Number.isFinite(usd)) return '0';
  if (usd === 0) return '0';
  // Fast path (the header is on every response): JavaScript prints numbers >= 1e-6 without
  // an exponent, and toPrecision rounds to the digits asked for.
  const abs = Math.abs(usd);
  if (abs >= 1e-6 && abs < 1e21) return String(Number(usd.toPrecision(significantDigits)));
  const [mantissa, exp] = Math.abs(usd).toExponential(significantDigits - 1).split('e');
  const digits = mantissa.replace('.', '').replace(/0+$/, '') || '0';
  const exponent = Number(exp);
  let text: string;
  if (exponent < 0) text = '0.' + '0'.repeat(-exponent - 1) + digits;
  else if (digits.length <= exponent + 1) text = digits + '0'.repeat(exponent + 1 - digits.length);
  else text = digits.slice(0, exponent + 1) + '.' + digits.slice(exponent + 1);
  return usd < 0 ? '-' + text : text;
}

function lookup(byName: ReadonlyMap<string, ModelPrice>, name: string): ModelPrice | null {
  const found = byName.get(name) ?? byName.get(name.replace(SNAPSHOT_SUFFIX, ''));
  if (found) return found;
  const slash = name.lastIndexOf('/');
  return slash >= 0 && slash < name.length - 1 ? lookup(byName, name.slice(slash + 1)) : null;
}

function normalize(name: string): string {
  return name.trim().toLowerCase();
}

function nonNegative(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

function isPriceBook(x: PriceTable | PriceBook): x is PriceBook {
  return typeof (x as PriceBook).price === 'function' && typeof (x as PriceBook).cost === 'function';
}
