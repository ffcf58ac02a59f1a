/**
 * `recordRequest` updates prom-client's series in place through cached label-bound series
 * (src/telemetry/prom-series.ts). This checks the exposition is exactly what plain
 * prom-client calls give: a reference recorder drives the same instruments (taken from a
 * second registry) with the public `inc(labels, v)` / `observe(labels, v)` API, as
 * recordRequest did before the cache, over a random workload.
 */
import { Counter, Histogram } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LabelValues } from '../../src/telemetry/label-values.js';
import { EXPERIMENT_METRICS } from '../../src/experiments/metric-names.js';
import { createMetrics, GATEWAY_ERROR_TYPES, type ExperimentObservation, type Metrics } from '../../src/telemetry/metrics.js';
import { experimentValues } from '../../src/telemetry/record-values.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { seededRandom } from '../../scripts/seeded-random.js';

const OPERATIONS: Record<string, string> = { '/v1/chat/completions': 'chat', '/v1/responses': 'chat', '/v1/completions': 'text_completion', '/v1/embeddings': 'embeddings' };

/** The public-API recorder (recordRequest before the series cache), on `m`'s own instruments. */
function referenceRecorder(m: Metrics, cap: number, knownModels: string[]) {
  const get = <T>(name: string) => m.registry.getSingleMetric(name) as unknown as T;
  const duration = get<Histogram<string>>('gen_ai_client_operation_duration_seconds');
  const tokenUsage = get<Histogram<string>>('gen_ai_client_token_usage');
  const firstChunk = get<Histogram<string>>('gen_ai_client_operation_time_to_first_chunk_seconds');
  const tokens = get<Counter<string>>('promptgate_tokens_total');
  const requests = get<Counter<string>>('promptgate_requests_total');
  const cost = get<Counter<string>>('promptgate_cost_usd_total');
  const costUnknown = get<Counter<string>>('promptgate_cost_unknown_total');
  const injectionFlags = get<Counter<string>>('promptgate_injection_flags_total');
  const attempts = get<Counter<string>>('promptgate_upstream_attempts_total');
  const observations = get<Counter<string>>('promptgate_experiment_observations_total');
  const observationsSum = get<Counter<string>>('promptgate_experiment_observations_sum_total');
  const observationsSumSquares = get<Counter<string>>('promptgate_experiment_observations_sum_squares_total');
  const excluded = get<Counter<string>>('promptgate_experiment_excluded_requests_total');
  const models = new LabelValues(cap, knownModels);
  const b = Object.fromEntries(['route', 'upstream', 'provider', 'errorType', 'template', 'templateVersion', 'experiment', 'variant', 'metric'].map((k) => [k, new LabelValues(cap)]));
  b.metric = new LabelValues(cap, [...EXPERIMENT_METRICS, 'context_tokens']); // built-in metrics take no slot
  b.route = new LabelValues(cap, Object.keys(OPERATIONS)); // GenAI routes and the gateway's error types take no slot
  b.errorType = new LabelValues(cap, GATEWAY_ERROR_TYPES);

  function observeExperiment(o: ExperimentObservation): void {
    if (!(o.value >= 0 && o.value * o.value < Infinity)) return; // negative, NaN, or a square that overflows
    const labels = { experiment: b.experiment.value(o.experiment), variant: b.variant.value(o.variant), metric: b.metric.value(o.metric) };
    observations.inc(labels);
    observationsSum.inc(labels, o.value);
    observationsSumSquares.inc(labels, o.value * o.value);
  }

  function recordRequest(r: RequestRecord): void {
    const model = models.value(r.requestModel);
    const upstream = b.upstream.value(r.upstream);
    const provider = b.provider.value(r.provider);
    const template = b.template.value(r.template);
    const templateVersion = b.templateVersion.value(r.templateVersion);
    const experiment = b.experiment.value(r.experiment);
    const variant = b.variant.value(r.variant);
    const errorType = b.errorType.value(r.errorType ?? (r.outcome === 'client_abort' ? 'client_abort' : r.status >= 400 ? String(r.status) : r.outcome === 'error' ? '_OTHER' : undefined));
    const estimated = r.usage?.estimated ? 'true' : 'false';
    const stream = r.stream ? 'true' : 'false';
    const statusClass = r.status >= 100 && r.status < 600 ? `${Math.floor(r.status / 100)}xx` : '';
    requests.inc({ route: b.route.value(r.route), status_class: statusClass, error_type: errorType, upstream, gen_ai_request_model: model, gen_ai_provider_name: provider, template, template_version: templateVersion, experiment, variant, stream, estimated });
    if (r.attempts > 0) attempts.inc({ upstream, gen_ai_provider_name: provider }, r.attempts);
    const operation = r.method === 'POST' ? OPERATIONS[r.route] : undefined;
    if (operation !== undefined && r.attempts > 0) {
      const genAi = { gen_ai_operation_name: operation, gen_ai_provider_name: provider, gen_ai_request_model: model, upstream, template, template_version: templateVersion, experiment, variant };
      duration.observe({ ...genAi, error_type: errorType, stream }, r.latencyMs / 1000);
      if (r.stream && r.ttfbMs !== undefined && r.status >= 200 && r.status < 300) firstChunk.observe(genAi, r.ttfbMs / 1000);
      if (r.usage) {
        tokenUsage.observe({ ...genAi, gen_ai_token_type: 'input' }, r.usage.inputTokens);
        if (operation !== 'embeddings') tokenUsage.observe({ ...genAi, gen_ai_token_type: 'output' }, r.usage.outputTokens);
      }
    }
    if (r.usage) {
      const base = { gen_ai_provider_name: provider, gen_ai_request_model: model, upstream, template, template_version: templateVersion, experiment, variant, estimated };
      tokens.inc({ ...base, gen_ai_token_type: 'input' }, r.usage.inputTokens);
      tokens.inc({ ...base, gen_ai_token_type: 'output' }, r.usage.outputTokens);
      if (r.usage.cachedInputTokens > 0) tokens.inc({ ...base, gen_ai_token_type: 'cache_read' }, r.usage.cachedInputTokens);
      if (r.usage.reasoningTokens > 0) tokens.inc({ ...base, gen_ai_token_type: 'reasoning' }, r.usage.reasoningTokens);
      if (r.costUsd === null) costUnknown.inc({ upstream, gen_ai_provider_name: provider, gen_ai_request_model: model });
    }
    if (typeof r.costUsd === 'number' && Number.isFinite(r.costUsd) && r.costUsd >= 0) {
      cost.inc({ upstream, gen_ai_provider_name: provider, gen_ai_request_model: model, template, template_version: templateVersion, experiment, variant, estimated }, r.costUsd);
    }
    if (r.injectionFlagged) injectionFlags.inc({ route: b.route.value(r.route), template, template_version: templateVersion, experiment, variant });
    if (r.experiment && r.variant) {
      if (r.experimentAssignment === 'hash') {
        for (const [metric, value] of experimentValues(r)) observeExperiment({ experiment: r.experiment, variant: r.variant, metric, value });
      } else {
        excluded.inc({ experiment, variant, assignment: r.experimentAssignment ?? 'unknown' });
      }
    }
  }
  return { recordRequest, observeExperiment, allowModels: (names: string[]) => models.allow(names) };
}


function randomRecord(rnd: () => number, i: number): RequestRecord {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const status = pick([200, 200, 200, 200, 400, 429, 502, 503, 0]);
  const outcome = status === 0 ? 'client_abort' : status >= 400 ? 'error' : pick(['ok', 'ok', 'ok', 'ok', 'error', 'client_abort'] as const);
  const hasUsage = rnd() < 0.7;
  return {
    requestId: `req-${i}`,
    route: pick(['/v1/chat/completions', '/v1/chat/completions', '/v1/embeddings', '/v1/responses', '/v1/models', '/v1/*']),
    method: 'POST',
    status,
    outcome,
    errorType: outcome !== 'ok' || status >= 400 ? pick([undefined, 'upstream_5xx', 'timeout', 'client_abort', 'weird\u0000"code\n']) : undefined,
    stream: rnd() < 0.5,
    upstream: pick(['openai', 'azure', undefined]),
    provider: pick(['openai', 'azure.ai.openai', undefined]),
    requestModel: pick(['gpt-4o-mini', 'gpt-4o', `m${Math.floor(rnd() * 12)}`, 'a\u0000b', 'a', undefined]),
    attempts: pick([0, 1, 1, 1, 2, 3]),
    usage: hasUsage
      ? { inputTokens: Math.floor(rnd() * 5000), outputTokens: Math.floor(rnd() * 2000), cachedInputTokens: pick([0, 0, 128]), reasoningTokens: pick([0, 64]), estimated: rnd() < 0.2 }
      : undefined,
    costUsd: pick([undefined, null, 0, rnd() / 100, NaN, -1]),
    latencyMs: pick([rnd() * 100, rnd() * 100_000, 0, NaN]),
    ttfbMs: pick([undefined, rnd() * 500]),
    template: pick(['support-reply', 'triage', undefined]),
    templateVersion: pick(['1.0.0', '1.1.0', undefined]),
    experiment: pick(['support-tone', 'len', undefined]),
    variant: pick(['warm', 'control', `v${Math.floor(rnd() * 8)}`, undefined]),
    experimentAssignment: pick(['hash', 'hash', 'default', undefined] as const),
    injectionFlagged: pick([undefined, false, true]),
  };
}

async function compare(seed: number, cap: number): Promise<void> {
  const knownModels = ['gpt-4o'];
  const fast = createMetrics({ processMetrics: false, maxLabelValues: cap, knownModels });
  const ref = createMetrics({ processMetrics: false, maxLabelValues: cap, knownModels });
  const reference = referenceRecorder(ref, cap, knownModels);
  const rnd = seededRandom(seed);
  const both = (f: (m: Pick<Metrics, 'recordRequest' | 'observeExperiment' | 'allowModels'>) => void) => {
    let fastError: unknown;
    let refError: unknown;
    try {
      f(fast);
    } catch (err) {
      fastError = err;
    }
    try {
      f(reference);
    } catch (err) {
      refError = err;
    }
    expect(String(fastError)).toBe(String(refError));
  };
  for (let i = 0; i < 4000; i++) {
    const r = randomRecord(rnd, i);
    both((m) => m.recordRequest(r));
    if (i % 7 === 0) {
      const o = { experiment: rnd() < 0.5 ? 'support-tone' : `e${i % 5}`, variant: 'warm', metric: rnd() < 0.5 ? 'feedback.thumbs_up' : `feedback.m${i % 9}`, value: rnd() < 0.1 ? [-1, NaN, 1e200][Math.floor(rnd() * 3)] : rnd() * 3 };
      both((m) => m.observeExperiment(o));
    }
    if (i === 1500) both((m) => m.allowModels(['m11', 'gpt-5']));
    if (i === 2500) {
      // a reset replaces prom-client's series maps: the cached series must notice
      fast.registry.resetMetrics();
      ref.registry.resetMetrics();
    }
  }
  expect(await fast.render()).toBe(await ref.render());
}

describe('metrics: cached series give the same exposition as plain prom-client calls', () => {
  it.each([
    [1, 50],
    [2, 3],
    [3, 1000],
  ])('seed %i, max_label_values %i', async (seed, cap) => {
    await compare(seed, cap);
  });
});
