/**
 * The state of context injection that outlives config reloads: one cache per builder (kept
 * while the builder's config is unchanged), recipe bandits (by experiment and recipe name),
 * the HTTP agent for builder calls, scan results of untrusted text, and the metrics. One per
 * process; the app keeps it in its deps.
 */
import { LRUCache } from 'lru-cache';
import type { Registry } from 'prom-client';
import { Agent, type Dispatcher } from 'undici';
import { createInjectionScanner, type InjectionScan, type InjectionScanner } from '../guard/scanner.js';
import type { RuntimeConfig } from '../config/compile.js';
import { succeeded } from '../telemetry/record-values.js';
import type { RequestRecord } from '../telemetry/types.js';
import { BetaBandit } from './bandit.js';
import { ContextCache } from './cache.js';
import { ContextSourceError } from './fetch-json.js';
import { createContextMetrics, type CacheSize, type ContextMetrics } from './metrics.js';
import type { Builder, BuilderOutput } from './types.js';
import { screenOutput, type ScanOutcome } from './untrusted.js';

/** The statistics every request served by a recipe adds to (besides a bandit's feedback metric): see `finish`. */
export const RECIPE_METRICS = ['success', 'latency_ms', 'input_tokens', 'context_tokens'] as const;

/** An experiment statistics observation (the gateway's `Metrics.observeExperiment`). */
export interface RecipeObservation {
  experiment: string;
  variant: string;
  metric: string;
  value: number;
}

export interface ContextRuntimeOptions {
  /** The gateway's prom-client registry; no context metrics without it. */
  registry?: Registry;
  /** Uniform random numbers for the bandits (tests seed it). */
  rng?: () => number;
  /** Cache clock in ms (tests); default `performance.now`. */
  now?: () => number;
  /** Receives recipe statistics (`Metrics.observeExperiment`). */
  observeExperiment?: (o: RecipeObservation) => void;
  /** Max sockets per origin for http builders. */
  connections?: number;
}

/** A request served with a recipe whose bandit learns from feedback, awaiting that feedback. */
interface PendingFeedback {
  experiment: string;
  recipe: string;
  metric: string;
}

export class ContextRuntime {
  readonly metrics: ContextMetrics | undefined;
  readonly dispatcher: Dispatcher;
  readonly #caches = new Map<string, { fingerprint: string; cache: ContextCache<BuilderOutput> }>();
  /** Fingerprint by name of the builders with a cache in the config `prepare` last saw (undefined before). */
  #cachedBuilders: Map<string, string> | undefined;
  /** By recipe experiment, with the metric it learns from: a new metric starts a new bandit. */
  readonly #bandits = new Map<string, { metric: string; bandit: BetaBandit }>();
  // As many requests, as long, as the feedback route remembers (admin/feedback.ts); maxSize
  // with each entry counting 1, not `max`: no arrays preallocated for 100,000 entries.
  readonly #pending = new LRUCache<string, PendingFeedback>({ maxSize: 100_000, sizeCalculation: () => 1, ttl: 24 * 3600_000 });
  /**
   * Bounded by characters, not entries: a key holds the whole text, and an http answer's
   * string may be up to `max_bytes` (1 MiB). A text over `maxEntrySize` is scanned every time.
   */
  readonly #scans = new LRUCache<string, InjectionScan>({ maxSize: 8_000_000, maxEntrySize: 65_536, sizeCalculation: (_s, key) => key.length + 64 });
  /** Scan results are remembered per scanner: two with one threshold may read different lengths (`max_scan_chars`) or models. */
  readonly #scannerIds = new WeakMap<InjectionScanner, number>();
  #nextScannerId = 0;
  readonly #scanners = new Map<string, InjectionScanner>();
  /** The scanner key of the config `prepare` last saw (undefined: it scans no context). */
  #preparedScanner: string | undefined;
  /** By scanner id, not the scanner: a cached output must not keep an old config's scanner alive. */
  readonly #screened = new WeakMap<BuilderOutput, { scanner: number; block: boolean; outcome: ScanOutcome }>();
  readonly #rng: () => number;
  readonly #now: (() => number) | undefined;
  readonly #observe: ((o: RecipeObservation) => void) | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: ContextRuntimeOptions = {}) {
    this.metrics = options.registry ? createContextMetrics(options.registry, () => this.cacheSizes()) : undefined;
    this.dispatcher = new Agent({ connections: options.connections ?? 64, keepAliveTimeout: 10_000 });
    this.#rng = options.rng ?? Math.random;
    this.#now = options.now;
    this.#observe = options.observeExperiment;
  }

  /**
   * The builder's cache (undefined when it has no `cache:`); a changed config starts a new one.
   * Undefined too for a builder the config `prepare` last saw does not have as it is: a request
   * of an older config, still running after the reload, calls its source uncached rather than
   * replace the current builder's cache (losing its entries) or keep a removed one's.
   */
  cacheFor(builder: Builder): ContextCache<BuilderOutput> | undefined {
    if (!builder.cache) return undefined;
    const known = this.#caches.get(builder.name);
    if (known && known.fingerprint === builder.fingerprint) return known.cache;
    if (this.#cachedBuilders && this.#cachedBuilders.get(builder.name) !== builder.fingerprint) return undefined;
    const metrics = this.metrics;
    const cache = new ContextCache<BuilderOutput>(builder.cache, {
      now: this.#now,
      onResult: metrics ? (result) => metrics.cacheResult(builder.name, result) : undefined,
      onError: metrics ? (err) => metrics.sourceError(builder.name, sourceErrorReason(err)) : undefined,
    });
    this.#caches.set(builder.name, { fingerprint: builder.fingerprint, cache });
    return cache;
  }

  /**
   * The bandit of a recipe experiment learning from `metric`: created on first use, and
   * again when the metric changed (posteriors of another metric say nothing of this one).
   */
  bandit(experiment: string, metric: string): BetaBandit {
    let b = this.#bandits.get(experiment);
    if (b?.metric !== metric) this.#bandits.set(experiment, (b = { metric, bandit: new BetaBandit(this.#rng) }));
    return b.bandit;
  }

  /** Rewards a recipe (reward in [0, 1]) when the experiment's bandit learns from `metric`. */
  #reward(experiment: string, recipe: string, reward: number, metric: string): void {
    const b = this.#bandits.get(experiment);
    if (b?.metric === metric) b.bandit.observe(recipe, reward);
  }

  /** Remembers which recipe served `requestId`, for a bandit learning from `feedback.<name>`. */
  awaitFeedback(requestId: string, experiment: string, recipe: string, metric: string): void {
    this.#pending.set(requestId, { experiment, recipe, metric });
  }

  /**
   * Feedback on a request (POST /v1/feedback): rewards the recipe that served it when its
   * bandit learns from this metric (`feedback.<name>`, value clamped to [0, 1]), and adds
   * the observation to the recipe statistics. Returns whether it was used.
   */
  observeFeedback(requestId: string, metric: string, value: number): boolean {
    const p = this.#pending.get(requestId);
    if (!p || p.metric !== metric) return false;
    this.#pending.delete(requestId);
    this.#reward(p.experiment, p.recipe, value, metric);
    this.#observe?.({ experiment: p.experiment, variant: p.recipe, metric, value });
    return true;
  }

  /**
   * Accounting of a finished request (the server's `onRequestDone`): recipe statistics (the
   * RECIPE_METRICS), by the variants' rules (telemetry/record-values.ts `succeeded`:
   * `success` for every request, a client abort counting 0; `latency_ms` of successful
   * requests only), and the `success` reward of a bandit (ok = 1, error = 0; a client abort
   * says nothing about the recipe and is not counted).
   */
  finish(record: RequestRecord): void {
    const experiment = record.contextExperiment;
    const recipe = record.contextRecipe;
    if (!experiment || !recipe || record.contextRecipeAssignment === 'default') return;
    const ok = succeeded(record);
    const success = ok ? 1 : 0;
    if (record.outcome !== 'client_abort' && record.contextRecipeAssignment === 'bandit') this.#reward(experiment, recipe, success, 'success');
    if (this.#observe) {
      this.#observe({ experiment, variant: recipe, metric: 'success', value: success });
      if (ok) this.#observe({ experiment, variant: recipe, metric: 'latency_ms', value: record.latencyMs });
      if (record.usage) this.#observe({ experiment, variant: recipe, metric: 'input_tokens', value: record.usage.inputTokens });
      if (record.contextTokens !== undefined) this.#observe({ experiment, variant: recipe, metric: 'context_tokens', value: record.contextTokens });
    }
  }

  /**
   * Applies the injection policy to an output. A cached output is the same object request
   * after request, so its outcome is remembered by object; other outputs by text.
   */
  screen(output: BuilderOutput, scanner: InjectionScanner, block: boolean): ScanOutcome {
    const id = this.#scannerId(scanner);
    const known = this.#screened.get(output);
    if (known && known.scanner === id && known.block === block) return known.outcome;
    const outcome = screenOutput(output, (text) => this.scan(text, scanner), block);
    this.#screened.set(output, { scanner: id, block, outcome });
    return outcome;
  }

  /** Scans untrusted text, remembering results by text (cached passages are scanned once). */
  scan(text: string, scanner: InjectionScanner): InjectionScan {
    const key = `${this.#scannerId(scanner)}\u0000${text}`;
    let s = this.#scans.get(key);
    if (!s) this.#scans.set(key, (s = scanner.scan(text)));
    return s;
  }

  #scannerId(scanner: InjectionScanner): number {
    let id = this.#scannerIds.get(scanner);
    if (id === undefined) this.#scannerIds.set(scanner, (id = this.#nextScannerId++));
    return id;
  }

  /**
   * Start-up work for a (re)loaded config, so that no request pays for it: builds the
   * injection scanner context scanning will use. Also forgets what only older configs used,
   * which nothing else would ever drop: scanners of other settings (about 0.5 MB each, one
   * per threshold ever configured; the previous config's is kept for its requests still
   * running) and the caches of builders removed or changed (up to `max_bytes` each).
   */
  prepare(config: Pick<RuntimeConfig, 'context' | 'guard'>): void {
    const g = config.guard.injection;
    const wanted = config.context.plans.size > 0 && g.action !== 'off' && g.scan.includes('context');
    const key = wanted ? scannerKey(g.threshold, g.max_scan_chars) : undefined;
    for (const k of this.#scanners.keys()) if (k !== key && k !== this.#preparedScanner) this.#scanners.delete(k);
    this.#preparedScanner = key;
    for (const [name, { fingerprint }] of this.#caches) {
      if (config.context.builders.get(name)?.fingerprint !== fingerprint) this.#caches.delete(name);
    }
    this.#cachedBuilders = new Map([...config.context.builders.values()].filter((b) => b.cache).map((b) => [b.name, b.fingerprint]));
    if (wanted) this.scannerFor(g.threshold, g.max_scan_chars);
  }

  /**
   * A scanner when the pipeline passes none (one per setting; the server warms it at start
   * so no request pays for building it).
   */
  scannerFor(threshold: number, maxChars?: number): InjectionScanner {
    const key = scannerKey(threshold, maxChars);
    let s = this.#scanners.get(key);
    if (!s) this.#scanners.set(key, (s = createInjectionScanner({ threshold, maxChars })));
    return s;
  }

  /**
   * How full each cache of the current config's builders is (the cache gauges, read at
   * scrape time): 0 for one no request has used yet; a cache that only an older config's
   * builder uses is not listed. Before `prepare`, every cache made so far.
   */
  cacheSizes(): CacheSize[] {
    const builders = this.#cachedBuilders ?? new Map([...this.#caches].map(([name, c]) => [name, c.fingerprint]));
    return [...builders].map(([builder, fingerprint]) => {
      const known = this.#caches.get(builder);
      const cache = known?.fingerprint === fingerprint ? known.cache : undefined;
      return { builder, entries: cache?.size ?? 0, bytes: cache?.bytes ?? 0 };
    });
  }

  /** Bandit states by experiment (admin views, tests). */
  banditSnapshot(experiment: string): ReturnType<BetaBandit['snapshot']> | undefined {
    return this.#bandits.get(experiment)?.bandit.snapshot();
  }

  /** Closes the HTTP agent (idempotent). */
  async close(): Promise<void> {
    this.#closing ??= this.dispatcher.close();
    await this.#closing;
  }
}

/**
 * @example
 * const context = createContextRuntime({ registry: metrics.registry, observeExperiment: metrics.observeExperiment });
 * const app = createApp(holder, { ...deps, context });
 * // onRequestDone: context.finish(record)
 */
export function createContextRuntime(options: ContextRuntimeOptions = {}): ContextRuntime {
  return new ContextRuntime(options);
}

function scannerKey(threshold: number, maxChars: number | undefined): string {
  return `${threshold}/${maxChars ?? ''}`;
}

/** The reason label of a failed source call: the source's own (`http_5xx`, `timeout`, ...), else `error`. */
function sourceErrorReason(err: unknown): string {
  return err instanceof ContextSourceError ? err.reason : 'error';
}
