/**
 * The Prometheus metric families promptgate exports, defined in one place: names, help
 * texts, label names and buckets (DESIGN.md "Telemetry names"; OTel GenAI semconv for the
 * `gen_ai_*` families). `metrics.ts` records into them.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { traceExportCounts } from './span-export.js';

/** OTel GenAI semconv advice for `gen_ai.client.operation.duration` (seconds). */
export const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/** OTel GenAI semconv advice for `gen_ai.client.token.usage`. */
export const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
/**
 * OTel GenAI semconv advice for `gen_ai.client.operation.time_to_first_chunk` (seconds): the
 * same boundaries as the operation duration (the 0.001 s … 10 s set is the model server's
 * `gen_ai.server.time_to_first_token`, not the client's).
 */
export const FIRST_CHUNK_BUCKETS = DURATION_BUCKETS;

/** Every promptgate family, registered in `registry`. One set per registry. */
export function defineMetricFamilies(registry: Registry) {
  const registers = [registry];

  const genAiLabels = ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_request_model', 'upstream', 'template', 'template_version', 'experiment', 'variant'] as const;
  const duration = new Histogram({
    name: 'gen_ai_client_operation_duration_seconds',
    help: 'GenAI operation duration as the client sees it (gateway receive to response end), including failed and cancelled requests.',
    labelNames: [...genAiLabels, 'error_type', 'stream'],
    buckets: DURATION_BUCKETS,
    registers,
  });
  const tokenUsage = new Histogram({
    name: 'gen_ai_client_token_usage',
    help: 'Tokens per GenAI operation by gen_ai_token_type (input includes cached tokens, output includes reasoning tokens).',
    labelNames: [...genAiLabels, 'gen_ai_token_type'],
    buckets: TOKEN_BUCKETS,
    registers,
  });
  const firstChunk = new Histogram({
    name: 'gen_ai_client_operation_time_to_first_chunk_seconds',
    help: 'Time from request receipt to the first upstream stream chunk (streamed answers only, not error answers).',
    labelNames: genAiLabels,
    buckets: FIRST_CHUNK_BUCKETS,
    registers,
  });
  const tokens = new Counter({
    name: 'promptgate_tokens_total',
    help: 'Tokens by gen_ai_token_type: input, output, cache_read (part of input), reasoning (part of output).',
    labelNames: ['gen_ai_token_type', 'gen_ai_provider_name', 'gen_ai_request_model', 'upstream', 'template', 'template_version', 'experiment', 'variant', 'estimated'],
    registers,
  });
  const requests = new Counter({
    name: 'promptgate_requests_total',
    help: 'Finished requests, including failed and client-cancelled ones.',
    labelNames: ['route', 'status_class', 'error_type', 'upstream', 'gen_ai_request_model', 'gen_ai_provider_name', 'template', 'template_version', 'experiment', 'variant', 'stream', 'estimated'],
    registers,
  });
  const cost = new Counter({
    name: 'promptgate_cost_usd_total',
    help: 'Cost in USD of requests with a known model price (list prices; unrounded).',
    labelNames: ['upstream', 'gen_ai_provider_name', 'gen_ai_request_model', 'template', 'template_version', 'experiment', 'variant', 'estimated'],
    registers,
  });
  const costUnknown = new Counter({
    name: 'promptgate_cost_unknown_total',
    help: 'Requests with token usage whose model has no price (cost not counted).',
    labelNames: ['upstream', 'gen_ai_provider_name', 'gen_ai_request_model'],
    registers,
  });
  const injectionFlags = new Counter({
    name: 'promptgate_injection_flags_total',
    help: 'Requests whose injection score reached the guard threshold (flagged or blocked).',
    labelNames: ['route', 'template', 'template_version', 'experiment', 'variant'],
    registers,
  });
  const attempts = new Counter({
    name: 'promptgate_upstream_attempts_total',
    help: 'Upstream attempts (first tries plus retries), each counted on the upstream it was made to.',
    labelNames: ['upstream', 'gen_ai_provider_name'],
    registers,
  });
  const experimentLabels = ['experiment', 'variant', 'metric'] as const;
  const observations = new Counter({
    name: 'promptgate_experiment_observations_total',
    help: 'Experiment observations n per experiment, variant and metric (hash-assigned requests only).',
    labelNames: experimentLabels,
    registers,
  });
  const observationsSum = new Counter({
    name: 'promptgate_experiment_observations_sum_total',
    help: 'Sum of observed values per experiment, variant and metric.',
    labelNames: experimentLabels,
    registers,
  });
  const observationsSumSquares = new Counter({
    name: 'promptgate_experiment_observations_sum_squares_total',
    help: 'Sum of squared observed values per experiment, variant and metric.',
    labelNames: experimentLabels,
    registers,
  });
  const excluded = new Counter({
    name: 'promptgate_experiment_excluded_requests_total',
    help: 'Experiment requests left out of the statistics, by assignment (default: no user id, outside the schedule or held back by a rollout stage).',
    labelNames: ['experiment', 'variant', 'assignment'],
    registers,
  });

  const configReloads = new Counter({
    name: 'promptgate_config_reloads_total',
    help: 'Config reloads by result: applied (the new config serves) or rejected (invalid; the previous config keeps serving).',
    labelNames: ['result'],
    registers,
  });

  const configLastReloadOk = new Gauge({
    name: 'promptgate_config_last_reload_successful',
    help: 'Whether the latest config reload applied: 1 (or no reload since start), 0 when it was rejected and the previous config keeps serving.',
    registers,
  });

  // Trace export, read from span-export.ts's process-wide totals at scrape time (0 while tracing is off).
  const traceSpans = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  traceSpans('promptgate_trace_spans_exported_total', 'Spans the OTLP collector accepted.', () => traceExportCounts.exported);
  traceSpans(
    'promptgate_trace_spans_failed_total',
    'Spans lost because their batch could not be exported after the exporter\'s retries (collector down, hanging or answering errors), or rejected by the collector in a partial success.',
    () => traceExportCounts.failed,
  );
  traceSpans('promptgate_trace_spans_dropped_total', 'Spans dropped because the trace export queue was full (OTEL_BSP_MAX_QUEUE_SIZE spans, or 64 MiB of encoded spans).', () => traceExportCounts.dropped);

  return { duration, tokenUsage, firstChunk, tokens, requests, cost, costUnknown, injectionFlags, attempts, observations, observationsSum, observationsSumSquares, excluded, configReloads, configLastReloadOk };
}
