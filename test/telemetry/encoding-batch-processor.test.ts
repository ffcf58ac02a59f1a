/**
 * EncodingBatchProcessor (here on the OTLP/HTTP protobuf path): batches of encoded bytes
 * with the BatchSpanProcessor's semantics, counted. Unit level, with an exporter that
 * decodes what it is handed; its own file: the counters are process-wide.
 */
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import type { ExportResult } from '@opentelemetry/core';
import { SpanBatchEncoder } from '../../src/telemetry/otlp-protobuf.js';
import { EncodingBatchProcessor, type BatchSettings, type EncodedBatchExporter } from '../../src/telemetry/encoding-batch-processor.js';
import { LossReporter, traceExportCounts } from '../../src/telemetry/span-export.js';
import { decodeTraceExportRequest } from '../telemetry-e2e/otlp-proto-decode.js';

const load = createRequire(import.meta.url);
const sdk = load('@opentelemetry/sdk-trace-base') as typeof SdkTraceBase;

const SUCCESS: ExportResult = { code: 0 };
const FAILED: ExportResult = { code: 1, error: new Error('collector said no') };

/** An exporter that keeps the decoded span names of each batch and answers as told. */
function recordingExporter(answer: (done: (r: ExportResult) => void, batch: number) => void = (done) => done(SUCCESS), endsOnItsOwn = true) {
  const batches: string[][] = [];
  const exporter: EncodedBatchExporter = {
    endsOnItsOwn,
    newBatch: () => new SpanBatchEncoder(),
    export: (items, done) => {
      expect(items).toHaveLength(1);
      expect(items[0]).toBeInstanceOf(SpanBatchEncoder);
      const { resourceSpans } = decodeTraceExportRequest(items[0]!.finish()) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string }> }> }> };
      batches.push(resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => s.name))));
      answer(done, batches.length);
    },
    shutdown: async () => {},
  };
  return { exporter, batches };
}

function setup(exporter: EncodedBatchExporter, settings: Partial<BatchSettings> = {}, sampler?: SdkTraceBase.Sampler) {
  const processor = new EncodingBatchProcessor(exporter, new LossReporter(undefined), {
    maxQueueSize: 2048,
    maxExportBatchSize: 512,
    scheduledDelayMillis: 5000,
    exportTimeoutMillis: 30000,
    ...settings,
  });
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [processor], sampler });
  const tracer = provider.getTracer('t');
  let n = 0;
  const endSpans = (count: number) => {
    for (let i = 0; i < count; i++) tracer.startSpan(`s${n++}`).end();
  };
  return { processor, provider, endSpans };
}
const snapshot = () => ({ ...traceExportCounts });
const turn = () => new Promise((resolve) => setImmediate(resolve));

afterEach(() => {
  vi.useRealTimers();
});

describe('EncodingBatchProcessor', () => {
  it('encodes spans after the turn they end in, and sends a batch when it is full, in order', async () => {
    const before = snapshot();
    const { exporter, batches } = recordingExporter();
    const { processor, provider, endSpans } = setup(exporter, { maxExportBatchSize: 3 });
    endSpans(7);
    expect(processor.queued).toBe(7); // nothing encoded or sent on the request path
    expect(batches).toHaveLength(0);
    await turn();
    expect(batches).toEqual([
      ['s0', 's1', 's2'],
      ['s3', 's4', 's5'],
    ]);
    expect(processor.queued).toBe(1); // s6 waits for its batch to fill or for the delay
    await processor.forceFlush();
    expect(batches[2]).toEqual(['s6']);
    expect(processor.queued).toBe(0);
    expect(traceExportCounts.exported - before.exported).toBe(7);
    await provider.shutdown();
  });

  it('sends a batch that does not fill after the scheduled delay', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { exporter, batches } = recordingExporter();
    const { provider, endSpans } = setup(exporter, { scheduledDelayMillis: 1000 });
    endSpans(2);
    await turn();
    vi.advanceTimersByTime(999);
    expect(batches).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(batches).toEqual([['s0', 's1']]);
    await provider.shutdown();
  });

  it('drops spans once the queue is full, counted; the queue counts spans not yet sent', async () => {
    const before = snapshot();
    const pending: Array<(r: ExportResult) => void> = [];
    const { exporter, batches } = recordingExporter((done) => pending.push(done)); // the collector hangs
    const { processor, provider, endSpans } = setup(exporter, { maxQueueSize: 4, maxExportBatchSize: 2 });
    endSpans(6);
    expect(traceExportCounts.dropped - before.dropped).toBe(2);
    await turn();
    expect(batches).toHaveLength(1); // one batch at a time
    expect(processor.exporting).toBe(2);
    expect(processor.queued).toBe(2);
    endSpans(3); // the batch being exported has left the queue: room for 2 more
    expect(processor.queued).toBe(4);
    expect(traceExportCounts.dropped - before.dropped).toBe(3);
    pending.shift()!(SUCCESS);
    expect(batches).toHaveLength(2); // the next batch goes as soon as the first is answered
    pending.shift()!(FAILED);
    expect(traceExportCounts.failed - before.failed).toBe(2);
    await turn(); // the last two spans are encoded, fill a batch and go
    pending.shift()!(SUCCESS);
    expect(traceExportCounts.exported - before.exported).toBe(4);
    expect(processor.queued + processor.exporting).toBe(0);
    await provider.shutdown();
  });

  it('an exporter that throws fails its batch; one that calls back twice counts it once', async () => {
    const before = snapshot();
    const { processor, provider, endSpans } = setup(
      {
        newBatch: () => new SpanBatchEncoder(),
        export: (items, done) => {
          if (items[0]!.count === 1) throw new Error('boom');
          done(SUCCESS);
          done(SUCCESS);
        },
        shutdown: async () => {},
      },
      { maxExportBatchSize: 2 },
    );
    endSpans(3);
    await processor.forceFlush();
    expect(traceExportCounts.exported - before.exported).toBe(2);
    expect(traceExportCounts.failed - before.failed).toBe(1);
    expect(processor.queued + processor.exporting).toBe(0);
    await provider.shutdown();
  });

  it('a batch the exporter has not answered by the export timeout is counted failed; the next one goes once it answers', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const before = snapshot();
    const late: Array<(r: ExportResult) => void> = [];
    const { exporter, batches } = recordingExporter((done, batch) => (batch === 1 ? late.push(done) : done(SUCCESS)));
    const { processor, provider, endSpans } = setup(exporter, { maxExportBatchSize: 2, exportTimeoutMillis: 500 });
    endSpans(4);
    await turn();
    expect(batches).toHaveLength(1);
    vi.advanceTimersByTime(500);
    expect(traceExportCounts.failed - before.failed).toBe(2);
    expect(batches).toHaveLength(1); // one request at a time
    late[0]!(SUCCESS); // too late: not counted again
    expect(batches).toHaveLength(2);
    expect(traceExportCounts.exported - before.exported).toBe(2);
    expect(processor.queued + processor.exporting).toBe(0);
    await provider.shutdown();
  });

  it('an exporter without a deadline of its own (Zipkin) that never answers frees the slot at the export timeout (was: export stopped for good)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const before = snapshot();
    const { exporter, batches } = recordingExporter((done, batch) => (batch === 1 ? undefined : done(SUCCESS)), false);
    const { processor, provider, endSpans } = setup(exporter, { maxExportBatchSize: 2, exportTimeoutMillis: 500 });
    endSpans(4);
    await turn();
    expect(batches).toHaveLength(1);
    vi.advanceTimersByTime(500);
    expect(traceExportCounts.failed - before.failed).toBe(2);
    expect(batches).toHaveLength(2);
    expect(traceExportCounts.exported - before.exported).toBe(2);
    expect(processor.queued + processor.exporting).toBe(0);
    await provider.shutdown();
  });

  it('shutdown sends the spans that ended before it and ignores later ones; unsampled spans are never queued', async () => {
    const { exporter, batches } = recordingExporter();
    const { processor, provider, endSpans } = setup(exporter);
    endSpans(2);
    await provider.shutdown();
    expect(batches).toEqual([['s0', 's1']]);
    endSpans(2);
    expect(processor.queued).toBe(0);

    const off = setup(recordingExporter().exporter, {}, new sdk.AlwaysOffSampler());
    off.endSpans(3);
    expect(off.processor.queued).toBe(0);
    await off.provider.shutdown();
  });
});
