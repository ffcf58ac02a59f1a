/**
 * Which upstreams a request goes to, by its model (`routing.models`, else `routing.default`),
 * for chat and the pass-through routes alike.
 */
import { LRUCache } from 'lru-cache';
import type { RuntimeConfig } from '../config/compile.js';
import type { RequestRecord } from '../telemetry/types.js';
import type { Exchange } from './exchange.js';

/**
 * The route for `model`. The exchange started with the default route's `total_ms`; a model
 * route has its first upstream's, set here.
 *
 * @example
 * routeForModel(config, exchange, 'text-embedding-3-small') // ['vllm'] with routing.models {text-embedding-3-small: [vllm]}
 */
export function routeForModel(config: RuntimeConfig, exchange: Exchange, model: unknown): readonly string[] {
  const route = (typeof model === 'string' ? config.routing.models.get(model) : undefined) ?? config.routing.default;
  if (route !== config.routing.default) {
    const totalMs = config.upstreams.get(route[0])?.config.timeout.total_ms;
    if (totalMs !== undefined && totalMs !== config.totalTimeoutMs) exchange.setTotalTimeout(totalMs);
  }
  return route;
}

/** `/responses/{id}...` and `/chat/completions/{id}...`: calls on a stored object, by its id. */
const STORED_OBJECT_PATH = /^\/(?:responses|chat\/completions)\/([^/]+)/;
/** `/models/{model}`. */
const MODEL_PATH = /^\/models\/([^/]+)$/;

/**
 * The models of stored objects (Responses, stored chat completions) made through a model
 * route of their own, by object id: the calls that follow on one (retrieve, cancel, delete,
 * input items) name no model, and must reach the upstream that holds it. The model, not the
 * route, is kept, so a reload that moves the model moves its objects too. The last 10,000
 * are kept (most recently used); one per app.
 */
export class RoutedObjects {
  // maxSize with each entry counting 1, not `max`: no arrays preallocated for 10,000 entries.
  readonly #models = new LRUCache<string, string>({ maxSize: 10_000, sizeCalculation: () => 1 });

  /**
   * Remembers a request's answer id when its model has a route of its own: when the request
   * finishes, and for a stream as soon as its id is known (the calls on a background
   * response come while its create stream is open).
   */
  note(record: RequestRecord, config: RuntimeConfig): void {
    const { responseId: id, requestModel: model } = record;
    if (id === undefined || model === undefined || !config.routing.models.has(model)) return;
    this.#models.set(id, model);
  }

  /** The model a body-less call routes by: the one in `/models/{model}`, or the one that made the stored object it names. */
  modelFor(pathname: string): string | undefined {
    const model = MODEL_PATH.exec(pathname)?.[1];
    if (model !== undefined) return decoded(model);
    const id = STORED_OBJECT_PATH.exec(pathname)?.[1];
    return id === undefined ? undefined : this.#models.get(decoded(id) ?? id);
  }
}

function decoded(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
