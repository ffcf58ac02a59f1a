/**
 * The live state behind the frozen config: upstream clients and circuit breakers. A request
 * takes `holder.current` once at its start and keeps it, so a reload never changes a
 * request mid-flight; new requests see the new runtime atomically.
 */
import type { RuntimeConfig } from './config/compile.js';
import { MAX_TIMER_MS } from './config/ms.js';
import { CircuitBreaker } from './proxy/breaker.js';
import { createUpstream, type Upstream } from './proxy/upstream.js';


export interface Runtime {
  readonly config: RuntimeConfig;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly breakers: ReadonlyMap<string, CircuitBreaker>;
  /** Increments on every successful (re)load. */
  readonly generation: number;
}

export class RuntimeHolder {
  #current: Runtime;
  /**
   * Breakers outlive reloads, by upstream name, while the upstream's address stays the same:
   * an upstream that was failing keeps its state. A new address (an operator fixing a wrong
   * `base_url`) is another server and starts closed; a removed upstream's breaker is dropped.
   */
  #breakers = new Map<string, { breaker: CircuitBreaker; address: string }>();
  readonly #retiring = new Set<Upstream>();
  /**
   * Per upstream client, until when (`Date.now()`) a request of a config that is no longer
   * current, and that had this client, may still start a call on it: its deadline.
   */
  readonly #inUseUntil = new WeakMap<Upstream, number>();

  constructor(config: RuntimeConfig) {
    this.#current = this.#build(config, new Map(), 1);
  }

  get current(): Runtime {
    return this.#current;
  }

  /**
   * Swaps in a new config. Upstream clients whose settings did not change are reused;
   * replaced ones are closed after `graceMs`, and not before the deadline of every request
   * that may use them (the longest `total_ms` of each config that had them, from when it
   * stopped being current): a request in flight may still start a retry or fallback on them
   * until its deadline (a closed pool would refuse it). Closing waits for requests still running.
   */
  apply(config: RuntimeConfig, graceMs = 30_000): Runtime {
    const previous = this.#current;
    const next = this.#build(config, previous.upstreams, previous.generation + 1);
    this.#current = next;
    const now = Date.now();
    const longest = Math.max(0, ...[...previous.config.upstreams.values()].map((u) => u.config.timeout.total_ms));
    for (const [name, up] of previous.upstreams) {
      // A client kept through earlier reloads also serves the requests of the configs before.
      const until = Math.max(this.#inUseUntil.get(up) ?? 0, now + longest);
      if (next.upstreams.get(name) === up) {
        this.#inUseUntil.set(up, until);
        continue;
      }
      this.#retiring.add(up);
      // Capped at setTimeout's limit (a larger delay would fire at once).
      const retireMs = Math.min(MAX_TIMER_MS, Math.max(graceMs, until - now));
      setTimeout(() => {
        this.#retiring.delete(up);
        void up.close().catch(() => undefined);
      }, retireMs).unref();
    }
    return next;
  }

  async close(): Promise<void> {
    const all = [...this.#current.upstreams.values(), ...this.#retiring];
    this.#retiring.clear();
    await Promise.allSettled(all.map((u) => u.close()));
  }

  #build(config: RuntimeConfig, reusable: ReadonlyMap<string, Upstream>, generation: number): Runtime {
    const upstreams = new Map<string, Upstream>();
    const kept = new Map<string, { breaker: CircuitBreaker; address: string }>();
    for (const [name, spec] of config.upstreams) {
      const old = reusable.get(name);
      upstreams.set(name, old && old.spec.fingerprint === spec.fingerprint ? old : createUpstream(spec));
      const { failures, cooldown_ms: cooldownMs } = spec.config.breaker;
      const address = spec.kind === 'simulate' ? 'simulate:' : `${spec.origin}${spec.basePath}`;
      const known = this.#breakers.get(name);
      if (known && known.address === address) {
        known.breaker.configure(failures, cooldownMs);
        kept.set(name, known);
      } else {
        kept.set(name, { breaker: new CircuitBreaker(failures, cooldownMs), address });
      }
    }
    this.#breakers = kept;
    // Each runtime has its own map: requests of the old config keep the breakers they started with.
    const breakers = new Map([...kept].map(([name, { breaker }]) => [name, breaker]));
    return Object.freeze({ config, upstreams, breakers, generation });
  }
}
