/**
 * "A month of uptime with a config reload every minute": what a reload leaves behind.
 *
 * A real gateway (127.0.0.1, port 0) with an upstream, an http context builder against a
 * local customer service, a knowledge builder and the injection guard scanning context is
 * reloaded again and again with traffic in between; then live objects (after a forced GC),
 * sockets at the upstream, watchers, pending timers, listeners and /metrics series are
 * compared with the state before the reloads.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { cpSync, mkdirSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { ROOT } from './context/helpers.js';
import { FeatureExtractor } from '../src/guard/features.js';
import { ContextRuntime } from '../src/context/runtime.js';
import { loadConfigFile } from '../src/config/load.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function collect(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc();
    await sleep(20);
  }
}

const Timeout = setTimeout(() => undefined, 0).constructor;
const FSWatcher = (() => {
  const w = watch(tmpdir());
  w.close();
  return w.constructor;
})();
const queryObjects = (v8 as unknown as { queryObjects(c: unknown, o: { format: 'count' | 'summary' }): number | string[] }).queryObjects;
/** Live objects after a GC; unlike `getActiveResourcesInfo`, sees unref'd timers and watchers. */
function live(): { scanners: number; watchers: number; timers: number } {
  return {
    // One per injection scanner (each ~0.5 MB of tables).
    scanners: queryObjects(FeatureExtractor, { format: 'count' }) as number,
    watchers: queryObjects(FSWatcher, { format: 'count' }) as number,
    timers: (queryObjects(Timeout, { format: 'summary' }) as string[]).filter((t) => t.includes('_destroyed: false')).length,
  };
}

interface Service {
  url: string;
  /** Connections open at the server now. */
  sockets: Set<Socket>;
  close(): Promise<void>;
}
async function listen(handler: RequestListener): Promise<Service> {
  const server: Server = createServer(handler);
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const USAGE = { prompt_tokens: 11, completion_tokens: 8, total_tokens: 19 };
const chunk = (model: string, delta: object, finish: string | null, usage?: object) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }], ...(usage ? { usage } : {}) })}\n\n`;

/** OpenAI-shaped; `x-slow-ms` holds a stream's last chunk that long. */
function startUpstream(): Promise<Service> {
  return listen(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { model?: string; stream?: boolean };
    const model = body.model ?? 'm';
    if (req.url?.includes('/embeddings')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1] }], model, usage: { prompt_tokens: 1, total_tokens: 1 } }));
    }
    if (body.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk(model, { role: 'assistant', content: 'hi' }, null));
      await sleep(Number(req.headers['x-slow-ms'] ?? 0));
      res.write(chunk(model, {}, 'stop', USAGE));
      return void res.end('data: [DONE]\n\n');
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model, choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: USAGE }));
  });
}

describe('many reloads, each with a new upstream key and guard threshold', () => {
  let upstream: Service;
  let customers: Service;
  let gw: TestGateway;
  let dispatcher: Agent;

  /** The i-th config: a new upstream key (a new pool each time) and a new guard threshold. */
  const config = (i: number) => `
server: {host: 127.0.0.1, drain_timeout_ms: 0}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: primary
    base_url: ${upstream.url}/v1
    api_key: sk-key-${i}
    timeout: {connect_ms: 1000, first_byte_ms: 3000, idle_ms: 3000, total_ms: 4000}
routing: {default: [primary]}
bindings: [{model: support-bot, template: support-context}]
context:
  deadline_ms: 500
  builders:
    - name: customer
      kind: http
      url: "${customers.url}/customers/{{user_id}}"
      timeout_ms: 400
      pick: {name: name, tier: tier}
      cache: {ttl_ms: 60000, max_entries: 100}
    - name: knowledge
      kind: knowledge
      dir: ${ROOT}/config/knowledge
      top_k: 3
      cache: {ttl_ms: 60000}
    - name: history
      kind: history
      max_turns: 6
guard: {injection: {action: flag, threshold: ${(0.5 + i / 1000).toFixed(3)}, scan: [user, context]}}
`;

  const generation = async () => ((await (await request(`${gw.url}/readyz`, { dispatcher })).body.json()) as { config_generation: number }).config_generation;
  async function reload(i: number): Promise<void> {
    const before = await generation();
    writeFileSync(gw.configFile, config(i));
    const until = Date.now() + 5_000;
    while ((await generation()) === before && Date.now() < until) await sleep(10);
    expect(await generation()).toBe(before + 1);
  }
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await request(`${gw.url}${path}`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const traffic = async (i: number) => {
    const results = await Promise.all([
      post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      post('/v1/chat/completions', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      post('/v1/chat/completions', { model: 'support-bot', user: `user-${i}`, messages: [{ role: 'user', content: 'How long do refunds take?' }] }),
      post('/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' }),
    ]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
  };
  /** /metrics series, but those of a context recipe (which one the bandit picks is random). */
  // Label combinations the traffic makes; not nodejs_active_resources, whose `type` series
  // come and go with whatever timers happen to be active at the scrape, nor
  // nodejs_gc_duration_seconds, whose `kind` series appear with the first collection of
  // that kind (an incremental marking once the heap has grown enough).
  const series = async () =>
    (await (await request(`${gw.url}/metrics`, { dispatcher })).body.text())
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#') && !l.includes('variant="') && !l.startsWith('nodejs_active_resources{') && !l.startsWith('nodejs_gc_duration_seconds')).length;
  const listeners = () => [...process.eventNames(), ...gw.server.eventNames().map((e) => `server.${String(e)}`)].map((e) => `${String(e)}=${typeof e === 'string' && e.startsWith('server.') ? gw.server.listenerCount(e.slice(7)) : process.listenerCount(e)}`).sort();

  beforeAll(async () => {
    upstream = await startUpstream();
    customers = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name: 'Ada', tier: 'gold' }));
    });
    gw = await startTestGateway(config(0), { templates: [`${ROOT}/config/templates/support-context.yaml`] });
    dispatcher = new Agent({ connections: 8 });
  });
  afterAll(async () => {
    await dispatcher?.close();
    await gw?.close();
    await upstream?.close();
    await customers?.close();
    if (gw) rmSync(gw.dir, { recursive: true, force: true });
  });

  it('keep one context scanner, not one per threshold ever configured; old pools, watchers, timers and listeners go', { timeout: 20_000 }, async () => {
    // Warm-up: one reload, so every lazily made thing (a retired pool's timer too) exists once.
    await traffic(0);
    await reload(1);
    await traffic(1);
    await collect();
    const before = live();
    const listenersBefore = listeners();

    // A stream in flight across the reloads: it finishes on the pool it started on.
    const inflight = post('/v1/chat/completions', { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }, { 'x-slow-ms': '1500' });
    const RELOADS = 12;
    let seriesHalf = 0;
    for (let i = 2; i < 2 + RELOADS; i++) {
      await reload(i);
      await traffic(i);
      if (i === 1 + RELOADS / 2) seriesHalf = await series(); // every label combination the traffic makes exists by now
    }
    const streamed = await inflight;
    expect(streamed.status).toBe(200);
    expect(streamed.text).toContain('[DONE]');
    expect(streamed.text).not.toContain('"error"');
    // Every replaced pool had connections open at the upstream until it retired.
    expect(upstream.sockets.size).toBeGreaterThan(RELOADS);

    // Past the retirement of the replaced pools (drain_timeout_ms 0 + 5 s; total_ms 4 s).
    await sleep(5_300);
    await collect();
    const after = live();
    // Was: one more scanner (~0.5 MB) per reload that changed the threshold, kept for good
    // by the context runtime (5 -> 17 here; 41 -> 65 MB of heap over 40 such reloads).
    expect(after.scanners).toBeLessThanOrEqual(before.scanners);
    expect(after.watchers).toBe(before.watchers);
    expect(after.timers).toBeLessThanOrEqual(before.timers);
    // Only the current pool's keep-alive connections are left at the upstream.
    expect(upstream.sockets.size).toBeLessThanOrEqual(2);
    expect(customers.sockets.size).toBeLessThanOrEqual(1);
    expect(listeners()).toEqual(listenersBefore);
    expect(await series()).toBe(seriesHalf);
  });
});

describe('the context cache of a builder a reload removed', () => {
  it('is released at that reload (was: kept for the life of the process, up to max_entries answers)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-reload-leaks-'));
    try {
      mkdirSync(path.join(dir, 'templates'));
      cpSync(`${ROOT}/config/templates/support-context.yaml`, path.join(dir, 'templates', 'support-context.yaml'));
      const file = path.join(dir, 'gateway.config.yaml');
      const withCustomer = (on: boolean) => `
templates: {dir: templates}
upstreams: [{name: sim, simulate: {}}]
routing: {default: [sim]}
context:
  builders:
${on ? `    - {name: customer, kind: http, url: "http://127.0.0.1:9/c/{{user_id}}", cache: {ttl_ms: 60000, max_entries: 1000}}\n` : ''}    - {name: history, kind: history}
`;
      writeFileSync(file, withCustomer(true));
      const first = loadConfigFile(file, { env: {} });
      const runtime = new ContextRuntime();
      runtime.prepare(first);
      const builder = first.context.builders.get('customer')!;
      let cache = runtime.cacheFor(builder);
      expect(cache).toBeDefined();
      await cache!.get('user-1', async () => ({ kind: 'json', value: { name: 'x'.repeat(10_000) } }) as never);
      expect(runtime.cacheFor(builder)).toBe(cache); // kept while the builder is unchanged
      runtime.prepare(first);
      expect(runtime.cacheFor(builder)).toBe(cache);
      const ref = new WeakRef(cache!);
      cache = undefined;

      writeFileSync(file, withCustomer(false));
      runtime.prepare(loadConfigFile(file, { env: {} }));
      await collect();
      expect(ref.deref()).toBeUndefined();
      await runtime.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

