import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/schema.js';
import { assign } from '../experiments/assignment.js';
import { compilePrompts } from './compile.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function configWith(extra: Record<string, unknown>) {
  return configSchema.parse({ upstreams: [{ name: 'sim', simulate: {} }], routing: { default: ['sim'] }, ...extra });
}

describe('compilePrompts', () => {
  it('compiles the shipped template with the support-tone experiment and binding', () => {
    const file = configWith({
      bindings: [{ model: 'support-bot', experiment: 'support-tone' }],
      experiments: [
        {
          id: 'support-tone',
          template: 'support-reply',
          variants: [{ name: 'control', version: '1.0.0', weight: 50 }, { name: 'warm', version: '1.1.0', weight: 50 }],
          start: '2026-11-20T00:00:00Z',
          end: '2026-12-20T00:00:00Z',
        },
      ],
    });
    const { compiled, issues } = compilePrompts(file, path.join(root, 'config/templates'));
    expect(issues).toEqual([]);
    const exp = compiled.experiments.get('support-tone')!;
    expect(compiled.bindings.get('support-bot')?.experiment).toBe(exp);
    expect(exp.variants.map((v) => [v.name, v.from, v.to, v.templateVersion.ref])).toEqual([
      ['control', 0, 5000, 'support-reply@1.0.0'],
      ['warm', 5000, 10000, 'support-reply@1.1.0'],
    ]);
    expect(assign(exp, 'someone', new Date('2026-12-01T00:00:00Z')).reason).toBe('assigned');
  });

  it('marks template-file issues with @ and keeps config paths bare', () => {
    const file = configWith({
      templates: { dir: 'test/fixtures/templates/invalid' },
      bindings: [{ model: 'x', template: 'bad-semver' }],
    });
    const { issues } = compilePrompts(file, path.join(root, 'test/fixtures/templates/invalid'));
    expect(issues).toContainEqual({ path: '@test/fixtures/templates/invalid/bad-semver.yaml: versions[1].version (line 5)', message: expect.stringContaining('"1.x" is not semver') });
    expect(issues).toContainEqual({ path: 'bindings[0].template', message: 'unknown template, version or label "bad-semver"' });
  });

  it('says a bound experiment has errors rather than that it is unknown', () => {
    const file = configWith({
      bindings: [{ model: 'support-bot', experiment: 'support-tone' }],
      experiments: [{ id: 'support-tone', template: 'support-reply', variants: [{ name: 'c', version: '1.0.0', weight: 1 }, { name: 'w', version: '9.9.9', weight: 1 }] }],
    });
    const { issues } = compilePrompts(file, path.join(root, 'config/templates'));
    expect(issues).toEqual([
      { path: 'experiments[0].variants[1].version', message: 'template "support-reply" has no version "9.9.9" (versions: 1.1.0, 1.0.0)' },
      { path: 'bindings[0].experiment', message: 'experiment "support-tone" has errors (reported above)' },
    ]);
  });
});
