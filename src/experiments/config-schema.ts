/**
 * Config schema of `experiments:`. Checks that need the template registry (a variant's
 * version exists) are in `experiments/compile.ts`.
 */
import { z } from 'zod';
import { name } from '../prompts/config-schema.js';
import { parseDuration } from './duration.js';
import { EXPERIMENT_METRICS, FEEDBACK_METRIC_RULE, isExperimentMetric } from './metric-names.js';

/**
 * An instant: an ISO 8601 date-time with a zone (`2026-11-20T00:00:00Z`), a date
 * (`2026-11-20`, midnight UTC) or a Date (tests, YAML timestamp tags).
 */
const instant = z.union([z.date(), z.string()]).transform((value, ctx) => {
  const ok =
    value instanceof Date ||
    /^\d{4}-\d{2}-\d{2}$/.test(value) ||
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(value);
  const date = value instanceof Date ? value : new Date(value);
  if (!ok || Number.isNaN(date.getTime()) || (typeof value === 'string' && !isCalendarDay(value))) {
    ctx.addIssue({ code: 'custom', message: 'expected an ISO 8601 date-time with a zone, e.g. 2026-11-20T00:00:00Z' });
    return z.NEVER;
  }
  return date;
});

/** `YYYY-MM-DD...` names a day its month has: `new Date` would roll 2026-11-31 over to December 1. */
function isCalendarDay(text: string): boolean {
  const [year, month, day] = text.slice(0, 10).split('-').map(Number);
  return day >= 1 && day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

export const variantSchema = z.strictObject({
  name,
  /** Template version (exact semver) this variant serves. */
  version: z.string().min(1),
  /** Relative share; any positive numbers (50/50, 1/1/1, 90/10). */
  weight: z.number().positive(),
});

/** Ten years: stage times (`start + k * every`) stay valid dates the admin API can show. */
const MAX_ROLLOUT_EVERY_MS = 3650 * 86_400_000;

export const rolloutSchema = z
  .strictObject({
    /** Percent of users in the experiment at each stage (the others get the baseline, held back), non-decreasing. */
    stages: z.array(z.number().gt(0).max(100)).min(1),
    /** Time between stages, e.g. 30m, 24h, 7d. */
    every: z.string().refine((s) => {
      const ms = parseDuration(s) ?? 0;
      return ms > 0 && ms <= MAX_ROLLOUT_EVERY_MS;
    }, 'expected a positive duration up to 3650d, like 30m, 24h or 7d'),
  })
  .superRefine((r, ctx) => {
    r.stages.forEach((s, i) => {
      if (i > 0 && s < r.stages[i - 1]) {
        ctx.addIssue({ code: 'custom', message: `stages must not decrease (${r.stages[i - 1]} then ${s}): exposed users would be withdrawn`, path: ['stages', i] });
      }
    });
  });

export const experimentSchema = z
  .strictObject({
    id: name,
    template: name,
    /** Hash salt; defaults to the id. Changing it reshuffles every user. */
    salt: z.string().min(1).optional(),
    /** The first variant is the baseline. */
    variants: z.array(variantSchema).min(2),
    start: instant.optional(),
    end: instant.optional(),
    rollout: rolloutSchema.optional(),
    metrics: z
      .array(z.string().refine(isExperimentMetric, `expected ${EXPERIMENT_METRICS.join(', ')} or ${FEEDBACK_METRIC_RULE}`))
      .default(['latency_ms', 'cost_usd', 'output_tokens', 'success']),
  })
  .superRefine((e, ctx) => {
    const seen = new Set<string>();
    e.variants.forEach((v, i) => {
      if (seen.has(v.name)) ctx.addIssue({ code: 'custom', message: `duplicate variant name "${v.name}"`, path: ['variants', i, 'name'] });
      seen.add(v.name);
    });
    if (e.start && e.end && e.end.getTime() <= e.start.getTime()) {
      ctx.addIssue({ code: 'custom', message: 'end must be after start', path: ['end'] });
    }
    if (e.rollout && !e.start) {
      ctx.addIssue({ code: 'custom', message: 'a rollout needs start (stages are counted from it)', path: ['rollout'] });
    }
  });

export type ExperimentConfig = z.infer<typeof experimentSchema>;
export type VariantConfig = z.infer<typeof variantSchema>;
