/**
 * Review: real OpenAI-compatible upstreams are not quite OpenAI. Each test is a canned
 * upstream with one provider's wire quirk (Azure OpenAI, vLLM, Ollama, llama.cpp, Groq,
 * DeepSeek, Mistral, OpenRouter, ...); the official `openai` client must get the same result
 * through the gateway as directly, and the request log (tokens, cost, outcome) must be right
 * or marked estimated. Expected costs by hand, USD per 1M tokens (gpt-4o-mini: input 0.15,
 * cached_input 0.075, output 0.6; deepseek-chat as configured below: 0.27 / 0.07 / 1.1).
 */
import http from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { sseEvents } from './helpers/sse.js';
import { SseScanner } from '../src/proxy/sse-scanner.js';
import { usageFromOpenAI } from '../src/telemetry/usage.js';

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

interface Answer {
  status?: number;
  contentType?: string;
  /** Written as separate writes (a stream in pieces). */
  body: string | string[];
  /** ms between the last piece and the end of the body (an upstream slow to close). */
  endAfterMs?: number;
}

let answer: Answer = { body: '{}' };
let server: http.Server;
let upstreamUrl: string;
let gw: TestGateway;
let gatewayLog: GatewayLogCapture;

beforeAll(async () => {
  gatewayLog = captureGatewayLog();
  server = http.createServer((req, res) => {
    req.resume();
    const answered = answer;
    req.on('end', async () => {
      res.writeHead(answered.status ?? 200, { 'content-type': answered.contentType ?? 'text/event-stream' });
      const pieces = Array.isArray(answered.body) ? answered.body : [answered.body];
      for (const piece of pieces) {
        res.write(piece);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (answered.endAfterMs) await new Promise((r) => setTimeout(r, answered.endAfterMs));
      if (!res.destroyed) res.end();
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}/v1`;
  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: info, requests: true}
templates: {dir: templates}
pricing:
  deepseek-chat: {input: 0.27, cached_input: 0.07, output: 1.1}
upstreams:
  - name: quirky
    base_url: ${upstreamUrl}
    api_key: sk-quirky-0000000000
    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}
    retry: {attempts: 1}
    breaker: {failures: 0}
  # The README's advice for an upstream that sends usage whether asked or not.
  - name: always-usage
    base_url: ${upstreamUrl}
    api_key: sk-quirky-0000000000
    ask_stream_usage: false
    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}
    retry: {attempts: 1}
    breaker: {failures: 0}
routing: {default: [quirky], models: {openrouter-model: [always-usage]}}
`);
});

afterAll(async () => {
  await gw?.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  gatewayLog.restore();
});

const BASE = { id: 'chatcmpl-q', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini' };
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];

/** The gateway's request id of the last answer an openai client got through it. */
let lastRequestId: string | null = null;
const clientFor = (baseURL: string) =>
  new OpenAI({
    baseURL,
    apiKey: 'sk-test',
    maxRetries: 0,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      lastRequestId = res.headers.get('x-promptgate-request-id');
      return res;
    },
  });

/** What an openai client makes of a streamed answer: its chunks, or the error it threw. */
async function streamVia(baseURL: string, extra: object = {}) {
  const client = clientFor(baseURL);
  const chunks: unknown[] = [];
  try {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true, ...extra });
    for await (const c of stream) chunks.push(c);
    return { chunks };
  } catch (err) {
    return { chunks, error: String(err) };
  }
}

async function completionVia(baseURL: string, extra: object = {}) {
  const client = clientFor(baseURL);
  try {
    return { completion: await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, ...extra }) };
  } catch (err) {
    return { error: String(err) };
  }
}

/** The request log line of the gateway request `requestId` (written once it is accounted). */
async function logLineOf(requestId: string | null): Promise<Record<string, any>> {
  expect(requestId).toBeTruthy();
  const until = Date.now() + 5000;
  for (;;) {
    const line = gatewayLog.requests.find((l) => l.request_id === requestId);
    if (line) return line;
    if (Date.now() > until) throw new Error(`no request log line for ${requestId}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Direct and through the gateway: the same client result; the gateway's log line. */
async function both(kind: 'stream' | 'json', extra: object = {}) {
  const direct = kind === 'stream' ? await streamVia(upstreamUrl, extra) : await completionVia(upstreamUrl, extra);
  const via = kind === 'stream' ? await streamVia(`${gw.url}/v1`, extra) : await completionVia(`${gw.url}/v1`, extra);
  const log = await logLineOf(lastRequestId);
  return { direct, via, log };
}

const usageChunk = (usage: object, extra: object = {}) => ({ ...BASE, choices: [], usage, ...extra });
const content = (text: string, finish: string | null = null, extra: object = {}) => ({ ...BASE, choices: [{ index: 0, delta: { content: text }, finish_reason: finish }], ...extra });
const cost = (perMillion: number) => perMillion / 1e6;

describe('bugs found (regressions)', () => {
  it('Groq: usage only in x_groq.usage on the last chunk is read (was: estimated from the text)', async () => {
    answer = {
      body: sseEvents(
        content('Hi', null, { x_groq: { id: 'req_1' } }),
        content('', 'stop', { x_groq: { id: 'req_1', usage: { queue_time: 0.01, prompt_tokens: 100, prompt_time: 0.001, completion_tokens: 50, completion_time: 0.1, total_tokens: 150, total_time: 0.2 } } }),
        '[DONE]',
      ),
    };
    const { direct, via, log } = await both('stream');
    expect(via).toEqual(direct); // x_groq reaches the client as sent
    expect(log).toMatchObject({ outcome: 'ok', input_tokens: 100, output_tokens: 50 });
    expect(log.tokens_estimated).toBeUndefined();
    expect(log.cost_usd).toBeCloseTo(cost(100 * 0.15 + 50 * 0.6), 15);
  });

  it('Groq: a top-level usage wins over x_groq.usage, whichever chunk comes last (never added up)', async () => {
    answer = {
      body: sseEvents(
        content('Hi'),
        content('', 'stop', { x_groq: { id: 'req_1', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } } }),
        usageChunk({ prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 }),
        content('', null, { choices: [], x_groq: { usage: { prompt_tokens: 7, completion_tokens: 7 } } }),
        '[DONE]',
      ),
    };
    const { direct, via, log } = await both('stream', { stream_options: { include_usage: true } });
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ input_tokens: 100, output_tokens: 50 });
  });

  it('DeepSeek: prompt_cache_hit_tokens count as cached input when prompt_tokens_details is absent (was: billed at the full input price)', async () => {
    answer = {
      contentType: 'application/json',
      body: JSON.stringify({
        id: 'ds-1', object: 'chat.completion', created: 1, model: 'deepseek-chat',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop', logprobs: null }],
        usage: { prompt_tokens: 1000, completion_tokens: 100, total_tokens: 1100, prompt_cache_hit_tokens: 800, prompt_cache_miss_tokens: 200 },
      }),
    };
    const { direct, via, log } = await both('json');
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ outcome: 'ok', input_tokens: 1000, output_tokens: 100, cached_input_tokens: 800 });
    expect(log.cost_usd).toBeCloseTo(cost(200 * 0.27 + 800 * 0.07 + 100 * 1.1), 15);
    // Newer DeepSeek sends both: the details are the one count (never added to the other).
    expect(usageFromOpenAI({ prompt_tokens: 1000, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 640 }, prompt_cache_hit_tokens: 640 })!.cachedInputTokens).toBe(640);
    expect(usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 1, prompt_cache_hit_tokens: 99 })!.cachedInputTokens).toBe(10);
    expect(usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 1, prompt_cache_hit_tokens: -3 })!.cachedInputTokens).toBe(0);
  });

  it('vLLM: a bare {"object":"error"} event mid-stream is an upstream stream error (was: outcome ok)', async () => {
    answer = { body: sseEvents(content('Hi'), { object: 'error', message: 'boom', type: 'BadRequestError', param: null, code: 400 }, '[DONE]') };
    const { direct, via, log } = await both('stream');
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ status: 200, outcome: 'error', error_type: 'upstream_stream_error' });
  });

  it('llama.cpp: an `error:` field (no data) mid-stream is an upstream stream error (was: outcome ok); the client sees what it sees directly', async () => {
    answer = { body: [...sseEvents(content('Hi')), `error: ${JSON.stringify({ error: { code: 500, message: 'boom', type: 'server_error' } })}\n\n`] };
    const { direct, via, log } = await both('stream');
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ status: 200, outcome: 'error', error_type: 'upstream_stream_error' });
    // A content delta that merely says "error:" is not one.
    answer = { body: sseEvents(content('error: none'), '[DONE]') };
    expect((await both('stream')).log.outcome).toBe('ok');
  });

  it('an error sent as a non-stream 200 body is a failure without tokens or cost (was: ok, estimated input billed)', async () => {
    answer = { contentType: 'application/json', body: JSON.stringify({ error: { message: 'Provider returned error', code: 502 }, user_id: 'u' }) };
    const { direct, via, log } = await both('json');
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ status: 200, outcome: 'error', error_type: 'upstream_error_body' });
    expect(log.input_tokens).toBeUndefined();
    expect(log.cost_usd).toBeUndefined();
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES }) });
    await res.text();
    expect((await logLineOf(res.headers.get('x-promptgate-request-id'))).outcome).toBe('error');
    expect(res.headers.get('x-promptgate-cost-usd')).toBeNull();
    expect(res.headers.get('x-promptgate-usage-estimated')).toBeNull();
    answer = { contentType: 'application/json', body: JSON.stringify({ object: 'error', message: 'boom', type: 'BadRequestError', param: null, code: 400 }) };
    expect((await both('json')).log).toMatchObject({ outcome: 'error', error_type: 'upstream_error_body' });
  });

  it('an error event mid-stream is accounted as the upstream error when the client leaves on it (was: client_abort)', async () => {
    // openai-node throws on an error event and closes its connection at once: an upstream
    // that does not end its body right after the event saw the request counted as cancelled.
    for (const events of [sseEvents(content('Hi'), { error: { message: 'overloaded', type: 'server_error', code: 'overloaded' } }), sseEvents({ object: 'error', message: 'boom', type: 'BadRequestError', param: null, code: 400 })]) {
      answer = { body: events, endAfterMs: 300 };
      const { direct, via, log } = await both('stream');
      expect(via).toEqual(direct);
      expect(log).toMatchObject({ status: 200, outcome: 'error', error_type: 'upstream_stream_error' });
    }
  });

  it('a finish reason repeated on a later chunk (the usage chunk) is one per choice (was: ["stop","stop"]); "" is none', async () => {
    const scan = (events: unknown[]) => {
      const scanner = new SseScanner(false);
      scanner.push(Buffer.from(sseEvents(...events).join('')));
      scanner.flush();
      return scanner.summary.finishReasons;
    };
    expect(scan([content('Hi'), content('', 'stop'), { ...BASE, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 1 } }])).toEqual(['stop']);
    // n = 2: by choice index, whatever order the choices finish in.
    const two = (index: number, finish: string) => ({ ...BASE, choices: [{ index, delta: {}, finish_reason: finish }] });
    expect(scan([two(1, 'stop'), two(0, 'length'), two(1, 'stop')])).toEqual(['length', 'stop']);
    // `"finish_reason": ""` on the chunks before the last (some servers) is no reason.
    expect(scan([content('a', ''), content('b', ''), content('', 'stop')])).toEqual(['stop']);
    expect(scan([content('a', '')])).toEqual([]);
    // Through the gateway: the tokens of that stream once.
    answer = { body: sseEvents(content('Hi'), content('', 'stop'), { ...BASE, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 1 } }, '[DONE]') };
    const { direct, via, log } = await both('stream', { stream_options: { include_usage: true } });
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ input_tokens: 5, output_tokens: 1 });
  });
});

describe('quirks that were already fine', () => {
  it('vLLM continuous_usage_stats: cumulative usage on every chunk counts the last, not the sum', async () => {
    answer = {
      body: sseEvents(
        content('Hel', null, { usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 } }),
        content('lo', 'stop', { usage: { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 } }),
        usageChunk({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 }),
        '[DONE]',
      ),
    };
    const { direct, via, log } = await both('stream', { stream_options: { include_usage: true } });
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ input_tokens: 9, output_tokens: 2 });
  });

  it('Azure: prompt filter chunk (choices [], id and model ""), content_filter_results, usage null, null details', async () => {
    answer = {
      body: sseEvents(
        { id: '', object: '', created: 0, model: '', choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: { hate: { filtered: false, severity: 'safe' } } }] },
        content('Hi', null, { usage: null, choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null, content_filter_results: {} }] }),
        content('', 'stop', { usage: null }),
        usageChunk({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6, prompt_tokens_details: null, completion_tokens_details: null }),
        '[DONE]',
      ),
    };
    for (const extra of [{}, { stream_options: { include_usage: true } }]) {
      const direct = await streamVia(upstreamUrl, extra);
      const via = await streamVia(`${gw.url}/v1`, extra);
      const log = await logLineOf(lastRequestId);
      expect(log).toMatchObject({ outcome: 'ok', response_model: 'gpt-4o-mini', input_tokens: 5, output_tokens: 1 });
      if (Object.keys(extra).length) expect(via).toEqual(direct);
      else expect(via.chunks.map((c: any) => c.choices)).toEqual(direct.chunks.slice(0, 3).map((c: any) => c.choices)); // the unasked usage goes
    }
  });

  it('data: without a space, CRLF line ends, "eos", no [DONE] and no blank line after the last event', async () => {
    answer = { body: [`data:${JSON.stringify(content('Hi', 'eos'))}\r\n\r\n`, `data:${JSON.stringify(usageChunk({ prompt_tokens: 5, completion_tokens: 1 }))}\r\n`] };
    const { direct, via, log } = await both('stream', { stream_options: { include_usage: true } });
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ outcome: 'ok', input_tokens: 5, output_tokens: 1 });
  });

  it('OpenRouter: ": OPENROUTER PROCESSING" comments, provider/model names, usage.cost; with ask_stream_usage: false its usage reaches the client', async () => {
    const events = [': OPENROUTER PROCESSING\n\n', ...sseEvents(
      { ...content('Hi', 'stop'), model: 'openai/gpt-4o-mini' },
      { ...usageChunk({ prompt_tokens: 1000, completion_tokens: 100, total_tokens: 1100, cost: 0.0009, prompt_tokens_details: { cached_tokens: 500 }, completion_tokens_details: { reasoning_tokens: 0 } }), model: 'openai/gpt-4o-mini' },
      '[DONE]',
    )];
    answer = { body: events };
    const { direct, via, log } = await both('stream', { model: 'openrouter-model' });
    expect(via).toEqual(direct); // the usage it always sends is not removed
    expect(log).toMatchObject({ upstream: 'always-usage', response_model: 'openai/gpt-4o-mini', input_tokens: 1000, output_tokens: 100, cached_input_tokens: 500 });
    expect(log.tokens_estimated).toBeUndefined();
    expect(log.cost_usd).toBeCloseTo(cost(500 * 0.15 + 500 * 0.075 + 100 * 0.6), 15);
  });

  it('tool call without index, arguments whole in one chunk; chunk without delta; id changing; no model', async () => {
    answer = {
      body: sseEvents(
        { id: 'a', object: 'chat.completion.chunk', created: 1, choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get', arguments: '{"a":1}' } }] }, finish_reason: null }] },
        { id: 'b', object: 'chat.completion.chunk', created: 1, choices: [{ index: 0, finish_reason: 'tool_calls' }] },
        '[DONE]',
      ),
    };
    const { direct, via, log } = await both('stream');
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ outcome: 'ok', tokens_estimated: true });
    expect(log.response_model).toBeUndefined();
    expect(log.output_tokens).toBeGreaterThan(0);
    expect(Number.isFinite(log.cost_usd)).toBe(true);
  });

  it('non-stream usage with total_tokens only is marked estimated', async () => {
    answer = { contentType: 'application/json', body: JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop' }], usage: { total_tokens: 12 } }) };
    const { direct, via, log } = await both('json');
    expect(via).toEqual(direct);
    expect(log).toMatchObject({ outcome: 'ok', tokens_estimated: true });
  });

  it('an error event in a 200 stream is an upstream stream error; openai-node throws it both ways', async () => {
    answer = { body: sseEvents({ error: { message: 'overloaded', type: 'server_error', code: 'overloaded' } }) };
    const { direct, via, log } = await both('stream');
    expect(via).toEqual(direct);
    expect(via.error).toContain('overloaded');
    expect(log).toMatchObject({ outcome: 'error', error_type: 'upstream_stream_error' });
  });
});

describe('review 22', () => {
  // LiteLLM answers include_usage with a last chunk holding one empty choice and the usage:
  // the gateway dropped only chunks with `choices: []`, so a client that had not asked got
  // an extra chunk, with no finish_reason, that the upstream sends only because the gateway asked.
  it('LiteLLM: the usage chunk with an empty choice is dropped whole when the client did not ask', async () => {
    answer = {
      body: sseEvents(
        content('Hi'),
        content('', 'stop'),
        { ...BASE, choices: [{ index: 0, delta: {} }], usage: { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11, completion_tokens_details: null } },
        '[DONE]',
      ),
    };
    const direct = await streamVia(upstreamUrl);
    const via = await streamVia(`${gw.url}/v1`);
    const log = await logLineOf(lastRequestId);
    expect(direct.chunks).toHaveLength(3);
    expect(via.chunks).toEqual(direct.chunks.slice(0, 2));
    expect(log).toMatchObject({ outcome: 'ok', input_tokens: 10, output_tokens: 1 });
  });

  // ttfb_ms was the time of the headers when no chunk ever came, and the time-to-first-chunk
  // histogram took it: the streams that never started read as instant starts.
  it('a stream that sends no chunk before the client leaves has no time to first chunk', async () => {
    answer = { body: [': OPENROUTER PROCESSING\n\n'], endAfterMs: 1500 };
    const client = clientFor(`${gw.url}/v1`);
    await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true }, { signal: AbortSignal.timeout(300) })
      .then(async (stream) => {
        for await (const _ of stream);
      })
      .catch(() => undefined);
    const log = await logLineOf(lastRequestId);
    expect(log.outcome).toBe('client_abort');
    expect(log.ttfb_ms).toBeUndefined();
  });

  // A 200 stream with no event at all (a proxy's text/plain error page) was an `ok` request,
  // billed an estimate of its input.
  it('a 200 stream with no event, no [DONE] and no usage is an error, without tokens or cost', async () => {
    answer = { contentType: 'text/plain', body: 'Internal Server Error' };
    const { log } = await both('stream');
    expect(log).toMatchObject({ outcome: 'error', error_type: 'upstream_empty_stream' });
    expect(log.input_tokens).toBeUndefined();
    expect(log.cost_usd).toBeUndefined();
    expect(log.ttfb_ms).toBeUndefined();
  });
});
