/**
 * Review of config loading and hot reload: `${VAR}` values that YAML would cut at a `#`,
 * error messages that could quote a substituted secret, and watched directories that are
 * deleted and only later recreated.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RuntimeConfig } from '../src/config/compile.js';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { restartOnlyChanges } from '../src/config/restart-only.js';
import { ConfigWatcher } from '../src/config/watch.js';

const MINIMAL = `
upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
`;

function load(text: string, env: Record<string, string>) {
  return parseConfig(text, { file: '/tmp/x/gateway.config.yaml', env });
}

function issuesOf(text: string, env: Record<string, string>): string[] {
  try {
    load(text, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('${VAR} values holding a "#"', () => {
  it('rejects a value that YAML would cut at " #", naming the variable, never the value (was: admin.token "abc #def" read as "abc")', () => {
    const issues = issuesOf(`${MINIMAL}admin:\n  token: \${ADMIN_TOKEN}\n`, { ADMIN_TOKEN: 'abc #defghij' });
    expect(issues).toEqual([
      'gateway.config.yaml (line 6): environment variable ADMIN_TOKEN contains a "#" that YAML reads as the start of a comment, which would cut the value (the value is not shown; quote the substitution: "${ADMIN_TOKEN}")',
    ]);
    expect(issues.join('\n')).not.toContain('defghij');
  });

  it('rejects a value starting with "#" in an unquoted scalar (was: "expected string, received null")', () => {
    const text = `upstreams:
  - name: sim
    simulate: {latency_ms: 0}
    headers:
      x-channel: \${CHANNEL}
routing: {default: [sim]}
`;
    const issues = issuesOf(text, { CHANNEL: '#general' });
    expect(issues.some((i) => i.includes('environment variable CHANNEL contains a "#"'))).toBe(true);
  });

  it('keeps a quoted value with " #", and a "#" YAML does not read as a comment', () => {
    // (admin.token takes no spaces: a service name does)
    const quoted = load(`${MINIMAL}telemetry:\n  service_name: "\${NAME}"\n`, { NAME: 'abc #def' });
    expect(quoted.telemetry.service_name).toBe('abc #def');
    const single = load(`${MINIMAL}telemetry:\n  service_name: '\${NAME}' # \${NOT_READ}\n`, { NAME: 'abc #def' });
    expect(single.telemetry.service_name).toBe('abc #def');
    const inside = load(`${MINIMAL}admin:\n  token: \${ADMIN_TOKEN} # a comment\n`, { ADMIN_TOKEN: 'abc#def' });
    expect(inside.admin.token).toBe('abc#def');
  });
});

describe('error messages never quote a substituted value', () => {
  it("masks a secret in a context builder's URL when its placeholder is malformed (was: the whole URL, key included, in the log)", () => {
    const text = `${MINIMAL}context:
  builders:
    - name: orders
      kind: http
      url: "https://api.example.com/orders/{{order_id}/status?key=\${ORDERS_KEY}"
`;
    const issues = issuesOf(text, { ORDERS_KEY: 'sk-live-0123456789abcdef' });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^gateway\.config\.yaml: context\.builders\[0\] \(line 7\): invalid placeholder/);
    expect(issues[0]).not.toContain('0123456789abcdef');
  });

  it('masks a substituted value quoted by a cross-reference check', () => {
    const text = `upstreams:
  - {name: a, base_url: "https://example.com/v1", api_key: "", keyless: \${FALLBACK_KEY}}
routing: {default: [a]}
`;
    const issues = issuesOf(text, { FALLBACK_KEY: 'sk-proj-abcdefgh12345678' });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toContain('upstreams[0].keyless (line 2): unknown upstream');
    expect(issues[0]).not.toContain('abcdefgh12345678');
  });
});

describe('hot reload after a watched directory is deleted and recreated later', () => {
  let watcher: ConfigWatcher | undefined;
  afterEach(() => watcher?.close());

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const waitFor = async (cond: () => boolean, ms = 3000) => {
    const until = Date.now() + ms;
    while (!cond() && Date.now() < until) await sleep(20);
    expect(cond()).toBe(true);
  };

  it('reloads once the config directory is back (was: no reload ever again after the first, failed one)', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'pg-review-reload-'));
    const dir = path.join(root, 'conf');
    mkdirSync(dir);
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, MINIMAL);
    const reloaded: RuntimeConfig[] = [];
    const rejected: string[][] = [];
    watcher = new ConfigWatcher({ file, debounceMs: 50, onReload: (c) => reloaded.push(c), onRejected: (issues) => rejected.push(issues.map((i) => i.message)) });

    rmSync(dir, { recursive: true });
    await waitFor(() => rejected.length === 1); // the old config keeps serving
    expect(rejected[0]).toEqual(['cannot read the config file (ENOENT)']);
    // Other files next to the missing directory are not ours: no reload, no log line.
    writeFileSync(path.join(root, 'unrelated.txt'), 'x');
    await sleep(300);
    expect(rejected).toHaveLength(1);

    mkdirSync(dir);
    writeFileSync(file, `${MINIMAL}server: {max_body_bytes: 777}\n`);
    await waitFor(() => reloaded.some((c) => c.server.max_body_bytes === 777));
    // And the recreated directory itself is watched again.
    writeFileSync(file, `${MINIMAL}server: {max_body_bytes: 888}\n`);
    await waitFor(() => reloaded.at(-1)?.server.max_body_bytes === 888);
  });

  it('reloads once a templates directory outside the config directory is back', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'pg-review-reload-'));
    const confDir = path.join(root, 'conf');
    const templates = path.join(root, 'shared', 'templates');
    mkdirSync(confDir);
    mkdirSync(templates, { recursive: true });
    const file = path.join(confDir, 'gateway.config.yaml');
    writeFileSync(file, `${MINIMAL}templates: {dir: ../shared/templates}\n`);
    const reloaded: RuntimeConfig[] = [];
    watcher = new ConfigWatcher({ file, debounceMs: 50, dirs: [templates], onReload: (c) => reloaded.push(c), onRejected: () => undefined });

    rmSync(path.join(root, 'shared'), { recursive: true });
    await sleep(300);
    const before = reloaded.length;
    mkdirSync(templates, { recursive: true });
    await waitFor(() => reloaded.length > before);
    const after = reloaded.length;
    writeFileSync(path.join(templates, 'x.yaml'), 'id: x\nversions:\n  - version: "1.0.0"\n    messages: [{role: system, content: hi}]\n');
    await waitFor(() => reloaded.length > after);
  });
});

describe('a broken config reloaded again and again', () => {
  it('is reported once, not once per reload; a new error or the same one after a good reload is reported again', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-review-reject-'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, MINIMAL);
    const reloaded: RuntimeConfig[] = [];
    const rejected: string[][] = [];
    const w = new ConfigWatcher({ file, debounceMs: 10_000, onReload: (c) => reloaded.push(c), onRejected: (issues) => rejected.push(issues.map((i) => i.message)) });
    try {
      writeFileSync(file, `${MINIMAL}server: {port: -1}\n`);
      w.reload();
      w.reload(); // an editor's swap file, a backup: the same file, the same errors
      w.reload();
      expect(rejected).toHaveLength(1);
      writeFileSync(file, `${MINIMAL}server: {max_body_bytes: -5}\n`);
      w.reload();
      expect(rejected).toHaveLength(2);
      writeFileSync(file, MINIMAL);
      w.reload();
      expect(reloaded).toHaveLength(1);
      writeFileSync(file, `${MINIMAL}server: {max_body_bytes: -5}\n`);
      w.reload();
      expect(rejected).toHaveLength(3);
    } finally {
      w.close();
    }
  });
});

describe('a reload that changes a setting read only at start', () => {
  const started = load(`${MINIMAL}server: {host: 127.0.0.1, port: 8080}\n`, {});

  it('names each such change, from the value in use to the new one (was: applied silently to nothing)', () => {
    const next = load(`${MINIMAL}server: {host: 0.0.0.0, port: 9090}\ntelemetry: {service_name: checkout, max_label_values: 80}\n`, {});
    expect(restartOnlyChanges(started, next, { portOverridden: false })).toEqual([
      'server.host: "127.0.0.1" -> "0.0.0.0"',
      'server.port: 8080 -> 9090',
      'telemetry.service_name: "promptgate" -> "checkout"',
      'telemetry.max_label_values: 50 -> 80',
    ]);
  });

  it('says nothing for settings a reload applies, for an edit undone, or for server.port when --port or PORT chose the port', () => {
    const applied = load(`${MINIMAL}server: {host: 127.0.0.1, port: 8080, max_body_bytes: 1024}\nlogging: {level: debug}\n`, {});
    expect(restartOnlyChanges(started, applied, { portOverridden: false })).toEqual([]);
    const otherPort = load(`${MINIMAL}server: {host: 127.0.0.1, port: 9090}\n`, {});
    expect(restartOnlyChanges(started, otherPort, { portOverridden: true })).toEqual([]);
  });
});
