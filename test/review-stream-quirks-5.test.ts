/**
 * Review: the streaming relay of POST /v1/chat/completions against real-world upstream
 * streams, round 5. A canned upstream on 127.0.0.1 sends exact bytes; the gateway's client
 * is the official `openai` client or a raw socket; the gateway's request log line (tokens,
 * cost, outcome) is checked against what the upstream sent. Costs by hand, USD per 1M
 * tokens as configured below (grok-3-mini: input 0.3, output 0.5; gemini-2.5-flash: 0.3 / 2.5).
 */
import http from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { sseEvents } from './helpers/sse.js';
import { rawPost, received, until } from './helpers/raw-socket.js';
import { relaySse, type StreamEnd } from '../src/proxy/sse-relay.js';
import { usageFromOpenAI } from '../src/telemetry/usage.js';

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

interface Answer {
  contentType?: string;
  /** Written as separate writes (a stream in pieces). */
  body: string[];
  /** ms between the last piece and the end of the body (an upstream slow to close). */
  endAfterMs?: number;
}

let answer: Answer = { body: [] };
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
      res.writeHead(200, { 'content-type': answered.contentType ?? 'text/event-stream' });
      for (const piece of answered.body) {
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
  grok-3-mini: {input: 0.3, output: 0.5}
  gemini-2.5-flash: {input: 0.3, output: 2.5}
upstreams:
  - name: quirky
    base_url: ${upstreamUrl}
    api_key: sk-quirky-0000000000
    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}
    retry: {attempts: 1}
    breaker: {failures: 0}
routing: {default: [quirky]}
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
const content = (text: string, finish: string | null = null, extra: object = {}) => ({ ...BASE, choices: [{ index: 0, delta: { content: text }, finish_reason: finish }], ...extra });
const usageChunk = (usage: object, extra: object = {}) => ({ ...BASE, choices: [], usage, ...extra });

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

async function streamVia(baseURL: string, extra: object = {}) {
  const chunks: unknown[] = [];
  try {
    const stream = await clientFor(baseURL).chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true, ...extra });
    for await (const c of stream) chunks.push(c);
    return { chunks };
  } catch (err) {
    return { chunks, error: String(err) };
  }
}

async function logLineOf(requestId: string | null): Promise<Record<string, any>> {
  expect(requestId).toBeTruthy();
  const deadline = Date.now() + 5000;
  for (;;) {
    const line = gatewayLog.requests.find((l) => l.request_id === requestId);
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no request log line for ${requestId}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('a stream whose client has its [DONE]', () => {
  // openai-python breaks out of its SSE loop at `[DONE]` and closes the response: when the
  // upstream has not ended its body by then (a proxy or CDN in between, a server slow to
  // close), the connection to the gateway closes with the answer whole. Was: accounted as
  // `client_abort`, a cancelled request in every error-rate panel.
  it('is ok, not client_abort, when the client closes the connection right after [DONE] (openai-python) and the upstream is slow to end its body', async () => {
    answer = {
      body: sseEvents(content('Hi', 'stop'), usageChunk({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 }), '[DONE]'),
      endAfterMs: 400,
    };
    const socket = rawPost(gw.port, '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true }));
    const got = received(socket);
    await until(() => got.text().includes('data: [DONE]\n\n'));
    socket.destroy();
    const requestId = /x-promptgate-request-id: (\S+)/i.exec(got.text())?.[1] ?? null;
    const log = await logLineOf(requestId);
    expect(log).toMatchObject({ outcome: 'ok', status: 200, input_tokens: 5, output_tokens: 1 });
    expect(log.error_type).toBeUndefined();
    // The client got the answer without the usage chunk it did not ask for.
    expect(got.text()).toContain('"content":"Hi"');
    expect(got.text()).not.toContain('"usage"');
  });

  it('is still client_abort when the client leaves before [DONE]', async () => {
    answer = { body: sseEvents(content('Hi'), content(' there', 'stop')), endAfterMs: 400 };
    const socket = rawPost(gw.port, '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true }));
    const got = received(socket);
    await until(() => got.text().includes('"finish_reason":"stop"'));
    socket.destroy();
    const requestId = /x-promptgate-request-id: (\S+)/i.exec(got.text())?.[1] ?? null;
    expect(await logLineOf(requestId)).toMatchObject({ outcome: 'client_abort', error_type: 'client_abort' });
  });

  it('relaySse (the Web stream relay): a client that cancels after [DONE] ends the stream ok', async () => {
    const enc = new TextEncoder();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* upstream() {
      yield enc.encode(sseEvents(content('Hi', 'stop'), '[DONE]').join(''));
      await held; // the body's end, not yet come
    }
    let ended: StreamEnd | undefined;
    const stream = relaySse(upstream(), {
      stripUsageChunk: false,
      onEnd: (_summary, end) => (ended = end),
      abortUpstream: release,
      clientGone: () => true,
    });
    const reader = stream.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('[DONE]');
    await reader.cancel();
    expect(ended).toEqual({ outcome: 'ok' });
  });

  // openai-node skips everything after `[DONE]`, openai-python stops reading there: an error
  // event after it fails nothing the client sees. Was: `upstream_stream_error`.
  it('is ok when the upstream sends an error event after its [DONE]; the client gets the whole answer as direct', async () => {
    answer = {
      body: sseEvents(content('Hi', 'stop'), usageChunk({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 }), '[DONE]', { error: { message: 'late', type: 'server_error' } }),
    };
    const direct = await streamVia(upstreamUrl, { stream_options: { include_usage: true } });
    const via = await streamVia(`${gw.url}/v1`, { stream_options: { include_usage: true } });
    expect(via).toEqual(direct);
    expect(via.error).toBeUndefined();
    const log = await logLineOf(lastRequestId);
    expect(log).toMatchObject({ outcome: 'ok', input_tokens: 5, output_tokens: 1 });
    expect(log.error_type).toBeUndefined();
  });

  it('an error event before [DONE] is still the upstream stream error', async () => {
    answer = { body: sseEvents(content('Hi'), { error: { message: 'overloaded', type: 'server_error' } }, '[DONE]') };
    const via = await streamVia(`${gw.url}/v1`);
    expect(via.error).toContain('overloaded');
    expect(await logLineOf(lastRequestId)).toMatchObject({ outcome: 'error', error_type: 'upstream_stream_error' });
  });
});

describe('reasoning tokens left out of completion_tokens (xAI, Gemini)', () => {
  // xAI's chat completions: `completion_tokens` is the visible text only, reasoning is in
  // `completion_tokens_details.reasoning_tokens` and `total_tokens` is prompt + completion +
  // reasoning; all of it is billed as output. Was: output 2 (reasoning clamped to 2), the
  // cost ~100x too low.
  const XAI_USAGE = { prompt_tokens: 20, completion_tokens: 2, total_tokens: 339, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 317 } };

  it('a stream: output tokens include the reasoning, and its cost', async () => {
    const grok = { ...BASE, model: 'grok-3-mini' };
    answer = {
      body: sseEvents({ ...grok, choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: 'stop' }] }, { ...grok, choices: [], usage: XAI_USAGE }, '[DONE]'),
    };
    const via = await streamVia(`${gw.url}/v1`, { model: 'grok-3-mini' });
    expect(via.error).toBeUndefined();
    const log = await logLineOf(lastRequestId);
    expect(log).toMatchObject({ outcome: 'ok', response_model: 'grok-3-mini', input_tokens: 20, output_tokens: 319, reasoning_tokens: 317 });
    expect(log.cost_usd).toBeCloseTo((20 * 0.3 + 319 * 0.5) / 1e6, 12);
  });

  it('a non-stream answer: the same tokens, and the x-promptgate-cost-usd header', async () => {
    answer = {
      contentType: 'application/json',
      body: [JSON.stringify({ id: 'x1', object: 'chat.completion', created: 1, model: 'grok-3-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop' }], usage: XAI_USAGE })],
    };
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'grok-3-mini', messages: MESSAGES }),
    });
    expect(res.status).toBe(200);
    expect((await res.json()).usage).toEqual(XAI_USAGE); // the client's body is untouched
    expect(Number(res.headers.get('x-promptgate-cost-usd'))).toBeCloseTo((20 * 0.3 + 319 * 0.5) / 1e6, 12);
    expect(await logLineOf(res.headers.get('x-promptgate-request-id'))).toMatchObject({ input_tokens: 20, output_tokens: 319, reasoning_tokens: 317 });
  });

  // Gemini's OpenAI endpoint (gemini-2.5+, thinking on): usage on every chunk, cumulative;
  // its thinking is in `total_tokens` only (bytes as reported in the Gemini API forum:
  // completion 1, prompt 9, total 103). The client asked for none: the chunks keep their
  // content and finish reason, the usage goes. Was: output 3 tokens, the thinking unbilled.
  it('Gemini: thinking tokens only in total_tokens, usage on every content chunk; the last counts, thinking as output', async () => {
    const gemini = { id: 'Q9ug', object: 'chat.completion.chunk', created: 1772149571, model: 'gemini-2.5-flash' };
    answer = {
      body: sseEvents(
        { ...gemini, choices: [{ delta: { content: '1', role: 'assistant' }, index: 0 }], usage: { completion_tokens: 1, prompt_tokens: 9, total_tokens: 103 } },
        { ...gemini, choices: [{ delta: { content: ', 2', role: 'assistant' }, index: 0 }], usage: { completion_tokens: 3, prompt_tokens: 9, total_tokens: 105 } },
        { ...gemini, choices: [{ delta: { role: 'assistant' }, finish_reason: 'stop', index: 0 }], usage: { completion_tokens: 3, prompt_tokens: 9, total_tokens: 105 } },
        '[DONE]',
      ),
    };
    const via = await streamVia(`${gw.url}/v1`, { model: 'gemini-2.5-flash' });
    expect(via.error).toBeUndefined();
    expect(via.chunks.map((c: any) => c.choices[0].delta.content ?? null)).toEqual(['1', ', 2', null]);
    expect(via.chunks.map((c: any) => c.choices[0].finish_reason ?? null)).toEqual([null, null, 'stop']);
    expect(via.chunks.every((c: any) => !('usage' in c))).toBe(true);
    const log = await logLineOf(lastRequestId);
    expect(log).toMatchObject({ outcome: 'ok', input_tokens: 9, output_tokens: 96, reasoning_tokens: 93 });
    expect(log.cost_usd).toBeCloseTo((9 * 0.3 + 96 * 2.5) / 1e6, 12);
  });

  it('only a total above prompt + completion adds output; OpenAI reasoning within completion_tokens is not added twice', () => {
    expect(usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 55, completion_tokens_details: { reasoning_tokens: 40 } })).toMatchObject({ outputTokens: 45, reasoningTokens: 40 });
    // OpenAI (o-series, gpt-5): reasoning is part of completion_tokens, total = prompt + completion.
    expect(usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 50, total_tokens: 60, completion_tokens_details: { reasoning_tokens: 40 } })).toMatchObject({ outputTokens: 50, reasoningTokens: 40 });
    expect(usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 40, total_tokens: 50, completion_tokens_details: { reasoning_tokens: 40 } })).toMatchObject({ outputTokens: 40, reasoningTokens: 40 });
    expect(usageFromOpenAI({ input_tokens: 10, output_tokens: 50, total_tokens: 60, output_tokens_details: { reasoning_tokens: 40 } })).toMatchObject({ outputTokens: 50, reasoningTokens: 40 });
    // Embeddings (total = prompt); a total without a prompt count says nothing about output.
    expect(usageFromOpenAI({ prompt_tokens: 8, total_tokens: 8 })).toMatchObject({ inputTokens: 8, outputTokens: 0 });
    expect(usageFromOpenAI({ completion_tokens: 5, total_tokens: 20 })).toMatchObject({ inputTokens: 0, outputTokens: 5, reasoningTokens: 0 });
  });
});
