/**
 * Compiles `experiments:` against the template registry, once per config load: variant
 * bucket ranges, the version each variant serves, schedule and rollout in milliseconds.
 * Requests only read the result.
 */
import type { ExperimentConfig } from './config-schema.js';
import type { TemplateRegistry, TemplateVersion } from '../prompts/registry.js';
import type { ConfigIssue } from '../prompts/types.js';
import { BUCKETS } from './hash.js';
import { parseDuration } from './duration.js';

/** A variant with its bucket range `[from, to)` out of 10000. */
export interface CompiledVariant {
  readonly name: string;
  readonly version: string;
  readonly weight: number;
  readonly from: number;
  readonly to: number;
  readonly templateVersion: TemplateVersion;
}

export interface CompiledRollout {
  /** Exposure percent per stage. */
  readonly stages: readonly number[];
  readonly everyMs: number;
  /** `every` as configured, e.g. `24h`. */
  readonly every: string;
}

export interface CompiledExperiment {
  readonly id: string;
  readonly templateId: string;
  readonly salt: string;
  /** In configured order; `variants[0]` is the baseline. */
  readonly variants: readonly CompiledVariant[];
  readonly baseline: CompiledVariant;
  /** Epoch ms, or undefined when open-ended. */
  readonly startMs: number | undefined;
  readonly endMs: number | undefined;
  readonly rollout: CompiledRollout | undefined;
  readonly metrics: readonly string[];
  /** The validated config entry, for the admin API. */
  readonly config: ExperimentConfig;
}

/**
 * Bucket widths per DESIGN.md: each variant `round(10000 * weight / sum)` wide in listed
 * order, the last takes the remainder. `round` is half-up (JS `Math.round`), computed in
 * IEEE doubles in exactly this order of operations.
 *
 * @example
 * variantWidths([1, 1, 1]) // [3333, 3333, 3334]
 */
export function variantWidths(weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const widths = weights.slice(0, -1).map((w) => Math.round((BUCKETS * w) / sum));
  widths.push(BUCKETS - widths.reduce((a, b) => a + b, 0));
  return widths;
}

/**
 * Compiles every experiment; an experiment with issues is left out of the map.
 * Issue paths are YAML paths inside the config file (`experiments[0].variants[1].version`).
 */
export function compileExperiments(
  configs: readonly ExperimentConfig[],
  registry: TemplateRegistry,
): { experiments: Map<string, CompiledExperiment>; issues: ConfigIssue[] } {
  const experiments = new Map<string, CompiledExperiment>();
  const issues: ConfigIssue[] = [];
  configs.forEach((cfg, i) => {
    const at = `experiments[${i}]`;
    const before = issues.length;
    if (experiments.has(cfg.id)) issues.push({ path: `${at}.id`, message: `duplicate experiment id "${cfg.id}"` });

    const template = registry.get(cfg.template);
    if (!template) {
      const known = registry.list().map((t) => t.id);
      issues.push({ path: `${at}.template`, message: `unknown template "${cfg.template}" (known: ${known.join(', ') || 'none'})` });
    }
    const weights = cfg.variants.map((v) => v.weight);
    // Weights near the double limit add up to Infinity, and every width to NaN (no range holds a bucket).
    if (!Number.isFinite(weights.reduce((a, b) => a + b, 0))) {
      issues.push({ path: `${at}.variants`, message: 'the weights add up to more than a number can hold; use smaller weights (only their ratio matters)' });
    }
    const widths = variantWidths(weights);
    const variants: CompiledVariant[] = [];
    let from = 0;
    cfg.variants.forEach((v, j) => {
      if (widths[j] < 1) {
        issues.push({ path: `${at}.variants[${j}].weight`, message: `weight ${v.weight} gives variant "${v.name}" no buckets (each needs at least 1/10000 of the total)` });
      }
      const templateVersion = template ? registry.resolve(`${template.id}@${v.version}`) : undefined;
      if (template && (!templateVersion || templateVersion.version !== v.version)) {
        const known = template.versions.map((tv) => tv.version).join(', ');
        issues.push({ path: `${at}.variants[${j}].version`, message: `template "${template.id}" has no version "${v.version}" (versions: ${known})` });
      }
      if (templateVersion) variants.push(Object.freeze({ name: v.name, version: v.version, weight: v.weight, from, to: from + widths[j], templateVersion }));
      from += widths[j];
    });

    const everyMs = cfg.rollout ? parseDuration(cfg.rollout.every) : undefined;
    if (issues.length > before) return;
    experiments.set(
      cfg.id,
      Object.freeze({
        id: cfg.id,
        templateId: cfg.template,
        salt: cfg.salt ?? cfg.id,
        variants: Object.freeze(variants),
        baseline: variants[0],
        startMs: cfg.start?.getTime(),
        endMs: cfg.end?.getTime(),
        rollout: cfg.rollout && everyMs ? Object.freeze({ stages: Object.freeze([...cfg.rollout.stages]), every: cfg.rollout.every, everyMs }) : undefined,
        metrics: Object.freeze([...cfg.metrics]),
        config: cfg,
      }),
    );
  });
  return { experiments, issues };
}
