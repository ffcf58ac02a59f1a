/**
 * The guard's labelled test texts in src/guard/fixtures/, read the one way the tests, the
 * equivalence checks and `npm run eval:guard` all read them (test and tooling only; not
 * imported by production code).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The fixture files: benign and attack texts, in several languages, tool results, long messages and near misses. */
export const GUARD_FIXTURE_FILES = [
  'benign-multilingual.txt',
  'attacks-multilingual.txt',
  'benign-tool-results.txt',
  'attacks-in-tool-results.txt',
  'benign-long-messages.txt',
  'attacks-in-long-messages.txt',
  'benign-near-misses.txt',
] as const;

/**
 * The `[lang] text` lines of a fixture file; other lines (`#` comments) are skipped; `\n` in a
 * text is a line break, `\\` a backslash.
 */
export function readGuardFixture(name: string): { lang: string; text: string }[] {
  return readFileSync(path.join(import.meta.dirname, 'fixtures', name), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('['))
    .map((line) => ({ lang: line.slice(1, 3), text: line.slice(5).replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\')) }));
}

/** The texts of every fixture file, in GUARD_FIXTURE_FILES order. */
export function allGuardFixtureTexts(): string[] {
  return GUARD_FIXTURE_FILES.flatMap((name) => readGuardFixture(name).map((f) => f.text));
}
