/**
 * The batch processor's bookkeeping on the span-object path (http/json, grpc, zipkin:
 * `SpanObjectBatch`) with misbehaving exporters and late spans, and the size estimate that
 * bounds those batches in bytes (unit level, its own file: the counters are process-wide).
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type * as OtelCore from '@opentelemetry/core';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import { EncodingBatchProcessor, type EncodedBatchExporter } from '../../src/telemetry/encoding-batch-processor.js';
import { estimatedSpanBytes, LossReporter, SpanObjectBatch, traceExportCounts, type BatchResult } from '../../src/telemetry/span-export.js';

const load = createRequire(import.meta.url);
const core = load('@opentelemetry/core') as typeof OtelCore;
const sdk = load('@opentelemetry/sdk-trace-base') as typeof SdkTraceBase;

type Export = (spans: SdkTraceBase.ReadableSpan[], done: (result: BatchResult) => void) => void;

function setup(exportSpans: Export, settings: { maxExportBatchSize?: number; maxExportBatchBytes?: number } = {}) {
  const exporter: EncodedBatchExporter<SpanObjectBatch> = {
    newBatch: () => new SpanObjectBatch(),
    export: (batches, done) => exportSpans(batches[0]!.spans, done),
    shutdown: async () => {},
  };
  const processor = new EncodingBatchProcessor(exporter, new LossReporter(undefined), {
    maxQueueSize: 2048,
    maxExportBatchSize: 512,
    scheduledDelayMillis: 5000,
    exportTimeoutMillis: 30000,
    ...settings,
  });
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [processor] });
  const tracer = provider.getTracer('t');
  const endSpans = (n: number, attributes: Record<string, string> = {}) => Array.from({ length: n }, () => tracer.startSpan('s', { attributes }).end());
  return { processor, provider, endSpans };
}
const snapshot = () => ({ ...traceExportCounts });

describe('batch processor bookkeeping with span objects', () => {
  it('an exporter that throws: the batch is counted failed and nothing stays "exporting"', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup(() => {
      throw new Error('boom');
    });
    endSpans(3);
    await processor.forceFlush();
    expect(processor.exporting).toBe(0);
    expect(processor.queued).toBe(0);
    expect(traceExportCounts.failed - before.failed).toBe(3);
    await provider.shutdown();
  });

  it('an exporter calling back twice: the batch is counted once', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup((_spans, done) => {
      done({ code: core.ExportResultCode.SUCCESS });
      done({ code: core.ExportResultCode.SUCCESS });
    });
    endSpans(4);
    await processor.forceFlush();
    expect(processor.exporting).toBe(0);
    expect(traceExportCounts.exported - before.exported).toBe(4);
    await provider.shutdown();
  });

  it('a span ending after shutdown is ignored, not counted queued or dropped', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup((_s, done) => done({ code: core.ExportResultCode.SUCCESS }));
    endSpans(2);
    await provider.shutdown();
    endSpans(3000); // past OTEL_BSP_MAX_QUEUE_SIZE
    expect(processor.queued).toBe(0);
    expect(traceExportCounts.dropped - before.dropped).toBe(0);
    expect(traceExportCounts.exported - before.exported).toBe(2);
  });

  it('batches are cut at the byte bound by the spans\' estimated size, and each span object reaches the exporter as it ended', async () => {
    const sent: Array<SdkTraceBase.ReadableSpan[]> = [];
    const { processor, provider, endSpans } = setup(
      (spans, done) => {
        sent.push(spans);
        done({ code: core.ExportResultCode.SUCCESS });
      },
      { maxExportBatchBytes: 12_000 },
    );
    endSpans(7, { prompt: 'x'.repeat(3000) });
    await processor.forceFlush();
    expect(sent.map((spans) => spans.length)).toEqual([3, 3, 1]);
    expect(sent[0]![0]!.attributes.prompt).toHaveLength(3000);
    await provider.shutdown();
  });
});

describe('estimatedSpanBytes', () => {
  it('counts text in UTF-8 bytes, with framing per span and per attribute', () => {
    const provider = new sdk.BasicTracerProvider();
    const span = (attributes: Record<string, string | number | string[]>) => {
      const s = provider.getTracer('t').startSpan('chat', { attributes });
      s.end();
      return s as unknown as SdkTraceBase.ReadableSpan;
    };
    const empty = estimatedSpanBytes(span({}));
    expect(estimatedSpanBytes(span({ k: 'a'.repeat(1000) })) - empty).toBeGreaterThanOrEqual(1001);
    expect(estimatedSpanBytes(span({ k: 'é'.repeat(1000) })) - empty).toBeGreaterThanOrEqual(2001); // two bytes each
    expect(estimatedSpanBytes(span({ k: ['a'.repeat(500), 'b'.repeat(500)] })) - empty).toBeGreaterThanOrEqual(1001);
    expect(estimatedSpanBytes(span({ k: 1 })) - empty).toBeGreaterThan(0);
  });
});
