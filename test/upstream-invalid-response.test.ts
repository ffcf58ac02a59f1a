/**
 * Regression: an upstream that answers with bytes that are not HTTP got
 * `503 upstream_unavailable` ("no upstream could be reached") instead of the documented
 * `502 upstream_error`. undici 7's HTTPParserError carries no `code`, so the `HPE_*` check
 * in classifyTransportError never matched and the failure read as a connection error.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';

let garbage: Server;
let url: string;
let gw: TestGateway | undefined;

beforeAll(async () => {
  // Reads the request, answers with a line that is not an HTTP status line, closes.
  garbage = createServer((socket) => socket.once('data', () => socket.end('NOT HTTP AT ALL\r\n\r\n')));
  url = `${await listenOnLoopback(garbage)}/v1`;
});
afterAll(async () => {
  await new Promise((resolve) => garbage.close(resolve));
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

const config = (route: string) => `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - {name: garbage, base_url: "${url}", api_key: sk-x, retry: {attempts: 1, backoff_ms: 5}, breaker: {failures: 0}}
  - {name: sim, simulate: {latency_ms: 1, chunks: 2}}
routing: {default: ${route}}
`;

async function post(path: string, body: object) {
  const res = await request(`${gw!.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as { error: { code: string; type: string } } };
}

describe('an upstream answering with bytes that are not HTTP', () => {
  it('gets 502 upstream_error on the chat route, not 503 upstream_unavailable', async () => {
    gw = await startTestGateway(config('[garbage]'));
    const res = await post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(502);
    expect(res.json.error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
    expect(res.headers['retry-after']).toBeUndefined();
  });

  it('gets 502 upstream_error on a pass-through route', async () => {
    gw = await startTestGateway(config('[garbage]'));
    const res = await post('/v1/embeddings', { model: 'text-embedding-3-small', input: 'hi' });
    expect(res.status).toBe(502);
    expect(res.json.error.code).toBe('upstream_error');
  });

  it('still falls back to the next upstream', async () => {
    gw = await startTestGateway(config('[garbage, sim]'));
    const res = await post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
  });
});
