/**
 * Service tiers: OpenAI bills flex processing at half the standard prices and priority
 * processing at prices of its own, and names the tier in the answer (`service_tier`). The
 * cost follows the tier the answer names; a tier the price entry has no prices for has
 * unknown cost rather than the standard one. Expected costs are computed by hand, USD per
 * 1M tokens.
 */
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { json, startCannedUpstream, type CannedUpstream } from './helpers/canned-upstream.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { createPriceBook } from '../src/telemetry/pricing.js';
import { usageFromOpenAI } from '../src/telemetry/usage.js';

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

const USAGE = { prompt_tokens: 1000, completion_tokens: 500, total_tokens: 1500, prompt_tokens_details: { cached_tokens: 200 } };

describe('price book', () => {
  const book = createPriceBook();
  const usage = usageFromOpenAI(USAGE)!;
  // o3 standard: 2 / 0.5 cached / 8; flex: half.
  const standard = (800 * 2 + 200 * 0.5 + 500 * 8) / 1e6;

  it('prices flex at the flex prices (half), other tiers and none at the standard ones', () => {
    expect(book.cost(usage, 'o3', 'flex')).toBeCloseTo((800 * 1 + 200 * 0.25 + 500 * 4) / 1e6, 15);
    expect(book.cost(usage, 'o3', 'flex')).toBeCloseTo(standard / 2, 15);
    for (const tier of [undefined, 'default', 'auto', 'scale']) expect(book.cost(usage, 'o3', tier)).toBeCloseTo(standard, 15);
    expect(book.cost(usage, 'gpt-5-mini-2025-08-07', 'flex')).toBeCloseTo((800 * 0.125 + 200 * 0.0125 + 500 * 1) / 1e6, 15);
  });

  it('prices priority at OpenAI\'s priority prices, per model (https://openai.com/api-priority-processing)', () => {
    expect(book.cost(usage, 'o3', 'priority')).toBeCloseTo((800 * 3.5 + 200 * 0.875 + 500 * 14) / 1e6, 15);
    expect(book.cost(usage, 'gpt-4o-2024-08-06', 'priority')).toBeCloseTo((800 * 4.25 + 200 * 2.125 + 500 * 17) / 1e6, 15);
    expect(book.cost(usage, 'gpt-4o-mini-2024-07-18', 'priority')).toBeCloseTo((800 * 0.25 + 200 * 0.125 + 500 * 1) / 1e6, 15);
    expect(book.cost(usage, 'gpt-5-mini', 'priority')).toBeCloseTo((800 * 0.45 + 200 * 0.045 + 500 * 3.6) / 1e6, 15);
    // The first gpt-4o snapshot has no cached price at any tier: cached tokens at the input price.
    expect(book.cost(usage, 'gpt-4o-2024-05-13', 'priority')).toBeCloseTo((1000 * 8.75 + 500 * 26.25) / 1e6, 15);
  });

  it('has unknown cost for a tier without prices: priority on a model OpenAI does not serve at it, flex on a model without flex', () => {
    expect(book.cost(usage, 'gpt-5-nano', 'priority')).toBeNull();
    expect(book.cost(usage, 'gpt-4o-mini', 'flex')).toBeNull();
  });

  it('takes configured tier prices; an override without them drops the shipped ones (entries replace as a whole)', () => {
    const custom = createPriceBook(createPriceBook(), {
      'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10, priority: { input: 4.25, cached_input: 2.125, output: 17 } },
      o3: { input: 2, cached_input: 0.5, output: 8 },
    });
    expect(custom.cost(usage, 'gpt-4o', 'priority')).toBeCloseTo((800 * 4.25 + 200 * 2.125 + 500 * 17) / 1e6, 15);
    expect(custom.cost(usage, 'o3', 'flex')).toBeNull();
    expect(custom.cost(usage, 'o3')).toBeCloseTo(standard, 15);
  });
});

describe('through the gateway', () => {
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

  const config = () => `
server: {host: 127.0.0.1}
logging: {level: silent}
upstreams: [{name: up, base_url: "${upstreamUrl}", api_key: sk-test}]
routing: {default: [up]}
`;

  async function costOf(path: string, body: object): Promise<{ header: unknown; metric: number | undefined; unknown: number | undefined }> {
    const res = await request(`${gw!.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    const prom = await scrapeMetrics(gw!.url);
    return { header: res.headers['x-promptgate-cost-usd'], metric: prom.sum('promptgate_cost_usd_total'), unknown: prom.sum('promptgate_cost_unknown_total') };
  }

  it('a non-stream chat answer served at flex is billed at flex prices (header and metric)', async () => {
    gw = await startTestGateway(config());
    upstream.answer = json({ id: 'c1', object: 'chat.completion', model: 'o4-mini-2025-04-16', service_tier: 'flex', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: USAGE });
    const got = await costOf('/v1/chat/completions', { model: 'o4-mini', service_tier: 'flex', messages: [{ role: 'user', content: 'hi' }] });
    const flex = (800 * 0.55 + 200 * 0.1375 + 500 * 2.2) / 1e6; // 0.0015675
    expect(got.header).toBe('0.0015675');
    expect(got.metric).toBeCloseTo(flex, 12);
  });

  it('a streamed chat answer served at priority without priority prices has unknown cost, not the standard one', async () => {
    gw = await startTestGateway(config());
    const chunk = (o: object) => `data: ${JSON.stringify({ id: 'c2', object: 'chat.completion.chunk', model: 'gpt-5-nano', service_tier: 'priority', ...o })}\n\n`;
    upstream.answer = {
      contentType: 'text/event-stream',
      body:
        chunk({ choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: null }] }) +
        chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
        chunk({ choices: [], usage: USAGE }) +
        'data: [DONE]\n\n',
    };
    const got = await costOf('/v1/chat/completions', { model: 'gpt-5-nano', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
    expect(got.header).toBeUndefined();
    expect(got.metric ?? 0).toBe(0);
    expect(got.unknown).toBe(1);
  });

  it('a Responses answer served at flex is billed at flex prices', async () => {
    gw = await startTestGateway(config());
    upstream.answer = json({ id: 'resp_1', object: 'response', model: 'gpt-5', service_tier: 'flex', output: [], usage: { input_tokens: 1000, input_tokens_details: { cached_tokens: 200 }, output_tokens: 500, output_tokens_details: { reasoning_tokens: 100 }, total_tokens: 1500 } });
    const got = await costOf('/v1/responses', { model: 'gpt-5', service_tier: 'flex', input: 'hi' });
    expect(got.header).toBe(String((800 * 0.625 + 200 * 0.0625 + 500 * 5) / 1e6)); // 0.0030125
  });
});
