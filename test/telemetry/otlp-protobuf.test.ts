/**
 * promptgate's OTLP/protobuf encoder against the SDK's serializer: for the same finished
 * spans both must produce the same bytes (the encoder is a faster copy of its output, not a
 * variant of the format). Spans come from the SDK itself (a BasicTracerProvider with an
 * in-memory exporter), covering every field the encoder writes.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { encodeTraceExportRequest } from '../../src/telemetry/otlp-protobuf.js';
import { decodeTraceExportRequest } from '../telemetry-e2e/otlp-proto-decode.js';


function finishedSpans(make: (provider: BasicTracerProvider) => void, resourceAttributes: Attributes = { 'service.name': 'promptgate-test' }): ReadableSpan[] {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ resource: resourceFromAttributes(resourceAttributes), spanProcessors: [new SimpleSpanProcessor(exporter)] });
  make(provider);
  return exporter.getFinishedSpans();
}

const sdkBytes = (spans: ReadableSpan[]) => Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);
const ourBytes = (spans: ReadableSpan[]) => Buffer.from(encodeTraceExportRequest(spans));

const LONG = 'x'.repeat(200);
const HUGE = 'é'.repeat(20_000); // a length that needs three varint bytes, and a span above 16 KB

describe('encodeTraceExportRequest', () => {
  it('writes the same bytes as the SDK serializer for every kind of attribute value', () => {
    const spans = finishedSpans((provider) => {
      const tracer = provider.getTracer('promptgate', '1.2.3');
      const server = tracer.startSpan('POST /v1/chat/completions', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'POST' } });
      const parent = trace.setSpan(ROOT_CONTEXT, server);
      const client = tracer.startSpan('chat gpt-4o-mini', { kind: SpanKind.CLIENT }, parent);
      client.setAttributes({
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.request.stream': true,
        'gen_ai.usage.input_tokens': 0,
        'gen_ai.usage.output_tokens': 300,
        'big.int': 2 ** 40 + 7,
        'negative.int': -5,
        'min.int': -(2 ** 62),
        'promptgate.cost.usd': 0.000435,
        'double.negative': -1.5,
        'not.a.number': NaN,
        'gen_ai.response.finish_reasons': ['stop', 'length'],
        'empty.list': [],
        'numbers': [1, 2.5, -3],
        'flags': [true, false],
        'sparse': ['a', null as unknown as string, 'b'],
        'unicode': 'Grüße, 世界 🚀',
        'unicode.long': 'ü'.repeat(60),
        'ascii.42': 'a'.repeat(42),
        'ascii.43': 'a'.repeat(43),
        'long': LONG,
        'huge': HUGE,
        'empty': '',
        'schlüssel.ümlaut': 1,
      });
      client.addEvent('retry', { attempt: 2, reason: '429' });
      client.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream_error' });
      client.end();
      const context = tracer.startSpan('context', { links: [{ context: client.spanContext(), attributes: { why: 'follows' } }] }, parent);
      context.setStatus({ code: SpanStatusCode.OK });
      context.end();
      server.end();
      // A continued remote trace with a tracestate, from another scope.
      const remote = trace.setSpanContext(ROOT_CONTEXT, {
        traceId: '0af7651916cd43dd8448eb211c80319c',
        spanId: 'b7ad6b7169203331',
        traceFlags: TraceFlags.SAMPLED,
        isRemote: true,
        traceState: new TraceState('vendor=abc,other=1'),
      });
      provider.getTracer('other-scope').startSpan('remote child', { kind: SpanKind.INTERNAL }, remote).end();
    });
    expect(spans.length).toBe(4);
    expect(ourBytes(spans).equals(sdkBytes(spans))).toBe(true);
  });

  it('groups spans of several resources like the SDK', () => {
    const a = finishedSpans((p) => p.getTracer('t').startSpan('a').end(), { 'service.name': 'a', 'deployment.environment.name': 'test' });
    const b = finishedSpans((p) => p.getTracer('t').startSpan('b').end(), { 'service.name': 'b' });
    const mixed = [a[0]!, b[0]!, a[0]!];
    expect(ourBytes(mixed).equals(sdkBytes(mixed))).toBe(true);
  });

  it('encodes an empty batch and a large one (buffer growth) like the SDK', () => {
    expect(ourBytes([]).equals(sdkBytes([]))).toBe(true);
    const spans = finishedSpans((p) => {
      const tracer = p.getTracer('bulk');
      for (let i = 0; i < 600; i++) tracer.startSpan(`span ${i}`, { attributes: { i, text: LONG, more: HUGE.slice(0, 200) } }).end();
    });
    const ours = ourBytes(spans);
    expect(ours.length).toBeGreaterThan(64 * 1024);
    expect(ours.equals(sdkBytes(spans))).toBe(true);
  });

  it('returns a copy: a later export does not overwrite an earlier body still being sent', () => {
    const first = finishedSpans((p) => p.getTracer('t').startSpan('first').end());
    const second = finishedSpans((p) => p.getTracer('t').startSpan('second').end());
    const body = encodeTraceExportRequest(first);
    const before = Buffer.from(body);
    encodeTraceExportRequest(second);
    expect(Buffer.from(body).equals(before)).toBe(true);
  });

  it('is read back by a protobuf decoder (the test receiver), names, ids and attributes intact', () => {
    const spans = finishedSpans((p) => {
      const span = p.getTracer('promptgate').startSpan('chat gpt-4o-mini', { kind: SpanKind.CLIENT, attributes: { 'gen_ai.usage.input_tokens': 12, 'promptgate.cost.usd': 0.25, tags: ['a', 'b'] } });
      span.end();
    });
    const decoded = decodeTraceExportRequest(encodeTraceExportRequest(spans)) as {
      resourceSpans: Array<{ scopeSpans: Array<{ scope: { name: string }; spans: Array<Record<string, unknown>> }> }>;
    };
    const span = decoded.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    expect(decoded.resourceSpans[0]!.scopeSpans[0]!.scope.name).toBe('promptgate');
    expect(span).toMatchObject({ name: 'chat gpt-4o-mini', kind: 3, traceId: spans[0]!.spanContext().traceId, spanId: spans[0]!.spanContext().spanId });
    expect(span.attributes).toEqual([
      { key: 'gen_ai.usage.input_tokens', value: { intValue: 12 } },
      { key: 'promptgate.cost.usd', value: { doubleValue: 0.25 } },
      { key: 'tags', value: { arrayValue: { values: [{ stringValue: 'a' }, { stringValue: 'b' }] } } },
    ]);
  });

  // Regression: the context span's score (0 when a clean passage was scanned) and duration
  // (0 when rounded) went as ints, other values of the same attributes as doubles.
  it("writes the context span's integral score and duration as doubles", () => {
    const spans = finishedSpans((p) => {
      p.getTracer('promptgate').startSpan('context', { attributes: { 'promptgate.context.injection.score': 0, 'promptgate.context.duration_ms': 0, 'promptgate.context.items': 3 } }).end();
    });
    const decoded = decodeTraceExportRequest(encodeTraceExportRequest(spans)) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ attributes: unknown[] }> }> }> };
    expect(decoded.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.attributes).toEqual([
      { key: 'promptgate.context.injection.score', value: { doubleValue: 0 } },
      { key: 'promptgate.context.duration_ms', value: { doubleValue: 0 } },
      { key: 'promptgate.context.items', value: { intValue: 3 } },
    ]);
  });
});

