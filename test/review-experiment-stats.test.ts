/**
 * Review of the numbers experiments are judged by: the sufficient statistics
 * (`promptgate_experiment_observations_*`: n, Σx, Σx² per experiment, variant and metric),
 * their labels, feedback and the recipe statistics. A data scientist reads mean and
 * variance back from the three counters; these tests do the same.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FEEDBACK_METRICS } from '../src/admin/feedback.js';
import { ContextRuntime, type RecipeObservation } from '../src/context/runtime.js';
import { bucketOf } from '../src/experiments/hash.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import type { RequestRecord } from '../src/telemetry/types.js';
import { seededRandom } from '../scripts/seeded-random.js';
import { startTestGateway, mockConfig, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { scrapeMetricsText } from './helpers/metrics.js';

let upstream: MockUpstream;
const gateways: TestGateway[] = [];
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

const EXPERIMENT = `
bindings: [{model: support-bot, experiment: support-tone}]
experiments:
  - id: support-tone
    template: support-reply
    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
    start: 2020-01-01T00:00:00Z
    metrics: [success, feedback.thumbs_up]
`;

async function gateway(extra = ''): Promise<TestGateway> {
  const gw = await startTestGateway(mockConfig(upstream.url, `${extra}\n${EXPERIMENT}`, '    breaker: {failures: 0}'), { templates: ['config/templates/support-reply.yaml'] });
  gateways.push(gw);
  return gw;
}

function chat(gw: TestGateway, body: object, headers: Record<string, string> = {}) {
  return request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
}

function feedback(gw: TestGateway, body: object) {
  return request(`${gw.url}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** n, Σx, Σx² of one experiment, variant and metric, as exposed (undefined when absent). */
function stats(text: string, experiment: string, variant: string, metric: string): { n: number; sum: number; sumSquares: number } | undefined {
  const labels = `{experiment="${experiment}",variant="${variant}",metric="${metric}"}`;
  const value = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  const n = value('promptgate_experiment_observations_total');
  if (n === undefined) return undefined;
  return { n, sum: value('promptgate_experiment_observations_sum_total')!, sumSquares: value('promptgate_experiment_observations_sum_squares_total')! };
}

const metricsText = async (gw: TestGateway) => scrapeMetricsText(gw.url);

/** A user id whose bucket falls in `variant`'s half (50/50: control [0, 5000), warm [5000, 10000)). */
function userIn(variant: 'control' | 'warm', from = 0): string {
  for (let i = from; ; i++) {
    const bucket = bucketOf('support-tone', `user-${i}`);
    if ((bucket < 5000) === (variant === 'control')) return `user-${i}`;
  }
}

function record(patch: Partial<RequestRecord>): RequestRecord {
  return { requestId: 'r', route: '/v1/chat/completions', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 100, ...patch };
}

describe('experiment statistics through the gateway', () => {
  it('a seeded workload (retries, upstream errors, streams, no user id): one success observation per hash-assigned request, mean and variance as sent', async () => {
    const gw = await gateway();
    const rnd = seededRandom(20261124);
    const sent = { control: [] as number[], warm: [] as number[] };
    let excluded = 0;
    for (let i = 0; i < 40; i++) {
      const variant = rnd() < 0.5 ? 'control' : 'warm';
      const kind = Math.floor(rnd() * 5);
      const user = kind === 4 ? undefined : userIn(variant, i * 7);
      const stream = rnd() < 0.5;
      const headers: Record<string, string> =
        kind === 1 ? { 'x-mock-status': '503', 'x-mock-fail-times': '1', 'x-mock-key': `retry-${i}` } : kind === 2 ? { 'x-mock-status': '500', 'x-mock-should-retry': 'false' } : {};
      const res = await chat(gw, { user, stream }, headers);
      await res.body.text();
      expect(res.statusCode).toBe(kind === 2 ? 500 : 200);
      if (user === undefined) excluded++;
      else sent[variant].push(kind === 2 ? 0 : 1);
    }

    const text = await metricsText(gw);
    for (const variant of ['control', 'warm'] as const) {
      const xs = sent[variant];
      const s = stats(text, 'support-tone', variant, 'success')!;
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
      expect(s.n).toBe(xs.length);
      expect(s.sum / s.n).toBeCloseTo(mean, 12);
      expect((s.sumSquares - (s.sum * s.sum) / s.n) / (s.n - 1)).toBeCloseTo(variance, 12);
      // latency only for the successful ones
      expect(stats(text, 'support-tone', variant, 'latency_ms')?.n ?? 0).toBe(xs.filter((x) => x === 1).length);
    }
    const line = text.split('\n').find((l) => l.startsWith('promptgate_experiment_excluded_requests_total{experiment="support-tone",variant="control",assignment="default"}'));
    expect(Number(line?.split(' ').pop() ?? 0)).toBe(excluded);
  });

  it('feedback for a reused x-request-id counts once (a retry with the client\'s own id reset the duplicate check)', async () => {
    const gw = await gateway();
    const user = userIn('warm');
    const send = async () => (await chat(gw, { user }, { 'x-request-id': 'client-id-1' })).body.text();
    await send();
    const first = await feedback(gw, { request_id: 'client-id-1', value: 1 });
    expect(first.statusCode).toBe(200);
    await first.body.dump();
    await send(); // the client's retry, same id
    const second = await feedback(gw, { request_id: 'client-id-1', value: 1 });
    expect(second.statusCode).toBe(409);
    await second.body.dump();
    expect(stats(await metricsText(gw), 'support-tone', 'warm', 'feedback.thumbs_up')).toEqual({ n: 1, sum: 1, sumSquares: 1 });
  });

  it('config-named variants past max_label_values keep their own labels (were merged into "other"), also after a reload renames one', async () => {
    const gw = await gateway('telemetry: {max_label_values: 1}');
    for (const variant of ['control', 'warm'] as const) await (await chat(gw, { user: userIn(variant) })).body.text();
    let text = await metricsText(gw);
    expect(stats(text, 'support-tone', 'control', 'success')?.n).toBe(1);
    expect(stats(text, 'support-tone', 'warm', 'success')?.n).toBe(1);
    expect(stats(text, 'support-tone', 'other', 'success')).toBeUndefined();

    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('{name: warm,', '{name: friendly,'));
    for (let i = 0; i < 100 && gw.holder.current.generation < 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(gw.holder.current.generation).toBe(2);
    await (await chat(gw, { user: userIn('warm') })).body.text();
    text = await metricsText(gw);
    expect(stats(text, 'support-tone', 'friendly', 'success')?.n).toBe(1);
    expect(stats(text, 'support-tone', 'other', 'success')).toBeUndefined();
  });
});

describe('experiment metric label', () => {
  it('feedback metric names chosen by clients no longer crowd a built-in metric into "other"', async () => {
    const m = createMetrics({ processMetrics: false, maxLabelValues: 2 });
    for (const name of ['feedback.a', 'feedback.b', 'feedback.c']) m.observeExperiment({ experiment: 'e', variant: 'v', metric: name, value: 1 });
    m.recordRequest(record({ experiment: 'e', variant: 'v', experimentAssignment: 'hash', costUsd: 0.5 }));
    m.observeExperiment({ experiment: 'e', variant: 'v', metric: 'context_tokens', value: 7 });
    const text = await m.render();
    expect(stats(text, 'e', 'v', 'latency_ms')).toEqual({ n: 1, sum: 100, sumSquares: 10_000 });
    expect(stats(text, 'e', 'v', 'cost_usd')).toEqual({ n: 1, sum: 0.5, sumSquares: 0.25 });
    expect(stats(text, 'e', 'v', 'context_tokens')).toEqual({ n: 1, sum: 7, sumSquares: 49 });
    expect(stats(text, 'e', 'v', 'other')?.n).toBe(1); // feedback.c, past the cap
  });

  it('a metric the config lists (experiments[].metrics) keeps its label past max_label_values', async () => {
    const m = createMetrics({ processMetrics: false, maxLabelValues: 1 });
    m.observeExperiment({ experiment: 'e', variant: 'v', metric: 'feedback.junk', value: 1 });
    m.allowConfigured({ metrics: ['feedback.thumbs_up'] });
    m.observeExperiment({ experiment: 'e', variant: 'v', metric: 'feedback.thumbs_up', value: 1 });
    expect(stats(await m.render(), 'e', 'v', 'feedback.thumbs_up')?.n).toBe(1);
  });
});

describe('recipe statistics', () => {
  const recipe = { contextExperiment: 't@1.0.0:context', contextRecipe: 'k3', contextRecipeAssignment: 'hash' as const };

  it('latency_ms of failed requests is left out (a fast failure made a recipe look faster)', async () => {
    const seen: RecipeObservation[] = [];
    const rt = new ContextRuntime({ observeExperiment: (o) => seen.push(o) });
    try {
      rt.finish(record({ ...recipe, latencyMs: 900 }));
      rt.finish(record({ ...recipe, status: 502, outcome: 'error', errorType: 'upstream_502', latencyMs: 5 }));
      expect(seen.filter((o) => o.metric === 'latency_ms').map((o) => o.value)).toEqual([900]);
      expect(seen.filter((o) => o.metric === 'success').map((o) => o.value)).toEqual([1, 0]);
    } finally {
      await rt.close();
    }
  });

  it('a cancelled request counts success 0 like a variant\'s (was left out), without rewarding the bandit', async () => {
    const seen: RecipeObservation[] = [];
    const rt = new ContextRuntime({ observeExperiment: (o) => seen.push(o), rng: seededRandom(7) });
    try {
      rt.finish(record({ ...recipe, status: 499, outcome: 'client_abort', errorType: 'client_abort' }));
      expect(seen.filter((o) => o.metric === 'success').map((o) => o.value)).toEqual([0]);
      expect(seen.some((o) => o.metric === 'latency_ms')).toBe(false);

      const arm = rt.bandit('t@1.0.0:context', 'success').choose(['k3', 'k5'], 0);
      rt.finish(record({ ...recipe, contextRecipe: arm, contextRecipeAssignment: 'bandit', status: 499, outcome: 'client_abort' }));
      expect(rt.banditSnapshot('t@1.0.0:context')?.[arm].n).toBe(0);
    } finally {
      await rt.close();
    }
  });
});

describe('feedback metrics per request', () => {
  it('a request takes at most MAX_FEEDBACK_METRICS metrics (one id grew its remembered list, and metric="other", without bound)', async () => {
    const gw = await gateway();
    const res = await chat(gw, { user: userIn('control') }, { 'x-request-id': 'many-metrics' });
    await res.body.text();
    const statuses: number[] = [];
    for (let i = 0; i <= MAX_FEEDBACK_METRICS; i++) {
      const r = await feedback(gw, { request_id: 'many-metrics', metric: `m${i}`, value: 1 });
      statuses.push(r.statusCode);
      await r.body.dump();
    }
    expect(statuses.slice(0, MAX_FEEDBACK_METRICS).every((s) => s === 200)).toBe(true);
    expect(statuses[MAX_FEEDBACK_METRICS]).toBe(400);
    expect(stats(await metricsText(gw), 'support-tone', 'control', `feedback.m${MAX_FEEDBACK_METRICS}`)).toBeUndefined();
  });
});
