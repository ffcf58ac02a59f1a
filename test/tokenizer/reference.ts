/**
 * gpt-tokenizer (a dev dependency) as the reference for promptgate's own token counter:
 * the source of the shipped vocabularies and of the counts the tests compare with.
 */
import type { EncodingName } from '../../src/tokenizer/index.js';

const utf8 = new TextEncoder();

/** The vocabulary in rank order, each token as bytes. */
export async function referenceTokens(name: EncodingName): Promise<Uint8Array[]> {
  const ranks = ((await import(`gpt-tokenizer/bpeRanks/${name}`)) as { default: (string | number[] | undefined)[] }).default;
  return ranks.map((t, rank) => {
    if (t === undefined) throw new Error(`${name}: rank ${rank} is missing`);
    return typeof t === 'string' ? utf8.encode(t) : Uint8Array.from(t);
  });
}

type Encoder = { countTokens(text: string, options?: { disallowedSpecial?: Set<string> }): number };

/** gpt-tokenizer's count, with special tokens counted as text (as promptgate counts). */
export async function referenceCounter(name: EncodingName): Promise<(text: string) => number> {
  const encoder = (await import(`gpt-tokenizer/encoding/${name}`)) as Encoder;
  const asText = { disallowedSpecial: new Set<string>() };
  return (text) => encoder.countTokens(text, asText);
}
