/**
 * Review of the observability assets users deploy: the dashboard's PromQL evaluated by
 * `promtool test rules` against series shaped like the gateway's (several sidecars), so a
 * query is checked by its numbers, not only by the metric names it uses.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { familyOfSeries, metricFamilies } from './metric-names.js';
import { grafanaQueries } from './promql.js';
import { evaluate, HAS_PROMTOOL, withVariables } from './promql-eval.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DASHBOARD = join(ROOT, 'deploy', 'observability', 'grafana', 'dashboards', 'promptgate.json');

if (!HAS_PROMTOOL) console.warn('[deploy] promtool not found: skipping promtool checks (CI installs Debian package "prometheus")');

const queries = grafanaQueries(JSON.parse(readFileSync(DASHBOARD, 'utf8')));

/** The PromQL of a dashboard target, e.g. `panel "Variant summary over the time range" C`. */
function dashboardExpr(where: string): string {
  const q = queries.find((x) => x.where === where);
  expect(q, where).toBeDefined();
  return q!.expr;
}

/** A counter that is 0 for the first half hour and `value` after (increase over the last hour = value, no extrapolation). */
const counter = (value: number) => `0x30 ${value}x30`;

/** Observation counters (n, Σx, Σx²) of `values`, as one sidecar adds them up one by one. */
function observations(labels: string, values: number[]): Record<string, string> {
  let sum = 0;
  let sumSquares = 0;
  for (const x of values) {
    sum += x;
    sumSquares += x * x;
  }
  return {
    [`promptgate_experiment_observations_total{${labels}}`]: counter(values.length),
    [`promptgate_experiment_observations_sum_total{${labels}}`]: counter(sum),
    [`promptgate_experiment_observations_sum_squares_total{${labels}}`]: counter(sumSquares),
  };
}

/** Sample standard deviation (n - 1), as README "Prometheus metrics" defines the variance. */
function sampleSd(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, x) => a + (x - mean) ** 2, 0) / (values.length - 1));
}

describe('dashboard: variant summary standard deviation', () => {
  const SD = 'panel "Variant summary over the time range" C';
  const exp = 'job="promptgate", app="shop", experiment="tone", metric="latency_ms"';

  it.skipIf(!HAS_PROMTOOL)('is the sample standard deviation (n - 1) of all sidecars\' observations, as README defines it', () => {
    // Variant "a": 3 observations on one sidecar, 2 on another; the summary pools all 5.
    const a1 = [100, 200, 300];
    const a2 = [400, 500];
    const got = evaluate(withVariables(dashboardExpr(SD), 'tone'), {
      ...observations(`${exp}, variant="a", pod="p1"`, a1),
      ...observations(`${exp}, variant="a", pod="p2"`, a2),
    });
    expect([...got.keys()]).toEqual(['{variant="a"}']);
    // (Σx² - (Σx)²/n) / (n - 1) = (550000 - 1500²/5) / 4 = 25000; the population formula gave sqrt(20000) = 141.4.
    expect(got.get('{variant="a"}')).toBeCloseTo(sampleSd([...a1, ...a2]), 9);
    expect(got.get('{variant="a"}')).toBeCloseTo(158.11388300841898, 9);
  });

  it.skipIf(!HAS_PROMTOOL)('is 0, not NaN, when identical values make Σx² - (Σx)²/n a rounding error below 0', () => {
    // 3 × 0.1 and 3 × 1.6: Σx² - (Σx)²/n is about -1e-18 and -4e-16 in float64 (sqrt of it: NaN).
    const got = evaluate(withVariables(dashboardExpr(SD), 'tone'), {
      ...observations(`${exp}, variant="tiny", pod="p1"`, [0.1, 0.1, 0.1]),
      ...observations(`${exp}, variant="same", pod="p1"`, [1.6, 1.6, 1.6]),
    });
    expect(Object.fromEntries(got)).toEqual({ '{variant="same"}': 0, '{variant="tiny"}': 0 });
  });

  it.skipIf(!HAS_PROMTOOL)('is left empty for a variant with a single observation (n - 1 = 0), not shown as 0', () => {
    const got = evaluate(withVariables(dashboardExpr(SD), 'tone'), {
      ...observations(`${exp}, variant="one", pod="p1"`, [250]),
      ...observations(`${exp}, variant="two", pod="p1"`, [100, 300]),
    });
    expect(Object.fromEntries(got)).toEqual({ '{variant="two"}': sampleSd([100, 300]) });
  });
});

describe('dashboard: error ratio stat (was "5xx ratio"; review-deploy-3.test.ts checks the streams that fail after their 200)', () => {
  const RATIO = 'panel "Error ratio" A';
  const app = 'job="promptgate", app="shop", route="/v1/chat/completions"';

  it.skipIf(!HAS_PROMTOOL)('shows 0 for a healthy fleet that never answered a 5xx (there is no 5xx series), not "No data"', () => {
    const got = evaluate(withVariables(dashboardExpr(RATIO), 'tone'), {
      [`promptgate_requests_total{${app}, status_class="2xx", pod="p1"}`]: '0+60x60',
      [`promptgate_requests_total{${app}, status_class="4xx", error_type="400", pod="p2"}`]: '0+6x60',
    });
    expect(Object.fromEntries(got)).toEqual({ '{}': 0 });
  });

  it.skipIf(!HAS_PROMTOOL)('is the 5xx share of all requests when there are 5xx answers', () => {
    const got = evaluate(withVariables(dashboardExpr(RATIO), 'tone'), {
      [`promptgate_requests_total{${app}, status_class="2xx", pod="p1"}`]: '0+60x60',
      [`promptgate_requests_total{${app}, status_class="5xx", error_type="upstream_5xx", pod="p2"}`]: '0+20x60',
    });
    expect(got.get('{}')).toBeCloseTo(0.25, 12);
  });

  it.skipIf(!HAS_PROMTOOL)('shows nothing without any requests', () => {
    expect(evaluate(withVariables(dashboardExpr(RATIO), 'tone'), { 'up{job="promptgate"}': '1x60' }).size).toBe(0);
  });
});

describe('dashboard and rules: functions fit the metric types', () => {
  const rules = (parseYaml(readFileSync(join(ROOT, 'deploy', 'prometheus', 'rules.yaml'), 'utf8')) as { groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[] }).groups;
  const exprs = [
    ...queries.filter((q) => !q.variable).map((q) => ({ where: q.where, expr: q.expr })),
    ...rules.flatMap((g) => g.rules.map((r) => ({ where: `${g.name}/${r.record ?? r.alert}`, expr: r.expr }))),
  ];

  it('rate() and increase() only read counters (a histogram\'s _bucket, _sum, _count included)', async () => {
    const families = await metricFamilies();
    const bad: string[] = [];
    for (const { where, expr } of exprs) {
      for (const m of expr.matchAll(/\b(rate|increase|irate)\(\s*([A-Za-z_:][A-Za-z0-9_:]*)/g)) {
        const f = familyOfSeries(m[2], families);
        if (!f) continue; // recorded or unknown series: observability.test.ts checks the names
        if (f.type !== 'counter' && f.type !== 'histogram' && f.type !== 'summary') bad.push(`${where}: ${m[1]}(${m[2]}) of a ${f.type}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('histogram_quantile() keeps le in its aggregation', () => {
    const bad = exprs.filter(({ expr }) => /histogram_quantile/.test(expr)).filter(({ expr }) => {
      return [...expr.matchAll(/histogram_quantile\(\s*[^,]+,\s*(?:sum|max|min) (?:by|without) \(([^)]*)\)/g)].length === 0
        || [...expr.matchAll(/histogram_quantile\(\s*[^,]+,\s*(?:sum|max|min) by \(([^)]*)\)/g)].some((m) => !m[1].split(',').map((x) => x.trim()).includes('le'));
    });
    expect(bad.map((b) => b.where)).toEqual([]);
  });
});
