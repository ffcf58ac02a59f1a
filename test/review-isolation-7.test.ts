/**
 * Review: one user's data reaching another through context builders. Each test is named
 * after what broke. Real services on 127.0.0.1 (port 0), closed by the file.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../src/context/build.js';
import { ContextRuntime } from '../src/context/runtime.js';
import { makeContext, startJsonService, type JsonService } from './context/helpers.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let svc: JsonService;
let upstream: MockUpstream;
let rt: ContextRuntime | undefined;
let gw: TestGateway | undefined;

beforeAll(async () => {
  svc = await startJsonService();
  upstream = await startMockUpstream();
  // The profile service sends its ids as JSON numbers, one of them beyond 2^53.
  svc.route(/^\/profiles\//, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"order_ids": [12345678901234567891, 42], "account": {"id": 12345678901234567891, "region": "eu"}, "small": {"ids": [7, 8]}}');
  });
  // Answers with what it was asked for: a rounded id is another customer's orders.
  svc.route('/orders/lookup', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'shipped', asked: req.body }));
  });
});
afterAll(async () => {
  await svc.close();
  await upstream.close();
});
afterEach(async () => {
  await rt?.close();
  rt = undefined;
  await gw?.close();
  gw = undefined;
  svc.requests.length = 0;
  upstream.requests.length = 0;
});

const lookups = () => svc.requests.filter((r) => r.url === '/orders/lookup');

describe('a body placeholder that keeps a whole object or list', () => {
  it('is not sent when it holds an id beyond 2^53 (was: sent rounded, another customer\'s id, and that answer cached)', async () => {
    rt = new ContextRuntime();
    const config = (field: string) => ({
      deadline_ms: 5000,
      builders: [
        { name: 'customer', kind: 'http', url: `${svc.url}/profiles/{{user_id}}` },
        { name: 'orders', kind: 'http', method: 'POST', url: `${svc.url}/orders/lookup`, body: { customer: `{{customer.${field}}}` }, cache: { ttl_ms: 60_000 } },
      ],
    });
    for (const field of ['order_ids', 'account']) {
      const r = await buildContext(rt, makeContext(config(field), { use: ['orders'] }).plan, { messages: [], userId: 'alice', variables: {} });
      expect([field, r.report.builders.map((b) => [b.name, b.status, b.reason])]).toEqual([
        field,
        [
          ['customer', 'ok', undefined],
          ['orders', 'skipped', 'missing_input'],
        ],
      ]);
    }
    expect(lookups()).toEqual([]);
    // Exact numbers inside an object or list still go out as they are.
    const ok = await buildContext(rt, makeContext(config('small'), { use: ['orders'] }).plan, { messages: [], userId: 'alice', variables: {} });
    expect(ok.variables).toEqual({ orders: { status: 'shipped', asked: { customer: { ids: [7, 8] } } } });
  });

  it('through the gateway: a client object variable with a big numeric id makes no call; sent as a string it is looked up exactly', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'isolation-7-'));
    const template = path.join(dir, 'order-help.yaml');
    writeFileSync(
      template,
      `id: order-help
versions:
  - version: "1.0.0"
    variables: {order: {type: object}}
    context: {use: [order_status]}
    messages:
      - role: system
        content: "{{#order_status}}Order status: {{status}} {{asked.order.id}}{{/order_status}}{{^order_status}}No order status.{{/order_status}}"
`,
    );
    gw = await startTestGateway(
      mockConfig(
        upstream.url,
        `bindings: [{model: order-bot, template: order-help}]
context:
  deadline_ms: 2000
  builders:
    - {name: order_status, kind: http, method: POST, url: "${svc.url}/orders/lookup", body: {order: "{{order}}"}, cache: {ttl_ms: 60000}}
`,
      ),
      { templates: [template] },
    );
    // Raw JSON: the digits must reach the gateway as a Python or Go client sends them (a JS
    // number would be rounded before it left the client).
    const chat = async (order: string) => {
      const res = await request(`${gw!.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"model": "order-bot", "user": "alice", "messages": [{"role": "user", "content": "Where is my order?"}], "prompt_variables": {"order": ${order}}}`,
      });
      await res.body.text();
      expect(res.statusCode).toBe(200);
      return (upstream.requests.at(-1)!.body as { messages: Array<{ content: string }> }).messages[0].content;
    };
    expect(await chat('{"id": 12345678901234567891}')).toBe('No order status.');
    expect(lookups()).toEqual([]);
    expect(await chat('{"id": "12345678901234567891"}')).toBe('Order status: shipped 12345678901234567891');
    expect(lookups().map((r) => r.body)).toEqual([{ order: { id: '12345678901234567891' } }]);
  });
});
