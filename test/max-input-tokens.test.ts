/**
 * `constraints.max_input_tokens`: a prompt over a version's cap is refused with OpenAI's
 * `context_length_exceeded` before anything goes upstream; one under it goes out as is.
 * A real gateway on 127.0.0.1 port 0 with a recording mock upstream and the official
 * `openai` client; servers are closed by this file.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messagesTokens } from '../src/context/tokens.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';

const CAPPED = `id: capped
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: 60}
    messages:
      - {role: system, content: "You answer questions about orders, briefly."}
`;

let upstream: MockUpstream;
let gw: TestGateway;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startMockUpstream();
  gw = await startTestGateway(mockConfig(upstream.url, 'bindings:\n  - {model: order-bot, template: capped@1.0.0}\n'), { templateFiles: { 'capped.yaml': CAPPED } });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

describe('constraints.max_input_tokens', () => {
  it('sends a prompt under the cap as it is', async () => {
    const before = upstream.requests.length;
    const answer = await client.chat.completions.create({ model: 'order-bot', messages: [{ role: 'user', content: 'Where is order 42?' }] });
    expect(answer.choices[0].message.content).toBeTypeOf('string');
    expect(upstream.requests.length).toBe(before + 1);
  });

  it('refuses a prompt over the cap with 400 context_length_exceeded, and nothing goes upstream', async () => {
    const before = upstream.requests.length;
    const long = 'My parcel has not arrived and I would like to know what happened to it. '.repeat(6);
    const messages = [
      { role: 'system', content: 'You answer questions about orders, briefly.' },
      { role: 'user', content: long },
    ];
    const tokens = messagesTokens(messages);
    expect(tokens).toBeGreaterThan(60);
    const err = await client.chat.completions.create({ model: 'order-bot', messages: [{ role: 'user', content: long }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.code).toBe('context_length_exceeded');
    expect(e.param).toBe('messages');
    expect(e.message).toContain(`${tokens} tokens`);
    expect(e.message).toContain('max_input_tokens of 60');
    expect(upstream.requests.length).toBe(before);
    // Counted in /metrics as a 4xx of the template, like any other refused request.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/promptgate_requests_total\{[^}]*status_class="4xx"[^}]*error_type="context_length_exceeded"[^}]*template="capped"[^}]*\} 1/);
  });

  it('counts array content by its text parts, and a client outside the template is not capped', async () => {
    const long = 'Please check the delivery status of my order and tell me when it will arrive. '.repeat(6);
    const parts = await client.chat.completions
      .create({ model: 'order-bot', messages: [{ role: 'user', content: [{ type: 'text', text: long }] }] })
      .catch((e: unknown) => e);
    expect((parts as { code?: string }).code).toBe('context_length_exceeded');
    const free = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: long }] });
    expect(free.choices).toHaveLength(1);
  });
});
