/**
 * End to end through the gateway: real sockets, the mock upstream recording request bodies,
 * a customer service on port 0, the shipped knowledge base and support-context template.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCustomerService, type CustomerService } from '../../examples/support/customer-service.js';
import { startDemo } from '../../examples/support/demo.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { ROOT } from './helpers.js';

let upstream: MockUpstream;
let customers: CustomerService;
let gw: TestGateway | undefined;

beforeAll(async () => {
  upstream = await startMockUpstream();
  customers = await startCustomerService({ token: 'tok' });
});
afterAll(async () => {
  await upstream.close();
  await customers.close();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  upstream.requests.length = 0;
  customers.hits.clear();
});

function contextConfig(opts: { customerUrl?: string; required?: boolean; guard?: string } = {}): string {
  return `
bindings: [{model: support-bot, template: support-context}]
context:
  deadline_ms: 500
  builders:
    - name: customer
      kind: http
      url: "${opts.customerUrl ?? customers.url}/customers/{{user_id}}"
      headers: {authorization: "Bearer tok"}
      required: ${opts.required ?? false}
      pick: {name: name, tier: tier, since: customer_since, open_tickets: open_tickets}
      cache: {ttl_ms: 60000}
    - name: tier_rules
      kind: rules
      defaults: {actions: [answer questions], refund_limit_usd: 50, escalate_after_turns: 4, queue: standard}
      rules:
        - when: {customer.tier: gold}
          set: {actions: [answer questions, refund within the limit], refund_limit_usd: 500, escalate_after_turns: 2, queue: priority}
    - name: knowledge
      kind: knowledge
      dir: ${ROOT}/config/knowledge
      top_k: 3
    - name: history
      kind: history
      max_turns: 6
guard: {injection: ${opts.guard ?? '{action: flag, threshold: 0.5, scan: [user, context]}'}}
`;
}

const start = (extra: string) => startTestGateway(mockConfig(upstream.url, extra), { templates: [`${ROOT}/config/templates/support-context.yaml`] });

async function chat(body: object) {
  const res = await request(`${gw!.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: () => JSON.parse(text) };
}

const conversation = [
  { role: 'user', content: 'My parcel has not moved in a week.' },
  { role: 'assistant', content: 'I am sorry. What is the order number?' },
  { role: 'user', content: 'Order 1234. Can I get a refund to my card, and how long does it take?' },
];

describe('context through the gateway', () => {
  it('the upstream receives the rendered context: profile, tier rules, passages and history', async () => {
    gw = await start(contextConfig());
    // Both recipes' statistics exist from the start, at 0 (a series appearing at 1 loses that observation in increase()).
    const atStart = await scrapeMetricsText(gw.url);
    for (const recipe of ['focused', 'broad']) {
      for (const metric of ['success', 'latency_ms', 'input_tokens', 'context_tokens']) {
        expect(atStart).toContain(`promptgate_experiment_observations_total{experiment="support-context@1.0.0:context",variant="${recipe}",metric="${metric}"} 0`);
      }
    }
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: 'support-bot', user: 'user-alice', messages: conversation as never });
    expect(completion.choices[0].message.content).toBe('Hello from the mock upstream!');

    const sent = upstream.requests[0].body;
    expect(sent.model).toBe('gpt-4o-mini');
    const system: string = sent.messages[0].content;
    expect(sent.messages[0].role).toBe('system');
    expect(system).toContain('Customer: Alice Martin, gold plan, customer since 2019-03-14, 0 open tickets.');
    expect(system).toContain('- refund within the limit');
    expect(system).toContain('Approve refunds up to 500 USD yourself');
    expect(system).toContain('[refunds.md#refund-timing] Refunds — Refund timing');
    expect(system).toContain('Card refunds\ntake 5 to 10 business days');
    expect(system).toContain('user: My parcel has not moved in a week.\nassistant: I am sorry. What is the order number?');
    expect(system).not.toContain('Order 1234'); // the current question is not history...
    expect(sent.messages.slice(1)).toEqual(conversation); // ...it stays a turn of its own
    expect(customers.hits.get('/customers/user-alice')).toBe(1);

    // A second request is served from the cache; the metrics say so.
    await client.chat.completions.create({ model: 'support-bot', user: 'user-alice', messages: conversation as never });
    expect(customers.hits.get('/customers/user-alice')).toBe(1);
    const metrics = await scrapeMetricsText(gw.url);
    expect(metrics).toContain('promptgate_context_cache_total{builder="customer",result="hit"} 1');
    expect(metrics).toMatch(/promptgate_experiment_observations_total\{experiment="support-context@1\.0\.0:context",variant="(focused|broad)",metric="success"\} \d/);
  });

  it('goes out without the profile when the customer service is down, and says what was skipped', async () => {
    gw = await start(contextConfig({ customerUrl: 'http://127.0.0.1:9' }));
    const res = await chat({ model: 'support-bot', user: 'user-alice', messages: conversation });
    expect(res.status).toBe(200);
    const system: string = upstream.requests[0].body.messages[0].content;
    expect(system).toContain("The customer's profile is unavailable");
    expect(system).toContain('Approve refunds up to 50 USD yourself'); // default tier rules
    expect(system).toContain('[refunds.md#');
    const metrics = await scrapeMetricsText(gw.url);
    expect(metrics).toContain('promptgate_context_failures_total{builder="customer",reason="unreachable"} 1');
  });

  // Regression: with the customer service down, a client's own `customer` variable was
  // rendered (and read by the tier rules) in place of the missing profile.
  it('a builder that produced nothing leaves its declared default, never the client value of that name', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-tpl-'));
    const file = path.join(dir, 'vip-check.yaml');
    writeFileSync(
      file,
      `id: vip-check
name: VIP check
versions:
  - version: "1.0.0"
    labels: [production]
    model: gpt-4o-mini
    variables:
      customer: {type: object, default: {tier: unknown}}
    context:
      use: [customer, tier_rules]
    messages:
      - role: system
        content: "Tier: {{customer.tier}}. Refunds up to {{tier_rules.refund_limit_usd}} USD."
`,
    );
    gw = await startTestGateway(mockConfig(upstream.url, contextConfig({ customerUrl: 'http://127.0.0.1:9' }).replace('template: support-context', 'template: vip-check')), { templates: [file] });
    const res = await chat({ model: 'support-bot', user: 'user-alice', messages: conversation, prompt_variables: { customer: { tier: 'gold' } } });
    expect(res.status).toBe(200);
    expect(upstream.requests[0].body.messages[0].content).toBe('Tier: unknown. Refunds up to 50 USD.');
  });

  it('answers 424 context_unavailable when a required builder fails, without calling the upstream', async () => {
    gw = await start(contextConfig({ customerUrl: 'http://127.0.0.1:9', required: true }));
    const res = await chat({ model: 'support-bot', user: 'user-alice', messages: conversation });
    expect(res.status).toBe(424);
    expect(res.json()).toEqual({
      error: { message: 'Required context "customer" is unavailable (unreachable).', type: 'server_error', param: null, code: 'context_unavailable' },
    });
    expect(res.headers['x-promptgate-template']).toBe('support-context');
    expect(upstream.requests).toHaveLength(0);
  });

  it('a template version without context is untouched by the context step', async () => {
    gw = await startTestGateway(mockConfig(upstream.url, contextConfig()), {
      templates: [`${ROOT}/config/templates/support-context.yaml`, `${ROOT}/config/templates/support-reply.yaml`],
    });
    const res = await chat({ model: 'gpt-4o-mini', prompt_id: 'support-reply', user: 'user-alice', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    expect(upstream.requests[0].body.messages[0].content).toContain('You are the customer support assistant of Acme.');
    expect(customers.hits.size).toBe(0);
  });
});

describe('the demo (npm run demo)', () => {
  it('starts the customer service and the gateway on the simulator and serves support-bot with context', async () => {
    process.env.PROMPTGATE_LOG_LEVEL = 'silent';
    const demo = await startDemo({ port: 0, customerPort: 0, handleSignals: false });
    try {
      const client = new OpenAI({ baseURL: `${demo.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const r = await client.chat.completions.create({ model: 'support-bot', user: 'user-bob', messages: [{ role: 'user', content: 'How do I reset my password?' }] });
      expect(r.choices[0].message.content).toBeTruthy();
      expect(demo.customers.hits.get('/customers/user-bob')).toBe(1);
      const metrics = await scrapeMetricsText(demo.url);
      expect(metrics).toMatch(/promptgate_context_build_duration_seconds_count\{builder="customer",kind="http",outcome="ok"\} 1/);
      expect(metrics).toMatch(/promptgate_context_build_duration_seconds_count\{builder="knowledge",kind="knowledge",outcome="ok"\} 1/);
    } finally {
      await demo.close();
    }
  });
});
