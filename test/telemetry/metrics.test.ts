import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/telemetry/metrics.js';
import type { RequestRecord } from '../../src/telemetry/types.js';

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const hasPromtool = promtool.status === 0;
if (!hasPromtool) console.warn('SKIP promtool checks: `promtool` is not installed (apt-get install -y prometheus); CI installs it.');

function record(patch: Partial<RequestRecord> = {}): RequestRecord {
  return {
    requestId: 'req-0001-secret-user-42',
    route: '/v1/chat/completions',
    method: 'POST',
    status: 200,
    outcome: 'ok',
    stream: false,
    upstream: 'openai',
    provider: 'openai',
    requestModel: 'gpt-4o-mini',
    responseModel: 'gpt-4o-mini-2024-07-18',
    attempts: 1,
    usage: { inputTokens: 1000, outputTokens: 500, cachedInputTokens: 200, reasoningTokens: 100, estimated: false },
    costUsd: 0.000435,
    latencyMs: 1200,
    template: 'support-reply',
    templateVersion: '1.1.0',
    experiment: 'support-tone',
    variant: 'warm',
    experimentAssignment: 'hash',
    injectionScore: 0.1,
    injectionFlagged: false,
    ...patch,
  };
}

/** The value of the one sample whose name and labels contain all the given fragments. */
function sample(text: string, name: string, ...fragments: string[]): number | undefined {
  const lines = text.split('\n').filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' '));
  const hits = lines.filter((l) => fragments.every((f) => l.includes(f)));
  if (hits.length > 1) throw new Error(`ambiguous sample ${name} ${fragments.join(' ')}:\n${hits.join('\n')}`);
  return hits.length ? Number(hits[0].slice(hits[0].lastIndexOf(' ') + 1)) : undefined;
}

function promtoolCheck(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: r.stdout + r.stderr };
}

const FAMILIES = [
  'gen_ai_client_operation_duration_seconds histogram',
  'gen_ai_client_token_usage histogram',
  'gen_ai_client_operation_time_to_first_chunk_seconds histogram',
  'promptgate_requests_total counter',
  'promptgate_tokens_total counter',
  'promptgate_cost_usd_total counter',
  'promptgate_cost_unknown_total counter',
  'promptgate_injection_flags_total counter',
  'promptgate_upstream_attempts_total counter',
  'promptgate_experiment_observations_total counter',
  'promptgate_experiment_observations_sum_total counter',
  'promptgate_experiment_observations_sum_squares_total counter',
  'promptgate_experiment_excluded_requests_total counter',
  'promptgate_trace_spans_exported_total counter',
  'promptgate_trace_spans_failed_total counter',
  'promptgate_trace_spans_dropped_total counter',
];

describe('metrics', () => {
  it('exposes every family with its type, in separate registries per instance', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.recordRequest(record());
    const text = await a.render();
    for (const family of FAMILIES) expect(text).toContain(`# TYPE ${family}`);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(await b.render(), 'promptgate_requests_total')).toBeUndefined();
  });

  it('counts a successful request in every family it belongs to', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record());
    const text = await m.render();
    expect(
      sample(text, 'promptgate_requests_total', 'route="/v1/chat/completions"', 'status_class="2xx"', 'error_type=""', 'gen_ai_request_model="gpt-4o-mini"', 'template_version="1.1.0"', 'variant="warm"', 'stream="false"', 'estimated="false"'),
    ).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_duration_seconds_bucket', 'le="1.28"', 'gen_ai_operation_name="chat"')).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_duration_seconds_bucket', 'le="0.64"')).toBe(0);
    expect(sample(text, 'gen_ai_client_operation_duration_seconds_sum')).toBe(1.2);
    expect(sample(text, 'gen_ai_client_token_usage_sum', 'gen_ai_token_type="input"')).toBe(1000);
    expect(sample(text, 'gen_ai_client_token_usage_bucket', 'gen_ai_token_type="output"', 'le="256"')).toBe(0);
    expect(sample(text, 'gen_ai_client_token_usage_bucket', 'gen_ai_token_type="output"', 'le="1024"')).toBe(1);
    expect(sample(text, 'promptgate_tokens_total', 'gen_ai_token_type="cache_read"')).toBe(200);
    expect(sample(text, 'promptgate_tokens_total', 'gen_ai_token_type="reasoning"')).toBe(100);
    expect(sample(text, 'promptgate_cost_usd_total', 'gen_ai_request_model="gpt-4o-mini"')).toBe(0.000435);
    expect(sample(text, 'promptgate_upstream_attempts_total', 'upstream="openai"')).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_count')).toBeUndefined();
    expect(sample(text, 'promptgate_injection_flags_total')).toBeUndefined();
  });

  it('adds up experiment sufficient statistics (n, sum, sum of squares) per metric', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record({ latencyMs: 1000 }));
    m.recordRequest(record({ latencyMs: 3000, costUsd: 0.002 }));
    m.recordRequest(record({ outcome: 'error', status: 502, errorType: 'upstream_5xx', usage: undefined, costUsd: undefined }));
    m.observeExperiment({ experiment: 'support-tone', variant: 'warm', metric: 'feedback.thumbs_up', value: 1 });
    m.observeExperiment({ experiment: 'support-tone', variant: 'warm', metric: 'feedback.thumbs_up', value: -1 });
    const text = await m.render();
    const stat = (name: string, metric: string) => sample(text, name, 'experiment="support-tone"', 'variant="warm"', `metric="${metric}"`);
    expect(stat('promptgate_experiment_observations_total', 'latency_ms')).toBe(2);
    expect(stat('promptgate_experiment_observations_sum_total', 'latency_ms')).toBe(4000);
    expect(stat('promptgate_experiment_observations_sum_squares_total', 'latency_ms')).toBe(10_000_000);
    expect(stat('promptgate_experiment_observations_total', 'success')).toBe(3);
    expect(stat('promptgate_experiment_observations_sum_total', 'success')).toBe(2);
    expect(stat('promptgate_experiment_observations_total', 'output_tokens')).toBe(2);
    expect(stat('promptgate_experiment_observations_sum_total', 'output_tokens')).toBe(1000);
    expect(stat('promptgate_experiment_observations_sum_total', 'cost_usd')).toBeCloseTo(0.002435, 15);
    // negative values cannot be added to a counter: ignored
    expect(stat('promptgate_experiment_observations_total', 'feedback.thumbs_up')).toBe(1);
  });

  it('starts the configured experiments\' observation series at 0, so the first observation shows in increase()', async () => {
    const experimentSeries = [{ experiment: 'support-tone', variants: ['control', 'warm'], metrics: ['success', 'feedback.thumbs_up'] }];
    const m = createMetrics({ processMetrics: false, configured: { experiments: ['support-tone'], variants: ['control', 'warm'], metrics: ['feedback.thumbs_up'], experimentSeries } });
    let text = await m.render();
    for (const variant of ['control', 'warm']) {
      for (const metric of ['success', 'feedback.thumbs_up']) {
        for (const name of ['promptgate_experiment_observations_total', 'promptgate_experiment_observations_sum_total', 'promptgate_experiment_observations_sum_squares_total']) {
          expect(sample(text, name, 'experiment="support-tone"', `variant="${variant}"`, `metric="${metric}"`), `${name} ${variant} ${metric}`).toBe(0);
        }
      }
    }
    m.observeExperiment({ experiment: 'support-tone', variant: 'warm', metric: 'feedback.thumbs_up', value: 1 });
    // a reload that adds a variant starts its series too, and keeps the counts of the others
    m.allowConfigured({ variants: ['bold'], experimentSeries: [{ experiment: 'support-tone', variants: ['warm', 'bold'], metrics: ['feedback.thumbs_up'] }] });
    text = await m.render();
    expect(sample(text, 'promptgate_experiment_observations_total', 'variant="warm"', 'metric="feedback.thumbs_up"')).toBe(1);
    expect(sample(text, 'promptgate_experiment_observations_total', 'variant="bold"', 'metric="feedback.thumbs_up"')).toBe(0);
  });

  // Only the observation series were started: a sidecar's first excluded request (no user
  // id, outside the schedule, held back by a rollout) was lost to increase().
  it('starts the excluded-requests series of each experiment\'s baseline at 0, and counts into it', async () => {
    const experimentSeries = [{ experiment: 'support-tone', variants: ['control', 'warm'], metrics: ['success'], baseline: 'control' }];
    const m = createMetrics({ processMetrics: false, configured: { experiments: ['support-tone'], variants: ['control', 'warm'], experimentSeries } });
    expect(sample(await m.render(), 'promptgate_experiment_excluded_requests_total', 'experiment="support-tone"', 'variant="control"', 'assignment="default"')).toBe(0);
    m.recordRequest({ requestId: 'r', route: '/v1/chat/completions', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 5, experiment: 'support-tone', variant: 'control', experimentAssignment: 'default' });
    expect(sample(await m.render(), 'promptgate_experiment_excluded_requests_total', 'experiment="support-tone"', 'variant="control"', 'assignment="default"')).toBe(1);
  });

  it('ignores a value whose square overflows instead of throwing after counting n and sum', async () => {
    const m = createMetrics({ processMetrics: false });
    const huge = { experiment: 'support-tone', variant: 'warm', metric: 'feedback.score', value: 1e200 };
    expect(() => m.observeExperiment(huge)).not.toThrow();
    m.observeExperiment({ ...huge, value: 3 });
    // the same through a request: absurd usage reported by an upstream
    expect(() => m.recordRequest(record({ usage: { inputTokens: 1e200, outputTokens: 5, cachedInputTokens: 0, reasoningTokens: 0, estimated: false } }))).not.toThrow();
    const text = await m.render();
    const stat = (name: string, metric: string) => sample(text, name, 'experiment="support-tone"', 'variant="warm"', `metric="${metric}"`);
    expect(stat('promptgate_experiment_observations_total', 'feedback.score')).toBe(1);
    expect(stat('promptgate_experiment_observations_sum_total', 'feedback.score')).toBe(3);
    expect(stat('promptgate_experiment_observations_sum_squares_total', 'feedback.score')).toBe(9);
    expect(stat('promptgate_experiment_observations_total', 'input_tokens')).toBeUndefined();
    expect(stat('promptgate_experiment_observations_sum_total', 'output_tokens')).toBe(5);
  });

  it('counts requests outside the hash assignment apart, not in the statistics', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record({ variant: 'control', experimentAssignment: 'default' }));
    m.recordRequest(record({ variant: 'warm', experimentAssignment: 'default' }));
    m.recordRequest(record({ variant: 'warm', experimentAssignment: undefined }));
    const text = await m.render();
    expect(sample(text, 'promptgate_experiment_observations_total')).toBeUndefined();
    expect(sample(text, 'promptgate_experiment_excluded_requests_total', 'variant="control"', 'assignment="default"')).toBe(1);
    expect(sample(text, 'promptgate_experiment_excluded_requests_total', 'variant="warm"', 'assignment="default"')).toBe(1);
    expect(sample(text, 'promptgate_experiment_excluded_requests_total', 'assignment="unknown"')).toBe(1);
  });

  it('counts failed and cancelled streams, with error_type in the duration histogram', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record({ stream: true, ttfbMs: 150, outcome: 'client_abort', errorType: 'client_abort', status: 200, latencyMs: 900 }));
    m.recordRequest(record({ stream: true, ttfbMs: 90, outcome: 'error', errorType: 'upstream_idle_timeout', status: 200 }));
    m.recordRequest(record({ outcome: 'error', status: 503, errorType: undefined, usage: undefined, costUsd: undefined, attempts: 3 }));
    const text = await m.render();
    expect(sample(text, 'promptgate_requests_total', 'error_type="client_abort"', 'stream="true"')).toBe(1);
    expect(sample(text, 'promptgate_requests_total', 'error_type="upstream_idle_timeout"')).toBe(1);
    expect(sample(text, 'promptgate_requests_total', 'error_type="503"', 'status_class="5xx"')).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_duration_seconds_count', 'error_type="client_abort"', 'stream="true"')).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_duration_seconds_count', 'error_type="503"')).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_count')).toBe(2);
    expect(sample(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_bucket', 'le="0.16"')).toBe(2);
    expect(sample(text, 'promptgate_upstream_attempts_total')).toBe(5);
    const success = sample(text, 'promptgate_experiment_observations_sum_total', 'metric="success"');
    expect(success).toBe(0);
  });

  it('time to first chunk counts streamed answers only, not an error answer to a stream request', async () => {
    const m = createMetrics({ processMetrics: false });
    // a 429 answered in 5 ms is no stream chunk: it would pull the quantiles down
    m.recordRequest(record({ stream: true, ttfbMs: 5, status: 429, outcome: 'error', errorType: 'upstream_429', usage: undefined, costUsd: undefined }));
    m.recordRequest(record({ stream: true, ttfbMs: 8, status: 502, outcome: 'error', errorType: 'upstream_5xx', usage: undefined, costUsd: undefined }));
    m.recordRequest(record({ stream: true, ttfbMs: 300 }));
    const text = await m.render();
    expect(sample(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_count')).toBe(1);
    expect(sample(text, 'gen_ai_client_operation_time_to_first_chunk_seconds_sum')).toBe(0.3);
    expect(sample(text, 'gen_ai_client_operation_duration_seconds_count', 'error_type="upstream_429"')).toBe(1);
  });

  it('records no gen_ai series for requests that never reached an upstream', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record({ status: 400, outcome: 'error', errorType: 'prompt_injection_detected', attempts: 0, usage: undefined, costUsd: undefined, injectionScore: 0.93, injectionFlagged: true }));
    const text = await m.render();
    expect(sample(text, 'promptgate_requests_total', 'error_type="prompt_injection_detected"', 'status_class="4xx"')).toBe(1);
    expect(sample(text, 'promptgate_injection_flags_total', 'template="support-reply"')).toBe(1);
    expect(text).not.toContain('gen_ai_client_operation_duration_seconds_count');
    expect(sample(text, 'promptgate_upstream_attempts_total')).toBeUndefined();
  });

  it('counts usage of unpriced models as cost unknown, never as 0 USD', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record({ requestModel: 'my-finetune', costUsd: null }));
    const text = await m.render();
    expect(sample(text, 'promptgate_cost_unknown_total', 'gen_ai_request_model="my-finetune"')).toBe(1);
    expect(sample(text, 'promptgate_cost_usd_total', 'gen_ai_request_model="my-finetune"')).toBeUndefined();
  });

  it('reports a model name with a lone surrogate as `other`, not as two series that read the same once UTF-8 encoded', async () => {
    const m = createMetrics({ processMetrics: false });
    for (const model of ['gpt\ud800', 'gpt\udc00', 'gpt-🚀']) m.recordRequest(record({ requestModel: model, experiment: undefined, variant: undefined }));
    const lines = Buffer.from(await m.render()).toString('utf8').split('\n').filter((l) => l.startsWith('promptgate_requests_total{'));
    expect(new Set(lines).size).toBe(lines.length);
    expect(sample(lines.join('\n'), 'promptgate_requests_total', 'gen_ai_request_model="other"')).toBe(2);
    expect(sample(lines.join('\n'), 'promptgate_requests_total', 'gen_ai_request_model="gpt-🚀"')).toBe(1);
  });

  it('caps distinct label values: unknown models beyond the cap read `other`, known ones never do', async () => {
    const m = createMetrics({ processMetrics: false, maxLabelValues: 3, knownModels: ['gpt-4o'] });
    for (const model of ['m1', 'm2', 'm3', 'm4', 'm5', 'gpt-4o', 'm1']) m.recordRequest(record({ requestModel: model, experiment: undefined, variant: undefined }));
    m.allowModels(['gpt-5']);
    m.recordRequest(record({ requestModel: 'gpt-5', experiment: undefined, variant: undefined }));
    const text = await m.render();
    const count = (model: string) => sample(text, 'promptgate_requests_total', `gen_ai_request_model="${model}"`);
    expect(count('m1')).toBe(2);
    expect(count('m3')).toBe(1);
    expect(count('m4')).toBeUndefined();
    expect(count('other')).toBe(2);
    expect(count('gpt-4o')).toBe(1);
    expect(count('gpt-5')).toBe(1);
  });

  it('never puts request or user ids in labels', async () => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(record());
    const text = await m.render();
    expect(text).not.toContain('req-0001-secret-user-42');
    const labelNames = new Set([...text.matchAll(/[{,]([a-z_]+)="/g)].map((x) => x[1]));
    for (const name of labelNames) expect(name).not.toMatch(/user|request_id|session/);
  });

  it.skipIf(!hasPromtool)('passes `promtool check metrics` (every family populated)', async () => {
    const m = createMetrics();
    m.recordRequest(record({ stream: true, ttfbMs: 200 }));
    m.recordRequest(record({ requestModel: 'unpriced', costUsd: null, injectionFlagged: true, experimentAssignment: 'default' }));
    m.recordRequest(record({ outcome: 'error', status: 502, errorType: 'upstream_5xx', attempts: 3, usage: undefined, costUsd: undefined }));
    const text = await m.render();
    for (const family of FAMILIES) {
      const name = family.split(' ')[0];
      expect(text.split('\n').some((l) => l.startsWith(name) && !l.startsWith('#')), `${name} has samples`).toBe(true);
    }
    const result = promtoolCheck(text);
    expect(result.output).toBe('');
    expect(result.status).toBe(0);
  });

  it.skipIf(!hasPromtool)('promtool does flag the DESIGN names as plain `_sum`/`_sum_squares` (why they end in `_total`)', () => {
    const text = [
      '# HELP promptgate_experiment_observations_sum x',
      '# TYPE promptgate_experiment_observations_sum counter',
      'promptgate_experiment_observations_sum 1',
      '',
    ].join('\n');
    const result = promtoolCheck(text);
    expect(result.status).not.toBe(0);
    expect(result.output).toMatch(/_total|_sum/);
  });
});
