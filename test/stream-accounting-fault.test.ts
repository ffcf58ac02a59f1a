/**
 * A fault in a request's accounting must never reach the client or end the gateway. The
 * accounting of a stream runs when the stream ends, outside any request handler: an
 * exception there was uncaught and ended the process, with every other stream in flight (a
 * tool schema too deep to serialise did it, see review-today-8). On pass-through routes the
 * usage and error-code readers run inside the relayed body: a fault there cut the client's
 * connection as if the upstream had failed. Here the accounting functions are made to throw,
 * one per test: the client still gets the upstream's answer whole, the request is still
 * counted and logged, one `accounting failed` line names it, and the gateway keeps serving.
 */
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { scrapeMetricsText } from './helpers/metrics.js';

/** The accounting functions that throw in the current test. */
const faulty = vi.hoisted(() => new Set<string>());

vi.mock('../src/proxy/accounting.js', async (original) => {
  const actual = await original<typeof import('../src/proxy/accounting.js')>();
  const faultable = <F extends (...args: any[]) => any>(name: string, f: F) =>
    ((...args: Parameters<F>) => {
      if (faulty.has(name)) throw new TypeError(`accounting fault injected by the test in ${name}`);
      return f(...args);
    }) as F;
  return {
    ...actual,
    finishStream: faultable('finishStream', actual.finishStream),
    readCompletion: faultable('readCompletion', actual.readCompletion),
    noteUpstreamError: faultable('noteUpstreamError', actual.noteUpstreamError),
    priceUsage: faultable('priceUsage', actual.priceUsage),
  };
});

vi.mock('../src/telemetry/logger.js', async (original) => {
  const actual = await original<typeof import('../src/telemetry/logger.js')>();
  return {
    ...actual,
    requestLogLine: (...args: Parameters<typeof actual.requestLogLine>) => {
      if (faulty.has('requestLogLine')) throw new TypeError('log line fault injected by the test');
      return actual.requestLogLine(...args);
    },
  };
});

let upstream: MockUpstream;
let gw: TestGateway;
let log: GatewayLogCapture;

beforeAll(async () => {
  log = captureGatewayLog();
  upstream = await startMockUpstream();
  gw = await startTestGateway(mockConfig(upstream.url, 'logging: {level: info, requests: true}').replace('logging: {level: silent}\n', ''));
});

afterEach(() => faulty.clear());

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  log?.restore();
});

/** Sends `body` to `path` with request id `id`; the answer read whole (undici throws on a cut body). */
async function send(path: string, id: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** The request's log line, and its `accounting failed` lines (exactly one expected). */
async function linesOf(id: string) {
  const { line } = await log.requestLine(id);
  return { request: line, faults: log.accountingFaults(id) };
}

function expectOneFault(faults: string[], route: string): void {
  expect(faults).toHaveLength(1);
  expect(JSON.parse(faults[0])).toMatchObject({ level: 'error', route, error: 'TypeError' });
  expect(faults[0]).not.toContain('injected'); // the class, never the message
}

const chat = (stream: boolean) => ({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] });

describe('chat completions', () => {
  it('a stream whose accounting throws is relayed whole, recorded, logged once, and the gateway stays up', async () => {
    faulty.add('finishStream');
    const res = await send('/v1/chat/completions', 'fault-stream', chat(true));
    expect(res.status).toBe(200);
    expect(res.text.trimEnd().endsWith('data: [DONE]')).toBe(true);

    const { request: line, faults } = await linesOf('fault-stream');
    expect(line).toMatchObject({ route: '/v1/chat/completions', status: 200, outcome: 'ok' });
    expectOneFault(faults, '/v1/chat/completions');
    expect(await scrapeMetricsText(gw.url)).toMatch(/promptgate_requests_total\{[^}]*route="\/v1\/chat\/completions"[^}]*stream="true"[^}]*\} 1/);
    expect((await request(`${gw.url}/healthz`)).statusCode).toBe(200);
  });

  // Regression: the fault went to the error boundary, a 500 for an answer the upstream had given (and billed).
  it('a non-stream answer whose reading throws still reaches the client as the upstream sent it', async () => {
    faulty.add('readCompletion');
    const res = await send('/v1/chat/completions', 'fault-json', chat(false));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ object: 'chat.completion', usage: { prompt_tokens: expect.any(Number) } });
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
    const { request: line, faults } = await linesOf('fault-json');
    expect(line).toMatchObject({ status: 200, outcome: 'ok' });
    expectOneFault(faults, '/v1/chat/completions');
  });

  it('an upstream error whose code cannot be read is still passed through with its status', async () => {
    faulty.add('noteUpstreamError');
    const res = await send('/v1/chat/completions', 'fault-error', chat(false), { 'x-mock-status': '400', 'x-mock-error-code': 'bad_thing' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text)).toMatchObject({ error: { code: 'bad_thing' } });
    const { request: line, faults } = await linesOf('fault-error');
    expect(line).toMatchObject({ status: 400, outcome: 'error', error_type: 'upstream_400' });
    expectOneFault(faults, '/v1/chat/completions');
  });
});

describe('pass-through routes', () => {
  // Regression: the fault surfaced from the relayed body: the client's connection was cut
  // (undici: "terminated") and the request recorded as upstream_body_error.
  it('embeddings whose pricing throws are relayed whole', async () => {
    faulty.add('priceUsage');
    const res = await send('/v1/embeddings', 'fault-embeddings', { model: 'text-embedding-3-small', input: 'hello', encoding_format: 'float' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ object: 'list', usage: { prompt_tokens: expect.any(Number) } });
    expect(res.headers['x-promptgate-cost-usd']).toBeUndefined();
    const { request: line, faults } = await linesOf('fault-embeddings');
    expect(line).toMatchObject({ route: '/v1/embeddings', status: 200, outcome: 'ok' });
    expectOneFault(faults, '/v1/embeddings');
  });

  it('a Responses stream whose pricing throws at its terminal event is relayed to its end', async () => {
    faulty.add('priceUsage');
    const res = await send('/v1/responses', 'fault-responses', { model: 'gpt-4o-mini', input: 'hi', stream: true });
    expect(res.status).toBe(200);
    expect(res.text).toContain('event: response.completed');
    const { request: line, faults } = await linesOf('fault-responses');
    expect(line).toMatchObject({ route: '/v1/responses', status: 200, outcome: 'ok' });
    expectOneFault(faults, '/v1/responses');
  });

  it('an error answer whose code cannot be read is relayed whole', async () => {
    faulty.add('noteUpstreamError');
    const res = await send('/v1/embeddings', 'fault-passthrough-error', { model: 'text-embedding-3-small', input: 'hello' }, { 'x-mock-status': '429' });
    expect(res.status).toBe(429);
    expect(JSON.parse(res.text)).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
    const { request: line, faults } = await linesOf('fault-passthrough-error');
    expect(line).toMatchObject({ route: '/v1/embeddings', status: 429, outcome: 'error', error_type: 'upstream_429' });
    expectOneFault(faults, '/v1/embeddings');
  });
});

describe('requests no handler serves', () => {
  // Regression: their accounting runs in Node's request listener, outside the app's error
  // boundary: a fault there was an uncaught exception, ending the process.
  it('a request without Host whose log line throws is still answered 400 and counted', async () => {
    faulty.add('requestLogLine');
    const socket = connect(Number(new URL(gw.url).port), '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('GET /v1/models HTTP/1.1\r\n\r\n');
    await closed;
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('"code":"invalid_request"');
    await vi.waitFor(() => expect(log.others.some((l) => l.includes('"msg":"accounting failed"') && l.includes('"route":"unmatched"'))).toBe(true));
    expect(await scrapeMetricsText(gw.url)).toMatch(/promptgate_requests_total\{[^}]*route="unmatched"[^}]*\} 1/);
    expect((await request(`${gw.url}/healthz`)).statusCode).toBe(200);
  });
});
