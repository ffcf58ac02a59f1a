/**
 * Prometheus instruments. `createMetrics` makes one prom-client `Registry` (never the
 * global default one) with every promptgate family; `recordRequest` does all the
 * accounting of one finished request. One per process (tests make several).
 *
 * Label values are bounded: free-form labels keep their first `maxLabelValues` distinct
 * values, later ones read `other` (see label-values.ts); user ids are never labels.
 *
 * Names follow DESIGN.md "Telemetry names" (metric-families.ts defines them) and pass
 * `promtool check metrics`. Two DESIGN names gained a `_total` suffix because they are counters: Prometheus reserves a bare
 * `_sum` suffix for histograms and summaries, and counters must end in `_total`.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_CODES } from '../errors.js';
import { LabelValues } from './label-values.js';
import { defineMetricFamilies } from './metric-families.js';
import { CounterSeries, HistogramSeries } from './prom-series.js';
import { EXPERIMENT_METRICS } from '../experiments/metric-names.js';
import { countable, errorTypeOf, statusClass, succeeded } from './record-values.js';
import { Combo, level, MAX_CACHED, type Node, type ObservationSeries } from './series-cache.js';
import type { RequestRecord } from './types.js';

/**
 * `metric` label values that always pass and take no slot: the built-in metrics and the
 * recipe statistics' `context_tokens` (context/runtime.ts). Feedback metric names come from
 * clients; without this, made-up names could take every slot first and turn a built-in
 * metric into `other`, merged with them.
 */
const BUILT_IN_METRICS = [...EXPERIMENT_METRICS, 'context_tokens'];

/** GenAI operation of a route (OTel `gen_ai.operation.name`); other routes get no gen_ai_* series. */
const OPERATIONS: Readonly<Record<string, string>> = {
  '/v1/chat/completions': 'chat',
  '/v1/responses': 'chat',
  '/v1/completions': 'text_completion',
  '/v1/embeddings': 'embeddings',
};

/**
 * The `route` of a request no route serves (an unknown path, a method the path does not
 * take): one value whatever the path, so a client cannot add series by the paths it tries.
 */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * `error_type` values the gateway itself defines: its error codes and the ways a request or
 * stream ends (proxy/). They always pass and take no slot: otherwise upstream statuses
 * (`upstream_<status>`, a client can provoke many on pass-through routes) or a small
 * `max_label_values` could turn `client_abort` into `other`, which the deploy rules then
 * count as a failure.
 */
export const GATEWAY_ERROR_TYPES = [
  ...Object.keys(ERROR_CODES),
  'client_abort',
  'shutdown',
  'idle_timeout',
  'upstream_stream_error',
  'upstream_event_too_large',
  'upstream_body_error',
  'upstream_error_body',
  '_OTHER',
];

/** prom-client default metrics that break the `_total` naming rule (gauges): not exported. */
const NONCONFORMING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * Label values the config names: they always pass and take no slot, like known models, so
 * a variant or experiment never reads `other` (merged with others) however many a process
 * sees over its reloads. Config-bounded, never from clients.
 */
export interface ConfiguredLabelValues {
  templates?: Iterable<string>;
  templateVersions?: Iterable<string>;
  /** Experiment ids and recipe statistics experiments (`<template>@<version>:context`). */
  experiments?: Iterable<string>;
  /** Variant and recipe names. */
  variants?: Iterable<string>;
  /** Experiment metrics the config lists (`experiments[].metrics`, e.g. `feedback.thumbs_up`). */
  metrics?: Iterable<string>;
  /**
   * Observation series to start at 0: per experiment, its variants and the metrics they
   * will observe. A counter series that first appears at 1 loses that increment in
   * `increase()` and `rate()` (Prometheus needs an earlier sample), and each sidecar would
   * lose one observation per variant and metric; created at load, the first one counts.
   * With a `baseline`, the experiment's excluded-requests series too (excluded requests are
   * served the baseline).
   */
  experimentSeries?: Iterable<{ experiment: string; variants: readonly string[]; metrics: readonly string[]; baseline?: string }>;
}

/** How a config reload ends: the new config serves, or it is invalid and the old one keeps serving. */
const CONFIG_RELOAD_RESULTS = ['applied', 'rejected'] as const;
export type ConfigReloadResult = (typeof CONFIG_RELOAD_RESULTS)[number];

export interface MetricsOptions {
  /** Model names that are always label values (price book and config); see `allowModels`. */
  knownModels?: Iterable<string>;
  /** Template, experiment, variant and metric names of the config; see `allowConfigured`. */
  configured?: ConfiguredLabelValues;
  /** Distinct values per free-form label before `other` (telemetry.max_label_values). */
  maxLabelValues?: number;
  /** Also export prom-client's process_* and nodejs_* metrics. Default true. */
  processMetrics?: boolean;
}

export interface ExperimentObservation {
  experiment: string;
  variant: string;
  /** `latency_ms`, `cost_usd`, `input_tokens`, `output_tokens`, `success`, `feedback.<name>`... */
  metric: string;
  /** Must be from 0 (the sums are counters) to MAX_OBSERVATION (1e150, so the sum of squares stays finite); other values are ignored. */
  value: number;
}

export interface Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  /** Counts one finished request (ok, failed, cancelled) in every family it belongs to. */
  recordRequest(record: RequestRecord): void;
  /** Adds one observation to an experiment's sufficient statistics (n, sum, sum of squares). */
  observeExperiment(observation: ExperimentObservation): void;
  /** Model names that become always-allowed label values (after a config reload). */
  allowModels(models: Iterable<string>): void;
  /** Config-named label values that become always allowed (after a config reload). */
  allowConfigured(values: ConfiguredLabelValues): void;
  /** Counts one config reload, applied or rejected, and sets the latest result (an alert fires while it is rejected). */
  countConfigReload(result: ConfigReloadResult): void;
  /** The exposition text for `GET /metrics`. */
  render(): Promise<string>;
}

/**
 * Creates the registry and its instruments.
 *
 * @example
 * const metrics = createMetrics({ knownModels: priceBook.models, maxLabelValues: 50 });
 * metrics.recordRequest(record);
 * c.body(await metrics.render(), 200, { 'content-type': metrics.contentType });
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const cap = options.maxLabelValues ?? 50;
  const models = new LabelValues(cap, options.knownModels);
  const bounded = {
    // the GenAI routes and `unmatched` never read `other`: dashboards and rules select them
    route: new LabelValues(cap, [...Object.keys(OPERATIONS), UNMATCHED_ROUTE]),
    // Upstream and provider names come from the config only (exchange.ts: the upstream
    // tried), never from a request: like the config's template names they never collapse,
    // so a small max_label_values (set to bound client models) cannot merge two upstreams.
    upstream: new LabelValues(Number.POSITIVE_INFINITY),
    provider: new LabelValues(Number.POSITIVE_INFINITY),
    errorType: new LabelValues(cap, GATEWAY_ERROR_TYPES),
    template: new LabelValues(cap),
    templateVersion: new LabelValues(cap),
    experiment: new LabelValues(cap),
    variant: new LabelValues(cap),
    metric: new LabelValues(cap, BUILT_IN_METRICS),
  };
  const allowConfigured = (values: ConfiguredLabelValues): void => {
    bounded.template.allow(values.templates ?? []);
    bounded.templateVersion.allow(values.templateVersions ?? []);
    bounded.experiment.allow(values.experiments ?? []);
    bounded.variant.allow(values.variants ?? []);
    bounded.metric.allow(values.metrics ?? []);
    for (const { experiment, variants, metrics, baseline } of values.experimentSeries ?? []) {
      if (baseline !== undefined) {
        new CounterSeries(excluded, { experiment: bounded.experiment.value(experiment), variant: bounded.variant.value(baseline), assignment: 'default' }).inc(0);
      }
      for (const variant of variants) {
        for (const metric of metrics) {
          for (const series of observationSeries(bounded.experiment.value(experiment), bounded.variant.value(variant), bounded.metric.value(metric))) series.inc(0);
        }
      }
    }
  };
  const { duration, tokenUsage, firstChunk, tokens, requests, cost, costUnknown, injectionFlags, attempts, observations, observationsSum, observationsSumSquares, excluded, configReloads, configLastReloadOk } = defineMetricFamilies(registry);
  // Both results at 0 from the start: a sidecar's first rejection then shows in increase().
  for (const result of CONFIG_RELOAD_RESULTS) configReloads.inc({ result }, 0);
  configLastReloadOk.set(1); // the config the process started with loaded

  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    for (const name of NONCONFORMING_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }

  // Label-bound series, cached per distinct label combination (see prom-series.ts and series-cache.ts): a
  // request does a few Map lookups with its (already bounded) label values and updates the
  // series in place, instead of prom-client validating and hashing a label object per call.
  // Keyed by nested Maps, one level per label, so no key strings are built and no two label
  // sets can collide. Bounded like the series themselves (label values are capped); dropped
  // wholesale past MAX_CACHED as a safety net (the series stay in prom-client).
  let cache: Node = new Map();
  /** experiment -> variant -> metric -> series */
  let observationCache: Node = new Map();
  let cached = 0;
  const grow = (): void => {
    if (++cached > MAX_CACHED) {
      cache = new Map();
      observationCache = new Map();
      cached = 0;
    }
  };

  /** The request-independent part: everything keyed by the eight shared label values. */
  function comboOf(model: string, upstream: string, provider: string, template: string, templateVersion: string, experiment: string, variant: string, estimated: string): Combo {
    const m = level(level(level(level(level(level(level(cache, model), upstream), provider), template), templateVersion), experiment), variant);
    let combo = m.get(estimated) as Combo | undefined;
    if (combo === undefined) {
      combo = new Combo(model, upstream, provider, template, templateVersion, experiment, variant, estimated);
      m.set(estimated, combo);
      grow();
    }
    return combo;
  }

  /** Attempts on an upstream tried before the one that answered (a fallback). */
  const attemptSeries = new Map<string, CounterSeries>();
  function countAttempts(upstream: string, provider: string, n: number): void {
    if (n <= 0) return;
    const key = `${upstream}\u0000${provider}`;
    let series = attemptSeries.get(key);
    if (series === undefined) attemptSeries.set(key, (series = new CounterSeries(attempts, { upstream, gen_ai_provider_name: provider })));
    series.inc(n);
  }

  function observationSeries(experiment: string, variant: string, metric: string): ObservationSeries {
    const m = level(level(observationCache, experiment), variant);
    let series = m.get(metric) as ObservationSeries | undefined;
    if (series === undefined) {
      const labels = { experiment, variant, metric };
      series = [new CounterSeries(observations, labels), new CounterSeries(observationsSum, labels), new CounterSeries(observationsSumSquares, labels)];
      m.set(metric, series);
      grow();
    }
    return series;
  }

  function observe(series: ObservationSeries, value: number): void {
    series[0].inc(1);
    series[1].inc(value);
    series[2].inc(value * value);
  }

  function observeExperiment(o: ExperimentObservation): void {
    if (!countable(o.value)) return;
    observe(observationSeries(bounded.experiment.value(o.experiment), bounded.variant.value(o.variant), bounded.metric.value(o.metric)), o.value);
  }

  function recordRequest(r: RequestRecord): void {
    const model = models.value(r.requestModel);
    const upstream = bounded.upstream.value(r.upstream);
    const provider = bounded.provider.value(r.provider);
    const template = bounded.template.value(r.template);
    const templateVersion = bounded.templateVersion.value(r.templateVersion);
    const experiment = bounded.experiment.value(r.experiment);
    const variant = bounded.variant.value(r.variant);
    const errorType = bounded.errorType.value(errorTypeOf(r));
    const usage = r.usage;
    const estimated = usage?.estimated ? 'true' : 'false';
    const stream = r.stream ? 'true' : 'false';
    const route = bounded.route.value(r.route);
    const combo = comboOf(model, upstream, provider, template, templateVersion, experiment, variant, estimated);

    const status = statusClass(r.status);
    const byStatus = level(level(combo.requests, route), status);
    let requestSeries = byStatus.get(errorType) as [CounterSeries | undefined, CounterSeries | undefined] | undefined;
    if (requestSeries === undefined) byStatus.set(errorType, (requestSeries = [undefined, undefined]));
    const streamIndex = r.stream ? 1 : 0;
    let req = requestSeries[streamIndex];
    if (req === undefined) {
      req = requestSeries[streamIndex] = new CounterSeries(requests, {
        route,
        status_class: status,
        error_type: errorType,
        upstream,
        gen_ai_request_model: model,
        gen_ai_provider_name: provider,
        template,
        template_version: templateVersion,
        experiment,
        variant,
        stream,
        estimated,
      });
      grow();
    }
    req.inc(1);
    // Each upstream tried counts its own attempts (a fallback's are not the first upstream's).
    let attemptsHere = r.attempts;
    for (const e of r.earlierAttempts ?? []) {
      attemptsHere -= e.attempts;
      countAttempts(bounded.upstream.value(e.upstream), bounded.provider.value(e.provider), e.attempts);
    }
    if (attemptsHere > 0) (combo.attempts ??= new CounterSeries(attempts, { upstream, gen_ai_provider_name: provider })).inc(attemptsHere);

    // POST only: GET/DELETE /v1/responses/{id} (polling a background response) is no GenAI operation.
    const operation = r.method === 'POST' ? OPERATIONS[r.route] : undefined;
    if (operation !== undefined && r.attempts > 0) {
      const op = combo.operation(operation);
      const byStream = level(op.duration, errorType);
      let d = byStream.get(stream) as HistogramSeries | undefined;
      if (d === undefined) {
        byStream.set(stream, (d = new HistogramSeries(duration, { ...op.labels, error_type: errorType, stream })));
        grow();
      }
      d.observe(r.latencyMs / 1000);
      // Only a streamed (2xx) answer has a first chunk; an error answer to a stream request does not.
      if (r.stream && r.ttfbMs !== undefined && r.status >= 200 && r.status < 300) (op.firstChunk ??= new HistogramSeries(firstChunk, op.labels)).observe(r.ttfbMs / 1000);
      if (usage) {
        (op.inputTokens ??= new HistogramSeries(tokenUsage, { ...op.labels, gen_ai_token_type: 'input' })).observe(usage.inputTokens);
        // embeddings have no output tokens: a 0 per call would drag down every output quantile and mean
        if (operation !== 'embeddings') (op.outputTokens ??= new HistogramSeries(tokenUsage, { ...op.labels, gen_ai_token_type: 'output' })).observe(usage.outputTokens);
      }
    }

    if (usage) {
      combo.tokens(tokens, 0).inc(usage.inputTokens);
      combo.tokens(tokens, 1).inc(usage.outputTokens);
      if (usage.cachedInputTokens > 0) combo.tokens(tokens, 2).inc(usage.cachedInputTokens);
      if (usage.reasoningTokens > 0) combo.tokens(tokens, 3).inc(usage.reasoningTokens);
      if (r.costUsd === null) (combo.costUnknown ??= new CounterSeries(costUnknown, { upstream, gen_ai_provider_name: provider, gen_ai_request_model: model })).inc(1);
    }
    if (typeof r.costUsd === 'number' && Number.isFinite(r.costUsd) && r.costUsd >= 0) {
      (combo.cost ??= new CounterSeries(cost, {
        upstream,
        gen_ai_provider_name: provider,
        gen_ai_request_model: model,
        template,
        template_version: templateVersion,
        experiment,
        variant,
        estimated,
      })).inc(r.costUsd);
    }
    if (r.injectionFlagged) {
      let flags = combo.injectionFlags.get(route);
      if (flags === undefined) {
        combo.injectionFlags.set(route, (flags = new CounterSeries(injectionFlags, { route, template, template_version: templateVersion, experiment, variant })));
        grow();
      }
      flags.inc(1);
    }

    if (r.experiment && r.variant) {
      if (r.experimentAssignment === 'hash') {
        // The built-in metrics (record-values.ts experimentValues, without building its list):
        // success always; latency_ms when it succeeded; cost_usd when priced; tokens when known.
        const ok = succeeded(r);
        observe(observationSeries(experiment, variant, bounded.metric.value('success')), ok ? 1 : 0);
        if (ok) observeValue(experiment, variant, 'latency_ms', r.latencyMs);
        if (typeof r.costUsd === 'number') observeValue(experiment, variant, 'cost_usd', r.costUsd);
        if (usage) {
          observeValue(experiment, variant, 'input_tokens', usage.inputTokens);
          observeValue(experiment, variant, 'output_tokens', usage.outputTokens);
        }
      } else {
        const assignment = r.experimentAssignment ?? 'unknown';
        let ex = combo.excluded.get(assignment);
        if (ex === undefined) {
          combo.excluded.set(assignment, (ex = new CounterSeries(excluded, { experiment, variant, assignment })));
          grow();
        }
        ex.inc(1);
      }
    }
  }

  /** observeExperiment for a request's built-in metric (experiment and variant already bounded). */
  function observeValue(experiment: string, variant: string, metric: string, value: number): void {
    if (!countable(value)) return;
    observe(observationSeries(experiment, variant, bounded.metric.value(metric)), value);
  }

  if (options.configured) allowConfigured(options.configured);

  return {
    registry,
    contentType: registry.contentType,
    recordRequest,
    observeExperiment,
    allowModels: (names) => models.allow(names),
    allowConfigured,
    countConfigReload: (result) => {
      configReloads.inc({ result });
      configLastReloadOk.set(result === 'applied' ? 1 : 0);
    },
    render: () => registry.metrics(),
  };
}
