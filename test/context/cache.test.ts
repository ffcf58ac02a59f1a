/** The builder cache: single-flight, TTL, stale-while-revalidate, stale-if-error, LRU size. */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { ContextCache } from '../../src/context/cache.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { json, makeContext, sleep, startJsonService, type JsonService } from './helpers.js';

function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const settings = { ttl_ms: 1000, max_entries: 100, stale_while_revalidate_ms: 0, stale_if_error_ms: 0 };

describe('ContextCache', () => {
  it('makes exactly one call for 50 concurrent misses of one key, and all get its value', async () => {
    const cache = new ContextCache<{ n: number }>(settings);
    let calls = 0;
    const produce = async () => {
      calls++;
      await sleep(30);
      return { n: calls };
    };
    const results = await Promise.all(Array.from({ length: 50 }, () => cache.get('k', produce)));
    expect(calls).toBe(1);
    expect(results.every((r) => r.value.n === 1 && r.result === 'miss')).toBe(true);
    expect(cache.counts).toMatchObject({ miss: 50, hit: 0, calls: 1 });
    expect((await cache.get('k', produce)).result).toBe('hit');
  });

  it('calls again after the TTL', async () => {
    const c = clock();
    const cache = new ContextCache<{ v: number }>(settings, { now: c.now });
    let v = 0;
    const produce = async () => ({ v: ++v });
    expect(await cache.get('k', produce)).toEqual({ value: { v: 1 }, result: 'miss' });
    c.advance(999);
    expect(await cache.get('k', produce)).toEqual({ value: { v: 1 }, result: 'hit' });
    c.advance(1);
    expect(await cache.get('k', produce)).toEqual({ value: { v: 2 }, result: 'miss' });
  });

  it('serves stale within stale_while_revalidate and refreshes once in the background', async () => {
    const c = clock();
    const cache = new ContextCache<{ v: number }>({ ...settings, stale_while_revalidate_ms: 500 }, { now: c.now });
    let v = 0;
    const produce = async () => {
      await sleep(10);
      return { v: ++v };
    };
    await cache.get('k', produce);
    c.advance(1200);
    const stale = await Promise.all([cache.get('k', produce), cache.get('k', produce), cache.get('k', produce)]);
    expect(stale.map((s) => [s.value.v, s.result])).toEqual([
      [1, 'stale'],
      [1, 'stale'],
      [1, 'stale'],
    ]);
    await sleep(30);
    expect(v).toBe(2); // one refresh for three stale reads
    expect(await cache.get('k', produce)).toEqual({ value: { v: 2 }, result: 'hit' });
    c.advance(1000 + 500);
    expect((await cache.get('k', produce)).result).toBe('miss'); // beyond the window: waits for the source
  });

  it('serves stale when the source fails within stale_if_error, and rejects after it', async () => {
    const c = clock();
    const cache = new ContextCache<{ v: number }>({ ...settings, stale_if_error_ms: 5000 }, { now: c.now });
    await cache.get('k', async () => ({ v: 1 }));
    c.advance(3000);
    const down = async (): Promise<{ v: number }> => {
      throw new Error('down');
    };
    expect(await cache.get('k', down)).toEqual({ value: { v: 1 }, result: 'stale' });
    c.advance(3000); // 6000 > ttl + stale_if_error
    await expect(cache.get('k', down)).rejects.toThrow('down');
    expect(cache.counts.errors).toBe(2);
  });

  it('does not cache failures and keeps at most max_entries', async () => {
    const cache = new ContextCache<{ k: string }>({ ...settings, max_entries: 2 });
    await expect(cache.get('x', async () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    expect(cache.size).toBe(0);
    for (const k of ['a', 'b', 'c']) await cache.get(k, async () => ({ k }));
    expect(cache.size).toBe(2);
    expect((await cache.get('a', async () => ({ k: 'a2' }))).result).toBe('miss'); // least recently used went first
  });

  // A request that stopped waiting at the deadline was served the stale entry but counted
  // as a miss when the call it left behind answered (README "Cache": stale).
  it('counts a lookup once: abandoned for a stale entry it is stale, and the call it leaves behind counts nothing', async () => {
    let t = 0;
    const cache = new ContextCache<{ k: string }>({ ...settings, ttl_ms: 100, stale_while_revalidate_ms: 0, stale_if_error_ms: 1000 }, { now: () => t });
    await cache.get('a', async () => ({ k: 'old' }));
    t = 500;
    let answer!: (v: { k: string }) => void;
    const lookup = {};
    const pending = cache.get('a', () => new Promise((r) => (answer = r)), lookup);
    expect(cache.abandon('a', lookup)).toEqual({ k: 'old' });
    answer({ k: 'new' });
    await pending;
    expect(cache.counts).toMatchObject({ miss: 1, stale: 1, hit: 0 });
    expect(cache.fresh('a')).toEqual({ k: 'new' });
    t = 5000; // past stale_if_error: nothing stands in, and the abandoned lookup is a miss
    const late = {};
    void cache.get('a', () => new Promise(() => undefined), late);
    expect(cache.abandon('a', late)).toBeUndefined();
    expect(cache.counts).toMatchObject({ miss: 2, stale: 1, hit: 1 });
  });

  // Keys were held whole, and `max_entries` counts entries: a POST builder whose body
  // carries the client's variables made megabyte keys, 1,000 of them a gigabyte. Long keys
  // are now held as their SHA-256; this checks the lookups stay exact.
  it('holds long keys by their hash: same key hits, keys differing only at the end do not mix', async () => {
    const cache = new ContextCache<{ k: string }>(settings);
    const long = 'POST http://svc/profile {"notes":"' + 'x'.repeat(2 * 1024 * 1024);
    await cache.get(long + 'A', async () => ({ k: 'A' }));
    expect(cache.fresh(long + 'A')).toEqual({ k: 'A' });
    expect(cache.fresh(long + 'B')).toBeUndefined();
    expect(await cache.get(long + 'B', async () => ({ k: 'B' }))).toEqual({ value: { k: 'B' }, result: 'miss' });
    expect(cache.abandon(long + 'A', {})).toEqual({ k: 'A' });
    expect(cache.size).toBe(2);
  });
});

describe('cache in front of an http builder', () => {
  let svc: JsonService;
  let rt: ContextRuntime;
  beforeAll(async () => {
    svc = await startJsonService();
    svc.route(/^\/customers\//, json({ tier: 'gold', name: 'Ada' }, { delayMs: 40 }));
  });
  afterAll(() => svc.close());
  afterEach(async () => {
    await rt?.close();
    svc.requests.length = 0;
  });

  const setup = (cache: Record<string, number>) =>
    makeContext(
      { deadline_ms: 1000, builders: [{ name: 'customer', kind: 'http', url: `${svc.url}/customers/{{user_id}}`, cache }] },
      { use: ['customer'] },
    );

  it('50 concurrent requests for one user make one upstream fetch (single-flight)', async () => {
    rt = new ContextRuntime();
    const { plan } = setup({ ttl_ms: 60_000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, () => buildContext(rt, plan, { messages: [{ role: 'user', content: 'hi' }], userId: 'u1', variables: {} })),
    );
    expect(svc.count('/customers/u1')).toBe(1);
    expect(results.every((r) => (r.variables.customer as { tier: string }).tier === 'gold')).toBe(true);
    expect(results.map((r) => r.report.builders[0].cache)).toEqual(Array(50).fill('miss'));
    const again = await buildContext(rt, plan, { messages: [], userId: 'u1', variables: {} });
    expect(again.report.builders[0]).toMatchObject({ status: 'cached', cache: 'hit' });
    expect(svc.count('/customers/u1')).toBe(1);
  });

  it('serves the stale profile when the service fails, within stale_if_error', async () => {
    let t = 0;
    rt = new ContextRuntime({ now: () => t });
    const { plan } = setup({ ttl_ms: 1000, stale_if_error_ms: 60_000 });
    const input = { messages: [], userId: 'u-stale', variables: {} };
    await buildContext(rt, plan, input);
    svc.route('/customers/u-stale', json({ error: 'boom' }, { status: 503 }));
    t = 5000;
    const r = await buildContext(rt, plan, input);
    expect(r.report.builders[0]).toMatchObject({ status: 'stale', cache: 'stale' });
    expect(r.variables.customer).toEqual({ tier: 'gold', name: 'Ada' });
    expect(svc.count('/customers/u-stale')).toBe(2);
  });

  it('never serves one user the answer fetched for another through a user-dependent header', async () => {
    svc.route('/me', async (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name: req.headers['x-customer-id'] }));
    });
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { builders: [{ name: 'me', kind: 'http', url: `${svc.url}/me`, headers: { authorization: 'Bearer fixed', 'x-customer-id': '{{user_id}}' }, cache: { ttl_ms: 60_000 } }] },
      { use: ['me'] },
    );
    const me = async (userId: string) => (await buildContext(rt, plan, { messages: [], userId, variables: {} })).variables.me;
    expect(await me('alice')).toEqual({ name: 'alice' });
    expect(await me('bob')).toEqual({ name: 'bob' });
    expect(await me('alice')).toEqual({ name: 'alice' });
    expect(svc.count('/me')).toBe(2);
  });

  it('keeps a cache across reloads while the builder config is unchanged, and starts over when it changes', async () => {
    rt = new ContextRuntime();
    const a = setup({ ttl_ms: 60_000 });
    await buildContext(rt, a.plan, { messages: [], userId: 'u-reload', variables: {} });
    const b = setup({ ttl_ms: 60_000 }); // a reload with the same builder config
    expect((await buildContext(rt, b.plan, { messages: [], userId: 'u-reload', variables: {} })).report.builders[0].cache).toBe('hit');
    const c = setup({ ttl_ms: 30_000 });
    expect((await buildContext(rt, c.plan, { messages: [], userId: 'u-reload', variables: {} })).report.builders[0].cache).toBe('miss');
  });
});
