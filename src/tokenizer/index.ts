/**
 * OpenAI's tiktoken encodings for counting tokens: o200k_base (gpt-4o, gpt-4.1, gpt-5, the
 * o-series) and cl100k_base (gpt-4, gpt-3.5). Each vocabulary is read from
 * `assets/bpe/<name>.bin` on first use (~10 ms, ~3 MB for o200k_base) and kept for the
 * process. test/tokenizer checks every count against gpt-tokenizer.
 */
import { readFileSync } from 'node:fs';
import { TokenCounter } from './counter.js';
import { BpeVocabulary } from './vocabulary.js';

export type EncodingName = 'o200k_base' | 'cl100k_base';
export const ENCODINGS: readonly EncodingName[] = ['o200k_base', 'cl100k_base'];

// The pre-tokenizer patterns of tiktoken's openai_public.py, in JavaScript syntax.
const CONTRACTION = String.raw`'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE])`;
const PATTERNS: Record<EncodingName, RegExp> = {
  o200k_base: new RegExp(
    [
      String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:${CONTRACTION})?`,
      String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:${CONTRACTION})?`,
      String.raw`\p{N}{1,3}`,
      String.raw` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
      String.raw`\s*[\r\n]+`,
      String.raw`\s+(?!\S)`,
      String.raw`\s+`,
    ].join('|'),
    'gu',
  ),
  cl100k_base: new RegExp(
    [CONTRACTION, String.raw`[^\r\n\p{L}\p{N}]?\p{L}+`, String.raw`\p{N}{1,3}`, String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`, String.raw`\s+$`, String.raw`\s*[\r\n]`, String.raw`\s+(?!\S)`, String.raw`\s`].join('|'),
    'gu',
  ),
};

/** Where the vocabularies live: `assets/bpe/` at the package root (from src/ and dist/ alike). */
export function vocabularyFile(name: EncodingName): URL {
  return new URL(`../../assets/bpe/${name}.bin`, import.meta.url);
}

const counters = new Map<EncodingName, TokenCounter>();

/** The counter of an encoding, loading its vocabulary on first use. */
export function tokenCounter(name: EncodingName): TokenCounter {
  let counter = counters.get(name);
  if (!counter) {
    counter = new TokenCounter(BpeVocabulary.decode(readFileSync(vocabularyFile(name))), PATTERNS[name]);
    counters.set(name, counter);
  }
  return counter;
}

/** Tokens of `text` in an encoding (o200k_base unless named); special tokens count as text. */
export function countTokens(text: string, encoding: EncodingName = 'o200k_base'): number {
  return text === '' ? 0 : tokenCounter(encoding).count(text);
}
