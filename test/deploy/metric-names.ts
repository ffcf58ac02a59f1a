/**
 * The metric families the gateway exposes on /metrics: the one list the deploy checks
 * (Grafana dashboard, Prometheus rules) compare their queries against.
 *
 * Today this is the list from DESIGN.md "Telemetry names". Once the gateway exists, switch
 * `metricFamilies()` to render the real registry, e.g.
 *
 *   const app = createApp(runtime, deps);
 *   return parseExposition(await (await app.request('/metrics')).text());
 *
 * `parseExposition` reads the `# TYPE` lines, which prom-client prints for every
 * registered metric even before it has samples.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface MetricFamily {
  name: string;
  type: MetricType;
}

/** DESIGN.md "Telemetry names" (Prometheus). */
const DESIGN_FAMILIES: readonly MetricFamily[] = [
  { name: 'gen_ai_client_operation_duration_seconds', type: 'histogram' },
  { name: 'gen_ai_client_token_usage', type: 'histogram' },
  { name: 'gen_ai_client_operation_time_to_first_chunk_seconds', type: 'histogram' },
  { name: 'promptgate_requests_total', type: 'counter' },
  { name: 'promptgate_cost_usd_total', type: 'counter' },
  { name: 'promptgate_injection_flags_total', type: 'counter' },
  { name: 'promptgate_experiment_observations_total', type: 'counter' },
  { name: 'promptgate_experiment_observations_sum', type: 'counter' },
  { name: 'promptgate_experiment_observations_sum_squares', type: 'counter' },
];

export async function metricFamilies(): Promise<MetricFamily[]> {
  return DESIGN_FAMILIES.map((f) => ({ ...f }));
}

export async function metricFamilyNames(): Promise<string[]> {
  return (await metricFamilies()).map((f) => f.name);
}

/** Families from Prometheus text exposition (`# TYPE name type` lines). */
export function parseExposition(text: string): MetricFamily[] {
  const families: MetricFamily[] = [];
  for (const line of text.split('\n')) {
    const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)\s*$/.exec(line);
    if (m) families.push({ name: m[1], type: m[2] as MetricType });
  }
  return families;
}

/** Series Prometheus itself creates for every target. */
export const PROMETHEUS_BUILTIN_SERIES: readonly string[] = [
  'up',
  'scrape_duration_seconds',
  'scrape_samples_scraped',
  'scrape_samples_post_metric_relabeling',
  'scrape_series_added',
  'ALERTS',
  'ALERTS_FOR_STATE',
];

/**
 * Resolves a series name used in a query to the family that produces it: the family
 * itself, or `<histogram>_bucket|_sum|_count` (`<summary>_sum|_count`). Returns undefined
 * for an unknown name.
 */
export function familyOfSeries(series: string, families: readonly MetricFamily[]): MetricFamily | undefined {
  const exact = families.find((f) => f.name === series);
  if (exact) return exact;
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  if (!m) return undefined;
  const base = families.find((f) => f.name === m[1]);
  if (!base) return undefined;
  if (base.type === 'histogram') return base;
  if (base.type === 'summary' && m[2] !== 'bucket') return base;
  return undefined;
}
