/**
 * Review: the usage estimate of an answer without usage counts every call the model wrote,
 * as the context budget does (`context/tokens.ts`): a function's name and arguments in
 * `tool_calls` or in the legacy `function_call`, a `custom` tool call's name and input. In
 * the prompt (calls in the request's history) and in the completion (the answer's message,
 * or a stream's deltas). Through the real gateway (real sockets) and the official client;
 * the estimate is read from `GET /metrics` and compared with the tokenizer's count.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { countTokens } from '../src/tokenizer/index.js';
import { startCannedUpstream, json, type CannedUpstream } from './helpers/canned-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { PromText } from './telemetry-e2e/prom-text.js';

const MODEL = 'gpt-4o-mini';

/** An SSE body of these chunk deltas, without a usage chunk, ended by `[DONE]`. */
function sseWithoutUsage(deltas: object[], finishReason: string): { contentType: string; body: string } {
  const chunk = (delta: object, finish: string | null) =>
    `data: ${JSON.stringify({ id: 'chatcmpl-e7', object: 'chat.completion.chunk', created: 1, model: MODEL, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  return { contentType: 'text/event-stream', body: [...deltas.map((d) => chunk(d, null)), chunk({}, finishReason), 'data: [DONE]\n\n'].join('') };
}

/** A non-stream answer without usage (an opaque upstream). */
function answerWithoutUsage(message: object, finishReason: string) {
  return json({ id: 'chatcmpl-e7', object: 'chat.completion', created: 1, model: MODEL, choices: [{ index: 0, message, finish_reason: finishReason }] });
}

/** The cookbook count of plain messages (3 each, role, content) plus the 3 priming the reply. */
function plainPromptTokens(messages: Array<{ role: string; content?: string | null }>): number {
  return messages.reduce((n, m) => n + 3 + countTokens(m.role) + countTokens(m.content ?? ''), 3);
}

describe('usage estimate: every call the model wrote is counted', () => {
  let upstream: CannedUpstream;
  let gw: TestGateway;
  let client: OpenAI;

  beforeAll(async () => {
    upstream = await startCannedUpstream();
    gw = await startTestGateway(mockConfig(upstream.url));
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  let before = { input: 0, output: 0 };
  /** Estimated tokens of the model so far, by type. */
  async function estimated(): Promise<{ input: number; output: number }> {
    const prom = new PromText(await (await fetch(`${gw.url}/metrics`)).text());
    const sum = (type: string) => prom.sum('promptgate_tokens_total', { gen_ai_request_model: MODEL, estimated: 'true', gen_ai_token_type: type }) ?? 0;
    return { input: sum('input'), output: sum('output') };
  }
  /** The estimate this test's request added, once the gateway has recorded it. */
  async function added(): Promise<{ input: number; output: number }> {
    const deadline = Date.now() + 5000;
    let now = await estimated();
    while (now.input === before.input && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      now = await estimated();
    }
    return { input: now.input - before.input, output: now.output - before.output };
  }
  beforeEach(async () => {
    before = await estimated();
  });

  const question = { role: 'user' as const, content: 'What is the weather in Paris?' };

  it('a streamed answer that is a legacy function_call counts its name and arguments as output', async () => {
    const name = 'get_weather';
    const args = '{"city":"Paris","unit":"celsius"}';
    upstream.answer = sseWithoutUsage(
      [{ role: 'assistant', content: null, function_call: { name, arguments: '' } }, { function_call: { arguments: args.slice(0, 12) } }, { function_call: { arguments: args.slice(12) } }],
      'function_call',
    );
    const stream = await client.chat.completions.create({ model: MODEL, stream: true, messages: [question] });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.function_call?.arguments ?? '';
    expect(streamed).toBe(args);
    const usage = await added();
    expect(usage.input).toBe(plainPromptTokens([question]));
    expect(usage.output).toBe(countTokens(name + args));
  });

  it('a non-stream answer that is a legacy function_call counts its name and arguments as output', async () => {
    const call = { name: 'get_weather', arguments: '{"city":"Paris"}' };
    upstream.answer = answerWithoutUsage({ role: 'assistant', content: null, function_call: call }, 'function_call');
    const answer = await client.chat.completions.create({ model: MODEL, messages: [question] });
    expect(answer.choices[0].message.function_call).toEqual(call);
    expect((await added()).output).toBe(countTokens(call.name + call.arguments));
  });

  it('a custom tool call in the answer (message and stream deltas) counts its name and input as output', async () => {
    const custom = { name: 'run_python', input: 'import math\nprint(math.sqrt(2))' };
    upstream.answer = answerWithoutUsage({ role: 'assistant', content: null, tool_calls: [{ id: 'call_c1', type: 'custom', custom }] }, 'tool_calls');
    await client.chat.completions.create({ model: MODEL, messages: [question] });
    expect((await added()).output).toBe(countTokens(custom.name + custom.input));

    before = await estimated();
    upstream.answer = sseWithoutUsage(
      [
        { role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_c2', type: 'custom', custom: { name: custom.name, input: '' } }] },
        { tool_calls: [{ index: 0, custom: { input: custom.input.slice(0, 11) } }] },
        { tool_calls: [{ index: 0, custom: { input: custom.input.slice(11) } }] },
      ],
      'tool_calls',
    );
    const stream = await client.chat.completions.create({ model: MODEL, stream: true, messages: [question] });
    for await (const _ of stream);
    expect((await added()).output).toBe(countTokens(custom.name + custom.input));
  });

  it('a custom tool call and a legacy function_call in the history count as input', async () => {
    upstream.answer = answerWithoutUsage({ role: 'assistant', content: 'Done.' }, 'stop');
    const custom = { name: 'run_python', input: 'import math\nprint(math.sqrt(2))' };
    const legacy = { name: 'get_weather', arguments: '{"city":"Paris"}' };
    const messages = [
      question,
      { role: 'assistant' as const, content: null, function_call: legacy },
      { role: 'function' as const, name: 'get_weather', content: '18 C' },
      { role: 'assistant' as const, content: null, tool_calls: [{ id: 'call_c3', type: 'custom' as const, custom }] },
      { role: 'tool' as const, tool_call_id: 'call_c3', content: '1.4142135623730951' },
    ];
    await client.chat.completions.create({ model: MODEL, messages });
    const calls = countTokens(legacy.name) + countTokens(legacy.arguments) + countTokens(custom.name) + countTokens(custom.input);
    const name = 1 + countTokens('get_weather'); // the function message's name
    const usage = await added();
    expect(usage.input).toBe(plainPromptTokens(messages) + name + calls);
    expect(usage.output).toBe(countTokens('Done.'));
  });
});
