/**
 * Review of POST /v1/chat/completions across the OpenAI Chat Completions surface: the
 * official `openai` client through the gateway to a node:http upstream that answers as
 * OpenAI does (`"usage":null` on every chunk and a usage chunk when include_usage is set),
 * checking the bytes the client gets and the usage and cost the gateway records.
 */
import http from 'node:http';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { sseStream } from './helpers/sse.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { costOf } from '../src/telemetry/pricing.js';
import { usageFromOpenAI } from '../src/telemetry/usage.js';

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

type Answer = (body: Record<string, unknown>, raw: string) => { json: unknown } | { events: unknown[] };

let answer: Answer = () => ({ json: {} });
const received: string[] = [];
let server: http.Server;
let upstreamUrl: string;
let gw: TestGateway | undefined;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      received.push(raw);
      const a = answer(JSON.parse(raw) as Record<string, unknown>, raw);
      if ('json' in a) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(a.json));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const e of a.events) res.write(`data: ${JSON.stringify(e)}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}/v1`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  received.length = 0;
});

async function start(extra = ''): Promise<{ client: OpenAI; url: string }> {
  gw = await startTestGateway(mockConfig(upstreamUrl, extra, '    breaker: {failures: 0}'));
  return { client: new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 }), url: gw.url };
}

const metrics = () => scrapeMetrics(gw!.url);

async function postRaw(body: string): Promise<{ headers: Record<string, unknown>; text: string }> {
  const res = await request(`${gw!.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { headers: res.headers, text: await res.body.text() };
}

const BASE = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini-2024-07-18', system_fingerprint: 'fp_1', service_tier: 'default' };
const USAGE = {
  prompt_tokens: 1000,
  completion_tokens: 500,
  total_tokens: 1500,
  prompt_tokens_details: { cached_tokens: 200, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
};
/** gpt-4o-mini: (800 * 0.15 + 200 * 0.075 + 500 * 0.6) / 1e6. */
const USAGE_COST = (800 * 0.15 + 200 * 0.075 + 500 * 0.6) / 1e6;

/** The chunks OpenAI sends: with include_usage, `"usage":null` on each and a usage chunk last. */
function openaiStream(choices: unknown[][], includeUsage: boolean, usage: unknown = USAGE): unknown[] {
  const chunks: unknown[] = choices.map((c) => ({ ...BASE, choices: c, ...(includeUsage ? { usage: null } : {}) }));
  if (includeUsage) chunks.push({ ...BASE, choices: [], usage });
  return chunks;
}
const wantsUsage = (body: Record<string, unknown>) => (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;

const N2 = [
  [{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }],
  [{ index: 1, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }],
  [{ index: 0, delta: { content: 'Hello' }, logprobs: { content: [{ token: 'Hello', logprob: -0.01, bytes: [72, 101, 108, 108, 111], top_logprobs: [] }], refusal: null }, finish_reason: null }],
  [{ index: 1, delta: { content: 'Hi' }, logprobs: { content: [{ token: 'Hi', logprob: -0.2, bytes: [72, 105], top_logprobs: [] }], refusal: null }, finish_reason: null }],
  [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }],
  [{ index: 1, delta: {}, logprobs: null, finish_reason: 'length' }],
];
const TOOLS = [
  [{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] }, finish_reason: null }],
  [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, finish_reason: null }],
  [{ index: 0, delta: { tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '' } }] }, finish_reason: null }],
  [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, finish_reason: null }],
  [{ index: 0, delta: { tool_calls: [{ index: 1, function: { arguments: '{"tz":"CET"}' } }] }, finish_reason: null }],
  [{ index: 0, delta: {}, finish_reason: 'tool_calls' }],
];
const REFUSAL = [
  [{ index: 0, delta: { role: 'assistant', content: null, refusal: '' }, finish_reason: null }],
  [{ index: 0, delta: { refusal: "I'm sorry, I can't help with that." }, finish_reason: null }],
  [{ index: 0, delta: {}, finish_reason: 'stop' }],
];

describe('streams through the openai client', () => {
  it.each([
    ['n: 2 with logprobs', N2],
    ['parallel tool calls', TOOLS],
    ['a refusal', REFUSAL],
  ])('%s: the client gets the stream it asked for, usage and cost exact', async (_name, choices) => {
    const { client } = await start();
    answer = (body) => ({ events: openaiStream(choices, wantsUsage(body)) });
    // Without include_usage: the gateway asks for usage, then removes the usage chunk and every "usage":null.
    const plain = await postRaw(JSON.stringify({ model: 'gpt-4o-mini', n: 2, logprobs: true, stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    expect(plain.text).toBe(sseStream(openaiStream(choices, false)));
    // With include_usage (openai-node): the usage chunk and the nulls stay.
    const chunks: unknown[] = [];
    for await (const chunk of await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] })) chunks.push(chunk);
    expect(chunks).toEqual(openaiStream(choices, true));
    const m = await metrics();
    expect(m.sum('promptgate_tokens_total', { gen_ai_token_type: 'input', estimated: 'false' })).toBe(2000);
    expect(m.sum('promptgate_tokens_total', { gen_ai_token_type: 'output', estimated: 'false' })).toBe(1000);
    expect(m.sum('promptgate_tokens_total', { gen_ai_token_type: 'cache_read' })).toBe(400);
    expect(m.sum('promptgate_cost_usd_total')).toBeCloseTo(2 * USAGE_COST, 15);
  });

  it('usage on the last content chunk is removed when the gateway asked for it', async () => {
    await start();
    // Some OpenAI-compatible upstreams put the usage on the finish chunk rather than a chunk of its own.
    const events = (withUsage: boolean) => [
      { ...BASE, choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }] },
      { ...BASE, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], ...(withUsage ? { usage: USAGE } : {}) },
    ];
    answer = (body) => ({ events: events(wantsUsage(body)) });
    const plain = await postRaw(JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    expect(plain.text).toBe(sseStream(events(false)));
    const asked = await postRaw(JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }));
    expect(asked.text).toBe(sseStream(events(true)));
    const m = await metrics();
    expect(m.sum('promptgate_tokens_total', { gen_ai_token_type: 'output', estimated: 'false' })).toBe(1000);
    expect(m.sum('promptgate_cost_usd_total')).toBeCloseTo(2 * USAGE_COST, 15);
  });

  it('other stream_options fields reach the upstream next to the include_usage the gateway adds', async () => {
    await start();
    answer = (body) => ({ events: openaiStream([REFUSAL[2]], wantsUsage(body)) });
    await postRaw(JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_obfuscation: false }, messages: [{ role: 'user', content: 'hi' }] }));
    expect(JSON.parse(received[0]).stream_options).toEqual({ include_obfuscation: false, include_usage: true });
  });
});

describe('requests pass through untouched', () => {
  const FULL = `{"model":"gpt-4o-mini","seed":9007199254740993,"temperature":1.0,"messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}},{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}],"tools":[{"type":"function","function":{"name":"f","strict":true,"parameters":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}}}],"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object"}}},"modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"},"store":true,"metadata":{"k":"v"},"prediction":{"type":"content","content":"draft"},"reasoning_effort":"low","service_tier":"flex","max_completion_tokens":100,"parallel_tool_calls":true,"logit_bias":{"50256":-100}`;

  it('a non-stream request is forwarded byte for byte', async () => {
    await start();
    answer = () => ({ json: { id: 'c', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [], usage: USAGE } });
    await postRaw(`${FULL}}`);
    expect(received[0]).toBe(`${FULL}}`);
  });

  it('a 64-bit seed reaches the upstream unrounded when the gateway adds include_usage', async () => {
    await start();
    answer = (body) => ({ events: openaiStream([REFUSAL[2]], wantsUsage(body)) });
    await postRaw(`${FULL},"stream":true}`);
    // JSON.stringify of the parsed body sent 9007199254740992 and 1 for 1.0.
    expect(received[0]).toContain('"seed":9007199254740993');
    expect(received[0]).toBe(`{"stream_options":{"include_usage":true},${FULL.slice(1)},"stream":true}`);
  });
});

describe('usage details and prices', () => {
  const completion = (model: string, usage: unknown, message: unknown = { role: 'assistant', content: 'ok', refusal: null, annotations: [] }) => ({
    id: 'chatcmpl-2',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: 'stop' }],
    usage,
    service_tier: 'default',
    system_fingerprint: 'fp_2',
  });
  const AUDIO_USAGE = {
    prompt_tokens: 100,
    completion_tokens: 200,
    total_tokens: 300,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 80 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 150, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };

  it('audio tokens are priced at the audio prices, and the audio answer reaches the client whole', async () => {
    const { client } = await start();
    const audio = { id: 'audio_1', data: 'UklGR'.repeat(400_000), expires_at: 1, transcript: 'Hello there' };
    const json = completion('gpt-4o-audio-preview-2025-06-03', AUDIO_USAGE, { role: 'assistant', content: null, refusal: null, audio });
    answer = () => ({ json });
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-audio-preview', modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' }, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(data).toEqual(json);
    // text in 20 * 2.5, audio in 80 * 40, text out 50 * 10, audio out 150 * 80 (per 1M).
    expect(response.headers.get('x-promptgate-cost-usd')).toBe('0.01575');
  });

  it('audio tokens at a price without audio prices make the cost unknown, not text-priced', async () => {
    await start();
    answer = () => ({ json: completion('gpt-4o-mini-2024-07-18', AUDIO_USAGE) });
    const res = await postRaw(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }));
    expect(res.headers['x-promptgate-cost-usd']).toBeUndefined();
    const m = await metrics();
    expect(m.sum('promptgate_cost_unknown_total')).toBe(1);
    expect(m.sum('promptgate_cost_usd_total')).toBeUndefined();
  });

  it('reasoning, cached and rejected prediction tokens on dated snapshots are billed exactly', async () => {
    const { client } = await start();
    const usage = {
      prompt_tokens: 2000,
      completion_tokens: 1000,
      total_tokens: 3000,
      prompt_tokens_details: { cached_tokens: 1500, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 400, audio_tokens: 0, accepted_prediction_tokens: 100, rejected_prediction_tokens: 300 },
    };
    // Rejected prediction tokens are part of completion_tokens, billed at the output price.
    const cases: Array<[string, number]> = [
      ['o3-mini-2025-01-31', (500 * 1.1 + 1500 * 0.55 + 1000 * 4.4) / 1e6],
      ['gpt-4.1-nano-2025-04-14', (500 * 0.1 + 1500 * 0.025 + 1000 * 0.4) / 1e6],
      ['gpt-4o-mini-2024-07-18', (500 * 0.15 + 1500 * 0.075 + 1000 * 0.6) / 1e6],
    ];
    for (const [model, cost] of cases) {
      answer = () => ({ json: completion(model, usage) });
      const { response } = await client.chat.completions
        .create({ model, prediction: { type: 'content', content: 'draft' }, reasoning_effort: 'low', messages: [{ role: 'user', content: 'hi' }] })
        .withResponse();
      expect(Number(response.headers.get('x-promptgate-cost-usd'))).toBeCloseTo(cost, 15);
    }
    answer = () => ({ json: completion('no-such-model', usage) });
    const { response } = await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    expect(response.headers.get('x-promptgate-cost-usd')).toBeNull();
    expect((await metrics()).sum('promptgate_cost_unknown_total')).toBe(1);
  });

  it('usageFromOpenAI reads audio tokens and costOf prices them apart', () => {
    const usage = usageFromOpenAI(AUDIO_USAGE)!;
    expect(usage).toMatchObject({ inputTokens: 100, outputTokens: 200, audioInputTokens: 80, audioOutputTokens: 150 });
    expect(costOf(usage, { input: 1, output: 2, audio_input: 10, audio_output: 20 })).toBeCloseTo((20 + 800 + 100 + 3000) / 1e6, 15);
    expect(costOf(usage, { input: 1, output: 2, audio_input: 10 })).toBeNull();
    expect(usageFromOpenAI(USAGE)).not.toHaveProperty('audioInputTokens');
  });
});

describe('estimates without usage', () => {
  it('image parts and tool calls: the record is marked estimated with plausible counts', async () => {
    await start();
    const toolCall = { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } };
    answer = () => ({
      json: { id: 'c', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [toolCall] }, finish_reason: 'tool_calls' }] },
    });
    await postRaw(
      JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'What is the weather where this photo was taken?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] },
        ],
      }),
    );
    answer = (body) => ({ events: openaiStream(TOOLS, wantsUsage(body)).slice(0, TOOLS.length) });
    await postRaw(JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Weather and time in Paris?' }] }));
    const m = await metrics();
    expect(m.sum('promptgate_tokens_total', { estimated: 'false' })).toBeUndefined();
    // Text only (images are not counted): ~10 + 8 framing tokens for the first, ~6 + 8 for the second.
    const input = m.sum('promptgate_tokens_total', { gen_ai_token_type: 'input', estimated: 'true' })!;
    const output = m.sum('promptgate_tokens_total', { gen_ai_token_type: 'output', estimated: 'true' })!;
    expect(input).toBeGreaterThan(20);
    expect(input).toBeLessThan(60);
    // Tool call names and arguments: get_weather{"city":"Paris"} twice, get_time{"tz":"CET"}.
    expect(output).toBeGreaterThan(10);
    expect(output).toBeLessThan(40);
  });
});
