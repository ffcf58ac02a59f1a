/**
 * Prometheus instruments of context building, registered on the gateway's registry (never
 * prom-client's global one). Label values are builder names from the config (bounded),
 * kinds, and the fixed outcome/result/reason sets below. Names pass `promtool check metrics`.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { CounterSeries, HistogramSeries } from '../telemetry/prom-series.js';
import type { BuilderKind, BuilderStatus, CacheResult } from './types.js';

/** Build time buckets (seconds): context has a deadline of ~0.15 s by default. */
export const CONTEXT_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5];

/** How full one builder's cache is (`ContextCache.size` and `.bytes`). */
export interface CacheSize {
  builder: string;
  entries: number;
  bytes: number;
}

export interface ContextMetrics {
  /** One builder run in one request, by its final status (`ok|cached|stale|skipped|failed`). */
  observeBuild(builder: string, kind: BuilderKind, outcome: BuilderStatus, seconds: number): void;
  cacheResult(builder: string, result: CacheResult): void;
  /** A builder that failed or was skipped for a reason other than missing input. */
  failure(builder: string, reason: string): void;
  /**
   * A call to a cached builder's source that failed: also one a stale entry covered
   * (`stale_if_error`) and a background refresh, which no request sees fail.
   */
  sourceError(builder: string, reason: string): void;
}

/**
 * Creates `promptgate_context_build_duration_seconds{builder,kind,outcome}`,
 * `promptgate_context_cache_total{builder,result}`,
 * `promptgate_context_failures_total{builder,reason}`,
 * `promptgate_context_source_errors_total{builder,reason}` and the gauges
 * `promptgate_context_cache_entries{builder}` and `promptgate_context_cache_bytes{builder}`
 * on `registry`. The gauges read `cacheSizes` when the registry is scraped, never on the
 * request path: one series per cache it lists, so a builder it no longer lists has none.
 *
 * @example
 * const metrics = createContextMetrics(gatewayMetrics.registry, () => runtime.cacheSizes());
 */
export function createContextMetrics(registry: Registry, cacheSizes: () => Iterable<CacheSize> = () => []): ContextMetrics {
  const registers = [registry];
  const duration = new Histogram({
    name: 'promptgate_context_build_duration_seconds',
    help: 'Time one context builder took in one request, by outcome (ok, cached, stale, skipped, failed).',
    labelNames: ['builder', 'kind', 'outcome'],
    buckets: CONTEXT_DURATION_BUCKETS,
    registers,
  });
  const cache = new Counter({
    name: 'promptgate_context_cache_total',
    help: 'Context cache lookups by result (hit, miss, stale).',
    labelNames: ['builder', 'result'],
    registers,
  });
  const failures = new Counter({
    name: 'promptgate_context_failures_total',
    help: 'Context builders that contributed nothing to a request, by reason (timeout, deadline, http_5xx, ...).',
    labelNames: ['builder', 'reason'],
    registers,
  });
  const sourceErrors = new Counter({
    name: 'promptgate_context_source_errors_total',
    help: 'Failed calls to a cached context source, by reason, including those a stale entry covered and background refreshes.',
    labelNames: ['builder', 'reason'],
    registers,
  });
  const cacheGauge = (name: string, help: string, read: (s: CacheSize) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['builder'],
      registers,
      collect() {
        this.reset();
        for (const s of cacheSizes()) this.set({ builder: s.builder }, read(s));
      },
    });
  cacheGauge('promptgate_context_cache_entries', 'Entries held in each context builder\'s cache (fresh or not).', (s) => s.entries);
  cacheGauge(
    'promptgate_context_cache_bytes',
    'Estimated bytes held in each context builder\'s cache, as its max_bytes bound counts them.',
    (s) => s.bytes,
  );
  // Every request records each of its builders: keep one series per label set (prom-series.ts).
  // Label values are bounded (builder names from the config, fixed sets), so the maps are.
  const builds = new Map<string, HistogramSeries>();
  const lookups = new Map<string, CounterSeries>();
  return {
    observeBuild: (builder, kind, outcome, seconds) => {
      const key = `${builder}\u0000${kind}\u0000${outcome}`;
      let series = builds.get(key);
      if (!series) builds.set(key, (series = new HistogramSeries(duration, { builder, kind, outcome })));
      series.observe(seconds);
    },
    cacheResult: (builder, result) => {
      const key = `${builder}\u0000${result}`;
      let series = lookups.get(key);
      if (!series) lookups.set(key, (series = new CounterSeries(cache, { builder, result })));
      series.inc(1);
    },
    failure: (builder, reason) => failures.inc({ builder, reason }),
    sourceError: (builder, reason) => sourceErrors.inc({ builder, reason }),
  };
}
