/**
 * What happens to a finished span: batched, exported in the background, and counted
 * (`traceExportCounts`: exported, failed, dropped), with lost spans reported in the log.
 *
 * Two batch processors, both bounded by `OTEL_BSP_MAX_QUEUE_SIZE` and counted alike:
 *
 * - `EncodingBatchProcessor` (encoding-batch-processor.ts) for OTLP/HTTP protobuf, the
 *   default exporter: each span is encoded into its batch's bytes within a turn of the event
 *   loop after it ends, and the span object is dropped. Span objects never wait for their
 *   batch, which under load kept thousands of them alive long enough to be promoted to the
 *   old generation.
 * - `CountedBatchProcessor`, the SDK's BatchSpanProcessor with counting, for every other
 *   exporter (http/json, grpc, zipkin), which take span objects.
 */
import { TraceFlags, type Context } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';

type SpanExporter = SdkTraceBase.SpanExporter;
type ExportResult = OtelCore.ExportResult;

/**
 * An exporter's result for a batch. `rejected`: with a success, the spans the collector
 * refused (OTLP partial success `rejected_spans`), and `error` its `error_message`.
 */
export type BatchResult = ExportResult & { rejected?: number };

/** Where lost spans are reported. */
export interface LossLogger {
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Spans handed to a processor and not yet exported: what a shutdown that stops waiting leaves unsent. */
export interface PendingSpans {
  readonly queued: number;
  readonly exporting: number;
}

/** Spans of every batch processor since the process started: the `promptgate_trace_spans_*_total` counters. */
export interface TraceExportCounts {
  /** Spans the collector accepted. */
  readonly exported: number;
  /** Spans of batches the exporter gave up on, after its retries (collector down, hanging, 4xx/5xx), and spans the collector rejected in a partial success. */
  readonly failed: number;
  /** Spans dropped because the batch queue was full (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048, or MAX_QUEUE_BYTES for OTLP/HTTP protobuf). */
  readonly dropped: number;
}

/** The totals, counted into by every batch processor (this file's and encoding-batch-processor.ts). */
export const counts = { exported: 0, failed: 0, dropped: 0 };
/** Live totals (read at scrape time by metric-families.ts); they never go down. */
export const traceExportCounts: TraceExportCounts = counts;

/** At most one warning about lost spans per interval (the first one at once). */
export const LOSS_WARNING_INTERVAL_MS = 60_000;

/** `ExportResultCode.FAILED` of @opentelemetry/core (loaded on demand, so not imported here). */
export const EXPORT_FAILED = 1 as OtelCore.ExportResultCode;
const EXPORT_SUCCESS = 0 as OtelCore.ExportResultCode;

/**
 * The SDK's BatchSpanProcessor (OTEL_BSP_* from the environment), with its spans counted:
 * exported or failed when the exporter reports a batch, dropped when the queue is full.
 * The SDK only reports drops and failures to its diag logger, which is off by default.
 *
 * The queue bound is applied here, with the processor's own limit: `queued` counts spans
 * handed to the processor and not yet to the exporter, which is never less than the
 * processor's queue, so the processor itself never drops a span uncounted. On the request
 * path that costs two flag tests, a comparison and an increment per ended span. Each batch
 * is counted once: an exporter that throws fails its batch, a second callback is ignored.
 */
export class CountedBatchProcessor implements SdkTraceBase.SpanProcessor, PendingSpans {
  /** Spans in the processor's queue (an upper bound). */
  queued = 0;
  /** Spans handed to the exporter and not yet reported. */
  exporting = 0;
  private stopped = false;
  private readonly maxQueueSize: number;
  private readonly batch: SdkTraceBase.SpanProcessor;

  constructor(sdk: typeof SdkTraceBase, core: typeof OtelCore, exporter: SpanExporter, losses: LossReporter) {
    this.maxQueueSize = core.getNumberFromEnv('OTEL_BSP_MAX_QUEUE_SIZE') ?? 2048;
    const counted: SpanExporter = {
      export: (spans, done) => {
        const n = spans.length;
        this.queued -= n;
        this.exporting += n;
        let reported = false;
        const onResult = (result: BatchResult) => {
          if (reported) return; // an exporter calling back twice counts its batch once
          reported = true;
          this.exporting -= n;
          losses.settle(n, result);
          done(result);
        };
        try {
          exporter.export(spans, onResult);
        } catch (error) {
          onResult({ code: EXPORT_FAILED, error: error as Error }); // the processor would lose the batch uncounted
        }
      },
      shutdown: () => exporter.shutdown(),
      forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
    };
    this.batch = new sdk.BatchSpanProcessor(counted, { maxQueueSize: this.maxQueueSize });
  }

  onStart(span: SdkTraceBase.Span, parentContext: Context): void {
    this.batch.onStart(span, parentContext);
  }

  onEnd(span: SdkTraceBase.ReadableSpan): void {
    // The processor ignores these too: unsampled spans, and every span once shutdown began.
    if (this.stopped || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queued >= this.maxQueueSize) {
      counts.dropped++;
      return;
    }
    this.queued++;
    this.batch.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.batch.forceFlush();
  }

  shutdown(): Promise<void> {
    this.stopped = true;
    return this.batch.shutdown();
  }
}

/**
 * Logs lost spans (failed or dropped) as one warning line: at once the first time, then at
 * most once per LOSS_WARNING_INTERVAL_MS with the counts since the previous line, checked
 * after every export, and a last line at shutdown.
 */
export class LossReporter {
  private warnedAt = -Infinity;
  private failedBefore = counts.failed;
  private droppedBefore = counts.dropped;
  private lastError: string | undefined;
  /** Set when shutdown is over: later export results are not counted. */
  closed = false;

  constructor(private readonly logger: LossLogger | undefined) {}

  /**
   * Counts a batch of `n` spans the exporter reported, exported or failed, and reports
   * losses. A batch that ends after shutdown gave up on it was already reported as `unsent`.
   * Spans the collector rejected in a partial success (`result.rejected`) are lost: failed.
   */
  settle(n: number, result: BatchResult): void {
    if (this.closed) return;
    if (result.code === EXPORT_SUCCESS) {
      const rejected = Math.min(n, Math.max(0, Math.floor(result.rejected ?? 0)));
      counts.exported += n - rejected;
      if (rejected > 0) this.failed(rejected, result.error);
    } else this.failed(n, result.error);
    this.report(false, 0);
  }

  failed(n: number, error: Error | undefined): void {
    counts.failed += n;
    const code = (error as { code?: unknown } | undefined)?.code;
    this.lastError = `${error?.message || 'export failed'}${code === undefined ? '' : ` (${String(code)})`}`;
  }

  /** `unsent`: spans still queued or being exported when shutdown stopped waiting. */
  report(final: boolean, unsent: number): void {
    const failed = counts.failed - this.failedBefore;
    const dropped = counts.dropped - this.droppedBefore;
    if (failed + dropped + unsent === 0 || !this.logger) return;
    const now = Date.now();
    if (!final && now - this.warnedAt < LOSS_WARNING_INTERVAL_MS) return;
    this.warnedAt = now;
    this.failedBefore = counts.failed;
    this.droppedBefore = counts.dropped;
    const fields: Record<string, unknown> = { failed, dropped };
    if (final) fields.unsent = unsent;
    if (this.lastError !== undefined) fields.error = this.lastError;
    this.logger.warn(final ? 'trace spans lost (at shutdown)' : 'trace spans lost', fields);
  }
}

/**
 * The batch processor exports synchronously inside the `span.end()` that fills a batch, so
 * one request in ~85 would wait for a whole batch to be encoded. This hands the batch over
 * on a later turn of the event loop instead; the processor still waits for `done`. An
 * exporter that throws fails its batch (the processor's own call would have caught it).
 */
export function offTheRequestPath(exporter: SpanExporter): SpanExporter {
  return {
    export: (spans, done) =>
      void setImmediate(() => {
        try {
          exporter.export(spans, done);
        } catch (error) {
          done({ code: EXPORT_FAILED, error: error as Error });
        }
      }),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
