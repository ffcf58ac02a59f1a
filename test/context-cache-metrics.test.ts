/**
 * `promptgate_context_cache_entries{builder}` and `promptgate_context_cache_bytes{builder}`:
 * how full each builder's context cache is, read at scrape time. Through a real gateway
 * (127.0.0.1, port 0) with cached http builders against a local JSON service, the official
 * `openai` client, and config reloads that change or remove a builder.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { json, sleep, startJsonService, type JsonService } from './context/helpers.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { PromText } from './telemetry-e2e/prom-text.js';

const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
if (!hasPromtool) console.warn('SKIP promtool checks: `promtool` is not installed');

const MAX_BYTES = 8192;

let upstream: MockUpstream;
let svc: JsonService;
let gw: TestGateway | undefined;

beforeAll(async () => {
  upstream = await startMockUpstream();
  svc = await startJsonService();
  // An entry of a few hundred estimated bytes; user "big" has one of about 8 KB, under
  // MAX_BYTES alone but not next to any other.
  svc.route(/^\/customers\//, (req, res) => json({ name: req.url.split('/').pop(), note: req.url.endsWith('/big') ? 'x'.repeat(3850) : 'ok' })(req, res));
  svc.route(/^\/orders\//, json({ open: 2 }));
});
afterAll(async () => {
  await upstream.close();
  await svc.close();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

const template = (use: string[]) => `id: profile
name: Profile
versions:
  - version: "1.0.0"
    labels: [production]
    model: gpt-4o-mini
    context:
      use: [${use.join(', ')}]
    messages:
      - role: system
        content: "${use.map((b) => `{{#${b}}}${b}: {{${b === 'customer' ? 'name' : 'open'}}}.{{/${b}}}`).join(' ')}"
`;

function config(opts: { customerTtlMs?: number; withCustomer?: boolean; templatesDir?: string } = {}): string {
  const customer = `    - {name: customer, kind: http, url: "${svc.url}/customers/{{user_id}}", cache: {ttl_ms: ${opts.customerTtlMs ?? 60000}, max_entries: 3, max_bytes: ${MAX_BYTES}}}\n`;
  return mockConfig(upstream.url).replace('templates: {dir: templates}', `templates: {dir: ${opts.templatesDir ?? 'templates'}}`) + `
bindings: [{model: profile-bot, template: profile}]
context:
  deadline_ms: 2000
  builders:
${(opts.withCustomer ?? true) ? customer : ''}    - {name: orders, kind: http, url: "${svc.url}/orders/{{user_id}}", cache: {ttl_ms: 60000}}
`;
}

/** A gateway whose `profile` template uses both builders. */
async function start(): Promise<TestGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-cache-metrics-'));
  writeFileSync(path.join(dir, 'profile.yaml'), template(['customer', 'orders']));
  return startTestGateway(config(), { templates: [path.join(dir, 'profile.yaml')] });
}

async function scrape(g: TestGateway): Promise<PromText> {
  const res = await request(`${g.url}/metrics`);
  expect(res.statusCode).toBe(200);
  return new PromText(await res.body.text());
}

const entries = (m: PromText, builder: string) => m.one('promptgate_context_cache_entries', { builder });
const bytes = (m: PromText, builder: string) => m.one('promptgate_context_cache_bytes', { builder });

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

/** Replaces the config file atomically and waits for the gateway to apply it. */
async function reload(g: TestGateway, yaml: string): Promise<void> {
  const generation = g.holder.current.generation;
  writeFileSync(`${g.configFile}.tmp`, yaml);
  renameSync(`${g.configFile}.tmp`, g.configFile);
  await waitFor(() => g.holder.current.generation > generation);
}

function client(g: TestGateway): OpenAI {
  return new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}

async function ask(g: TestGateway, user: string): Promise<string> {
  const c = await client(g).chat.completions.create({ model: 'profile-bot', user, messages: [{ role: 'user', content: 'hi' }] });
  return c.choices[0].message.content ?? '';
}

describe('context cache size gauges', () => {
  it('grow with distinct users, stay put on hits, fall after an eviction, and pass promtool', async () => {
    gw = await start();

    // Configured caches are exported at 0 before any request uses them.
    let m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(0);
    expect(bytes(m, 'customer')).toBe(0);
    expect(entries(m, 'orders')).toBe(0);

    const seen: number[] = [];
    for (const [i, user] of ['u1', 'u2', 'u3'].entries()) {
      await ask(gw, user);
      const system = upstream.requests.at(-1)!.body.messages[0].content as string;
      expect(system).toBe(`customer: ${user}. orders: 2.`);
      m = await scrape(gw);
      expect(entries(m, 'customer')).toBe(i + 1);
      expect(entries(m, 'orders')).toBe(i + 1);
      seen.push(bytes(m, 'customer')!);
    }
    expect(seen[0]).toBeGreaterThan(0);
    expect(seen[1]).toBeGreaterThan(seen[0]);
    expect(seen[2]).toBeGreaterThan(seen[1]);
    // The same answers for users of the same name length: equal sizes.
    expect(seen[1] - seen[0]).toBe(seen[2] - seen[1]);

    // A hit stores nothing.
    await ask(gw, 'u1');
    m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(3);
    expect(bytes(m, 'customer')).toBe(seen[2]);

    // max_entries: 3 holds; a fourth user evicts one.
    await ask(gw, 'u4');
    m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(3);
    expect(bytes(m, 'customer')).toBe(seen[2]);
    expect(entries(m, 'orders')).toBe(4); // default max_entries: 1000

    // An answer of most of max_bytes evicts the least recently used entries until it fits:
    // here all of them.
    await ask(gw, 'big');
    m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(1);
    expect(bytes(m, 'customer')).toBeGreaterThan(MAX_BYTES - seen[0]);
    expect(bytes(m, 'customer')).toBeLessThanOrEqual(MAX_BYTES);
    // ...and a small one then evicts it (max_bytes): the bytes fall back.
    await ask(gw, 'u5');
    m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(1);
    expect(bytes(m, 'customer')).toBe(seen[0]);

    expect(m.text).toContain('# TYPE promptgate_context_cache_entries gauge');
    expect(m.text).toContain('# TYPE promptgate_context_cache_bytes gauge');
    if (hasPromtool) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: m.text, encoding: 'utf8' });
      expect(check.stdout + check.stderr).toBe('');
      expect(check.status).toBe(0);
    }
  });

  it('follow reloads: a changed builder shows its new cache, a removed one has no series', async () => {
    gw = await start();
    await ask(gw, 'u1');
    await ask(gw, 'u2');
    let m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(2);
    expect(entries(m, 'orders')).toBe(2);
    const ordersBytes = bytes(m, 'orders');

    // A changed cache config starts a new cache: the series shows it, not the dropped one.
    await reload(gw, config({ customerTtlMs: 30000 }));
    m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(0);
    expect(bytes(m, 'customer')).toBe(0);
    expect(entries(m, 'orders')).toBe(2); // unchanged builder: its cache is kept
    expect(bytes(m, 'orders')).toBe(ordersBytes);
    await ask(gw, 'u3');
    m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(1);
    expect(entries(m, 'orders')).toBe(3);

    // Removing the builder (and its use) removes its series.
    mkdirSync(path.join(gw.dir, 'templates2'));
    writeFileSync(path.join(gw.dir, 'templates2', 'profile.yaml'), template(['orders']));
    await reload(gw, config({ withCustomer: false, templatesDir: 'templates2' }));
    m = await scrape(gw);
    expect(m.select('promptgate_context_cache_entries', { builder: 'customer' })).toEqual([]);
    expect(m.select('promptgate_context_cache_bytes', { builder: 'customer' })).toEqual([]);
    expect(entries(m, 'orders')).toBe(3);
    expect(await ask(gw, 'u4')).toBeTruthy();
    m = await scrape(gw);
    expect(m.select('promptgate_context_cache_entries', { builder: 'customer' })).toEqual([]);
    expect(entries(m, 'orders')).toBe(4);
  });

  // Regression: a request still being received when a reload changed its builder built its
  // context with the old builder afterwards, and the runtime kept a cache for that old
  // config in place of the new one: the new cache's entries were lost (calls to the source
  // again), and a removed builder's cache was kept until the next reload.
  it('a request of the previous config finishing after the reload leaves the new cache alone', async () => {
    gw = await start();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const body = JSON.stringify({ model: 'profile-bot', user: 'slow', messages: [{ role: 'user', content: 'hi' }] });
    async function* slowBody() {
      yield body.slice(0, 10);
      await gate;
      yield body.slice(10);
    }
    const slow = request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Readable.from(slowBody()) });
    slow.catch(() => undefined); // awaited below; a failed assertion before that must not leave it unhandled
    await waitFor(() => gw!.inflight.size === 1); // its config is taken: the one before the reload

    await reload(gw, config({ customerTtlMs: 30000 }));
    await ask(gw, 'r1');
    expect(svc.count('/customers/r1')).toBe(1);
    release();
    const res = await slow;
    expect(res.statusCode).toBe(200);
    await res.body.text();

    expect(await ask(gw, 'r1')).toBeTruthy();
    expect(svc.count('/customers/r1')).toBe(1); // a hit in the new config's cache
    const m = await scrape(gw);
    expect(entries(m, 'customer')).toBe(1);
  });
});
