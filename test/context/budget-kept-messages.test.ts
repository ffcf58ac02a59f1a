/**
 * `constraints.max_input_tokens` and the template's swap: with `mode: replace` the client's
 * system message is not in the final prompt, so it takes nothing from the context budget
 * (it took it all: a client with a long system prompt got no context). With `prepend` it
 * stays, and counts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { ROOT } from './helpers.js';

const TEMPLATE = `id: kb-answer
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: 500}
    context: {use: [knowledge]}
    messages:
      - role: system
        content: "Answer from these articles:{{#knowledge}} [{{title}}] {{text}}{{/knowledge}}"
`;

/** The same, with a client variable rendered beside the context. */
const WITH_NOTES = `id: kb-notes
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: 500}
    variables:
      notes: {type: string, default: ""}
    context: {use: [knowledge]}
    messages:
      - role: system
        content: "Customer notes: {{notes}}. Answer from these articles:{{#knowledge}} [{{title}}] {{text}}{{/knowledge}}"
`;

let upstream: MockUpstream;
let gw: TestGateway | undefined;
const dir = mkdtempSync(path.join(tmpdir(), 'pg-budget-'));
const templateFile = path.join(dir, 'kb-answer.yaml');
const notesFile = path.join(dir, 'kb-notes.yaml');

beforeAll(async () => {
  writeFileSync(templateFile, TEMPLATE);
  writeFileSync(notesFile, WITH_NOTES);
  upstream = await startMockUpstream();
});
afterAll(() => upstream.close());
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  upstream.requests.length = 0;
});

const config = (mode: string) => `
bindings: [{model: kb-bot, template: kb-answer, mode: ${mode}}]
context:
  builders:
    - {name: knowledge, kind: knowledge, dir: ${ROOT}/config/knowledge, top_k: 2}
`;

/** `rules` rules of about 7 tokens: 90 are 633 tokens, past the 500 the version allows; 66 are 465, leaving the context 2. */
const longSystem = (rules: number) => Array.from({ length: rules }, (_, i) => `Rule ${i}: be kind.`).join(' ');

async function send(rules: number) {
  return request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'kb-bot', messages: [{ role: 'system', content: longSystem(rules) }, { role: 'user', content: 'How long does a refund take?' }] }),
  });
}

async function systemPromptSent(rules = 90): Promise<string> {
  const res = await send(rules);
  expect(res.statusCode).toBe(200);
  await res.body.text();
  const sent = upstream.requests.at(-1)!.body as { messages: { role: string; content: string }[] };
  return sent.messages[0].content;
}

describe('the context budget under max_input_tokens', () => {
  it('mode replace: the client system message the template replaces takes no budget (was: no context at all)', async () => {
    gw = await startTestGateway(mockConfig(upstream.url, config('replace')), { templates: [templateFile] });
    const system = await systemPromptSent();
    expect(system).toMatch(/^Answer from these articles: \[.+\] /);
  });

  it('mode prepend: the client system message stays in the prompt, so it counts (no room for passages; past the cap, refused)', async () => {
    gw = await startTestGateway(mockConfig(upstream.url, config('prepend')), { templates: [templateFile] });
    expect(await systemPromptSent(66)).toBe('Answer from these articles:');
    const over = await send(90);
    expect(over.statusCode).toBe(400);
    expect(((await over.body.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
  });
});

describe("the client's template variables under max_input_tokens", () => {
  // Regression: the budget took the template's own text off the cap, not the values the
  // client renders into it: the context filled the room a long variable needed, and the
  // request was refused 400 context_length_exceeded although it fit without the context.
  it('take room from the context budget, so a request that fits without context is served', async () => {
    gw = await startTestGateway(mockConfig(upstream.url, config('replace').replace('kb-bot, template: kb-answer', 'kb-bot, template: kb-notes')), { templates: [notesFile] });
    const notes = longSystem(60); // about 420 tokens
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'kb-bot', prompt_variables: { notes }, messages: [{ role: 'user', content: 'How long does a refund take?' }] }),
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const sent = upstream.requests.at(-1)!.body as { messages: { role: string; content: string }[] };
    expect(sent.messages[0].content).toContain(notes);
  });

  it('a variable nested too deeply to count is still answered 400 invalid_variable, not a 500', async () => {
    gw = await startTestGateway(mockConfig(upstream.url, config('replace').replace('kb-bot, template: kb-answer', 'kb-bot, template: kb-notes')), { templates: [notesFile] });
    const deep = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000);
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"model":"kb-bot","prompt_variables":{"notes":${deep}},"messages":[{"role":"user","content":"hi"}]}`,
    });
    const body = (await res.body.json()) as { error: { code: string } };
    expect([res.statusCode, body.error.code]).toEqual([400, 'invalid_variable']);
  });
});
