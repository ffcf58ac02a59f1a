/**
 * Review of token counts and cost: regressions found by checking the numbers the gateway
 * reports (the `x-promptgate-cost-usd` header, `/metrics`) against what OpenAI bills.
 * Expected costs are computed by hand from the list prices, USD per 1M tokens.
 */
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { json, startCannedUpstream, type CannedUpstream } from './helpers/canned-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { createPriceBook } from '../src/telemetry/pricing.js';
import { encodingFor, estimateUsage, usageFromOpenAI } from '../src/telemetry/usage.js';

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

let upstream: CannedUpstream;
let upstreamUrl: string;
let gw: TestGateway | undefined;

beforeAll(async () => {
  upstream = await startCannedUpstream();
  upstreamUrl = upstream.url;
});
afterAll(() => upstream.close());
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

async function postChat(body: object): Promise<{ status: number; headers: Record<string, unknown> }> {
  const res = await request(`${gw!.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await res.body.text();
  return { status: res.statusCode, headers: res.headers };
}

const metrics = () => scrapeMetrics(gw!.url);

describe('price table', () => {
  const book = createPriceBook();
  const usage = usageFromOpenAI({ prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500 })!;

  it('gpt-3.5-turbo-1106 is billed at its own $1 / $2, not at the gpt-3.5-turbo (0125) price', () => {
    // It was priced as gpt-3.5-turbo by the dated-snapshot rule: half its input price.
    expect(book.cost(usage, 'gpt-3.5-turbo-1106')).toBeCloseTo((1000 * 1 + 500 * 2) / 1e6, 15);
    expect(book.cost(usage, 'openai/gpt-3.5-turbo-1106')).toBeCloseTo((1000 * 1 + 500 * 2) / 1e6, 15);
    expect(book.cost(usage, 'gpt-3.5-turbo-0125')).toBeCloseTo((1000 * 0.5 + 500 * 1.5) / 1e6, 15);
    expect(book.cost(usage, 'gpt-3.5-turbo')).toBeCloseTo((1000 * 0.5 + 500 * 1.5) / 1e6, 15);
  });
});

describe('estimates', () => {
  it('a fine-tuned gpt-3.5-turbo or gpt-4 is counted with cl100k_base, as tiktoken maps ft: models', () => {
    // It fell through to the o200k_base default: the `ft:` prefix hid the base model.
    expect(encodingFor('ft:gpt-3.5-turbo-0125:acme::9abcDEF')).toBe('cl100k_base');
    expect(encodingFor('ft:gpt-4-0613:acme:support:8xyz')).toBe('cl100k_base');
    expect(encodingFor('ft:gpt-4o-mini-2024-07-18:acme::7xyz')).toBe('o200k_base');
    const text = [{ role: 'user', content: 'Die Rücksendung dauert normalerweise 14 Werktage — ¿cuánto tarda el reembolso?' }];
    expect(estimateUsage(text, '', 'ft:gpt-3.5-turbo-0125:acme::9abcDEF').inputTokens).toBe(estimateUsage(text, '', 'gpt-3.5-turbo-0125').inputTokens);
  });
});

describe('the model that answered is billed', () => {
  const completion = (model: string) => ({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500, prompt_tokens_details: { cached_tokens: 200 } },
  });

  it('an answer with an empty "model" is priced at the requested model, not as unknown', async () => {
    // A stream's empty model (Azure's prompt-filter chunk) was skipped, a body's was not:
    // "" was priced, found no price, and the cost became unknown.
    gw = await startTestGateway(mockConfig(upstreamUrl, '', '    breaker: {failures: 0}'));
    upstream.answer = json(completion(''));
    const res = await postChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    // gpt-4o-mini: 800 * 0.15 + 200 * 0.075 + 500 * 0.6 = 435 per 1M.
    expect(res.headers['x-promptgate-cost-usd']).toBe('0.000435');
    const m = await metrics();
    expect(m.sum('promptgate_cost_usd_total')).toBeCloseTo(0.000435, 15);
    expect(m.sum('promptgate_cost_unknown_total')).toBeUndefined();
  });

  it('says when the cost header rests on the gateway\'s own count (the upstream reported no usage)', async () => {
    gw = await startTestGateway(mockConfig(upstreamUrl, '', '    breaker: {failures: 0}'));
    upstream.answer = json(completion('gpt-4o-mini'));
    const exact = await postChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(exact.headers['x-promptgate-usage-estimated']).toBeUndefined();
    const { usage: _none, ...withoutUsage } = completion('gpt-4o-mini');
    upstream.answer = json(withoutUsage);
    const estimated = await postChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(estimated.headers['x-promptgate-cost-usd']).toEqual(expect.any(String));
    expect(estimated.headers['x-promptgate-usage-estimated']).toBe('true');
  });
});
