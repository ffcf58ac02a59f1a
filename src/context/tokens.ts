/**
 * Token counts for the context budget: gpt-tokenizer with o200k_base (gpt-4o, gpt-4.1, the
 * o-series, gpt-5). The BPE table is loaded on first use (about 200 ms, once per process;
 * the same module instance `telemetry/usage.ts` loads); `preloadContextTokenizer` moves that
 * out of the first request.
 */
import { createRequire } from 'node:module';

type Encoder = typeof import('gpt-tokenizer/encoding/o200k_base');

const require = createRequire(import.meta.url);
let encoder: Encoder | undefined;
/** Text may contain `<|endoftext|>` and the like: count it as text, never throw. */
const AS_TEXT = { disallowedSpecial: new Set<string>() };

function load(): Encoder {
  encoder ??= require('gpt-tokenizer/encoding/o200k_base') as Encoder;
  return encoder;
}

/** Tokens of `text` (0 for the empty string). */
export function countTokens(text: string): number {
  return text === '' ? 0 : load().countTokens(text, AS_TEXT);
}

/** Tokens of a value as a template would show it: strings as is, anything else as JSON. */
export function countValueTokens(value: unknown): number {
  if (value === undefined || value === null) return 0;
  return countTokens(typeof value === 'string' ? value : JSON.stringify(value));
}

/** Loads the encoding now (server start) rather than in the first request. */
export function preloadContextTokenizer(): void {
  load();
}
