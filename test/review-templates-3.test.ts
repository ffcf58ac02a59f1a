/**
 * Regressions from a review of what the model actually receives: templates rendered through
 * a real gateway, compared with the body a recording upstream got. Each test is named after
 * what broke (or, for the lock-ins, what the README promises). Servers listen on 127.0.0.1
 * port 0 and are closed by this file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';

const RENDER = `id: render
versions:
  - version: "1.9.0"
    model: template-model
    params:
      temperature: 0.3
      n: 2
      response_format: {type: json_object}
      tools: [{type: function, function: {name: from_template}}]
    variables:
      s:    {type: string}
      num:  {type: number}
      flag: {type: boolean}
      obj:  {type: object}
      arr:  {type: array}
      req:  {type: string, required: true}
    messages:
      - role: system
        content: |-
          s=[{{s}}] t=[{{{s}}}] a=[{{&s}}] req=[{{req}}]
          num=[{{num}}] flag=[{{flag}}] obj=[{{obj}}] arr=[{{arr}}] deep=[{{obj.a.b}}]
          {{#arr}}
          - {{.}}
          {{/arr}}
          {{^arr}}no items{{/arr}}
          {{#num}}num-on{{/num}}{{^num}}num-off{{/num}} {{#flag}}flag-on{{/flag}}{{^flag}}flag-off{{/flag}} {{#s}}s-on{{/s}}{{^s}}s-off{{/s}} {{#obj}}obj-on{{/obj}}{{^obj}}obj-off{{/obj}}
  - version: "1.10.0"
    variables:
      req: {type: string, required: true}
    messages:
      - role: system
        content: "v1.10.0 {{req}}"
  - version: "2.0.0-rc.1"
    messages:
      - role: system
        content: "v2 pre-release"
`;

/** Sections over two client lists: the output is their product. */
const AMPLIFY = `id: amplify
versions:
  - version: "1.0.0"
    variables:
      a: {type: array}
      b: {type: array}
      note: {type: string}
    messages:
      - role: system
        content: "{{note}}{{#a}}{{#b}}item {{.}}, {{/b}}{{/a}}"
`;

let upstream: MockUpstream;
let gw: TestGateway;
let dir: string;

beforeAll(async () => {
  upstream = await startMockUpstream();
  dir = mkdtempSync(path.join(tmpdir(), 'promptgate-review-templates-'));
  writeFileSync(path.join(dir, 'render.yaml'), RENDER);
  writeFileSync(path.join(dir, 'amplify.yaml'), AMPLIFY);
  gw = await startTestGateway(mockConfig(upstream.url), { templates: [path.join(dir, 'render.yaml'), path.join(dir, 'amplify.yaml')] });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Sends a chat request; returns the status, the client's answer and the body the upstream got. */
async function send(body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const before = upstream.requests.length;
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
  const text = await res.body.text();
  const received = upstream.requests.length > before ? upstream.requests[upstream.requests.length - 1].body : undefined;
  return { status: res.statusCode, text, received, version: res.headers['x-promptgate-template-version'] };
}

describe('number variables from x-promptgate-var-* headers', () => {
  it('a hex or binary literal is invalid_variable, not rendered as another number ("0x10" reached the prompt as 16)', async () => {
    for (const raw of ['0x10', '0b11', '0o7', 'Infinity']) {
      const r = await send({ prompt_id: 'render@1.9.0' }, { 'x-promptgate-var-req': 'r', 'x-promptgate-var-num': raw });
      expect(r.status, raw).toBe(400);
      expect(JSON.parse(r.text).error).toMatchObject({ code: 'invalid_variable', param: 'prompt_variables.num' });
      expect(r.received, raw).toBeUndefined();
    }
  });

  it('decimal notation still converts (42, -1.5, +3, .5, 1e3)', async () => {
    for (const [raw, shown] of [['42', '42'], ['-1.5', '-1.5'], ['+3', '3'], ['.5', '0.5'], [' 1e3 ', '1000']]) {
      const r = await send({ prompt_id: 'render@1.9.0' }, { 'x-promptgate-var-req': 'r', 'x-promptgate-var-num': raw });
      expect(r.status, raw).toBe(200);
      expect(r.received.messages[0].content, raw).toContain(`num=[${shown}]`);
    }
  });
});

describe('rendered prompt size', () => {
  it('sections nested over two 20k-item lists (an 80 KB body) answer 400 at once instead of 30 s of blocked event loop, gigabytes and a RangeError', async () => {
    const list = Array(20_000).fill(0);
    const started = Date.now();
    const r = await send({ prompt_id: 'amplify', prompt_variables: { a: list, b: list } });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error).toMatchObject({ code: 'invalid_variable', param: 'prompt_variables' });
    expect(JSON.parse(r.text).error.message).toContain('over 16777216 characters');
    expect(r.received).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(5_000);
    // The gateway is still serving.
    expect((await send({ prompt_id: 'amplify', prompt_variables: { a: [1, 2], b: ['x'] } })).received.messages[0].content).toBe('item x, item x, ');
  });

  it('a large value within the limit (3 MB) still reaches the upstream whole', async () => {
    const note = 'é🎉'.repeat(100_000) + 'a'.repeat(2_500_000);
    const r = await send({ prompt_id: 'amplify', prompt_variables: { note } });
    expect(r.status).toBe(200);
    expect(r.received.messages[0].content).toBe(note);
  });
});

describe('what the upstream receives (README "Rendering" and "Choosing the template")', () => {
  it('values go in as they are: no HTML escaping, JSON for objects, no second rendering of {{...}} in a value', async () => {
    const s = 'AT&T <b>"x"</b> {{req}} {{{req}}} 🎉 שלום e\u0301 \u0000';
    const r = await send({
      prompt_id: 'render@1.9.0',
      prompt_variables: { s, req: 'R', num: 0, flag: false, obj: { a: { b: '<deep>' } }, arr: [1, { k: 'v' }] },
    });
    expect(r.status).toBe(200);
    expect(r.received.messages[0]).toEqual({
      role: 'system',
      content: [
        `s=[${s}] t=[${s}] a=[${s}] req=[R]`,
        'num=[0] flag=[false] obj=[{"a":{"b":"<deep>"}}] arr=[[1,{"k":"v"}]] deep=[<deep>]',
        '- 1',
        '- {"k":"v"}',
        '', // the {{^arr}}no items{{/arr}} line: not standalone (it has text), so its newline stays (Mustache spec)
        'num-off flag-off s-on obj-on',
      ].join('\n'),
    });
  });

  it('sections skip 0, false, "" and [] (inverted ones show); an empty object counts as set', async () => {
    const r = await send({ prompt_id: 'render@1.9.0', prompt_variables: { s: '', req: 'R', num: 0, flag: false, obj: {}, arr: [] } });
    expect(r.status).toBe(200);
    expect(r.received.messages[0].content.split('\n').slice(2)).toEqual(['no items', 'num-off flag-off s-off obj-on']);
  });

  it('the client keeps its own params, response_format, tools, n and stream_options; the version model wins; the client system prompt is replaced', async () => {
    const tools = [{ type: 'function', function: { name: 'client_tool', parameters: { type: 'object' } } }];
    const r = await send({
      prompt_id: 'render@1.9.0',
      prompt_variables: { req: 'R' },
      temperature: 1.1,
      n: 1,
      response_format: { type: 'text' },
      tools,
      stream_options: { include_usage: true },
      messages: [
        { role: 'system', content: 'client system' },
        { role: 'user', content: 'hi' },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.received).toMatchObject({ model: 'template-model', temperature: 1.1, n: 1, response_format: { type: 'text' }, tools, stream_options: { include_usage: true } });
    expect(r.received.messages.map((m: { role: string }) => m.role)).toEqual(['system', 'user']);
    expect(r.received).not.toHaveProperty('prompt_variables');
    // Without the client's values, the version's params fill in.
    const filled = await send({ prompt_id: 'render@1.9.0', prompt_variables: { req: 'R' } });
    expect(filled.received).toMatchObject({ temperature: 0.3, n: 2, response_format: { type: 'json_object' }, tools: [{ type: 'function', function: { name: 'from_template' } }] });
  });

  it('a plain id serves the highest release by semver (1.10.0 over 1.9.0, not the 2.0.0-rc.1 pre-release); exact versions and pre-releases resolve', async () => {
    const plain = await send({ prompt_id: 'render', prompt_variables: { req: 'x' } });
    expect(plain.version).toBe('1.10.0');
    expect(plain.received.messages[0].content).toBe('v1.10.0 x');
    expect((await send({ prompt_id: 'render@2.0.0-rc.1' })).received.messages[0].content).toBe('v2 pre-release');
    expect((await send({}, { 'x-promptgate-template': 'render@1.9.0', 'x-promptgate-var-req': 'x' })).version).toBe('1.9.0');
    expect((await send({ prompt_id: 'render@1.9' })).status).toBe(404);
  });
});
