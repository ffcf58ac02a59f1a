/**
 * What happens to a finished span: batched, exported in the background, and counted
 * (`traceExportCounts`: exported, failed, dropped), with lost spans reported in the log.
 *
 * Two batch processors, both bounded by `OTEL_BSP_MAX_QUEUE_SIZE` and counted alike:
 *
 * - `EncodingBatchProcessor` for OTLP/HTTP protobuf, the default exporter: each span is
 *   encoded into its batch's bytes within a turn of the event loop after it ends, and the
 *   span object is dropped. Span objects never wait for their batch, which under load kept
 *   thousands of them alive long enough to be promoted to the old generation.
 * - `CountedBatchProcessor`, the SDK's BatchSpanProcessor with counting, for every other
 *   exporter (http/json, grpc, zipkin), which take span objects.
 */
import { TraceFlags, type Context } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import { SpanBatchEncoder } from './otlp-protobuf.js';

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

const counts = { exported: 0, failed: 0, dropped: 0 };
/** Live totals (read at scrape time by metric-families.ts); they never go down. */
export const traceExportCounts: TraceExportCounts = counts;

/** At most one warning about lost spans per interval (the first one at once). */
export const LOSS_WARNING_INTERVAL_MS = 60_000;

/** `ExportResultCode.FAILED` of @opentelemetry/core (loaded on demand, so not imported here). */
const EXPORT_FAILED = 1 as OtelCore.ExportResultCode;
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


/**
 * The most bytes of spans in one export request. The OpenTelemetry Collector's OTLP/HTTP
 * receiver refuses a body over 20 MiB (`max_request_body_size`) with 400, losing the whole
 * batch: with `capture_content`, a few long prompts took a batch of 512 spans past that. A
 * batch is sent once it holds this much; a span larger than this goes alone.
 */
export const MAX_EXPORT_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * The most bytes of encoded spans held waiting or being sent. The queue's span count
 * bounds memory only while spans are small; with `capture_content` each may hold a whole
 * prompt (megabytes), and a collector that is down would otherwise let 2,048 of them pile
 * up. A span that does not fit is dropped, as when the queue is full.
 */
export const MAX_QUEUE_BYTES = 64 * 1024 * 1024;

/** The OTEL_BSP_* settings (spec defaults), as the SDK's BatchSpanProcessor reads them, and the byte bounds. */
export interface BatchSettings {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMillis: number;
  exportTimeoutMillis: number;
  /** Default MAX_EXPORT_BATCH_BYTES. */
  maxExportBatchBytes?: number;
  /** Default MAX_QUEUE_BYTES. */
  maxQueueBytes?: number;
}

export function batchSettingsFromEnv(core: typeof OtelCore): BatchSettings {
  const maxQueueSize = core.getNumberFromEnv('OTEL_BSP_MAX_QUEUE_SIZE') ?? 2048;
  return {
    maxQueueSize,
    // As the SDK: a batch never holds more than the queue.
    maxExportBatchSize: Math.min(core.getNumberFromEnv('OTEL_BSP_MAX_EXPORT_BATCH_SIZE') ?? 512, maxQueueSize),
    scheduledDelayMillis: core.getNumberFromEnv('OTEL_BSP_SCHEDULE_DELAY') ?? 5000,
    exportTimeoutMillis: core.getNumberFromEnv('OTEL_BSP_EXPORT_TIMEOUT') ?? 30000,
  };
}

/** Exports one encoded batch (the OTLP/HTTP exporter with a serializer that calls `finish`). */
export interface EncodedBatchExporter {
  export(batches: SpanBatchEncoder[], done: (result: BatchResult) => void): void;
  forceFlush?(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * A batch span processor for OTLP/HTTP protobuf that keeps bytes, not spans. Semantics as
 * the SDK's BatchSpanProcessor (and README "When the collector is down"): spans wait in a
 * queue of at most `maxQueueSize` spans and `maxQueueBytes` (a span ending while it is full
 * is dropped), are sent in batches of `maxExportBatchSize` spans or `maxExportBatchBytes`
 * (whichever is reached first) when a batch fills or `scheduledDelayMillis` after its
 * first span, one batch at a time; a batch the exporter has not answered within
 * `exportTimeoutMillis` is counted failed and the next one goes.
 *
 * On the request path `onEnd` only checks, counts and pushes the span; the encoding runs in
 * a `setImmediate` for every span that ended in the meantime, so the response that ended
 * them is not held up.
 */
export class EncodingBatchProcessor implements SdkTraceBase.SpanProcessor, PendingSpans {
  /** Spans ended and not yet handed to the exporter (ended, encoded or in a full batch). */
  queued = 0;
  /** Spans of the batch the exporter has. */
  exporting = 0;
  /** Bytes of the encoded spans held: in the open batch, the full ones, the one being sent. */
  #bytes = 0;
  #stopped = false;
  #shutdown: Promise<void> | undefined;
  /** Ended spans waiting for the next `encode` (at most one event-loop turn). */
  #ended: SdkTraceBase.ReadableSpan[] = [];
  #encodeScheduled = false;
  /** The batch being filled. */
  #open: SpanBatchEncoder | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Full (or due) batches waiting for the exporter, oldest first. */
  readonly #ready: SpanBatchEncoder[] = [];
  #busy = false;
  /** `forceFlush` callers waiting for the queue to empty. */
  #idle: Array<() => void> = [];
  readonly #encode = () => this.#encodeEnded();

  constructor(
    private readonly exporter: EncodedBatchExporter,
    private readonly losses: LossReporter,
    private readonly settings: BatchSettings,
  ) {}

  onStart(): void {}

  onEnd(span: SdkTraceBase.ReadableSpan): void {
    if (this.#stopped || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queued >= this.settings.maxQueueSize) {
      counts.dropped++;
      return;
    }
    this.queued++;
    this.#ended.push(span);
    if (!this.#encodeScheduled) {
      this.#encodeScheduled = true;
      setImmediate(this.#encode);
    }
  }

  forceFlush(): Promise<void> {
    this.#encodeEnded();
    this.#seal();
    if (!this.#busy && this.#ready.length === 0) return this.#flushExporter();
    return new Promise<void>((resolve) => this.#idle.push(resolve)).then(() => this.#flushExporter());
  }

  /** Spans ending from now on are ignored (as the SDK's); those already ended are still sent. */
  shutdown(): Promise<void> {
    this.#stopped = true;
    return (this.#shutdown ??= this.forceFlush().then(() => this.exporter.shutdown()));
  }

  #flushExporter(): Promise<void> {
    return this.exporter.forceFlush?.() ?? Promise.resolve();
  }

  #encodeEnded(): void {
    this.#encodeScheduled = false;
    const ended = this.#ended;
    if (ended.length === 0) return;
    this.#ended = [];
    const { maxExportBatchSize, scheduledDelayMillis } = this.settings;
    const maxBatchBytes = this.settings.maxExportBatchBytes ?? MAX_EXPORT_BATCH_BYTES;
    const maxQueueBytes = this.settings.maxQueueBytes ?? MAX_QUEUE_BYTES;
    for (const span of ended) {
      let batch = (this.#open ??= new SpanBatchEncoder());
      let size = batch.add(span);
      if (batch.count > 1 && batch.bytes > maxBatchBytes) {
        // Over the request size: the batch goes without it, the span starts the next one.
        batch.undo();
        this.#seal();
        batch = this.#open = new SpanBatchEncoder();
        size = batch.add(span);
      }
      if (this.#bytes + size > maxQueueBytes) {
        batch.undo();
        this.queued--;
        counts.dropped++;
        continue;
      }
      this.#bytes += size;
      if (batch.count >= maxExportBatchSize) this.#seal();
    }
    if (this.#open?.count === 0) this.#open = undefined;
    if (this.#open !== undefined && this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#seal(), scheduledDelayMillis);
      this.#timer.unref(); // as the SDK's: pending spans never keep the process alive
    }
  }

  /** Moves the open batch to the export queue and starts exporting. */
  #seal(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#open !== undefined && this.#open.count > 0) {
      this.#ready.push(this.#open);
      this.#open = undefined;
    }
    this.#exportNext();
  }

  #exportNext(): void {
    if (this.#busy) return;
    const batch = this.#ready.shift();
    if (batch === undefined) {
      const idle = this.#idle;
      this.#idle = [];
      for (const resolve of idle) resolve();
      return;
    }
    this.#busy = true;
    const n = batch.count;
    this.queued -= n;
    this.exporting += n;
    let reported = false;
    const onResult = (result: BatchResult) => {
      if (reported) return; // an exporter calling back twice (or after the timeout) counts its batch once
      reported = true;
      clearTimeout(timeout);
      this.exporting -= n;
      this.#bytes -= batch.bytes;
      this.losses.settle(n, result);
      this.#busy = false;
      this.#exportNext();
    };
    const timeout = setTimeout(() => onResult({ code: EXPORT_FAILED, error: new Error('Timeout') }), this.settings.exportTimeoutMillis);
    timeout.unref();
    const send = () => {
      if (reported) return;
      try {
        this.exporter.export([batch], onResult);
      } catch (error) {
        onResult({ code: EXPORT_FAILED, error: error as Error });
      }
    };
    // As the SDK's processor: resource attributes still being detected (host.id) are waited for.
    const settled = batch.resourcesSettled();
    if (settled === undefined) send();
    else void settled.then(send, send);
  }
}
