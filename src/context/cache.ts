/**
 * The cache in front of one context builder: an LRU (lru-cache) of at most `max_entries`
 * entries and `max_bytes` of estimated memory (`estimateBytes`, reckoned once when an entry is
 * stored), with freshness windows measured from when an entry was stored:
 *
 * ```
 * age < ttl                              hit     served, no call
 * age < ttl + stale_while_revalidate     stale   served, one refresh in the background
 * otherwise                              miss    one call; every concurrent miss waits on it
 *   ...that call fails and age < ttl + stale_if_error  -> stale (the old value is served)
 * ```
 *
 * Single-flight: concurrent lookups of one key share one in-flight call (misses and
 * background refreshes alike). Failures are not cached, nor is a value larger than
 * `max_bytes` on its own (its request still gets it). One per builder, kept across config
 * reloads by the `ContextRuntime`.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { DEFAULT_CACHE_MAX_BYTES, type CacheConfig } from './config-schema.js';
import type { CacheResult } from './types.js';
import { ownCopy } from '../own-copy.js';

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

/** The settings a cache reads; `max_bytes` defaults as in the config. */
export type CacheSettings = Omit<CacheConfig, 'max_bytes'> & { max_bytes?: number };

/** One request's lookup, counted once (`get` and `abandon`). */
export interface CacheLookup {
  settled?: boolean;
}

interface Entry<V> {
  value: V;
  storedAt: number;
}

/**
 * Keys longer than this are held as their SHA-256: a key carries the rendered request (a
 * POST body with the client's variables can make it megabytes), and one lookup would hash
 * or compare all of it.
 */
export const LONG_KEY_CHARS = 256;

/** What an entry costs besides its key and value: the entry object, its LRU slots, its timestamp. */
const ENTRY_BYTES = 96;

/**
 * Estimated bytes a JSON-like value holds in memory: strings at 2 bytes a character (UTF-16;
 * V8 keeps ASCII in one, so text counts about twice), plus a few words per string, number,
 * object property and array element. Linear in the value's size, so a cache runs it once
 * per stored entry, never per lookup. Iterative: an answer may nest as deep as `JSON.parse`
 * goes.
 *
 * @example
 * estimateBytes({ name: 'Ada' }); // 24 + (8 + 2 * 4) + (16 + 2 * 3) = 62
 */
export function estimateBytes(value: unknown): number {
  let bytes = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v === 'string') bytes += 16 + 2 * v.length;
    else if (Array.isArray(v)) {
      bytes += 16 + 8 * v.length;
      for (const item of v) pending.push(item);
    } else if (v !== null && typeof v === 'object') {
      bytes += 24;
      for (const [k, item] of Object.entries(v)) {
        bytes += 8 + 2 * k.length;
        pending.push(item);
      }
    } else bytes += 8;
  }
  return bytes;
}

export class ContextCache<V extends {}> {
  readonly settings: Readonly<CacheSettings>;
  readonly counts: CacheCounts = { hit: 0, miss: 0, stale: 0, calls: 0, errors: 0 };
  readonly #lru: LRUCache<string, Entry<V>>;
  readonly #inflight = new Map<string, Promise<V>>();
  readonly #now: () => number;
  readonly #onResult: ((result: CacheResult) => void) | undefined;
  readonly #onError: ((err: unknown) => void) | undefined;
  /** The last long key and its hash: one request looks a key up two or three times. */
  #hashedKey = '';
  #hash = '';

  constructor(settings: Readonly<CacheSettings>, options: CacheOptions = {}) {
    this.settings = settings;
    // Bounded by bytes in lru-cache (an entry over `max_bytes` is not stored) and by count in
    // `#call`. Not `max` for the count: `max` preallocates arrays of that many slots when the
    // cache is made (on a builder's first request), 600 MB for 50,000,000, and throws beyond
    // 2^32 (so every request of that builder failed). Sizes are reckoned on `set` only.
    this.#lru = new LRUCache({
      maxSize: settings.max_bytes ?? DEFAULT_CACHE_MAX_BYTES,
      sizeCalculation: (entry, key) => ENTRY_BYTES + 2 * key.length + estimateBytes(entry.value),
    });
    this.#now = options.now ?? (() => performance.now());
    this.#onResult = options.onResult;
    this.#onError = options.onError;
  }

  /** Entries held (fresh or not). */
  get size(): number {
    return this.#lru.size;
  }

  /** Estimated bytes the entries hold (at most `max_bytes`). */
  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  /**
   * The value for `key`, calling `produce` only as the windows above require.
   * Rejects with `produce`'s error when there is nothing to serve. The lookup's result is
   * counted once: when it settles, unless `abandon` settled it first.
   *
   * @example
   * const { value, result } = await cache.get(url, () => fetchProfile(url));
   */
  async get(fullKey: string, produce: () => Promise<V>, lookup: CacheLookup = {}): Promise<{ value: V; result: CacheResult }> {
    const key = this.#stored(fullKey);
    const { ttl_ms: ttl, stale_while_revalidate_ms: swr, stale_if_error_ms: sie } = this.settings;
    const entry = this.#lru.get(key);
    const age = entry ? this.#now() - entry.storedAt : Infinity;
    if (entry && age < ttl) return this.#done(lookup, entry.value, 'hit');
    if (entry && age < ttl + swr) {
      // Refresh in the background; its failure leaves the entry as it is.
      this.#call(key, produce).catch(() => undefined);
      return this.#done(lookup, entry.value, 'stale');
    }
    if (entry && age >= ttl + Math.max(swr, sie)) this.#lru.delete(key);
    try {
      return this.#done(lookup, await this.#call(key, produce), 'miss');
    } catch (err) {
      if (entry && age < ttl + sie) return this.#done(lookup, entry.value, 'stale');
      this.#settle(lookup, 'miss');
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
   * For a request that stops waiting on its `get` (the deadline came, or its own timeout on
   * a call another request started): the value a failed call would let `get` serve now
   * (within `stale_if_error` of its TTL), counted as stale, else undefined, counted as a
   * miss. The call goes on and may still fill the cache; its `get` counts nothing more.
   */
  abandon(key: string, lookup: CacheLookup): V | undefined {
    const entry = this.#lru.peek(this.#stored(key));
    const usable = entry !== undefined && this.#now() - entry.storedAt < this.settings.ttl_ms + this.settings.stale_if_error_ms;
    this.#settle(lookup, usable ? 'stale' : 'miss');
    return usable ? entry.value : undefined;
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

  #done(lookup: CacheLookup, value: V, result: CacheResult): { value: V; result: CacheResult } {
    this.#settle(lookup, result);
    return { value, result };
  }

  #settle(lookup: CacheLookup, result: CacheResult): void {
    if (lookup.settled) return;
    lookup.settled = true;
    this.#count(result);
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
        // A copy: a key cut from a request (a trimmed message) would keep the whole request.
        this.#lru.set(ownCopy(key), { value, storedAt: this.#now() });
        if (this.#lru.size > this.settings.max_entries) this.#lru.pop();
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
