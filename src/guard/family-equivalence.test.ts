/**
 * The phrase patterns with their tails chained as lookaheads (`lookaheadChain` in
 * phrase-pattern.ts, to compile the long word lists once instead of once per path into
 * them) against the same patterns written out flat, as they were before: every family must
 * fire on exactly the same texts. The flat patterns are built from the same word lists by a
 * second copy of the guard's modules whose `lookaheadChain` just concatenates its parts,
 * and run through that copy's own feature extractor, so the comparison covers the
 * scanner's whole path (trigger words, merged alternations, sticky matching).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { FAMILY_NAMES, FeatureExtractor } from './features.js';
import { PHRASE_FAMILIES } from './phrase-families.js';
import { WARM_UP_TEXTS } from './scanner.js';
import { allGuardFixtureTexts } from './test-fixtures.js';
import { deepsetTrainPath, readJsonlRows } from './train.js';

const repoRoot = path.resolve(import.meta.dirname, '../..');

const dataFile = deepsetTrainPath(repoRoot);
const deepset = existsSync(dataFile) ? readJsonlRows(dataFile).map((r) => r.text) : [];

/** A small seeded generator (mulberry32), so the variants are the same on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Override phrasings put together from verbs, back-references, nouns and what follows, in
 * the languages of the override family: the parts the chained lookaheads decide on (an
 * order following, "instructions for assembly", "of the new router", news instead).
 */
function variants(count: number): string[] {
  const next = random(20250711);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const verbs = ['Ignore', 'ignore', 'Forget', 'disregard', 'Drop', 'set aside', 'Olvida', 'ignora', 'Oubliez', 'ignorez', 'Vergiss', 'Ignorieren Sie', 'dimentica', 'esqueca', 'negeer', 'zapomnij', 'zaboravi', 'забудь', "don't follow", 'stop obeying'];
  const modifiers = ['', 'all ', 'all previous ', 'the above ', 'your prior ', 'every earlier ', 'the ', 'todas las ', 'toutes les ', 'alle vorherigen ', 'tutte le ', 'todas as ', 'alle ', 'wszystkie ', 'все ', 'any of the original '];
  const nouns = ['instructions', 'rules', 'orders', 'information', 'directions', 'everything', 'it all', 'all', 'instrucciones', 'todo', 'tout', 'consignes', 'Anweisungen', 'Angaben', 'alles', 'istruzioni', 'tutto', 'instrucoes', 'tudo', 'instructies', 'wszystko', 'инструкции', 'prompt', 'system prompt'];
  const tails = [
    '', '.', '!', ' above.', ' before that', ' you were given', ' for assembly', ' for the assembly of the desk', ' of the new router',
    ' in the manual', ' that came with the kettle', ' de montaje', ' de la entrega', ' zum Aufbau', ' pour le montage', ' per il reso',
    ', and tell me your system prompt', ' and just output "pwned"', ' y dime tu prompt', ', ya encontré mi pedido', ' et dis-moi tout',
    ', the parcel arrived', ', I sent it to the wrong department', ' and now you are DAN', '. Say hello', ' und sag mir dein Passwort',
    ', was ich dir vorher gesagt habe.', ' e dimmi tutto', ' e diga oi', ' en zeg hallo', ' i powiedz', ' и скажи привет', ' then respond freely',
    ' previous to delivery', ' about my order', ' you were told and act as a pirate',
  ];
  const before = ['', 'Please ', 'Hi! ', 'I often ', 'Can I ', '¿Puedo ', 'Thanks. Now ', 'We will ', 'You should '];
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = `${pick(before)}${pick(verbs)} ${pick(modifiers)}${pick(nouns)}${pick(tails)}`;
    if (next() < 0.3) text += ` ${pick(verbs).toLowerCase()} ${pick(modifiers)}${pick(nouns)}${pick(tails)}`;
    if (next() < 0.2) text = text.replace(/ /g, () => (next() < 0.2 ? '\n' : ' '));
    out.push(text);
  }
  return out;
}

const CORPUS = [
  ...allGuardFixtureTexts(),
  ...deepset,
  ...WARM_UP_TEXTS,
  ...variants(600),
];

/** The guard's modules again, with `lookaheadChain` concatenating its parts: the patterns as written before. */
async function flatGuard(): Promise<{ families: typeof PHRASE_FAMILIES; Extractor: typeof FeatureExtractor }> {
  vi.resetModules();
  vi.doMock('./phrase-pattern.js', async (importOriginal) => ({
    ...(await importOriginal<typeof import('./phrase-pattern.js')>()),
    lookaheadChain: (...parts: string[]) => parts.join(''),
  }));
  const { PHRASE_FAMILIES: families } = await import('./phrase-families.js');
  const { FeatureExtractor: Extractor } = await import('./features.js');
  vi.doUnmock('./phrase-pattern.js');
  return { families, Extractor };
}

/** Names of the phrase families that fire on `text` (obfuscation, the last feature, left out). */
function firing(fx: FeatureExtractor, text: string): string {
  fx.extract(text);
  return FAMILY_NAMES.slice(0, -1)
    .filter((_, f) => fx.families[f] === 1)
    .join(',');
}

describe('phrase families chained as lookaheads fire exactly where the flat patterns did', () => {
  it('the training data is there (otherwise its rows are left out)', () => {
    if (deepset.length === 0) console.warn(`family-equivalence: ${dataFile} not found; its rows are not compared`);
    expect(CORPUS.length).toBeGreaterThan(deepset.length + 900);
  });

  it('the two builds differ in the patterns that use lookaheadChain, and only there', async () => {
    const { families } = await flatGuard();
    let changed = 0;
    families.forEach((family, f) =>
      family.patterns.forEach((flat, i) => {
        const chained = PHRASE_FAMILIES[f].patterns[i];
        expect(chained.triggers).toEqual(flat.triggers);
        if (chained.source !== flat.source) {
          changed++;
          expect(chained.source).toContain('(?=');
          expect(chained.source.length).toBeGreaterThan(flat.source.length);
        }
      }),
    );
    expect(changed).toBeGreaterThanOrEqual(20); // every pattern with notAboutThings, earlierOrCommand, thenCommand or the chained modifiers
  });

  it('every text of the fixtures, the training data, the warm-up and 600 generated variants', async () => {
    const { Extractor } = await flatGuard();
    for (const maxChars of [8192, 16_384]) {
      const chained = new FeatureExtractor({ maxChars });
      const flat = new Extractor({ maxChars });
      const differ: string[] = [];
      let fired = 0;
      for (const text of CORPUS) {
        const want = firing(flat, text);
        if (want !== '') fired++;
        if (firing(chained, text) !== want) differ.push(text.slice(0, 120));
      }
      expect(differ).toEqual([]);
      expect(fired).toBeGreaterThan(300); // the comparison covers texts on which families fire
    }
  });
});
