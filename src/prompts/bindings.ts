/**
 * Bindings map a model alias clients send (`"model": "support-bot"`) to an experiment or a
 * fixed template version, so applications get managed prompts without code changes.
 * Compiled once per config load: the experiment object or template version is resolved here.
 */
import type { CompiledExperiment } from '../experiments/compile.js';
import type { BindingConfig } from './config-schema.js';
import type { TemplateRegistry, TemplateVersion } from './registry.js';
import type { ConfigIssue } from './types.js';

export type SwapMode = 'replace' | 'prepend';

export interface CompiledBinding {
  /** The model alias. */
  readonly model: string;
  readonly mode: SwapMode;
  readonly upstreamModel: string | undefined;
  /** Exactly one of `experiment` / `templateVersion` is set. */
  readonly experiment: CompiledExperiment | undefined;
  readonly templateVersion: TemplateVersion | undefined;
}

/**
 * Resolves each binding's experiment or template reference. Issue paths are YAML paths in
 * the config file (`bindings[0].experiment`); a binding with issues is left out.
 */
export function compileBindings(
  configs: readonly BindingConfig[],
  deps: {
    registry: TemplateRegistry;
    experiments: ReadonlyMap<string, CompiledExperiment>;
    /** Every configured experiment id, compiled or not (names a broken one apart from an unknown one). */
    configuredExperiments?: ReadonlySet<string>;
  },
): { bindings: Map<string, CompiledBinding>; issues: ConfigIssue[] } {
  const bindings = new Map<string, CompiledBinding>();
  const issues: ConfigIssue[] = [];
  configs.forEach((cfg, i) => {
    const at = `bindings[${i}]`;
    if (bindings.has(cfg.model)) {
      issues.push({ path: `${at}.model`, message: `model "${cfg.model}" is bound twice` });
      return;
    }
    let experiment: CompiledExperiment | undefined;
    let templateVersion: TemplateVersion | undefined;
    if (cfg.experiment !== undefined) {
      experiment = deps.experiments.get(cfg.experiment);
      if (!experiment) {
        const broken = deps.configuredExperiments?.has(cfg.experiment);
        issues.push({ path: `${at}.experiment`, message: broken ? `experiment "${cfg.experiment}" has errors (reported above)` : `unknown experiment "${cfg.experiment}"` });
        return;
      }
    } else if (cfg.template !== undefined) {
      templateVersion = deps.registry.resolve(cfg.template);
      if (!templateVersion) {
        issues.push({ path: `${at}.template`, message: `unknown template, version or label "${cfg.template}"` });
        return;
      }
    }
    bindings.set(cfg.model, Object.freeze({ model: cfg.model, mode: cfg.mode, upstreamModel: cfg.upstream_model, experiment, templateVersion }));
  });
  return { bindings, issues };
}
