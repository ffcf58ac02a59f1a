/**
 * End to end with the official `openai` npm package (v6): the same client code, pointed at
 * the mock upstream directly and at the gateway by `baseURL` only, must see the same thing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { APIConnectionError, APIError, BadRequestError, RateLimitError } from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { STREAM_WORDS, type MockUpstream } from '../helpers/mock-upstream.js';
import { E2E_UPSTREAM, MOCK_API_KEY, mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startTap, type Tap } from './tap.js';
import { collect, mockUpstreamAndGateway, rejection } from './client-helpers.js';

const MOCK_TEXT = STREAM_WORDS.join('');
const MOCK_USAGE = { prompt_tokens: 11, completion_tokens: 6, total_tokens: 17 };
const REQ_ID = /^req_mock_[a-z0-9]+$/;

const config = (upstreamUrl: string) => mockConfig(upstreamUrl, '', E2E_UPSTREAM);

const params: { model: string; messages: ChatCompletionMessageParam[] } = {
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Say hello.' },
  ],
};

/**
 * openai-node v6 sets `_request_id` (from the `x-request-id` response header) on parsed
 * responses at runtime (non-enumerable, internal/parse.mjs), but its types no longer declare it.
 */
const requestIdOf = (x: object) => (x as { _request_id?: string | null })._request_id;

const textOf = (chunks: ChatCompletionChunk[]) => chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');


let mock: MockUpstream;
let gw: TestGateway;
let direct: OpenAI;
let gateway: OpenAI;

const env = mockUpstreamAndGateway(config);
beforeAll(() => {
  ({ mock, gw } = env);
  direct = new OpenAI({ baseURL: mock.url, apiKey: 'sk-test', maxRetries: 0 });
  gateway = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
});

describe('openai-node through the gateway', () => {
  it('non-stream: same completion, usage and request-id shape as direct', async () => {
    const d = await direct.chat.completions.create(params).withResponse();
    const g = await gateway.chat.completions.create(params).withResponse();

    expect(d.data.choices[0].message.content).toBe(MOCK_TEXT);
    expect(g.data.choices[0].message.content).toBe(d.data.choices[0].message.content);
    expect(g.data.usage).toMatchObject(MOCK_USAGE);
    expect(g.data.usage).toEqual(d.data.usage);
    expect(g.data).toEqual(d.data); // the whole parsed body

    expect(requestIdOf(d.data)).toMatch(REQ_ID);
    expect(requestIdOf(g.data)).toMatch(REQ_ID);
    expect(g.request_id).toBe(requestIdOf(g.data));
    expect(g.response.headers.get('x-request-id')).toBe(requestIdOf(g.data));
    // The gateway's own id travels in its own header, not in place of the upstream's.
    expect(g.response.headers.get('x-promptgate-request-id')).toBeTruthy();
    expect(g.response.headers.get('x-promptgate-request-id')).not.toBe(requestIdOf(g.data));
    for (const name of ['content-type', 'openai-processing-ms', 'x-ratelimit-remaining-requests']) {
      expect(g.response.headers.get(name), name).toBe(d.response.headers.get(name));
    }
    expect(g.response.status).toBe(d.response.status);
    // The gateway used its own upstream key, not the client's.
    expect(mock.requests[1].headers.authorization).toBe(`Bearer ${MOCK_API_KEY}`);
  });

  it('stream with include_usage: same chunks, including the usage chunk', async () => {
    const req = { ...params, stream: true as const, stream_options: { include_usage: true } };
    const d = await direct.chat.completions.create(req).withResponse();
    const dChunks = await collect(d.data);
    const g = await gateway.chat.completions.create(req).withResponse();
    const gChunks = await collect(g.data);

    expect(textOf(dChunks)).toBe(MOCK_TEXT);
    expect(textOf(gChunks)).toBe(textOf(dChunks));
    expect(gChunks).toEqual(dChunks);
    const usageChunk = gChunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject(MOCK_USAGE);
    expect(usageChunk.usage).toEqual(dChunks.at(-1)!.usage);

    expect(d.request_id).toMatch(REQ_ID);
    expect(g.request_id).toMatch(REQ_ID);
    expect(g.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  });

  it('stream without include_usage: no usage chunk, same as direct', async () => {
    const req = { ...params, stream: true as const };
    const dChunks = await collect(await direct.chat.completions.create(req));
    const gChunks = await collect(await gateway.chat.completions.create(req));

    expect(textOf(gChunks)).toBe(MOCK_TEXT);
    expect(gChunks).toEqual(dChunks);
    for (const c of gChunks) {
      expect('usage' in c).toBe(false);
      expect(c.choices).toHaveLength(1);
    }
    // The gateway asked the upstream for usage (its own accounting) and stripped it again.
    expect(mock.requests[0].body.stream_options).toBeUndefined();
    expect(mock.requests[1].body.stream_options).toEqual({ include_usage: true });
  });

  it('the ChatCompletionStream helper (.stream / finalChatCompletion) agrees with direct', async () => {
    const req = { ...params, stream_options: { include_usage: true } };
    const d = await direct.chat.completions.stream(req).finalChatCompletion();
    const g = await gateway.chat.completions.stream(req).finalChatCompletion();
    expect(g.choices[0].message.content).toBe(MOCK_TEXT);
    expect(g.choices[0].message.content).toBe(d.choices[0].message.content);
    expect(g.usage).toEqual(d.usage);
    expect(g.usage).toMatchObject(MOCK_USAGE);
  });

  it('an upstream 429 is a RateLimitError with the same status and message as direct', async () => {
    const headers = { 'x-mock-status': '429' };
    const d = await rejection(new OpenAI({ baseURL: mock.url, apiKey: 'sk-test', maxRetries: 0, defaultHeaders: headers }).chat.completions.create(params));
    const g = await rejection(new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0, defaultHeaders: headers }).chat.completions.create(params));

    expect(d).toBeInstanceOf(RateLimitError);
    expect(g).toBeInstanceOf(RateLimitError);
    expect(g.status).toBe(429);
    expect(g.status).toBe(d.status);
    expect(g.message).toBe(d.message);
    expect(g.error).toEqual(d.error);
    expect(g.code).toBe('rate_limit_exceeded');
    expect(g.type).toBe('rate_limit_error');
    expect(d.requestID).toMatch(REQ_ID);
    expect(g.requestID).toMatch(REQ_ID);
  });

  it('an upstream 400 is a BadRequestError with the same status and message as direct', async () => {
    const opts = { headers: { 'x-mock-status': '400' } };
    const d = await rejection(direct.chat.completions.create(params, opts));
    const g = await rejection(gateway.chat.completions.create(params, opts));

    expect(d).toBeInstanceOf(BadRequestError);
    expect(g).toBeInstanceOf(BadRequestError);
    expect(g.status).toBe(400);
    expect(g.message).toBe(d.message);
    expect(g.error).toEqual(d.error);
    expect(g.type).toBe('invalid_request_error');
    expect(g.requestID).toMatch(REQ_ID);
    expect(mock.requests).toHaveLength(2); // a 4xx is not retried by the gateway
  });

  it('a mid-stream upstream reset makes the stream iterator throw an APIError', async () => {
    const opts = { headers: { 'x-mock-reset': 'mid' } };
    const req = { ...params, stream: true as const };

    const read = async (client: OpenAI) => {
      const stream = await client.chat.completions.create(req, opts);
      const seen: ChatCompletionChunk[] = [];
      try {
        for await (const chunk of stream) seen.push(chunk);
      } catch (err) {
        return { seen, err: err as Error };
      }
      return { seen, err: undefined };
    };
    const d = await read(direct);
    const g = await read(gateway);

    // Directly the client sees a broken body: undici's TypeError('terminated'), not an API error ...
    expect(d.err).toBeDefined();
    expect(d.err).not.toBeInstanceOf(APIError);
    // ... through the gateway the same chunks arrive, then an OpenAI-shaped error event.
    expect(g.err).toBeInstanceOf(APIError);
    expect(g.err).not.toBeInstanceOf(APIConnectionError);
    const apiErr = g.err as APIError;
    expect(apiErr.type).toBe('server_error');
    expect(apiErr.code).toBe('upstream_error');
    expect(apiErr.message).toBe('The upstream connection failed during the stream.');
    expect(textOf(g.seen)).toBe(textOf(d.seen));
    expect(textOf(g.seen)).toBe(STREAM_WORDS.slice(0, 2).join(''));
  });

  it('aborting a stream with an AbortController ends it cleanly and closes the upstream connection', async () => {
    const req = { ...params, stream: true as const };
    const opts = { headers: { 'x-mock-chunk-delay-ms': '100' } };

    let closedBefore = 0;
    for (const client of [direct, gateway]) {
      const ac = new AbortController();
      const stream = await client.chat.completions.create(req, { ...opts, signal: ac.signal });
      const seen: ChatCompletionChunk[] = [];
      // openai-node swallows its own abort: the loop just ends, no throw.
      for await (const chunk of stream) {
        seen.push(chunk);
        if (seen.length === 2) ac.abort();
      }
      expect(seen).toHaveLength(2);
      await mock.waitForClosed(closedBefore + 1, 3000);
      closedBefore = mock.closed;
    }
    expect(mock.closed).toBe(2);
    expect(mock.requests).toHaveLength(2);
  });

  it('breaking out of a stream loop also closes the upstream connection', async () => {
    const stream = await gateway.chat.completions.create({ ...params, stream: true }, { headers: { 'x-mock-chunk-delay-ms': '100' } });
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      break;
    }
    await mock.waitForClosed(1, 3000);
    expect(mock.closed).toBe(1);
  });
});

describe('openai-node _request_id is the upstream x-request-id of that very request', () => {
  let tap: Tap;
  let tapped: TestGateway;
  let client: OpenAI;

  beforeAll(async () => {
    tap = await startTap(mock.url);
    tapped = await startTestGateway(config(tap.url));
    client = new OpenAI({ baseURL: `${tapped.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  });
  afterAll(async () => {
    await tapped?.close();
    await tap?.close();
  });

  it('non-stream, stream and error responses carry the id the upstream sent for them', async () => {
    const completion = await client.chat.completions.create(params);
    expect(tap.exchanges).toHaveLength(1);
    expect(tap.exchanges[0].requestId).toMatch(REQ_ID);
    expect(requestIdOf(completion)).toBe(tap.exchanges[0].requestId);

    const s = await client.chat.completions.create({ ...params, stream: true }).withResponse();
    await collect(s.data);
    expect(tap.exchanges).toHaveLength(2);
    expect(s.request_id).toBe(tap.exchanges[1].requestId);

    const err = await rejection(client.chat.completions.create(params, { headers: { 'x-mock-status': '400' } }));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(tap.exchanges).toHaveLength(3);
    expect(err.requestID).toBe(tap.exchanges[2].requestId);

    // Each request its own id.
    expect(new Set(tap.exchanges.map((e) => e.requestId)).size).toBe(3);
  });
});

describe('openai-node against the embedded simulator', () => {
  let sim: TestGateway;
  let client: OpenAI;

  beforeAll(async () => {
    sim = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - {name: sim, simulate: {latency_ms: 1, chunks: 4}}
routing: {default: [sim]}
`);
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  });
  afterAll(async () => {
    await sim?.close();
  });

  it('answers non-stream and stream deterministically, with consistent usage', async () => {
    const a = await client.chat.completions.create(params);
    const b = await client.chat.completions.create(params);
    const content = a.choices[0].message.content!;
    expect(content.length).toBeGreaterThan(0);
    expect(b.choices[0].message.content).toBe(content);
    expect(b.id).toBe(a.id);
    expect(a.model).toBe('gpt-4o-mini');
    expect(a.choices[0].finish_reason).toBe('stop');
    expect(a.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(a.usage!.completion_tokens).toBeGreaterThan(0);
    expect(a.usage!.total_tokens).toBe(a.usage!.prompt_tokens + a.usage!.completion_tokens);
    expect(b.usage).toEqual(a.usage);
    expect(requestIdOf(a)).toMatch(/^req_sim_/);

    // A different prompt, a different (still deterministic) answer.
    const other = await client.chat.completions.create({ ...params, messages: [{ role: 'user', content: 'Something else entirely.' }] });
    expect(other.id).not.toBe(a.id);

    // Stream with include_usage: the same text in 4 content chunks, then the usage chunk.
    const chunks = await collect(await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } }));
    expect(textOf(chunks)).toBe(content);
    expect(chunks.filter((c) => c.choices[0]?.delta?.content)).toHaveLength(4);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(a.usage);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason).toBe('stop');

    // Stream without include_usage: same text, no usage chunk.
    const plain = await collect(await client.chat.completions.create({ ...params, stream: true }));
    expect(textOf(plain)).toBe(content);
    expect(plain.some((c) => c.usage)).toBe(false);
  });
});
