/**
 * CountedBatchProcessor's bookkeeping with misbehaving exporters and late spans (unit level,
 * its own file: the counters are process-wide).
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type * as OtelCore from '@opentelemetry/core';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import { CountedBatchProcessor, LossReporter, traceExportCounts } from '../../src/telemetry/span-export.js';

const load = createRequire(import.meta.url);
const core = load('@opentelemetry/core') as typeof OtelCore;
const sdk = load('@opentelemetry/sdk-trace-base') as typeof SdkTraceBase;

function setup(exporter: SdkTraceBase.SpanExporter) {
  const processor = new CountedBatchProcessor(sdk, core, exporter, new LossReporter(undefined));
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [processor] });
  const tracer = provider.getTracer('t');
  return { processor, provider, endSpans: (n: number) => Array.from({ length: n }, () => tracer.startSpan('s').end()) };
}
const snapshot = () => ({ ...traceExportCounts });

describe('CountedBatchProcessor bookkeeping', () => {
  it('an exporter that throws: the batch is counted failed and nothing stays "exporting"', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup({
      export: () => {
        throw new Error('boom');
      },
      shutdown: async () => {},
    });
    endSpans(3);
    await processor.forceFlush().catch(() => {});
    expect(processor.exporting).toBe(0);
    expect(processor.queued).toBe(0);
    expect(traceExportCounts.failed - before.failed).toBe(3);
    await provider.shutdown().catch(() => {});
  });

  it('an exporter calling back twice: the batch is counted once', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup({
      export: (_spans, done) => {
        done({ code: core.ExportResultCode.SUCCESS });
        done({ code: core.ExportResultCode.SUCCESS });
      },
      shutdown: async () => {},
    });
    endSpans(4);
    await processor.forceFlush();
    expect(processor.exporting).toBe(0);
    expect(traceExportCounts.exported - before.exported).toBe(4);
    await provider.shutdown();
  });

  it('a span ending after shutdown (the batch processor ignores it) is not counted queued', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup({ export: (_s, done) => done({ code: core.ExportResultCode.SUCCESS }), shutdown: async () => {} });
    endSpans(2);
    await provider.shutdown();
    endSpans(3000); // past OTEL_BSP_MAX_QUEUE_SIZE
    expect(processor.queued).toBe(0);
    expect(traceExportCounts.dropped - before.dropped).toBe(0);
    expect(traceExportCounts.exported - before.exported).toBe(2);
  });
});
