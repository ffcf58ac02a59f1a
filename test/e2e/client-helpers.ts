/** Small helpers the client end-to-end tests share. */
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';

/** Every item of a stream (an SDK `Stream`, an async generator), in order. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of stream) out.push(x);
  return out;
}

/** The rejection of `p` (fails the test if `p` resolves). */
export async function rejection(p: Promise<unknown>): Promise<any> {
  return p.then(
    () => {
      throw new Error('expected the request to fail');
    },
    (e: unknown) => e,
  );
}

/**
 * One mock upstream and one gateway in front of it for a test file: started before its
 * tests, the mock's records cleared after each test, both closed after all. Read `mock` and
 * `gw` from the returned object once the file's tests run.
 */
export function mockUpstreamAndGateway(yamlFor: (mockUrl: string) => string, options?: TestGatewayOptions): { readonly mock: MockUpstream; readonly gw: TestGateway } {
  const env = {} as { mock: MockUpstream; gw: TestGateway };
  beforeAll(async () => {
    env.mock = await startMockUpstream();
    env.gw = await startTestGateway(yamlFor(env.mock.url), options);
  });
  afterEach(() => {
    env.mock.requests.length = 0;
    env.mock.closed = 0;
  });
  afterAll(async () => {
    await env.gw?.close();
    await env.mock?.close();
  });
  return env;
}

/** Binds the alias `support-bot` to a fixed template version (append to a gateway config). */
export const BINDINGS = `
bindings:
  - {model: support-bot, template: support-reply@1.0.0}
`;

/** A question that makes a tool-calling model call `get_weather` twice. */
export const messages = [{ role: 'user' as const, content: 'What is the weather in Paris and Tokyo?' }];
export const tools: ChatCompletionTool[] = [
  {
    type: 'function',
    function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] } },
  },
];
