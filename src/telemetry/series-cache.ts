/**
 * The label-bound series `createMetrics` caches (one cache per metrics instance): nested Maps, one
 * level per label (`level`), ending in a `Combo` (the series of one combination of the eight shared labels).
 */
import type { Counter } from 'prom-client';
import { CounterSeries, type HistogramSeries, type LabelSet } from './prom-series.js';

/** Cached label-bound series per metrics instance before the cache starts over (a safety net). */
export const MAX_CACHED = 50_000;

export type Node = Map<string, unknown>;
export type ObservationSeries = [n: CounterSeries, sum: CounterSeries, sumSquares: CounterSeries];
const TOKEN_TYPES = ['input', 'output', 'cache_read', 'reasoning'] as const;

/** The child Map of `key`, created when missing. */
export function level(m: Node, key: string): Node {
  let next = m.get(key) as Node | undefined;
  if (next === undefined) m.set(key, (next = new Map()));
  return next;
}

/** Series of one GenAI operation within a Combo. */
export interface OperationSeries {
  /** The gen_ai label set (gen_ai_operation_name ... variant), in the exposition's label order. */
  readonly labels: LabelSet;
  /** error_type -> stream -> series */
  readonly duration: Node;
  firstChunk?: HistogramSeries;
  inputTokens?: HistogramSeries;
  outputTokens?: HistogramSeries;
}

/** The series of one combination of the eight labels most families share. */
export class Combo {
  /** route -> status_class -> error_type -> [stream=false, stream=true] */
  readonly requests: Node = new Map();
  readonly injectionFlags = new Map<string, CounterSeries>();
  readonly excluded = new Map<string, CounterSeries>();
  attempts?: CounterSeries;
  cost?: CounterSeries;
  costUnknown?: CounterSeries;
  readonly #tokens: Array<CounterSeries | undefined> = [undefined, undefined, undefined, undefined];
  readonly #operations = new Map<string, OperationSeries>();

  constructor(
    readonly model: string,
    readonly upstream: string,
    readonly provider: string,
    readonly template: string,
    readonly templateVersion: string,
    readonly experiment: string,
    readonly variant: string,
    readonly estimated: string,
  ) {}

  operation(name: string): OperationSeries {
    let op = this.#operations.get(name);
    if (op === undefined) {
      op = {
        labels: {
          gen_ai_operation_name: name,
          gen_ai_provider_name: this.provider,
          gen_ai_request_model: this.model,
          upstream: this.upstream,
          template: this.template,
          template_version: this.templateVersion,
          experiment: this.experiment,
          variant: this.variant,
        },
        duration: new Map(),
      };
      this.#operations.set(name, op);
    }
    return op;
  }

  /** promptgate_tokens_total series of TOKEN_TYPES[type]. */
  tokens(metric: Counter<string>, type: 0 | 1 | 2 | 3): CounterSeries {
    return (this.#tokens[type] ??= new CounterSeries(metric, {
      gen_ai_provider_name: this.provider,
      gen_ai_request_model: this.model,
      upstream: this.upstream,
      template: this.template,
      template_version: this.templateVersion,
      experiment: this.experiment,
      variant: this.variant,
      estimated: this.estimated,
      gen_ai_token_type: TOKEN_TYPES[type],
    }));
  }
}
