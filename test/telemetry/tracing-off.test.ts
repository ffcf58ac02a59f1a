/**
 * Tracing off (no OTLP endpoint or exporter in the environment): the SDK is not started
 * and the span helpers take the pass-through path. Runs in its own process (pool forks):
 * no SDK is ever registered here.
 */
import { trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { Exchange } from '../../src/proxy/exchange.js';
import { startServerSpan, tracingActive } from '../../src/telemetry/spans.js';
import { startTelemetry } from '../../src/telemetry/tracing.js';
import { tracingRequested } from '../../src/telemetry/tracing-env.js';
import type { RequestRecord } from '../../src/telemetry/types.js';

const INCOMING = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const headers = (h: Record<string, string>) => (name: string) => h[name];
const record: RequestRecord = { requestId: 'r', route: '/v1/chat/completions', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 5 };

describe('tracingRequested', () => {
  it.each([
    [{}, false],
    [{ OTEL_SERVICE_NAME: 'x' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces' }, true],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }, false],
    [{ OTEL_TRACES_EXPORTER: 'console' }, true],
    [{ OTEL_TRACES_EXPORTER: 'otlp' }, true],
    [{ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }, false],
    [{ OTEL_TRACES_EXPORTER: 'none,none' }, false],
    // `none` among others: the exporters fall back to otlp (NodeSDK's rule), in either order
    // (was: `none,otlp` turned tracing off, `otlp,none` exported).
    [{ OTEL_TRACES_EXPORTER: 'none,otlp' }, true],
    [{ OTEL_TRACES_EXPORTER: 'otlp,none' }, true],
    [{ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }, false],
    [{ OTEL_SDK_DISABLED: 'false', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }, true],
  ] as Array<[NodeJS.ProcessEnv, boolean]>)('%j -> %s', (env, expected) => {
    expect(tracingRequested(env)).toBe(expected);
  });
});

describe('tracing off', () => {
  it('does not start the SDK without endpoint or exporter', async () => {
    const handle = startTelemetry({ serviceName: 'promptgate', env: {} });
    expect(handle.tracing).toBe(false);
    expect(tracingActive()).toBe(false);
    expect(trace.getTracer('t').startSpan('s').isRecording()).toBe(false);
    await expect(handle.shutdown()).resolves.toBeUndefined();
  });

  it('passes the incoming trace context through to the upstream unchanged', () => {
    const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: headers({ traceparent: INCOMING, tracestate: 'vendor=1', baggage: 'k=v' }) });
    const upstream = spans.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', stream: false });
    expect(upstream.traceparent()).toBe(INCOMING);
    expect(upstream.headers()).toEqual({ traceparent: INCOMING, tracestate: 'vendor=1', baggage: 'k=v' });
    expect(spans.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(() => spans.end(record, { captureContent: true, prompt: [], completion: 'x' })).not.toThrow();
  });

  it("leaves the client's trace headers of other formats (B3) on the upstream request, with tracing off", () => {
    const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: headers({ traceparent: INCOMING }) });
    const request: Record<string, string> = { b3: '0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1', 'content-type': 'application/json' };
    spans.startUpstream({ provider: 'openai', stream: false }).applyTo(request);
    expect(request).toEqual({ b3: '0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1', 'content-type': 'application/json', traceparent: INCOMING });
  });

  it('passes baggage through on its own (W3C Baggage does not need a traceparent)', () => {
    const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: headers({ baggage: 'tenant=acme', tracestate: 'v=1' }) });
    expect(spans.startUpstream({ provider: 'openai', stream: false }).headers()).toEqual({ baggage: 'tenant=acme' });
  });

  it('sends no trace context when the incoming one is missing or invalid', () => {
    for (const traceparent of [undefined, 'garbage', '00-00000000000000000000000000000000-b7ad6b7169203331-01', '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01']) {
      const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: headers(traceparent ? { traceparent, tracestate: 'v=1' } : {}) });
      const upstream = spans.startUpstream({ provider: 'openai', stream: true });
      expect(upstream.traceparent()).toBeUndefined();
      expect(upstream.headers()).toEqual({});
      expect(spans.traceId).toBeUndefined();
    }
  });

  // Regression: with capture_content on and no span to record them (tracing off, or a
  // request not sampled), every answer's text was still kept, a stream's up to 1 M characters.
  it('keeps no content for spans that do not record', () => {
    const exchange = new Exchange({ route: '/v1/chat/completions', method: 'POST', incomingRequestId: undefined, totalTimeoutMs: 60_000, header: () => undefined, captureContent: true, onFinish: () => {} });
    expect(exchange.spans.recording).toBe(false);
    expect(exchange.content.captureContent).toBe(false);
    exchange.finish({ status: 200, outcome: 'ok' });
  });
});

