/**
 * Regression tests from review round 6 of upstream resilience (retries, fallback,
 * breaker, timeouts): the gateway on a real socket in front of upstreams on 127.0.0.1:0,
 * closed by each test. Timeouts are hang guards only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';

const servers: NetServer[] = [];
const sockets: Socket[] = [];
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.close();
  gw = undefined;
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});

/**
 * A raw HTTP/1.1 upstream. `onRequest(n, socket)` gets the request's number on its
 * connection (0 for the first) and answers (returns true) or not; the request bodies are kept.
 */
async function rawUpstream(onRequest: (n: number, socket: Socket) => boolean) {
  const bodies: string[] = [];
  const server = createNetServer((socket) => {
    sockets.push(socket);
    let n = 0;
    let buf = '';
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        bodies.push(buf.slice(end + 4, end + 4 + len));
        buf = buf.slice(end + 4 + len);
        if (!onRequest(n++, socket)) return;
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(COMPLETION)}\r\n\r\n${COMPLETION}`);
      }
    });
  });
  servers.push(server);
  return { url: `${await listenOnLoopback(server)}/v1`, bodies };
}

function gatewayConfig(url: string, settings: string, fallback?: { url: string; settings: string }): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: a
    base_url: ${url}
    api_key: sk-test
${settings.replace(/^/gm, '    ')}
${fallback ? `  - name: b\n    base_url: ${fallback.url}\n    api_key: sk-test-b\n${fallback.settings.replace(/^/gm, '    ')}` : ''}
routing: {default: [a${fallback ? ', b' : ''}]}
`;
}

async function chat(content = 'hi') {
  const res = await request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('a retry the breaker refuses', () => {
  it("gives the client the upstream's answer it was to retry, when another request opened the breaker during its backoff (was: 503 upstream_unavailable, retry-after: 1)", async () => {
    const http = await import('node:http');
    let n = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        n++;
        res.writeHead(503, { 'content-type': 'application/json', 'x-from': 'upstream' });
        res.end(JSON.stringify({ error: { message: `overloaded ${n}`, type: 'server_error', param: null, code: null } }));
      });
    });
    servers.push(server as unknown as NetServer);
    const url = `${await listenOnLoopback(server)}/v1`;
    // Backoff 300-600 ms: long enough for the second request to open the breaker meanwhile.
    gw = await startTestGateway(gatewayConfig(url, 'retry: {attempts: 2, backoff_ms: 600, max_backoff_ms: 600}\nbreaker: {failures: 2, cooldown_ms: 60000}'));
    const first = chat('first');
    await until(() => n === 1);
    const second = await chat('second'); // its 503 opens the breaker: no retry, the answer goes on
    expect(second.status).toBe(503);
    expect(gw.holder.current.breakers.get('a')!.state).toBe('open');
    const res = await first;
    expect(n).toBe(2); // the first request's retry was not sent
    expect(res.status).toBe(503);
    expect(JSON.parse(res.text).error.message).toBe('overloaded 1');
  });
});

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('an answer undici refuses', () => {
  it('with headers past its 16 KiB limit is a 502 upstream_error, an invalid answer, not a 503 "No upstream could be reached" (was: classified as a connection failure)', async () => {
    const up = await rawUpstream((_n, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-big: ${'a'.repeat(20_000)}\r\ncontent-length: ${Buffer.byteLength(COMPLETION)}\r\n\r\n${COMPLETION}`);
      return false;
    });
    gw = await startTestGateway(gatewayConfig(up.url, 'retry: {attempts: 0}'));
    const res = await chat();
    expect(res.status).toBe(502);
    expect(JSON.parse(res.text).error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
    expect(res.text).not.toContain('sk-test');
  });
});

describe('an answer passed over for a fallback that hangs', () => {
  it("goes to the client when the fallback is still silent at total_ms: the upstream's 429, not a 504 (was: 504 upstream_timeout)", async () => {
    const a = await rawUpstream((_n, socket) => {
      const body = JSON.stringify({ error: { message: 'Rate limit reached', type: 'requests', param: null, code: 'rate_limit_exceeded' } });
      socket.write(`HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 5\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return false;
    });
    const b = await rawUpstream(() => false); // reads the request, never answers
    gw = await startTestGateway(
      gatewayConfig(a.url, 'retry: {attempts: 2}\ntimeout: {total_ms: 1000}', { url: b.url, settings: 'timeout: {first_byte_ms: 60000}' }),
    );
    const started = Date.now();
    const res = await chat();
    expect(b.bodies).toHaveLength(1); // the fallback was tried
    expect(res.status).toBe(429);
    expect(JSON.parse(res.text).error.code).toBe('rate_limit_exceeded');
    expect(Date.now() - started).toBeLessThan(4000); // at total_ms, not after the 5 s retry-after
  });
});
