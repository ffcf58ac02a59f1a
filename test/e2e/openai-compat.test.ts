/**
 * openai-node compatibility beyond the basics: the same client code pointed at the mock
 * upstream directly and at the gateway must see the same thing — streamed tool calls, n > 1,
 * logprobs, structured outputs, refusals, every error class, retries, pass-through routes
 * (embeddings, models, responses, files, audio) and the headers the SDK sends and reads.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { APIError, toFile } from 'openai';
import * as Errors from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { Readable } from 'node:stream';
import { request } from 'undici';
import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import { TOOL_CALL, type MockUpstream } from '../helpers/mock-upstream.js';
import { E2E_UPSTREAM, mockConfig, type TestGateway } from '../helpers/gateway.js';
import { BINDINGS, collect, messages, mockUpstreamAndGateway, rejection, tools } from './client-helpers.js';




let mock: MockUpstream;
let gw: TestGateway;
let direct: OpenAI;
let gateway: OpenAI;
/** Both clients, with the same options. */
const clients = (options: ConstructorParameters<typeof OpenAI>[0] = {}) => ({
  direct: new OpenAI({ baseURL: mock.url, apiKey: 'sk-test', maxRetries: 0, ...options }),
  gateway: new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0, ...options }),
});

const env = mockUpstreamAndGateway((url) => mockConfig(url, BINDINGS, E2E_UPSTREAM), { templates: ['config/templates/support-reply.yaml'] });
beforeAll(() => {
  ({ mock, gw } = env);
  ({ direct, gateway } = clients());
});

describe('streamed tool calls', () => {
  const opts = { headers: { 'x-mock-tool-calls': '2' } };
  for (const includeUsage of [undefined, false, true]) {
    it(`parallel tool calls split over many chunks: same chunks as direct (include_usage ${includeUsage})`, async () => {
      const req: ChatCompletionCreateParamsStreaming = {
        model: 'gpt-4o-mini',
        messages,
        tools,
        stream: true,
        ...(includeUsage !== undefined ? { stream_options: { include_usage: includeUsage } } : {}),
      };
      const d = await collect(await direct.chat.completions.create(req, opts));
      const g = await collect(await gateway.chat.completions.create(req, opts));
      expect(d.length).toBeGreaterThan(20);
      expect(g).toEqual(d);
      for (const c of g) expect('usage' in c).toBe(includeUsage === true);
      expect(g.at(-1)!.choices.length).toBe(includeUsage ? 0 : 1);
    });
  }

  it('the stream helper assembles the parallel calls and usage as direct (finalChatCompletion)', async () => {
    const req = { model: 'gpt-4o-mini', messages, tools, stream_options: { include_usage: true } };
    const d = await direct.chat.completions.stream(req, opts).finalChatCompletion();
    const g = await gateway.chat.completions.stream(req, opts).finalChatCompletion();
    expect(g).toEqual(d);
    const calls = g.choices[0].message.tool_calls!;
    expect(calls.map((c) => c.id)).toEqual(['call_mock1', 'call_mock2']);
    expect(calls[0].type === 'function' && calls[0].function.arguments).toBe(TOOL_CALL.arguments);
    expect(g.usage?.total_tokens).toBe(17);

    const plain = await gateway.chat.completions.stream({ model: 'gpt-4o-mini', messages, tools }, opts).finalChatCompletion();
    expect(plain.usage).toBeUndefined();
  });

  it('runTools calls the tools and finishes with the text turn, as direct', async () => {
    const run = (client: OpenAI) => {
      const seen: string[] = [];
      const runner = client.chat.completions.runTools(
        {
          model: 'gpt-4o-mini',
          messages,
          stream: true,
          tools: [
            {
              type: 'function',
              function: {
                name: 'get_weather',
                description: 'The weather in a city.',
                parameters: { type: 'object', properties: { city: { type: 'string' } } },
                parse: (text: string) => JSON.parse(text) as { city: string },
                function: (args: { city: string }) => {
                  seen.push(args.city);
                  return `sunny in ${args.city}`;
                },
              },
            },
          ],
        },
        opts,
      );
      return runner.finalContent().then((content) => ({ content, seen, messages: runner.messages }));
    };
    const d = await run(direct);
    const g = await run(gateway);
    expect(g.seen).toEqual(['Paris', 'Tokyo']);
    expect(g.content).toBe(d.content);
    expect(g.messages).toEqual(d.messages);
  });
});

describe('n, logprobs, structured outputs, refusals', () => {
  it('n = 2 with logprobs: same chunks as direct, choices by index', async () => {
    const req = { model: 'gpt-4o-mini', messages, n: 2, logprobs: true, stream: true as const };
    const d = await collect(await direct.chat.completions.create(req));
    const g = await collect(await gateway.chat.completions.create(req));
    expect(g).toEqual(d);
    const final = await gateway.chat.completions.stream({ ...req, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(final.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(final.choices[1].message.content).toBe('Hello from the mock upstream!');
    expect(final.choices[1].logprobs?.content?.map((t) => t.token).join('')).toBe('Hello from the mock upstream!');
  });

  it('chat.completions.parse with a zod json_schema, non-stream and stream, as direct', async () => {
    const Weather = z.object({ city: z.string(), temperature: z.number() });
    const opts = { headers: { 'x-mock-content': JSON.stringify({ city: 'Paris', temperature: 21.5 }) } };
    const req = { model: 'gpt-4o-mini', messages, response_format: zodResponseFormat(Weather, 'weather') };
    const d = await direct.chat.completions.parse(req, opts);
    const g = await gateway.chat.completions.parse(req, opts);
    expect(g.choices[0].message.parsed).toEqual({ city: 'Paris', temperature: 21.5 });
    expect(g).toEqual(d);
    expect(mock.requests[1].body.response_format).toEqual(mock.requests[0].body.response_format);

    const s = await gateway.chat.completions.stream(req, opts).finalChatCompletion();
    expect(s.choices[0].message.parsed).toEqual({ city: 'Paris', temperature: 21.5 });
  });

  it('a streamed refusal arrives as refusal deltas, as direct', async () => {
    const opts = { headers: { 'x-mock-refusal': "I'm sorry, I can't help with that." } };
    const req = { model: 'gpt-4o-mini', messages };
    const d = await direct.chat.completions.stream(req, opts).finalChatCompletion();
    const g = await gateway.chat.completions.stream(req, opts).finalChatCompletion();
    expect(g.choices[0].message.refusal).toBe("I'm sorry, I can't help with that.");
    expect(g).toEqual(d);
  });
});

describe('errors', () => {
  const cases: Array<[number, string]> = [
    [400, 'BadRequestError'],
    [401, 'AuthenticationError'],
    [404, 'NotFoundError'],
    [409, 'ConflictError'],
    [422, 'UnprocessableEntityError'],
    [429, 'RateLimitError'],
    [500, 'InternalServerError'],
    [503, 'InternalServerError'],
  ];
  for (const [status, className] of cases) {
    it(`upstream ${status} is a ${className} with status, code, param, type and request id as direct`, async () => {
      const opts = { headers: { 'x-mock-status': String(status), 'x-mock-error-code': `code_${status}`, 'x-mock-error-param': 'messages' } };
      const req = { model: 'gpt-4o-mini', messages };
      const d = await rejection(direct.chat.completions.create(req, opts));
      const g = await rejection(gateway.chat.completions.create(req, opts));
      expect(g).toBeInstanceOf((Errors as any)[className]);
      expect(d).toBeInstanceOf((Errors as any)[className]);
      expect(g.status).toBe(status);
      expect(g.error).toEqual(d.error);
      expect(g.code).toBe(`code_${status}`);
      expect(g.param).toBe('messages');
      expect(g.type).toBe(d.type);
      expect(g.requestID).toMatch(/^req_mock_/);
      expect(g.headers.get('openai-processing-ms')).toBe('7');
    });
  }

  it('an error status answering a stream request is the same error class as direct', async () => {
    const opts = { headers: { 'x-mock-status': '429', 'x-mock-retry-after-ms': '5' } };
    const req = { model: 'gpt-4o-mini', messages, stream: true as const };
    const d = await rejection(direct.chat.completions.create(req, opts));
    const g = await rejection(gateway.chat.completions.create(req, opts));
    expect(g).toBeInstanceOf(Errors.RateLimitError);
    expect(g.error).toEqual(d.error);
    expect(g.headers.get('retry-after-ms')).toBe('5');
  });

  it('a mid-stream error event is an APIError from the iterator, with its code', async () => {
    const read = async (client: OpenAI, includeUsage: boolean) => {
      const stream = await client.chat.completions.create(
        { model: 'gpt-4o-mini', messages, stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) },
        { headers: { 'x-mock-error-event': '3' } },
      );
      const seen: ChatCompletionChunk[] = [];
      try {
        for await (const c of stream) seen.push(c);
      } catch (err) {
        return { seen, err: err as APIError };
      }
      return { seen, err: undefined };
    };
    for (const includeUsage of [false, true]) {
      const d = await read(direct, includeUsage);
      const g = await read(gateway, includeUsage);
      expect(g.err).toBeInstanceOf(APIError);
      expect(g.err!.code).toBe('mock_stream_error');
      expect(g.err!.message).toBe(d.err!.message);
      expect(g.seen).toEqual(d.seen);
    }
  });

  it('client retries (maxRetries) on a 409 with retry-after-ms reach the upstream as often as direct', async () => {
    const both = clients({ maxRetries: 2 });
    const opts = { headers: { 'x-mock-status': '409', 'x-mock-retry-after-ms': '10' } };
    await rejection(both.direct.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts));
    const directCount = mock.requests.length;
    mock.requests.length = 0;
    const err = await rejection(both.gateway.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts));
    expect(err).toBeInstanceOf(Errors.ConflictError);
    expect(directCount).toBe(3);
    expect(mock.requests).toHaveLength(3);
    expect(mock.requests.map((r) => r.headers['x-stainless-retry-count'])).toEqual(['0', '1', '2']);
  });

  it('an upstream 500 with x-should-retry: false is not retried by the gateway (was: retried twice), and the client sees the header', async () => {
    const both = clients({ maxRetries: 2 });
    const opts = { headers: { 'x-mock-status': '500', 'x-mock-should-retry': 'false' } };
    const d = await rejection(both.direct.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts));
    const directCount = mock.requests.length;
    mock.requests.length = 0;
    const g = await rejection(both.gateway.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts));
    expect(g).toBeInstanceOf(Errors.InternalServerError);
    expect(g.headers.get('x-should-retry')).toBe('false');
    expect(d).toBeInstanceOf(Errors.InternalServerError);
    expect(directCount).toBe(1);
    expect(mock.requests).toHaveLength(1);

    // Without the header the gateway's own retries (retry.attempts: 2) still apply.
    mock.requests.length = 0;
    await rejection(gateway.chat.completions.create({ model: 'gpt-4o-mini', messages }, { headers: { 'x-mock-status': '500' } }));
    expect(mock.requests).toHaveLength(3);
  });
});

describe('pass-through routes', () => {
  it('embeddings: default (base64) and float encodings decode to the same vectors as direct', async () => {
    const d = await direct.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    const g = await gateway.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(mock.requests[1].body.encoding_format).toBe('base64');
    expect(g).toEqual(d);
    expect(g.data[0].embedding).toEqual([0.25, -0.5, 0.125]);
    const f = await gateway.embeddings.create({ model: 'text-embedding-3-small', input: 'a', encoding_format: 'float' });
    expect(f.data[0].embedding).toEqual([0.25, -0.5, 0.125]);
  });

  it('models.list includes the binding aliases', async () => {
    const ids: string[] = [];
    for await (const m of gateway.models.list()) ids.push(m.id);
    expect(ids).toEqual(['gpt-4o-mini', 'support-bot']);
  });

  it('responses.create and responses.stream (event: lines) as direct', async () => {
    const d = await direct.responses.create({ model: 'gpt-4o-mini', input: 'hi' });
    const g = await gateway.responses.create({ model: 'gpt-4o-mini', input: 'hi' });
    expect(g).toEqual(d);
    expect(g.output_text).toBe('Hi there!');

    const dEvents = await collect(await direct.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true }));
    const gEvents = await collect(await gateway.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true }));
    expect(gEvents).toEqual(dEvents);
    expect(gEvents.map((e) => e.type)).toContain('response.output_text.delta');

    const final = await gateway.responses.stream({ model: 'gpt-4o-mini', input: 'hi' }).finalResponse();
    expect(final.output_text).toBe('Hi there!');
  });

  it('aborting a responses stream closes the upstream connection', async () => {
    const ac = new AbortController();
    const stream = await gateway.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true }, { signal: ac.signal, headers: { 'x-mock-chunk-delay-ms': '200' } });
    let n = 0;
    for await (const _ of stream) {
      if (++n === 4) ac.abort();
    }
    await mock.waitForClosed(1, 3000);
    expect(mock.closed).toBe(1);
  });

  it('files.create of a file over server.max_body_bytes is streamed to the upstream (was: 413 body_too_large)', async () => {
    const data = Buffer.alloc(5 * 1024 * 1024, 'a');
    const d = await direct.files.create({ file: await toFile(data, 'batch.jsonl'), purpose: 'batch' });
    const g = await gateway.files.create({ file: await toFile(data, 'batch.jsonl'), purpose: 'batch' });
    const received = (x: object) => (x as { received: { size: number; content_type: string } }).received;
    expect(received(g).content_type).toMatch(/^multipart\/form-data; boundary=/);
    expect(received(g).size).toBe(received(d).size);
    expect(mock.requests[1].size).toBe(mock.requests[0].size);
  });

  it('an upload over server.max_body_bytes is sent once: chunked bodies stream too, a 503 goes to the client unretried', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024, 'b');
    // Chunked (no content-length): the limit is crossed while reading.
    const res = await request(`${gw.url}/v1/files`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.from([big.subarray(0, 1024), big.subarray(1024)]),
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(mock.requests[0].size).toBe(big.byteLength);
    expect(mock.requests[0].headers['transfer-encoding']).toBe('chunked');

    mock.requests.length = 0;
    const opts = { headers: { 'x-mock-status': '503' } };
    const err = await rejection(gateway.files.create({ file: await toFile(big, 'batch.jsonl'), purpose: 'batch' }, opts));
    expect(err).toBeInstanceOf(Errors.InternalServerError);
    expect(err.status).toBe(503);
    expect(mock.requests).toHaveLength(1);
  });

  it('audio.transcriptions.create: multipart upload as direct', async () => {
    const file = await toFile(Buffer.from('RIFF....WAVEfmt '), 'a.wav', { type: 'audio/wav' });
    const d = await direct.audio.transcriptions.create({ file, model: 'whisper-1' });
    const g = await gateway.audio.transcriptions.create({ file: await toFile(Buffer.from('RIFF....WAVEfmt '), 'a.wav', { type: 'audio/wav' }), model: 'whisper-1' });
    expect(g.text).toBe('transcribed');
    expect((g as any).received.size).toBe((d as any).received.size);
    expect(mock.requests[1].raw).toContain('audio/wav');
  });
});

describe('headers', () => {
  it('the SDK request headers reach the upstream; OpenAI response headers come back (withResponse)', async () => {
    const both = clients({ organization: 'org-1', project: 'proj-1' });
    const opts = { headers: { 'Idempotency-Key': 'idem-1' } };
    await both.direct.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts);
    const { response, request_id } = await both.gateway.chat.completions.create({ model: 'gpt-4o-mini', messages }, opts).withResponse();
    const [sentDirect, seen] = mock.requests.map((r) => r.headers);
    expect(seen['openai-organization']).toBe('org-1');
    expect(seen['openai-project']).toBe('proj-1');
    expect(seen['idempotency-key']).toBe('idem-1');
    const sdkHeaders = Object.keys(sentDirect).filter((name) => name.startsWith('x-stainless-') || name.startsWith('openai-'));
    expect(sdkHeaders).toContain('x-stainless-retry-count');
    for (const name of sdkHeaders) expect(seen[name], name).toBe(sentDirect[name]);
    expect(response.headers.get('openai-processing-ms')).toBe('7');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('99');
    expect(request_id).toMatch(/^req_mock_/);
  });
});
