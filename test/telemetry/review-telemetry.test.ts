/**
 * Regressions from the telemetry conformance review (OTel GenAI semantic conventions,
 * DESIGN.md "Telemetry names"): what a dashboard, a trace tool or a log pipeline reads.
 * The spans go to an in-test OTLP/HTTP receiver; the SDK registers process globals, so this
 * file runs in its own process (pool forks).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, requestLogLine } from '../../src/telemetry/logger.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { startServerSpan } from '../../src/telemetry/spans.js';
import { startTelemetry } from '../../src/telemetry/tracing.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { parseProm } from '../telemetry-e2e/prom-text.js';
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, startOtlpReceiver, type OtlpReceiver } from '../telemetry-e2e/otlp-receiver.js';

/** OTel GenAI semconv (gen-ai-metrics.md): advice for the client operation histograms. */
const GENAI_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const GENAI_TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

const KEYED_PATHS: ReadonlyArray<[string, string]> = [
  ['key-plain', '/v1/files/sk-proj-abcdefghijklmnop1234'],
  ['key-escaped', '/v1/files/key%3Dsk-proj-abcdefghijklmnop1234'],
  ['no-key', '/v1/files/file-abc%20x'],
];
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;

const base: RequestRecord = {
  requestId: 'req-review',
  route: '/v1/chat/completions',
  method: 'POST',
  status: 200,
  outcome: 'ok',
  stream: true,
  upstream: 'openai',
  provider: 'openai',
  requestModel: 'gpt-4o-mini',
  attempts: 1,
  usage: { inputTokens: 12, outputTokens: 5, cachedInputTokens: 0, reasoningTokens: 0, estimated: false },
  costUsd: 0.0000048,
  latencyMs: 900,
  ttfbMs: 120,
};

describe('GenAI histogram bucket boundaries', () => {
  // Regression: time to first chunk used the model server's time_to_first_token buckets
  // (0.001 s … 10 s) instead of the client metric's advice (0.01 s … 81.92 s).
  it.each([
    ['gen_ai_client_operation_time_to_first_chunk_seconds_bucket', GENAI_SECONDS],
    ['gen_ai_client_operation_duration_seconds_bucket', GENAI_SECONDS],
    ['gen_ai_client_token_usage_bucket', GENAI_TOKENS],
  ])('%s has exactly the semconv boundaries', async (family, bounds) => {
    const m = createMetrics({ processMetrics: false });
    m.recordRequest(base);
    const les = parseProm(await m.render())
      .filter((s) => s.name === family && (s.labels.gen_ai_token_type ?? 'input') === 'input')
      .map((s) => s.labels.le);
    expect(les).toEqual([...bounds.map(String), '+Inf']);
  });
});

describe('label values from clients', () => {
  it.skipIf(!hasPromtool)('with quotes, backslashes and newlines pass `promtool check metrics` and read back unchanged', async () => {
    const m = createMetrics({ processMetrics: false });
    const models = ['a"b', 'c\\d', 'e\nf', '\\"\n', 'ü日本'];
    for (const model of models) m.recordRequest({ ...base, requestModel: model, errorType: model, status: 502, outcome: 'error' });
    const text = await m.render();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
    const seen = new Set(parseProm(text).filter((s) => s.name === 'promptgate_requests_total').map((s) => s.labels.gen_ai_request_model));
    expect(seen).toEqual(new Set(models));
  });
});

describe('request log line', () => {
  function logged(patch: Partial<RequestRecord>, fields?: Record<string, unknown>): string {
    const lines: string[] = [];
    const logger = createLogger({ write: (line) => lines.push(line) });
    if (fields) logger.warn('upstream failed', fields);
    else logger.info('request', requestLogLine({ ...base, ...patch }));
    expect(lines).toHaveLength(1);
    return lines[0];
  }

  // Regression: redaction ran on the serialized line and masked a key-like value up to, not
  // through, a JSON escape: `password="x"` as a model name left `\` masked and `"` closing
  // the string early, so the request's line was not JSON.
  it.each([['password="hunter2"'], ['api_key=a\\"b-hunter2'], ['secret=hunter2\\'], ['authorization: x"hunter2"\n']])(
    'stays valid JSON, the secret masked, when a redacted value holds an escape: %j',
    (model) => {
      const line = logged({ requestModel: model });
      const parsed = JSON.parse(line) as Record<string, unknown>;
      expect(line).not.toContain('hunter2');
      expect(parsed).toMatchObject({ msg: 'request', route: '/v1/chat/completions', attempts: 1, input_tokens: 12 });
      expect(parsed.model).toMatch(/\*\*\*/);
    },
  );

  // Regression: URL credentials were matched from `://host:` up to any later `@`, across the
  // fields of the line: an error naming `http://127.0.0.1:4318` followed by a field holding
  // an `@` lost every field in between and the closing brace of the nested object.
  it('masks URL credentials without running across fields', () => {
    const line = logged({}, { endpoint: 'https://tenant:s3cr3t@otlp.example.com', err: { message: 'connect ECONNREFUSED http://127.0.0.1:4318' }, contact: 'ops@example.com' });
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(parsed).toMatchObject({
      err: { message: 'connect ECONNREFUSED http://127.0.0.1:4318' },
      endpoint: 'https://***@otlp.example.com',
      contact: 'ops@example.com',
    });
  });

  it('stays valid JSON with quotes, newlines, unicode and lone surrogates in values', () => {
    for (const model of ['a"b', 'c\\d', 'e\nf\r\t', 'ü日本\u2028', 'x\ud800', '\udc00y']) {
      const parsed = JSON.parse(logged({ requestModel: model, errorType: 'e@x' })) as Record<string, unknown>;
      expect(parsed.model).toBe(model);
    }
  });
});

describe('spans: content capture on a cut stream, HTTP method', () => {
  let receiver: OtlpReceiver;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `${receiver.url}/v1/traces`;
    delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
    delete process.env.OTEL_TRACES_EXPORTER;
    delete process.env.OTEL_TRACES_SAMPLER;
    const telemetry = startTelemetry({ serviceName: 'promptgate-review' });
    const prompt = [{ role: 'user', content: 'Where is my order?' }];
    const run = (requestId: string, patch: Partial<RequestRecord>) => {
      const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: () => undefined });
      spans.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', serverAddress: 'api.openai.com', serverPort: 443, stream: true });
      spans.end({ ...base, requestId, ...patch }, { captureContent: true, prompt, completion: 'It ships' });
    };
    run('cut', { outcome: 'client_abort', errorType: 'client_abort', finishReasons: [] });
    run('done', { finishReasons: ['length'] });
    run('plain', {});
    const other = startServerSpan({ method: 'PROPFIND', route: '/v1/*', path: '/v1/files/file-1', headers: () => undefined });
    other.end({ ...base, requestId: 'propfind', route: '/v1/*', method: 'PROPFIND', status: 404, outcome: 'error', attempts: 0, usage: undefined });
    for (const [requestId, path] of KEYED_PATHS) {
      startServerSpan({ method: 'GET', route: '/v1/files/*', path, headers: () => undefined }).end({ ...base, requestId, route: '/v1/files/*', method: 'GET', status: 404, outcome: 'error', attempts: 1, usage: undefined });
    }
    await telemetry.shutdown();
  });

  afterAll(async () => {
    await receiver?.close();
  });

  const outputOf = (requestId: string) => {
    const server = receiver.spans.find((s) => s.kind === SPAN_KIND_SERVER && s.attributes['promptgate.request.id'] === requestId);
    const client = receiver.spans.find((s) => s.kind === SPAN_KIND_CLIENT && s.parentSpanId === server?.spanId);
    return JSON.parse(client!.attributes['gen_ai.output.messages'] as string) as Array<Record<string, unknown>>;
  };

  // Regression: a stream that ended without a finish reason (cancelled, cut by the upstream)
  // was recorded as if the model had finished (`finish_reason: "stop"`).
  it('gives a cancelled generation finish_reason "error", not "stop"', () => {
    expect(outputOf('cut')).toEqual([{ role: 'assistant', parts: [{ type: 'text', content: 'It ships' }], finish_reason: 'error' }]);
  });

  it('keeps the upstream finish reason, and "stop" for a completed answer without one', () => {
    expect(outputOf('done')[0].finish_reason).toBe('length');
    expect(outputOf('plain')[0].finish_reason).toBe('stop');
  });

  // Regression: the SERVER span took any method a client sent (Node accepts PROPFIND, MKCOL,
  // SEARCH, ...) as `http.request.method` and span name; HTTP semconv has `_OTHER` and `HTTP {route}`.
  it('names a SERVER span with a non-standard method `HTTP {route}`, method `_OTHER`', () => {
    const server = receiver.spans.find((s) => s.kind === SPAN_KIND_SERVER && s.attributes['promptgate.request.id'] === 'propfind')!;
    expect(server.name).toBe('HTTP /v1/*');
    expect(server.attributes).toMatchObject({ 'http.request.method': '_OTHER', 'http.request.method_original': 'PROPFIND', 'http.route': '/v1/*' });
  });

  // Regression: a key a client put in a pass-through path (by mistake, or escaped) went to
  // traces as written; logs masked it.
  it('masks a key in url.path, plain or percent-escaped, and keeps other paths as sent', () => {
    const pathOf = (id: string) => receiver.spans.find((s) => s.kind === SPAN_KIND_SERVER && s.attributes['promptgate.request.id'] === id)!.attributes['url.path'];
    expect(pathOf('key-plain')).toBe('/v1/files/sk-***');
    expect(pathOf('key-escaped')).toBe('/v1/files/key=sk-***');
    expect(pathOf('no-key')).toBe('/v1/files/file-abc%20x');
    for (const [id] of KEYED_PATHS) expect(String(pathOf(id))).not.toContain('sk-proj-');
  });

  // Regression: HTTP server semconv requires url.path and url.scheme; the SERVER span had neither.
  it('gives the SERVER span url.path (the path, not the route) and url.scheme', () => {
    const server = receiver.spans.find((s) => s.kind === SPAN_KIND_SERVER && s.attributes['promptgate.request.id'] === 'propfind')!;
    expect(server.attributes).toMatchObject({ 'url.path': '/v1/files/file-1', 'url.scheme': 'http' });
  });
});
