/**
 * Regression tests from the review of the embedded simulator against the OpenAI Chat
 * Completions API: the official `openai` client, pointed by base URL at a real gateway
 * (127.0.0.1, port 0) whose only upstream is the simulator.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { collect, rejection } from './e2e/client-helpers.js';

const CHUNKS = 16;
const messages = [{ role: 'user' as const, content: 'Where is my order?' }];

describe('the embedded simulator as openai-node sees it', () => {
  let gw: TestGateway;
  let client: OpenAI;

  beforeAll(async () => {
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - {name: sim, simulate: {latency_ms: 0, chunks: ${CHUNKS}}}
routing: {default: [sim]}
`);
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('models.retrieve of the model models.list shows answers it (was: 404 unknown_url); an unknown model is 404 model_not_found', async () => {
    const listed = (await client.models.list()).data.find((m) => m.id === 'promptgate-simulator');
    expect(listed).toBeDefined();
    expect(await client.models.retrieve('promptgate-simulator')).toEqual(listed);

    const err = await rejection(client.models.retrieve('no-such-model'));
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect([err.status, err.type, err.param, err.code]).toEqual([404, 'invalid_request_error', 'model', 'model_not_found']);
  });

  it(`streams the configured chunk count (chunks: ${CHUNKS}) of content chunks (was: about half, e.g. 11 for 33 words)`, async () => {
    const questions = ['Where is my order?', 'hi', 'How long do returns take?', 'Can I get a refund to my card?', 'What is the weather in Paris and Tokyo?'];
    const wordCounts: number[] = [];
    for (const content of questions) {
      const params = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content }] };
      const text = (await client.chat.completions.create(params)).choices[0].message.content!;
      const words = text.split(' ').length;
      wordCounts.push(words);
      const chunks: ChatCompletionChunk[] = await collect(await client.chat.completions.create({ ...params, stream: true }));
      const pieces = chunks.map((c) => c.choices[0]?.delta?.content).filter((p): p is string => Boolean(p));
      expect(pieces.join('')).toBe(text);
      expect(pieces).toHaveLength(Math.min(CHUNKS, words));
    }
    // The old split (ceil-sized groups) was short of the count for answers of 17-31 words: one is here.
    expect(wordCounts.some((w) => w > CHUNKS && w < 2 * CHUNKS)).toBe(true);
  });

  it("stream_options without stream is OpenAI's 400 (was: 200)", async () => {
    for (const stream of [undefined, false] as const) {
      const err = await rejection(client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream, stream_options: { include_usage: true } }));
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect([err.type, err.param, err.code]).toEqual(['invalid_request_error', 'stream_options', null]);
      expect(err.error.message).toBe("The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    }
    // With a stream it is honoured; null counts as not sent.
    const chunks = await collect(await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true } }));
    expect(chunks.at(-1)!.usage?.total_tokens).toBeGreaterThan(0);
    expect((await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream_options: null })).choices[0].finish_reason).toBe('stop');
  });

  it("temperature and top_p out of range are OpenAI's 400 naming the parameter (was: 200)", async () => {
    const cases = [
      [{ temperature: 5 }, 'temperature', 'decimal_above_max_value', "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5 instead."],
      [{ temperature: -1 }, 'temperature', 'decimal_below_min_value', "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -1 instead."],
      [{ top_p: 1.5 }, 'top_p', 'decimal_above_max_value', "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead."],
      [{ temperature: 'hot' }, 'temperature', 'invalid_type', "Invalid type for 'temperature': expected a decimal, but got a string instead."],
    ] as const;
    for (const [params, param, code, message] of cases) {
      const err = await rejection(client.chat.completions.create({ model: 'gpt-4o-mini', messages, ...(params as object) }));
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect([err.param, err.code, err.error.message]).toEqual([param, code, message]);
    }
    // The bounds themselves are valid.
    const ok = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, temperature: 2, top_p: 0 });
    expect(ok.choices[0].finish_reason).toBe('stop');
  });

  it('5 stop sequences are OpenAI\'s array_above_max_length 400 (was: invalid_type "expected ... an array of up to 4 strings, but got an array")', async () => {
    const err = await rejection(client.chat.completions.create({ model: 'gpt-4o-mini', messages, stop: ['a', 'b', 'c', 'd', 'e'] }));
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect([err.param, err.code, err.error.message]).toEqual(['stop', 'array_above_max_length', "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length 5 instead."]);
    const four = await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stop: ['zz1', 'zz2', 'zz3', 'zz4'] });
    expect(four.choices[0].finish_reason).toBe('stop');
  });
});

describe('npm run demo', () => {
  it('an invalid PORT stops the demo with the error naming PORT, as `npm start` does (was: Number(PORT), NaN or 0x50 = 80)', async () => {
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/support/demo.ts'], {
      env: { ...process.env, PORT: 'abc', SUPPORT_API_PORT: '0' },
      timeout: 20_000,
    });
    const err = await rejection(run);
    expect(err.code).toBe(1);
    expect(err.stderr).toContain('demo failed to start: PORT "abc" is not a port number');
  }, 30_000);
});
