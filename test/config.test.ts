import { mkdtempSync, writeFileSync, mkdirSync, symlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { substituteEnv } from '../src/config/env.js';
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

describe('env substitution', () => {
  it('supports ${VAR}, ${VAR:-default}, ${VAR:+alternate} and $$', () => {
    const env = { A: 'a', EMPTY: '' };
    expect(substituteEnv('${A} ${B:-dflt} ${EMPTY:-dflt} ${A:+yes} ${B:+yes}| $$x', env)).toEqual({ text: 'a dflt dflt yes | $x', missing: [] });
  });

  it('reports unset plain variables with their line, and leaves comments alone', () => {
    const r = substituteEnv('a: 1\n# ${NOT_A_VAR} in a comment\nb: ${MISSING} # ${ALSO_COMMENT}\n', {});
    expect(r.missing).toEqual([{ variable: 'MISSING', line: 3 }]);
    expect(r.text).toContain('# ${NOT_A_VAR}');
  });

  it('does not treat a # inside quotes as a comment', () => {
    expect(substituteEnv('a: "x # ${A}"', { A: 'v' }).text).toBe('a: "x # v"');
  });

  it('expands a nested default instead of leaving a literal ${VAR} in the config', () => {
    const env = { INNER: 'in', EMPTY: '' };
    expect(substituteEnv('t: "${OUTER:-${FALLBACK:-}}"', env)).toEqual({ text: 't: ""', missing: [] });
    expect(substituteEnv('t: ${OUTER:-${INNER}} ${INNER:+${INNER}-x} ${EMPTY:-a${INNER:+$$}b}', env).text).toBe('t: in in-x a$b');
    // Only the branch that is used is expanded (POSIX): an unset variable in the other one is no error.
    expect(substituteEnv('t: ${INNER:-${UNSET}} ${EMPTY:+${UNSET}}', env)).toEqual({ text: 't: in ', missing: [] });
    expect(substituteEnv('t: ${OUTER:-${UNSET}}', env).missing).toEqual([{ variable: 'UNSET', line: 1 }]);
  });

  it("finds the comment after a plain scalar with an apostrophe (O'Brien)", () => {
    expect(substituteEnv("name: O'Brien # see ${NOT_A_VAR}", {})).toEqual({ text: "name: O'Brien # see ${NOT_A_VAR}", missing: [] });
    expect(substituteEnv("a: 'it''s # ${A}' # ${B}", { A: 'v' })).toEqual({ text: "a: 'it''s # v' # ${B}", missing: [] });
  });
});

describe('config validation', () => {
  it('compiles a minimal config with defaults, frozen', () => {
    const c = parseConfig(MINIMAL, { file: '/tmp/x/gateway.config.yaml', env: {} });
    expect(c.server).toMatchObject({ port: 8080, host: '0.0.0.0', max_body_bytes: 4194304, drain_timeout_ms: 25000 });
    expect(c.routing.default).toEqual(['sim']);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.server)).toBe(true);
    expect(() => (c.upstreams as Map<string, unknown>).set('x', {})).toThrow();
  });

  it('names the YAML path and line of an unknown key', () => {
    const issues = issuesOf(`${MINIMAL}server:\n  prot: 1\n`);
    expect(issues).toEqual(['gateway.config.yaml: server.prot (line 6): unknown key']);
  });

  it('names the path of a wrong type, a missing field and a bad reference — all at once', () => {
    const issues = issuesOf(`
upstreams:
  - name: a
    base_url: http://127.0.0.1:9/v1
    timeout: {connect_ms: "soon"}
  - {name: b}
routing: {default: [a, nope]}
`);
    expect(issues).toContain('gateway.config.yaml: upstreams[0].timeout.connect_ms (line 5): expected number, received string');
    expect(issues).toContain('gateway.config.yaml: upstreams[1] (line 6): expected exactly one of base_url or simulate');
    expect(issues.length).toBeGreaterThanOrEqual(2);
  });

  it('reports an unknown upstream in a route after the schema passes', () => {
    expect(issuesOf(`${MINIMAL.replace('[sim]', '[sim, ghost]')}`)).toEqual(['gateway.config.yaml: routing.default[1]: unknown upstream "ghost" (known: sim)']);
  });

  it('reports a missing environment variable', () => {
    expect(issuesOf(`${MINIMAL}admin: {token: "\${TOKEN}"}\n`)[0]).toMatch(/environment variable TOKEN is not set/);
  });

  it('reports YAML syntax errors with a line', () => {
    expect(issuesOf('upstreams: [\n')[0]).toMatch(/^gateway\.config\.yaml \(line \d+\)/);
  });

  it('rejects upstream headers that can never be sent (instead of answering every request 503)', () => {
    const issues = issuesOf(`
upstreams:
  - name: a
    base_url: http://127.0.0.1:9/v1
    headers: {"OpenAI Organization": org-1, x-team: "snow ☃"}
routing: {default: [a]}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: upstreams[0].headers.OpenAI Organization (line 5): expected an HTTP header name',
      'gateway.config.yaml: upstreams[0].headers.x-team (line 5): expected an HTTP header value (no control or non-Latin-1 characters)',
    ]);
  });

  it('routes a keyless upstream to its keyless target and says so', () => {
    const text = `
upstreams:
  - {name: openai, base_url: "https://api.openai.com/v1", api_key: "\${KEY:-}", keyless: sim}
  - {name: sim, simulate: {}}
routing: {default: [openai]}
`;
    const without = parseConfig(text, { file: 'g.yaml', env: {} });
    expect(without.routing.default).toEqual(['sim']);
    expect(without.notes[0]).toMatch(/"openai" has no API key/);
    const withKey = parseConfig(text, { file: 'g.yaml', env: { KEY: 'sk-x' } });
    expect(withKey.routing.default).toEqual(['openai']);
  });
});

describe('promptgate check', () => {
  const tsx = path.resolve('node_modules/.bin/tsx');
  it('prints every error with its path and exits 1', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-check-'));
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, `${MINIMAL}server: {port: "x", extra: 1}\n`);
    let out = '';
    let code = 0;
    try {
      execFileSync(tsx, ['src/main.ts', 'check', '--config', file], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      const e = err as { status: number; stderr: string };
      code = e.status;
      out = e.stderr;
    }
    expect(code).toBe(1);
    expect(out).toContain('bad.yaml: server.port (line 5): expected number, received string');
    expect(out).toContain('bad.yaml: server.extra (line 5): unknown key');
    expect(out).toContain('2 errors');
  });

  it('accepts the shipped gateway.config.yaml', () => {
    const out = execFileSync(tsx, ['src/main.ts', 'check', '--config', 'gateway.config.yaml'], { encoding: 'utf8', env: { ...process.env, OPENAI_API_KEY: '' } });
    expect(out).toMatch(/OK/);
  });
});

describe('hot reload', () => {
  let watcher: ConfigWatcher | undefined;
  afterEach(() => watcher?.close());

  const waitFor = async (cond: () => boolean, ms = 3000) => {
    const until = Date.now() + ms;
    while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(cond()).toBe(true);
  };

  it('reloads a valid change and rejects an invalid one, keeping the old config', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-reload-'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, MINIMAL);
    const reloaded: RuntimeConfig[] = [];
    const rejected: string[][] = [];
    watcher = new ConfigWatcher({
      file,
      debounceMs: 50,
      onReload: (c) => reloaded.push(c),
      onRejected: (issues) => rejected.push(issues.map((i) => i.message)),
    });
    writeFileSync(file, `${MINIMAL}server: {max_body_bytes: 1234}\n`);
    await waitFor(() => reloaded.length === 1);
    expect(reloaded[0].server.max_body_bytes).toBe(1234);

    writeFileSync(file, `${MINIMAL}server: {max_body_bytes: -1}\n`);
    await waitFor(() => rejected.length === 1);
    expect(reloaded).toHaveLength(1);
  });

  it('follows a Kubernetes ConfigMap update (the ..data symlink swap)', async () => {
    // kubelet layout: dir/..2026_1/gateway.config.yaml, dir/..data -> ..2026_1,
    // dir/gateway.config.yaml -> ..data/gateway.config.yaml; an update writes a new
    // timestamped dir and atomically renames a new ..data symlink over the old one.
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-cm-'));
    mkdirSync(path.join(dir, '..v1'));
    writeFileSync(path.join(dir, '..v1', 'gateway.config.yaml'), MINIMAL);
    symlinkSync('..v1', path.join(dir, '..data'));
    symlinkSync('..data/gateway.config.yaml', path.join(dir, 'gateway.config.yaml'));
    const file = path.join(dir, 'gateway.config.yaml');
    const reloaded: RuntimeConfig[] = [];
    watcher = new ConfigWatcher({ file, debounceMs: 50, onReload: (c) => reloaded.push(c), onRejected: () => undefined });

    mkdirSync(path.join(dir, '..v2'));
    writeFileSync(path.join(dir, '..v2', 'gateway.config.yaml'), `${MINIMAL}server: {max_body_bytes: 777}\n`);
    symlinkSync('..v2', path.join(dir, '..data_tmp'));
    renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    await waitFor(() => reloaded.length >= 1);
    expect(reloaded.at(-1)!.server.max_body_bytes).toBe(777);
  });
});
