/**
 * Context caches bounded by memory as well as by count (`cache.max_bytes`): was
 * `max_entries` only, so 1000 http answers of up to 1 MiB each could hold a gigabyte.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile } from '../src/config/load.js';
import { ContextCache, estimateBytes } from '../src/context/cache.js';
import { DEFAULT_CACHE_MAX_BYTES } from '../src/context/config-schema.js';
import { json, startJsonService, type JsonService } from './context/helpers.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

const settings = { ttl_ms: 60_000, max_entries: 1000, stale_while_revalidate_ms: 0, stale_if_error_ms: 0 };

async function fill<V extends {}>(cache: ContextCache<V>, key: string, value: V): Promise<void> {
  await cache.get(key, async () => value);
}

/** What one entry of `value` under `key` counts (the cache's own reckoning). */
async function entryBytes(key: string, value: object): Promise<number> {
  const probe = new ContextCache<object>({ ...settings, max_bytes: 1 << 30 });
  await fill(probe, key, value);
  return probe.bytes;
}

describe('ContextCache max_bytes', () => {
  it('evicts the least recently used entries once the estimated bytes exceed max_bytes', async () => {
    const value = (c: string) => ({ text: c.repeat(10_000) });
    const size = await entryBytes('a', value('a'));
    expect(size).toBeGreaterThan(20_000); // 2 bytes a character
    expect(size).toBeLessThan(20_400);
    const cache = new ContextCache<{ text: string }>({ ...settings, max_bytes: 3 * size + 10 });
    for (const k of ['a', 'b', 'c']) await fill(cache, k, value(k));
    expect([cache.size, cache.bytes]).toEqual([3, 3 * size]);
    expect((await cache.get('a', async () => value('A'))).result).toBe('hit'); // a is now the most recent
    await fill(cache, 'd', value('d'));
    expect(cache.size).toBe(3);
    expect(cache.bytes).toBeLessThanOrEqual(3 * size + 10);
    let calls = 0;
    const again = async () => (calls++, value('x'));
    expect(cache.fresh('b')).toBeUndefined(); // the least recently used went
    expect(cache.fresh('a')?.text[0]).toBe('a');
    expect(cache.fresh('c')?.text[0]).toBe('c');
    expect(cache.fresh('d')?.text[0]).toBe('d');
    expect((await cache.get('b', again)).result).toBe('miss');
    expect(calls).toBe(1);
  });

  it('does not store an entry larger than max_bytes, but its request gets the value and the others stay', async () => {
    const cache = new ContextCache<{ text: string }>({ ...settings, max_bytes: 50_000 });
    await fill(cache, 'small', { text: 'ok' });
    let calls = 0;
    const big = async () => (calls++, { text: 'x'.repeat(30_000) }); // ~60 kB estimated
    const first = await cache.get('big', big);
    expect(first.result).toBe('miss');
    expect(first.value.text.length).toBe(30_000);
    expect(cache.size).toBe(1);
    expect(cache.fresh('small')).toEqual({ text: 'ok' });
    expect((await cache.get('big', big)).result).toBe('miss'); // not cached: the source is called again
    expect(calls).toBe(2);
    expect(cache.bytes).toBeLessThan(1000);
  });

  it('keeps both bounds: max_entries for small entries, max_bytes for large ones', async () => {
    const cache = new ContextCache<{ text: string }>({ ...settings, max_entries: 4, max_bytes: 100_000 });
    for (let i = 0; i < 10; i++) await fill(cache, `s${i}`, { text: `small ${i}` });
    expect(cache.size).toBe(4); // count binds
    expect(['s6', 's7', 's8', 's9'].every((k) => cache.fresh(k) !== undefined)).toBe(true);
    for (let i = 0; i < 10; i++) await fill(cache, `l${i}`, { text: String(i).repeat(20_000) }); // ~40 kB each
    expect(cache.size).toBe(2); // bytes bind
    expect(cache.bytes).toBeLessThanOrEqual(100_000);
    expect(cache.fresh('l9')).toBeDefined();
    expect(cache.fresh('l8')).toBeDefined();
    expect(cache.fresh('s9')).toBeUndefined();
  });

  it('counts the key, and a long key as its hash', async () => {
    const cache = new ContextCache<{ n: number }>({ ...settings, max_bytes: 1 << 20 });
    await fill(cache, 'k'.repeat(200), { n: 1 });
    const shortKey = cache.bytes;
    const other = new ContextCache<{ n: number }>({ ...settings, max_bytes: 1 << 20 });
    await fill(other, 'k', { n: 1 });
    expect(shortKey - other.bytes).toBe(2 * 199);
    const hashed = new ContextCache<{ n: number }>({ ...settings, max_bytes: 1 << 20 });
    await fill(hashed, 'k'.repeat(1_000_000), { n: 1 });
    expect(hashed.bytes).toBeLessThan(shortKey); // held (and counted) as its SHA-256
  });

  it('reckons the size once when storing: a hit or fresh lookup computes nothing', async () => {
    let reads = 0;
    const value = {};
    Object.defineProperty(value, 'text', { enumerable: true, get: () => (reads++, 'some text') });
    const cache = new ContextCache<object>({ ...settings, max_bytes: 1 << 20 });
    await fill(cache, 'k', value);
    expect(reads).toBe(1);
    for (let i = 0; i < 100; i++) {
      expect((await cache.get('k', async () => ({}))).result).toBe('hit');
      expect(cache.fresh('k')).toBe(value);
    }
    expect(reads).toBe(1);
  });

  it('estimates JSON-like values at 2 bytes a character plus a few words per node, without recursion', () => {
    expect(estimateBytes({ name: 'Ada' })).toBe(24 + (8 + 2 * 4) + (16 + 2 * 3));
    expect(estimateBytes(['ab', 1, null, true])).toBe(16 + 8 * 4 + (16 + 4) + 8 + 8 + 8);
    let deep: unknown = 'leaf';
    for (let i = 0; i < 200_000; i++) deep = [deep]; // deeper than a recursive walk could go
    expect(estimateBytes(deep)).toBe(200_000 * 24 + 16 + 8);
  });

  it('defaults max_bytes to 64 MiB when the settings leave it out', async () => {
    expect(DEFAULT_CACHE_MAX_BYTES).toBe(64 * 1024 * 1024);
    const cache = new ContextCache<{ text: string }>(settings);
    await fill(cache, 'big', { text: 'x'.repeat(20 * 1024 * 1024) }); // ~40 MiB: fits
    expect(cache.size).toBe(1);
    await fill(cache, 'bigger', { text: 'y'.repeat(20 * 1024 * 1024) }); // together over 64 MiB
    expect(cache.size).toBe(1);
    expect(cache.fresh('bigger')).toBeDefined();
  });
});

describe('cache.max_bytes in the config', () => {
  const BASE = `upstreams: [{name: sim, simulate: {latency_ms: 0}}]
routing: {default: [sim]}
templates: {dir: templates}
`;
  function load(cache: string) {
    const dir = mkdtempSync(path.join(tmpdir(), 'cache-bytes-'));
    mkdirSync(path.join(dir, 'templates'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, `${BASE}context: {builders: [{name: c, kind: http, url: "http://127.0.0.1:9/{{user_id}}", cache: ${cache}}]}\n`);
    return loadConfigFile(file, { env: {} });
  }
  function issues(cache: string): string[] {
    try {
      load(cache);
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.issues.map((i) => `${i.path}: ${i.message}`);
    }
  }

  it('rejects values that are not a whole number of at least 1024 bytes, with the YAML path', () => {
    const at = 'gateway.config.yaml: context.builders[0].cache.max_bytes (line 4)';
    expect(issues('{ttl_ms: 1000, max_bytes: 0}')).toEqual([`${at}: expected at least 1024 bytes`]);
    expect(issues('{ttl_ms: 1000, max_bytes: -5}')).toEqual([`${at}: expected at least 1024 bytes`]);
    expect(issues('{ttl_ms: 1000, max_bytes: 100}')).toEqual([`${at}: expected at least 1024 bytes`]);
    expect(issues('{ttl_ms: 1000, max_bytes: 1.5e6}')).toEqual([]);
    expect(issues('{ttl_ms: 1000, max_bytes: 1048576.5}')).toEqual([`${at}: expected a whole number of bytes`]);
    expect(issues('{ttl_ms: 1000, max_bytes: 64MiB}')[0]).toMatch(/^gateway\.config\.yaml: context\.builders\[0\]\.cache\.max_bytes \(line 4\): .*expected number/);
  });

  it('defaults to 64 MiB and keeps a value given', () => {
    const cacheOf = (cache: string) => load(cache).context.builders.get('c')!.cache!;
    expect(cacheOf('{ttl_ms: 1000}')).toMatchObject({ max_entries: 1000, max_bytes: 64 * 1024 * 1024 });
    expect(cacheOf('{ttl_ms: 1000, max_bytes: 1048576}')).toMatchObject({ max_bytes: 1048576 });
  });
});

describe('through a real gateway', () => {
  let upstream: MockUpstream;
  let customers: JsonService;
  let gw: TestGateway;
  const NOTES = 8_000; // characters of each customer's answer: ~16 kB estimated
  const BUDGET = 64 * 1024;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    customers = await startJsonService();
    customers.route(/^\/customers\/u\d+$/, async (req, res) => {
      const id = req.url.split('/').at(-1)!;
      await json({ name: `Name of ${id}`, notes: `${id} `.repeat(NOTES / (id.length + 1)) })(req, res);
    });
    customers.route('/customers/huge', json({ name: 'Huge Customer', notes: 'word '.repeat(10_000) })); // ~100 kB estimated
    const templates = mkdtempSync(path.join(tmpdir(), 'cache-bytes-tpl-'));
    writeFileSync(
      path.join(templates, 'profile.yaml'),
      `id: profile
versions:
  - version: "1.0.0"
    context: {use: [customer], budget_tokens: 100000}
    messages: [{role: system, content: "Customer: {{#customer}}{{name}}{{/customer}}"}]
`,
    );
    gw = await startTestGateway(
      mockConfig(
        upstream.url,
        `bindings: [{model: profile-bot, template: profile}]
context:
  deadline_ms: 5000
  builders:
    - name: customer
      kind: http
      url: "${customers.url}/customers/{{user_id}}"
      required: true
      cache: {ttl_ms: 600000, max_entries: 10000, max_bytes: ${BUDGET}}
`,
      ),
      { templates: [path.join(templates, 'profile.yaml')] },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    await customers?.close();
  });

  const client = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
  async function ask(user: string): Promise<string> {
    const before = upstream.requests.length;
    await client().chat.completions.create({ model: 'profile-bot', user, messages: [{ role: 'user', content: 'hi' }] });
    const sent = upstream.requests[before].body as { messages: { role: string; content: string }[] };
    return sent.messages[0].content;
  }

  it('keeps many users\' large answers within max_bytes (least recently used out), and serves one too large to keep', async () => {
    const users = Array.from({ length: 40 }, (_, i) => `u${i}`);
    for (const u of users) expect(await ask(u)).toBe(`Customer: Name of ${u}`);
    expect(users.every((u) => customers.count(`/customers/${u}`) === 1)).toBe(true);

    // The latest users are cached: no new calls.
    for (const u of users.slice(-3)) expect(await ask(u)).toBe(`Customer: Name of ${u}`);
    expect(users.slice(-3).map((u) => customers.count(`/customers/${u}`))).toEqual([1, 1, 1]);
    // The budget holds about 64 KiB / 16 kB entries, far fewer than max_entries: the first users went.
    for (const u of users.slice(0, 3)) expect(await ask(u)).toBe(`Customer: Name of ${u}`);
    expect(users.slice(0, 3).map((u) => customers.count(`/customers/${u}`))).toEqual([2, 2, 2]);
    // How many of the 40 are still held: at most what the budget allows.
    const before = customers.requests.length;
    for (const u of users.slice(3, 37)) await ask(u);
    const held = 34 - (customers.requests.length - before);
    expect(held).toBeLessThanOrEqual(Math.floor(BUDGET / (2 * NOTES)));

    // An answer over the whole budget: the request gets it, the cache does not keep it.
    expect(await ask('huge')).toBe('Customer: Huge Customer');
    expect(await ask('huge')).toBe('Customer: Huge Customer');
    expect(customers.count('/customers/huge')).toBe(2);
  });
});
