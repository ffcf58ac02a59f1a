/**
 * Label-bound series of prom-client counters and histograms for the per-request hot path.
 *
 * prom-client validates and hashes the label object on every `inc`/`observe`, also through
 * its `labels(...)` children (they only pre-bind the label object). A `CounterSeries` /
 * `HistogramSeries` goes through the public API the first time (which validates the labels,
 * creates the series and records the value), then keeps prom-client's own stored series
 * object and updates it in place exactly as prom-client does (`value += v`; `sum += v`,
 * `count += 1`, one bucket `+= 1`), so the exposition is prom-client's own, unchanged.
 *
 * Safe by construction: the kept object is used only after checking that it is the one
 * prom-client stores for these labels; when the metric was reset (its series map was
 * replaced) or the value is one the public API would reject or treat specially
 * (non-finite, negative), the call goes through the public API again. If a prom-client
 * version stores series differently, nothing is kept and every call takes the public API.
 */
import type { Counter, Histogram } from 'prom-client';

export type LabelSet = Record<string, string>;

interface StoredCounter {
  value: number;
  labels: LabelSet;
}
interface StoredHistogram {
  labels: LabelSet;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}
/** prom-client internals read here (v15): the series map, label names sorted for its key, bucket bounds. */
interface MetricInternals<S> {
  hashMap?: Record<string, S>;
  sortedLabelNames?: readonly string[];
  upperBounds?: readonly number[];
}

/** One series (one label set) of a prom-client Counter. */
export class CounterSeries {
  readonly #metric: Counter<string>;
  readonly #internals: MetricInternals<StoredCounter>;
  readonly #labels: LabelSet;
  #stored: StoredCounter | undefined;
  #map: Record<string, StoredCounter> | undefined;

  constructor(metric: Counter<string>, labels: LabelSet) {
    this.#metric = metric;
    this.#internals = metric as unknown as MetricInternals<StoredCounter>;
    this.#labels = labels;
  }

  /** `counter.inc(labels, value)`. */
  inc(value: number): void {
    const stored = this.#stored;
    // value >= 0 && value < Infinity: finite and not negative (false for NaN)
    if (stored !== undefined && value >= 0 && value < Infinity && this.#internals.hashMap === this.#map) {
      stored.value += value;
      return;
    }
    this.#slow(value);
  }

  #slow(value: number): void {
    this.#stored = undefined;
    const result = this.#metric.inc(this.#labels, value) as unknown as { labelHash?: unknown } | undefined;
    const map = this.#internals.hashMap;
    if (map === null || typeof map !== 'object' || typeof result?.labelHash !== 'string') return;
    const stored = map[result.labelHash];
    if (isStored(stored, this.#labels) && typeof stored.value === 'number') {
      this.#stored = stored;
      this.#map = map;
    }
  }
}

/** One series (one label set) of a prom-client Histogram. */
export class HistogramSeries {
  readonly #metric: Histogram<string>;
  readonly #internals: MetricInternals<StoredHistogram>;
  readonly #labels: LabelSet;
  /** Bucket upper bounds and their property keys in `bucketValues`. */
  readonly #bounds: readonly number[];
  readonly #keys: readonly string[];
  #stored: StoredHistogram | undefined;
  #map: Record<string, StoredHistogram> | undefined;

  constructor(metric: Histogram<string>, labels: LabelSet) {
    this.#metric = metric;
    this.#internals = metric as unknown as MetricInternals<StoredHistogram>;
    this.#labels = labels;
    this.#bounds = Array.isArray(this.#internals.upperBounds) ? this.#internals.upperBounds : [];
    this.#keys = this.#bounds.map(String);
  }

  /** `histogram.observe(labels, value)`. */
  observe(value: number): void {
    const stored = this.#stored;
    // value - value === 0: finite (NaN and ±Infinity give NaN)
    if (stored !== undefined && value - value === 0 && this.#internals.hashMap === this.#map) {
      stored.sum += value;
      stored.count += 1;
      const bounds = this.#bounds;
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]) {
          stored.bucketValues[this.#keys[i]] += 1;
          break;
        }
      }
      return;
    }
    this.#slow(value);
  }

  #slow(value: number): void {
    this.#stored = undefined;
    this.#metric.observe(this.#labels, value);
    const map = this.#internals.hashMap;
    if (map === null || typeof map !== 'object' || this.#bounds.length === 0) return;
    const stored = findStored(map, this.#internals.sortedLabelNames, this.#labels);
    if (stored === undefined || typeof stored.sum !== 'number' || typeof stored.count !== 'number' || !stored.bucketValues) return;
    // every bucket must be there for the in-place update to match prom-client's
    for (const key of this.#keys) if (typeof stored.bucketValues[key] !== 'number') return;
    this.#stored = stored;
    this.#map = map;
  }
}

/** The stored series of these labels: by prom-client's key when it matches, else by scanning. */
function findStored<S extends { labels: LabelSet }>(map: Record<string, S>, sortedLabelNames: readonly string[] | undefined, labels: LabelSet): S | undefined {
  if (Array.isArray(sortedLabelNames)) {
    const byKey = map[promKey(sortedLabelNames, labels)];
    if (isStored(byKey, labels)) return byKey;
  }
  for (const key in map) {
    const stored = map[key];
    if (isStored(stored, labels)) return stored;
  }
  return undefined;
}

/** prom-client 15's series key (util.hashObject with sorted label names). */
function promKey(sortedLabelNames: readonly string[], labels: LabelSet): string {
  let key = '';
  for (const name of sortedLabelNames) {
    const value = labels[name];
    if (value !== undefined) key += `${name}:${value},`;
  }
  return key;
}

function isStored<S extends { labels: LabelSet }>(stored: S | undefined, labels: LabelSet): stored is S {
  if (stored === null || typeof stored !== 'object' || stored.labels === null || typeof stored.labels !== 'object') return false;
  if (stored.labels === labels) return true;
  const names = Object.keys(labels);
  if (Object.keys(stored.labels).length !== names.length) return false;
  for (const name of names) if (stored.labels[name] !== labels[name]) return false;
  return true;
}
