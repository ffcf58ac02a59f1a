/** Context config: schema and compile errors name the YAML path; the shipped demo loads. */
import { cpSync, mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.js';
import { ROOT } from './helpers.js';

const BASE = `upstreams: [{name: sim, simulate: {latency_ms: 0}}]
routing: {default: [sim]}
templates: {dir: templates}
`;

/** A config dir with `templates/t.yaml`; returns the issues of loading `extra`. */
function issuesOf(extra: string, template?: string): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'ctx-config-'));
  mkdirSync(path.join(dir, 'templates'));
  if (template) writeFileSync(path.join(dir, 'templates', 't.yaml'), template);
  const file = path.join(dir, 'gateway.config.yaml');
  writeFileSync(file, BASE + extra);
  try {
    loadConfigFile(file, { env: {} });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
}

const template = (context: string, content = 'Hi {{customer.name}}') => `id: t
versions:
  - version: "1.0.0"
    context: ${context}
    messages: [{role: system, content: "${content}"}]
`;

describe('context config', () => {
  it('rejects unknown keys and kinds with their YAML path', () => {
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://x/{{user_id}}", tiemout_ms: 5}]}\n')).toEqual([
      'gateway.config.yaml: context.builders[0].tiemout_ms (line 4): unknown key; did you mean timeout_ms?',
    ]);
    expect(issuesOf('context: {builders: [{name: c, kind: sql}]}\n')[0]).toMatch(/^gateway\.config\.yaml: context\.builders\[0\]\.kind \(line 4\)/);
    expect(issuesOf('context: {builders: [{name: "bad-name", kind: history}]}\n')[0]).toMatch(/context\.builders\[0\]\.name .*letters, digits and "_"/);
  });

  it('reports duplicates, bad placeholders, unreadable knowledge directories and dependency cycles', () => {
    const issues = issuesOf(`context:
  builders:
    - {name: a, kind: history}
    - {name: a, kind: history}
    - {name: web, kind: http, url: "http://x/{{ bad path }}"}
    - {name: kb, kind: knowledge, dir: nowhere}
    - {name: r1, kind: rules, rules: [{when: {r2.x: 1}, set: {y: 1}}]}
    - {name: r2, kind: rules, rules: [{when: {r1.y: 1}, set: {x: 1}}]}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: context.builders[1].name (line 7): duplicate builder name "a"',
      'gateway.config.yaml: context.builders[2] (line 8): invalid placeholder in "http://x/{{ bad path }}" (expected {{name}} or {{a.b}})',
      'gateway.config.yaml: context.builders[3].dir (line 9): cannot read the knowledge directory "nowhere" (ENOENT)',
      'gateway.config.yaml: context.builders[4] (line 10): builders depend on each other in a cycle: r1 -> r2 -> r1',
    ]);
  });

  it('rejects a placeholder in the scheme or host of a URL: a request must not choose where the call goes', () => {
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://{{tenant}}.example.com/customers/{{user_id}}"}]}\n')).toEqual([
      'gateway.config.yaml: context.builders[0] (line 4): placeholder {{tenant}} in the scheme or host of "http://{{tenant}}.example.com/customers/{{user_id}}" (placeholders go in the path or query)',
    ]);
    expect(issuesOf('context: {builders: [{name: kb, kind: knowledge, http: {url: "https://search{{query}}/q"}}]}\n')).toHaveLength(1);
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://x.example.com?id={{user_id}}"}]}\n')).toEqual([]);
  });

  it('checks a template version\'s context: recipes within use; builders this config lacks are a note, not an error', () => {
    const cfg = 'context: {builders: [{name: customer, kind: http, url: "http://x/{{user_id}}"}]}\n';
    expect(issuesOf(cfg, template('{use: [customer]}'))).toEqual([]);
    expect(issuesOf(cfg, template('{use: [customer], recipes: [{name: a, use: [history]}]}'))[0]).toMatch(
      /templates\/t\.yaml: versions\[0\]\.context\.recipes\[0\]\.use\[0\] \(line \d+\): "history" is not in this version's context\.use/,
    );
    // Without context, {{customer.name}} is an undeclared variable.
    expect(issuesOf(cfg, template('{use: [customer]}').replace(/ {4}context: .*\n/, ''))[0]).toContain('uses undeclared variable "customer"');

    const dir = mkdtempSync(path.join(tmpdir(), 'ctx-note-'));
    mkdirSync(path.join(dir, 'templates'));
    writeFileSync(path.join(dir, 'templates', 't.yaml'), template('{use: [customer, knowledge, history]}'));
    writeFileSync(path.join(dir, 'g.yaml'), BASE + cfg);
    const config = loadConfigFile(path.join(dir, 'g.yaml'), { env: {} });
    expect(config.notes).toContain('template t@1.0.0 uses context "knowledge", "history" not defined in context.builders: its requests go out without it');
    const plan = config.context.plans.get('t@1.0.0')!;
    expect(plan.unconfigured).toEqual(['knowledge', 'history']);
    expect(plan.recipes[0].use).toEqual(['customer']);
  });

  it('compiles the shipped demo config and the support-context template', () => {
    const config = loadConfigFile(path.join(ROOT, 'examples/support/gateway.demo.yaml'), { env: {} });
    expect([...config.context.builders.keys()]).toEqual(['customer', 'tier_rules', 'knowledge', 'history']);
    const plan = config.context.plans.get('support-context@1.0.0')!;
    expect(plan.recipes.map((r) => r.name)).toEqual(['focused', 'broad']);
    expect(plan.mode).toBe('bandit');
    expect(config.context.builders.get('tier_rules')!.dependsOn).toEqual(['customer']);
    expect(config.context.watchDirs).toEqual([path.join(ROOT, 'config/knowledge')]);
    expect(() => parseConfig(BASE, { file: '/tmp/x/gateway.config.yaml', env: {} })).not.toThrow(); // no context section: fine
  });

  it('keeps a copied knowledge base usable from another directory (relative to the config file)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ctx-kb-'));
    cpSync(path.join(ROOT, 'config/knowledge'), path.join(dir, 'kb'), { recursive: true });
    writeFileSync(path.join(dir, 'g.yaml'), `${BASE}context: {builders: [{name: kb, kind: knowledge, dir: kb}]}\n`);
    const config = loadConfigFile(path.join(dir, 'g.yaml'), { env: {} });
    expect(config.context.watchDirs).toEqual([path.join(dir, 'kb')]);
  });
});
