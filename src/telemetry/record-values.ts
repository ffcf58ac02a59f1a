/**
 * What a finished request's record gives the metrics, as pure functions: its `error_type`
 * and `status_class` label values, and its experiment values (counted up to MAX_OBSERVATION).
 */
import type { EXPERIMENT_METRICS } from '../experiments/metric-names.js';
import type { RequestRecord } from './types.js';

/**
 * The largest experiment value counted: 1e150, as `POST /v1/feedback` takes. A finite square
 * alone (up to ~1.34e154) was not enough: two squares near 1e308 added up to +Inf in the
 * sum-of-squares counter, and that series' variance stayed NaN for good. At 1e150 a square is
 * 1e300, so the counter stays finite for about 1.8e8 such observations.
 */
export const MAX_OBSERVATION = 1e150;

/**
 * Whether an experiment value can go into the three counters: not negative (a counter
 * never decreases) and at most MAX_OBSERVATION (prom-client throws on a non-finite
 * increment, which would leave n and the sum counted without the sum of squares; see
 * MAX_OBSERVATION for the running total). False for NaN.
 */
export function countable(value: number): boolean {
  return value >= 0 && value <= MAX_OBSERVATION;
}

/**
 * The `success` rule of experiments and recipes: the request completed with a status below
 * 400. A client cancel, a failed stream (its 200 already sent) and a gateway error do not.
 */
export function succeeded(r: Pick<RequestRecord, 'outcome' | 'status'>): boolean {
  return r.outcome === 'ok' && r.status > 0 && r.status < 400;
}

/**
 * The experiment metrics of one request (the rule metrics.ts `recordRequest` applies without
 * building the list; test/telemetry/metrics-equivalence holds them equal): `success` always (1 when the request completed
 * with a status below 400; a client cancel counts 0), `latency_ms` for completed requests,
 * `cost_usd` when priced, token counts when usage is known.
 */
export function experimentValues(r: RequestRecord): Array<[metric: (typeof EXPERIMENT_METRICS)[number], value: number]> {
  const ok = succeeded(r);
  const values: Array<[(typeof EXPERIMENT_METRICS)[number], number]> = [['success', ok ? 1 : 0]];
  if (ok) values.push(['latency_ms', r.latencyMs]);
  if (typeof r.costUsd === 'number') values.push(['cost_usd', r.costUsd]);
  if (r.usage) values.push(['input_tokens', r.usage.inputTokens], ['output_tokens', r.usage.outputTokens]);
  return values;
}

/** `error_type` label: the record's, else `client_abort`, the status code for 4xx/5xx, `_OTHER` (OTel) for a failure without one. */
export function errorTypeOf(r: RequestRecord): string | undefined {
  if (r.errorType) return r.errorType;
  if (r.outcome === 'client_abort') return 'client_abort';
  if (r.status >= 400) return String(r.status);
  return r.outcome === 'error' ? '_OTHER' : undefined;
}

/** `status_class` label: `2xx`, `4xx`, ... for a status from 100 to 599, else empty. */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : '';
}
