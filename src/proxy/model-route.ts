/**
 * Which upstreams a request goes to, by its model (`routing.models`, else `routing.default`),
 * for chat and the pass-through routes alike.
 */
import type { RuntimeConfig } from '../config/compile.js';
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
