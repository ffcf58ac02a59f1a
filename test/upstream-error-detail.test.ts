/**
 * The upstream's error detail in the request log line and the CLIENT span: an operator who
 * sees `error_type=upstream_429` can tell an exhausted quota (`insufficient_quota`: billing,
 * retries never help) from a rate limit (`rate_limit_exceeded`: retry later), and hand the
 * provider's request id (its `x-request-id`, openai-node's `_request_id`) to its support.
 *
 * One real gateway (127.0.0.1, port 0) with `logging.requests: true` (lines caught on stdout)
 * and tracing on (the in-test OTLP receiver), in front of a small upstream answering per the
 * `x-test-case` request header; the official `openai` client calls it. Neither value becomes
 * a Prometheus label, and neither ever carries the error's message.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { STATUS_ERROR, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './telemetry-e2e/otlp-receiver.js';

const KEY_IN_MESSAGE = 'sk-proj-userEchoedKey1234567890';
const COMPLETION = {
  id: 'chatcmpl-detail',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
};
/** Quotes, a backslash, a tab, `<>`, a Latin-1 byte and 5,000 more characters: what HTTP lets through (no CR/LF, no other control characters). */
const HOSTILE_ID = `req_"x\\y\t<z>\xff` + 'A'.repeat(5000);

interface Answer {
  status: number;
  /** The `x-request-id` header; none when undefined. */
  id?: string;
  contentType?: string;
  body: string;
}

const envelope = (message: string, type: string, code: string | null) => JSON.stringify({ error: { message, type, param: null, code } });
const CASES: Record<string, Answer> = {
  quota: {
    status: 429,
    id: 'req_quota_0001',
    body: envelope('You exceeded your current quota, please check your plan and billing details.', 'insufficient_quota', 'insufficient_quota'),
  },
  rate: {
    status: 429,
    id: 'req_rate_0001',
    body: envelope('Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3.', 'requests', 'rate_limit_exceeded'),
  },
  html500: { status: 500, id: 'req_html_0001', contentType: 'text/html', body: '<html><body>Internal Server Error</body></html>' },
  ok: { status: 200, id: 'req_ok_0001', body: JSON.stringify(COMPLETION) },
  noid: { status: 200, body: JSON.stringify(COMPLETION) },
  hostile: { status: 200, id: HOSTILE_ID, body: JSON.stringify(COMPLETION) },
  // A code that is a sentence echoing the request (and a key): not recorded; the type is.
  sentence: { status: 400, id: 'req_sentence_0001', body: envelope(`Your prompt mentions ${KEY_IN_MESSAGE}`, 'invalid_request_error', `Prompt "${KEY_IN_MESSAGE}" rejected`) },
  // No code: the type stands in for it.
  nocode: { status: 503, id: 'req_nocode_0001', body: envelope('The engine is currently overloaded, please try again later.', 'server_error', null) },
  stream: {
    status: 200,
    id: 'req_stream_0001',
    contentType: 'text/event-stream',
    body:
      `data: ${JSON.stringify({ id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }] })}\n\n` +
      `data: ${JSON.stringify({ error: { message: `The server had an error while processing your request (${KEY_IN_MESSAGE}).`, type: 'server_error', param: null, code: 'server_overloaded' } })}\n\n`,
  },
  embeddings429: { status: 429, id: 'req_embed_0001', body: envelope('Rate limit reached.', 'requests', 'rate_limit_exceeded') },
};

let upstreamServer: Server;
let receiver: OtlpReceiver;
let gw: TestGateway;
let client: OpenAI;
let gatewayLog: GatewayLogCapture;

beforeAll(async () => {
  upstreamServer = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = CASES[String(req.headers['x-test-case'])] ?? { status: 404, body: envelope('no such case', 'invalid_request_error', null) };
      const headers: Record<string, string> = { 'content-type': answer.contentType ?? 'application/json' };
      if (answer.id !== undefined) headers['x-request-id'] = answer.id;
      res.writeHead(answer.status, headers);
      res.end(answer.body);
    });
  });
  await new Promise<void>((r) => upstreamServer.listen(0, '127.0.0.1', r));
  const upstreamUrl = `http://127.0.0.1:${(upstreamServer.address() as AddressInfo).port}/v1`;

  receiver = await startOtlpReceiver();
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
  gatewayLog = captureGatewayLog();

  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: info, requests: true}
templates: {dir: templates}
upstreams:
  - name: mock
    base_url: ${upstreamUrl}
    api_key: sk-test-secret-key-123456
    retry: {attempts: 0}
    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}
    breaker: {failures: 0}
routing: {default: [mock]}
`);
  client = new OpenAI({ apiKey: 'sk-client-key', baseURL: `${gw.url}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  await receiver?.close();
  await new Promise<void>((r) => (upstreamServer ? upstreamServer.close(() => r()) : r()));
  gatewayLog.restore();
});

interface Records {
  log: Record<string, any>;
  rawLog: string;
  span: ReceivedSpan;
}

/** The log line (waited for: accounting may end after the client's answer) and the CLIENT span of request `id`. */
async function recordsOf(id: string): Promise<Records> {
  const until = Date.now() + 5000;
  while (!gatewayLog.requests.some((l) => l.request_id === id) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const index = gatewayLog.requests.findIndex((l) => l.request_id === id);
  expect(index, `log line of ${id}`).toBeGreaterThanOrEqual(0);
  const { client: span } = await receiver.waitForRequest(id, 3000);
  expect(span, `CLIENT span of ${id}`).toBeDefined();
  return { log: gatewayLog.requests[index], rawLog: gatewayLog.rawRequests[index], span: span! };
}

const newId = (label: string) => `detail-${label}-${randomUUID()}`;
const options = (testCase: string, id: string) => ({ headers: { 'x-test-case': testCase, 'x-request-id': id } });
const ask = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hi' }] };

/** Sends a chat request expected to fail and returns openai-node's error. */
async function failing(testCase: string, id: string): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await client.chat.completions.create(ask, options(testCase, id)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
}

describe('upstream error detail: log line and CLIENT span', () => {
  it('tells an exhausted quota (429 insufficient_quota) apart, with the provider request id the client saw', async () => {
    const id = newId('quota');
    const err = await failing('quota', id);
    expect(err.status).toBe(429);
    expect(err.code).toBe('insufficient_quota');
    expect(err.requestID).toBe('req_quota_0001');
    const { log, rawLog, span } = await recordsOf(id);
    expect(log).toMatchObject({ status: 429, error_type: 'upstream_429', upstream_error_code: 'insufficient_quota', upstream_request_id: 'req_quota_0001' });
    expect(rawLog).not.toContain('exceeded your current quota');
    expect(span.attributes).toMatchObject({
      'error.type': 'upstream_429',
      'promptgate.upstream.error_code': 'insufficient_quota',
      'http.response.header.x-request-id': ['req_quota_0001'],
    });
    expect(span.status?.code).toBe(STATUS_ERROR);
  });

  it('tells a rate limit (429 rate_limit_exceeded) apart under the same error_type', async () => {
    const id = newId('rate');
    const err = await failing('rate', id);
    expect(err.status).toBe(429);
    const { log, rawLog, span } = await recordsOf(id);
    expect(log).toMatchObject({ error_type: 'upstream_429', upstream_error_code: 'rate_limit_exceeded', upstream_request_id: 'req_rate_0001' });
    expect(rawLog).not.toContain('org-x');
    expect(span.attributes['promptgate.upstream.error_code']).toBe('rate_limit_exceeded');
    expect(span.attributes['http.response.header.x-request-id']).toEqual(['req_rate_0001']);
  });

  it('a 500 with a non-JSON body has the request id and no error code', async () => {
    const id = newId('html');
    const err = await failing('html500', id);
    expect(err.status).toBe(500);
    const { log, span } = await recordsOf(id);
    expect(log).toMatchObject({ status: 500, error_type: 'upstream_500', upstream_request_id: 'req_html_0001' });
    expect(log).not.toHaveProperty('upstream_error_code');
    expect(span.attributes['http.response.header.x-request-id']).toEqual(['req_html_0001']);
    expect(span.attributes).not.toHaveProperty('promptgate.upstream.error_code');
  });

  it('an error with a null code records its type', async () => {
    const id = newId('nocode');
    const err = await failing('nocode', id);
    expect(err.status).toBe(503);
    const { log, span } = await recordsOf(id);
    expect(log).toMatchObject({ error_type: 'upstream_503', upstream_error_code: 'server_error' });
    expect(span.attributes['promptgate.upstream.error_code']).toBe('server_error');
  });

  it('a code that is a sentence echoing the request (a key in it) is not recorded: the type is, and the message never', async () => {
    const id = newId('sentence');
    const err = await failing('sentence', id);
    expect(err.status).toBe(400);
    const { log, rawLog, span } = await recordsOf(id);
    expect(log.upstream_error_code).toBe('invalid_request_error');
    expect(rawLog).not.toContain('userEchoedKey');
    expect(rawLog).not.toContain('Prompt');
    expect(span.attributes['promptgate.upstream.error_code']).toBe('invalid_request_error');
    expect(JSON.stringify(span.attributes)).not.toContain('userEchoedKey');
  });

  it('a success has the request id only', async () => {
    const id = newId('ok');
    const reply = await client.chat.completions.create(ask, options('ok', id));
    expect(reply._request_id).toBe('req_ok_0001');
    const { log, span } = await recordsOf(id);
    expect(log).toMatchObject({ status: 200, outcome: 'ok', upstream_request_id: 'req_ok_0001' });
    expect(log).not.toHaveProperty('upstream_error_code');
    expect(span.attributes['http.response.header.x-request-id']).toEqual(['req_ok_0001']);
    expect(span.attributes).not.toHaveProperty('promptgate.upstream.error_code');
  });

  it('an answer without x-request-id has neither field', async () => {
    const id = newId('noid');
    await client.chat.completions.create(ask, options('noid', id));
    const { log, span } = await recordsOf(id);
    expect(log).not.toHaveProperty('upstream_request_id');
    expect(span.attributes).not.toHaveProperty('http.response.header.x-request-id');
  });

  it('a hostile x-request-id (5,000 characters, quotes, backslash, tab, non-ASCII) is cut to 128 safe characters', async () => {
    const id = newId('hostile');
    const reply = await client.chat.completions.create(ask, options('hostile', id));
    expect(reply.choices[0].message.content).toBe('hi');
    const { log, span } = await recordsOf(id);
    const expected = 'req__x_y__z__' + 'A'.repeat(128 - 'req__x_y__z__'.length);
    expect(log.upstream_request_id).toBe(expected);
    expect(span.attributes['http.response.header.x-request-id']).toEqual([expected]);
  });

  it('an error event inside a stream after its 200 records the event code and the request id', async () => {
    const id = newId('stream');
    const { data: stream, request_id } = await client.chat.completions.create({ ...ask, stream: true }, options('stream', id)).withResponse();
    expect(request_id).toBe('req_stream_0001');
    const err = await (async () => {
      for await (const _chunk of stream) void _chunk;
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const { log, rawLog, span } = await recordsOf(id);
    expect(log).toMatchObject({ status: 200, outcome: 'error', error_type: 'upstream_stream_error', upstream_error_code: 'server_overloaded', upstream_request_id: 'req_stream_0001' });
    expect(rawLog).not.toContain('userEchoedKey');
    expect(span.attributes['promptgate.upstream.error_code']).toBe('server_overloaded');
  });

  it('a pass-through route records the request id and the error code (read as the body streams past)', async () => {
    const id = newId('embed');
    const err = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' }, options('embeddings429', id)).then(
      () => undefined,
      (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
    );
    expect(err?.status).toBe(429);
    const { log, span } = await recordsOf(id);
    expect(log).toMatchObject({ route: '/v1/embeddings', error_type: 'upstream_429', upstream_error_code: 'rate_limit_exceeded', upstream_request_id: 'req_embed_0001' });
    expect(span.attributes['http.response.header.x-request-id']).toEqual(['req_embed_0001']);
    expect(span.attributes['promptgate.upstream.error_code']).toBe('rate_limit_exceeded');
  });

  it('neither value becomes a Prometheus label', async () => {
    const id = newId('metrics');
    await failing('quota', id);
    await recordsOf(id);
    const text = await (await request(`${gw.url}/metrics`)).body.text();
    expect(text).toContain('upstream_429');
    expect(text).not.toContain('insufficient_quota');
    expect(text).not.toContain('req_quota_0001');
  });
});
