/**
 * Review of the prompt's token numbers: `constraints.max_input_tokens` counts a prompt as the
 * usage estimate and the span's prompt count do (a message's `name`, each text part on its
 * own), and an estimate counts the tool definitions in the encoding it counts the messages
 * in. The counting tests call the pure functions; the rest runs a real gateway on 127.0.0.1
 * port 0 with the recording mock upstream. Servers are closed by this file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countPromptTokens, messagesTokens } from '../src/context/tokens.js';
import { estimateUsage } from '../src/telemetry/usage.js';
import { countTokens } from '../src/tokenizer/index.js';
import { toolDefinitionTokens } from '../src/tokenizer/tool-definitions.js';
import { mockConfig, postJson, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

const SYSTEM = 'Answer briefly.';

/** A multi-agent conversation: every turn names its speaker (OpenAI bills the names). */
const NAMED = [
  { role: 'user', name: 'customer_support_escalation_agent', content: 'Where is order 42?' },
  { role: 'assistant', name: 'order_tracking_specialist_agent', content: 'It left the warehouse on Monday.' },
  { role: 'user', name: 'customer_support_escalation_agent', content: 'When will it arrive?' },
];
/** What the cap check counts of NAMED behind the template's system message: 3 a message, its text, its name and 1 for the name. */
const NAMED_TOKENS =
  3 + countTokens(SYSTEM) + NAMED.reduce((n, m) => n + 3 + countTokens(m.content) + 1 + countTokens(m.name), 0);

/** One user turn sent as many text parts (a RAG client sends each passage as a part). */
const PARTS = ['Where is my parcel', 'Order 42 shipped Monday', 'Carrier DHL', 'Tracking JD0146', 'Destination Lyon', 'Please answer in French'];
const PARTED = [{ role: 'user', content: PARTS.map((text) => ({ type: 'text', text })) }];
/** What the cap check counts of PARTED behind the system message: each part on its own, as the estimate counts it. */
const PARTED_TOKENS = 3 + countTokens(SYSTEM) + 3 + PARTS.reduce((n, text) => n + countTokens(text), 0);

const capped = (id: string, cap: number) => `id: ${id}
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: ${cap}}
    messages:
      - {role: system, content: "${SYSTEM}"}
`;

/** A tool with a schema, so that its count in o200k_base and cl100k_base differ. */
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'track_parcel',
      description: 'Suivre un colis par son numéro de suivi; réponse en français, avec les étapes de livraison.',
      parameters: { type: 'object', properties: { tracking: { type: 'string', description: 'Numéro de suivi du transporteur' } }, required: ['tracking'] },
    },
  },
];
const QUESTION = [{ role: 'user', content: 'Où est mon colis JD0146 ? Il devait arriver lundi.' }];

let upstream: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockUpstream();
  gw = await startTestGateway(mockConfig(upstream.url), {
    templateFiles: { 'named.yaml': capped('named', NAMED_TOKENS - 1), 'parted.yaml': capped('parted', PARTED_TOKENS) },
  });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

const chat = (body: Record<string, unknown>, headers: Record<string, string> = {}) => postJson(gw.url, '/v1/chat/completions', body, headers);

describe('max_input_tokens counts the prompt as the usage estimate counts it', () => {
  it("counts each message's name: a prompt over the cap by its names is refused (was: names not counted, sent upstream)", async () => {
    const before = upstream.requests.length;
    const res = await chat({ model: 'gpt-4o', messages: NAMED }, { 'x-promptgate-template': 'named' });
    expect(res.status).toBe(400);
    const { error } = JSON.parse(res.text);
    expect(error.code).toBe('context_length_exceeded');
    expect(error.message).toContain(`This prompt is ${NAMED_TOKENS} tokens`);
    expect(upstream.requests.length).toBe(before);
  });

  it('counts each text part on its own: a prompt at the cap is sent (was: parts joined by line breaks, refused for tokens it does not have)', async () => {
    const res = await chat({ model: 'gpt-4o', messages: PARTED }, { 'x-promptgate-template': 'parted' });
    expect(res.status, res.text).toBe(200);
    // One token more is over: the check is exact, not lenient.
    const over = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: [...PARTED[0].content, { type: 'text', text: 'x' }] }] }, { 'x-promptgate-template': 'parted' });
    expect(over.status).toBe(400);
    expect(JSON.parse(over.text).error.message).toContain(`This prompt is ${PARTED_TOKENS + 1} tokens`);
  });

  it("the span's prompt count is the cap check's plus 1 a message (the role) and 3 (the reply), names and parts included (README)", () => {
    for (const encoding of ['o200k_base', 'cl100k_base'] as const) {
      const prompt = [{ role: 'system', content: SYSTEM }, ...NAMED, ...PARTED];
      expect(countPromptTokens(prompt, { encoding })).toBe(messagesTokens(prompt, encoding) + prompt.length + 3);
      const model = encoding === 'o200k_base' ? 'gpt-4o' : 'gpt-4';
      expect(countPromptTokens(prompt, { encoding })).toBe(estimateUsage(prompt, '', model).inputTokens);
    }
  });
});

describe('a refusal sent back as history', () => {
  // Regression: an assistant turn that refused (`content: null`, `refusal: "..."`) counted
  // only its framing, though the model reads the refusal as it reads any earlier answer.
  it('counts as input in the cap check, the budget and the estimate alike', () => {
    const refusal = "I'm sorry, but I can't help with cancelling someone else's order.";
    const withRefusal = [{ role: 'user', content: 'Cancel order 42.' }, { role: 'assistant', content: null, refusal }];
    const without = [{ role: 'user', content: 'Cancel order 42.' }, { role: 'assistant', content: null }];
    const extra = countTokens(refusal);
    expect(countPromptTokens(withRefusal) - countPromptTokens(without)).toBe(extra);
    expect(messagesTokens(withRefusal) - messagesTokens(without)).toBe(extra);
    expect(estimateUsage(withRefusal, '', 'gpt-4o-mini').inputTokens - estimateUsage(without, '', 'gpt-4o-mini').inputTokens).toBe(extra);
  });
});

describe('an estimate counts the tool definitions in the encoding of its messages', () => {
  /** promptgate_tokens_total of estimated input tokens for a request model. */
  async function estimatedInput(model: string): Promise<number> {
    return (await scrapeMetrics(gw.url)).sum('promptgate_tokens_total', { gen_ai_token_type: 'input', gen_ai_request_model: model, estimated: 'true' }) ?? 0;
  }

  async function settledInput(model: string): Promise<number> {
    const deadline = Date.now() + 5000;
    while ((await estimatedInput(model)) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return estimatedInput(model);
  }

  // An Azure deployment is named by its owner ("chat-prod"): only the answer's model tells
  // that it is gpt-35-turbo, counted in cl100k_base.
  const ANSWERING = 'gpt-35-turbo-0125';
  const expected = () => estimateUsage(QUESTION, '', ANSWERING).inputTokens + toolDefinitionTokens({ tools: TOOLS }, 'cl100k_base');

  it('the tools and the messages differ between the encodings (the test would not tell otherwise)', () => {
    expect(toolDefinitionTokens({ tools: TOOLS }, 'cl100k_base')).not.toBe(toolDefinitionTokens({ tools: TOOLS }, 'o200k_base'));
  });

  it("an answer without usage from a deployment named otherwise: the tools are counted in the answering model's encoding, as its messages are (was: the request model's)", async () => {
    const res = await chat({ model: 'chat-prod', messages: QUESTION, tools: TOOLS }, { 'x-mock-no-usage': '1', 'x-mock-model': ANSWERING });
    expect(res.status).toBe(200);
    expect(await settledInput('chat-prod')).toBe(expected());
  });

  it('the same for a stream without usage', async () => {
    const res = await chat({ model: 'chat-prod-stream', stream: true, messages: QUESTION, tools: TOOLS }, { 'x-mock-no-usage': '1', 'x-mock-model': ANSWERING });
    expect(res.status).toBe(200);
    expect(await settledInput('chat-prod-stream')).toBe(expected());
  });
});
