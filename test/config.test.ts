import { mkdtempSync, writeFileSync, mkdirSync, symlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
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
    expect(substituteEnv('${A} ${B:-dflt} ${EMPTY:-dflt} ${A:+yes} ${B:+yes}| $$x', env)).toEqual({ text: 'a dflt dflt yes | $x', missing: [], lineBreaks: [], unsupported: [] });
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
    expect(substituteEnv('t: "${OUTER:-${FALLBACK:-}}"', env)).toEqual({ text: 't: ""', missing: [], lineBreaks: [], unsupported: [] });
    expect(substituteEnv('t: ${OUTER:-${INNER}} ${INNER:+${INNER}-x} ${EMPTY:-a${INNER:+$$}b}', env).text).toBe('t: in in-x a$b');
    // Only the branch that is used is expanded (POSIX): an unset variable in the other one is no error.
    expect(substituteEnv('t: ${INNER:-${UNSET}} ${EMPTY:+${UNSET}}', env)).toEqual({ text: 't: in ', missing: [], lineBreaks: [], unsupported: [] });
    expect(substituteEnv('t: ${OUTER:-${UNSET}}', env).missing).toEqual([{ variable: 'UNSET', line: 1 }]);
  });

  it('rejects shell forms it does not have and an unclosed ${ (was: kept as literal text, e.g. an API key of "${KEY:?required}")', () => {
    const env = { KEY: 'sk-test' };
    expect(substituteEnv('a: ${KEY:?required}\nb: ${KEY-x} $${KEY:?} # ${KEY?}\nc: "${KEY:-${OTHER"\nd: ${KEY:+${KEY:?}} ${KEY:-${UNUSED:?}}', env).unsupported).toEqual([
      { variable: 'KEY', line: 1 },
      { variable: 'KEY', line: 2 },
      { variable: 'KEY', line: 3 },
      { variable: 'OTHER', line: 3 }, // unclosed too: read again as text, it is a reference of its own
      { variable: 'KEY', line: 4 },
    ]);
    expect(issuesOf(`${MINIMAL}admin: {token: "\${KEY:?required}"}\n`, env)).toEqual([
      'gateway.config.yaml: admin.token (line 5): ${KEY...} is not a substitution promptgate knows: use ${KEY}, ${KEY:-default} or ${KEY:+alternate}, closed by "}" on the same line ($$ is a literal $)',
    ]);
  });

  it("finds the comment after a plain scalar with an apostrophe (O'Brien)", () => {
    expect(substituteEnv("name: O'Brien # see ${NOT_A_VAR}", {})).toEqual({ text: "name: O'Brien # see ${NOT_A_VAR}", missing: [], lineBreaks: [], unsupported: [] });
    expect(substituteEnv("a: 'it''s # ${A}' # ${B}", { A: 'v' })).toEqual({ text: "a: 'it''s # v' # ${B}", missing: [], lineBreaks: [], unsupported: [] });
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
    expect(issues).toEqual(['gateway.config.yaml: server.prot (line 6): unknown key; did you mean port?']);
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
    expect(issuesOf(`${MINIMAL.replace('[sim]', '[sim, ghost]')}`)).toEqual(['gateway.config.yaml: routing.default[1] (line 4): unknown upstream "ghost" (known: sim)']);
  });

  it('reports a missing environment variable', () => {
    expect(issuesOf(`${MINIMAL}admin: {token: "\${TOKEN}"}\n`)[0]).toMatch(/environment variable TOKEN is not set/);
  });

  it('reports YAML syntax errors with a line', () => {
    expect(issuesOf('upstreams: [\n')[0]).toMatch(/^gateway\.config\.yaml \(line \d+\)/);
  });

  // Regression: setTimeout fires after 1 ms for more than 2^31-1 ms, so total_ms: 3000000000 aborted every request at once.
  it('rejects durations longer than a Node timer can wait, naming the path', () => {
    const issues = issuesOf(`
server: {drain_timeout_ms: 2147483648}
upstreams:
  - name: a
    base_url: http://127.0.0.1:9/v1
    timeout: {total_ms: 3000000000}
routing: {default: [a]}
context: {deadline_ms: 2147483647}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: server.drain_timeout_ms (line 2): at most 2147483647 ms (about 24.8 days)',
      'gateway.config.yaml: upstreams[0].timeout.total_ms (line 6): at most 2147483647 ms (about 24.8 days)',
    ]);
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

  it('rejects a base_url with a fragment or user:pass@, without echoing it (was: silently cut to origin + path)', () => {
    const issues = issuesOf(`
upstreams:
  - {name: a, base_url: "https://api.example.com/v1#frag"}
  - {name: b, base_url: "https://user:hunter2@api.example.com/v1"}
routing: {default: [a, b]}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: upstreams[0].base_url (line 3): expected a URL without a fragment (#...)',
      'gateway.config.yaml: upstreams[1].base_url (line 4): expected a URL without credentials (user:pass@); use api_key or headers',
    ]);
  });

  it('says what a base_url should be when it is not an http(s) URL (was: "Invalid URL")', () => {
    const issues = issuesOf(`
upstreams:
  - {name: a, base_url: "ftp://api.example.com/v1"}
  - {name: b, base_url: "api.example.com/v1"}
routing: {default: [a, b]}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: upstreams[0].base_url (line 3): expected an http:// or https:// URL, e.g. https://api.openai.com/v1',
      'gateway.config.yaml: upstreams[1].base_url (line 4): expected an http:// or https:// URL, e.g. https://api.openai.com/v1',
    ]);
  });

  it("keeps a base_url's query (Azure api-version) for every request of the upstream", () => {
    const config = parseConfig(
      `
upstreams:
  - {name: azure, base_url: "https://res.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21"}
routing: {default: [azure]}
`,
      { file: 'g.yaml', env: {} },
    );
    const azure = config.upstreams.get('azure')!;
    expect(azure.basePath).toBe('/openai/deployments/gpt-4o');
    expect(azure.baseQuery).toBe('api-version=2024-10-21');
  });

  // Regression: an IPv6 upstream's spans said server.address "[::1]" (URL's hostname keeps
  // the brackets); the conventions want the address itself.
  it('gives an IPv6 upstream server.address without brackets', () => {
    const config = parseConfig(`
upstreams:
  - {name: v6, base_url: "http://[::1]:8000/v1"}
  - {name: v4, base_url: "https://api.openai.com/v1"}
routing: {default: [v6, v4]}
`, { file: 'g.yaml', env: {} });
    expect(config.upstreams.get('v6')).toMatchObject({ serverAddress: '::1', serverPort: 8000 });
    expect(config.upstreams.get('v4')).toMatchObject({ serverAddress: 'api.openai.com', serverPort: 443 });
  });

  it('rejects an api_key with a line break or control character, naming the path and never the key (was: accepted, every request failed)', () => {
    const text = `
upstreams:
  - {name: a, base_url: "http://127.0.0.1:9/v1", api_key: "sk-live-SECRET\\n"}
  - {name: b, base_url: "http://127.0.0.1:9/v1", api_key: "\${KEY_B}"}
  - {name: c, base_url: "http://127.0.0.1:9/v1", api_key: "sk-live-SECRET-☃"}
routing: {default: [a, b, c]}
`;
    const issues = issuesOf(text, { KEY_B: 'sk-live-SECRET\u001b[0m' });
    expect(issues).toEqual([
      'gateway.config.yaml: upstreams[0].api_key (line 3): contains a line break or control character (the key is not shown; remove it where the key is set)',
      'gateway.config.yaml: upstreams[1].api_key (line 4): contains a line break or control character (the key is not shown; remove it where the key is set)',
      'gateway.config.yaml: upstreams[2].api_key (line 5): contains a character that cannot be sent in an HTTP header (the key is not shown)',
    ]);
    expect(issues.join('\n')).not.toContain('SECRET');
  });

  it('names the variable, not its value, when a ${VAR} holds a line break (was: "Missing closing quote")', () => {
    const text = `
upstreams:
  - {name: a, base_url: "http://127.0.0.1:9/v1", api_key: "\${OPENAI_API_KEY}"}
routing: {default: [a]}
`;
    const issues = issuesOf(text, { OPENAI_API_KEY: 'sk-live-SECRET\nsk-other' });
    expect(issues).toEqual(['gateway.config.yaml (line 3): environment variable OPENAI_API_KEY contains a line break (the value is not shown; remove it where the variable is set)']);
  });

  it("drops a secret file's final newline from a ${VAR}, quoted or not", () => {
    for (const value of ['"\${OPENAI_API_KEY}"', '\${OPENAI_API_KEY}']) {
      const text = `
upstreams:
  - name: a
    base_url: "http://127.0.0.1:9/v1"
    api_key: ${value}
routing: {default: [a]}
`;
      const config = parseConfig(text, { file: 'g.yaml', env: { OPENAI_API_KEY: 'sk-live-SECRET\r\n' } });
      expect(config.upstreams.get('a')!.config.api_key).toBe('sk-live-SECRET');
    }
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

  it('counts one upstream as "1 upstream" (was: "1 upstreams")', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-check-'));
    const file = path.join(dir, 'one.yaml');
    writeFileSync(file, MINIMAL);
    const run = spawnSync(tsx, ['src/main.ts', 'check', '--config', file], { encoding: 'utf8', timeout: 15_000 });
    expect(run.stdout).toBe(`${file}: OK (1 upstream, routes to sim)\n`);
    expect(run.status).toBe(0);
  });

  it('accepts the shipped gateway.config.yaml', () => {
    const out = execFileSync(tsx, ['src/main.ts', 'check', '--config', 'gateway.config.yaml'], { encoding: 'utf8', env: { ...process.env, OPENAI_API_KEY: '' } });
    expect(out).toMatch(/OK/);
  });

  it('does not pass a file given without --config by checking the default one instead', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-check-'));
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, `${MINIMAL}server: {port: "x"}\n`);
    const run = spawnSync(tsx, ['src/main.ts', 'check', file], { encoding: 'utf8', env: { ...process.env, OPENAI_API_KEY: '' }, timeout: 15_000 });
    expect(run.status).toBe(2);
    expect(run.stdout).not.toMatch(/OK/);
    expect(run.stderr).toContain(`unexpected argument "${file}"`);
    expect(run.stderr).toContain('usage:');
  });

  it('treats an empty PROMPTGATE_CONFIG as unset', () => {
    const run = spawnSync(tsx, ['src/main.ts', 'check'], { encoding: 'utf8', env: { ...process.env, OPENAI_API_KEY: '', PROMPTGATE_CONFIG: '' }, timeout: 15_000 });
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^gateway\.config\.yaml: OK/);
    expect(run.status).toBe(0);
  });
});

describe('promptgate usage errors', () => {
  const tsx = path.resolve('node_modules/.bin/tsx');
  it.each([
    [['check', '--confg', 'gateway.config.yaml'], /unknown option '--confg'/i],
    [['--config'], /option '-c, --config <value>' argument missing/i],
    [['frob'], /unknown command "frob"/],
  ])('%j exits 2 with the usage (was: exit 1, no usage, like an invalid config)', (args, message) => {
    const run = spawnSync(tsx, ['src/main.ts', ...args], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
    expect(run.stderr).toContain('usage:\n  promptgate [serve]');
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it.each([
    [['--port', '-1'], /^Option '--port' argument is ambiguous\. .*'--port=-XYZ'\.$/],
    [['--port=-1'], /^invalid --port "-1" \(expected an integer from 0 to 65535\)$/],
    [['--port', 'abc'], /^invalid --port "abc" \(expected an integer from 0 to 65535\)$/],
    [['--port', '70000'], /^invalid --port "70000" \(expected an integer from 0 to 65535\)$/],
  ])('%j exits 2 with one line, then the usage (was: three lines of parseArgs text for --port -1)', (args, message) => {
    const run = spawnSync(tsx, ['src/main.ts', ...args], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status).toBe(2);
    const [first, ...rest] = run.stderr.split('\n');
    expect(first).toMatch(message);
    expect(rest.join('\n')).toMatch(/^usage:\n  promptgate \[serve\]/);
  });
});

describe('promptgate --help', () => {
  it.each([[['--help']], [['-h']], [['check', '--help']]])('%j prints the usage, the README\'s three forms, and exits 0', (args) => {
    const run = spawnSync(path.resolve('node_modules/.bin/tsx'), ['src/main.ts', ...args], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('usage:\n  promptgate [serve] [--config FILE] [--port N]\n  promptgate check [--config FILE]\n  promptgate --help\n');
  });
});

describe('promptgate with a config it cannot read', () => {
  const tsx = path.resolve('node_modules/.bin/tsx');
  const dir = mkdtempSync(path.join(tmpdir(), 'pg-unreadable-'));
  it.each([
    ['a directory', dir, 'EISDIR'],
    ['a missing file', path.join(dir, 'missing.yaml'), 'ENOENT'],
  ])('%s: check and serve exit 1 with one line naming the file', (_what, file, code) => {
    const check = spawnSync(tsx, ['src/main.ts', 'check', '--config', file], { encoding: 'utf8', timeout: 15_000 });
    expect(check.status).toBe(1);
    expect(check.stderr).toBe(`${file}: cannot read the config file (${code})\n1 error in ${file}\n`);
    const serve = spawnSync(tsx, ['src/main.ts', '--config', file], { encoding: 'utf8', timeout: 15_000 });
    expect(serve.signal).toBeNull(); // it did not start serving
    expect(serve.status).toBe(1);
    expect(serve.stderr).toBe(`${file}: cannot read the config file (${code})\n`);
  });
});

describe('promptgate serve', () => {
  const tsx = path.resolve('node_modules/.bin/tsx');
  it.each([[' '], ['80x'], ['70000'], ['-1'], ['0x50']])('exits 1 with one line naming PORT when PORT=%j is not a port number (was: ignored, or port 0)', (value) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-port-'));
    const file = path.join(dir, 'g.yaml');
    writeFileSync(file, `${MINIMAL}server: {host: 127.0.0.1}\nlogging: {level: silent}\n`);
    const run = spawnSync(tsx, ['src/main.ts', 'serve', '--config', file], { encoding: 'utf8', env: { ...process.env, PORT: value }, timeout: 15_000 });
    expect(run.signal).toBeNull(); // it did not start serving
    expect(run.status).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^promptgate: PORT .*expected an integer from 0 to 65535/);
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
