/**
 * Requests the gateway turns away, and upstream errors on pass-through routes, leave records.
 *
 * - A request no route serves (an unknown path such as `/chat/completions` from a client whose
 *   base URL lacks `/v1`, or a method the path does not take: 405) counts in
 *   `promptgate_requests_total` under `route="unmatched"` (never its path: the label stays
 *   bounded) and writes one request log line, which names the path.
 * - Refusals before the pipeline (draining 503, an encoded dot segment) are accounted under
 *   their route, like the 415/413/400 of the chat route.
 * - An upstream error answer on a pass-through route is relayed byte for byte while its code
 *   (`error.code`, else `error.type`) is read on the way into the log line and CLIENT span;
 *   a large error body goes through as it streams, and is not kept past a small cap.
 *
 * One real gateway (127.0.0.1, port 0) with `logging.requests: true` (lines caught on stdout)
 * and an in-memory span exporter, in front of a small upstream answering per `x-test-case`.
 * Registers a global tracer provider: this file runs in its own process (forks).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { SpanKind, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { parseConfig } from '../src/config/load.js';
import { AssignmentCounters } from '../src/experiments/counters.js';
import { RuntimeHolder } from '../src/runtime.js';
import type { RequestRecord } from '../src/telemetry/types.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { scrapeMetrics, scrapeMetricsText } from './helpers/metrics.js';
import type { PromText } from './telemetry-e2e/prom-text.js';

const CLIENT_KEY = 'sk-client-key-turned-away-123456';
const PROMPT = 'a prompt that must never reach a log line';

/** A JSON error envelope with the spacing and escapes of its upstream: a re-serialised body would differ. */
const envelope = (code: string | null, type = 'invalid_request_error') =>
  `{ "error": {\n  "message": "The model \\u00abtext-embedding-9\\u00bb does not exist",\n  "type": "${type}", "param": "model", "code": ${code === null ? 'null' : `"${code}"`} } }\n`;
const HTML_PAGE = Buffer.from(`<html><body>${'<p>Bad gateway, retry later.</p>\n'.repeat(32 * 1024)}</body></html>`); // ~1 MiB
const FIRST_PART = 256 * 1024;
/** A JSON error envelope past the 64 KB the gateway keeps of an error body. */
const HUGE_ENVELOPE = `{"error":{"message":"${'x'.repeat(100 * 1024)}","type":"invalid_request_error","param":null,"code":"too_big_to_read"}}`;

let upstreamServers: Server[] = [];
/** Resolved by the test once its client received the first part of the large body. */
let clientGotFirstPart: () => void = () => {};
let gw: TestGateway;
let log: GatewayLogCapture;
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(async () => {
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  trace.setGlobalTracerProvider(provider);
  log = captureGatewayLog();
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      const testCase = String(req.headers['x-test-case']);
      if (testCase === 'json400' || testCase === 'nocode503') {
        // Sent in two writes: the code is read across chunks.
        const body = testCase === 'json400' ? envelope('model_not_found') : envelope(null, 'server_error');
        res.writeHead(testCase === 'json400' ? 400 : 503, { 'content-type': 'application/json', 'x-request-id': `req_${testCase}` });
        res.write(body.slice(0, 20));
        await new Promise((r) => setTimeout(r, 20));
        res.end(body.slice(20));
      } else if (testCase === 'html500') {
        // Chunked (no content-length): the rest comes only once the client has the first part.
        res.writeHead(500, { 'content-type': 'text/html' });
        res.write(HTML_PAGE.subarray(0, FIRST_PART));
        await new Promise<void>((resolve) => (clientGotFirstPart = resolve));
        res.end(HTML_PAGE.subarray(FIRST_PART));
      } else if (testCase === 'huge400') {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(HUGE_ENVELOPE);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      }
    });
  });
  upstreamServers = [upstream];
  const origin = await listenOnLoopback(upstream);
  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: info, requests: true}
templates: {dir: templates}
upstreams:
  - name: mock
    base_url: ${origin}/v1
    retry: {attempts: 0}
    breaker: {failures: 0}
routing: {default: [mock]}
`);
});

afterAll(async () => {
  await gw?.close();
  await closeServers(upstreamServers);
  log?.restore();
  trace.disable();
  await provider.shutdown();
});

const newId = (label: string) => `turned-away-${label}-${randomUUID()}`;


const UNMATCHED_404 = { route: 'unmatched', status_class: '4xx', error_type: 'not_found' };
const UNMATCHED_405 = { route: 'unmatched', status_class: '4xx', error_type: 'method_not_allowed' };

/** Growth of `promptgate_requests_total` with `labels` between two scrapes. */
const growth = (before: PromText, after: PromText, labels: Record<string, string>) => (after.sum('promptgate_requests_total', labels) ?? 0) - (before.sum('promptgate_requests_total', labels) ?? 0);

describe('requests no route serves', () => {
  it('a client whose base URL lacks /v1 (POST /chat/completions) is counted as unmatched 404 and logged with its path, without key or body', async () => {
    const id = newId('no-v1');
    const before = await scrapeMetrics(gw.url);
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: gw.url, maxRetries: 0 });
    const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }, { headers: { 'x-request-id': id } }).then(
      () => undefined,
      (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
    );
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err!.code).toBe('not_found');

    const { line, raw } = await log.requestLine(id);
    expect(line).toMatchObject({ msg: 'request', method: 'POST', route: 'unmatched', path: '/chat/completions', status: 404, outcome: 'error', error_type: 'not_found', attempts: 0 });
    expect(raw).not.toContain(CLIENT_KEY.slice(3));
    expect(raw).not.toContain(PROMPT);
    const after = await scrapeMetrics(gw.url);
    expect(growth(before, after, UNMATCHED_404)).toBe(1);
    expect(after.select('promptgate_requests_total', UNMATCHED_404)[0].labels).toMatchObject({ upstream: '', gen_ai_request_model: '', stream: 'false' });
  });

  it('a method the chat route does not take (PUT) is counted as unmatched 405 and logged; the answer keeps its Allow header', async () => {
    const id = newId('405');
    const before = await scrapeMetrics(gw.url);
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'PUT', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: '{}' });
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD, OPTIONS, POST');
    expect(res.headers['x-request-id'], 'an answer that belongs to no proxied request carries no request id').toBeUndefined();
    expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');

    const { line } = await log.requestLine(id);
    expect(line).toMatchObject({ method: 'PUT', route: 'unmatched', path: '/v1/chat/completions', status: 405, error_type: 'method_not_allowed' });
    expect(growth(before, await scrapeMetrics(gw.url), UNMATCHED_405)).toBe(1);
  });

  it('the path never becomes a label: 60 distinct unknown paths (past max_label_values) add to the one unmatched series', async () => {
    const before = await scrapeMetrics(gw.url);
    for (let i = 0; i < 60; i++) await (await request(`${gw.url}/no-such-route-${i}/chat/completions`, { method: 'POST', body: '{}' })).body.dump();
    await new Promise((r) => setTimeout(r, 50));
    const text = await scrapeMetricsText(gw.url);
    expect(text).not.toContain('no-such-route');
    const after = await scrapeMetrics(gw.url);
    expect(growth(before, after, UNMATCHED_404)).toBe(60);
    const routes = new Set(after.samples.map((s) => s.labels.route).filter((r) => r !== undefined));
    expect([...routes].every((r) => r === 'unmatched' || r === '' || r.startsWith('/v1/')), [...routes].join(', ')).toBe(true);
    expect(routes.has('/chat/completions')).toBe(false);
    // The log line keeps the path (cut to 100 characters), where it tells the operator what the client asked for.
    expect(log.requests.some((l) => l.path === '/no-such-route-59/chat/completions')).toBe(true);
  });
});

describe('early refusals are accounted under their route', () => {
  /** An app served by `app.request()`, its finished records collected (no sockets). */
  function makeApp() {
    const config = parseConfig(`upstreams: [{name: sim, simulate: {latency_ms: 0, chunks: 3}}]\nrouting: {default: [sim]}\ntemplates: {dir: templates-that-do-not-exist}\n`, {
      file: '/tmp/turned-away/gateway.config.yaml',
      env: {},
    });
    const records: RequestRecord[] = [];
    const lifecycle = { draining: false };
    const silent = { debug() {}, info() {}, warn() {}, error() {} };
    const app = createApp(new RuntimeHolder(config), { lifecycle, logger: silent, counters: new AssignmentCounters(), onRequestDone: (r) => records.push(r) });
    return { app, records, lifecycle };
  }

  it('a draining gateway\'s 503 on the chat and pass-through routes', async () => {
    const { app, records, lifecycle } = makeApp();
    lifecycle.draining = true;
    const chat = await app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'drain-chat' }, body: '{}' });
    const models = await app.request('/v1/models', { headers: { 'x-request-id': 'drain-models' } });
    expect([chat.status, models.status]).toEqual([503, 503]);
    expect(chat.headers.get('retry-after')).toBe('1');
    expect(chat.headers.get('x-request-id')).toBe('drain-chat');
    expect(records.map((r) => [r.requestId, r.route, r.status, r.outcome, r.errorType, r.attempts])).toEqual([
      ['drain-chat', '/v1/chat/completions', 503, 'error', 'shutting_down', 0],
      ['drain-models', '/v1/models', 503, 'error', 'shutting_down', 0],
    ]);
  });

  it('a pass-through path with an encoded dot segment (400)', async () => {
    const { app, records } = makeApp();
    const res = await app.request('/v1/files/..%2F..%2Fadmin');
    expect(res.status).toBe(400);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ route: '/v1/files', status: 400, errorType: 'invalid_request' });
  });

  it('the chat route\'s 415, 413 and invalid JSON were already accounted, under the chat route', async () => {
    const { app, records } = makeApp();
    await app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    await app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    await app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"x":"${'x'.repeat(5 * 1024 * 1024)}"}` });
    expect(records.map((r) => [r.route, r.status, r.errorType])).toEqual([
      ['/v1/chat/completions', 415, 'unsupported_media_type'],
      ['/v1/chat/completions', 400, 'invalid_json'],
      ['/v1/chat/completions', 413, 'body_too_large'],
    ]);
  });
});

describe('upstream errors on pass-through routes', () => {
  /** The finished CLIENT span of the request whose SERVER span has `promptgate.request.id` `id`. */
  function clientSpanOf(id: string): ReadableSpan | undefined {
    const spans = exporter.getFinishedSpans();
    const server = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes['promptgate.request.id'] === id);
    return spans.find((s) => s.kind === SpanKind.CLIENT && s.spanContext().traceId === server?.spanContext().traceId);
  }

  async function embeddings(id: string, testCase: string) {
    const res = await request(`${gw.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': id, 'x-test-case': testCase },
      body: JSON.stringify({ model: 'text-embedding-9', input: PROMPT }),
    });
    return { status: res.statusCode, headers: res.headers, bytes: Buffer.from(await res.body.arrayBuffer()) };
  }

  it.each([
    ['json400', 400, envelope('model_not_found'), 'model_not_found'],
    ['nocode503', 503, envelope(null, 'server_error'), 'server_error'],
  ])('%s on /v1/embeddings: relayed byte for byte, its code in the log line and on the CLIENT span', async (testCase, status, body, code) => {
    const id = newId(testCase);
    const res = await embeddings(id, testCase);
    expect(res.status).toBe(status);
    expect(res.bytes.toString('utf8')).toBe(body);
    const { line, raw } = await log.requestLine(id);
    expect(line).toMatchObject({ route: '/v1/embeddings', status, error_type: `upstream_${status}`, upstream_error_code: code, upstream_request_id: `req_${testCase}` });
    expect(raw, 'never the message').not.toContain('does not exist');
    expect(clientSpanOf(id)?.attributes['promptgate.upstream.error_code']).toBe(code);
  });

  it('a large non-JSON error body goes through as it streams, unchanged, and has no code', async () => {
    const id = newId('html');
    const res = await request(`${gw.url}/v1/files`, { method: 'GET', headers: { 'x-request-id': id, 'x-test-case': 'html500' } });
    expect(res.statusCode).toBe(500);
    const chunks: Buffer[] = [];
    let received = 0;
    // The upstream sends the rest only once the first part reached the client: a gateway that
    // held the body until its end would never answer.
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer);
      received += (chunk as Buffer).length;
      if (received >= FIRST_PART) clientGotFirstPart();
    }
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(HTML_PAGE.length);
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(HTML_PAGE).digest('hex'));
    const { line } = await log.requestLine(id);
    expect(line).toMatchObject({ route: '/v1/files', status: 500, error_type: 'upstream_500' });
    expect(line).not.toHaveProperty('upstream_error_code');
  });

  it('a JSON error body past the 64 KB cap is relayed whole but not kept: no code', async () => {
    const id = newId('huge');
    const res = await embeddings(id, 'huge400');
    expect(res.status).toBe(400);
    expect(res.bytes.toString('utf8')).toBe(HUGE_ENVELOPE);
    const { line } = await log.requestLine(id);
    expect(line).toMatchObject({ status: 400, error_type: 'upstream_400' });
    expect(line).not.toHaveProperty('upstream_error_code');
    expect(clientSpanOf(id)?.attributes).not.toHaveProperty('promptgate.upstream.error_code');
  });
});
