/**
 * End to end: usage and cost accounting of real requests through the real gateway (real
 * sockets) in front of the mock upstream, read back from the gateway's own `GET /metrics`
 * and the `x-promptgate-cost-usd` header. Each test starts a fresh gateway (a fresh metrics
 * registry), so every counter below holds exactly that test's requests.
 *
 * Expected costs are computed by hand from DEFAULT_PRICES (src/telemetry/pricing.ts, USD
 * per 1M tokens):
 *   gpt-4o-mini  input 0.15  cached_input 0.075  output 0.6
 *   gpt-4o       input 2.5   cached_input 1.25   output 10
 *   o3           input 2     cached_input 0.5    output 8
 *   gpt-3.5-turbo input 0.5  (no cached price)   output 1.5
 * Reasoning tokens are part of output and billed at the output price unless a price sets
 * `reasoning`; cached tokens are part of input and billed at `cached_input` (else `input`).
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startMockUpstream, STREAM_WORDS, TOOL_CALL, type MockUpstream } from '../helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { scrapeMetrics } from '../helpers/metrics.js';
import { estimateUsage } from '../../src/telemetry/usage.js';
import { PromText } from './prom-text.js';

// Tracing off in this file (its own process): accounting must not depend on it.
for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

const promtoolVersion = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const HAS_PROMTOOL = !promtoolVersion.error && promtoolVersion.status === 0;
if (!HAS_PROMTOOL) console.warn('SKIP promtool check: `promtool` is not installed (Debian package "prometheus").');

const MESSAGES = [{ role: 'user', content: 'hi' }];
const COMPLETION = STREAM_WORDS.join('');
/** The mock's default usage: 11 prompt, 6 completion tokens. gpt-4o-mini: (11*0.15 + 6*0.6)/1e6 = 5.25/1e6. */
const DEFAULT_COST = 0.00000525;
/** 2000 input of which 1500 cached, 1000 output of which 400 reasoning. */
const RICH_USAGE = {
  prompt_tokens: 2000,
  completion_tokens: 1000,
  total_tokens: 3000,
  prompt_tokens_details: { cached_tokens: 1500 },
  completion_tokens_details: { reasoning_tokens: 400 },
};

let upstream: MockUpstream;
let gw: TestGateway | undefined;

beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  upstream.requests.length = 0;
  upstream.closed = 0;
});

const TIMEOUTS = '    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}\n    breaker: {failures: 0}';

async function start(extra = ''): Promise<TestGateway> {
  gw = await startTestGateway(mockConfig(upstream.url, extra, TIMEOUTS));
  return gw;
}

const chat = (extra: object = {}) => JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, ...extra });

async function post(body: string, headers: Record<string, string> = {}) {
  const res = await request(`${gw!.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

const metrics = () => scrapeMetrics(gw!.url);

/** Polls /metrics until `ready` holds (accounting of a cancelled stream finishes asynchronously). */
async function metricsWhen(ready: (m: PromText) => boolean, timeoutMs = 5000): Promise<PromText> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const m = await metrics();
    if (ready(m)) return m;
    if (Date.now() > until) throw new Error(`metrics never became ready:\n${m.text.split('\n').filter((l) => l.startsWith('promptgate_')).join('\n')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Token counts of `promptgate_tokens_total` by type (summed over the other labels). */
function tokens(m: PromText, match: Record<string, string> = {}) {
  const t = (type: string) => m.sum('promptgate_tokens_total', { ...match, gen_ai_token_type: type });
  return { input: t('input'), output: t('output'), cache_read: t('cache_read'), reasoning: t('reasoning') };
}

const gpt4oMiniCost = (input: number, output: number, cached = 0) => ((input - cached) * 0.15 + cached * 0.075 + output * 0.6) / 1e6;

describe('non-stream', () => {
  it('x-promptgate-cost-usd and the counters hold the exact usage and cost', async () => {
    await start();
    const res = await post(chat());
    expect(res.status).toBe(200);
    expect(res.headers['x-promptgate-cost-usd']).toBe('0.00000525');

    const m = await metrics();
    const labels = { upstream: 'mock', gen_ai_provider_name: 'openai', gen_ai_request_model: 'gpt-4o-mini' };
    expect(tokens(m, { ...labels, estimated: 'false' })).toEqual({ input: 11, output: 6, cache_read: undefined, reasoning: undefined });
    expect(m.sum('promptgate_tokens_total', { estimated: 'true' })).toBeUndefined();
    expect(m.one('promptgate_cost_usd_total', { ...labels, estimated: 'false' })).toBeCloseTo(DEFAULT_COST, 15);
    expect(m.sum('promptgate_cost_usd_total')).toBeCloseTo(DEFAULT_COST, 15);
    expect(m.sum('promptgate_cost_unknown_total')).toBeUndefined();
    expect(m.one('promptgate_requests_total')).toBe(1);
    expect(m.one('promptgate_requests_total', { ...labels, route: '/v1/chat/completions', status_class: '2xx', error_type: '', stream: 'false', estimated: 'false' })).toBe(1);
    expect(m.one('promptgate_upstream_attempts_total', { upstream: 'mock', gen_ai_provider_name: 'openai' })).toBe(1);
    // The GenAI histogram: one observation per token type.
    const usage = { gen_ai_operation_name: 'chat', ...labels };
    expect(m.one('gen_ai_client_token_usage_sum', { ...usage, gen_ai_token_type: 'input' })).toBe(11);
    expect(m.one('gen_ai_client_token_usage_count', { ...usage, gen_ai_token_type: 'input' })).toBe(1);
    expect(m.one('gen_ai_client_token_usage_sum', { ...usage, gen_ai_token_type: 'output' })).toBe(6);
    expect(m.one('gen_ai_client_token_usage_count', { ...usage, gen_ai_token_type: 'output' })).toBe(1);
    expect(m.sum('gen_ai_client_operation_duration_seconds_count')).toBe(1);
  });

  it('prices a dated snapshot answer (x-mock-model) at its base model', async () => {
    await start();
    const res = await post(chat(), { 'x-mock-model': 'gpt-4o-mini-2024-07-18' });
    expect(res.headers['x-promptgate-cost-usd']).toBe('0.00000525');
    expect((await metrics()).sum('promptgate_cost_usd_total')).toBeCloseTo(DEFAULT_COST, 15);
  });
});

describe('streams', () => {
  it('with include_usage: the client gets the usage chunk, the counts are exact', async () => {
    await start();
    const res = await post(chat({ stream: true, stream_options: { include_usage: true } }), { 'x-mock-usage': JSON.stringify(RICH_USAGE) });
    expect(res.status).toBe(200);
    const events = res.text.trim().split('\n\n');
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(JSON.parse(events.at(-2)!.slice('data: '.length)).usage).toEqual(RICH_USAGE);

    const m = await metrics();
    expect(tokens(m, { estimated: 'false' })).toEqual({ input: 2000, output: 1000, cache_read: 1500, reasoning: 400 });
    // (500*0.15 + 1500*0.075 + 1000*0.6) / 1e6 = (75 + 112.5 + 600) / 1e6
    expect(m.one('promptgate_cost_usd_total', { estimated: 'false' })).toBeCloseTo(0.0007875, 15);
    expect(m.one('promptgate_requests_total', { stream: 'true', status_class: '2xx', estimated: 'false' })).toBe(1);
    expect(m.sum('promptgate_requests_total')).toBe(1);
    expect(m.sum('gen_ai_client_operation_time_to_first_chunk_seconds_count')).toBe(1);
  });

  it('without include_usage: no extra chunk for the client, the counts are still exact', async () => {
    await start();
    const res = await post(chat({ stream: true }), { 'x-mock-usage': JSON.stringify(RICH_USAGE) });
    expect(res.status).toBe(200);
    // The gateway asked the upstream for usage...
    expect(upstream.requests[0].body.stream_options).toEqual({ include_usage: true });
    // ...and the client got exactly the stream it asked for: role, 6 words, stop, [DONE].
    expect(res.text).not.toContain('usage');
    const events = res.text.trim().split('\n\n');
    expect(events).toHaveLength(1 + STREAM_WORDS.length + 1 + 1);
    expect(events.at(-1)).toBe('data: [DONE]');

    const m = await metrics();
    expect(tokens(m, { estimated: 'false' })).toEqual({ input: 2000, output: 1000, cache_read: 1500, reasoning: 400 });
    expect(m.sum('promptgate_tokens_total', { estimated: 'true' })).toBeUndefined();
    expect(m.one('promptgate_cost_usd_total', { estimated: 'false' })).toBeCloseTo(0.0007875, 15);
    expect(m.sum('promptgate_requests_total')).toBe(1);
  });
});

describe('cached and reasoning tokens are priced per the table', () => {
  it.each([
    // model, extra config, expected header, expected cost (hand-computed)
    ['gpt-4o-mini', '', '0.0007875', (500 * 0.15 + 1500 * 0.075 + 1000 * 0.6) / 1e6], // 75 + 112.5 + 600
    ['o3', '', '0.00975', (500 * 2 + 1500 * 0.5 + 1000 * 8) / 1e6], // 1000 + 750 + 8000
    ['gpt-3.5-turbo', '', '0.0025', (2000 * 0.5 + 1000 * 1.5) / 1e6], // no cached price: cached billed as input
    // A price with its own reasoning rate: (500*1 + 1500*0.25 + 600*4 + 400*10) / 1e6 = (500 + 375 + 2400 + 4000) / 1e6
    ['reasoner-x', 'pricing: {reasoner-x: {input: 1, cached_input: 0.25, output: 4, reasoning: 10}}', '0.007275', 0.007275],
  ])('%s', async (model, extra, header, cost) => {
    await start(extra);
    const res = await post(chat({ model }), { 'x-mock-usage': JSON.stringify(RICH_USAGE) });
    expect(res.status).toBe(200);
    expect(res.headers['x-promptgate-cost-usd']).toBe(header);
    const m = await metrics();
    expect(tokens(m, { gen_ai_request_model: model, estimated: 'false' })).toEqual({ input: 2000, output: 1000, cache_read: 1500, reasoning: 400 });
    expect(m.one('promptgate_cost_usd_total', { gen_ai_request_model: model })).toBeCloseTo(cost, 15);
    expect(m.sum('promptgate_cost_unknown_total')).toBeUndefined();
  });
});

describe('retries and fallback', () => {
  it('retries: only the successful attempt is billed, every attempt is counted', async () => {
    await start();
    const res = await post(chat(), { 'x-mock-status': '503', 'x-mock-fail-times': '2', 'x-mock-key': `retry-${randomUUID()}` });
    expect(res.status).toBe(200);
    expect(upstream.requests).toHaveLength(3);
    expect(res.headers['x-promptgate-cost-usd']).toBe('0.00000525');

    const m = await metrics();
    expect(m.one('promptgate_upstream_attempts_total', { upstream: 'mock' })).toBe(3);
    expect(m.sum('promptgate_requests_total')).toBe(1);
    expect(m.one('promptgate_requests_total', { status_class: '2xx' })).toBe(1);
    expect(tokens(m)).toEqual({ input: 11, output: 6, cache_read: undefined, reasoning: undefined });
    expect(m.sum('promptgate_cost_usd_total')).toBeCloseTo(DEFAULT_COST, 15);
    expect(m.sum('gen_ai_client_token_usage_count', { gen_ai_token_type: 'input' })).toBe(1);
  });

  it('an upstream 500 after retries: counted as a request and attempts, no tokens, no cost', async () => {
    await start();
    const res = await post(chat(), { 'x-mock-status': '500' });
    expect(res.status).toBe(500);
    const m = await metrics();
    expect(m.one('promptgate_requests_total', { status_class: '5xx', error_type: 'upstream_500' })).toBe(1);
    expect(m.sum('promptgate_requests_total')).toBe(1);
    expect(m.one('promptgate_upstream_attempts_total', { upstream: 'mock' })).toBe(3);
    expect(m.sum('promptgate_tokens_total')).toBeUndefined();
    expect(m.sum('promptgate_cost_usd_total')).toBeUndefined();
    expect(m.sum('promptgate_cost_unknown_total')).toBeUndefined();
  });

  it('fallback to a second upstream answering with another model: priced at the answering model', async () => {
    const second = await startMockUpstream();
    try {
      gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: primary
    base_url: ${upstream.url}
    retry: {attempts: 1, backoff_ms: 5, max_backoff_ms: 20}
    breaker: {failures: 0}
    headers: {x-mock-status: "503"}
  - name: secondary
    base_url: ${second.url}
    retry: {attempts: 0}
    breaker: {failures: 0}
    headers: {x-mock-model: gpt-4o}
routing: {default: [primary, secondary]}
`);
      const res = await post(chat());
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text).model).toBe('gpt-4o');
      expect(upstream.requests).toHaveLength(2);
      expect(second.requests).toHaveLength(1);
      // gpt-4o: (11*2.5 + 6*10) / 1e6 = (27.5 + 60) / 1e6, not gpt-4o-mini's 0.00000525.
      expect(res.headers['x-promptgate-cost-usd']).toBe('0.0000875');

      const m = await metrics();
      expect(m.one('promptgate_cost_usd_total', { upstream: 'secondary', gen_ai_request_model: 'gpt-4o-mini' })).toBeCloseTo(0.0000875, 15);
      expect(m.sum('promptgate_cost_usd_total')).toBeCloseTo(0.0000875, 15);
      expect(tokens(m, { upstream: 'secondary' })).toEqual({ input: 11, output: 6, cache_read: undefined, reasoning: undefined });
      expect(m.sum('promptgate_tokens_total', { upstream: 'primary' })).toBeUndefined();
      // Each upstream counts its own attempts (was: all 3 under secondary, the one that answered).
      expect(m.one('promptgate_upstream_attempts_total', { upstream: 'primary' })).toBe(2);
      expect(m.one('promptgate_upstream_attempts_total', { upstream: 'secondary' })).toBe(1);
      expect(m.sum('promptgate_requests_total')).toBe(1);
    } finally {
      await second.close();
    }
  });
});

describe('failed forwards', () => {
  const deadConfig = `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - {name: dead, base_url: "http://127.0.0.1:1/v1", retry: {attempts: 1, backoff_ms: 5, max_backoff_ms: 20}, breaker: {failures: 0}}
routing: {default: [dead]}
`;

  it('an unreachable upstream: the request is counted once as 5xx, with no tokens or cost', async () => {
    gw = await startTestGateway(deadConfig);
    const res = await post(chat());
    expect(res.status).toBe(503);
    const m = await metrics();
    expect(m.sum('promptgate_requests_total')).toBe(1);
    expect(m.one('promptgate_requests_total', { status_class: '5xx', error_type: 'upstream_unavailable', gen_ai_request_model: 'gpt-4o-mini' })).toBe(1);
    expect(m.sum('promptgate_tokens_total')).toBeUndefined();
    expect(m.sum('promptgate_cost_usd_total')).toBeUndefined();
  });

  // Regression: attempts made before forward() threw were lost (attempts 0, no upstream).
  it('an unreachable upstream: every attempt counted, and the duration observed', async () => {
    gw = await startTestGateway(deadConfig);
    expect((await post(chat())).status).toBe(503);
    const m = await metrics();
    expect(m.one('promptgate_upstream_attempts_total', { upstream: 'dead', gen_ai_provider_name: 'openai' })).toBe(2);
    expect(m.sum('gen_ai_client_operation_duration_seconds_count', { error_type: 'upstream_unavailable' })).toBe(1);
    expect(m.one('promptgate_requests_total', { upstream: 'dead', gen_ai_provider_name: 'openai' })).toBe(1);
  });
});

describe('estimated usage', () => {
  it('an upstream reset mid-stream: estimated usage counted once, as an error', async () => {
    await start();
    const res = await post(chat({ stream: true }), { 'x-mock-reset': 'mid', 'x-mock-usage': JSON.stringify(RICH_USAGE) });
    expect(res.status).toBe(200);
    expect(res.text).toContain('"code":"upstream_error"');
    const m = await metricsWhen((x) => x.sum('promptgate_requests_total') === 1);
    expect(m.sum('promptgate_requests_total')).toBe(1);
    expect(m.one('promptgate_requests_total', { error_type: 'upstream_stream_error', stream: 'true', estimated: 'true' })).toBe(1);
    const t = tokens(m, { estimated: 'true' });
    expect(t.input).toBe(estimateUsage(MESSAGES, '', 'gpt-4o-mini').inputTokens);
    expect(t.output).toBeGreaterThan(0);
    expect(m.one('promptgate_cost_usd_total', { estimated: 'true' })).toBeCloseTo(gpt4oMiniCost(t.input!, t.output!), 15);
  });


  it('a client abort mid-stream: usage estimated, counted and not zero', async () => {
    await start();
    const ac = new AbortController();
    const res = await request(`${gw!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '200', 'x-mock-usage': JSON.stringify(RICH_USAGE) },
      body: chat({ stream: true }),
      signal: ac.signal,
    });
    expect(res.statusCode).toBe(200);
    let text = '';
    for await (const chunk of res.body) {
      text += String(chunk);
      if (text.includes(STREAM_WORDS[1])) break;
    }
    ac.abort();

    const m = await metricsWhen((x) => x.sum('promptgate_requests_total') === 1);
    expect(m.one('promptgate_requests_total', { error_type: 'client_abort', stream: 'true', estimated: 'true' })).toBe(1);
    const t = tokens(m, { estimated: 'true' });
    // Input: the gateway's count of the request messages; output: what was streamed before the cancel.
    expect(t.input).toBe(estimateUsage(MESSAGES, '', 'gpt-4o-mini').inputTokens);
    expect(t.input).toBeGreaterThan(0);
    expect(t.output).toBeGreaterThan(0);
    expect(t.output).toBeLessThan(estimateUsage(MESSAGES, COMPLETION, 'gpt-4o-mini').outputTokens);
    expect(m.sum('promptgate_tokens_total', { estimated: 'false' })).toBeUndefined();
    const cost = m.one('promptgate_cost_usd_total', { estimated: 'true' });
    expect(cost).toBeGreaterThan(0);
    expect(cost).toBeCloseTo(gpt4oMiniCost(t.input!, t.output!), 15);
  });

  it.each([
    ['non-stream', false],
    ['stream', true],
  ])('an upstream without usage (%s): estimated with the tokenizer', async (_name, stream) => {
    await start();
    const res = await post(chat(stream ? { stream: true } : {}), { 'x-mock-no-usage': '1' });
    expect(res.status).toBe(200);
    const expected = estimateUsage(MESSAGES, COMPLETION, 'gpt-4o-mini');
    expect(expected.inputTokens).toBeGreaterThan(0);
    expect(expected.outputTokens).toBeGreaterThan(0);
    const cost = gpt4oMiniCost(expected.inputTokens, expected.outputTokens);

    const m = await metrics();
    expect(tokens(m, { estimated: 'true' })).toEqual({ input: expected.inputTokens, output: expected.outputTokens, cache_read: undefined, reasoning: undefined });
    expect(m.sum('promptgate_tokens_total', { estimated: 'false' })).toBeUndefined();
    expect(m.one('promptgate_cost_usd_total', { estimated: 'true' })).toBeCloseTo(cost, 15);
    expect(m.one('promptgate_requests_total', { estimated: 'true', stream: String(stream), status_class: '2xx' })).toBe(1);
    if (!stream) expect(Number(res.headers['x-promptgate-cost-usd'])).toBeCloseTo(cost, 15);
  });

  // Regression: only `content` was counted, so a tool call answered without usage was
  // estimated at 0 output tokens (and its output billed at nothing).
  it.each([
    ['non-stream', false],
    ['stream', true],
  ])('an upstream without usage answering with a tool call (%s): its name and arguments are counted', async (_name, stream) => {
    await start();
    const res = await post(chat(stream ? { stream: true } : {}), { 'x-mock-no-usage': '1', 'x-mock-tool-call': '1' });
    expect(res.status).toBe(200);
    expect(res.text).toContain('get_weather');
    const expected = estimateUsage(MESSAGES, TOOL_CALL.name + TOOL_CALL.arguments, 'gpt-4o-mini');
    expect(expected.outputTokens).toBeGreaterThan(5);

    const m = await metrics();
    expect(tokens(m, { estimated: 'true' })).toMatchObject({ input: expected.inputTokens, output: expected.outputTokens });
    expect(m.one('promptgate_cost_usd_total', { estimated: 'true' })).toBeCloseTo(gpt4oMiniCost(expected.inputTokens, expected.outputTokens), 15);
  });
});

describe('unknown model', () => {
  it('counts the cost as unknown, never as 0', async () => {
    await start();
    const res = await post(chat({ model: 'acme-llm-7b' }));
    expect(res.status).toBe(200);
    expect(res.headers['x-promptgate-cost-usd']).toBeUndefined();
    const m = await metrics();
    expect(m.one('promptgate_cost_unknown_total', { upstream: 'mock', gen_ai_provider_name: 'openai', gen_ai_request_model: 'acme-llm-7b' })).toBe(1);
    expect(m.select('promptgate_cost_usd_total')).toEqual([]);
    expect(tokens(m, { gen_ai_request_model: 'acme-llm-7b', estimated: 'false' })).toEqual({ input: 11, output: 6, cache_read: undefined, reasoning: undefined });
    expect(m.one('promptgate_requests_total', { gen_ai_request_model: 'acme-llm-7b', status_class: '2xx' })).toBe(1);
  });
});

describe('/metrics exposition', () => {
  it.skipIf(!HAS_PROMTOOL)('passes `promtool check metrics` and carries no user id', async () => {
    await start();
    const user = { 'x-user-id': 'user-456' };
    expect((await post(chat({ user: 'user-123' }), user)).status).toBe(200);
    expect((await post(chat({ user: 'user-123', stream: true }), { ...user, 'x-mock-usage': JSON.stringify(RICH_USAGE) })).status).toBe(200);
    expect((await post(chat({ user: 'user-123', safety_identifier: 'user-789' }), { ...user, 'x-mock-no-usage': '1' })).status).toBe(200);
    expect((await post(chat({ user: 'user-123', model: 'acme-llm-7b' }), user)).status).toBe(200);
    expect((await post(chat({ user: 'user-123' }), { ...user, 'x-mock-status': '500' })).status).toBe(500);
    expect((await post('{"model":', { ...user })).status).toBe(400);

    const m = await metrics();
    expect(m.sum('promptgate_requests_total')).toBe(6);
    for (const id of ['user-123', 'user-456', 'user-789']) expect(m.text).not.toContain(id);

    const check = spawnSync('promtool', ['check', 'metrics'], { input: m.text, encoding: 'utf8' });
    expect(check.error).toBeUndefined();
    expect((check.stdout + check.stderr).trim()).toBe('');
    expect(check.status).toBe(0);
  });
});
