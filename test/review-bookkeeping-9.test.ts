/**
 * The gateway's own bookkeeping against hostile but well-formed JSON: values nested some
 * thousands deep. `JSON.parse` takes any depth; `JSON.stringify` recurses and runs out of
 * stack (a RangeError) on them. Where the gateway re-serialises what it parsed only for its
 * own ends (dropping the usage it asked for from a stream chunk, the content it captures on
 * a span), that fault must neither cut the client's answer nor lose the request's trace.
 *
 * A real gateway on 127.0.0.1 port 0, a hand-written upstream that answers the bytes each
 * test sets, and an in-memory span exporter registered as the global tracer provider (this
 * file runs in its own process: vitest's forks pool). All closed here.
 */
import { createServer, type Server } from 'node:http';
import { SpanKind, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { startServerSpan } from '../src/telemetry/spans.js';
import type { RequestRecord } from '../src/telemetry/types.js';

/** JSON text of an array nested `depth` deep: parses, but does not stringify again. */
const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const DEEP = nested(100_000);

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

/** What the upstream answers next: a content type and its bytes, with status 200. */
let answer = { type: 'application/json', body: '{}' };
const servers: Server[] = [];
let gw: TestGateway;
let log: GatewayLogCapture;

beforeAll(async () => {
  trace.setGlobalTracerProvider(provider);
  log = captureGatewayLog();
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': answer.type });
      res.end(answer.body);
    });
  });
  servers.push(upstream);
  const url = await listenOnLoopback(upstream);
  const extra = 'logging: {level: info, requests: true}\ntelemetry: {capture_content: true}';
  gw = await startTestGateway(mockConfig(`${url}/v1`, extra).replace('logging: {level: silent}\n', ''));
});

afterEach(() => exporter.reset());

afterAll(async () => {
  await gw?.close();
  await closeServers(servers);
  log?.restore();
  trace.disable();
  await provider.shutdown();
});

async function chat(id: string, body: Record<string, unknown>) {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id },
    body: JSON.stringify({ model: 'gpt-4o-mini', ...body }),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

/** The request's log line, once written, and the `accounting failed` lines naming it. */
async function linesOf(id: string) {
  const { line } = await log.requestLine(id);
  return { line, faults: log.accountingFaults(id) };
}

describe('stream: the usage the gateway asked for', () => {
  // Regression: the chunk was parsed (to read the usage), then written again without it
  // (the client did not ask for it): the RangeError of JSON.stringify went to the relay as
  // an upstream failure, and the client got "The upstream connection failed during the
  // stream." in place of the last chunk and [DONE].
  it('a last chunk nested too deeply to rewrite is relayed as sent, and the stream ends whole', async () => {
    answer = {
      type: 'text/event-stream',
      body:
        'data: {"id":"c-1","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n' +
        `data: {"id":"c-1","choices":[{"index":0,"delta":{},"finish_reason":"stop","x":${DEEP}}],"usage":{"prompt_tokens":7,"completion_tokens":1}}\n\n` +
        'data: [DONE]\n\n',
    };
    const res = await chat('deep-usage-chunk', { stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    expect(res.text).not.toContain('"error"');
    expect(res.text).toContain('"finish_reason":"stop"');
    expect(res.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const { line, faults } = await linesOf('deep-usage-chunk');
    expect(line).toMatchObject({ status: 200, outcome: 'ok', input_tokens: 7, output_tokens: 1 });
    expect(line.tokens_estimated).toBeUndefined();
    expect(faults).toEqual([]);
    expect(gw.exchanges.size).toBe(0);
  });
});

describe('spans with content capture', () => {
  const spansOf = async (id: string) => {
    await vi.waitFor(() => expect(exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER && s.attributes['promptgate.request.id'] === id)).toHaveLength(1));
    const server = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.attributes['promptgate.request.id'] === id)!;
    const client = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT && s.parentSpanContext?.spanId === server.spanContext().spanId);
    return { server, client };
  };
  const completion = (message: Record<string, unknown>) =>
    JSON.stringify({ id: 'c-2', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message, finish_reason: 'stop' }], usage: { prompt_tokens: 9, completion_tokens: 2 } });

  // Regression: a tool call's arguments are captured parsed, and the span's message JSON
  // could not be written: both spans were never ended (the trace lost), for a request whose
  // client only sent back a tool call it had made, with arguments nested deeply.
  it("a prompt tool call's arguments nested too deeply to capture: both spans still end, with the usage", async () => {
    answer = { type: 'application/json', body: completion({ role: 'assistant', content: 'Done.' }) };
    const res = await chat('deep-prompt-arguments', {
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call-1', type: 'function', function: { name: 'f', arguments: DEEP } }] },
        { role: 'tool', tool_call_id: 'call-1', content: 'ok' },
      ],
    });
    expect(res.status).toBe(200);
    const { server, client } = await spansOf('deep-prompt-arguments');
    expect(server.attributes['http.response.status_code']).toBe(200);
    expect(client?.attributes).toMatchObject({ 'gen_ai.usage.input_tokens': 9, 'gen_ai.usage.output_tokens': 2 });
    // The answer's content is still captured; only the prompt could not be.
    expect(JSON.parse(client!.attributes['gen_ai.output.messages'] as string)).toMatchObject([{ role: 'assistant', parts: [{ type: 'text', content: 'Done.' }] }]);
    expect((await linesOf('deep-prompt-arguments')).faults).toEqual([]);
  });

  it("an answer's tool call arguments nested too deeply to capture: both spans still end, with the prompt", async () => {
    answer = { type: 'application/json', body: completion({ role: 'assistant', content: null, tool_calls: [{ id: 'call-2', type: 'function', function: { name: 'f', arguments: DEEP } }] }) };
    const res = await chat('deep-answer-arguments', { messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    const { client } = await spansOf('deep-answer-arguments');
    expect(client?.attributes).toMatchObject({ 'gen_ai.usage.input_tokens': 9 });
    expect(JSON.parse(client!.attributes['gen_ai.input.messages'] as string)).toMatchObject([{ role: 'user', parts: [{ type: 'text', content: 'hi' }] }]);
    expect((await linesOf('deep-answer-arguments')).faults).toEqual([]);
  });

  // Whatever fails while the end attributes are made, both spans end (the fault still
  // reaches the caller, Exchange.finish, which reports it): the trace is never lost.
  it('a fault while the end attributes are made still ends both spans, and is thrown to the caller', () => {
    const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: () => undefined });
    spans.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', serverAddress: 'api.openai.com', serverPort: 443, stream: false });
    const record = { requestId: 'faulty-record', route: '/v1/chat/completions', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 1 } as RequestRecord;
    Object.defineProperty(record, 'usage', { get: () => { throw new TypeError('a fault while recording'); } });
    expect(() => spans.end(record, { captureContent: false })).toThrow(TypeError);
    const ended = exporter.getFinishedSpans();
    const server = ended.find((s) => s.kind === SpanKind.SERVER && s.attributes['promptgate.request.id'] === 'faulty-record');
    expect(server).toBeDefined();
    expect(ended.find((s) => s.kind === SpanKind.CLIENT && s.parentSpanContext?.spanId === server!.spanContext().spanId)).toBeDefined();
  });
});
