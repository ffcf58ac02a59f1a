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
  /** Breakers outlive reloads: an upstream that was failing keeps its state. */
  readonly #breakers = new Map<string, CircuitBreaker>();
  readonly #retiring = new Set<Upstream>();

  constructor(config: RuntimeConfig) {
    this.#current = this.#build(config, new Map(), 1);
  }

  get current(): Runtime {
    return this.#current;
  }

  /**
   * Swaps in a new config. Upstream clients whose settings did not change are reused;
   * replaced ones are closed after `graceMs`, and not before the old config's longest
   * `total_ms`: a request in flight may still start a retry or fallback on them until its
   * deadline (a closed pool would refuse it). Closing waits for requests still running.
   */
  apply(config: RuntimeConfig, graceMs = 30_000): Runtime {
    const previous = this.#current;
    const next = this.#build(config, previous.upstreams, previous.generation + 1);
    this.#current = next;
    // Capped at setTimeout's limit (a larger delay would fire at once).
    const retireMs = Math.min(MAX_TIMER_MS, Math.max(graceMs, ...[...previous.config.upstreams.values()].map((u) => u.config.timeout.total_ms)));
    for (const [name, up] of previous.upstreams) {
      if (next.upstreams.get(name) === up) continue;
      this.#retiring.add(up);
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
    for (const [name, spec] of config.upstreams) {
      const old = reusable.get(name);
      upstreams.set(name, old && old.spec.fingerprint === spec.fingerprint ? old : createUpstream(spec));
      const breakerCfg = spec.config.breaker;
      const breaker = this.#breakers.get(name);
      if (breaker) breaker.configure(breakerCfg.failures, breakerCfg.cooldown_ms);
      else this.#breakers.set(name, new CircuitBreaker(breakerCfg.failures, breakerCfg.cooldown_ms));
    }
    return Object.freeze({ config, upstreams, breakers: this.#breakers, generation });
  }
}
