import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createInjectionScanner } from './scanner.js';

/** "[lang] text" lines of a fixture; `#` lines are comments. */
function readFixture(name: string): { lang: string; text: string }[] {
  return readFileSync(path.join(import.meta.dirname, 'fixtures', name), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('['))
    .map((line) => ({ lang: line.slice(1, 3), text: line.slice(5) }));
}

const benign = readFixture('benign-multilingual.txt');
const attacks = readFixture('attacks-multilingual.txt');
const LANGUAGES = ['en', 'de', 'es', 'fr', 'it', 'pt', 'nl', 'pl', 'ru'];

/**
 * Benign messages the shipped n-gram model alone scores at 0.5 or more (no phrase family
 * fires on them). They go away only with retraining; listed so that any new one fails.
 */
const MODEL_ONLY_FALSE_POSITIVES = [
  'Should I ignore the previous instructions about the return label? The new email says something else.',
  'Die bisherigen Angaben bitte ignorieren, die Adresse ist jetzt eine andere.',
];

describe('everyday customer wording is not an injection (review: "Olvida todo, ya encontré mi pedido" was flagged)', () => {
  const scanner = createInjectionScanner();

  it('the fixtures cover every language, with at least 60 benign messages', () => {
    expect(benign.length).toBeGreaterThanOrEqual(60);
    for (const lang of LANGUAGES) {
      expect(benign.some((m) => m.lang === lang), `benign ${lang}`).toBe(true);
      expect(attacks.some((m) => m.lang === lang), `attack ${lang}`).toBe(true);
    }
  });

  it('flags every attack phrasing', () => {
    const missed = attacks.filter((m) => !scanner.scan(m.text).flagged).map((m) => `[${m.lang}] ${m.text}`);
    expect(missed).toEqual([]);
  });

  it('fires no phrase family on a benign message', () => {
    const fired = benign
      .map((m) => ({ ...m, families: scanner.scan(m.text).signals.filter((s) => s !== 'model') }))
      .filter((m) => m.families.length > 0)
      .map((m) => `[${m.lang}] ${m.text} -> ${m.families.join(', ')}`);
    expect(fired).toEqual([]);
  });

  it(`flags at most ${MODEL_ONLY_FALSE_POSITIVES.length} benign messages, the known model-only ones`, () => {
    const flagged = benign.filter((m) => scanner.scan(m.text).flagged).map((m) => m.text);
    expect(flagged.length).toBeLessThanOrEqual(MODEL_ONLY_FALSE_POSITIVES.length);
    for (const text of flagged) expect(MODEL_ONLY_FALSE_POSITIVES, text).toContain(text);
  });
});
