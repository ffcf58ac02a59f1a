/**
 * openai-node beyond the happy path, with the accounting behind it: the same client code
 * pointed at the mock upstream directly and at the gateway must see the same thing, and the
 * gateway's `GET /metrics` must hold the tokens and cost of what it relayed (n > 1, tool
 * calls, streams with and without include_usage), for the cases openai-node.test.ts and
 * openai-compat.test.ts do not cover: models.retrieve, error fields and headers (404
 * model_not_found, 429 retry-after, the gateway's own 400), raw responses, the
 * pass-through routes' request accounting, and an upstream that spaces its JSON.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import * as Errors from 'openai';
import { request } from 'undici';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { STREAM_WORDS, TOOL_CALL, type MockUpstream } from '../helpers/mock-upstream.js';
import { E2E_UPSTREAM, mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { estimateUsage } from '../../src/telemetry/usage.js';
import { toolDefinitionTokens } from '../../src/tokenizer/tool-definitions.js';
import { PromText } from '../telemetry-e2e/prom-text.js';
import { BINDINGS, collect, messages, mockUpstreamAndGateway, rejection, tools } from './client-helpers.js';

/** 2000 input of which 1500 cached, 1000 output of which 400 reasoning. */
const RICH_USAGE = { prompt_tokens: 2000, completion_tokens: 1000, total_tokens: 3000, prompt_tokens_details: { cached_tokens: 1500 }, completion_tokens_details: { reasoning_tokens: 400 } };
/** gpt-4o-mini (USD per 1M): (500*0.15 + 1500*0.075 + 1000*0.6) / 1e6. */
const RICH_COST = 0.0007875;
const gpt4oMiniCost = (input: number, output: number) => (input * 0.15 + output * 0.6) / 1e6;

let mock: MockUpstream;
let gw: TestGateway;
let direct: OpenAI;
let gateway: OpenAI;

const env = mockUpstreamAndGateway((url) => mockConfig(url, BINDINGS, E2E_UPSTREAM), { templates: ['config/templates/support-reply.yaml'] });
beforeAll(() => {
  ({ mock, gw } = env);
  direct = new OpenAI({ baseURL: mock.url, apiKey: 'sk-test', maxRetries: 0 });
  gateway = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
});

async function metrics(gatewayUrl = gw.url): Promise<PromText> {
  const res = await request(`${gatewayUrl}/metrics`);
  return new PromText(await res.body.text());
}

/**
 * What one gateway call added to the metrics: the tokens by type and estimated flag, the
 * cost and the requests by route/status. The gateway is shared by the file, so this
 * compares snapshots; a stream is accounted when it ends, so it polls until the request is in.
 */
async function accounted(call: () => Promise<unknown>, gatewayUrl = gw.url) {
  const read = (m: PromText) => ({
    requests: m.sum('promptgate_requests_total') ?? 0,
    tokens: (type: string, estimated: string) => m.sum('promptgate_tokens_total', { gen_ai_token_type: type, estimated }) ?? 0,
    cost: (estimated: string) => m.sum('promptgate_cost_usd_total', { estimated }) ?? 0,
    requestsOf: (labels: Record<string, string>) => m.sum('promptgate_requests_total', labels) ?? 0,
  });
  const before = read(await metrics(gatewayUrl));
  await call();
  let after = read(await metrics(gatewayUrl));
  for (let i = 0; after.requests === before.requests && i < 200; i++) {
    await new Promise((r) => setTimeout(r, 10));
    after = read(await metrics(gatewayUrl));
  }
  const delta = (estimated: 'true' | 'false') => ({
    input: after.tokens('input', estimated) - before.tokens('input', estimated),
    output: after.tokens('output', estimated) - before.tokens('output', estimated),
    cached: after.tokens('cache_read', estimated) - before.tokens('cache_read', estimated),
    reasoning: after.tokens('reasoning', estimated) - before.tokens('reasoning', estimated),
    cost: after.cost(estimated) - before.cost(estimated),
  });
  return {
    requests: after.requests - before.requests,
    exact: delta('false'),
    estimated: delta('true'),
    requestsOf: (labels: Record<string, string>) => after.requestsOf(labels) - before.requestsOf(labels),
  };
}

const NO_TOKENS = { input: 0, output: 0, cached: 0, reasoning: 0, cost: 0 };
const RICH_TOKENS = { input: 2000, output: 1000, cached: 1500, reasoning: 400 };

describe('accounting of what openai-node gets', () => {
  const rich = { headers: { 'x-mock-usage': JSON.stringify(RICH_USAGE) } };

  it('n = 2 non-stream with logprobs: same body as direct; the usage of both choices counted once, exactly', async () => {
    const req = { model: 'gpt-4o-mini', messages, n: 2, logprobs: true };
    const d = await direct.chat.completions.create(req, rich);
    let g: Awaited<typeof d> | undefined;
    const a = await accounted(async () => {
      g = await gateway.chat.completions.create(req, rich);
    });
    expect(g).toEqual(d);
    expect(g!.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(g!.choices[1].logprobs?.content?.map((t) => t.token).join('')).toBe(STREAM_WORDS.join(''));
    expect(a.requests).toBe(1);
    expect(a.exact).toMatchObject(RICH_TOKENS);
    expect(a.exact.cost).toBeCloseTo(RICH_COST, 12);
    expect(a.estimated).toEqual(NO_TOKENS);
  });

  for (const includeUsage of [false, true]) {
    it(`n = 2 stream (include_usage ${includeUsage}): same chunks as direct, usage counted exactly`, async () => {
      const req = { model: 'gpt-4o-mini', messages, n: 2, stream: true as const, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) };
      const d = await collect(await direct.chat.completions.create(req, rich));
      let g: ChatCompletionChunk[] = [];
      const a = await accounted(async () => {
        g = await collect(await gateway.chat.completions.create(req, rich));
      });
      expect(g).toEqual(d);
      expect(new Set(g.flatMap((c) => c.choices.map((x) => x.index)))).toEqual(new Set([0, 1]));
      expect(a.exact).toMatchObject(RICH_TOKENS);
      expect(a.exact.cost).toBeCloseTo(RICH_COST, 12);
      expect(a.estimated).toEqual(NO_TOKENS);
      expect(a.requestsOf({ route: '/v1/chat/completions', stream: 'true', status_class: '2xx', error_type: '' })).toBe(1);
    });

    it(`parallel tool calls stream (include_usage ${includeUsage}): usage counted exactly`, async () => {
      const opts = { headers: { ...rich.headers, 'x-mock-tool-calls': '2' } };
      const req = { model: 'gpt-4o-mini', messages, tools, stream: true as const, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) };
      const d = await collect(await direct.chat.completions.create(req, opts));
      let g: ChatCompletionChunk[] = [];
      const a = await accounted(async () => {
        g = await collect(await gateway.chat.completions.create(req, opts));
      });
      expect(g).toEqual(d);
      expect(a.exact).toMatchObject(RICH_TOKENS);
      expect(a.exact.cost).toBeCloseTo(RICH_COST, 12);
    });
  }

  it('parallel tool calls stream from an upstream without usage: both calls (names and arguments) are estimated', async () => {
    const opts = { headers: { 'x-mock-tool-calls': '2', 'x-mock-no-usage': '1' } };
    const req = { model: 'gpt-4o-mini', messages, tools, stream: true as const };
    let final: OpenAI.Chat.Completions.ChatCompletion | undefined;
    const a = await accounted(async () => {
      final = await gateway.chat.completions.stream(req, opts).finalChatCompletion();
    });
    const calls = final!.choices[0].message.tool_calls!.map((c) => (c.type === 'function' ? c.function : undefined)!);
    expect(calls).toHaveLength(2);
    expect(calls[0].arguments).toBe(TOOL_CALL.arguments);
    const expected = estimateUsage(messages, calls.map((c) => c.name + c.arguments).join(''), 'gpt-4o-mini');
    expected.inputTokens += toolDefinitionTokens({ tools }); // the definitions are prompt too
    expect(a.exact).toEqual(NO_TOKENS);
    expect(a.estimated).toMatchObject({ input: expected.inputTokens, output: expected.outputTokens });
    expect(a.estimated.cost).toBeCloseTo(gpt4oMiniCost(expected.inputTokens, expected.outputTokens), 15);
  });

  it('n = 2 stream from an upstream without usage: both choices are estimated', async () => {
    const opts = { headers: { 'x-mock-no-usage': '1' } };
    const a = await accounted(() => gateway.chat.completions.stream({ model: 'gpt-4o-mini', messages, n: 2 }, opts).finalChatCompletion());
    const one = estimateUsage(messages, STREAM_WORDS.join(''), 'gpt-4o-mini');
    expect(a.estimated.input).toBe(one.inputTokens);
    expect(a.estimated.output).toBeGreaterThan(one.outputTokens);
  });

  it('a refusal (non-stream) from an upstream without usage: the refusal text is estimated', async () => {
    const refusal = "I'm sorry, I can't help with that request about the weather.";
    const opts = { headers: { 'x-mock-refusal': refusal, 'x-mock-no-usage': '1' } };
    const d = await direct.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts);
    let g: typeof d | undefined;
    const a = await accounted(async () => {
      g = await gateway.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts);
    });
    expect(g).toEqual(d);
    expect(a.estimated.output).toBe(estimateUsage(messages, refusal, 'gpt-4o-mini').outputTokens);
  });
});

describe('models', () => {
  it('models.retrieve of an upstream model passes through', async () => {
    const d = await direct.models.retrieve('gpt-4o-mini');
    const g = await gateway.models.retrieve('gpt-4o-mini');
    expect(g).toEqual(d);
    expect(mock.requests.map((r) => r.url)).toEqual(['/v1/models/gpt-4o-mini', '/v1/models/gpt-4o-mini']);
  });

  // Regression: models.list showed the binding alias, but models.retrieve of it went to the
  // upstream, which does not know it: a NotFoundError (model_not_found) for a model the
  // gateway serves.
  it('models.retrieve of a binding alias the upstream does not know answers the entry models.list shows', async () => {
    const unknownUpstream = { headers: { 'x-mock-status': '404', 'x-mock-error-code': 'model_not_found', 'x-mock-error-param': 'model' } };
    const listed: OpenAI.Models.Model[] = [];
    for await (const m of gateway.models.list()) listed.push(m);
    const alias = listed.find((m) => m.id === 'support-bot');
    expect(alias).toEqual({ id: 'support-bot', object: 'model', created: 0, owned_by: 'promptgate' });

    const d = await rejection(direct.models.retrieve('support-bot', unknownUpstream));
    expect(d).toBeInstanceOf(Errors.NotFoundError);
    const { data, response } = await gateway.models.retrieve('support-bot', unknownUpstream).withResponse();
    expect(data).toEqual(alias);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('x-request-id')).toMatch(/^req_mock_/);
    // The upstream was asked (it checks the key) and the answer is accounted as the 200 it is.
    expect(mock.requests.at(-1)!.url).toBe('/v1/models/support-bot');
    const a = await accounted(() => gateway.models.retrieve('support-bot', unknownUpstream));
    expect(a.requestsOf({ route: '/v1/models', status_class: '2xx', error_type: '' })).toBe(1);

    // Any other answer is the upstream's: its own model of that name, or an auth error.
    expect(await gateway.models.retrieve('support-bot')).toEqual(await direct.models.retrieve('support-bot'));
    const denied = await rejection(gateway.models.retrieve('support-bot', { headers: { 'x-mock-status': '401' } }));
    expect(denied).toBeInstanceOf(Errors.AuthenticationError);
    // A model that is no alias keeps the upstream's 404.
    expect(await rejection(gateway.models.retrieve('gpt-9', unknownUpstream))).toBeInstanceOf(Errors.NotFoundError);
  });

  it('an upstream 404 model_not_found is a NotFoundError with the same fields as direct', async () => {
    const opts = { headers: { 'x-mock-status': '404', 'x-mock-error-code': 'model_not_found', 'x-mock-error-param': 'model' } };
    const d = await rejection(direct.models.retrieve('gpt-9', opts));
    const g = await rejection(gateway.models.retrieve('gpt-9', opts));
    expect(g).toBeInstanceOf(Errors.NotFoundError);
    expect(g.error).toEqual(d.error);
    expect([g.status, g.code, g.param, g.type]).toEqual([404, 'model_not_found', 'model', d.type]);
    expect(g.requestID).toMatch(/^req_mock_/);
  });
});

describe('errors', () => {
  it('a 404 model_not_found on chat (non-stream and stream) is a NotFoundError as direct, counted as upstream_404', async () => {
    const opts = { headers: { 'x-mock-status': '404', 'x-mock-error-code': 'model_not_found', 'x-mock-error-param': 'model' } };
    for (const stream of [false, true]) {
      const req = { model: 'gpt-9', messages, stream };
      const d = await rejection(direct.chat.completions.create(req, opts));
      let g: any;
      const a = await accounted(async () => {
        g = await rejection(gateway.chat.completions.create(req, opts));
      });
      expect(g).toBeInstanceOf(Errors.NotFoundError);
      expect(g.error).toEqual(d.error);
      expect(g.code).toBe('model_not_found');
      expect(g.requestID).toMatch(/^req_mock_/);
      expect(a.requestsOf({ status_class: '4xx', error_type: 'upstream_404' })).toBe(1);
      expect(a.exact).toEqual(NO_TOKENS);
      expect(a.estimated).toEqual(NO_TOKENS);
    }
  });

  it('a 429 with a retry-after beyond max_retry_after_ms reaches the client at once, header and fields as direct', async () => {
    const opts = { headers: { 'x-mock-status': '429', 'x-mock-retry-after': '30', 'x-mock-error-code': 'rate_limit_exceeded' } };
    const d = await rejection(direct.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts));
    mock.requests.length = 0;
    const started = Date.now();
    const g = await rejection(gateway.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(g).toBeInstanceOf(Errors.RateLimitError);
    expect(g.error).toEqual(d.error);
    expect(g.headers.get('retry-after')).toBe('30');
    expect(g.headers.get('retry-after')).toBe(d.headers.get('retry-after'));
    expect(g.requestID).toMatch(/^req_mock_/);
    expect(mock.requests).toHaveLength(1);
  });

  // Regression: a relayed answer carries the gateway's id in x-promptgate-request-id (the id
  // POST /v1/feedback takes), but the gateway's own errors carried it only in x-request-id.
  it("the gateway's own 400 is a BadRequestError with param and code, and both request id headers", async () => {
    const g = await rejection(gateway.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }));
    expect(g).toBeInstanceOf(Errors.BadRequestError);
    expect([g.status, g.param, g.code, g.type]).toEqual([400, 'messages', 'invalid_request', 'invalid_request_error']);
    expect(g.requestID).toMatch(/^[0-9a-f-]{36}$/);
    expect(g.headers.get('x-promptgate-request-id')).toBe(g.requestID);
    expect(mock.requests).toHaveLength(0);
  });
});

describe('raw responses', () => {
  it('asResponse() of a stream and withResponse() of embeddings carry the upstream headers', async () => {
    const raw = await gateway.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }).asResponse();
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(raw.headers.get('x-request-id')).toMatch(/^req_mock_/);
    expect(raw.headers.get('openai-processing-ms')).toBe('7');
    expect(raw.headers.get('content-encoding')).toBeNull();
    const text = await raw.text();
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
    expect(text).not.toContain('usage');

    const { data, response, request_id } = await gateway.embeddings.create({ model: 'text-embedding-3-small', input: 'a', encoding_format: 'float' }).withResponse();
    expect(data.data[0].embedding).toEqual([0.25, -0.5, 0.125]);
    expect(request_id).toMatch(/^req_mock_/);
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('99');
  });
});

describe('pass-through accounting', () => {
  it('embeddings and responses (non-stream and stream) are counted by route', async () => {
    const e = await accounted(() => gateway.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] }));
    expect(e.requestsOf({ route: '/v1/embeddings', status_class: '2xx' })).toBe(1);
    const r = await accounted(() => gateway.responses.create({ model: 'gpt-4o-mini', input: 'hi' }));
    expect(r.requestsOf({ route: '/v1/responses', status_class: '2xx' })).toBe(1);
    const s = await accounted(async () => collect(await gateway.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true })));
    expect(s.requestsOf({ route: '/v1/responses', status_class: '2xx' })).toBe(1);
  });
});

/** JSON as Python's json.dumps writes it: a space after `,` and `:` (RFC 8259 §2 allows it). */
function pythonJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pythonJson).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pythonJson(x)}`).join(', ')}}`;
  return JSON.stringify(v);
}

/**
 * A streaming chat upstream written the way a Python server (json.dumps) writes it: with
 * include_usage, every chunk carries `"usage": null` and a last `"choices": []` chunk the usage.
 */
async function startPythonStyleUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c));
    req.on('end', () => {
      const body = JSON.parse(raw) as { model: string; stream_options?: { include_usage?: boolean } };
      const withUsage = body.stream_options?.include_usage === true;
      const base = { id: 'chatcmpl-py1', object: 'chat.completion.chunk', created: 1_700_000_000, model: body.model };
      const event = (choices: unknown[], usage: unknown = null) => `data: ${pythonJson({ ...base, choices, ...(withUsage ? { usage } : {}) })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req_py_1' });
      res.write(event([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
      for (const w of ['Hello', ' from', ' Python']) res.write(event([{ index: 0, delta: { content: w }, finish_reason: null }]));
      res.write(event([{ index: 0, delta: {}, finish_reason: 'stop' }]));
      if (withUsage) res.write(event([], RICH_USAGE));
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('an upstream writing JSON with spaces (Python json.dumps)', () => {
  let upstream: Awaited<ReturnType<typeof startPythonStyleUpstream>>;
  let pyGateway: TestGateway;
  beforeAll(async () => {
    upstream = await startPythonStyleUpstream();
    pyGateway = await startTestGateway(mockConfig(upstream.url, '', E2E_UPSTREAM));
  });
  afterAll(async () => {
    await pyGateway?.close();
    await upstream?.close();
  });

  // Regression: the gateway asked for include_usage and dropped the usage chunk again, but
  // only stripped a compact `"usage":null`: every chunk reached a client that never asked
  // for usage with `usage: null` in it.
  for (const includeUsage of [false, true]) {
    it(`a stream (include_usage ${includeUsage}) reaches the client as direct, its usage counted exactly`, async () => {
      const req = { model: 'gpt-4o-mini', messages, stream: true as const, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) };
      const viaDirect = new OpenAI({ baseURL: upstream.url, apiKey: 'sk-test', maxRetries: 0 });
      const viaGateway = new OpenAI({ baseURL: `${pyGateway.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
      const d = await collect(await viaDirect.chat.completions.create(req));
      let g: ChatCompletionChunk[] = [];
      const a = await accounted(async () => {
        g = await collect(await viaGateway.chat.completions.create(req));
      }, pyGateway.url);
      expect(g).toEqual(d);
      for (const c of g) expect('usage' in c).toBe(includeUsage);
      expect(g.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from Python');
      expect(a.exact).toMatchObject(RICH_TOKENS);
      expect(a.exact.cost).toBeCloseTo(RICH_COST, 12);
    });
  }
});
