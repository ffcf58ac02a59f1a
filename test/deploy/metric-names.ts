/**
 * The metric families the gateway exposes on /metrics: the one list the deploy checks
 * (Grafana dashboard, Prometheus rules) compare their queries against. It is read from
 * the gateway's real registry, built as `startGateway` builds it (`createMetrics`, and the
 * context runtime's families on the same registry: what `GET /metrics` renders), so
 * renaming a metric in src/telemetry or src/context breaks the dashboard/rules check
 * instead of the dashboard.
 */
import { createContextRuntime } from '../../src/context/runtime.js';
import { createMetrics } from '../../src/telemetry/metrics.js';

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface MetricFamily {
  name: string;
  type: MetricType;
  /** Label names the family declares (without `le`/`quantile`), when known. */
  labels?: string[];
}

export async function metricFamilies(): Promise<MetricFamily[]> {
  const metrics = createMetrics();
  const context = createContextRuntime({ registry: metrics.registry });
  const families = parseExposition(await metrics.render());
  await context.close();
  for (const f of families) {
    const m = metrics.registry.getSingleMetric(f.name) as unknown as { labelNames?: readonly string[] } | undefined;
    if (m?.labelNames) f.labels = [...m.labelNames];
  }
  return families;
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
 * Labels every scraped series can carry besides its own: Prometheus' `job`/`instance` and
 * the target labels the scrape configs in deploy/ add (namespace, pod, app).
 */
export const TARGET_LABELS: readonly string[] = ['job', 'instance', 'namespace', 'pod', 'app', '__name__'];

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

/** Label names a series of `series` can have, or undefined when not known. */
export function labelsOfSeries(series: string, families: readonly MetricFamily[]): string[] | undefined {
  const f = familyOfSeries(series, families);
  if (!f?.labels) return undefined;
  const extra = f.type === 'histogram' && series.endsWith('_bucket') ? ['le'] : f.type === 'summary' && series === f.name ? ['quantile'] : [];
  return [...f.labels, ...extra, ...TARGET_LABELS];
}
