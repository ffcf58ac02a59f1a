/**
 * Integration: the gateway on a real socket in front of a real mock upstream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { startMockUpstream, STREAM_WORDS, type MockUpstream } from './helpers/mock-upstream.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetricsText } from './helpers/metrics.js';

let upstream: MockUpstream;
let gw: TestGateway | undefined;

beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  upstream.requests.length = 0;
  upstream.closed = 0;
});

function config(opts: { retry?: string; timeout?: string; breaker?: string; extraUpstreams?: string; route?: string; server?: string } = {}): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 2000${opts.server ?? ''}}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: mock
    base_url: ${upstream.url}
    api_key: sk-test-secret-key-123456
    retry: ${opts.retry ?? '{attempts: 2, backoff_ms: 5, max_backoff_ms: 20}'}
    timeout: ${opts.timeout ?? '{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 10000}'}
    breaker: ${opts.breaker ?? '{failures: 0}'}
${opts.extraUpstreams ?? ''}
routing: {default: ${opts.route ?? '[mock]'}}
`;
}

const chat = (extra: object = {}) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra });

async function post(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await request(`${gw!.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

/** The same request straight to the mock upstream, for byte comparisons. */
async function direct(body: string, headers: Record<string, string> = {}) {
  const res = await request(`${upstream.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

describe('chat completions', () => {
  it('passes a non-stream response through unchanged, with upstream headers and the API key from config', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat(), { authorization: 'Bearer client-key' });
    const ref = await direct(chat());
    expect(res.status).toBe(200);
    expect(res.text.replace(/"id":"[^"]+"/, '')).toBe(ref.text.replace(/"id":"[^"]+"/, ''));
    expect(res.headers['x-request-id']).toMatch(/^req_mock_/);
    expect(res.headers['x-ratelimit-remaining-requests']).toBe('99');
    expect(res.headers['openai-processing-ms']).toBe('7');
    expect(res.headers['x-promptgate-request-id']).toBeTruthy();
    const seen = upstream.requests[0];
    expect(seen.headers.authorization).toBe('Bearer sk-test-secret-key-123456');
    expect(seen.headers.traceparent).toBeUndefined();
  });

  it("sends a configured upstream header once, over the client's, whatever its case", async () => {
    gw = await startTestGateway(config().replace('    retry:', '    headers: {OpenAI-Organization: org-config}\n    retry:'));
    await post('/v1/chat/completions', chat(), { 'openai-organization': 'org-client' });
    const raw = upstream.requests[0].rawHeaders;
    const orgs = raw.filter((_, i) => i % 2 === 0 && raw[i].toLowerCase() === 'openai-organization').length;
    expect(orgs).toBe(1);
    expect(upstream.requests[0].headers['openai-organization']).toBe('org-config');
  });

  it('passes the client Authorization through when the upstream has no key', async () => {
    gw = await startTestGateway(config().replace('api_key: sk-test-secret-key-123456', "api_key: ''"));
    await post('/v1/chat/completions', chat(), { authorization: 'Bearer client-key' });
    expect(upstream.requests[0].headers.authorization).toBe('Bearer client-key');
  });

  it('relays a stream with include_usage byte for byte', async () => {
    gw = await startTestGateway(config());
    const body = chat({ stream: true, stream_options: { include_usage: true } });
    const res = await post('/v1/chat/completions', body);
    const ref = await direct(body);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.text).toBe(ref.text);
  });

  it('asks the upstream for usage but gives the client exactly the stream it asked for', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat({ stream: true }));
    const ref = await direct(chat({ stream: true }));
    expect(upstream.requests[0].body.stream_options).toEqual({ include_usage: true });
    expect(res.text).toBe(ref.text);
    expect(res.text).not.toContain('"usage"');
    expect(res.text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('forwards each SSE event as it arrives (no whole-body buffering)', async () => {
    gw = await startTestGateway(config());
    const started = Date.now();
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '150' },
      body: chat({ stream: true }),
    });
    const it = res.body[Symbol.asyncIterator]();
    const first = await it.next();
    const firstAt = Date.now() - started;
    expect(String(first.value)).toContain('"role":"assistant"');
    expect(firstAt).toBeLessThan(700); // the whole stream takes > 1 s
    let rest = '';
    for (let next = await it.next(); !next.done; next = await it.next()) rest += String(next.value);
    expect(rest.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(Date.now() - started).toBeGreaterThan(1000);
  });

  it('aborts the upstream request at once when the client disconnects mid-stream', async () => {
    gw = await startTestGateway(config());
    const ac = new AbortController();
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '200' },
      body: chat({ stream: true }),
      signal: ac.signal,
    });
    const it = res.body[Symbol.asyncIterator]();
    await it.next();
    ac.abort();
    await upstream.waitForClosed(1, 2000);
    expect(upstream.closed).toBe(1);
  });

  it('ends the stream with an OpenAI-shaped error event when the upstream resets mid-stream', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat({ stream: true }), { 'x-mock-reset': 'mid' });
    expect(res.status).toBe(200);
    const events = res.text.trim().split('\n\n');
    const last = JSON.parse(events.at(-1)!.slice('data: '.length));
    expect(last.error).toMatchObject({ type: 'server_error', code: 'upstream_error' });
    expect(res.text).not.toContain('[DONE]');
  });

  it('ends the stream with a timeout error event when the upstream goes idle', async () => {
    gw = await startTestGateway(config({ timeout: '{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 300, total_ms: 10000}' }));
    const res = await post('/v1/chat/completions', chat({ stream: true }), { 'x-mock-stall-after': '2' });
    const last = JSON.parse(res.text.trim().split('\n\n').at(-1)!.slice('data: '.length));
    expect(last.error).toMatchObject({ type: 'timeout_error', code: 'upstream_timeout' });
  });

  // Regression: the gateway's own total timeout cutting a stream was reported to the client
  // as an upstream connection failure (`upstream_error`).
  // Regression: the exchange's deadline was always the default route's total_ms, so a slow
  // model routed to an upstream with a longer total_ms was cut at the default's.
  it("gives a model routed to its own upstream that upstream's total_ms", async () => {
    gw = await startTestGateway(
      config({
        timeout: '{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 400}',
        extraUpstreams: `  - {name: slow, base_url: "${upstream.url}", api_key: sk-test-secret-key-123456, timeout: {connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 5000}, breaker: {failures: 0}}`,
        route: '[mock], models: {slow-model: [slow]}',
      }),
    );
    const res = await post('/v1/chat/completions', chat({ model: 'slow-model', stream: true }), { 'x-mock-chunk-delay-ms': '150' });
    expect(res.status).toBe(200);
    expect(res.text).toContain('[DONE]');
    expect(res.text).not.toContain('upstream_timeout');
  });

  it('ends the stream with a timeout error event when the total timeout passes mid-stream', async () => {
    gw = await startTestGateway(config({ timeout: '{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 500}' }));
    const res = await post('/v1/chat/completions', chat({ stream: true }), { 'x-mock-chunk-delay-ms': '150' });
    expect(res.status).toBe(200);
    const events = res.text.trim().split('\n\n');
    expect(events[0]).toContain('"role":"assistant"');
    const last = JSON.parse(events.at(-1)!.slice('data: '.length));
    expect(last.error).toMatchObject({ type: 'timeout_error', code: 'upstream_timeout' });
    expect(res.text).not.toContain('[DONE]');
  });
});

describe('HEAD on pass-through routes', () => {
  // Regression: the upstream's content-length was dropped from HEAD answers.
  it('passes the content-length the GET body would have', async () => {
    const files = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1234' });
      res.end(req.method === 'HEAD' ? undefined : Buffer.alloc(1234));
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    try {
      gw = await startTestGateway(config().replace(upstream.url, `http://127.0.0.1:${(files.address() as AddressInfo).port}`));
      const res = await request(`${gw.url}/v1/files/file-abc/content`, { method: 'HEAD' });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBe('1234');
    } finally {
      files.closeAllConnections();
      await new Promise((r) => files.close(r));
    }
  });
});

describe('compressed upstream responses', () => {
  it('decodes a gzip chat completion the upstream compressed anyway (was: gzip bytes labelled as plain JSON)', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-encoding': 'gzip' });
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
    expect(res.json().usage.total_tokens).toBe(17);
    expect(res.json().choices[0].message.content).toBe(STREAM_WORDS.join(''));
    expect(res.headers['x-promptgate-cost-usd']).toBeTruthy(); // usage read from the decoded body
  });

  it('decodes a brotli stream event by event and still strips the usage chunk it asked for', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat({ stream: true }), { 'x-mock-encoding': 'br' });
    const ref = await direct(chat({ stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(res.text).toBe(ref.text);
    expect(res.text).not.toContain('"usage"');
  });

  it('ends a decoded gzip stream with an OpenAI-shaped error event when the upstream resets mid-stream', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat({ stream: true }), { 'x-mock-encoding': 'gzip', 'x-mock-reset': 'mid' });
    const events = res.text.trim().split('\n\n');
    expect(events[0]).toMatch(/^data: \{"id":"chatcmpl-mock123"/); // decoded events came first
    expect(JSON.parse(events.at(-1)!.slice('data: '.length)).error).toMatchObject({ type: 'server_error', code: 'upstream_error' });
  });

  it('keeps content-encoding and the compressed bytes on pass-through routes (was: header dropped)', async () => {
    gw = await startTestGateway(config());
    const res = await request(`${gw.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-mock-encoding': 'gzip' }, body: '{"input":"hi"}' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-encoding']).toBe('gzip');
    const echo = JSON.parse(gunzipSync(Buffer.from(await res.body.arrayBuffer())).toString('utf8'));
    expect(echo).toEqual({ method: 'POST', url: '/v1/embeddings', body: { input: 'hi' } });
  });

  it('passes a chat completion in a coding it cannot decode through with its content-encoding, bytes unchanged', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-encoding': 'x-unknown' });
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBe('x-unknown');
    expect(res.json().usage.total_tokens).toBe(17); // the mock sent plain bytes under that label
  });
});

describe('errors', () => {
  // Regression: requests Node's parser rejects got its bare 400 (no body), not the envelope.
  it.each([
    ['a garbage request line', 'NOT HTTP AT ALL\r\n\r\n', 400, 'invalid_request'],
    ['headers over the limit', `GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
  ])('answers %s in the OpenAI envelope and closes', async (_name, raw, status, code) => {
    gw = await startTestGateway(config());
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect(gw!.port, '127.0.0.1', () => socket.end(raw));
      let out = '';
      socket.on('data', (d) => (out += d));
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
    });
    expect(text.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
    expect(text).toMatch(/connection: close/i);
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code, param: null });
  });

  // Regression: garbage pipelined behind a chat stream got the 400 written into the stream's body.
  it('closes without writing into a stream in flight when a pipelined request cannot be parsed', async () => {
    gw = await startTestGateway(config());
    const body = chat({ stream: true });
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect(gw!.port, '127.0.0.1', () => {
        socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-mock-chunk-delay-ms: 50\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        socket.once('data', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
      });
      let out = '';
      socket.on('data', (d) => (out += d));
      socket.on('close', () => resolve(out));
      socket.on('error', reject);
    });
    expect(text.startsWith('HTTP/1.1 200 ')).toBe(true);
    expect(text).toContain('data: {"id":"chatcmpl-mock123"');
    expect(text).not.toContain('HTTP/1.1 400');
  });

  it.each([
    [400, 'invalid_request_error'],
    [401, 'invalid_request_error'],
    [404, 'invalid_request_error'],
    [422, 'invalid_request_error'],
  ])('passes an upstream %i through as it is', async (status) => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': String(status) });
    expect(res.status).toBe(status);
    expect(res.json().error.message).toBe(`mock ${status}`);
    expect(upstream.requests).toHaveLength(1); // 4xx is never retried
  });

  it('passes a 429 through once retries are used up, with retry-after', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '429', 'x-mock-retry-after-ms': '5' });
    expect(res.status).toBe(429);
    expect(res.headers['retry-after-ms']).toBe('5');
    expect(res.json().error.type).toBe('rate_limit_error');
    expect(upstream.requests).toHaveLength(3);
  });

  it('does not wait for a retry-after longer than max_retry_after_ms', async () => {
    gw = await startTestGateway(config({ retry: '{attempts: 2, backoff_ms: 5, max_retry_after_ms: 1000}' }));
    const started = Date.now();
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '429', 'x-mock-retry-after': '30' });
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('30');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(upstream.requests).toHaveLength(1);
  });

  it('passes a 429 through at once when its retry-after would end after total_ms (was: 504 at the deadline)', async () => {
    gw = await startTestGateway(config({ timeout: '{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 1500}' }));
    const started = Date.now();
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '429', 'x-mock-retry-after': '3' });
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('3');
    expect(res.json().error.type).toBe('rate_limit_error');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(upstream.requests).toHaveLength(1);
  });

  it('tries the fallback instead of waiting past total_ms for a retry-after', async () => {
    gw = await startTestGateway(
      config({ timeout: '{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 1500}', route: '[mock, sim]', extraUpstreams: '  - {name: sim, simulate: {latency_ms: 0}}' }),
    );
    const started = Date.now();
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '429', 'x-mock-retry-after': '3' });
    expect(res.status).toBe(200); // from the simulator
    expect(Date.now() - started).toBeLessThan(1000);
    expect(upstream.requests).toHaveLength(1);
  });

  it('passes an upstream 500 through after retries', async () => {
    gw = await startTestGateway(config());
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '500' });
    expect(res.status).toBe(500);
    expect(res.json().error).toEqual({ message: 'mock 500', type: 'server_error', param: null, code: null });
    expect(upstream.requests).toHaveLength(3);
  });

  it.each([
    ['malformed JSON', '{"model":', { 'content-type': 'application/json' }, 400, 'invalid_json'],
    ['a JSON array', '[]', { 'content-type': 'application/json' }, 400, 'invalid_json'],
    ['a missing model', JSON.stringify({ messages: [{ role: 'user', content: 'x' }] }), { 'content-type': 'application/json' }, 400, 'invalid_request'],
    ['missing messages', JSON.stringify({ model: 'x' }), { 'content-type': 'application/json' }, 400, 'invalid_request'],
    ['a form body', 'a=1', { 'content-type': 'application/x-www-form-urlencoded' }, 415, 'unsupported_media_type'],
  ])('rejects %s with an OpenAI error envelope', async (_name, body, headers, status, code) => {
    gw = await startTestGateway(config());
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body });
    const json = (await res.body.json()) as { error: Record<string, unknown> };
    expect(res.statusCode).toBe(status);
    expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(json.error.code).toBe(code);
    expect(json.error.type).toBe('invalid_request_error');
    expect(upstream.requests).toHaveLength(0);
  });

  it('rejects a body over max_body_bytes with 413', async () => {
    gw = await startTestGateway(config({ server: ', max_body_bytes: 1000' }));
    const res = await post('/v1/chat/completions', chat({ pad: 'x'.repeat(5000) }));
    expect(res.status).toBe(413);
    expect(res.json().error.code).toBe('body_too_large');
  });

  it('rejects a chunked body over the limit with 413 while reading', async () => {
    gw = await startTestGateway(config({ server: ', max_body_bytes: 1000' }));
    const big = chat({ pad: 'x'.repeat(5000) });
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // An async iterable body is sent chunked, without content-length.
      body: Readable.from([Buffer.from(big.slice(0, 600)), Buffer.from(big.slice(600))]),
    });
    expect(res.statusCode).toBe(413);
    await res.body.dump();
  });

  it('answers an unknown route with a 404 envelope', async () => {
    gw = await startTestGateway(config());
    const res = await request(`${gw.url}/nope`);
    expect(res.statusCode).toBe(404);
    expect(((await res.body.json()) as any).error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
  });

  it('answers 504 when the upstream sends no first byte in time', async () => {
    gw = await startTestGateway(config({ timeout: '{connect_ms: 1000, first_byte_ms: 200, idle_ms: 2000, total_ms: 10000}' }));
    // undici's timers have ~1 s resolution: the 200 ms timeout fires within about a second.
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-delay-ms': '2500' });
    expect(res.status).toBe(504);
    expect(res.json().error).toMatchObject({ type: 'timeout_error', code: 'upstream_timeout' });
  });

  it('answers 504 when the total timeout passes', async () => {
    gw = await startTestGateway(config({ timeout: '{connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 300}' }));
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-delay-ms': '1500' });
    expect(res.status).toBe(504);
    expect(res.json().error.code).toBe('upstream_timeout');
  });

  it('gives up on an upstream that never accepts the connection (connect timeout) and falls back', async () => {
    // A listener that never accepts: once its backlog is full the kernel drops new SYNs.
    const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)']);
    const port = Number(await new Promise<string>((resolve) => py.stdout.once('data', (d) => resolve(String(d)))));
    const fill = Array.from({ length: 4 }, () => connect(port, '127.0.0.1').on('error', () => undefined));
    try {
      await new Promise((r) => setTimeout(r, 300));
      gw = await startTestGateway(
        config({
          route: '[blackhole, mock]',
          extraUpstreams: `  - {name: blackhole, base_url: "http://127.0.0.1:${port}/v1", retry: {attempts: 0}, timeout: {connect_ms: 500}}`,
        }),
      );
      const started = Date.now();
      const res = await post('/v1/chat/completions', chat());
      expect(res.status).toBe(200); // answered by the fallback
      expect(Date.now() - started).toBeLessThan(5000);
      expect(upstream.requests).toHaveLength(1);
    } finally {
      fill.forEach((s) => s.destroy());
      py.kill();
    }
  });

  it('answers 503 with retry-after when no upstream can be reached, and never leaks the key', async () => {
    gw = await startTestGateway(config({ route: '[dead]', extraUpstreams: '  - {name: dead, base_url: "http://127.0.0.1:1/v1", api_key: sk-dead-secret-000, retry: {attempts: 1, backoff_ms: 5}}' }));
    const res = await post('/v1/chat/completions', chat());
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json().error.code).toBe('upstream_unavailable');
    expect(res.text).not.toContain('sk-dead');
    expect(res.text).not.toContain('127.0.0.1:1');
    expect(res.text).not.toMatch(/at .*\.ts/);
  });
});

describe('retry, fallback, breaker', () => {
  it('retries a 503 and succeeds, honouring retry-after-ms', async () => {
    gw = await startTestGateway(config());
    const started = Date.now();
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '503', 'x-mock-fail-times': '2', 'x-mock-key': 'r1', 'x-mock-retry-after-ms': '100' });
    expect(res.status).toBe(200);
    expect(upstream.requests).toHaveLength(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
  });

  it('falls back to the next upstream when the first cannot be reached', async () => {
    gw = await startTestGateway(
      config({ route: '[dead, mock]', extraUpstreams: '  - {name: dead, base_url: "http://127.0.0.1:1/v1", retry: {attempts: 1, backoff_ms: 5}}' }),
    );
    const res = await post('/v1/chat/completions', chat());
    expect(res.status).toBe(200);
    expect(upstream.requests).toHaveLength(1);
  });

  it('falls back after a first-byte timeout without retrying the slow upstream', async () => {
    const second = await startMockUpstream();
    try {
      gw = await startTestGateway(
        config({
          timeout: '{connect_ms: 1000, first_byte_ms: 200, idle_ms: 2000, total_ms: 10000}',
          route: '[mock, second]',
          extraUpstreams: `  - {name: second, base_url: "${second.url}"}`,
        }),
      );
      const res = await post('/v1/chat/completions', chat(), { 'x-mock-delay-ms': '2500' });
      // The second upstream has the default first-byte timeout (60 s), so it answers.
      expect(res.status).toBe(200);
      expect(upstream.requests).toHaveLength(1);
      expect(second.requests).toHaveLength(1);
    } finally {
      await second.close();
    }
  });

  it('opens the breaker after consecutive failures and answers 503 circuit_open with retry-after', async () => {
    gw = await startTestGateway(config({ retry: '{attempts: 0}', breaker: '{failures: 2, cooldown_ms: 60000}' }));
    for (let i = 0; i < 2; i++) expect((await post('/v1/chat/completions', chat(), { 'x-mock-status': '500' })).status).toBe(500);
    const res = await post('/v1/chat/completions', chat());
    expect(res.status).toBe(503);
    expect(res.json().error.code).toBe('circuit_open');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(50);
    expect(upstream.requests).toHaveLength(2);
  });

  it('passes an upstream 500 through when its breaker opens between retries (not 503 upstream_unavailable)', async () => {
    gw = await startTestGateway(config({ breaker: '{failures: 1, cooldown_ms: 60000}' }));
    const res = await post('/v1/chat/completions', chat(), { 'x-mock-status': '500' });
    expect(res.status).toBe(500);
    expect(res.json().error).toEqual({ message: 'mock 500', type: 'server_error', param: null, code: null });
    expect(upstream.requests).toHaveLength(1); // the open breaker allows no retry
  });

  it('lets a probe through after the cool-down and closes on success', async () => {
    gw = await startTestGateway(config({ retry: '{attempts: 0}', breaker: '{failures: 1, cooldown_ms: 200}' }));
    expect((await post('/v1/chat/completions', chat(), { 'x-mock-status': '500' })).status).toBe(500);
    expect((await post('/v1/chat/completions', chat())).status).toBe(503);
    await new Promise((r) => setTimeout(r, 250));
    expect((await post('/v1/chat/completions', chat())).status).toBe(200);
    expect((await post('/v1/chat/completions', chat())).status).toBe(200);
  });

  it('skips an upstream whose breaker is open and uses the fallback', async () => {
    const second = await startMockUpstream();
    try {
      gw = await startTestGateway(
        config({ retry: '{attempts: 0}', breaker: '{failures: 1, cooldown_ms: 60000}', route: '[mock, second]', extraUpstreams: `  - {name: second, base_url: "${second.url}"}` }),
      );
      await post('/v1/chat/completions', chat(), { 'x-mock-status': '502', 'x-mock-fail-times': '1', 'x-mock-key': 'b1' });
      const res = await post('/v1/chat/completions', chat());
      expect(res.status).toBe(200);
      expect(upstream.requests).toHaveLength(1);
      expect(second.requests.length).toBeGreaterThanOrEqual(1);
    } finally {
      await second.close();
    }
  });
});

describe('pass-through routes', () => {
  it('GET /v1/models comes from the upstream', async () => {
    gw = await startTestGateway(config());
    const res = await request(`${gw.url}/v1/models`);
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as any).data[0].id).toBe('gpt-4o-mini');
  });

  it('forwards method, query, headers and body of other /v1 routes', async () => {
    gw = await startTestGateway(config());
    // node:http, because undici refuses a Connection header that lists other fields.
    const echo = await new Promise<any>((resolve, reject) => {
      const req = httpRequest(`${gw!.url}/v1/embeddings?x=1&y=two`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-custom': 'abc', connection: 'keep-alive, x-hop', 'x-hop': 'drop-me' },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(JSON.parse(text)));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ input: 'hello' }));
    });
    expect(echo).toEqual({ method: 'POST', url: '/v1/embeddings?x=1&y=two', body: { input: 'hello' } });
    const seen = upstream.requests[0];
    expect(seen.headers['x-custom']).toBe('abc');
    expect(seen.headers['x-hop']).toBeUndefined();
    expect(seen.headers.authorization).toBe('Bearer sk-test-secret-key-123456');
  });

  it('passes DELETE and upstream errors through', async () => {
    gw = await startTestGateway(config());
    const res = await request(`${gw.url}/v1/files/file-1`, { method: 'DELETE', headers: { 'x-mock-status': '404' } });
    expect(res.statusCode).toBe(404);
    expect(((await res.body.json()) as any).error.message).toBe('mock 404');
  });
});

describe('upstream base_url with a query (Azure api-version)', () => {
  it('adds the base_url query to chat and pass-through requests, over a client value of the same name (was: query cut off)', async () => {
    gw = await startTestGateway(config().replace(`base_url: ${upstream.url}`, `base_url: "${upstream.url}?api-version=2024-10-21"`));
    expect((await post('/v1/chat/completions', chat())).status).toBe(200);
    expect(upstream.requests[0].url).toBe('/v1/chat/completions?api-version=2024-10-21');
    const res = await request(`${gw.url}/v1/files?purpose=batch&api-version=1999-01-01&limit=2`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(upstream.requests[1].url).toBe('/v1/files?purpose=batch&limit=2&api-version=2024-10-21');
    await request(`${gw.url}/v1/models`).then((r) => r.body.dump());
    expect(upstream.requests[2].url).toBe('/v1/models?api-version=2024-10-21');
  });
});

describe('client gone while sending the body', () => {
  /** Sends the head and part of a body, then resets the connection. */
  async function leaveMidBody(path: string): Promise<void> {
    const socket = connect(gw!.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":`);
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
  }

  async function requestsSample(route: string): Promise<string> {
    const until = Date.now() + 3000;
    for (;;) {
      const text = await scrapeMetricsText(gw!.url);
      const line = text.split('\n').find((l) => l.startsWith('promptgate_requests_total{') && l.includes(`route="${route}"`));
      if (line || Date.now() > until) return line ?? '';
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it.each([['/v1/chat/completions'], ['/v1/embeddings']])('records %s as a client abort (499), not 400 invalid_request', async (route) => {
    gw = await startTestGateway(config());
    await leaveMidBody(route);
    const line = await requestsSample(route);
    expect(line).toContain('error_type="client_abort"');
    expect(line).toContain('status_class="4xx"');
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('health', () => {
  it('/healthz and /readyz answer', async () => {
    gw = await startTestGateway(config());
    expect((await request(`${gw.url}/healthz`)).statusCode).toBe(200);
    const ready = await request(`${gw.url}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(((await ready.body.json()) as any).status).toBe('ready');
  });
});
