/**
 * Review of today's changes (round 7, second pair of eyes). Tool-call arguments are now
 * counted by `constraints.max_input_tokens` and the context budget (1e617dd); an agent's
 * `write_file` arguments are JSON, one line with no place to cut, so a long one (over the
 * 32 Ki characters a text is remembered up to) was tokenized again on every later request
 * of its conversation, ~10 ms of CPU for 200 KB, up to three times a request. A real
 * gateway on 127.0.0.1 port 0 with the mock upstream and the official `openai` client;
 * the tokenizer is wrapped to count what it is asked to count.
 */
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { countTokens as tokenize } from '../src/tokenizer/index.js';
import { countTokensRemembered, messagesTokens } from '../src/context/tokens.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';

vi.mock('../src/tokenizer/index.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/tokenizer/index.js')>();
  return { ...actual, countTokens: vi.fn(actual.countTokens) };
});

const LONG = 32_768;
/** Calls of the tokenizer on a text longer than `LONG` since `from` (an index into the spy's calls). */
const longCounts = (from: number) => vi.mocked(tokenize).mock.calls.slice(from).filter(([text]) => text.length > LONG).length;

/** A ~200 KB source file, as an agent's write_file call carries it: JSON, its line breaks escaped. */
function writeFileCall(id: string, seed: string) {
  const body = Array.from({ length: 5000 }, (_, i) => `  const ${seed}${i} = await load("${seed}/${i}"); // step ${i}`).join('\n');
  return { id, type: 'function' as const, function: { name: 'write_file', arguments: JSON.stringify({ path: `${seed}.ts`, content: body }) } };
}

describe('long texts are counted once, not on every request', () => {
  it('a tool call past 32 Ki characters: the second count of the same conversation does not tokenize it again', () => {
    const call = writeFileCall('call_1', 'unit');
    expect(call.function.arguments.length).toBeGreaterThan(LONG);
    const messages = [
      { role: 'user', content: 'Write the loader.' },
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: 'call_1', content: 'ok' },
    ];
    const expected = 9 + tokenize('Write the loader.') + tokenize('write_file') + tokenize(call.function.arguments) + tokenize('ok');
    const from = vi.mocked(tokenize).mock.calls.length;
    expect(messagesTokens(messages)).toBe(expected);
    expect(longCounts(from)).toBe(1);
    const again = vi.mocked(tokenize).mock.calls.length;
    expect(messagesTokens(messages)).toBe(expected);
    expect(longCounts(again)).toBe(0);
  });

  it('a short text that spells a long text\'s digest does not stand for it; long texts keep their own counts', () => {
    const long = 'word '.repeat(LONG / 4);
    const other = `${long}more words`;
    const digest = createHash('sha256').update(long, 'utf16le').digest('base64');
    expect(countTokensRemembered(digest)).toBe(tokenize(digest));
    expect(countTokensRemembered(long)).toBe(tokenize(long));
    expect(countTokensRemembered(other)).toBe(tokenize(other));
    expect(countTokensRemembered(long)).toBe(tokenize(long));
  });
});

describe('through the gateway: an agent conversation under max_input_tokens', () => {
  const TEMPLATE = `id: coder
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: 500000}
    messages:
      - {role: system, content: "You are the coding agent. Use the tools."}
`;
  let upstream: MockUpstream;
  let gw: TestGateway;
  let client: OpenAI;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    gw = await startTestGateway(mockConfig(upstream.url, 'bindings:\n  - {model: coder-bot, template: coder@1.0.0}\n'), { templateFiles: { 'coder.yaml': TEMPLATE } });
    client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
  });

  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('each later request of the conversation does not tokenize the earlier write_file calls again (was: every request, ~10 ms each)', async () => {
    const calls = [writeFileCall('call_a', 'alpha'), writeFileCall('call_b', 'beta')];
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Write both loaders.' }];
    for (const call of calls) {
      messages.push({ role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: 'written' });
    }
    const first = await client.chat.completions.create({ model: 'coder-bot', messages });
    expect(first.choices[0].message.content).toBeTruthy();
    const from = vi.mocked(tokenize).mock.calls.length;
    for (let turn = 0; turn < 3; turn++) {
      messages.push({ role: 'user', content: `Now check step ${turn}.` });
      const next = await client.chat.completions.create({ model: 'coder-bot', messages });
      expect(next.choices[0].message.content).toBeTruthy();
      messages.push({ role: 'assistant', content: next.choices[0].message.content });
    }
    expect(longCounts(from)).toBe(0);
    // The arguments still reach the upstream as sent.
    const sent = upstream.requests.at(-1)!.body as { messages: Array<{ tool_calls?: Array<{ function: { arguments: string } }> }> };
    expect(sent.messages.flatMap((m) => m.tool_calls ?? []).map((c) => c.function.arguments)).toEqual(calls.map((c) => c.function.arguments));
  });
});
