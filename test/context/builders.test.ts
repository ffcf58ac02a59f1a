/** Each builder kind against real servers (port 0) and real files. */
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { chunkDocument, keepOnlyKnowledgeBases, loadKnowledgeBase } from '../../src/context/knowledge-base.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { countTokens } from '../../src/context/tokens.js';
import { json, makeContext, ROOT, startJsonService, type JsonService } from './helpers.js';

let svc: JsonService;
let rt: ContextRuntime;
beforeAll(async () => {
  svc = await startJsonService();
});
afterAll(() => svc.close());
afterEach(async () => {
  await rt?.close();
  svc.requests.length = 0;
});

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });

describe('http builder', () => {
  it('fills the URL template (URL-encoded), sends configured headers, and picks fields', async () => {
    svc.route(/^\/customers\//, json({ id: 'x', profile: { tier: 'gold', name: 'Ada' }, ssn: 'never-injected' }));
    rt = new ContextRuntime();
    const { plan } = makeContext(
      {
        builders: [
          {
            name: 'customer',
            kind: 'http',
            url: `${svc.url}/customers/{{user_id}}?region={{region}}`,
            headers: { authorization: 'Bearer tok-1', 'x-tenant': '{{region}}' },
            pick: { tier: 'profile.tier', name: 'profile.name', missing: 'profile.nothing' },
          },
        ],
      },
      { use: ['customer'] },
    );
    const r = await buildContext(rt, plan, { messages: [user('hi')], userId: 'a b/c', variables: { region: 'eu west' } });
    expect(svc.requests[0].url).toBe('/customers/a%20b%2Fc?region=eu%20west');
    expect(svc.requests[0].headers.authorization).toBe('Bearer tok-1');
    expect(svc.requests[0].headers['x-tenant']).toBe('eu west');
    expect(r.variables.customer).toEqual({ tier: 'gold', name: 'Ada' });
    expect(r.report.builders[0]).toMatchObject({ name: 'customer', kind: 'http', status: 'ok', items: 1 });
    expect(r.report.builders[0].tokens).toBe(countTokens(JSON.stringify({ tier: 'gold', name: 'Ada' })));
  });

  it('POSTs a JSON body whose lone placeholders keep their type', async () => {
    svc.route('/orders/search', json({ orders: [{ id: 7, status: 'shipped' }] }));
    rt = new ContextRuntime();
    const { plan } = makeContext(
      {
        builders: [
          { name: 'orders', kind: 'http', method: 'POST', url: `${svc.url}/orders/search`, body: { customer: '{{user_id}}', limit: '{{limit}}', note: 'for {{user_id}}' }, pick: ['orders'] },
        ],
      },
      { use: ['orders'] },
      { variables: { limit: { type: 'number' } } },
    );
    const r = await buildContext(rt, plan, { messages: [], userId: 'u9', variables: { limit: 3 } });
    expect(svc.requests[0]).toMatchObject({ method: 'POST', body: { customer: 'u9', limit: 3, note: 'for u9' } });
    expect(r.variables.orders).toEqual({ orders: [{ id: 7, status: 'shipped' }] });
  });

  it('is skipped (missing_input) without calling the service when a placeholder has no value', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'customer', kind: 'http', url: `${svc.url}/customers/{{user_id}}` }] }, { use: ['customer'] });
    const r = await buildContext(rt, plan, { messages: [], userId: undefined, variables: {} });
    expect(r.report.builders[0]).toMatchObject({ status: 'skipped', reason: 'missing_input' });
    expect(r.variables).toEqual({});
    expect(svc.requests).toHaveLength(0);
  });

  it('keeps user values inside their path segment: . and .. and malformed unicode skip the call', async () => {
    svc.route(/^\/customers\//, json({ tier: 'gold' }));
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'customer', kind: 'http', url: `${svc.url}/customers/{{user_id}}/profile?q={{q}}` }] }, { use: ['customer'] });
    const build = (userId: string, q = 'x') => buildContext(rt, plan, { messages: [], userId, variables: { q } });
    // `..` would resolve to /profile (WHATWG URL dot segments), `.` to /customers/profile.
    for (const userId of ['..', '.', 'a\uD800']) {
      const r = await build(userId);
      expect(r.report.builders[0], JSON.stringify(userId)).toMatchObject({ status: 'skipped', reason: 'missing_input' });
    }
    expect(svc.requests).toHaveLength(0);
    // Separators stay inside the segment; dots in the query are harmless.
    await build('a/admin?x=1#f', '..');
    await build('%2e%2e');
    expect(svc.requests.map((r) => r.url)).toEqual(['/customers/a%2Fadmin%3Fx%3D1%23f/profile?q=..', '/customers/%252e%252e/profile?q=x']);
    // A dot segment behind a slash is skipped too: a server that decodes %2F reads `..%2Fadmin` as `../admin`.
    expect((await build('../admin')).report.builders[0]).toMatchObject({ status: 'skipped', reason: 'missing_input' });
    expect(svc.requests).toHaveLength(2);
  });

  it.each([
    ['/bad/503', json({ error: 'x' }, { status: 503 }), 'http_5xx'],
    ['/bad/404', json({ error: 'x' }, { status: 404 }), 'http_4xx'],
    ['/bad/html', async (_r: unknown, res: import('node:http').ServerResponse) => res.end('<html>'), 'invalid_response'],
    ['/bad/array', json([1, 2]), 'invalid_response'],
    // Regression: a redirect (not followed) was reported as http_4xx.
    ['/bad/302', async (_r: unknown, res: import('node:http').ServerResponse) => res.writeHead(302, { location: '/elsewhere' }).end(), 'http_3xx'],
  ])('fails with reason for %s', async (p, handler, reason) => {
    svc.route(p, handler as never);
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'svc', kind: 'http', url: `${svc.url}${p}` }] }, { use: ['svc'] });
    const r = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {} });
    expect(r.report.builders[0]).toMatchObject({ status: 'failed', reason });
    expect(r.report.skipped).toEqual(['svc']);
  });
});

it('reads a JSON answer that starts with a byte order mark', async () => {
  svc.route('/bom', async (_r, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('\ufeff{"tier":"gold"}');
  });
  rt = new ContextRuntime();
  const { plan } = makeContext({ builders: [{ name: 'svc', kind: 'http', url: `${svc.url}/bom` }] }, { use: ['svc'] });
  const r = await buildContext(rt, plan, { messages: [], userId: 'u', variables: {} });
  expect(r.report.builders[0].status).toBe('ok');
  expect(r.variables.svc).toEqual({ tier: 'gold' });
});

describe('rules builder', () => {
  const rulesConfig = (svcUrl: string) => ({
    builders: [
      { name: 'customer', kind: 'http', url: `${svcUrl}/customers/{{user_id}}` },
      {
        name: 'tier_rules',
        kind: 'rules',
        defaults: { refund_limit_usd: 50, actions: ['answer'], escalate_after: 4 },
        rules: [
          { when: { 'customer.tier': 'gold' }, set: { refund_limit_usd: 500, actions: ['answer', 'refund'] } },
          { when: { 'customer.tier': ['silver', 'bronze'] }, set: { refund_limit_usd: 150 } },
          { when: { 'customer.open_tickets': { gte: 3 }, channel: { ne: 'phone' } }, set: { escalate_after: 1 } },
          { when: { 'customer.tier': null }, set: { note: 'unknown customer' } },
        ],
      },
    ],
  });

  it('evaluates tier rules over another builder\'s output (which it waits for)', async () => {
    svc.route('/customers/gold-1', json({ tier: 'gold', open_tickets: 5 }, { delayMs: 30 }));
    rt = new ContextRuntime();
    const { plan } = makeContext(rulesConfig(svc.url), { use: ['tier_rules'] });
    const r = await buildContext(rt, plan, { messages: [], userId: 'gold-1', variables: { channel: 'chat' } });
    expect(r.variables).toEqual({ tier_rules: { refund_limit_usd: 500, actions: ['answer', 'refund'], escalate_after: 1 } });
    // `customer` ran as a dependency but is not a variable: the version does not use it.
    expect(r.report.builders.map((b) => [b.name, b.status])).toEqual([
      ['customer', 'ok'],
      ['tier_rules', 'ok'],
    ]);
  });

  it('applies defaults and the absent-value rule when the dependency fails', async () => {
    svc.route('/customers/down', json({}, { status: 500 }));
    rt = new ContextRuntime();
    const { plan } = makeContext(rulesConfig(svc.url), { use: ['customer', 'tier_rules'] });
    const r = await buildContext(rt, plan, { messages: [], userId: 'down', variables: {} });
    expect(r.variables).toEqual({ tier_rules: { refund_limit_usd: 50, actions: ['answer'], escalate_after: 4, note: 'unknown customer' } });
    expect(r.report.skipped).toEqual(['customer']);
  });

  it('does not read a client variable in place of a dependency that was skipped', async () => {
    svc.route('/customers/down-2', json({}, { status: 503 }));
    rt = new ContextRuntime();
    // The version declares `customer` (for its type check and default), so a client can send one.
    const { plan } = makeContext(rulesConfig(svc.url), { use: ['customer', 'tier_rules'] }, { variables: { customer: { type: 'object', default: {} } } });
    const r = await buildContext(rt, plan, { messages: [], userId: 'down-2', variables: { customer: { tier: 'gold' } } });
    expect(r.report.skipped).toEqual(['customer']);
    expect(r.variables.tier_rules).toMatchObject({ refund_limit_usd: 50, note: 'unknown customer' });
  });

  it('match: first stops at the first matching rule', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(
      {
        builders: [
          {
            name: 'r',
            kind: 'rules',
            match: 'first',
            rules: [
              { when: { score: { gt: 10, lte: 20 } }, set: { band: 'mid' } },
              { when: { score: { gt: 0 } }, set: { band: 'low', other: true } },
            ],
          },
        ],
      },
      { use: ['r'] },
      { variables: { score: { type: 'number' } } },
    );
    const run = async (score: number) => (await buildContext(rt, plan, { messages: [], userId: 'u', variables: { score } })).variables.r;
    expect(await run(15)).toEqual({ band: 'mid' });
    expect(await run(5)).toEqual({ band: 'low', other: true });
    expect(await run(-1)).toEqual({});
  });
});

describe('history builder', () => {
  const conversation = [
    { role: 'system', content: 'client system prompt' },
    user('first question about shipping'),
    assistant('first answer'),
    user('second question'),
    assistant('second answer'),
    { role: 'user', content: [{ type: 'text', text: 'third' }, { type: 'text', text: 'question' }] },
    assistant('third answer'),
    user('the current question'),
  ];

  it('keeps the last max_turns turns oldest first, without the current question or system messages', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'history', kind: 'history', max_turns: 3 }] }, { use: ['history'] });
    const r = await buildContext(rt, plan, { messages: conversation as never, userId: 'u', variables: {} });
    expect(r.variables.history).toEqual([
      { role: 'assistant', content: 'second answer' },
      { role: 'user', content: 'third\nquestion' },
      { role: 'assistant', content: 'third answer' },
    ]);
  });

  it('drops the oldest turns first to fit max_tokens (real tokenizer)', async () => {
    rt = new ContextRuntime();
    const costs = conversation.slice(1, -1).map((m) => countTokens(typeof m.content === 'string' ? m.content : 'third\nquestion') + 3);
    const lastThree = costs.slice(-3).reduce((a, b) => a + b, 0);
    const { plan } = makeContext({ builders: [{ name: 'history', kind: 'history', max_turns: 10, max_tokens: lastThree }] }, { use: ['history'] });
    const r = await buildContext(rt, plan, { messages: conversation as never, userId: 'u', variables: {} });
    expect((r.variables.history as unknown[]).length).toBe(3);
    expect(r.report.builders[0].tokens).toBe(lastThree);
    const { plan: tighter } = makeContext({ builders: [{ name: 'history', kind: 'history', max_turns: 10, max_tokens: lastThree - 1 }] }, { use: ['history'] });
    const t = await buildContext(rt, tighter, { messages: conversation as never, userId: 'u', variables: {} });
    expect(t.variables.history).toEqual([
      { role: 'user', content: 'third\nquestion' },
      { role: 'assistant', content: 'third answer' },
    ]);
  });
});

describe('knowledge builder', () => {
  it('retrieves the best passages of the shipped knowledge base for the last user message', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 2 }] }, { use: ['knowledge'] });
    const r = await buildContext(rt, plan, { messages: [user('My parcel is lost, tracking has not changed for a week')], userId: 'u', variables: {} });
    const hits = r.variables.knowledge as Array<{ title: string; text: string; score: number; source: string }>;
    expect(hits).toHaveLength(2);
    expect(hits[0]).toMatchObject({ source: 'shipping.md#lost-or-delayed-parcels', title: 'Shipping — Lost or delayed parcels' });
    expect(hits[0].text).toContain('considered lost');
    expect(hits[0].score).toBeGreaterThan(hits[1].score);
  });

  it('chunks at headings and packs long sections into chunk_tokens-sized pieces', () => {
    const long = Array.from({ length: 12 }, (_, i) => `Paragraph ${i} ${'word '.repeat(40).trim()}`).join('\n\n');
    const chunks = chunkDocument('guide.md', `---\ntitle: The Guide\n---\n# Ignored H1\n\n## Setup\n${long}\n\n## Usage\nShort.\n`, 100);
    expect(new Set(chunks.map((c) => c.source))).toEqual(new Set(['guide.md#setup', 'guide.md#usage']));
    const setup = chunks.filter((c) => c.source === 'guide.md#setup');
    expect(setup.length).toBeGreaterThan(2);
    expect(setup.every((c) => c.text.length <= 400 && c.title === 'The Guide — Setup')).toBe(true);
    expect(setup.map((c) => c.text).join('\n\n')).toBe(long);
  });

  it('indexes nested .md/.txt files and reuses the index when nothing changed', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kb-'));
    mkdirSync(path.join(dir, 'faq'));
    writeFileSync(path.join(dir, 'faq', 'billing-faq.txt'), 'Invoices are emailed on the first day of each month.');
    writeFileSync(path.join(dir, 'notes.json'), '{"ignored": true}');
    const kb = loadKnowledgeBase(dir, { chunkTokens: 200 });
    expect(kb.chunks).toEqual([{ id: 0, title: 'Billing faq', text: 'Invoices are emailed on the first day of each month.', source: 'faq/billing-faq.txt' }]);
    expect(loadKnowledgeBase(dir, { chunkTokens: 200 })).toBe(kb);
    writeFileSync(path.join(dir, 'more.md'), '# More\nInvoices can be downloaded as PDF.');
    const next = loadKnowledgeBase(dir, { chunkTokens: 200 });
    expect(next).not.toBe(kb);
    expect(next.search('invoices pdf', { topK: 1 })[0].chunk.source).toBe('more.md');
  });

  it('keeps one index per chunk size: two builders reading one directory with different chunk_tokens do not rebuild each other', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kb-two-sizes-'));
    writeFileSync(path.join(dir, 'refunds.md'), `# Refunds\n${'Refunds reach the card within five business days. '.repeat(40)}`);
    const small = loadKnowledgeBase(dir, { chunkTokens: 100 });
    const large = loadKnowledgeBase(dir, { chunkTokens: 400 });
    expect(small.chunks.length).toBeGreaterThan(large.chunks.length);
    // A reload that finds the same files reuses both.
    expect(loadKnowledgeBase(dir, { chunkTokens: 100 })).toBe(small);
    expect(loadKnowledgeBase(dir, { chunkTokens: 400 })).toBe(large);
    // A config that no longer uses one lets it go: loading it again builds it anew.
    keepOnlyKnowledgeBases([large]);
    expect(loadKnowledgeBase(dir, { chunkTokens: 400 })).toBe(large);
    expect(loadKnowledgeBase(dir, { chunkTokens: 100 })).not.toBe(small);
  });

  it('follows symlinked files and directories, as in a Kubernetes ConfigMap volume', () => {
    // kubelet layout: name -> ..data/name, ..data -> ..<timestamp>/
    const dir = mkdtempSync(path.join(tmpdir(), 'kb-configmap-'));
    mkdirSync(path.join(dir, '..2026_11_24_00_00_00.1'));
    writeFileSync(path.join(dir, '..2026_11_24_00_00_00.1', 'refunds.md'), '# Refunds\nRefunds reach the card within 5 business days.');
    symlinkSync('..2026_11_24_00_00_00.1', path.join(dir, '..data'));
    symlinkSync('..data/refunds.md', path.join(dir, 'refunds.md'));
    const shared = mkdtempSync(path.join(tmpdir(), 'kb-shared-'));
    writeFileSync(path.join(shared, 'billing.txt'), 'Invoices are emailed monthly.');
    symlinkSync(shared, path.join(dir, 'shared'));
    symlinkSync(dir, path.join(shared, 'loop')); // a link back up the tree is not followed again
    symlinkSync(path.join(dir, 'gone.md'), path.join(dir, 'dangling.md'));
    const kb = loadKnowledgeBase(dir, { chunkTokens: 200 });
    expect(kb.chunks.map((c) => c.source)).toEqual(['refunds.md', 'shared/billing.txt']);
    expect(kb.search('refunds card', { topK: 1 })[0].chunk.title).toBe('Refunds');
  });

  it('cuts text without spaces (CJK sentences, long URLs) to chunk_tokens too', () => {
    const cjk = '退款将在五个工作日内退回到您的原支付方式。'.repeat(40);
    const url = `https://example.com/${'x'.repeat(1000)}`;
    for (const text of [cjk, url, `😀${'😀'.repeat(300)}`]) {
      const chunks = chunkDocument('r.md', `# T\n${text}`, 50);
      expect(chunks.length).toBeGreaterThan(1);
      expect(chunks.every((c) => c.text.length <= 200 && !/\p{Cs}/u.test(c.text))).toBe(true);
      expect(chunks.map((c) => c.text).join('')).toBe(text);
    }
  });

  it('reads a title and front matter after a UTF-8 byte order mark', () => {
    expect(chunkDocument('r.md', '\uFEFF# Refunds\n## Timing\nFive days.', 200)).toEqual([{ title: 'Refunds — Timing', text: 'Five days.', source: 'r.md#timing' }]);
    expect(chunkDocument('r.md', '\uFEFF---\ntitle: Refunds\n---\nFive days.', 200)).toEqual([{ title: 'Refunds', text: 'Five days.', source: 'r.md' }]);
  });

  it('merges an HTTP search endpoint with the local index and keeps local results when it fails', async () => {
    svc.route('/search', async (req, res) => {
      const q = new URL(req.url, 'http://x').searchParams;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hits: [{ heading: 'Remote refund FAQ', body: `About: ${q.get('q')}`, relevance: 0.9, url: 'https://kb/1' }].slice(0, Number(q.get('k'))) }));
    });
    svc.route('/search-down', json({}, { status: 502 }));
    rt = new ContextRuntime();
    const remote = (p: string) => ({
      url: `${svc.url}${p}?q={{query}}&k={{top_k}}`,
      results: 'hits',
      fields: { title: 'heading', text: 'body', score: 'relevance', source: 'url' },
    });
    const { plan } = makeContext({ builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 3, http: remote('/search') }] }, { use: ['knowledge'] });
    const r = await buildContext(rt, plan, { messages: [user('refund to my card, how long?')], userId: 'u', variables: {} });
    const hits = r.variables.knowledge as Array<{ source: string; text: string; score: number }>;
    expect(hits).toHaveLength(3);
    expect(hits.map((h) => h.source)).toContain('https://kb/1');
    expect(hits.find((h) => h.source === 'https://kb/1')).toMatchObject({ text: 'About: refund to my card, how long?', score: 0.9 });
    expect(hits[0].source).toMatch(/^refunds\.md#/); // the best of each list ranks 1.0; local listed first

    const { plan: down } = makeContext({ builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 3, http: remote('/search-down') }] }, { use: ['knowledge'] });
    const d = await buildContext(rt, down, { messages: [user('refund to my card')], userId: 'u', variables: {} });
    expect(d.report.builders[0].status).toBe('ok');
    expect((d.variables.knowledge as Array<{ source: string }>).every((h) => h.source.endsWith('.md') || h.source.includes('.md#'))).toBe(true);
  });

  it('search-only (no dir) fails when the endpoint is down', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { builders: [{ name: 'kb', kind: 'knowledge', http: { url: `${svc.url}/nothing-here?q={{query}}` } }] },
      { use: ['kb'] },
    );
    const r = await buildContext(rt, plan, { messages: [user('anything')], userId: 'u', variables: {} });
    expect(r.report.builders[0]).toMatchObject({ status: 'failed', reason: 'http_4xx' });
  });

  it('is skipped without a user message to search for', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'knowledge', kind: 'knowledge', dir: path.join(ROOT, 'config/knowledge') }] }, { use: ['knowledge'] });
    const r = await buildContext(rt, plan, { messages: [assistant('hello')], userId: 'u', variables: {} });
    expect(r.report.builders[0]).toMatchObject({ status: 'skipped', reason: 'missing_input' });
  });
});
