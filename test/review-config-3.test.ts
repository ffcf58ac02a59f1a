/**
 * Review "an operator edits the config": keyless chains, YAML tags and merge keys, a second
 * YAML document, an empty `${VAR}`, and a config file that is a symlink into another directory.
 */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { ConfigWatcher } from '../src/config/watch.js';
import type { RuntimeConfig } from '../src/config/compile.js';

const MINIMAL = `
upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
`;

function issuesOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(text, { file: '/tmp/x/gateway.config.yaml', env });
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('keyless redirections', () => {
  it('follow a keyless target that is keyless itself to the end (was: its traffic went to that target with the client Authorization)', () => {
    const config = parseConfig(
      `
upstreams:
  - {name: openai, base_url: "https://api.openai.com/v1", keyless: azure}
  - {name: azure, base_url: "https://example.openai.azure.com/openai/v1", keyless: sim}
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [openai, azure], models: {gpt-4o: [azure]}}
`,
      { file: '/tmp/x/gateway.config.yaml', env: {} },
    );
    expect(config.routing.default).toEqual(['sim']);
    expect(config.routing.models.get('gpt-4o')).toEqual(['sim']);
    expect(config.notes).toContain('upstream "openai" has no API key: its traffic goes to "sim" (via azure)');
  });

  it('that go round in a loop are an error naming each keyless in it (was: "its traffic goes to" itself, the client Authorization sent)', () => {
    expect(issuesOf(`
upstreams:
  - {name: a, base_url: "https://a.example/v1", keyless: a}
routing: {default: [a]}
`)).toEqual(['gateway.config.yaml: upstreams[0].keyless (line 3): keyless redirections go round in a loop (a -> a): one of them needs an api_key or keyless: pass_through']);
    const issues = issuesOf(`
upstreams:
  - {name: front, base_url: "https://f.example/v1", keyless: a}
  - {name: a, base_url: "https://a.example/v1", keyless: b}
  - {name: b, base_url: "https://b.example/v1", keyless: a}
routing: {default: [front]}
`);
    expect(issues).toEqual([
      expect.stringContaining('upstreams[1].keyless (line 4): keyless redirections go round in a loop (a -> b -> a)'),
      expect.stringContaining('upstreams[2].keyless (line 5): keyless redirections go round in a loop (b -> a -> b)'),
    ]);
  });
});

describe('YAML features', () => {
  it('rejects a custom tag such as !ENV, naming the line (was: the tagged text kept as the value, an api_key of "OPENAI_API_KEY")', () => {
    const issues = issuesOf(`
upstreams:
  - name: openai
    base_url: https://api.openai.com/v1
    api_key: !ENV OPENAI_API_KEY
routing: {default: [openai]}
`);
    expect(issues).toEqual(['gateway.config.yaml (line 5): Unresolved tag: !ENV (promptgate knows no custom YAML tags; for the environment use ${VAR})']);
  });

  it('applies merge keys (<<) from an anchor (was: "upstreams[1].<<: unknown key")', () => {
    const config = parseConfig(
      `
upstreams:
  - &base {name: primary, base_url: "https://a.example/v1", api_key: k, timeout: {total_ms: 1234}}
  - <<: *base
    name: secondary
    base_url: https://b.example/v1
routing: {default: [primary, secondary]}
`,
      { file: '/tmp/x/gateway.config.yaml', env: {} },
    );
    const secondary = config.upstreams.get('secondary')!;
    expect(secondary.origin).toBe('https://b.example');
    expect(secondary.config.timeout.total_ms).toBe(1234);
    expect(secondary.config.api_key).toBe('k');
  });

  it('says a file holds two documents in an operator\'s words (was: "please use YAML.parseAllDocuments()")', () => {
    expect(issuesOf(`${MINIMAL}---\n${MINIMAL}`)).toEqual([
      'gateway.config.yaml (line 5): the file holds more than one YAML document (text after a "---" or "..." that ends the first); a config is one document',
    ]);
    expect(issuesOf(`---\n${MINIMAL}...\n`)).toEqual([]); // one document, with its markers
  });
});

describe('an unquoted ${VAR} that is empty', () => {
  it('names the variable where YAML read nothing as null (was: only "expected string, received null")', () => {
    expect(issuesOf(`admin:\n  token: \${ADMIN_TOKEN}\nserver: {port: \${PORT_X:-}}\n${MINIMAL}`, { ADMIN_TOKEN: '' })).toEqual([
      'gateway.config.yaml: server.port (line 3): expected number, received null (${PORT_X} is empty here, and an unquoted empty value is null)',
      'gateway.config.yaml: admin.token (line 2): expected string, received null (${ADMIN_TOKEN} is empty here, and an unquoted empty value is null; quote it, "${ADMIN_TOKEN}", for an empty string)',
    ]);
    expect(issuesOf(`admin:\n  token: "\${ADMIN_TOKEN}"\n${MINIMAL}`, { ADMIN_TOKEN: '' })).toEqual([]);
  });
});

describe('promptgate check', () => {
  it('prints a custom tag and a second document with their lines and exits 1', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-check3-'));
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, `admin: {token: !secret admin_token}\n${MINIMAL}---\nserver: {}\n`);
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'check', '--config', file], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      [
        'bad.yaml (line 6): the file holds more than one YAML document (text after a "---" or "..." that ends the first); a config is one document',
        'bad.yaml (line 1): Unresolved tag: !secret (promptgate knows no custom YAML tags; for the environment use ${VAR})',
        `2 errors in ${file}`,
        '',
      ].join('\n'),
    );
    expect(run.status).toBe(1);
  });
});

describe('hot reload of a config file that is a symlink into another directory', () => {
  let watcher: ConfigWatcher | undefined;
  afterEach(() => watcher?.close());

  it('reloads when the target is edited (was: only the link\'s directory was watched, the edit never seen)', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'pg-link-'));
    mkdirSync(path.join(root, 'srv'));
    mkdirSync(path.join(root, 'etc'));
    const target = path.join(root, 'srv', 'promptgate.yaml');
    writeFileSync(target, MINIMAL);
    const file = path.join(root, 'etc', 'gateway.config.yaml');
    symlinkSync(target, file);
    const reloaded: RuntimeConfig[] = [];
    const rejected: string[] = [];
    watcher = new ConfigWatcher({ file, debounceMs: 50, onReload: (c) => reloaded.push(c), onRejected: (i) => rejected.push(...i.map((x) => x.message)) });

    writeFileSync(target, `${MINIMAL}server: {max_body_bytes: 4321}\n`);
    const until = Date.now() + 3000;
    while (reloaded.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(reloaded.at(-1)?.server.max_body_bytes).toBe(4321);

    writeFileSync(target, `${MINIMAL}server: {max_body_bytes: 0}\n`);
    const until2 = Date.now() + 3000;
    while (rejected.length === 0 && Date.now() < until2) await new Promise((r) => setTimeout(r, 20));
    expect(rejected).toEqual([expect.stringContaining('Too small')]);
  });
});
