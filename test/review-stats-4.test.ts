/**
 * "A statistician checks every number": the experiment numbers promptgate reports, each
 * recomputed here from first principles.
 *
 * What the gateway computes: per experiment, variant and metric the sufficient statistics
 * n, Σx, Σx² (Prometheus counters, summed across sidecars by the README's PromQL, which
 * derives mean, variance and sd from them); per variant the assignment counts by reason and
 * the bucket ranges (`/admin/experiments/:id`). It computes no test statistic, interval or
 * p-value itself, so those are not checked against anything; the README formulas are.
 *
 * References: two-pass mean and variance with compensated (Neumaier) sums; chi-square
 * with 2 degrees of freedom has the exact upper tail exp(-x/2); binomial shares use |z|.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createAdminRoutes } from '../src/admin/routes.js';
import { assign } from '../src/experiments/assignment.js';
import { AssignmentCounters } from '../src/experiments/counters.js';
import { testExperiment, testRegistry } from '../src/experiments/test-helpers.js';
import { createMetrics, type Metrics } from '../src/telemetry/metrics.js';
import { MAX_OBSERVATION } from '../src/telemetry/record-values.js';
import type { RequestRecord } from '../src/telemetry/types.js';

// ---------------------------------------------------------------- references

/** Neumaier-compensated sum: exact to about one rounding of the result. */
function fsum(xs: readonly number[]): number {
  let s = 0;
  let c = 0;
  for (const x of xs) {
    const t = s + x;
    c += Math.abs(s) >= Math.abs(x) ? s - t + x : x - t + s;
    s = t;
  }
  return s + c;
}

/** Sample mean and (n - 1) variance by two passes (no cancellation). */
function reference(xs: readonly number[]): { n: number; mean: number; variance: number | undefined } {
  const n = xs.length;
  const mean = fsum(xs) / n;
  const variance = n > 1 ? fsum(xs.map((x) => (x - mean) ** 2)) / (n - 1) : undefined;
  return { n, mean, variance };
}

// ---------------------------------------------------------------- reading the counters

type Stats = { n: number; sum: number; sumsq: number };
const FAMILIES = ['promptgate_experiment_observations_total', 'promptgate_experiment_observations_sum_total', 'promptgate_experiment_observations_sum_squares_total'] as const;

/** Every experiment observation sample of an exposition: `${family}|${experiment}|${variant}|${metric}` -> value. */
function observationSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(promptgate_experiment_observations_\w+)\{experiment="([^"]*)",variant="([^"]*)",metric="([^"]*)"\} (\S+)$/.exec(line);
    if (m) out.set(`${m[1]}|${m[2]}|${m[3]}|${m[4]}`, Number(m[5]));
  }
  return out;
}

function statsOf(samples: Map<string, number>, experiment: string, variant: string, metric: string): Stats | undefined {
  const [n, sum, sumsq] = FAMILIES.map((f) => samples.get(`${f}|${experiment}|${variant}|${metric}`));
  return n === undefined ? undefined : { n, sum: sum!, sumsq: sumsq! };
}

const observe = (m: Metrics, variant: string, metric: string, xs: readonly number[]) => {
  for (const value of xs) m.observeExperiment({ experiment: 'e', variant, metric, value });
};

// ---------------------------------------------------------------- the README's PromQL, evaluated

/**
 * The README's `mean`, `var` and `sd` lines (Prometheus metrics section), evaluated on
 * scalars. `(x > 0)` is PromQL's filter: false drops the series (here: `absent`).
 */
function readmeFormulas(): (s: Stats) => { mean: number | 'absent'; variance: number | 'absent'; sd: number | 'absent' } {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const block = /```promql\nn {5}= sum by[\s\S]*?```/.exec(readme)?.[0];
  if (!block) throw new Error('README: the n/sum/sumsq PromQL block is gone');
  const line = (name: string) => {
    const l = block.split('\n').find((x) => x.startsWith(`${name} `));
    if (!l) throw new Error(`README: no "${name} =" line`);
    return l
      .slice(l.indexOf('=') + 1)
      .replace(/\(([^()]+?) > 0\)/g, 'gt0($1)')
      .replace(/clamp_min\(/g, 'clampMin(')
      .replace(/\bsqrt\(/g, 'Math.sqrt(')
      .replace(/\bvar\b/g, 'variance')
      .replace(/\^/g, '**');
  };
  const compile = (expr: string) => new Function('n', 'sum', 'sumsq', 'variance', 'gt0', 'clampMin', `return ${expr};`);
  const mean = compile(line('mean'));
  const variance = compile(line('var'));
  const sd = compile(line('sd'));
  return ({ n, sum, sumsq }) => {
    let dropped = false;
    const gt0 = (x: number) => (x > 0 ? x : ((dropped = true), NaN));
    const clampMin = (x: number, lo: number) => (Number.isNaN(x) ? x : Math.max(x, lo));
    const run = (f: (...a: unknown[]) => number, v?: number): number | 'absent' => {
      dropped = false;
      const r = f(n, sum, sumsq, v, gt0, clampMin);
      return dropped ? 'absent' : r;
    };
    const m = run(mean as never);
    const v = run(variance as never);
    return { mean: m, variance: v, sd: v === 'absent' ? 'absent' : run(sd as never, v) };
  };
}

// ---------------------------------------------------------------- tests

describe('sufficient statistics and the README formulas against two-pass references', () => {
  const formulas = readmeFormulas();
  const ints = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));
  const datasets: Array<{ name: string; metric: string; xs: number[]; varianceRelTol?: number }> = [
    { name: 'n = 1', metric: 'latency_ms', xs: [812.4] },
    { name: 'n = 2', metric: 'latency_ms', xs: [812.4, 301.2] },
    { name: 'small n, skewed', metric: 'latency_ms', xs: [120, 95.5, 4020.25, 88, 101] },
    { name: 'zero variance, cost 0.1 x3', metric: 'cost_usd', xs: [0.1, 0.1, 0.1] },
    { name: 'zero variance, cost 0.000435 x7', metric: 'cost_usd', xs: ints(7, () => 0.000435) },
    { name: 'zero variance, latency 1234.567 x1000', metric: 'latency_ms', xs: ints(1000, () => 1234.567) },
    { name: 'all successes', metric: 'success', xs: ints(50, () => 1) },
    { name: 'all failures', metric: 'success', xs: ints(50, () => 0) },
    { name: 'one failure in 1000', metric: 'success', xs: ints(1000, (i) => (i === 500 ? 0 : 1)) },
    { name: 'tiny costs', metric: 'cost_usd', xs: ints(200, (i) => 1e-7 * (1 + (i % 7))) },
    // Large mean, small sd: the cancellation case. README bound: 1e-16 * n * (mean / sd)^2.
    { name: 'input_tokens 120000 +- 29 over 20000', metric: 'input_tokens', xs: ints(20_000, (i) => 120_000 + (i % 100)), varianceRelTol: 1e-16 * 20_000 * (120_050 / 29) ** 2 },
  ];

  for (const d of datasets) {
    it(`${d.name}: n exact, sums and mean to rounding, variance non-negative and as documented`, async () => {
      const m = createMetrics({ processMetrics: false });
      observe(m, 'v', d.metric, d.xs);
      const s = statsOf(observationSamples(await m.render()), 'e', 'v', d.metric)!;
      const ref = reference(d.xs);
      expect(s.n).toBe(ref.n);
      expect(Math.abs(s.sum - fsum(d.xs))).toBeLessThanOrEqual(1e-15 * d.xs.length * fsum(d.xs) + Number.MIN_VALUE);
      expect(Math.abs(s.sumsq - fsum(d.xs.map((x) => x * x)))).toBeLessThanOrEqual(1e-15 * d.xs.length * fsum(d.xs.map((x) => x * x)) + Number.MIN_VALUE);

      const r = formulas(s);
      expect(r.mean).not.toBe('absent');
      expect(Math.abs((r.mean as number) - ref.mean)).toBeLessThanOrEqual(1e-13 * Math.abs(ref.mean));
      if (ref.variance === undefined) {
        // n = 1: no sample variance (was 0/0 = NaN)
        expect(r.variance).toBe('absent');
        expect(r.sd).toBe('absent');
      } else {
        const v = r.variance as number;
        expect(Number.isFinite(v) && v >= 0).toBe(true);
        expect(Number.isFinite(r.sd as number)).toBe(true);
        const tol = d.varianceRelTol === undefined ? 1e-9 * ref.variance + 1e-14 * ref.mean * ref.mean : d.varianceRelTol * ref.variance;
        expect(Math.abs(v - ref.variance)).toBeLessThanOrEqual(tol);
      }
      if (d.metric === 'success') {
        // a rate: mean = successes / n, var = p (1 - p) n / (n - 1), exactly what Wald/Wilson need
        const p = d.xs.filter((x) => x === 1).length / d.xs.length;
        expect(r.mean).toBe(p);
        expect(r.variance as number).toBeCloseTo((p * (1 - p) * d.xs.length) / (d.xs.length - 1), 14);
      }
    });
  }

  it('README var was negative for constant data (sqrt -> NaN) and NaN for n = 1; now 0 and absent', () => {
    // the counters for 3 x 0.1, as prom-client adds them
    let sum = 0;
    let sumsq = 0;
    for (let i = 0; i < 3; i++) {
      sum += 0.1;
      sumsq += 0.1 * 0.1;
    }
    const unclamped = (sumsq - sum ** 2 / 3) / (3 - 1);
    expect(unclamped).toBeLessThan(0); // the old README formula: -1.7e-18
    expect(Number.isNaN(Math.sqrt(unclamped))).toBe(true);
    expect(formulas({ n: 3, sum, sumsq })).toEqual({ mean: sum / 3, variance: 0, sd: 0 });
    expect(formulas({ n: 1, sum: 5, sumsq: 25 })).toEqual({ mean: 5, variance: 'absent', sd: 'absent' });
    // a variant with series but no observations in the window: nothing, not NaN
    expect(formulas({ n: 0, sum: 0, sumsq: 0 })).toEqual({ mean: 'absent', variance: 'absent', sd: 'absent' });
  });

  it('the README var agrees with the dashboard summary table (clamp_min, n - 1 > 0)', () => {
    const dash = readFileSync(new URL('../deploy/observability/grafana/dashboards/promptgate.json', import.meta.url), 'utf8');
    expect(dash).toContain('sqrt(clamp_min(');
    expect(dash).toContain('- 1 > 0)');
  });
});

describe('aggregation across sidecars (sum by experiment, variant, metric)', () => {
  it('three sidecars with very unequal shares (one saw nothing of a variant) add up to the pooled statistics', async () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const data = { control: Array.from({ length: 3001 }, () => 200 + 900 * rnd()), warm: Array.from({ length: 17 }, () => 150 + 40 * rnd()) };
    const sidecars = [createMetrics({ processMetrics: false }), createMetrics({ processMetrics: false }), createMetrics({ processMetrics: false })];
    data.control.forEach((x, i) => observe(sidecars[i % 10 === 0 ? 0 : i % 10 < 3 ? 1 : 2], 'control', 'latency_ms', [x]));
    data.warm.forEach((x, i) => observe(sidecars[i < 2 ? 0 : 1], 'warm', 'latency_ms', [x])); // sidecar 2: no warm series at all
    const texts = await Promise.all(sidecars.map((s) => s.render()));
    expect(statsOf(observationSamples(texts[2]), 'e', 'warm', 'latency_ms')).toBeUndefined();
    const formulas = readmeFormulas();
    for (const variant of ['control', 'warm'] as const) {
      const pooled: Stats = { n: 0, sum: 0, sumsq: 0 };
      for (const t of texts) {
        const s = statsOf(observationSamples(t), 'e', variant, 'latency_ms');
        if (!s) continue;
        pooled.n += s.n;
        pooled.sum += s.sum;
        pooled.sumsq += s.sumsq;
      }
      const ref = reference(data[variant]);
      expect(pooled.n).toBe(ref.n);
      const r = formulas(pooled);
      expect(r.mean as number).toBeCloseTo(ref.mean, 9);
      expect(Math.abs((r.variance as number) - ref.variance!)).toBeLessThan(1e-8 * ref.variance!);
    }
  });
});

describe('values the counters cannot hold', () => {
  it('two token counts of 1.2e154 no longer turn the sum of squares into +Inf for good (each square was finite, their sum not)', async () => {
    const m = createMetrics({ processMetrics: false });
    const record = (inputTokens: number): RequestRecord => ({
      requestId: 'r',
      route: '/v1/chat/completions',
      method: 'POST',
      status: 200,
      outcome: 'ok',
      stream: false,
      attempts: 1,
      latencyMs: 100,
      experiment: 'e',
      variant: 'v',
      experimentAssignment: 'hash',
      usage: { inputTokens, outputTokens: 7, cachedInputTokens: 0, reasoningTokens: 0, estimated: false },
    });
    m.recordRequest(record(1.2e154));
    m.recordRequest(record(1.2e154));
    m.recordRequest(record(1000));
    observe(m, 'v', 'feedback.score', [1.2e154, 1.2e154, 2]);
    const text = await m.render();
    for (const line of text.split('\n').filter((l) => l.startsWith('promptgate_experiment_observations'))) {
      expect(line).not.toMatch(/ (\+Inf|-Inf|NaN)$/);
    }
    const samples = observationSamples(text);
    expect(statsOf(samples, 'e', 'v', 'input_tokens')).toEqual({ n: 1, sum: 1000, sumsq: 1e6 });
    expect(statsOf(samples, 'e', 'v', 'output_tokens')).toEqual({ n: 3, sum: 21, sumsq: 147 });
    expect(statsOf(samples, 'e', 'v', 'feedback.score')).toEqual({ n: 1, sum: 2, sumsq: 4 });
  });

  it('takes exactly 0..MAX_OBSERVATION (1e150, what POST /v1/feedback takes); NaN, negatives, Infinity in no counter', async () => {
    expect(MAX_OBSERVATION).toBe(1e150);
    const m = createMetrics({ processMetrics: false });
    observe(m, 'v', 'feedback.x', [0, -0, 1e150, NaN, -1, Infinity, -Infinity, 1.0000000000000002e150, 5e-324]);
    const s = statsOf(observationSamples(await m.render()), 'e', 'v', 'feedback.x')!;
    expect(s.n).toBe(4);
    expect(s.sum).toBe(1e150);
    expect(s.sumsq).toBe(1e150 * 1e150);
    // and a sum of squares of 1e300 each stays finite for ~1.8e8 observations
    expect(Number.MAX_VALUE / 1e300).toBeGreaterThan(1.7e8);
  });
});

describe('admin API numbers: bucket ranges and assignment counts', () => {
  const now = new Date('2026-11-25T00:00:00Z');
  const get = async (app: ReturnType<typeof createAdminRoutes>, path: string) => {
    const res = await app.request(path, { headers: { authorization: 'Bearer t' } });
    expect(res.status).toBe(200);
    const text = await res.text();
    return { text, body: JSON.parse(text) };
  };

  const cases: Array<{ weights: number[]; widths: number[] }> = [
    { weights: [1, 2, 7], widths: [1000, 2000, 7000] },
    { weights: [1, 1, 1], widths: [3333, 3333, 3334] }, // README's example
    { weights: [0.1, 0.2, 0.7], widths: [1000, 2000, 7000] },
    { weights: [1, 2], widths: [3333, 6667] },
    { weights: [1, 9999], widths: [1, 9999] },
  ];
  for (const c of cases) {
    it(`weights ${c.weights.join('/')}: ranges ${c.widths.join('/')} (round half-up of 10000 w / sum, last takes the rest), consecutive`, async () => {
      const versions = ['1.0.0', '1.1.0', '1.2.0'];
      const exp = testExperiment({ id: 'x', variants: c.weights.map((weight, i) => ({ name: `v${i}`, version: versions[i], weight })) });
      const app = createAdminRoutes(() => ({ token: 't', registry: testRegistry(), experiments: new Map([['x', exp]]), counters: new AssignmentCounters(), now: () => now }));
      const { body } = await get(app, '/admin/experiments/x');
      let from = 0;
      body.variants.forEach((v: { buckets: [number, number] }, i: number) => {
        expect(v.buckets).toEqual([from, from + c.widths[i]]);
        from += c.widths[i];
      });
      expect(from).toBe(10_000);
    });
  }

  it('counts: zero for a variant without data, totals are the sums, no NaN/Infinity anywhere (JSON would print null)', async () => {
    const exp = testExperiment({
      id: 'x',
      variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 2 }, { name: 'c', version: '1.2.0', weight: 7 }],
      rollout: { stages: [25, 100], every: '1d' },
      start: '2026-11-24T12:00:00Z',
    });
    const counters = new AssignmentCounters();
    for (let i = 0; i < 5000; i++) {
      const a = assign(exp, `u${i}`, now);
      counters.record('x', a.variant.name, a.reason);
    }
    for (let i = 0; i < 7; i++) counters.record('x', 'a', 'no_user');
    counters.record('x', 'gone', 'assigned'); // a removed variant keeps its count
    const app = createAdminRoutes(() => ({ token: 't', registry: testRegistry(), experiments: new Map([['x', exp]]), counters, now: () => now }));
    const { text, body } = await get(app, '/admin/experiments/x');
    expect(text).not.toMatch(/NaN|Infinity/);
    const variants = body.counts.variants as Record<string, Record<string, number>>;
    expect(Object.keys(variants)).toEqual(['a', 'b', 'c', 'gone']);
    for (const reason of ['assigned', 'no_user', 'outside_schedule', 'rollout_holdback']) {
      expect(body.counts.totals[reason]).toBe(Object.values(variants).reduce((t, v) => t + v[reason], 0));
    }
    expect(body.counts.totals.assigned + body.counts.totals.rollout_holdback).toBe(5001);
    expect(body.counts.totals.no_user).toBe(7);
    // only the baseline takes hold-backs
    expect(variants.b.rollout_holdback + variants.c.rollout_holdback).toBe(0);
    expect(body.rollout_stage.percent).toBe(25);
  });
});

describe('assignment shares against the configured weights (SRM-style checks, exact chi-square tails)', () => {
  /** Pearson chi-square against expected shares; with 3 categories (df = 2) P(X >= x) = exp(-x / 2) exactly. */
  const chiSquareDf2 = (observed: number[], shares: number[]) => {
    const total = observed.reduce((a, b) => a + b, 0);
    const x = observed.reduce((acc, o, i) => acc + (o - total * shares[i]) ** 2 / (total * shares[i]), 0);
    return { x, p: Math.exp(-x / 2) };
  };

  it('the df = 2 tail is right (table: 5.991 -> 0.05, 13.816 -> 0.001) and rejects a 1% skew at n = 100k', () => {
    expect(Math.exp(-5.991 / 2)).toBeCloseTo(0.05, 4);
    expect(Math.exp(-13.816 / 2)).toBeCloseTo(0.001, 5);
    expect(chiSquareDf2([11_000, 19_000, 70_000], [0.1, 0.2, 0.7]).p).toBeLessThan(1e-6);
  });

  it('weights 1/2/7 over 60k users: shares 0.1/0.2/0.7 (p > 0.001, df = k - 1 = 2)', () => {
    const exp = testExperiment({ id: 'w', variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 2 }, { name: 'c', version: '1.2.0', weight: 7 }] });
    const counts = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (let i = 0; i < 60_000; i++) counts[assign(exp, `member-${i}`, new Date()).variant.name]++;
    expect(chiSquareDf2([counts.a, counts.b, counts.c], [0.1, 0.2, 0.7]).p).toBeGreaterThan(0.001);
  });

  it('rollout at 25%: exposure is independent of the variant (|z| < 3.29 each, and between them)', () => {
    const exp = testExperiment({
      id: 'r',
      variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 2 }, { name: 'c', version: '1.2.0', weight: 7 }],
      rollout: { stages: [25, 100], every: '1d' },
      start: '2026-01-01T00:00:00Z',
    });
    const at = new Date('2026-01-01T06:00:00Z');
    // Every variant is held back alike, the baseline too (its held-back users see no change).
    const seen = { a: [0, 0], b: [0, 0], c: [0, 0] } as Record<string, [number, number]>; // [exposed, held back]
    for (let i = 0; i < 60_000; i++) {
      const a = assign(exp, `member-${i}`, at);
      const bucket = a.bucket!;
      const intended = bucket < 1000 ? 'a' : bucket < 3000 ? 'b' : 'c';
      seen[intended][a.reason === 'assigned' ? 0 : 1]++;
    }
    const z = ([e, h]: [number, number]) => (e - 0.25 * (e + h)) / Math.sqrt((e + h) * 0.25 * 0.75);
    expect(Math.abs(z(seen.a))).toBeLessThan(3.29);
    expect(Math.abs(z(seen.b))).toBeLessThan(3.29);
    expect(Math.abs(z(seen.c))).toBeLessThan(3.29);
    const [pb, pc] = [seen.b[0] / (seen.b[0] + seen.b[1]), seen.c[0] / (seen.c[0] + seen.c[1])];
    const pooled = (seen.b[0] + seen.c[0]) / (seen.b[0] + seen.b[1] + seen.c[0] + seen.c[1]);
    const se = Math.sqrt(pooled * (1 - pooled) * (1 / (seen.b[0] + seen.b[1]) + 1 / (seen.c[0] + seen.c[1])));
    expect(Math.abs((pb - pc) / se)).toBeLessThan(3.29);
  });
});
