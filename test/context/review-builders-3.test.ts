/**
 * Regressions found reviewing the context builders under real-world conditions: each test
 * is named after what broke. Real services on 127.0.0.1 (port 0), closed by the test file;
 * config checks go through the config loader, as `promptgate check` does.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile } from '../../src/config/load.js';
import { fitBudget } from '../../src/context/budget.js';
import { buildContext } from '../../src/context/build.js';
import { ContextCache } from '../../src/context/cache.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { countTokens } from '../../src/context/tokens.js';
import type { BuilderOutput, ContextItem } from '../../src/context/types.js';
import { json, makeContext, startJsonService, type JsonService } from './helpers.js';

let svc: JsonService;
let rt: ContextRuntime | undefined;
beforeAll(async () => {
  svc = await startJsonService();
});
afterAll(() => svc.close());
afterEach(async () => {
  await rt?.close();
  rt = undefined;
  svc.requests.length = 0;
});

const user = (content: string) => ({ role: 'user', content });

/** The issues `promptgate check` reports for a config with `extra` (YAML) appended. */
function issuesOf(extra: string): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'ctx-review-'));
  mkdirSync(path.join(dir, 'templates'));
  const file = path.join(dir, 'gateway.config.yaml');
  writeFileSync(file, `upstreams: [{name: sim, simulate: {latency_ms: 0}}]\nrouting: {default: [sim]}\ntemplates: {dir: templates}\n${extra}`);
  try {
    loadConfigFile(file, { env: {} });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
}

describe('config combinations that only showed at request time (or never)', () => {
  it('a body without method: POST is a load error at its path, not a GET that silently drops it', async () => {
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://x/orders", body: {customer: "{{user_id}}"}}]}\n')).toEqual([
      'gateway.config.yaml: context.builders[0].body (line 4): a body is only sent with method: POST',
    ]);
    expect(issuesOf('context: {builders: [{name: kb, kind: knowledge, http: {url: "http://x/q", body: {q: "{{query}}"}}}]}\n')).toEqual([
      'gateway.config.yaml: context.builders[0].http.body (line 4): a body is only sent with method: POST',
    ]);
    expect(issuesOf('context: {builders: [{name: c, kind: http, method: POST, url: "http://x/orders", body: {customer: "{{user_id}}"}}]}\n')).toEqual([]);
  });

  it('two pick paths that both become one field are a load error, not a silently overwritten field', () => {
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://x/c", pick: [profile.name, company.name]}]}\n')).toEqual([
      'gateway.config.yaml: context.builders[0].pick[1] (line 4): "company.name" and "profile.name" both become field "name" (use pick: {field: path} to name them)',
    ]);
    const bad = issuesOf('context: {builders: [{name: c, kind: http, url: "http://x/c", pick: {a: "profile..name", b: ""}}]}\n');
    expect(bad).toHaveLength(2);
    expect(bad[0]).toMatch(/^gateway\.config\.yaml: context\.builders\[0\]\.pick\.a .*expected a dotted path/);
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://x/c", pick: {person: profile.name, company: company.name}}]}\n')).toEqual([]);
  });

  it('one header under two spellings is a load error, not one of them silently dropped', () => {
    expect(issuesOf('context: {builders: [{name: c, kind: http, url: "http://x/c", headers: {Authorization: "Bearer a", authorization: "Bearer b"}}]}\n')).toEqual([
      'gateway.config.yaml: context.builders[0].headers.authorization (line 4): header "authorization" is also set as "Authorization" (header names are case-insensitive)',
    ]);
  });

  it('a builder named user_id is a load error, not one that took {{user_id}} from every other builder', () => {
    const issues = issuesOf('context: {builders: [{name: user_id, kind: rules}, {name: c, kind: http, url: "http://x/c/{{user_id}}"}]}\n');
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^gateway\.config\.yaml: context\.builders\[0\]\.name .*"user_id" is the request's user id/);
  });

  it('an empty operator object is a load error, not a condition that matches every request', () => {
    const issues = issuesOf('context: {builders: [{name: r, kind: rules, rules: [{when: {customer_tier: {}}, set: {refund_limit_usd: 500}}]}]}\n');
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/context\.builders\[0\]\.rules\[0\]\.when\.customer_tier .*at least one operator/);
  });
});

describe('rules over a service that sends amounts as strings', () => {
  it('gte/lt compare "5200.00" as the number it is (was: never matched), equality stays strict', async () => {
    svc.route(/^\/ltv\//, (req, res) => {
      const id = req.url.split('/').at(-1);
      const body = id === 'big' ? { ltv: '5200.00', tier: 'Gold' } : id === 'small' ? { ltv: '12.5', tier: 'gold' } : { ltv: 'n/a', tier: 3 };
      return json(body)(req, res);
    });
    rt = new ContextRuntime();
    const { plan } = makeContext(
      {
        deadline_ms: 5000, // a loaded test machine must not turn this into a deadline test
        builders: [
          { name: 'customer', kind: 'http', url: `${svc.url}/ltv/{{user_id}}` },
          {
            name: 'perks',
            kind: 'rules',
            defaults: { priority_queue: false, gold: false, small: false },
            rules: [
              { when: { 'customer.ltv': { gte: 5000 } }, set: { priority_queue: true } },
              { when: { 'customer.tier': 'gold' }, set: { gold: true } },
              { when: { 'customer.ltv': { lt: 100 } }, set: { small: true } },
            ],
          },
        ],
      },
      { use: ['perks'] },
    );
    const perks = async (userId: string) => (await buildContext(rt!, plan, { messages: [], userId, variables: {} })).variables.perks;
    expect(await perks('big')).toEqual({ priority_queue: true, gold: false, small: false });
    expect(await perks('small')).toEqual({ priority_queue: false, gold: true, small: true });
    expect(await perks('odd')).toEqual({ priority_queue: false, gold: false, small: false }); // "n/a" is no number
  });
});

describe('knowledge passages from a search endpoint', () => {
  it('count their source in the budget and never render a title object as "[object Object]"', async () => {
    const source = 'https://help.example.com/articles/refunds/how-long-does-a-refund-to-my-card-take?lang=en&ref=search';
    svc.route('/kb-search', json({ results: [{ title: { en: 'Refund timing' }, text: 'Card refunds take 5 to 10 business days.', score: 2, source }] }));
    rt = new ContextRuntime();
    const { plan } = makeContext({ deadline_ms: 5000, builders: [{ name: 'knowledge', kind: 'knowledge', http: { url: `${svc.url}/kb-search?q={{query}}` } }] }, { use: ['knowledge'] });
    const r = await buildContext(rt, plan, { messages: [user('how long does a refund take?')], userId: 'u', variables: {} });
    expect(r.variables.knowledge).toEqual([{ title: '', text: 'Card refunds take 5 to 10 business days.', score: 2, source }]);
    expect(r.report.tokens).toBe(countTokens('Card refunds take 5 to 10 business days.') + countTokens(source) + 4);
  });

  it('from the local index count their source too (it is rendered as [{{source}}])', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 1 }] }, { use: ['knowledge'] });
    const r = await buildContext(rt, plan, { messages: [user('refund to my card, how long?')], userId: 'u', variables: {} });
    const [p] = r.variables.knowledge as Array<{ title: string; text: string; source: string }>;
    expect(r.report.tokens).toBe(countTokens(p.title) + countTokens(p.text) + countTokens(p.source) + 4);
  });
});

describe('a cache with a large max_entries', () => {
  it('allocates nothing up front and works beyond 2^32 entries (was: 600 MB at 50M, a throw on every request beyond 2^32)', async () => {
    const before = process.memoryUsage().arrayBuffers;
    const big = new ContextCache<string>({ ttl_ms: 1000, max_entries: 50_000_000, stale_while_revalidate_ms: 0, stale_if_error_ms: 0 });
    expect((await big.get('k', async () => 'v')).value).toBe('v');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(50_000_000);

    svc.route(/^\/huge-cache\//, json({ tier: 'gold' }));
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { deadline_ms: 5000, builders: [{ name: 'customer', kind: 'http', url: `${svc.url}/huge-cache/{{user_id}}`, cache: { ttl_ms: 60_000, max_entries: 2 ** 32 + 1 } }] },
      { use: ['customer'] },
    );
    const build = () => buildContext(rt!, plan, { messages: [], userId: 'alice', variables: {} });
    expect((await build()).report.builders[0]).toMatchObject({ status: 'ok', cache: 'miss' });
    expect((await build()).report.builders[0]).toMatchObject({ status: 'cached', cache: 'hit' });
  });
});

describe('history during a tool-calling round', () => {
  it('ends before the current question: the round after it is not repeated (was: its tool result came back as history, without the question)', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'history', kind: 'history', max_turns: 2, roles: ['user', 'assistant', 'tool'] }] }, { use: ['history'] });
    const messages = [
      user('earlier question'),
      { role: 'assistant', content: 'earlier answer' },
      user('where is order 42?'),
      { role: 'assistant', content: 'Let me look that up.', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'order', arguments: '{"id":42}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"status":"shipped","carrier":"UPS"}' },
    ];
    const r = await buildContext(rt, plan, { messages, userId: 'u', variables: {} });
    expect(r.variables.history).toEqual([
      { role: 'user', content: 'earlier question' },
      { role: 'assistant', content: 'earlier answer' },
    ]);
    const { plan: all } = makeContext({ builders: [{ name: 'history', kind: 'history', max_turns: 10, roles: ['user', 'assistant', 'tool'], include_current: true }] }, { use: ['history'] });
    expect(((await buildContext(rt, all, { messages, userId: 'u', variables: {} })).variables.history as unknown[]).length).toBe(5);
  });
});

describe('an id beyond 2^53 sent as a JSON number', () => {
  it('is not used in another builder\'s URL or body (was: rounded by JSON.parse, it fetched another customer\'s orders)', async () => {
    svc.route(/^\/bigid-profile\//, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id": 12345678901234567891, "small_id": 42}');
    });
    svc.route(/^\/bigid-orders\//, json({ open: 1 }));
    rt = new ContextRuntime();
    const config = (field: string) => ({
      deadline_ms: 5000,
      builders: [
        { name: 'customer', kind: 'http', url: `${svc.url}/bigid-profile/{{user_id}}` },
        { name: 'orders', kind: 'http', url: `${svc.url}/bigid-orders/{{customer.${field}}}` },
        { name: 'order_search', kind: 'http', method: 'POST', url: `${svc.url}/bigid-orders/search`, body: { customer: `{{customer.${field}}}` } },
      ],
    });
    const r = await buildContext(rt, makeContext(config('id'), { use: ['orders', 'order_search'] }).plan, { messages: [], userId: 'alice', variables: {} });
    expect(r.report.builders.filter((b) => b.name !== 'customer').map((b) => [b.name, b.status, b.reason])).toEqual([
      ['orders', 'skipped', 'missing_input'],
      ['order_search', 'skipped', 'missing_input'],
    ]);
    expect(svc.requests.filter((q) => q.url.startsWith('/bigid-orders'))).toEqual([]);
    const ok = await buildContext(rt, makeContext(config('small_id'), { use: ['orders', 'order_search'] }).plan, { messages: [], userId: 'alice', variables: {} });
    expect(ok.variables).toEqual({ orders: { open: 1 }, order_search: { open: 1 } });
    expect(svc.requests.find((q) => q.method === 'POST')?.body).toEqual({ customer: 42 });
  });
});

describe('the token budget when a big section is dropped whole', () => {
  const turns = (n: number): BuilderOutput => ({ shape: 'items', trimFrom: 'start', items: Array.from({ length: n }, (_, i): ContextItem => ({ value: { content: `turn ${i}` }, tokens: 10 })) });
  const passages: BuilderOutput = { shape: 'items', trimFrom: 'end', items: [30, 20, 10].map((tokens, i): ContextItem => ({ value: { text: `passage ${i}` }, tokens })) };
  const profile: BuilderOutput = { shape: 'object', value: { whole: 'profile' }, tokens: 2000 };

  it('gives the sections emptied before it back what fits (was: a 2,000-token profile over budget left no context at all)', () => {
    const r = fitBudget(
      [
        { name: 'customer', priority: 80, output: profile },
        { name: 'knowledge', priority: 50, output: passages },
        { name: 'history', priority: 40, output: turns(4) },
      ],
      75,
    );
    const by = Object.fromEntries(r.sections.map((s) => [s.name, s]));
    expect(by.customer).toMatchObject({ output: undefined, tokens: 0, trimmed: 1 });
    // Knowledge (higher priority) first: all of it fits again; then the newest turn.
    expect(by.knowledge).toMatchObject({ output: passages, tokens: 60, trimmed: 0 });
    const history = turns(4) as Extract<BuilderOutput, { shape: 'items' }>;
    expect(by.history.output).toEqual({ ...history, items: history.items.slice(3) });
    expect(by.history).toMatchObject({ tokens: 10, trimmed: 3 });
    expect(r.tokens).toBe(70);
    expect(r.dropped).toBe(4);
  });

  it('changes nothing when trimming alone met the budget', () => {
    const r = fitBudget(
      [
        { name: 'knowledge', priority: 50, output: passages },
        { name: 'history', priority: 40, output: turns(4) },
      ],
      75,
    );
    expect(r.sections.map((s) => [s.name, s.tokens, s.trimmed])).toEqual([
      ['knowledge', 60, 0],
      ['history', 10, 3],
    ]);
    expect(r.tokens).toBe(70);
  });
});

describe('an answer labelled with a charset other than UTF-8', () => {
  it('is read in that charset (was: "Zoë" from a latin-1 service reached the prompt as "Zo\\uFFFD")', async () => {
    svc.route('/latin1', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json; charset=ISO-8859-1' });
      res.end(Buffer.from('{"name":"Zoë Ångström"}', 'latin1'));
    });
    svc.route('/utf8-label', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json;charset="utf-8"' });
      res.end(Buffer.from('{"name":"Zoë Ångström"}', 'utf8'));
    });
    svc.route('/bogus-charset', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json; charset=x-nonsense' });
      res.end('{"name":"Zoë"}');
    });
    rt = new ContextRuntime();
    const build = async (p: string) => {
      const { plan } = makeContext({ deadline_ms: 5000, builders: [{ name: 'customer', kind: 'http', url: `${svc.url}${p}` }] }, { use: ['customer'] });
      return buildContext(rt!, plan, { messages: [], userId: 'u', variables: {} });
    };
    expect((await build('/latin1')).variables.customer).toEqual({ name: 'Zoë Ångström' });
    expect((await build('/utf8-label')).variables.customer).toEqual({ name: 'Zoë Ångström' });
    expect((await build('/bogus-charset')).report.builders[0]).toMatchObject({ status: 'failed', reason: 'invalid_response' });
  });
});
