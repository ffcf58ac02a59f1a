/**
 * End to end: traces of real requests through the real gateway (real sockets) in front of
 * the mock upstream, exported by the OpenTelemetry SDK to an in-test OTLP/HTTP JSON receiver.
 *
 * The SDK is process-wide: `startGateway` starts it (from the OTEL_* environment set below,
 * before the first gateway starts) and the gateway's shutdown flushes and stops it, so the
 * second gateway of this file (capture_content on) starts a fresh one. With a 50 ms batch
 * delay spans arrive while the gateway runs; each test waits for its request's spans by
 * `promptgate.request.id` (the `x-request-id` the test sends).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startMockUpstream, STREAM_WORDS, type MockUpstream, type RecordedRequest } from '../helpers/mock-upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';

const INCOMING_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const INCOMING_PARENT = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const MESSAGES = [{ role: 'user', content: 'hi' }];
const COMPLETION = STREAM_WORDS.join('');
/** Usage with cached and reasoning tokens (OpenAI shape). */
const USAGE = {
  prompt_tokens: 1000,
  completion_tokens: 500,
  total_tokens: 1500,
  prompt_tokens_details: { cached_tokens: 200 },
  completion_tokens_details: { reasoning_tokens: 100 },
};
/** gpt-4o-mini (input 0.15, cached_input 0.075, output 0.6 USD per 1M): (800*0.15 + 200*0.075 + 500*0.6) / 1e6. */
const USAGE_COST = 0.000435;

let receiver: OtlpReceiver;
let upstream: MockUpstream;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  upstream = await startMockUpstream();
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES', 'OTEL_TRACES_EXPORTER', 'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_SDK_DISABLED', 'OTEL_PROPAGATORS']) {
    delete process.env[name];
  }
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
  delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL; // the default, http/protobuf (the receiver decodes it)
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
});

afterAll(async () => {
  await upstream?.close();
  await receiver?.close();
});

/** One mock upstream, plus `dead` (a refused port) for `dead-model`, and `fallback-model` going dead -> mock. */
function config(extra = ''): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: mock
    base_url: ${upstream.url}
    api_key: sk-test-secret-key-123456
    retry: {attempts: 2, backoff_ms: 5, max_backoff_ms: 20}
    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}
    breaker: {failures: 0}
  - {name: dead, base_url: "http://127.0.0.1:1/v1", retry: {attempts: 1, backoff_ms: 5, max_backoff_ms: 20}, breaker: {failures: 0}}
routing: {default: [mock], models: {dead-model: [dead], fallback-model: [dead, mock]}}
${extra}
`;
}

const chat = (extra: object = {}) => JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, ...extra });

async function post(gw: TestGateway, body: string, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

/** The requests the upstream saw for one client request (by the forwarded x-request-id). */
const seenUpstream = (requestId: string): RecordedRequest[] => upstream.requests.filter((r) => r.headers['x-request-id'] === requestId);

/** Every value of a header as the upstream received it (repeats kept). */
function rawValues(r: RecordedRequest, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i].toLowerCase() === name) out.push(r.rawHeaders[i + 1]);
  return out;
}

const newId = (label: string) => `e2e-${label}-${randomUUID()}`;

describe('tracing through the gateway (capture_content off)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(config());
  });
  afterAll(async () => {
    await gw?.close();
  });

  describe('a non-stream request continuing an incoming traceparent', () => {
    const id = newId('continued');
    let res: Awaited<ReturnType<typeof post>>;
    let server: ReceivedSpan;
    let client: ReceivedSpan;
    beforeAll(async () => {
      res = await post(gw, chat(), {
        'x-request-id': id,
        traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`,
        tracestate: 'vendor=abc',
        'x-mock-usage': JSON.stringify(USAGE),
        'x-mock-model': 'gpt-4o-mini-2024-07-18',
      });
      const spans = await receiver.waitForRequest(id);
      server = spans.server;
      client = spans.client!;
    });

    it('answers 200 and exports over OTLP/HTTP protobuf (the default)', () => {
      expect(res.status).toBe(200);
      expect(receiver.exports.length).toBeGreaterThan(0);
      expect(receiver.exports.every((e) => e.url === '/v1/traces' && e.contentType === 'application/x-protobuf')).toBe(true);
    });

    it('makes a SERVER span that continues the incoming trace, with the caller as parent', () => {
      expect(server.name).toBe('POST /v1/chat/completions');
      expect(server.kind).toBe(SPAN_KIND_SERVER);
      expect(server.traceId).toBe(INCOMING_TRACE);
      expect(server.parentSpanId).toBe(INCOMING_PARENT);
      expect(server.scope).toBe('promptgate');
      expect(server.resource['service.name']).toBe('promptgate');
      expect(server.attributes).toMatchObject({
        'http.request.method': 'POST',
        'http.route': '/v1/chat/completions',
        'url.path': '/v1/chat/completions',
        'url.scheme': 'http',
        'http.response.status_code': 200,
        'promptgate.request.id': id,
      });
      expect(server.attributes['error.type']).toBeUndefined();
      expect(server.status?.code ?? 0).not.toBe(STATUS_ERROR);
    });

    it('makes a CLIENT span `chat gpt-4o-mini` that is the SERVER span\'s child', () => {
      expect(client).toBeDefined();
      expect(client.name).toBe('chat gpt-4o-mini');
      expect(client.kind).toBe(SPAN_KIND_CLIENT);
      expect(client.traceId).toBe(INCOMING_TRACE);
      expect(client.parentSpanId).toBe(server.spanId);
      // Exactly one CLIENT span for the request.
      expect(receiver.spans.filter((s) => s.parentSpanId === server.spanId)).toHaveLength(1);
    });

    it('sends exactly one traceparent upstream: the gateway trace, the CLIENT span as parent', () => {
      const seen = seenUpstream(id);
      expect(seen).toHaveLength(1);
      const values = rawValues(seen[0], 'traceparent');
      expect(values).toHaveLength(1);
      const m = TRACEPARENT.exec(values[0]);
      expect(m).not.toBeNull();
      expect(m![1]).toBe(server.traceId);
      expect(m![2]).toBe(client.spanId);
      expect(m![2]).not.toBe(INCOMING_PARENT);
      // The client's own span id goes nowhere upstream (no second traceparent, no copy in another header).
      expect(JSON.stringify(seen[0].rawHeaders)).not.toContain(INCOMING_PARENT);
      expect(rawValues(seen[0], 'tracestate')).toEqual(['vendor=abc']);
    });

    it('puts every applicable GenAI attribute on the CLIENT span with the right value', () => {
      const a = client.attributes;
      expect(a).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
        'gen_ai.response.id': 'chatcmpl-mock123',
        'gen_ai.response.finish_reasons': ['stop'],
        'gen_ai.usage.input_tokens': 1000,
        'gen_ai.usage.output_tokens': 500,
        'gen_ai.usage.cache_read.input_tokens': 200,
        'gen_ai.usage.reasoning.output_tokens': 100,
        'gen_ai.request.stream': false,
        'server.address': '127.0.0.1',
        'server.port': upstream.port,
        'promptgate.usage.estimated': false,
        'promptgate.upstream.attempts': 1,
      });
      expect(a['promptgate.cost.usd']).toBeCloseTo(USAGE_COST, 15);
      expect(a['error.type']).toBeUndefined();
      expect(client.status?.code ?? 0).not.toBe(STATUS_ERROR);
    });

    it('records no content by default (capture_content false)', () => {
      expect(client.attributes['gen_ai.input.messages']).toBeUndefined();
      expect(client.attributes['gen_ai.output.messages']).toBeUndefined();
      for (const span of [client, server]) expect(JSON.stringify(span.attributes)).not.toContain(COMPLETION);
    });
  });

  // Regression: a client's B3 or Jaeger trace headers went upstream next to the gateway's
  // traceparent, so an upstream that reads them joined the client's span, not the gateway's.
  it("sends no client trace headers of other formats upstream (B3, Jaeger), only the gateway's", async () => {
    const id = newId('b3');
    const foreign = {
      b3: `${INCOMING_TRACE}-${INCOMING_PARENT}-1`,
      'x-b3-traceid': INCOMING_TRACE,
      'x-b3-spanid': INCOMING_PARENT,
      'x-b3-parentspanid': '1111111111111111',
      'x-b3-sampled': '1',
      'uber-trace-id': `${INCOMING_TRACE}:${INCOMING_PARENT}:0:1`,
    };
    expect((await post(gw, chat(), { 'x-request-id': id, ...foreign })).status).toBe(200);
    const seen = seenUpstream(id);
    expect(seen).toHaveLength(1);
    for (const name of Object.keys(foreign)) expect([name, rawValues(seen[0], name)]).toEqual([name, []]);
    expect(rawValues(seen[0], 'traceparent')).toHaveLength(1);
  });

  it('starts a new trace without an incoming traceparent; the upstream joins it', async () => {
    const id = newId('fresh');
    expect((await post(gw, chat(), { 'x-request-id': id })).status).toBe(200);
    const { server, client } = await receiver.waitForRequest(id);
    expect(server.parentSpanId || undefined).toBeUndefined();
    expect(server.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(server.traceId).not.toBe(INCOMING_TRACE);
    expect(client!.parentSpanId).toBe(server.spanId);
    const values = rawValues(seenUpstream(id)[0], 'traceparent');
    expect(values).toEqual([`00-${server.traceId}-${client!.spanId}-01`]);
  });

  // Regression: a pass-through CLIENT span was named after the path's first segment, so any
  // client could put names of its choosing into Jaeger's operation list.
  it('names a pass-through span by known API resources only (`http` for any other path)', async () => {
    const known = newId('models');
    const other = newId('other');
    await (await request(`${gw.url}/v1/models`, { headers: { 'x-request-id': known } })).body.dump();
    await (await request(`${gw.url}/v1/made-up-${randomUUID()}`, { method: 'POST', headers: { 'x-request-id': other, 'content-type': 'application/json' }, body: '{}' })).body.dump();
    expect((await receiver.waitForRequest(known)).client!.name).toBe('models');
    const { client } = await receiver.waitForRequest(other);
    expect(client!.name).toBe('http');
    expect(client!.attributes['gen_ai.operation.name']).toBe('http');
  });

  it('a stream with include_usage: stream attribute true, usage from the last chunk', async () => {
    const id = newId('stream');
    const res = await post(gw, chat({ stream: true, stream_options: { include_usage: true } }), {
      'x-request-id': id,
      traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`,
      'x-mock-usage': JSON.stringify(USAGE),
    });
    expect(res.status).toBe(200);
    expect(res.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const { server, client } = await receiver.waitForRequest(id);
    expect(server.traceId).toBe(INCOMING_TRACE);
    expect(server.parentSpanId).toBe(INCOMING_PARENT);
    expect(client!.name).toBe('chat gpt-4o-mini');
    expect(client!.attributes).toMatchObject({
      'gen_ai.request.stream': true,
      'gen_ai.response.model': 'gpt-4o-mini',
      'gen_ai.response.id': 'chatcmpl-mock123',
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.usage.input_tokens': 1000,
      'gen_ai.usage.output_tokens': 500,
      'gen_ai.usage.cache_read.input_tokens': 200,
      'gen_ai.usage.reasoning.output_tokens': 100,
      'promptgate.usage.estimated': false,
      'server.address': '127.0.0.1',
      'server.port': upstream.port,
    });
    expect(client!.attributes['promptgate.cost.usd']).toBeCloseTo(USAGE_COST, 15);
    expect(client!.attributes['error.type']).toBeUndefined();
    const values = rawValues(seenUpstream(id)[0], 'traceparent');
    expect(values).toEqual([`00-${INCOMING_TRACE}-${client!.spanId}-01`]);
  });

  it('a fallback: one CLIENT span whose server attributes name the upstream that answered', async () => {
    const id = newId('fallback');
    const res = await post(gw, chat({ model: 'fallback-model' }), { 'x-request-id': id, 'x-mock-model': 'gpt-4o-mini' });
    expect(res.status).toBe(200);
    const { server, client } = await receiver.waitForRequest(id);
    expect(client!.name).toBe('chat fallback-model');
    expect(client!.attributes).toMatchObject({
      'gen_ai.request.model': 'fallback-model',
      'gen_ai.response.model': 'gpt-4o-mini',
      'server.address': '127.0.0.1',
      'server.port': upstream.port,
      'promptgate.upstream.attempts': 3, // 2 refused on dead, 1 answered by mock
      'gen_ai.usage.input_tokens': 11,
      'gen_ai.usage.output_tokens': 6,
    });
    // Priced at the answering model: (11*0.15 + 6*0.6) / 1e6.
    expect(client!.attributes['promptgate.cost.usd']).toBeCloseTo(0.00000525, 15);
    expect(client!.attributes['error.type']).toBeUndefined();
    expect(receiver.spans.filter((s) => s.parentSpanId === server.spanId)).toHaveLength(1);
    expect(rawValues(seenUpstream(id)[0], 'traceparent')).toEqual([`00-${server.traceId}-${client!.spanId}-01`]);
  });

  it('an unsampled incoming traceparent: the upstream still gets one traceparent of that trace, not the caller\'s span', async () => {
    const id = newId('unsampled');
    const res = await post(gw, chat(), { 'x-request-id': id, traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-00` });
    expect(res.status).toBe(200);
    const values = rawValues(seenUpstream(id)[0], 'traceparent');
    expect(values).toHaveLength(1);
    const m = TRACEPARENT.exec(values[0])!;
    expect(m[1]).toBe(INCOMING_TRACE);
    expect(m[2]).not.toBe(INCOMING_PARENT);
    expect(m[3]).toBe('00');
  });

  describe('a client abort mid-stream', () => {
    const id = newId('abort');
    let server: ReceivedSpan;
    let client: ReceivedSpan | undefined;
    beforeAll(async () => {
      const ac = new AbortController();
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': id, 'x-mock-chunk-delay-ms': '200' },
        body: chat({ stream: true }),
        signal: ac.signal,
      });
      expect(res.statusCode).toBe(200);
      let text = '';
      for await (const chunk of res.body) {
        text += String(chunk);
        if (text.includes(STREAM_WORDS[1])) break; // leaving the loop destroys the body
      }
      ac.abort();
      ({ server, client } = await receiver.waitForRequest(id));
    });

    it('ends both spans with error.type client_abort', () => {
      expect(client).toBeDefined();
      expect(client!.attributes['error.type']).toBe('client_abort');
      expect(server.attributes['error.type']).toBe('client_abort');
      expect(client!.attributes['gen_ai.request.stream']).toBe(true);
      // The usage was estimated from what had been streamed, and still recorded.
      expect(client!.attributes['promptgate.usage.estimated']).toBe(true);
      expect(client!.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
      expect(client!.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    });

    // Regression: a cancelled stream left the CLIENT span status UNSET despite error.type.
    it('ends the CLIENT span with ERROR status', () => {
      expect(client!.status?.code).toBe(STATUS_ERROR);
    });
  });

  it('an upstream 500 after retries sets error.type and ERROR status on both spans', async () => {
    const id = newId('500');
    const res = await post(gw, chat(), { 'x-request-id': id, 'x-mock-status': '500' });
    expect(res.status).toBe(500);
    expect(seenUpstream(id)).toHaveLength(3); // 1 try + 2 retries
    const { server, client } = await receiver.waitForRequest(id);
    expect(client!.attributes['error.type']).toBe('upstream_500');
    expect(client!.status?.code).toBe(STATUS_ERROR);
    expect(client!.attributes['promptgate.upstream.attempts']).toBe(3);
    expect(client!.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
    expect(client!.attributes['promptgate.cost.usd']).toBeUndefined();
    expect(server.attributes['error.type']).toBe('upstream_500');
    expect(server.attributes['http.response.status_code']).toBe(500);
    expect(server.status?.code).toBe(STATUS_ERROR);
    // One CLIENT span for all three attempts, and every attempt carried its traceparent.
    expect(receiver.spans.filter((s) => s.parentSpanId === server.spanId)).toHaveLength(1);
    for (const r of seenUpstream(id)) expect(rawValues(r, 'traceparent')).toEqual([`00-${server.traceId}-${client!.spanId}-01`]);
  });

  describe('an unreachable upstream (connection refused, 1 try + 1 retry)', () => {
    const id = newId('dead');
    let server: ReceivedSpan;
    let client: ReceivedSpan | undefined;
    beforeAll(async () => {
      const res = await post(gw, chat({ model: 'dead-model' }), { 'x-request-id': id });
      expect(res.status).toBe(503);
      ({ server, client } = await receiver.waitForRequest(id));
    });

    it('has a CLIENT span `chat dead-model` with error.type and ERROR status; the SERVER span too', () => {
      expect(client).toBeDefined();
      expect(client!.name).toBe('chat dead-model');
      expect(client!.attributes).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'dead-model',
        'server.address': '127.0.0.1',
        'server.port': 1,
        'error.type': 'upstream_unavailable',
      });
      expect(client!.status?.code).toBe(STATUS_ERROR);
      expect(server.attributes['error.type']).toBe('upstream_unavailable');
      expect(server.attributes['http.response.status_code']).toBe(503);
      expect(server.status?.code).toBe(STATUS_ERROR);
    });

    // Regression: attempts were only recorded after forward() returned.
    it('reports the attempts made on the CLIENT span', () => {
      expect(client!.attributes['promptgate.upstream.attempts']).toBe(2);
    });
  });
});

describe('tracing through the gateway (capture_content: true)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(config('telemetry: {capture_content: true}'));
  });
  afterAll(async () => {
    await gw?.close();
  });

  const expectedInput = [{ role: 'user', parts: [{ type: 'text', content: 'hi' }] }];
  const expectedOutput = [{ role: 'assistant', parts: [{ type: 'text', content: COMPLETION }], finish_reason: 'stop' }];

  it('records prompt and completion on the CLIENT span (non-stream)', async () => {
    const id = newId('content');
    expect((await post(gw, chat(), { 'x-request-id': id })).status).toBe(200);
    const { server, client } = await receiver.waitForRequest(id);
    expect(JSON.parse(client!.attributes['gen_ai.input.messages'] as string)).toEqual(expectedInput);
    expect(JSON.parse(client!.attributes['gen_ai.output.messages'] as string)).toEqual(expectedOutput);
    expect(server.attributes['gen_ai.input.messages']).toBeUndefined();
  });

  // Regression: the prompt was kept only once an upstream answered, so the span of a request
  // that no upstream answered (when the prompt matters most) had none.
  it('records the prompt on the CLIENT span of a request no upstream answered', async () => {
    const id = newId('content-dead');
    expect((await post(gw, chat({ model: 'dead-model' }), { 'x-request-id': id })).status).toBe(503);
    const { client } = await receiver.waitForRequest(id);
    expect(JSON.parse(client!.attributes['gen_ai.input.messages'] as string)).toEqual(expectedInput);
    expect(client!.attributes['gen_ai.output.messages']).toBeUndefined();
  });

  it('records prompt and completion on the CLIENT span (stream)', async () => {
    const id = newId('content-stream');
    expect((await post(gw, chat({ stream: true }), { 'x-request-id': id })).status).toBe(200);
    const { client } = await receiver.waitForRequest(id);
    expect(JSON.parse(client!.attributes['gen_ai.input.messages'] as string)).toEqual(expectedInput);
    expect(JSON.parse(client!.attributes['gen_ai.output.messages'] as string)).toEqual(expectedOutput);
    expect(client!.attributes['gen_ai.request.stream']).toBe(true);
    expect(client!.attributes['promptgate.usage.estimated']).toBe(false);
  });

  it('records tool calls the model returns, and one message per choice with n > 1 (stream and non-stream)', async () => {
    for (const stream of [false, true]) {
      const id = newId(`content-tools-${stream}`);
      expect((await post(gw, chat({ stream }), { 'x-request-id': id, 'x-mock-tool-calls': '2' })).status).toBe(200);
      const { client } = await receiver.waitForRequest(id);
      const output = JSON.parse(client!.attributes['gen_ai.output.messages'] as string) as Array<{ role: string; parts: Array<Record<string, unknown>>; finish_reason: string }>;
      expect(output, `stream ${stream}`).toHaveLength(1);
      expect(output[0].finish_reason).toBe('tool_calls');
      const calls = output[0].parts.filter((p) => p.type === 'tool_call');
      expect(calls, `stream ${stream}`).toHaveLength(2);
      for (const call of calls) {
        expect(call.id).toEqual(expect.any(String));
        expect(call.name).toEqual(expect.any(String));
        expect(typeof call.arguments).toBe('object'); // the argument pieces joined and parsed
      }
      expect(output[0].parts.some((p) => p.type === 'text')).toBe(false);

      const many = newId(`content-n-${stream}`);
      expect((await post(gw, chat({ stream, n: 2 }), { 'x-request-id': many })).status).toBe(200);
      const spans = await receiver.waitForRequest(many);
      const choices = JSON.parse(spans.client!.attributes['gen_ai.output.messages'] as string) as Array<{ parts: Array<{ content?: string }>; finish_reason: string }>;
      expect(choices, `stream ${stream}`).toHaveLength(2);
      for (const c of choices) {
        expect(c.parts[0].content).toBe(COMPLETION);
        expect(c.finish_reason).toBe('stop');
      }
    }
  });

  it('records the request\'s sampling parameters as gen_ai.request.* (GenAI semconv), only those sent', async () => {
    const id = newId('params');
    const body = chat({ temperature: 0, top_p: 0.9, max_completion_tokens: 64, seed: 7, n: 2, stop: 'END', frequency_penalty: 0.5, response_format: { type: 'json_object' } });
    expect((await post(gw, body, { 'x-request-id': id })).status).toBe(200);
    const { client } = await receiver.waitForRequest(id);
    expect(client!.attributes).toMatchObject({
      'gen_ai.request.temperature': 0,
      'gen_ai.request.top_p': 0.9,
      'gen_ai.request.max_tokens': 64,
      'gen_ai.request.seed': 7,
      'gen_ai.request.choice.count': 2,
      'gen_ai.request.stop_sequences': ['END'],
      'gen_ai.request.frequency_penalty': 0.5,
      'gen_ai.output.type': 'json',
    });
    expect(client!.attributes['gen_ai.request.presence_penalty']).toBeUndefined();

    const plain = newId('params-none');
    expect((await post(gw, chat({ n: 1, max_tokens: 10 }), { 'x-request-id': plain })).status).toBe(200);
    const spans = await receiver.waitForRequest(plain);
    const a = spans.client!.attributes;
    expect(a['gen_ai.request.max_tokens']).toBe(10);
    for (const key of ['gen_ai.request.temperature', 'gen_ai.request.seed', 'gen_ai.request.choice.count', 'gen_ai.request.stop_sequences', 'gen_ai.output.type']) expect(a[key], key).toBeUndefined();
  });
});
