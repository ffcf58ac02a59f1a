/**
 * Tracing on: startTelemetry exports to an in-test OTLP/HTTP receiver (http/json, so the
 * body is readable). Every scenario runs in beforeAll, then `shutdown()` alone must flush
 * the batch (its 5 s schedule never fires), and the tests assert on what arrived.
 * The SDK registers process globals: this file runs in its own process (pool forks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerSpan, tracingActive } from '../../src/telemetry/spans.js';
import { startTelemetry } from '../../src/telemetry/tracing.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, startOtlpReceiver, type OtlpReceiver } from '../telemetry-e2e/otlp-receiver.js';

const INCOMING_TRACE = '0af7651916cd43dd8448eb211c80319c';
const INCOMING_PARENT = 'b7ad6b7169203331';

const base: RequestRecord = {
  requestId: 'req-1',
  route: '/v1/chat/completions',
  method: 'POST',
  status: 200,
  outcome: 'ok',
  stream: true,
  upstream: 'openai',
  provider: 'openai',
  requestModel: 'gpt-4o-mini',
  responseModel: 'gpt-4o-mini-2024-07-18',
  responseId: 'chatcmpl-123',
  finishReasons: ['stop'],
  attempts: 2,
  usage: { inputTokens: 1000, outputTokens: 500, cachedInputTokens: 200, reasoningTokens: 100, estimated: false },
  costUsd: 0.000435,
  latencyMs: 1200,
  ttfbMs: 90,
  template: 'support-reply',
  templateVersion: '1.1.0',
  experiment: 'support-tone',
  variant: 'warm',
  experimentAssignment: 'hash',
  injectionScore: 0.12,
  injectionFlagged: false,
};
const prompt = [
  { role: 'system', content: 'Be warm.' },
  { role: 'user', content: 'Where is my order?' },
];

let receiver: OtlpReceiver;
const upstreamTraceparent: Record<string, string | undefined> = {};
const traceIds: Record<string, string | undefined> = {};
let activeWhileRunning = false;
let activeAfterShutdown = true;
let receivedBeforeShutdown = -1;

beforeAll(async () => {
  receiver = await startOtlpReceiver();

  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `${receiver.url}/v1/traces`;
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/json';
  delete process.env.OTEL_SERVICE_NAME;
  delete process.env.OTEL_TRACES_EXPORTER;
  delete process.env.OTEL_TRACES_SAMPLER;
  const telemetry = startTelemetry({ serviceName: 'promptgate-test' });
  expect(telemetry.tracing).toBe(true);
  expect(startTelemetry({ serviceName: 'again' })).toBe(telemetry);
  activeWhileRunning = tracingActive();

  // 1. continues an incoming traceparent; content not captured by default
  const a = startServerSpan({
    method: 'POST',
    route: '/v1/chat/completions',
    headers: (n) => ({ traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`, tracestate: 'vendor=abc' })[n],
  });
  const aUp = a.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', serverAddress: 'api.openai.com', serverPort: 443, stream: true });
  upstreamTraceparent.continued = aUp.traceparent();
  upstreamTraceparent.continuedState = aUp.headers().tracestate;
  expect(a.startUpstream({ provider: 'openai', stream: true })).toBe(aUp);
  traceIds.continued = a.traceId;
  a.end(base, { prompt, completion: 'It ships today.' });

  // 2. new trace; content captured
  const b = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: () => undefined });
  const bUp = b.startUpstream({ provider: 'openai', requestModel: 'gpt-4o', serverAddress: 'api.openai.com', serverPort: 443, stream: false });
  upstreamTraceparent.fresh = bUp.traceparent();
  traceIds.fresh = b.traceId;
  b.end({ ...base, requestId: 'req-2', requestModel: 'gpt-4o', stream: false, experiment: undefined, variant: undefined }, { captureContent: true, prompt, completion: 'It ships today.' });

  // 3. upstream failure
  const c = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: () => undefined });
  c.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', serverAddress: 'api.openai.com', serverPort: 443, stream: false });
  c.end({ ...base, requestId: 'req-3', status: 502, outcome: 'error', errorType: 'upstream_5xx', usage: undefined, costUsd: undefined, responseModel: undefined, responseId: undefined, finishReasons: undefined, attempts: 3 });
  c.end({ ...base, requestId: 'ignored' });

  // 4. blocked before any upstream call: no CLIENT span
  const d = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: () => undefined });
  d.end({ ...base, requestId: 'req-4', status: 400, outcome: 'error', errorType: 'prompt_injection_detected', attempts: 0, usage: undefined, costUsd: undefined, injectionScore: 0.97, injectionFlagged: true });

  receivedBeforeShutdown = receiver.spans.length;
  await telemetry.shutdown();
  activeAfterShutdown = tracingActive();
});

afterAll(async () => {
  await receiver.close();
});

const byRequest = (id: string, kind: number) => {
  const server = receiver.spans.find((s) => s.kind === SPAN_KIND_SERVER && s.attributes['promptgate.request.id'] === id);
  if (kind === SPAN_KIND_SERVER) return server;
  return receiver.spans.find((s) => s.kind === SPAN_KIND_CLIENT && s.parentSpanId === server?.spanId);
};

describe('tracing on', () => {
  it('exports over OTLP/HTTP JSON to the traces endpoint, flushed by shutdown', () => {
    expect(receivedBeforeShutdown).toBe(0);
    expect(receiver.exports.length).toBeGreaterThan(0);
    expect(receiver.exports[0].url).toBe('/v1/traces');
    expect(receiver.exports[0].contentType).toContain('application/json');
    expect(receiver.spans).toHaveLength(7);
    expect(activeWhileRunning).toBe(true);
    expect(activeAfterShutdown).toBe(false);
  });

  it('sets the service name and the promptgate scope', () => {
    for (const span of receiver.spans) {
      expect(span.resource['service.name']).toBe('promptgate-test');
      expect(span.scope).toBe('promptgate');
    }
  });

  it('continues the incoming trace: SERVER child of the caller, CLIENT child of SERVER', () => {
    const serverSpan = byRequest('req-1', SPAN_KIND_SERVER)!;
    const client = byRequest('req-1', SPAN_KIND_CLIENT)!;
    expect(serverSpan.name).toBe('POST /v1/chat/completions');
    expect(serverSpan.traceId).toBe(INCOMING_TRACE);
    expect(serverSpan.parentSpanId).toBe(INCOMING_PARENT);
    expect(client.name).toBe('chat gpt-4o-mini');
    expect(client.traceId).toBe(INCOMING_TRACE);
    expect(client.parentSpanId).toBe(serverSpan.spanId);
    expect(traceIds.continued).toBe(INCOMING_TRACE);
  });

  it('sends upstream exactly the CLIENT span as parent, with the incoming tracestate', () => {
    const client = byRequest('req-1', SPAN_KIND_CLIENT)!;
    expect(upstreamTraceparent.continued).toBe(`00-${INCOMING_TRACE}-${client.spanId}-01`);
    expect(upstreamTraceparent.continuedState).toBe('vendor=abc');
    const fresh = byRequest('req-2', SPAN_KIND_CLIENT)!;
    expect(upstreamTraceparent.fresh).toBe(`00-${fresh.traceId}-${fresh.spanId}-01`);
    expect(traceIds.fresh).toBe(fresh.traceId);
    expect(byRequest('req-2', SPAN_KIND_SERVER)!.parentSpanId).toBeFalsy();
  });

  it('puts the GenAI and promptgate attributes on the CLIENT span', () => {
    const client = byRequest('req-1', SPAN_KIND_CLIENT)!;
    expect(client.attributes).toEqual({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.request.stream': true,
      'server.address': 'api.openai.com',
      'server.port': 443,
      'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
      'gen_ai.response.id': 'chatcmpl-123',
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.usage.input_tokens': 1000,
      'gen_ai.usage.output_tokens': 500,
      'gen_ai.usage.cache_read.input_tokens': 200,
      'gen_ai.usage.reasoning.output_tokens': 100,
      'promptgate.usage.estimated': false,
      'promptgate.cost.usd': 0.000435,
      'promptgate.upstream.attempts': 2,
      'promptgate.template.id': 'support-reply',
      'promptgate.template.version': '1.1.0',
      'promptgate.experiment.id': 'support-tone',
      'promptgate.experiment.variant': 'warm',
      'promptgate.injection.score': 0.12,
      'promptgate.injection.flagged': false,
    });
    expect(client.status?.code ?? 0).not.toBe(STATUS_ERROR);
  });

  it('puts HTTP and decision attributes on the SERVER span', () => {
    const serverSpan = byRequest('req-1', SPAN_KIND_SERVER)!;
    expect(serverSpan.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/chat/completions',
      'http.response.status_code': 200,
      'promptgate.request.id': 'req-1',
      'promptgate.template.id': 'support-reply',
      'promptgate.experiment.variant': 'warm',
    });
    expect(serverSpan.attributes['error.type']).toBeUndefined();
  });

  it('records content only when capture_content is on', () => {
    const off = byRequest('req-1', SPAN_KIND_CLIENT)!;
    expect(off.attributes['gen_ai.input.messages']).toBeUndefined();
    expect(off.attributes['gen_ai.output.messages']).toBeUndefined();
    const on = byRequest('req-2', SPAN_KIND_CLIENT)!;
    expect(JSON.parse(on.attributes['gen_ai.input.messages'] as string)).toEqual([
      { role: 'system', parts: [{ type: 'text', content: 'Be warm.' }] },
      { role: 'user', parts: [{ type: 'text', content: 'Where is my order?' }] },
    ]);
    expect(JSON.parse(on.attributes['gen_ai.output.messages'] as string)).toEqual([
      { role: 'assistant', parts: [{ type: 'text', content: 'It ships today.' }], finish_reason: 'stop' },
    ]);
    expect(on.name).toBe('chat gpt-4o');
  });

  it('marks failures with error.type and ERROR status; ends each span once', () => {
    const client = byRequest('req-3', SPAN_KIND_CLIENT)!;
    const serverSpan = byRequest('req-3', SPAN_KIND_SERVER)!;
    expect(client.attributes['error.type']).toBe('upstream_5xx');
    expect(client.status?.code).toBe(STATUS_ERROR);
    expect(client.attributes['promptgate.upstream.attempts']).toBe(3);
    expect(client.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
    expect(serverSpan.attributes['error.type']).toBe('upstream_5xx');
    expect(serverSpan.attributes['http.response.status_code']).toBe(502);
    expect(serverSpan.status?.code).toBe(STATUS_ERROR);
    expect(receiver.spans.filter((s) => s.attributes['promptgate.request.id'] === 'ignored')).toHaveLength(0);
  });

  it('a request blocked before the upstream has only a SERVER span, not an error (4xx)', () => {
    const serverSpan = byRequest('req-4', SPAN_KIND_SERVER)!;
    expect(byRequest('req-4', SPAN_KIND_CLIENT)).toBeUndefined();
    expect(serverSpan.attributes).toMatchObject({
      'error.type': 'prompt_injection_detected',
      'http.response.status_code': 400,
      'promptgate.injection.score': 0.97,
      'promptgate.injection.flagged': true,
    });
    expect(serverSpan.status?.code ?? 0).not.toBe(STATUS_ERROR);
  });
});
