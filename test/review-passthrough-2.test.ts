/**
 * Second review of the pass-through routes (every `/v1/*` but chat completions), black box:
 * the gateway on a real socket in front of an upstream on 127.0.0.1 that records what it
 * receives. Named after what broke; HEAD is checked against GET on the same routes.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';

const API_KEY = 'sk-config-key-review-2';
const MODELS = { object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1, owned_by: 'openai' }] };

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

let server: Server;
let upstreamUrl: string;
const received: Received[] = [];
let gw: TestGateway;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
      const path = new URL(req.url!, 'http://upstream').pathname.replace(/^\/v1/, '');
      res.setHeader('x-request-id', 'req_up_2');
      if (req.method === 'HEAD' && req.headers['x-no-head'] === '1') {
        res.statusCode = 405; // as an upstream that serves GET only
        res.end();
        return;
      }
      if (path === '/models' && req.headers['x-cut'] === '1') {
        res.setHeader('content-type', 'application/json');
        res.setHeader('content-length', '1000');
        res.write('{"object":"list","data":[', () => res.socket?.destroy());
        return;
      }
      if (path === '/models') {
        const body = JSON.stringify(MODELS);
        res.setHeader('content-type', 'application/json');
        res.setHeader('content-length', String(Buffer.byteLength(body)));
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      if (path.startsWith('/models/')) {
        const id = decodeURIComponent(path.slice('/models/'.length));
        const known = MODELS.data.find((m) => m.id === id);
        const body = JSON.stringify(known ?? { error: { message: `The model '${id}' does not exist`, type: 'invalid_request_error', param: 'model', code: 'model_not_found' } });
        res.statusCode = known ? 200 : 404;
        res.setHeader('content-type', 'application/json');
        res.setHeader('content-length', String(Buffer.byteLength(body)));
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, url: req.url }));
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}/v1`;
  gw = await startTestGateway(
    `
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: up
    base_url: ${upstreamUrl}
    api_key: ${API_KEY}
    retry: {attempts: 1}
    breaker: {failures: 0}
routing: {default: [up]}
bindings:
  - {model: support-bot, template: support-reply@1.0.0}
`,
    { templates: ['config/templates/support-reply.yaml'] },
  );
});

afterAll(async () => {
  await gw?.close();
  await new Promise<void>((resolve) => server?.close(() => resolve()));
});

async function fetchBoth(path: string): Promise<{ get: { status: number; headers: Record<string, unknown>; body: string }; head: { status: number; headers: Record<string, unknown>; body: string } }> {
  const g = await request(`${gw.url}${path}`);
  const gBody = await g.body.text();
  const h = await request(`${gw.url}${path}`, { method: 'HEAD' });
  const hBody = await h.body.text();
  return { get: { status: g.statusCode, headers: g.headers, body: gBody }, head: { status: h.statusCode, headers: h.headers, body: hBody } };
}

describe('HEAD answers as GET would', () => {
  it('HEAD /v1/models/{alias} is 200 with the length of the GET body (it was the upstream 404)', async () => {
    const { get, head } = await fetchBoth('/v1/models/support-bot');
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body)).toEqual({ id: 'support-bot', object: 'model', created: 0, owned_by: 'promptgate' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-type']).toBe('application/json');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(get.body)));
  });

  it('HEAD /v1/models with binding aliases has the length of the GET list (it had the upstream list length)', async () => {
    const { get, head } = await fetchBoth('/v1/models');
    expect(JSON.parse(get.body).data.map((m: { id: string }) => m.id)).toEqual(['gpt-4o-mini', 'support-bot']);
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(get.body)));
  });

  it('HEAD of an alias or the list answers as GET from an upstream that does not serve HEAD (it relayed its 405)', async () => {
    for (const path of ['/v1/models/support-bot', '/v1/models']) {
      const get = await request(`${gw.url}${path}`, { headers: { 'x-no-head': '1' } });
      const body = await get.body.text();
      const head = await request(`${gw.url}${path}`, { method: 'HEAD', headers: { 'x-no-head': '1' } });
      await head.body.dump();
      expect([get.statusCode, head.statusCode]).toEqual([200, 200]);
      expect(head.headers['content-length']).toBe(String(Buffer.byteLength(body)));
      expect(received.at(-1)!.method).toBe('GET');
    }
  });

  it('HEAD of a model that is no alias keeps the upstream 404', async () => {
    const { get, head } = await fetchBoth('/v1/models/gpt-9');
    expect([get.status, head.status]).toEqual([404, 404]);
  });
});

describe('models with a client query', () => {
  it('a model list cut by the upstream is a 502 upstream_error envelope (it was a 500 internal_error)', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
    const err = (await client.models.list({ headers: { 'x-cut': '1' } }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(502);
    expect(err.error).toMatchObject({ type: 'server_error', code: 'upstream_error' });
  });

  it('GET /v1/models?api-version=... lists the binding aliases too (they were left out when the path had a query)', async () => {
    // AzureOpenAI (and any client with defaultQuery) sends a query on every request.
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0, defaultQuery: { 'api-version': '2024-10-21' } });
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(['gpt-4o-mini', 'support-bot']);
    expect(received.at(-1)!.url).toBe('/v1/models?api-version=2024-10-21');
    expect((await client.models.retrieve('support-bot')).id).toBe('support-bot');
  });
});

describe('routes', () => {
  it('a chat completions path with a trailing or doubled slash is a 404, not relayed past the chat pipeline (it went upstream as is)', async () => {
    const before = received.length;
    for (const path of ['/v1/chat/completions/', '/v1//chat/completions', '/v1/chat//completions?x=1']) {
      const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' });
      expect(res.statusCode).toBe(404);
      expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
    expect(received.length).toBe(before);
    // The stored completions API under /v1/chat/completions/{id} still passes through.
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
    await client.chat.completions.retrieve('chatcmpl-1');
    expect(received.at(-1)!.url).toBe('/v1/chat/completions/chatcmpl-1');
  });

  it('GET /v1/chat/completions (openai-node chat.completions.list(), stored completions) passes through (it was a 405)', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
    const { response } = await client.chat.completions.list({ limit: 2, order: 'desc' }).withResponse();
    expect(response.status).toBe(200);
    const last = received.at(-1)!;
    expect(last.method).toBe('GET');
    expect(last.url).toBe('/v1/chat/completions?limit=2&order=desc');
    expect(last.headers.authorization).toBe(`Bearer ${API_KEY}`);
    // Other methods on the chat path are still the gateway's 405, naming the allowed ones.
    const put = await request(`${gw.url}/v1/chat/completions`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(put.statusCode).toBe(405);
    expect(put.headers.allow).toBe('GET, HEAD, OPTIONS, POST');
    expect(((await put.body.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
  });
});
