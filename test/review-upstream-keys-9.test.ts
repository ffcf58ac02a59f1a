/**
 * Review 9, upstream credentials: a key the gateway holds for one upstream never reaches
 * the client, whatever shape the upstream's echo of it takes.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

const KEY = 'sk-upstream-key-9-abcdef123456';
const QUERY_KEY = 'AIzaQueryKey9abcdef123456';

let gateway: TestGateway | undefined;
let mock: MockUpstream | undefined;
const servers: Server[] = [];

afterEach(async () => {
  await gateway?.close();
  await mock?.close();
  await closeServers(servers);
  gateway = undefined;
  mock = undefined;
});

function config(baseUrl: string, upstreamExtra = ''): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: up
    base_url: "${baseUrl}"
    api_key: ${KEY}
    retry: {attempts: 0}
${upstreamExtra}
routing: {default: [up]}
`;
}

/** An upstream that answers 401 quoting the request's Authorization, gzipped whatever was asked for. */
async function gzipEchoUpstream(): Promise<string> {
  const server = createServer((req: IncomingMessage, res) => {
    req.resume();
    req.on('end', () => {
      const message = `Incorrect API key provided: ${req.headers.authorization ?? ''}`;
      const body = gzipSync(JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }));
      res.writeHead(401, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': body.byteLength });
      res.end(body);
    });
  });
  servers.push(server);
  return `${await listenOnLoopback(server)}/v1`;
}

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

describe('upstream keys never reach the client', () => {
  it('a gzipped 401 quoting the key is masked on the chat route, which decodes it for the client', async () => {
    gateway = await startTestGateway(config(await gzipEchoUpstream()));
    for (const stream of [false, true]) {
      const res = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...chat, stream }),
      });
      const text = await res.text();
      expect(res.status).toBe(401);
      expect(res.headers.get('content-encoding')).toBeNull(); // the gateway decoded it
      expect(text).toContain('Incorrect API key provided: Bearer ***');
      expect(text).not.toContain(KEY);
    }
  });

  it('a key in the base_url query is masked in a pass-through answer that echoes the request URL', async () => {
    mock = await startMockUpstream();
    gateway = await startTestGateway(config(`${mock.url}?key=${QUERY_KEY}`));
    const res = await fetch(`${gateway.url}/v1/vector_stores?limit=2`);
    const text = await res.text();
    expect(res.status).toBe(200);
    // It went upstream (the upstream needs it) ...
    expect(mock.requests.at(-1)!.url).toBe(`/v1/vector_stores?limit=2&key=${QUERY_KEY}`);
    // ... and does not come back.
    expect(text).not.toContain(QUERY_KEY);
    expect(text).toContain('limit=2&key=*');
  });

  it('a key in the base_url query is masked in an error answer that quotes the request URL', async () => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(404, { 'content-type': 'application/json', 'x-upstream-url': req.url ?? '' });
        res.end(JSON.stringify({ error: { message: `No route for ${req.url}`, type: 'invalid_request_error', param: null, code: null } }));
      });
    });
    servers.push(server);
    gateway = await startTestGateway(config(`${await listenOnLoopback(server)}/v1?key=${QUERY_KEY}`));
    const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat) });
    const text = await res.text();
    expect(res.status).toBe(404);
    expect(text).toContain('No route for /v1/chat/completions?key=*');
    expect(text).not.toContain(QUERY_KEY);
    expect(res.headers.get('x-upstream-url')).not.toContain(QUERY_KEY);
  });
});
