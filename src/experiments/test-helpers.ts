/**
 * Builders shared by the experiments, selection and admin tests (test-only; not imported
 * by production code).
 */
import { experimentSchema, type ExperimentConfig } from './config-schema.js';
import { compileTemplate } from '../prompts/compile-template.js';
import { TemplateRegistry } from '../prompts/registry.js';
import { compileExperiments, type CompiledExperiment } from './compile.js';

/** A registry with template `t` at versions 1.0.0, 1.1.0 and 1.2.0 (labels production / staging). */
export function testRegistry(): TemplateRegistry {
  const { template, problems } = compileTemplate({
    id: 't',
    versions: [
      { version: '1.0.0', labels: ['production'], messages: [{ role: 'system', content: 'v1.0 {{who}}' }], variables: { who: { type: 'string', default: 'you' } } },
      { version: '1.1.0', labels: ['staging'], messages: [{ role: 'system', content: 'v1.1 {{who}}' }], variables: { who: { type: 'string', default: 'you' } } },
      { version: '1.2.0', messages: [{ role: 'system', content: 'v1.2' }] },
    ],
  });
  if (!template) throw new Error(JSON.stringify(problems));
  return new TemplateRegistry([template]);
}

/** Parses (schema defaults) and compiles one experiment; throws on issues. */
export function testExperiment(input: Record<string, unknown>, registry = testRegistry()): CompiledExperiment {
  const cfg: ExperimentConfig = experimentSchema.parse({ template: 't', ...input });
  const { experiments, issues } = compileExperiments([cfg], registry);
  if (issues.length > 0) throw new Error(JSON.stringify(issues));
  return experiments.get(cfg.id)!;
}
