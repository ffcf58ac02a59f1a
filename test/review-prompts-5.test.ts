/**
 * Regressions from a review of how a template version's messages, model and params are
 * combined with the client's request: a real gateway on 127.0.0.1 port 0, a recording mock
 * upstream (and the built-in simulator, which answers 400 where OpenAI does), the official
 * `openai` client where it helps. Each test is named after what broke or what the README
 * promises. Servers are closed by this file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileTemplate } from '../src/prompts/compile-template.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';

/** Tool settings a template gives clients that use tools; many of its clients send none. */
const TOOLING = `id: tooling
versions:
  - version: "1.0.0"
    params:
      tool_choice: required
      parallel_tool_calls: false
      top_logprobs: 3
    messages:
      - {role: system, content: "Use the tools you are given."}
  - version: "2.0.0"
    params:
      tools: [{type: function, function: {name: lookup_order, parameters: {type: object, properties: {}}}}]
      tool_choice: {type: function, function: {name: lookup_order}}
    messages:
      - {role: system, content: "Look the order up."}
`;

/** Two rendered messages and a variable, for the message-order checks. */
const ORDER = `id: order
versions:
  - version: "1.0.0"
    variables:
      customer: {type: object, default: {name: Ada}}
    messages:
      - {role: developer, content: "Template rules for {{customer.name}}."}
      - {role: user, content: "Example question"}
`;

const TOOL = { type: 'function', function: { name: 'client_tool', parameters: { type: 'object', properties: {} } } };

let upstream: MockUpstream;
let gw: TestGateway;
let sim: TestGateway;
let dir: string;

beforeAll(async () => {
  upstream = await startMockUpstream();
  dir = mkdtempSync(path.join(tmpdir(), 'promptgate-review-prompts-5-'));
  writeFileSync(path.join(dir, 'tooling.yaml'), TOOLING);
  writeFileSync(path.join(dir, 'order.yaml'), ORDER);
  const templates = [path.join(dir, 'tooling.yaml'), path.join(dir, 'order.yaml')];
  const bindings = `bindings:
  - {model: replace-bot, template: order@1.0.0, mode: replace}
  - {model: prepend-bot, template: order@1.0.0, mode: prepend}
`;
  gw = await startTestGateway(mockConfig(upstream.url, bindings), { templates });
  sim = await startTestGateway(
    `server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams: [{name: sim, simulate: {latency_ms: 0, chunks: 2}}]
routing: {default: [sim]}
`,
    { templates },
  );
});

afterAll(async () => {
  await gw?.close();
  await sim?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Sends a chat request to the mock gateway; returns the status, the answer and the body the upstream got. */
async function send(body: Record<string, unknown>) {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
  const text = await res.body.text();
  const received = upstream.requests.length > before ? upstream.requests[upstream.requests.length - 1].body : undefined;
  return { status: res.statusCode, text, received };
}

describe('version params that depend on another request field', () => {
  it('tool_choice, parallel_tool_calls and top_logprobs are not added to a request without tools / logprobs (OpenAI answered 400 for fields the client never sent)', async () => {
    const r = await send({ prompt_id: 'tooling@1.0.0' });
    expect(r.status).toBe(200);
    expect(r.received).not.toHaveProperty('tool_choice');
    expect(r.received).not.toHaveProperty('parallel_tool_calls');
    expect(r.received).not.toHaveProperty('top_logprobs');
    // tools: [] is no tools either.
    const empty = await send({ prompt_id: 'tooling@1.0.0', tools: [], logprobs: false });
    expect(empty.received).not.toHaveProperty('tool_choice');
    expect(empty.received).not.toHaveProperty('parallel_tool_calls');
    expect(empty.received).not.toHaveProperty('top_logprobs');
    // A client null (not set) stays the client's null.
    const nulls = await send({ prompt_id: 'tooling@1.0.0', tool_choice: null, top_logprobs: null });
    expect(nulls.received).toMatchObject({ tool_choice: null, top_logprobs: null });
    expect(nulls.received).not.toHaveProperty('parallel_tool_calls');
  });

  it('a client that sends tools and logprobs still gets the version values; its own values are never removed', async () => {
    const r = await send({ prompt_id: 'tooling@1.0.0', tools: [TOOL], logprobs: true });
    expect(r.received).toMatchObject({ tools: [TOOL], tool_choice: 'required', parallel_tool_calls: false, logprobs: true, top_logprobs: 3 });
    // The client's own fields, even ones the upstream will refuse, are the client's business.
    const own = await send({ prompt_id: 'tooling@1.0.0', tool_choice: 'auto', parallel_tool_calls: true, top_logprobs: 1 });
    expect(own.received).toMatchObject({ tool_choice: 'auto', parallel_tool_calls: true, top_logprobs: 1 });
  });

  it("a named tool_choice from the version is not added when the client's own tools replace the version's (it named a function the request lacks)", async () => {
    const withOwnTools = await send({ prompt_id: 'tooling@2.0.0', tools: [TOOL] });
    expect(withOwnTools.received.tools).toEqual([TOOL]);
    expect(withOwnTools.received).not.toHaveProperty('tool_choice');
    // Without tools of its own the client gets the version's tools and their tool_choice.
    const filled = await send({ prompt_id: 'tooling@2.0.0' });
    expect(filled.received.tools[0].function.name).toBe('lookup_order');
    expect(filled.received.tool_choice).toEqual({ type: 'function', function: { name: 'lookup_order' } });
  });

  it('the official openai client gets an answer, not a 400, from an upstream that checks these fields (the simulator, like OpenAI)', async () => {
    const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
    const plain = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], prompt_id: 'tooling@1.0.0' } as never);
    expect(plain.choices[0].message.content).toBeTruthy();
    const ownTools = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [TOOL as never],
      prompt_id: 'tooling@2.0.0',
    } as never);
    expect(ownTools.choices[0]).toBeDefined();
  });
});

describe('max_tokens and max_completion_tokens in one version', () => {
  const version = (params: Record<string, unknown>) => compileTemplate({ id: 't', versions: [{ version: '1.0.0', params, messages: [{ role: 'system', content: 'x' }] }] });

  it('both set (directly or through extra_body) is a load error naming the field, not a request every client gets 400 for', () => {
    const both = version({ max_tokens: 100, max_completion_tokens: 200 });
    expect(both.template).toBeUndefined();
    expect(both.problems).toEqual([
      { segments: ['versions', 0, 'params', 'max_completion_tokens'], message: expect.stringContaining('set max_tokens or max_completion_tokens, not both (also params.max_tokens)') },
    ]);
    const extra = version({ max_tokens: 100, extra_body: { max_completion_tokens: 200 } });
    expect(extra.problems.map((p) => p.segments)).toEqual([['versions', 0, 'params', 'extra_body', 'max_completion_tokens']]);
    // One of them is fine.
    expect(version({ max_completion_tokens: 200 }).problems).toEqual([]);
    expect(version({ max_tokens: 100, extra_body: { max_tokens: 100 } }).problems).toEqual([]);
  });
});

describe('messages: what is kept and in which order (README "The rendered request")', () => {
  const conversation = [
    { role: 'system', content: 'client system 1' },
    { role: 'developer', content: [{ type: 'text', text: 'client developer' }] },
    { role: 'user', content: [{ type: 'text', text: 'q1' }], name: 'ada' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"ok":true}' },
    { role: 'system', content: 'client system in the middle' },
    { role: 'user', content: 'q2' },
  ];
  const rendered = [
    { role: 'developer', content: 'Template rules for Grace.' },
    { role: 'user', content: 'Example question' },
  ];

  it('replace drops every client system and developer message, wherever it stands; other turns keep their fields and order', async () => {
    const r = await send({ model: 'replace-bot', messages: conversation, prompt_variables: { customer: { name: 'Grace' } } });
    expect(r.status).toBe(200);
    expect(r.received.messages).toEqual([...rendered, ...conversation.filter((m) => m.role !== 'system' && m.role !== 'developer')]);
  });

  it('prepend keeps every client message as sent, after the rendered ones', async () => {
    const r = await send({ model: 'prepend-bot', messages: conversation, prompt_variables: { customer: { name: 'Grace' } } });
    expect(r.status).toBe(200);
    expect(r.received.messages).toEqual([...rendered, ...conversation]);
  });
});
