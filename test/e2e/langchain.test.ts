/**
 * End to end with LangChain's `ChatOpenAI` (@langchain/openai v1): the same model object,
 * pointed at the mock upstream directly and at the gateway by `configuration.baseURL` only,
 * must see the same content and usage.
 *
 * Notes: `ChatOpenAI` uses Chat Completions for `gpt-4o-mini` (the Responses API only for
 * `useResponsesApi: true`, built-in tools or *-pro / codex models). `streamUsage` defaults
 * to true already and makes `.stream()` send `stream_options: {include_usage: true}`; it
 * is set explicitly here. `maxRetries: 0` is passed to the underlying openai-node client.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ChatOpenAI } from '@langchain/openai';
import { HumanMessage, SystemMessage, type AIMessageChunk } from '@langchain/core/messages';
import { STREAM_WORDS, type MockUpstream } from '../helpers/mock-upstream.js';
import { E2E_UPSTREAM, mockConfig, type TestGateway } from '../helpers/gateway.js';
import { mockUpstreamAndGateway } from './client-helpers.js';

const MOCK_TEXT = STREAM_WORDS.join('');
const MOCK_USAGE = { input_tokens: 11, output_tokens: 6, total_tokens: 17 };

const config = (upstreamUrl: string) => mockConfig(upstreamUrl, '', E2E_UPSTREAM);

let mock: MockUpstream;
let gw: TestGateway;

const model = (baseURL: string, extra: Partial<ConstructorParameters<typeof ChatOpenAI>[0] & object> = {}) =>
  new ChatOpenAI({ model: 'gpt-4o-mini', apiKey: 'sk-test', configuration: { baseURL }, maxRetries: 0, streamUsage: true, ...extra });

const messages = [new SystemMessage('You are terse.'), new HumanMessage('Say hello.')];

const env = mockUpstreamAndGateway(config);
beforeAll(() => {
  ({ mock, gw } = env);
});

async function streamAll(m: ChatOpenAI): Promise<{ chunks: AIMessageChunk[]; final: AIMessageChunk }> {
  const chunks: AIMessageChunk[] = [];
  let final: AIMessageChunk | undefined;
  for await (const chunk of await m.stream(messages)) {
    chunks.push(chunk);
    final = final ? final.concat(chunk) : chunk;
  }
  return { chunks, final: final! };
}

describe('LangChain ChatOpenAI through the gateway', () => {
  it('invoke: same content and usage as direct', async () => {
    const d = await model(mock.url).invoke(messages);
    const g = await model(`${gw.url}/v1`).invoke(messages);

    expect(d.content).toBe(MOCK_TEXT);
    expect(g.content).toBe(d.content);
    expect(g.usage_metadata).toMatchObject(MOCK_USAGE);
    expect(g.usage_metadata).toEqual(d.usage_metadata);
    expect(g.response_metadata.tokenUsage).toEqual({ promptTokens: 11, completionTokens: 6, totalTokens: 17 });
    expect(g.response_metadata.tokenUsage).toEqual(d.response_metadata.tokenUsage);
    expect(g.response_metadata.finish_reason).toBe('stop');
    expect(g.response_metadata.model_name).toBe(d.response_metadata.model_name);
    expect(g.id).toBe(d.id);
  });

  it('stream: same content and usage (streamUsage) as direct', async () => {
    const d = await streamAll(model(mock.url));
    const g = await streamAll(model(`${gw.url}/v1`));

    expect(d.final.content).toBe(MOCK_TEXT);
    expect(g.final.content).toBe(d.final.content);
    expect(g.chunks.map((c) => c.content)).toEqual(d.chunks.map((c) => c.content));
    expect(g.final.usage_metadata).toMatchObject(MOCK_USAGE);
    expect(g.final.usage_metadata).toEqual(d.final.usage_metadata);
    expect(mock.requests[1].body.stream_options).toEqual({ include_usage: true });
  });

  it('stream with streamUsage: false: no usage, same as direct', async () => {
    const d = await streamAll(model(mock.url, { streamUsage: false }));
    const g = await streamAll(model(`${gw.url}/v1`, { streamUsage: false }));

    expect(g.final.content).toBe(MOCK_TEXT);
    expect(g.final.content).toBe(d.final.content);
    expect(d.final.usage_metadata).toBeUndefined();
    expect(g.final.usage_metadata).toEqual(d.final.usage_metadata);
    expect(mock.requests[0].body.stream_options).toBeUndefined();
  });

  it('an upstream 429 fails the same way through the gateway as direct', async () => {
    const fail = (baseURL: string) =>
      model(baseURL, { configuration: { baseURL, defaultHeaders: { 'x-mock-status': '429' } } })
        .invoke(messages)
        .then(
          () => {
            throw new Error('expected the request to fail');
          },
          (e: any) => e,
        );
    const d = await fail(mock.url);
    const g = await fail(`${gw.url}/v1`);

    expect(g.status).toBe(429);
    expect(g.status).toBe(d.status);
    expect(g.constructor.name).toBe(d.constructor.name);
    expect(g.message).toBe(d.message);
    expect(g.lc_error_code).toBe(d.lc_error_code);
  });
});

describe("the gateway's own context_length_exceeded", () => {
  // LangChain recognises an overflow by the message text ("maximum context length"), not by
  // its code: the gateway's refusal of a prompt over max_input_tokens was a plain BadRequestError.
  it('is a ContextOverflowError, as OpenAI’s own is', async () => {
    const { startTestGateway } = await import('../helpers/gateway.js');
    const { ContextOverflowError } = await import('@langchain/core/errors');
    const template = `id: small
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: 40}
    messages:
      - {role: system, content: "Be brief."}
`;
    const small = await startTestGateway(mockConfig(mock.url, 'bindings: [{model: small-bot, template: small}]'), { templateFiles: { 'small.yaml': template } });
    try {
      const err = await model(`${small.url}/v1`, { model: 'small-bot' })
        .invoke('word '.repeat(100))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ContextOverflowError);
    } finally {
      await small.close();
    }
  });
});
