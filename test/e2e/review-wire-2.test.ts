/**
 * Review 2 of POST /v1/chat/completions wire fidelity through the real clients (openai-node,
 * the AI SDK, LangChain): a scripted upstream (node:http, 127.0.0.1 port 0) sends exactly
 * the bytes a test gives it, cut into the chunks it gives, and each client reads them
 * directly and through the gateway. Apart from the documented change (the usage chunk the
 * gateway asked for itself), what the client gets must be the same.
 */
import http from 'node:http';
import OpenAI from 'openai';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, streamText, generateText, jsonSchema, tool } from 'ai';
import { ChatOpenAI } from '@langchain/openai';
import { HumanMessage, type AIMessageChunk } from '@langchain/core/messages';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relaySse } from '../../src/proxy/sse-relay.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { listenOnLoopback } from '../helpers/http-server.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { collect, rejection } from './client-helpers.js';

/** What the upstream answers: status, headers, and the body as chunks written one by one. */
interface Script {
  status?: number;
  headers?: Record<string, string>;
  chunks: Array<string | Buffer>;
  /** Wait between chunks (ms); else the next turn of the event loop. */
  delayMs?: number;
  /** After the chunks: end the body (default), reset the connection, or leave it open. */
  after?: 'end' | 'reset' | 'stall';
}

let script: (body: any) => Script = () => ({ chunks: [] });
const seen: any[] = [];
let server: http.Server;
let upstreamUrl: string;
let gw: TestGateway;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', async () => {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8') || 'null');
      seen.push(body);
      res.socket?.setNoDelay(true);
      const s = script(body);
      res.writeHead(s.status ?? 200, { 'content-type': 'text/event-stream', ...s.headers });
      for (const c of s.chunks) {
        res.write(c);
        // Each piece in its own TCP segment (most of the time): the reader sees the cuts.
        await new Promise((r) => (s.delayMs ? setTimeout(r, s.delayMs) : setImmediate(r)));
      }
      if (s.after === 'reset') setTimeout(() => res.destroy(), 20);
      else if (s.after !== 'stall') res.end();
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}/v1`;
  gw = await startTestGateway(mockConfig(upstreamUrl, '', '    timeout: {idle_ms: 2000, total_ms: 10000}\n    breaker: {failures: 0}'));
});
afterAll(async () => {
  await gw?.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const GATEWAY = () => `${gw.url}/v1`;
const DIRECT = () => upstreamUrl;
const BASE = { id: 'chatcmpl-r2', object: 'chat.completion.chunk', created: 1, model: 'o3-mini-2025-01-31', system_fingerprint: 'fp_1' };

/** A chunk with OpenAI's `"usage":null` when the request asked for usage. */
function chunk(asksUsage: boolean, choices: unknown[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ ...BASE, choices, ...(asksUsage ? { usage: null } : {}), ...extra });
}
const asks = (body: any) => body?.stream_options?.include_usage === true;

/** Cuts `text` into 1..7-byte pieces (inside UTF-8 characters and between CR and LF too). */
function shredded(text: string): Buffer[] {
  const bytes = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0, n = 1; i < bytes.length; i += n, n = (n % 7) + 1) out.push(bytes.subarray(i, i + n));
  return out;
}

async function raw(base: string, body: unknown): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const res = await request(`${base}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test' }, body: JSON.stringify(body) });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

const usage = {
  prompt_tokens: 19,
  completion_tokens: 310,
  total_tokens: 329,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 256, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
};


const chat = { model: 'o3-mini', messages: [{ role: 'user' as const, content: 'Weather in Paris and Tokyo?' }] };

/** A reasoning model's parallel tool calls, arguments in 2-character pieces, as OpenAI streams them. */
function toolCallStream(body: any, eol = '\n', usageOnLastChunk = false): string {
  const a = asks(body);
  const ev = (data: string) => `data: ${data}${eol}${eol}`;
  let out = ev(chunk(a, [{ index: 0, delta: { role: 'assistant', content: null, refusal: null }, logprobs: null, finish_reason: null }]));
  const calls = [
    { id: 'call_A', name: 'get_weather', args: '{"city":"Paris","unit":"c"}' },
    { id: 'call_B', name: 'get_weather', args: '{"city":"東京","unit":"c"}' },
  ];
  calls.forEach((c, index) => {
    out += ev(chunk(a, [{ index: 0, delta: { tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } }] }, logprobs: null, finish_reason: null }]));
    for (let i = 0; i < c.args.length; i += 2) {
      out += ev(chunk(a, [{ index: 0, delta: { tool_calls: [{ index, function: { arguments: c.args.slice(i, i + 2) } }] }, logprobs: null, finish_reason: null }]));
    }
  });
  if (usageOnLastChunk) {
    // Some OpenAI-compatible upstreams put the usage on the last choices chunk.
    out += ev(JSON.stringify({ ...BASE, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }], ...(a ? { usage } : {}) }));
  } else {
    out += ev(chunk(a, [{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }]));
    if (a) out += ev(chunk(false, [], { usage }));
  }
  return out + `data: [DONE]${eol}${eol}`;
}

const weather = {
  get_weather: tool({ description: 'weather', inputSchema: jsonSchema<{ city: string; unit?: string }>({ type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] }) }),
};
const lcTools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] } } }];

async function aiSdkStream(baseURL: string) {
  const model = createOpenAI({ baseURL, apiKey: 'sk-test' }).chat('o3-mini');
  const errors: unknown[] = [];
  const result = streamText({ model, prompt: 'Weather in Paris and Tokyo?', tools: weather, maxRetries: 0, onError: ({ error }) => void errors.push(error) });
  const parts: unknown[] = [];
  let thrown: unknown;
  try {
    for await (const part of result.fullStream) parts.push(part);
  } catch (err) {
    thrown = err;
  }
  if (thrown) return { parts, errors, thrown };
  const [u, finishReason, toolCalls] = await Promise.all([result.usage, result.finishReason, result.toolCalls]);
  return { parts: parts.filter((p: any) => p.type !== 'response-metadata' && p.type !== 'start-step' && p.type !== 'finish-step' && p.type !== 'finish'), usage: u, finishReason, toolCalls, errors, thrown };
}

async function langchainStream(baseURL: string, streamUsage: boolean) {
  const m = new ChatOpenAI({ model: 'o3-mini', apiKey: 'sk-test', configuration: { baseURL }, maxRetries: 0, streamUsage }).bindTools(lcTools);
  let final: AIMessageChunk | undefined;
  for await (const c of await m.stream([new HumanMessage('Weather in Paris and Tokyo?')])) final = final ? final.concat(c) : c;
  return { tool_calls: final!.tool_calls, usage: final!.usage_metadata, content: final!.content };
}

describe('streamed parallel tool calls of a reasoning model, byte by byte', () => {
  for (const usageOnLastChunk of [false, true]) {
    it(`openai-node, the AI SDK and LangChain assemble the same calls and usage as direct (usage on ${usageOnLastChunk ? 'the last choices chunk' : 'its own chunk'})`, async () => {
      script = (body) => ({ chunks: shredded(toolCallStream(body, '\r\n', usageOnLastChunk)) });
      const sdk = (baseURL: string) => new OpenAI({ baseURL, apiKey: 'sk-test', maxRetries: 0 });
      for (const includeUsage of [false, true]) {
        const req = { ...chat, stream: true as const, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) };
        const d = await collect(await sdk(DIRECT()).chat.completions.create(req));
        const g = await collect(await sdk(GATEWAY()).chat.completions.create(req));
        expect(g).toEqual(d);
        const final = await sdk(GATEWAY()).chat.completions.stream(req).finalChatCompletion();
        expect(final.choices[0].message.tool_calls!.map((c) => JSON.parse(c.function.arguments).city)).toEqual(['Paris', '東京']);
      }
      const da = await aiSdkStream(DIRECT());
      const ga = await aiSdkStream(GATEWAY());
      expect(ga.thrown).toBeUndefined();
      expect(ga).toEqual(da);
      expect(ga.usage?.outputTokenDetails?.reasoningTokens ?? (ga.usage as any)?.reasoningTokens).toBe(256);
      for (const streamUsage of [false, true]) {
        const dl = await langchainStream(DIRECT(), streamUsage);
        const gl = await langchainStream(GATEWAY(), streamUsage);
        expect(gl).toEqual(dl);
        expect(gl.tool_calls!.map((c) => c.args.city)).toEqual(['Paris', '東京']);
      }
    });
  }
});

describe('response headers the clients read', () => {
  const upstreamHeaders = {
    'x-request-id': 'req_r2_abc',
    'openai-processing-ms': '1234',
    'openai-version': '2020-10-01',
    'x-ratelimit-limit-requests': '10000',
    'x-ratelimit-remaining-requests': '9999',
    'x-ratelimit-reset-requests': '6ms',
    'x-ratelimit-limit-tokens': '30000000',
    'x-ratelimit-remaining-tokens': '29999990',
    'x-ratelimit-reset-tokens': '0s',
    'openai-organization': 'org-r2',
    'cache-control': 'no-cache, must-revalidate',
    'access-control-expose-headers': 'X-Request-ID',
  };
  const relayed = (h: Record<string, unknown>) => Object.fromEntries(Object.keys(upstreamHeaders).map((k) => [k, h[k]]));

  it('stream and error answers carry them intact', async () => {
    script = (body) => ({ headers: upstreamHeaders, chunks: [`data: ${chunk(asks(body), [{ index: 0, delta: { content: 'x' }, finish_reason: 'stop' }])}\n\n`, 'data: [DONE]\n\n'] });
    const d = await raw(DIRECT(), { ...chat, stream: true });
    const g = await raw(GATEWAY(), { ...chat, stream: true });
    expect(relayed(g.headers)).toEqual(relayed(d.headers));
    expect(g.headers['content-type']).toBe('text/event-stream');

    const error = { error: { message: 'Rate limit reached for o3-mini on tokens per min (TPM).', type: 'tokens', param: null, code: 'rate_limit_exceeded' } };
    script = () => ({ status: 429, headers: { ...upstreamHeaders, 'content-type': 'application/json', 'retry-after': '20', 'retry-after-ms': '20000' }, chunks: [JSON.stringify(error)] });
    const d2 = await raw(DIRECT(), { ...chat, stream: true });
    const g2 = await raw(GATEWAY(), { ...chat, stream: true });
    expect(g2.status).toBe(429);
    expect(g2.text).toBe(d2.text);
    expect(relayed(g2.headers)).toEqual(relayed(d2.headers));
    expect(g2.headers['retry-after']).toBe('20');
    expect(g2.headers['retry-after-ms']).toBe('20000');
  });
});

describe('upstream errors through each client', () => {
  const error = { error: { message: "Invalid schema for response_format 'answer': 'required' is missing 'b'.", type: 'invalid_request_error', param: 'response_format', code: 'invalid_json_schema' } };
  const answer = () => ({ status: 400, headers: { 'content-type': 'application/json', 'x-request-id': 'req_bad' }, chunks: [JSON.stringify(error)] });

  it('a 400 is the same typed error with message, param and code (openai-node, AI SDK, LangChain)', async () => {
    script = answer;
    const sdk = (baseURL: string) => new OpenAI({ baseURL, apiKey: 'sk-test', maxRetries: 0 });
    const req = { ...chat, response_format: { type: 'json_schema' as const, json_schema: { name: 'answer', strict: true, schema: { type: 'object', properties: { a: { type: 'string' }, b: { type: 'string' } }, required: ['a'] } } } };
    for (const stream of [false, true]) {
      const d = await rejection(sdk(DIRECT()).chat.completions.create({ ...req, stream }));
      const g = await rejection(sdk(GATEWAY()).chat.completions.create({ ...req, stream }));
      expect(g).toBeInstanceOf(OpenAI.BadRequestError);
      expect([g.message, g.param, g.code, g.type, g.requestID]).toEqual([d.message, d.param, d.code, d.type, d.requestID]);
    }
    const ai = (baseURL: string) => rejection(generateText({ model: createOpenAI({ baseURL, apiKey: 'sk-test' }).chat('o3-mini'), prompt: 'x', maxRetries: 0 }));
    const da = await ai(DIRECT());
    const ga = await ai(GATEWAY());
    expect(APICallError.isInstance(ga)).toBe(true);
    expect([ga.message, ga.statusCode, ga.isRetryable, ga.responseBody]).toEqual([da.message, da.statusCode, da.isRetryable, da.responseBody]);
    const lc = (baseURL: string) => rejection(new ChatOpenAI({ model: 'o3-mini', apiKey: 'sk-test', configuration: { baseURL }, maxRetries: 0 }).invoke('x'));
    const dl = await lc(DIRECT());
    const gl = await lc(GATEWAY());
    expect([gl.constructor.name, gl.message, gl.status, gl.code, gl.param]).toEqual([dl.constructor.name, dl.message, dl.status, dl.code, dl.param]);
  });

  it('a mid-stream error event reaches the AI SDK and LangChain as direct', async () => {
    script = (body) => ({
      chunks: [
        `data: ${chunk(asks(body), [{ index: 0, delta: { role: 'assistant', content: 'Par' }, finish_reason: null }])}\n\n`,
        `: keep-alive\n\n`,
        `data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}\n\n`,
      ],
    });
    const da = await aiSdkStream(DIRECT());
    const ga = await aiSdkStream(GATEWAY());
    expect(ga).toEqual(da);
    expect(ga.errors).toHaveLength(1);
    const lc = async (baseURL: string) => {
      try {
        return { ok: await langchainStream(baseURL, false) };
      } catch (err: any) {
        return { name: err.constructor.name, message: err.message };
      }
    };
    expect(await lc(GATEWAY())).toEqual(await lc(DIRECT()));
  });
});

describe('SSE variations an upstream may send', () => {
  /**
   * CR-only line ends, a BOM, `id:`/`event:`/`retry:` lines and comments inside events,
   * audio output chunks of ~256 KB each, and the usage chunk as the last event with no blank
   * line after it and no `[DONE]` (the stream just ends).
   */
  function variantStream(body: any): string {
    const a = asks(body);
    const cr = '\r';
    const audio = Buffer.alloc(192 * 1024, 7).toString('base64');
    let out = '\uFEFF: opening comment' + cr + cr;
    out += `retry: 1500${cr}id: 1${cr}data: ${chunk(a, [{ index: 0, delta: { role: 'assistant', content: null, audio: { id: 'audio_1', transcript: 'Bonjour' } }, finish_reason: null }])}${cr}${cr}`;
    out += `: keep-alive${cr}${cr}`;
    out += `event: message${cr}data: ${chunk(a, [{ index: 0, delta: { audio: { data: audio } }, finish_reason: null }])}${cr}: trailing comment${cr}${cr}`;
    out += `id: 3${cr}data: ${chunk(a, [{ index: 0, delta: { audio: { transcript: ' à tous' } }, finish_reason: null }])}${cr}${cr}`;
    out += `data: ${chunk(a, [{ index: 0, delta: { audio: { expires_at: 1, data: audio } }, finish_reason: 'stop' }])}${cr}${cr}`;
    if (a) out += `id: 5${cr}data: ${chunk(false, [], { usage: { ...usage, completion_tokens_details: { audio_tokens: 200, reasoning_tokens: 0 } } })}`;
    return out;
  }

  it('reach openai-node as direct, without or with the usage it asked for', async () => {
    script = (body) => {
      const text = variantStream(body);
      return { chunks: [...shredded(text.slice(0, 300)), Buffer.from(text.slice(300), 'utf8')] };
    };
    const sdk = (baseURL: string) => new OpenAI({ baseURL, apiKey: 'sk-test', maxRetries: 0 });
    for (const includeUsage of [false, true]) {
      const req = { ...chat, modalities: ['text', 'audio'] as Array<'text' | 'audio'>, audio: { voice: 'alloy' as const, format: 'pcm16' as const }, stream: true as const, store: true, metadata: { run: 'r2' }, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) };
      const d = await collect(await sdk(DIRECT()).chat.completions.create(req));
      const g = await collect(await sdk(GATEWAY()).chat.completions.create(req));
      expect(g).toEqual(d);
      // An event the stream ends without a blank line is dropped by the client (WHATWG SSE),
      // directly as through the gateway: so is the unterminated usage chunk here.
      expect(g).toHaveLength(4);
      const rd = await raw(DIRECT(), req);
      const rg = await raw(GATEWAY(), req);
      expect(rg.text).toBe(rd.text);
      // The client's own fields reach the upstream as it sent them.
      expect(seen.at(-1)).toMatchObject({ store: true, metadata: { run: 'r2' }, modalities: ['text', 'audio'] });
    }
  });
});

/** The sum and count of a histogram on /metrics, over all its series. */
async function histogram(name: string): Promise<{ sum: number; count: number }> {
  const text = await scrapeMetricsText(gw.url);
  let sum = 0;
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}_sum`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${name}_count`)) count += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { sum, count };
}

describe('time to first chunk', () => {
  it('is the first chunk, not a comment the upstream sends while the model thinks (OpenRouter-style processing comments)', async () => {
    // The comment at once, the first chunk 500 ms later (empty writes: 100 ms apart).
    script = (body) => ({
      delayMs: 100,
      chunks: [': PROCESSING\n\n', '', '', '', '', `data: ${chunk(asks(body), [{ index: 0, delta: { content: 'ok' }, finish_reason: 'stop' }])}\n\n`, 'data: [DONE]\n\n'],
    });
    const before = await histogram('gen_ai_client_operation_time_to_first_chunk_seconds');
    const g = await raw(GATEWAY(), { ...chat, stream: true });
    expect(g.text).toContain('"content":"ok"');
    let after = before;
    for (let i = 0; i < 50 && after.count === before.count; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = await histogram('gen_ai_client_operation_time_to_first_chunk_seconds');
    }
    expect(after.count).toBe(before.count + 1);
    // The time of the chunk (was: of the comment, ~0 s).
    expect(after.sum - before.sum).toBeGreaterThan(0.4);
  });
});

/** The sum of a counter's series on /metrics whose line contains every one of `labels`. */
async function counter(name: string, labels: string[]): Promise<number> {
  const text = await scrapeMetricsText(gw.url);
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && labels.every((l) => line.includes(l))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

describe('estimated usage of an OpenAI-compatible reasoning stream', () => {
  it('counts the reasoning text (reasoning_content, reasoning) the upstream bills as output', async () => {
    const thought = 'Let me weigh each city carefully before answering the question at hand. ';
    for (const field of ['reasoning_content', 'reasoning']) {
      // An upstream that ignores stream_options (no usage): the gateway counts the tokens.
      script = () => ({
        chunks: [
          ...Array.from({ length: 20 }, () => `data: ${chunk(false, [{ index: 0, delta: { [field]: thought }, finish_reason: null }])}\n\n`),
          `data: ${chunk(false, [{ index: 0, delta: { content: 'Sunny.' }, finish_reason: 'stop' }])}\n\n`,
          'data: [DONE]\n\n',
        ],
      });
      const labels = ['gen_ai_token_type="output"', 'estimated="true"'];
      const before = await counter('promptgate_tokens_total', labels);
      await raw(GATEWAY(), { ...chat, stream: true });
      let after = before;
      for (let i = 0; i < 50 && after === before; i++) {
        await new Promise((r) => setTimeout(r, 20));
        after = await counter('promptgate_tokens_total', labels);
      }
      // 20 thoughts of ~14 tokens, and the answer (was: the answer's 2 tokens only).
      expect(after - before).toBeGreaterThan(200);
    }
  });
});

describe('an upstream that fails after its [DONE]', () => {
  const whole = (body: any) =>
    `data: ${chunk(asks(body), [{ index: 0, delta: { role: 'assistant', content: 'Sunny.' }, finish_reason: null }])}\n\n` +
    `data: ${chunk(asks(body), [{ index: 0, delta: {}, finish_reason: 'stop' }])}\n\n` +
    (asks(body) ? `data: ${chunk(false, [], { usage })}\n\n` : '') +
    'data: [DONE]\n\n';

  for (const after of ['reset', 'stall'] as const) {
    it(`${after}: the client's stream ends whole, no error event after [DONE] (was: the AI SDK's answer ended in error)`, async () => {
      script = (body) => ({ chunks: [whole(body)], after });
      const g = await raw(GATEWAY(), { ...chat, stream: true });
      expect(g.text).toBe(whole({}));

      const ai = await aiSdkStream(GATEWAY());
      expect(ai.thrown).toBeUndefined();
      expect(ai.errors).toEqual([]);
      expect(ai.finishReason).toBe('stop');
      expect(ai.usage?.outputTokens).toBe(310);

      const stream = await new OpenAI({ baseURL: GATEWAY(), apiKey: 'sk-test', maxRetries: 0 }).chat.completions.create({ ...chat, stream: true });
      expect((await collect(stream)).map((c) => c.choices[0]?.finish_reason)).toEqual([null, 'stop']);
    });
  }
});

describe('relaySse (the Web stream relay) after [DONE]', () => {
  it('ends the stream whole when the upstream read fails after [DONE], and accounts it ok', async () => {
    const body = `data: ${chunk(false, [{ index: 0, delta: { content: 'x' }, finish_reason: 'stop' }])}\n\ndata: [DONE]\n\n`;
    async function* source() {
      yield Buffer.from(body);
      throw Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
    }
    const ends: unknown[] = [];
    const stream = relaySse(source(), { stripUsageChunk: false, onEnd: (_s, end) => void ends.push(end), abortUpstream: () => undefined, clientGone: () => false });
    expect(await new Response(stream).text()).toBe(body);
    expect(ends).toEqual([{ outcome: 'ok' }]);
  });
});

describe('a stream the upstream labels text/plain (or not at all)', () => {
  it('is relayed as it arrives, the usage chunk the client did not ask for removed (was: held back whole, usage shown)', async () => {
    for (const contentType of ['text/plain; charset=utf-8', '']) {
      script = (body) => ({
        headers: { 'content-type': contentType },
        delayMs: 300,
        chunks: [
          `data: ${chunk(asks(body), [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }])}\n\n`,
          `data: ${chunk(asks(body), [{ index: 0, delta: {}, finish_reason: 'stop' }])}\n\n`,
          ...(asks(body) ? [`data: ${JSON.stringify({ ...BASE, choices: [], usage })}\n\n`] : []),
          'data: [DONE]\n\n',
        ],
      });
      const started = performance.now();
      const res = await request(`${GATEWAY()}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...chat, stream: true }) });
      let firstAt = 0;
      let text = '';
      for await (const piece of res.body) {
        firstAt ||= performance.now() - started;
        text += Buffer.from(piece).toString('utf8');
      }
      expect(res.statusCode, contentType).toBe(200);
      expect(firstAt, contentType).toBeLessThan(250); // the first event, not the whole stream 600+ ms later
      expect(text).toContain('"content":"Hi"');
      expect(text).not.toContain('"usage"');
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    }
  });
});
