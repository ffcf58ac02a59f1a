/** Unit tests through `app.request()`: no sockets. */
import { describe, expect, it, vi } from 'vitest';
import { createApp } from '../src/app.js';
import { parseConfig } from '../src/config/load.js';
import { AssignmentCounters } from '../src/experiments/counters.js';
import { RuntimeHolder } from '../src/runtime.js';
import type { RequestRecord } from '../src/telemetry/types.js';

function makeApp() {
  const config = parseConfig(
    `upstreams: [{name: sim, simulate: {latency_ms: 0, chunks: 3}}]
routing: {default: [sim]}
templates: {dir: templates-that-do-not-exist}
`,
    { file: '/tmp/app-test/gateway.config.yaml', env: {} },
  );
  const records: RequestRecord[] = [];
  const lifecycle = { draining: false };
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const app = createApp(new RuntimeHolder(config), { lifecycle, logger: silent, counters: new AssignmentCounters(), onRequestDone: (r) => records.push(r) });
  return { app, records, lifecycle };
}

const post = (body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) => ({
  method: 'POST',
  headers,
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

describe('app', () => {
  it('answers a chat completion from the simulator and records it', async () => {
    const { app, records } = makeApp();
    const res = await app.request('/v1/chat/completions', post({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.object).toBe('chat.completion');
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
    expect(records[0]).toMatchObject({ status: 200, outcome: 'ok', upstream: 'sim', requestModel: 'gpt-4o-mini' });
    expect(records[0].usage).toMatchObject({ inputTokens: body.usage.prompt_tokens, outputTokens: body.usage.completion_tokens, estimated: false });
  });

  it('streams from the simulator and records usage without showing the client the usage chunk', async () => {
    const { app, records } = makeApp();
    const res = await app.request('/v1/chat/completions', post({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hello' }] }));
    const text = await res.text();
    expect(text).not.toContain('usage');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(records[0].usage?.estimated).toBe(false);
    expect(records[0].finishReasons).toEqual(['stop']);
  });

  it('records an error with its code and renders the envelope with the request id', async () => {
    const { app, records } = makeApp();
    const res = await app.request('/v1/chat/completions', post('{nope'));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_json' },
    });
    expect(res.headers.get('x-request-id')).toBe(records[0].requestId);
    expect(records[0]).toMatchObject({ status: 400, outcome: 'error', errorType: 'invalid_json' });
  });

  it('answers 400, not 500, to a body nested too deeply to re-serialise (was: RangeError from JSON.stringify)', async () => {
    const { app, records } = makeApp();
    // stream: true with the client's own stream_options makes the gateway re-serialise the
    // body (to set include_usage; without stream_options it is spliced into the bytes); JSON.parse took the depth.
    const nested = '['.repeat(100_000) + ']'.repeat(100_000);
    const res = await app.request(
      '/v1/chat/completions',
      post(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_obfuscation":false},"messages":[{"role":"user","content":"hi"}],"metadata":${nested}}`),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error', message: 'The request body is nested too deeply.' });
    expect(records[0]).toMatchObject({ status: 400, errorType: 'invalid_request' });
  });

  it('quotes only the start of a very long unknown path (was: the whole path echoed back)', async () => {
    const { app } = makeApp();
    const res = await app.request(`/${'b'.repeat(8000)}`);
    expect(res.status).toBe(404);
    const { message } = ((await res.json()) as any).error;
    expect(message).toBe(`Unknown route: GET /${'b'.repeat(99)}...`);
  });

  it('keeps a well-formed incoming x-request-id', async () => {
    const { app, records } = makeApp();
    await app.request('/v1/chat/completions', post('{', { 'content-type': 'application/json', 'x-request-id': 'client-id-1' }));
    expect(records[0].requestId).toBe('client-id-1');
  });

  it('answers 405 for DELETE on chat completions and 404 elsewhere', async () => {
    const { app } = makeApp();
    expect((await app.request('/v1/chat/completions', { method: 'DELETE' })).status).toBe(405);
    const res = await app.request('/v2/x');
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).error.type).toBe('not_found_error');
  });

  it('names the allowed method on a 405 (RFC 9110 §15.5.6: Allow is required)', async () => {
    const { app } = makeApp();
    const res = await app.request('/v1/chat/completions', { method: 'PUT' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS, POST');
    expect(((await res.json()) as any).error.code).toBe('method_not_allowed');
  });

  it('fails readiness and refuses new /v1 requests while draining', async () => {
    const { app, lifecycle } = makeApp();
    expect((await app.request('/readyz')).status).toBe(200);
    lifecycle.draining = true;
    expect((await app.request('/readyz')).status).toBe(503);
    expect((await app.request('/healthz')).status).toBe(200);
    const res = await app.request('/v1/models');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
  });
});

describe('app served on a real socket', () => {
  it('keeps serving when the accounting throws after the answer was written', async () => {
    const { serve } = await import('@hono/node-server');
    const config = parseConfig(`upstreams: [{name: sim, simulate: {latency_ms: 0, chunks: 3}}]\nrouting: {default: [sim]}\ntemplates: {dir: templates-that-do-not-exist}\n`, {
      file: '/tmp/app-test/gateway.config.yaml',
      env: {},
    });
    const errors: Array<Record<string, unknown> | undefined> = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (_m: string, f?: Record<string, unknown>) => void errors.push(f) };
    let calls = 0;
    const onRequestDone = () => {
      calls++;
      throw new TypeError('accounting bug');
    };
    const app = createApp(new RuntimeHolder(config), { lifecycle: { draining: false }, logger, counters: new AssignmentCounters(), onRequestDone });
    const server = await new Promise<import('node:http').Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as import('node:http').Server));
    });
    // Without the boundary's headersSent check, @hono/node-server logs "Cannot write headers after they are sent".
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}/v1/chat/completions`;
      for (let i = 0; i < 2; i++) {
        const res = await fetch(url, post({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }));
        expect(res.status).toBe(200);
        expect(((await res.json()) as { object: string }).object).toBe('chat.completion');
      }
      expect(calls).toBe(2);
      expect(errors).toEqual([expect.objectContaining({ error: 'TypeError' }), expect.objectContaining({ error: 'TypeError' })]);
      expect(consoleError).not.toHaveBeenCalled();
    } finally {
      consoleError.mockRestore();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
