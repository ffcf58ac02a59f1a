/**
 * README.md followed by a newcomer, ninth pass: the config errors a first edit produces, as
 * the README shows them. Each line an operator reads must point at the line they typed: the
 * template check of "Checks at load time" run on the shipped template, and unknown or
 * mistyped keys whose value is a block (the usual YAML layout) named at the key's line.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';

const README = readFileSync('README.md', 'utf8');

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** `node --import tsx src/main.ts`, by absolute paths, so it runs from any directory. */
const CLI = ['--import', pathToFileURL(path.resolve('node_modules/tsx/dist/loader.mjs')).href, path.resolve('src/main.ts')];

function cli(args: string[], cwd: string) {
  return spawnSync(process.execPath, [...CLI, ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    cwd,
    env: { ...process.env, OPENAI_API_KEY: '', PROMPTGATE_CONFIG: '' },
  });
}

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, { file: 'gateway.config.yaml', env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

/** The 1-based line of the first line of `text` that is exactly `line`. */
function lineNumber(text: string, line: string): number {
  const i = text.split('\n').indexOf(line);
  expect(i, `"${line}" in the config`).toBeGreaterThanOrEqual(0);
  return i + 1;
}

describe('README "Checks at load time": the example line is what `check` prints', () => {
  it('a second version of the shipped support-reply made "1.x" gives the README line, file, path, line and message', () => {
    const anchor = README.indexOf('#### Checks at load time');
    expect(anchor).toBeGreaterThan(0);
    const start = README.indexOf('```\n', anchor) + 4;
    const shown = README.slice(start, README.indexOf('\n```', start));
    expect(shown).toMatch(/^config\/templates\/support-reply\.yaml: versions\[1\]\.version \(line \d+\): "1\.x" is not semver/);

    const dir = mkdtempSync(path.join(tmpdir(), 'pg-newcomer9-'));
    made.push(dir);
    cpSync('config', path.join(dir, 'config'), { recursive: true });
    cpSync('gateway.config.yaml', path.join(dir, 'gateway.config.yaml'));
    const template = path.join(dir, 'config', 'templates', 'support-reply.yaml');
    const original = readFileSync(template, 'utf8');
    const edited = original.replace('  - version: "1.1.0"\n', '  - version: "1.x"\n');
    expect(edited).not.toBe(original);
    writeFileSync(template, edited);

    const run = cli(['check', '--config', 'gateway.config.yaml'], dir);
    expect(run.status).toBe(1);
    expect(run.stderr.split('\n')).toContain(shown);
  });
});

describe('config errors name the line of the key, also when its value is a block on the lines below', () => {
  it('a misspelt top-level section of the shipped config (`routng:`) is reported at its own line (was: the line after it)', () => {
    const shipped = readFileSync('gateway.config.yaml', 'utf8');
    const text = shipped.replace('\nrouting:\n', '\nroutng:\n');
    expect(text).not.toBe(shipped);
    const line = lineNumber(text, 'routng:');
    expect(issuesOf(text)).toContain(`gateway.config.yaml: routng (line ${line}): unknown key; did you mean routing?`);
  });

  it('an unknown key inside an upstream, with a block value, is at the key (was: the first line of its value)', () => {
    const text = 'upstreams:\n  - name: sim\n    simulate: {}\n    retri:\n      attempts: 1\nrouting: {default: [sim]}\n';
    expect(issuesOf(text)).toEqual([`gateway.config.yaml: upstreams[0].retri (line ${lineNumber(text, '    retri:')}): unknown key; did you mean retry?`]);
  });

  it('a value of the wrong type written as a block list is at its key', () => {
    const text = 'upstreams:\n  - name: sim\n    simulate: {}\n    retry:\n      - attempts: 1\nrouting: {default: [sim]}\n';
    const issues = issuesOf(text);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(new RegExp(`^gateway\\.config\\.yaml: upstreams\\[0\\]\\.retry \\(line ${lineNumber(text, '    retry:')}\\): expected object`));
  });

  it('a scalar value keeps its own line, and a missing section still names the file\'s first line', () => {
    const text = 'upstreams:\n  - name: sim\n    simulate: {}\n    connections: many\n';
    expect(issuesOf(text)).toEqual([
      'gateway.config.yaml: upstreams[0].connections (line 4): expected number, received string',
      'gateway.config.yaml: routing (line 1): required (expected object, received undefined)',
    ]);
  });
});
