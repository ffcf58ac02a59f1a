/**
 * The cache in front of one context builder: an LRU of `max_entries` (lru-cache) with
 * freshness windows measured from when an entry was stored:
 *
 * ```
 * age < ttl                              hit     served, no call
 * age < ttl + stale_while_revalidate     stale   served, one refresh in the background
 * otherwise                              miss    one call; every concurrent miss waits on it
 *   ...that call fails and age < ttl + stale_if_error  -> stale (the old value is served)
 * ```
 *
 * Single-flight: concurrent lookups of one key share one in-flight call (misses and
 * background refreshes alike). Failures are not cached. One per builder, kept across config
 * reloads by the `ContextRuntime`.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { CacheConfig } from './config-schema.js';
import type { CacheResult } from './types.js';

export interface CacheCounts {
  hit: number;
  miss: number;
  stale: number;
  /** Calls to the source (misses and refreshes), for single-flight checks. */
  calls: number;
  /** Background refreshes and misses that failed. */
  errors: number;
}

export interface CacheOptions {
  /** Clock in ms (tests); default `performance.now`. */
  now?: () => number;
  /** Called once per lookup with its result (metrics). */
  onResult?: (result: CacheResult) => void;
  /** Called when a call to the source fails, whether or not a stale entry is served (metrics). */
  onError?: (err: unknown) => void;
}

interface Entry<V> {
  value: V;
  storedAt: number;
}

/**
 * Keys longer than this are held as their SHA-256: a key carries the rendered request (a
 * POST body with the client's variables can make it megabytes), and `max_entries` counts
 * entries, not bytes.
 */
export const LONG_KEY_CHARS = 256;


export class ContextCache<V extends {}> {
  readonly settings: Readonly<CacheConfig>;
  readonly counts: CacheCounts = { hit: 0, miss: 0, stale: 0, calls: 0, errors: 0 };
  readonly #lru: LRUCache<string, Entry<V>>;
  readonly #inflight = new Map<string, Promise<V>>();
  readonly #now: () => number;
  readonly #onResult: ((result: CacheResult) => void) | undefined;
  readonly #onError: ((err: unknown) => void) | undefined;
  /** The last long key and its hash: one request looks a key up two or three times. */
  #hashedKey = '';
  #hash = '';

  constructor(settings: Readonly<CacheConfig>, options: CacheOptions = {}) {
    this.settings = settings;
    // `maxSize` with each entry counting 1, not `max`: `max` preallocates arrays of that many
    // slots when the cache is made (on a builder's first request), 600 MB for 50,000,000,
    // and throws beyond 2^32 (so every request of that builder failed).
    this.#lru = new LRUCache({ maxSize: settings.max_entries, sizeCalculation: () => 1 });
    this.#now = options.now ?? (() => performance.now());
    this.#onResult = options.onResult;
    this.#onError = options.onError;
  }

  /** Entries held (fresh or not). */
  get size(): number {
    return this.#lru.size;
  }

  /**
   * The value for `key`, calling `produce` only as the windows above require.
   * Rejects with `produce`'s error when there is nothing to serve.
   *
   * @example
   * const { value, result } = await cache.get(url, () => fetchProfile(url));
   */
  async get(fullKey: string, produce: () => Promise<V>): Promise<{ value: V; result: CacheResult }> {
    const key = this.#stored(fullKey);
    const { ttl_ms: ttl, stale_while_revalidate_ms: swr, stale_if_error_ms: sie } = this.settings;
    const entry = this.#lru.get(key);
    const age = entry ? this.#now() - entry.storedAt : Infinity;
    if (entry && age < ttl) return this.#done(entry.value, 'hit');
    if (entry && age < ttl + swr) {
      // Refresh in the background; its failure leaves the entry as it is.
      this.#call(key, produce).catch(() => undefined);
      return this.#done(entry.value, 'stale');
    }
    if (entry && age >= ttl + Math.max(swr, sie)) this.#lru.delete(key);
    try {
      return this.#done(await this.#call(key, produce), 'miss');
    } catch (err) {
      if (entry && age < ttl + sie) return this.#done(entry.value, 'stale');
      this.#count('miss');
      throw err;
    }
  }

  /**
   * The value when `key` is fresh (counted as a hit), else undefined and nothing counted:
   * the synchronous fast path before `get`.
   */
  fresh(key: string): V | undefined {
    const entry = this.#lru.get(this.#stored(key));
    if (!entry || this.#now() - entry.storedAt >= this.settings.ttl_ms) return undefined;
    this.#count('hit');
    return entry.value;
  }

  /**
   * The value a failed call would let `get` serve now (within `stale_if_error` of its TTL),
   * else undefined; nothing counted. For a request whose deadline came before the source
   * answered.
   */
  staleIfError(key: string): V | undefined {
    const entry = this.#lru.peek(this.#stored(key));
    if (!entry || this.#now() - entry.storedAt >= this.settings.ttl_ms + this.settings.stale_if_error_ms) return undefined;
    return entry.value;
  }

  /** Drops every entry (in-flight calls still complete and store their result). */
  clear(): void {
    this.#lru.clear();
  }

  #stored(key: string): string {
    if (key.length <= LONG_KEY_CHARS) return key;
    if (key !== this.#hashedKey) {
      this.#hashedKey = key;
      this.#hash = `\u0000sha256:${createHash('sha256').update(key).digest('base64')}`;
    }
    return this.#hash;
  }

  #done(value: V, result: CacheResult): { value: V; result: CacheResult } {
    this.#count(result);
    return { value, result };
  }

  #count(result: CacheResult): void {
    this.counts[result]++;
    this.#onResult?.(result);
  }

  /** One call per key at a time; the result is stored when it succeeds. */
  #call(key: string, produce: () => Promise<V>): Promise<V> {
    const running = this.#inflight.get(key);
    if (running) return running;
    this.counts.calls++;
    const call = (async () => {
      try {
        const value = await produce();
        this.#lru.set(key, { value, storedAt: this.#now() });
        return value;
      } catch (err) {
        this.counts.errors++;
        this.#onError?.(err);
        throw err;
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, call);
    return call;
  }
}
