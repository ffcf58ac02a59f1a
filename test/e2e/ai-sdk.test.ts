/**
 * End to end with the Vercel AI SDK (`ai` v6 + `@ai-sdk/openai` v3): the same
 * `createOpenAI({ baseURL, apiKey }).chat(...)` model, pointed at the mock upstream directly
 * and at the gateway by `baseURL` only, must see the same text and usage.
 *
 * Note: `.chat()` (Chat Completions) always sends `stream_options: {include_usage: true}`
 * when streaming (see `doStream` in @ai-sdk/openai dist/index.mjs), so no `compatibility`
 * / `includeUsage` option is needed in v3 (those were v1 settings). `openai('model')`
 * without `.chat` would use the Responses API, which the gateway only passes through.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, generateText, streamText, type LanguageModel } from 'ai';
import { STREAM_WORDS, type MockUpstream } from '../helpers/mock-upstream.js';
import { E2E_UPSTREAM, mockConfig, type TestGateway } from '../helpers/gateway.js';
import { mockUpstreamAndGateway } from './client-helpers.js';

const MOCK_TEXT = STREAM_WORDS.join('');
// The mock's usage as the AI SDK reports it.
const MOCK_USAGE = { inputTokens: 11, outputTokens: 6, totalTokens: 17 };

const config = (upstreamUrl: string) => mockConfig(upstreamUrl, '', E2E_UPSTREAM);

let mock: MockUpstream;
let gw: TestGateway;
let direct: LanguageModel;
let gateway: LanguageModel;

const env = mockUpstreamAndGateway(config);
beforeAll(() => {
  ({ mock, gw } = env);
  direct = createOpenAI({ baseURL: mock.url, apiKey: 'sk-test' }).chat('gpt-4o-mini');
  gateway = createOpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test' }).chat('gpt-4o-mini');
});

const prompt = { system: 'You are terse.', prompt: 'Say hello.' };

/** Runs streamText to the end; stream errors are collected instead of logged. */
async function stream(model: LanguageModel, headers?: Record<string, string>) {
  const errors: unknown[] = [];
  const result = streamText({ model, ...prompt, maxRetries: 0, headers, onError: ({ error }) => void errors.push(error) });
  let text = '';
  const parts: string[] = [];
  let thrown: unknown;
  try {
    for await (const part of result.fullStream) {
      parts.push(part.type);
      if (part.type === 'text-delta') text += part.text;
    }
  } catch (err) {
    // A transport failure (the body breaks off) is thrown from the stream, not reported as a part.
    thrown = err;
  }
  if (thrown) return { text, parts, errors, thrown };
  const [usage, finishReason, response] = await Promise.all([result.usage, result.finishReason, result.response]);
  return { text, usage, finishReason, response, parts, errors, thrown };
}

describe('AI SDK through the gateway', () => {
  it('generateText: same text and usage as direct', async () => {
    const d = await generateText({ model: direct, ...prompt, maxRetries: 0 });
    const g = await generateText({ model: gateway, ...prompt, maxRetries: 0 });

    expect(d.text).toBe(MOCK_TEXT);
    expect(g.text).toBe(d.text);
    expect(g.finishReason).toBe('stop');
    expect(g.usage).toMatchObject(MOCK_USAGE);
    expect(g.usage).toEqual(d.usage);
    expect(g.totalUsage).toEqual(d.totalUsage);
    expect(g.response.id).toBe(d.response.id);
    expect(g.response.modelId).toBe(d.response.modelId);
    expect(g.response.headers?.['x-request-id']).toMatch(/^req_mock_/);
    expect(d.response.headers?.['x-request-id']).toMatch(/^req_mock_/);
  });

  it('streamText: same text and usage as direct (usage from the include_usage chunk)', async () => {
    const d = await stream(direct);
    const g = await stream(gateway);

    expect(d.errors).toEqual([]);
    expect(g.errors).toEqual([]);
    expect(d.text).toBe(MOCK_TEXT);
    expect(g.text).toBe(d.text);
    expect(g.finishReason).toBe('stop');
    expect(g.usage).toMatchObject(MOCK_USAGE);
    expect(g.usage).toEqual(d.usage);
    expect(g.parts).toEqual(d.parts);
    expect(g.response?.headers?.['x-request-id']).toMatch(/^req_mock_/);
    // The SDK itself asked for usage, so the gateway passed the usage chunk through.
    expect(mock.requests[1].body.stream_options).toEqual({ include_usage: true });
  });

  it('an upstream 429 is the same APICallError through the gateway as direct', async () => {
    const call = (model: LanguageModel) =>
      generateText({ model, ...prompt, maxRetries: 0, headers: { 'x-mock-status': '429' } }).then(
        () => {
          throw new Error('expected the request to fail');
        },
        (e: unknown) => e,
      );
    const d = await call(direct);
    const g = await call(gateway);

    expect(APICallError.isInstance(d)).toBe(true);
    expect(APICallError.isInstance(g)).toBe(true);
    const de = d as APICallError;
    const ge = g as APICallError;
    expect(ge.statusCode).toBe(429);
    expect(ge.statusCode).toBe(de.statusCode);
    expect(ge.message).toBe(de.message);
    expect(ge.isRetryable).toBe(de.isRetryable);
    expect(JSON.parse(ge.responseBody!)).toEqual(JSON.parse(de.responseBody!));
  });

  it('streamText: a mid-stream upstream reset surfaces as a stream error', async () => {
    const d = await stream(direct, { 'x-mock-reset': 'mid' });
    const g = await stream(gateway, { 'x-mock-reset': 'mid' });

    // Directly, the broken body makes the fullStream iteration throw (APICallError
    // "Failed to process successful response", caused by undici's "terminated").
    expect(APICallError.isInstance(d.thrown)).toBe(true);
    // Through the gateway the stream ends with an OpenAI-shaped error event, which the SDK
    // turns into an `error` part (onError), and the stream finishes normally.
    expect(g.thrown).toBeUndefined();
    expect(g.parts).toContain('error');
    expect(g.errors).toHaveLength(1);
    expect(g.errors[0]).toMatchObject({ type: 'server_error', code: 'upstream_error', message: 'The upstream connection failed during the stream.' });
    expect(g.finishReason).toBe('error');
    expect(g.text).toBe(d.text);
    expect(g.text).toBe(STREAM_WORDS.slice(0, 2).join(''));
  });
});
