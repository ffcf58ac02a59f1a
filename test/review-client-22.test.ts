/**
 * Review: what a client sees that differs from calling the upstream directly.
 *
 * - `routing.models` routed chat completions only: an embeddings or Responses request for a
 *   model routed elsewhere went to `routing.default` (and got its `model_not_found`).
 * - A CORS preflight (`OPTIONS`) on `/v1/chat/completions` was a 405, while every other
 *   `/v1` route relays it: a browser client failed on chat only.
 * - A `stream_options` that is no object (`"x"`, `[]`, `5`) was rewritten into one with
 *   `include_usage: true`: the upstream never saw the client's mistake (OpenAI answers 400).
 * - A gateway whose upstream points back at itself (the app's `OPENAI_BASE_URL` in the
 *   gateway's environment) sent each request to itself until the pool was full, and hung:
 *   now the request that comes back is refused with 508 `loop_detected`.
 */
import { createServer } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../src/server.js';
import { MOCK_API_KEY, mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let main: MockUpstream;
let other: MockUpstream;
beforeAll(async () => {
  main = await startMockUpstream();
  other = await startMockUpstream();
});
afterAll(async () => {
  await main.close();
  await other.close();
});

const post = async (gw: TestGateway, route: string, body: unknown, headers: Record<string, string> = {}) => {
  const res = await request(`${gw.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
};

describe('routing.models on pass-through routes', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    const second = `  - name: other\n    base_url: ${other.url}\n    api_key: ${MOCK_API_KEY}-other\n`;
    gw = await startTestGateway(mockConfig(main.url, '', second).replace('routing: {default: [mock]}', 'routing: {default: [mock], models: {routed-model: [other]}}'));
  });
  afterAll(() => gw?.close());

  it('sends an embeddings, Responses or legacy completions request for a routed model to its route', async () => {
    for (const [route, body] of [
      ['/v1/embeddings', { model: 'routed-model', input: 'x' }],
      ['/v1/responses', { model: 'routed-model', input: 'x' }],
      ['/v1/completions', { model: 'routed-model', prompt: 'x' }],
    ] as const) {
      const before = { main: main.requests.length, other: other.requests.length };
      const res = await post(gw, route, body);
      expect([route, res.status]).toEqual([route, 200]);
      expect([route, other.requests.length - before.other, main.requests.length - before.main]).toEqual([route, 1, 0]);
      expect(other.requests.at(-1)!.headers.authorization).toBe(`Bearer ${MOCK_API_KEY}-other`);
    }
    // Another model stays on the default route.
    const before = main.requests.length;
    expect((await post(gw, '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' })).status).toBe(200);
    expect(main.requests.length - before).toBe(1);
  });

  // Follow-up calls name no model in a body: they went to routing.default, so a stored
  // response made on a routed model could not be retrieved, cancelled or deleted.
  it("sends the follow-up calls of a routed model's stored response, and its model's entry, to that route", async () => {
    const created = await post(gw, '/v1/responses', { model: 'routed-model', input: 'x' });
    expect(JSON.parse(created.text).id).toBe('resp_mock1');
    for (const [method, route] of [
      ['GET', '/v1/responses/resp_mock1'],
      ['GET', '/v1/responses/resp_mock1/input_items?limit=5'],
      ['POST', '/v1/responses/resp_mock1/cancel'],
      ['DELETE', '/v1/responses/resp_mock1'],
      ['GET', '/v1/models/routed-model'],
    ] as const) {
      const before = { main: main.requests.length, other: other.requests.length };
      const res = await request(`${gw.url}${route}`, { method });
      await res.body.dump();
      expect([route, other.requests.length - before.other, main.requests.length - before.main]).toEqual([route, 1, 0]);
    }
    // An id no routed model made stays on the default route.
    const before = main.requests.length;
    await (await request(`${gw.url}/v1/responses/resp_other`)).body.dump();
    expect(main.requests.length - before).toBe(1);
  });
});

describe('a CORS preflight on the chat path', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(mockConfig(main.url));
  });
  afterAll(() => gw.close());

  it('is relayed to the upstream as on every other /v1 route, not a 405', async () => {
    const before = main.requests.length;
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    await res.body.dump();
    expect(res.statusCode).not.toBe(405);
    expect(main.requests.length - before).toBe(1);
    expect(main.requests.at(-1)).toMatchObject({ method: 'OPTIONS', url: '/v1/chat/completions' });
    // Other methods are still refused, and the Allow header names OPTIONS too.
    const put = await request(`${gw.url}/v1/chat/completions`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' });
    await put.body.dump();
    expect(put.statusCode).toBe(405);
    expect(put.headers.allow).toBe('GET, HEAD, OPTIONS, POST');
  });
});

describe('a stream_options that is not an object', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(mockConfig(main.url));
  });
  afterAll(() => gw.close());

  it('reaches the upstream as the client sent it, for the upstream to refuse', async () => {
    for (const value of ['x', [], 5, { include_usage: 'yes' }, { include_usage: 1 }]) {
      const before = main.requests.length;
      await post(gw, '/v1/chat/completions', { model: 'gpt-4o-mini', stream: true, stream_options: value, messages: [{ role: 'user', content: 'hi' }] });
      expect(main.requests.length - before).toBe(1);
      expect([value, main.requests.at(-1)!.body.stream_options]).toEqual([value, value]);
    }
    // A valid one without include_usage still gets it (the gateway strips the usage chunk again).
    for (const value of [{}, null, { include_usage: false }]) {
      await post(gw, '/v1/chat/completions', { model: 'gpt-4o-mini', stream: true, stream_options: value, messages: [{ role: 'user', content: 'hi' }] });
      expect([value, main.requests.at(-1)!.body.stream_options]).toEqual([value, { include_usage: true }]);
    }
  });
});

/** A port free right now on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('an upstream that points back at the gateway', () => {
  it('is refused with 508 loop_detected at once, instead of filling the pool and hanging', async () => {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-loop-'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, mockConfig(`http://127.0.0.1:${port}/v1`).replace('templates: {dir: templates}\n', ''));
    const gw = await startGateway({ file, port, handleSignals: false });
    try {
      const started = performance.now();
      for (const route of ['/v1/chat/completions', '/v1/embeddings']) {
        const res = await request(`http://127.0.0.1:${port}${route}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', input: 'x', messages: [{ role: 'user', content: 'hi' }] }),
        });
        const body = (await res.body.json()) as { error: { code: string; message: string } };
        expect([route, res.statusCode, body.error.code]).toEqual([route, 508, 'loop_detected']);
        expect(body.error.message).toMatch(/back to this gateway/);
      }
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      await gw.shutdown('test');
    }
  });

  it('lets one promptgate in front of another through', async () => {
    const inner = await startTestGateway(mockConfig(main.url));
    const outer = await startTestGateway(mockConfig(`${inner.url}/v1`));
    try {
      const res = await post(outer, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      expect(res.status).toBe(200);
      expect(String(main.requests.at(-1)!.headers.via)).toMatch(/^1\.1 promptgate-[0-9a-f]{8}, 1\.1 promptgate-[0-9a-f]{8}$/);
    } finally {
      await outer.close();
      await inner.close();
    }
  });
});

describe('a top-level "__proto__" field', () => {
  // Copying the body field by field assigned `out.__proto__ = {...}`, which set the copy's
  // prototype: the field was dropped, and its members read as the client's own (a
  // `max_tokens` there switched off the template's params and its max_output_tokens cap).
  it("is the client's field like any other: the template's params and output cap still apply", async () => {
    const template = `id: capped
versions:
  - version: "1.0.0"
    params: {temperature: 0.3, max_tokens: 512}
    constraints: {max_output_tokens: 1024}
    messages:
      - {role: system, content: "Be brief."}
`;
    const gw = await startTestGateway(mockConfig(main.url, 'bindings: [{model: capped-bot, template: capped}]'), { templateFiles: { 'capped.yaml': template } });
    try {
      for (const stream of [false, true]) {
        const raw = `{"model":"capped-bot","stream":${stream},"messages":[{"role":"user","content":"hi"}],"__proto__":{"max_tokens":1,"temperature":1}}`;
        const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
        await res.body.dump();
        expect(res.statusCode).toBe(200);
        const sent = JSON.parse(main.requests.at(-1)!.raw);
        expect([stream, sent.max_tokens, sent.temperature]).toEqual([stream, 512, 0.3]);
        expect(Object.hasOwn(sent, '__proto__')).toBe(true);
        expect(sent['__proto__']).toEqual({ max_tokens: 1, temperature: 1 });
      }
    } finally {
      await gw.close();
    }
  });
});

describe('a compressed chat request body', () => {
  // Read as the JSON itself, it was a 400 "not valid UTF-8": the client was told its JSON
  // was broken. RFC 9110 §15.5.16: an unsupported content coding is a 415, with
  // accept-encoding saying what would do.
  it('is a 415 naming the content coding, with accept-encoding: identity', async () => {
    const { gzipSync } = await import('node:zlib');
    const gw = await startTestGateway(mockConfig(main.url));
    try {
      const before = main.requests.length;
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: gzipSync(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })),
      });
      const body = (await res.body.json()) as { error: { code: string; message: string } };
      expect(res.statusCode).toBe(415);
      expect(res.headers['accept-encoding']).toBe('identity');
      expect(body.error.code).toBe('unsupported_media_type');
      expect(body.error.message).toMatch(/gzip/);
      expect(main.requests.length).toBe(before);
      // identity is no coding
      const plain = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'identity' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      await plain.body.dump();
      expect(plain.statusCode).toBe(200);
    } finally {
      await gw.close();
    }
  });
});
