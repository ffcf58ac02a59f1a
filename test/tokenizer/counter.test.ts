/**
 * promptgate's token counter against gpt-tokenizer (the reference, a dev dependency): the
 * shipped vocabularies are its tables, and every count agrees on random text, edge cases,
 * and the repository's own prose and templates.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENCODINGS, countTokens, tokenCounter, vocabularyFile } from '../../src/tokenizer/index.js';
import { BpeVocabulary } from '../../src/tokenizer/vocabulary.js';
import { referenceCounter, referenceTokens } from './reference.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');

/** A deterministic text generator over pieces that stress the pre-tokenizer and the merges. */
function randomTexts(count: number, seed: number): string[] {
  const pieces = [
    'a', 'b', 'the', 'The', 'THE', ' and', ' ', '  ', '\n', '\n\n', '\r\n', '\t', 'é', 'ß', 'İ', 'ﬁ', 'Ω', '\u0301', 'a\u0308',
    '日本語', 'Привет', 'مرحبا', '😀', '🙂🙃', '\u200b', '\ud800', '1', '123', '45678', "'s", "'LL", "'Re", '!', '?.', ' /', '//',
    '<|endoftext|>', '<|im_start|>', '-', '–', '—', '“', '”', '{"a": 1}', 'https://example.com/x?y=1', '    def f():', 'x', '9',
  ];
  let state = seed;
  const next = () => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state / 0x7fffffff;
  };
  const texts: string[] = [];
  for (let i = 0; i < count; i++) {
    let s = '';
    const length = 1 + Math.floor(next() * 40);
    for (let j = 0; j < length; j++) {
      // Mostly known pieces; sometimes any UTF-16 code unit (lone surrogates included).
      s += next() < 0.85 ? pieces[Math.floor(next() * pieces.length)] : String.fromCharCode(Math.floor(next() * (next() < 0.6 ? 0x80 : 0x10000)));
    }
    texts.push(s);
  }
  return texts;
}

function repositoryTexts(): string[] {
  const files = [
    'README.md',
    ...readdirSync(path.join(repoRoot, 'config/knowledge')).map((f) => `config/knowledge/${f}`),
    ...readdirSync(path.join(repoRoot, 'config/templates')).map((f) => `config/templates/${f}`),
  ];
  return files.map((f) => readFileSync(path.join(repoRoot, f), 'utf8'));
}

describe.each(ENCODINGS)('%s', (name) => {
  it('ships the reference vocabulary, byte for byte', async () => {
    const shipped = readFileSync(vocabularyFile(name));
    const reference = BpeVocabulary.encode(await referenceTokens(name));
    expect(Buffer.compare(shipped, Buffer.from(reference))).toBe(0);
  });

  it('finds every token at its rank', async () => {
    const tokens = await referenceTokens(name);
    const vocabulary = BpeVocabulary.decode(readFileSync(vocabularyFile(name)));
    expect(vocabulary.size).toBe(tokens.length);
    let wrong = 0;
    tokens.forEach((t, rank) => {
      if (vocabulary.rank(t, 0, t.length) !== rank) wrong++;
    });
    expect(wrong).toBe(0);
    expect(vocabulary.rank(new Uint8Array([0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa]), 0, 6)).toBe(-1);
  });

  it('counts 6,000 random texts as gpt-tokenizer does', async () => {
    const reference = await referenceCounter(name);
    const mismatches = randomTexts(6_000, name === 'o200k_base' ? 7 : 11).filter((t) => countTokens(t, name) !== reference(t));
    expect(mismatches.slice(0, 3)).toEqual([]);
  });

  // Long pieces (a run of letters with no break is one piece) merge through a heap: the
  // same result as tiktoken's scan, without its quadratic time (100 KB of one letter took
  // seconds and blocked the gateway).
  it('counts 600 long single pieces as gpt-tokenizer does', async () => {
    const reference = await referenceCounter(name);
    const alphabets = ['ab', 'abcdefghij', 'aeiou', 'zzzzzzzzzy', 'éàü', 'あいう', '😀🙂', ' \t', '1234', 'ΑΒΓαβγ'];
    let state = name === 'o200k_base' ? 3 : 5;
    const next = () => (state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff) / 0x7fffffff;
    const mismatches: string[] = [];
    for (let i = 0; i < 600; i++) {
      const chars = [...alphabets[Math.floor(next() * alphabets.length)]];
      let s = next() < 0.3 ? 'X' : '';
      for (let j = 60 + Math.floor(next() * 600); j > 0; j--) s += chars[Math.floor(next() * chars.length)];
      if (countTokens(s, name) !== reference(s)) mismatches.push(s);
    }
    expect(mismatches.slice(0, 2)).toEqual([]);
  });

  it('counts edge cases and the repository texts as gpt-tokenizer does', async () => {
    const reference = await referenceCounter(name);
    const texts = [
      'a',
      ' ',
      '\n',
      'x'.repeat(5_000), // one long piece: a long merge
      ' '.repeat(3_000) + 'x',
      '\n \n\t\r\n   ',
      'é'.repeat(700),
      '😀'.repeat(300),
      '\ud800\udc00\udfff\ud83d',
      'Hello <|endoftext|> world <|fim_prefix|>',
      ...repositoryTexts(),
    ];
    for (const t of texts) expect([t.slice(0, 40), countTokens(t, name)]).toEqual([t.slice(0, 40), reference(t)]);
    expect(countTokens('', name)).toBe(0);
  });
});

describe('BpeVocabulary', () => {
  it('round-trips its file format', () => {
    const tokens = [new Uint8Array([97]), new Uint8Array([98]), new Uint8Array([97, 98])];
    const v = BpeVocabulary.decode(BpeVocabulary.encode(tokens));
    expect(v.size).toBe(3);
    expect(v.rank(new Uint8Array([120, 97, 98]), 1, 3)).toBe(2);
    expect([...v.token(2)]).toEqual([97, 98]);
  });

  it('rejects malformed files', () => {
    const good = BpeVocabulary.encode([new Uint8Array([97]), new Uint8Array([98])]);
    expect(() => BpeVocabulary.decode(new Uint8Array(4))).toThrow(/not a BPE1 file/);
    expect(() => BpeVocabulary.decode(good.slice(0, good.length - 1))).toThrow(/file length/);
    const empty = good.slice();
    empty[8] = 0;
    expect(() => BpeVocabulary.decode(empty)).toThrow(/empty/);
    expect(() => BpeVocabulary.decode(BpeVocabulary.encode([new Uint8Array([97]), new Uint8Array([97])]))).toThrow(/repeats/);
    expect(() => BpeVocabulary.encode([new Uint8Array(0)])).toThrow(/0 bytes/);
  });

  it('keeps one counter per encoding', () => {
    expect(tokenCounter('o200k_base')).toBe(tokenCounter('o200k_base'));
  });
});
