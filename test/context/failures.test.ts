/**
 * Context builders under real-world failure: real services on 127.0.0.1 (port 0) that are
 * slow, hang, reset, redirect, answer HTML, gzip or tens of MB; odd user ids in URL
 * templates and headers; single-flight while the source fails; late dependencies; odd
 * message shapes; huge queries; and what spans and metrics say about it. Registers a global
 * tracer provider: this file runs in its own process (forks).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { trace, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile } from '../../src/config/load.js';
import { buildContext } from '../../src/context/build.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { json, makeContext, sleep, startJsonService, type Handler, type JsonService } from './helpers.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

let svc: JsonService;
let rt: ContextRuntime | undefined;
beforeAll(async () => {
  trace.setGlobalTracerProvider(provider);
  svc = await startJsonService();
});
afterAll(async () => {
  await svc.close();
  await provider.shutdown();
});
afterEach(async () => {
  await rt?.close();
  rt = undefined;
  svc.requests.length = 0;
  exporter.reset();
});

const http = (name: string, p: string, extra: Record<string, unknown> = {}) => ({ name, kind: 'http', url: `${svc.url}${p}`, ...extra });
const raw =
  (status: number, headers: Record<string, string | number>, body: string | Buffer): Handler =>
  (_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

/** One http builder against `p` (timeout 300 ms, deadline 1 s); the report line and the time taken. */
async function callOnce(p: string, extra: Record<string, unknown> = {}, userId = 'u') {
  rt = new ContextRuntime();
  const { plan } = makeContext({ deadline_ms: 1000, builders: [http('src', p, { timeout_ms: 300, ...extra })] }, { use: ['src'] });
  const started = performance.now();
  const r = await buildContext(rt, plan, { messages: [], userId, variables: {} });
  return { r, b: r.report.builders[0], ms: performance.now() - started };
}

describe('an http source that misbehaves', () => {
  const cases: Array<[string, Handler, string, string | undefined]> = [
    ['500', json({ error: 'x' }, { status: 500 }), 'failed', 'http_5xx'],
    ['404', json({ error: 'x' }, { status: 404 }), 'failed', 'http_4xx'],
    ['302 redirect (not followed)', raw(302, { location: '/elsewhere' }, ''), 'failed', 'http_3xx'],
    ['an HTML error page with status 200', raw(200, { 'content-type': 'text/html' }, '<html>Bad gateway</html>'), 'failed', 'invalid_response'],
    ['truncated JSON', raw(200, { 'content-type': 'application/json' }, '{"tier": "go'), 'failed', 'invalid_response'],
    ['JSON under a wrong content-type', raw(200, { 'content-type': 'text/plain' }, '{"tier":"gold"}'), 'ok', undefined],
    ['gzip it was not asked for (decoded)', raw(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync('{"tier":"gold"}')), 'ok', undefined],
    ['a content coding the gateway cannot decode', raw(200, { 'content-type': 'application/json', 'content-encoding': 'compress' }, '{"tier":"gold"}'), 'failed', 'invalid_response'],
    ['a JSON array without pick', raw(200, { 'content-type': 'application/json' }, '[1,2]'), 'failed', 'invalid_response'],
    ['a reset before any answer', (_req, res) => void res.socket?.destroy(), 'failed', 'unreachable'],
    [
      'a reset in the middle of the body',
      async (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100 });
        res.write('{"tier":');
        await sleep(20);
        res.socket?.destroy();
      },
      'failed',
      'unreachable',
    ],
    [
      'headers, then silence',
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"tier":');
      },
      'skipped',
      'timeout',
    ],
    ['no answer within timeout_ms', json({ tier: 'gold' }, { delayMs: 2000 }), 'skipped', 'timeout'],
  ];
  it.each(cases.map(([label, handler, status, reason]) => [label, status, reason ?? '', handler] as const))('%s: %s %s', async (label, status, reason, handler) => {
    const p = `/m/${label.replace(/\W+/g, '-')}`;
    svc.route(p, handler);
    const { b, ms } = await callOnce(p);
    expect([b.status, b.reason ?? '']).toEqual([status, reason]);
    expect(ms).toBeLessThan(800); // never past timeout_ms (300) by much
  });

  it('cuts a body of tens of MB at max_bytes, with or without content-length, and never reads a huge error body', async () => {
    const big = Buffer.alloc(30 * 1024 * 1024, 'a');
    svc.route('/huge', raw(200, { 'content-type': 'application/json', 'content-length': big.length }, big));
    svc.route('/huge-chunked', async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"a":"');
      for (let i = 0; i < 30 && !res.destroyed; i++) {
        res.write(Buffer.alloc(1024 * 1024, 'a'));
        await sleep(1);
      }
      res.end('"}');
    });
    svc.route('/huge-500', raw(500, { 'content-type': 'text/html' }, big));
    for (const [p, reason] of [['/huge', 'too_large'], ['/huge-chunked', 'too_large'], ['/huge-500', 'http_5xx']]) {
      const { b, ms } = await callOnce(p, { timeout_ms: 2000 });
      expect(b).toMatchObject({ status: 'failed', reason });
      expect(ms).toBeLessThan(1000);
    }
  });

  it('a client that goes away leaves the call running only until timeout_ms, and its answer fills the cache', async () => {
    let opened = 0;
    let closedAfter = -1;
    svc.route('/hangs', (_req, res) => {
      opened = performance.now();
      res.on('close', () => (closedAfter = performance.now() - opened));
    });
    svc.route('/late', json({ tier: 'gold' }, { delayMs: 150 }));
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { deadline_ms: 2000, builders: [http('hangs', '/hangs', { timeout_ms: 300 }), http('late', '/late', { timeout_ms: 1000, cache: { ttl_ms: 60_000 } })] },
      { use: ['hangs', 'late'] },
    );
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    const r = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {}, signal: ac.signal });
    expect(r.report.builders.map((b) => [b.status, b.reason])).toEqual([['skipped', 'aborted'], ['skipped', 'aborted']]);
    await sleep(500);
    expect(closedAfter).toBeGreaterThanOrEqual(250);
    expect(closedAfter).toBeLessThan(700); // aborted at timeout_ms (300), not left hanging
    const next = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {} });
    expect(next.report.builders[1]).toMatchObject({ status: 'cached', cache: 'hit' });
    expect(svc.count('/late')).toBe(1);
  });
});

describe('user ids in URL templates and headers', () => {
  beforeAll(() => {
    svc.route(/^\/ids\//, async (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url }));
    });
    svc.route('/me', async (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: req.headers['x-customer-id'] }));
    });
  });

  it('keeps every user id inside its path segment and query value, and caches each under its own key', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { builders: [http('customer', '/ids/{{user_id}}?u={{user_id}}', { cache: { ttl_ms: 60_000 } })] },
      { use: ['customer'] },
    );
    const url = async (userId: string) => {
      const r = await buildContext(rt!, plan, { messages: [], userId, variables: {} });
      return (r.variables.customer as { url?: string } | undefined)?.url ?? r.report.builders[0].reason;
    };
    const expected: Array<[string, string]> = [
      ['a/b', '/ids/a%2Fb?u=a%2Fb'],
      ['a%2Fb', '/ids/a%252Fb?u=a%252Fb'],
      ['../admin', 'missing_input'], // `..%2Fadmin` is `../admin` to a server that decodes %2F
      ['?x=1', '/ids/%3Fx%3D1?u=%3Fx%3D1'],
      ['#top', '/ids/%23top?u=%23top'],
      ['%', '/ids/%25?u=%25'],
      ['%2e%2e', '/ids/%252e%252e?u=%252e%252e'],
      ['üser-ß', '/ids/%C3%BCser-%C3%9F?u=%C3%BCser-%C3%9F'],
      ['a\r\nb', '/ids/a%0D%0Ab?u=a%0D%0Ab'],
      ['..', 'missing_input'],
      ['.', 'missing_input'],
      ['', 'missing_input'],
    ];
    for (const [id, want] of expected) expect([id, await url(id)]).toEqual([id, want]);
    // Again, from the cache: each id still gets its own answer.
    for (const [id, want] of expected) expect([id, await url(id)]).toEqual([id, want]);
    expect(svc.requests).toHaveLength(8);
  });

  // Regression: a user id that cannot be a header value (CR/LF, characters beyond Latin-1)
  // went to undici, which refused it, and the builder failed as `unreachable` (a required
  // one: 424 "unreachable") although the service was up.
  it('skips the call (missing_input) when a placeholder value cannot be a header value', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [http('me', '/me', { headers: { 'x-customer-id': '{{user_id}}' }, required: true })] }, { use: ['me'] });
    const me = (userId: string) => buildContext(rt!, plan, { messages: [], userId, variables: {} }).catch((e: Error) => e.message);
    expect(await me('üser-ß')).toMatchObject({ variables: { me: { id: 'üser-ß' } } }); // Latin-1 is a valid field value
    expect(await me('a\r\nx-admin: 1')).toBe('Required context "me" is unavailable (missing_input).');
    expect(await me('алиса')).toBe('Required context "me" is unavailable (missing_input).');
    expect(svc.count('/me')).toBe(1);
  });

  // Regression: a configured header value HTTP cannot carry (text beyond Latin-1, a control
  // character) loaded fine, and then every call failed as `unreachable`.
  it('rejects a configured header value HTTP cannot carry at load, naming its path', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ctx-headers-'));
    mkdirSync(path.join(dir, 'templates'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(
      file,
      `upstreams: [{name: sim, simulate: {latency_ms: 0}}]
routing: {default: [sim]}
templates: {dir: templates}
context:
  builders:
    - {name: customer, kind: http, url: "http://crm.internal/c/{{user_id}}", headers: {authorization: "Bearer \${CRM_TOKEN}"}}
`,
    );
    const load = (token: string) => {
      try {
        loadConfigFile(file, { env: { CRM_TOKEN: token } });
        return [];
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        return err.issues.map((i) => `${i.path}: ${i.message}`);
      }
    };
    expect(load('abc')).toEqual([]);
    expect(load('abc\n')).toEqual([]); // a secret file's final newline is dropped by ${VAR} substitution
    for (const token of ['東京', 'abc\u0007']) {
      const issues = load(token);
      expect(issues).toHaveLength(1);
      expect(issues[0]).toMatch(/context\.builders\[0\]\.headers\.authorization .*header value/);
      expect(issues[0]).not.toContain(token); // never the secret itself
    }
  });
});

describe('the cache while the source fails', () => {
  it('50 concurrent misses of a failing source make one call and all fail the same way; the span says miss', async () => {
    svc.route(/^\/flaky\//, json({ error: 'x' }, { status: 503, delayMs: 30 }));
    rt = new ContextRuntime();
    const { plan } = makeContext({ deadline_ms: 1000, builders: [http('customer', '/flaky/{{user_id}}', { cache: { ttl_ms: 1000 } })] }, { use: ['customer'] });
    const rs = await Promise.all(Array.from({ length: 50 }, () => buildContext(rt!, plan, { messages: [], userId: 'u', variables: {} })));
    expect(svc.count('/flaky/u')).toBe(1);
    expect(new Set(rs.map((r) => JSON.stringify(r.report.builders[0])).map((s) => JSON.parse(s)).map((b) => `${b.status}/${b.reason}/${b.cache}`))).toEqual(
      new Set(['failed/http_5xx/miss']),
    );
    const spans = exporter.getFinishedSpans().filter((s) => s.name === 'context customer');
    expect(spans).toHaveLength(50);
    expect(spans.every((s) => s.attributes['promptgate.context.cache'] === 'miss' && s.attributes['promptgate.context.reason'] === 'http_5xx')).toBe(true);
  });

  it('50 concurrent misses within stale_if_error make one call and all get the stale value; after the window they fail', async () => {
    let down = false;
    svc.route(/^\/profile\//, async (req, res) => {
      await sleep(30);
      res.writeHead(down ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(down ? { error: 'x' } : { tier: 'gold', user: req.url }));
    });
    let t = 0;
    rt = new ContextRuntime({ now: () => t });
    const { plan } = makeContext(
      { deadline_ms: 1000, builders: [http('customer', '/profile/{{user_id}}', { cache: { ttl_ms: 1000, stale_if_error_ms: 10_000 } })] },
      { use: ['customer'] },
    );
    const build = (userId: string) => buildContext(rt!, plan, { messages: [], userId, variables: {} });
    await build('alice');
    await build('bob');
    t = 999; // TTL boundary: still fresh
    expect((await build('alice')).report.builders[0]).toMatchObject({ status: 'cached', cache: 'hit' });
    down = true;
    t = 1000; // TTL passed: the source is asked, fails, and the stale value is served
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => build(i % 2 ? 'alice' : 'bob')));
    expect(svc.count('/profile/alice')).toBe(2);
    expect(svc.count('/profile/bob')).toBe(2);
    for (const [i, r] of rs.entries()) {
      expect(r.report.builders[0]).toMatchObject({ status: 'stale', cache: 'stale' });
      expect(r.variables.customer).toEqual({ tier: 'gold', user: `/profile/${i % 2 ? 'alice' : 'bob'}` }); // never the other user's profile
    }
    t = 1000 + 10_000; // past ttl + stale_if_error
    expect((await build('alice')).report.builders[0]).toMatchObject({ status: 'failed', reason: 'http_5xx', cache: 'miss' });
  });
});

describe('source failures a stale entry covers', () => {
  // Regression: a source failing behind stale_if_error (or a failed background refresh) left
  // no trace in the metrics, so operators could not see that their customer service was down.
  it('are counted in promptgate_context_source_errors_total, though the request got its stale value', async () => {
    let down = false;
    svc.route(/^\/profile\//, (_req, res) => {
      res.writeHead(down ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(down ? { error: 'x' } : { tier: 'gold' }));
    });
    let t = 0;
    const registry = new Registry();
    rt = new ContextRuntime({ now: () => t, registry });
    const { plan } = makeContext(
      { deadline_ms: 1000, builders: [http('customer', '/profile/{{user_id}}', { cache: { ttl_ms: 1000, stale_while_revalidate_ms: 1000, stale_if_error_ms: 10_000 } })] },
      { use: ['customer'] },
    );
    const build = () => buildContext(rt!, plan, { messages: [], userId: 'alice', variables: {} });
    await build();
    down = true;
    t = 1500; // within stale_while_revalidate: served stale, refreshed in the background (fails)
    expect((await build()).report.builders[0]).toMatchObject({ status: 'stale' });
    await sleep(50);
    t = 2500; // past it, within stale_if_error: the call fails, the stale value is served
    expect((await build()).report.builders[0]).toMatchObject({ status: 'stale', cache: 'stale' });
    const text = await registry.getSingleMetricAsString('promptgate_context_source_errors_total');
    expect(text).toContain('promptgate_context_source_errors_total{builder="customer",reason="http_5xx"} 2');
    expect(await registry.getSingleMetricAsString('promptgate_context_failures_total')).not.toContain('builder="customer"');
  });
});

describe('a cached source that is late at the deadline', () => {
  // Regression: with timeout_ms above deadline_ms, a hanging source left the request with
  // nothing at the deadline although stale_if_error allowed serving the entry it had.
  it('serves the entry stale_if_error allows, marked stale for reason deadline; beyond that window it is skipped', async () => {
    let hang = false;
    svc.route(/^\/profile\//, async (_req, res) => {
      if (hang) await sleep(600);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ tier: 'gold' }));
    });
    let t = 0;
    const registry = new Registry();
    rt = new ContextRuntime({ now: () => t, registry });
    const { plan } = makeContext(
      { deadline_ms: 100, builders: [http('customer', '/profile/{{user_id}}', { timeout_ms: 1000, cache: { ttl_ms: 1000, stale_if_error_ms: 10_000 } })] },
      { use: ['customer'] },
    );
    const build = () => buildContext(rt!, plan, { messages: [], userId: 'alice', variables: {} });
    await build();
    hang = true;
    t = 5000;
    const late = await build();
    expect(late.report.builders[0]).toMatchObject({ status: 'stale', cache: 'stale', reason: 'deadline' });
    expect(late.variables.customer).toEqual({ tier: 'gold' });
    expect(late.report.skipped).toEqual([]);
    // The cache counter says what the request got (README "Cache": stale), once, also after
    // the late call answers and fills the cache.
    await sleep(700);
    const cacheTotal = await registry.getSingleMetricAsString('promptgate_context_cache_total');
    expect(cacheTotal).toContain('promptgate_context_cache_total{builder="customer",result="miss"} 1');
    expect(cacheTotal).toContain('promptgate_context_cache_total{builder="customer",result="stale"} 1');
    t = 20_000; // past ttl + stale_if_error: nothing to stand in
    expect((await build()).report.builders[0]).toMatchObject({ status: 'skipped', reason: 'deadline' });
  });
});

describe('a dependency that misses the deadline', () => {
  const config = (required: boolean) => ({
    deadline_ms: 100,
    builders: [
      http('customer', '/slow-customer/{{user_id}}', { timeout_ms: 1000, cache: { ttl_ms: 60_000 } }),
      { name: 'tier_rules', kind: 'rules', required, defaults: { refund_limit_usd: 50 }, rules: [{ when: { 'customer.tier': 'gold' }, set: { refund_limit_usd: 500 } }] },
      http('orders', '/orders/{{customer.id}}'),
    ],
  });
  beforeAll(() => {
    svc.route(/^\/slow-customer\//, json({ id: 'c1', tier: 'gold' }, { delayMs: 400 }));
    svc.route(/^\/orders\//, json({ open: 1 }));
  });

  // Regression: rules waiting for a late customer profile were skipped with reason
  // `deadline` instead of applying their defaults, so a required rules builder failed the
  // request with 424 whenever the customer service was slow (but not when it was down).
  it('rules that read it still run with nothing there (their defaults); builders that would call out are skipped', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(config(true), { use: ['customer', 'tier_rules', 'orders'] });
    const r = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {} });
    expect(r.report.builders.map((b) => [b.name, b.status, b.reason])).toEqual([
      ['customer', 'skipped', 'deadline'],
      ['tier_rules', 'ok', undefined],
      ['orders', 'skipped', 'missing_input'],
    ]);
    expect(r.variables).toEqual({ tier_rules: { refund_limit_usd: 50 } });
    const spans = exporter.getFinishedSpans();
    const rules = spans.find((s) => s.name === 'context tier_rules')!;
    expect(rules.attributes).toMatchObject({ 'promptgate.context.status': 'ok' });
    expect(rules.status.code).not.toBe(SpanStatusCode.ERROR);
    const customer = spans.find((s) => s.name === 'context customer')!;
    expect(customer.attributes).toMatchObject({ 'promptgate.context.status': 'skipped', 'promptgate.context.reason': 'deadline', 'error.type': 'deadline' });
    expect(customer.status.code).toBe(SpanStatusCode.ERROR);

    // The late profile filled the cache: the next request gets gold rules at once.
    await sleep(400);
    const next = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {} });
    expect(next.variables.tier_rules).toEqual({ refund_limit_usd: 500 });
    expect(next.variables.orders).toEqual({ open: 1 });
  });

  it('through the gateway: 200 with default tier rules, and the metrics count only the late profile', async () => {
    const upstream: MockUpstream = await startMockUpstream();
    let gw: TestGateway | undefined;
    try {
      const dir = mkdtempSync(path.join(tmpdir(), 'ctx-late-'));
      const tpl = path.join(dir, 'late.yaml');
      writeFileSync(
        tpl,
        `id: late
versions:
  - version: "1.0.0"
    labels: [production]
    model: gpt-4o-mini
    context: {use: [customer, tier_rules]}
    messages: [{role: system, content: "Tier {{customer.tier}}. Refunds up to {{tier_rules.refund_limit_usd}} USD."}]
`,
      );
      gw = await startTestGateway(
        mockConfig(
          upstream.url,
          `bindings: [{model: bot, template: late}]
context:
  deadline_ms: 100
  builders:
    - {name: customer, kind: http, url: "${svc.url}/slow-customer/{{user_id}}", timeout_ms: 1000}
    - {name: tier_rules, kind: rules, required: true, defaults: {refund_limit_usd: 50}, rules: [{when: {customer.tier: gold}, set: {refund_limit_usd: 500}}]}
`,
        ),
        { templates: [tpl] },
      );
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'bot', user: 'u', messages: [{ role: 'user', content: 'refund?' }] }),
      });
      expect(res.statusCode).toBe(200);
      await res.body.text();
      expect(upstream.requests[0].body.messages[0].content).toBe('Tier . Refunds up to 50 USD.');
      const metrics = await scrapeMetricsText(gw.url);
      expect(metrics).toContain('promptgate_context_failures_total{builder="customer",reason="deadline"} 1');
      expect(metrics).not.toContain('promptgate_context_failures_total{builder="tier_rules"');
      expect(metrics).toMatch(/promptgate_context_build_duration_seconds_count\{builder="tier_rules",kind="rules",outcome="ok"\} 1/);
    } finally {
      await gw?.close();
      await upstream.close();
    }
  });
});

describe('knowledge, history and rules with odd input', () => {
  it('retrieves for unicode questions, skips an empty one, and stays fast on a question of megabytes', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ deadline_ms: 150, builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 3, cache: { ttl_ms: 60_000 } }] }, { use: ['knowledge'] });
    const ask = async (content: string) => {
      const started = performance.now();
      const r = await buildContext(rt!, plan, { messages: [{ role: 'user', content }], userId: 'u', variables: {} });
      return { b: r.report.builders[0], ms: performance.now() - started };
    };
    expect((await ask('')).b).toMatchObject({ status: 'skipped', reason: 'missing_input' });
    expect((await ask(' \n\t ')).b).toMatchObject({ status: 'skipped', reason: 'missing_input' });
    expect((await ask('Rückerstattung? 退款 🙂 refund timing')).b).toMatchObject({ status: 'ok' });
    expect((await ask('🙂'.repeat(2000))).b).toMatchObject({ status: 'ok', items: 0 });
    // Regression: a 2 MB message (under the 4 MiB body limit) blocked the event loop, and
    // with it every other request, for seconds: the whole text was the search query.
    const huge = await ask('refund shipping '.repeat(130_000));
    expect(huge.b).toMatchObject({ status: 'ok', items: 3 });
    expect(huge.ms).toBeLessThan(500); // it took over 3 s
  });

  it('sends a search endpoint at most the first 2,000 characters of the message, never half a character', async () => {
    svc.route('/search', json({ results: [{ title: 'T', text: 'remote passage', score: 1 }] }));
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { deadline_ms: 1000, builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', http: { url: `${svc.url}/search?q={{query}}` } }] },
      { use: ['knowledge'] },
    );
    const message = `a${'🙂'.repeat(5000)}`; // a cut at 2,000 UTF-16 units falls inside a pair
    const r = await buildContext(rt, plan, { messages: [{ role: 'user', content: message }], userId: 'u', variables: {} });
    expect(r.report.builders[0]).toMatchObject({ status: 'ok', items: 1 });
    const q = new URL(svc.requests[0].url, svc.url).searchParams.get('q')!;
    expect(q).toBe(message.slice(0, 1999));
  });

  it('history reads text from content arrays, tool messages when asked, and skips what has no text', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'history', kind: 'history', roles: ['user', 'assistant', 'tool'] }] }, { use: ['history'] });
    const messages = [
      null,
      'not a message',
      { role: 'user' },
      { role: 'user', content: null },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"status":"shipped"}' },
      { role: 'user', content: [{ type: 'text', text: 'part one' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AA' } }, null, { type: 'text', text: 'part two' }] },
      { role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }] },
      { role: 'assistant', content: { text: 'not an array' } },
      { role: 7, content: 'bad role' },
      { role: 'user', content: 'the question' },
    ];
    const r = await buildContext(rt, plan, { messages, userId: 'u', variables: {} });
    expect(r.variables.history).toEqual([
      { role: 'tool', content: '{"status":"shipped"}' },
      { role: 'user', content: 'part one\npart two' },
    ]);
    const none = await buildContext(rt, plan, { messages: [null, { role: 'user', content: 'q' }], userId: undefined, variables: {} });
    expect(none.report.builders[0]).toMatchObject({ status: 'ok', items: 0 });
  });

  it('rules over missing paths see nothing there: defaults, null and exists: false match, nothing throws', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(
      {
        builders: [
          {
            name: 'r',
            kind: 'rules',
            defaults: { a: 1 },
            rules: [
              { when: { 'nope.deep.path': 'x' }, set: { a: 2 } },
              { when: { 'user_id.length': { gt: 0 } }, set: { b: 1 } },
              { when: { missing: null }, set: { c: 1 } },
              { when: { 'also.missing': { exists: false } }, set: { d: 1 } },
              { when: { 'x.__proto__': { exists: true } }, set: { e: 1 } },
            ],
          },
        ],
      },
      { use: ['r'] },
    );
    const r = await buildContext(rt, plan, { messages: [], userId: undefined, variables: { x: {} } });
    expect(r.variables.r).toEqual({ a: 1, c: 1, d: 1 });
  });
});

describe('metrics of failures', () => {
  it('counts each failure reason once per request and every outcome in the build histogram', async () => {
    const registry = new Registry();
    rt = new ContextRuntime({ registry });
    svc.route('/x500', json({}, { status: 500 }));
    svc.route('/xhtml', raw(200, { 'content-type': 'text/html' }, '<p>'));
    svc.route('/xslow', json({}, { delayMs: 400 }));
    const { plan } = makeContext(
      { deadline_ms: 150, builders: [http('a', '/x500'), http('b', '/xhtml'), http('c', '/xslow', { timeout_ms: 50 }), http('d', '/xslow', { timeout_ms: 1000 }), http('e', '/nothing/{{order_id}}')] },
      { use: ['a', 'b', 'c', 'd', 'e'] },
    );
    const r = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {} });
    expect(r.report.builders.map((b) => `${b.name}:${b.status}:${b.reason}`)).toEqual([
      'a:failed:http_5xx',
      'b:failed:invalid_response',
      'c:skipped:timeout',
      'd:skipped:deadline',
      'e:skipped:missing_input',
    ]);
    const text = await registry.metrics();
    for (const [b, reason] of [['a', 'http_5xx'], ['b', 'invalid_response'], ['c', 'timeout'], ['d', 'deadline']]) {
      expect(text).toContain(`promptgate_context_failures_total{builder="${b}",reason="${reason}"} 1`);
    }
    expect(text).not.toContain('promptgate_context_failures_total{builder="e"');
    expect(text).toMatch(/promptgate_context_build_duration_seconds_count\{builder="a",kind="http",outcome="failed"\} 1/);
    expect(text).toMatch(/promptgate_context_build_duration_seconds_count\{builder="e",kind="http",outcome="skipped"\} 1/);
  });
});
