/**
 * A request's tool definitions (`tools`, legacy `functions`) are prompt tokens: OpenAI bills
 * them as input. They count against `constraints.max_input_tokens` (and the context budget
 * under it) and in the usage estimate of an answer without usage; a request without tools is
 * counted exactly as before. The count itself (`toolDefinitionTokens`) is pure; the rest
 * runs a real gateway on 127.0.0.1 port 0 with the recording mock upstream. Servers are
 * closed by this file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countTokens } from '../src/tokenizer/index.js';
import { toolDefinitionTokens } from '../src/tokenizer/tool-definitions.js';
import { estimateUsage, toolTokensOnce } from '../src/telemetry/usage.js';
import { messagesTokens } from '../src/context/tokens.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { mockConfig, postJson, startTestGateway, type TestGateway } from './helpers/gateway.js';

/** An agent tool with a schema of some size: ~200 tokens, far more than the question. */
const SEARCH_ORDERS = {
  type: 'function',
  function: {
    name: 'search_orders',
    description: 'Search the customer orders by status, date range, carrier and destination, newest first.',
    parameters: {
      type: 'object',
      properties: Object.fromEntries(
        ['status', 'placed_after', 'placed_before', 'carrier', 'destination_country', 'destination_city', 'sku', 'customer_email'].map((field) => [
          field,
          { type: 'string', description: `Only orders whose ${field.replaceAll('_', ' ')} matches this value exactly.` },
        ]),
      ),
      required: ['status'],
      additionalProperties: false,
    },
  },
};
const TOOLS = [SEARCH_ORDERS];
const QUESTION = [{ role: 'user', content: 'Which of my orders are late?' }];
const CAP = 120;

const TEMPLATES = {
  capped: `id: capped
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: ${CAP}}
    messages:
      - {role: system, content: "You answer questions about orders, briefly."}
`,
  // The version brings the tools itself: the client sends none.
  tooled: `id: tooled
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: ${CAP}}
    params:
      tools: ${JSON.stringify(TOOLS)}
    messages:
      - {role: system, content: "You answer questions about orders, briefly."}
`,
  // History as context, under a cap the tools take part of.
  remembering: `id: remembering
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: 500}
    context: {use: [history]}
    messages:
      - {role: system, content: "You answer questions about orders, briefly."}
      - role: system
        content: "{{#history}}{{role}}: {{content}}\\n{{/history}}"
`,
};

const CONFIG_EXTRA = `
bindings:
  - {model: order-bot, template: capped@1.0.0}
  - {model: tooled-bot, template: tooled@1.0.0}
  - {model: history-bot, template: remembering@1.0.0}
context:
  builders:
    - {name: history, kind: history, max_turns: 20}
`;

let upstream: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockUpstream();
  const templateFiles = Object.fromEntries(Object.entries(TEMPLATES).map(([id, yaml]) => [`${id}.yaml`, yaml]));
  gw = await startTestGateway(mockConfig(upstream.url, CONFIG_EXTRA), { templateFiles });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

const chat = (body: Record<string, unknown>, headers: Record<string, string> = {}) => postJson(gw.url, '/v1/chat/completions', body, headers);

/** The final prompt's messages as `applySelection` builds them for `capped` and `tooled`. */
const cappedPrompt = [{ role: 'system', content: 'You answer questions about orders, briefly.' }, ...QUESTION];

describe('toolDefinitionTokens', () => {
  it('counts each definition as 7 tokens plus its name, description and JSON schema, and 12 once for the block', () => {
    const fn = SEARCH_ORDERS.function;
    const expected = 12 + 7 + countTokens(fn.name) + countTokens(fn.description) + countTokens(JSON.stringify(fn.parameters));
    expect(toolDefinitionTokens({ tools: TOOLS })).toBe(expected);
    // Legacy `functions` are the definitions themselves, counted alike.
    expect(toolDefinitionTokens({ functions: [fn] })).toBe(expected);
    // A custom tool: its free-form `format` stands where a schema would.
    const custom = { type: 'custom', custom: { name: 'run_sql', description: 'Runs one query.', format: { type: 'text' } } };
    expect(toolDefinitionTokens({ tools: [custom] })).toBe(12 + 7 + countTokens('run_sql') + countTokens('Runs one query.') + countTokens('{"type":"text"}'));
  });

  it('uses the encoding it is given, and counts nothing for a request without tools', () => {
    const text = JSON.stringify(SEARCH_ORDERS.function.parameters);
    expect(countTokens(text, 'cl100k_base')).not.toBe(countTokens(text, 'o200k_base'));
    expect(toolDefinitionTokens({ tools: TOOLS }, 'cl100k_base') - toolDefinitionTokens({ tools: TOOLS }, 'o200k_base')).toBe(
      countTokens(text, 'cl100k_base') - countTokens(text, 'o200k_base') + countTokens(SEARCH_ORDERS.function.description, 'cl100k_base') - countTokens(SEARCH_ORDERS.function.description, 'o200k_base') + countTokens('search_orders', 'cl100k_base') - countTokens('search_orders', 'o200k_base'),
    );
    expect(toolDefinitionTokens({})).toBe(0);
    expect(toolDefinitionTokens({ tools: [], functions: null })).toBe(0);
    expect(toolDefinitionTokens({ tools: [null, 'x', 42] })).toBe(12);
  });

  it('toolTokensOnce counts a request once however often it is asked, and not at all until asked', () => {
    let reads = 0;
    const definition = {
      get name() {
        reads++;
        return 'search_orders';
      },
      parameters: { type: 'object' },
    };
    const tokens = toolTokensOnce({ model: 'gpt-4o-mini', tools: [{ type: 'function', function: definition }] });
    expect(reads).toBe(0);
    const first = tokens();
    // Read for the digest the count is remembered by, then counted: never again.
    const readsToCount = reads;
    expect(tokens()).toBe(first);
    expect(tokens()).toBe(first);
    expect(reads).toBe(readsToCount);
    expect(first).toBe(toolDefinitionTokens({ tools: [{ type: 'function', function: { name: 'search_orders', parameters: { type: 'object' } } }] }));
  });
});

describe('constraints.max_input_tokens counts the tool definitions', () => {
  it('refuses a request whose messages fit but whose tools do not: 400 context_length_exceeded naming the limit, nothing upstream', async () => {
    const messageTokens = messagesTokens(cappedPrompt);
    const toolTokens = toolDefinitionTokens({ tools: TOOLS });
    expect(messageTokens).toBeLessThanOrEqual(CAP);
    expect(messageTokens + toolTokens).toBeGreaterThan(CAP);
    const before = upstream.requests.length;
    const res = await chat({ model: 'order-bot', messages: QUESTION, tools: TOOLS });
    expect(res.status).toBe(400);
    const { error } = JSON.parse(res.text);
    expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(error.code).toBe('context_length_exceeded');
    expect(error.type).toBe('invalid_request_error');
    expect(error.param).toBe('messages');
    expect(error.message).toContain(`This prompt is ${messageTokens + toolTokens} tokens (${toolTokens} of them tool definitions)`);
    expect(error.message).toContain(`max_input_tokens of ${CAP}`);
    expect(upstream.requests.length).toBe(before);
  });

  it('sends the same request without tools', async () => {
    const res = await chat({ model: 'order-bot', messages: QUESTION });
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)!.body.messages).toEqual(cappedPrompt);
  });

  it('counts the legacy functions, and tools the version adds to a request without any', async () => {
    const legacy = await chat({ model: 'order-bot', messages: QUESTION, functions: [SEARCH_ORDERS.function] });
    expect(legacy.status).toBe(400);
    expect(JSON.parse(legacy.text).error.code).toBe('context_length_exceeded');
    const versionTools = await chat({ model: 'tooled-bot', messages: QUESTION });
    expect(versionTools.status).toBe(400);
    expect(JSON.parse(versionTools.text).error.message).toContain(`(${toolDefinitionTokens({ tools: TOOLS })} of them tool definitions)`);
  });

  it('an over-cap request without tools gets the same message as before', async () => {
    const long = [{ role: 'user', content: 'My parcel has not arrived and I would like to know what happened to it. '.repeat(8) }];
    const tokens = messagesTokens([cappedPrompt[0], ...long]);
    const res = await chat({ model: 'order-bot', messages: long });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).error.message).toBe(`This prompt is ${tokens} tokens, over the template version's max_input_tokens of ${CAP} (its maximum context length). Shorten the messages.`);
  });

  it('the context budget leaves room for the tools: history is trimmed so that messages and tools fit the cap', async () => {
    const earlier = Array.from({ length: 4 }, (_, i) => [
      { role: 'user', content: `Earlier question ${i} about parcel number ${1000 + i}, which was late again this week.` },
      { role: 'assistant', content: `Earlier answer ${i}: parcel ${1000 + i} is with the carrier and arrives tomorrow morning.` },
    ]).flat();
    const res = await chat({ model: 'history-bot', user: 'user-1', messages: [...earlier, ...QUESTION], tools: TOOLS });
    expect(res.status).toBe(200);
    const sent = upstream.requests.at(-1)!.body as { messages: Array<{ role: string; content: string }>; tools: unknown };
    expect(sent.tools).toEqual(TOOLS);
    // Some history went in, not all of it, and the prompt with its tools is under the cap.
    const history = sent.messages[1].content;
    expect(history).toContain('assistant: Earlier answer 3');
    expect(history).not.toContain('user: Earlier question 0');
    expect(messagesTokens(sent.messages) + toolDefinitionTokens({ tools: TOOLS })).toBeLessThanOrEqual(500);
  });
});

describe('the usage estimate counts the tool definitions', () => {
  /** promptgate_tokens_total of estimated input tokens for a request model. */
  async function estimatedInput(model: string): Promise<number> {
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    const line = metrics
      .split('\n')
      .find((l) => l.startsWith('promptgate_tokens_total{') && l.includes('gen_ai_token_type="input"') && l.includes(`gen_ai_request_model="${model}"`) && l.includes('estimated="true"'));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  }

  async function settledInput(model: string, before: number): Promise<number> {
    const deadline = Date.now() + 5000;
    while ((await estimatedInput(model)) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return (await estimatedInput(model)) - before;
  }

  it('an answer without usage: the input estimate is the messages plus the tools', async () => {
    const before = await estimatedInput('gpt-4o-mini');
    const res = await chat({ model: 'gpt-4o-mini', messages: QUESTION, tools: TOOLS }, { 'x-mock-no-usage': '1' });
    expect(res.status).toBe(200);
    expect(res.headers['x-promptgate-usage-estimated']).toBe('true');
    expect(await settledInput('gpt-4o-mini', before)).toBe(estimateUsage(QUESTION, '', 'gpt-4o-mini').inputTokens + toolDefinitionTokens({ tools: TOOLS }, 'o200k_base'));
  });

  it('a stream without usage: the tools are counted in the model encoding (cl100k_base for gpt-4)', async () => {
    const before = await estimatedInput('gpt-4');
    const res = await chat({ model: 'gpt-4', stream: true, messages: QUESTION, tools: TOOLS }, { 'x-mock-no-usage': '1' });
    expect(res.status).toBe(200);
    expect(await settledInput('gpt-4', before)).toBe(estimateUsage(QUESTION, '', 'gpt-4').inputTokens + toolDefinitionTokens({ tools: TOOLS }, 'cl100k_base'));
  });

  it('a request without tools is estimated exactly as before', async () => {
    const before = await estimatedInput('gpt-4.1-mini');
    const res = await chat({ model: 'gpt-4.1-mini', messages: QUESTION }, { 'x-mock-no-usage': '1' });
    expect(res.status).toBe(200);
    expect(await settledInput('gpt-4.1-mini', before)).toBe(estimateUsage(QUESTION, '', 'gpt-4.1-mini').inputTokens);
  });
});
