/**
 * Experiment metric names: the built-in ones every request records, and feedback metrics,
 * what `POST /v1/feedback` takes as `metric` (`thumbs_up`), recorded as `feedback.<name>`.
 * Configs that name a metric (an experiment's `metrics`, a recipe bandit's `metric`) are
 * held to the same names, so none lists a metric that is never recorded.
 */

/** The built-in experiment metrics `recordRequest` (telemetry/metrics.ts) observes. */
export const EXPERIMENT_METRICS = ['latency_ms', 'cost_usd', 'input_tokens', 'output_tokens', 'success'] as const;

const NAME = '[a-z][a-z0-9_]{0,63}';

/** A feedback name as a client sends it. */
export const FEEDBACK_NAME = new RegExp(`^${NAME}$`);

/** A feedback metric as a config names it: `feedback.<name>`. */
export const FEEDBACK_METRIC = new RegExp(`^feedback\\.${NAME}$`);

/** Whether an experiment's `metrics` may list `name`: a built-in metric or a feedback one. */
export function isExperimentMetric(name: string): boolean {
  return (EXPERIMENT_METRICS as readonly string[]).includes(name) || FEEDBACK_METRIC.test(name);
}

/** What a config's error says a feedback metric must look like. */
export const FEEDBACK_METRIC_RULE = 'feedback.<name>, the name in lower case (a-z, 0-9, _) as POST /v1/feedback takes it';
