/**
 * What happens to a finished span: batched, exported in the background, and counted
 * (`traceExportCounts`: exported, failed, dropped), with lost spans reported in the log.
 *
 * One batch processor for every exporter, `EncodingBatchProcessor`
 * (encoding-batch-processor.ts), bounded in spans (`OTEL_BSP_MAX_QUEUE_SIZE`) and in bytes.
 * Its batches take the form their exporter sends (`SpanBatch`):
 *
 * - OTLP/HTTP protobuf, the default: `SpanBatchEncoder` (otlp-protobuf.ts). Each span is
 *   encoded within a turn of the event loop after it ends, and the span object is dropped.
 *   Span objects never wait for their batch, which under load kept thousands of them alive
 *   long enough to be promoted to the old generation.
 * - Every other exporter (http/json, grpc, zipkin), which take span objects:
 *   `SpanObjectBatch`, the spans with their size estimated.
 */
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type * as OtelCore from '@opentelemetry/core';

type ExportResult = OtelCore.ExportResult;
type Resource = ReadableSpan['resource'];

/**
 * A batch being filled, in the form its exporter sends. The processor bounds its queue and
 * its export requests by `bytes`, so `bytes` must be what the batch holds (or, for span
 * objects, an estimate of their encoded size).
 */
export interface SpanBatch {
  /** Spans added. */
  readonly count: number;
  /** Bytes of the spans added. */
  readonly bytes: number;
  /** Adds `span`; returns its size in bytes. */
  add(span: ReadableSpan): number;
  /** Takes the span added last out of the batch again (once). */
  undo(): void;
  /**
   * Settles when every resource of the batch has its asynchronous attributes (`host.id` of
   * the host detector is read from a file): an exporter reads `resource.attributes`, which
   * leaves out an attribute still pending. Undefined when none is pending.
   */
  resourcesSettled(): Promise<unknown> | undefined;
}

/** `SpanBatch.resourcesSettled` of the batch's resources. */
export function resourcesSettled(resources: Iterable<Resource>): Promise<unknown> | undefined {
  let pending: Array<Promise<void>> | undefined;
  for (const resource of resources) {
    if (resource.asyncAttributesPending) (pending ??= []).push(resource.waitForAsyncAttributes?.() ?? Promise.resolve());
  }
  return pending && Promise.allSettled(pending);
}

/**
 * Spans kept as objects, for the exporters that encode them themselves (OTLP/HTTP JSON,
 * gRPC, Zipkin), each counted at its estimated size (`estimatedSpanBytes`). Without it only
 * the span count bounded these exporters: with `capture_content` and 1 MB prompts, a batch
 * of 512 spans made a 256 MB export request.
 */
export class SpanObjectBatch implements SpanBatch {
  readonly spans: ReadableSpan[] = [];
  bytes = 0;
  #lastSize: number | undefined;

  get count(): number {
    return this.spans.length;
  }

  add(span: ReadableSpan): number {
    const size = estimatedSpanBytes(span);
    this.spans.push(span);
    this.bytes += size;
    this.#lastSize = size;
    return size;
  }

  undo(): void {
    if (this.#lastSize === undefined) return;
    this.spans.pop();
    this.bytes -= this.#lastSize;
    this.#lastSize = undefined;
  }

  resourcesSettled(): Promise<unknown> | undefined {
    return resourcesSettled(new Set(this.spans.map((span) => span.resource)));
  }
}

/**
 * Framing per span (ids, times, kind, status and the field names around them), per
 * attribute, event and link, in the OTLP/JSON form, the largest of the encodings: about
 * what each takes beyond its text.
 */
const SPAN_FRAMING_BYTES = 320;
const ATTRIBUTE_FRAMING_BYTES = 40;
const EVENT_FRAMING_BYTES = 80;
const LINK_FRAMING_BYTES = 160;

/**
 * About the bytes `span` takes encoded: its text (name, attribute keys and values, in UTF-8)
 * plus framing. Text dominates a large span (captured prompts), so the estimate is close
 * where the bounds matter; JSON escapes (`\n`, `\"`) are not counted.
 */
export function estimatedSpanBytes(span: ReadableSpan): number {
  let bytes = SPAN_FRAMING_BYTES + span.name.length + attributesBytes(span.attributes) + (span.status.message?.length ?? 0);
  for (const event of span.events) bytes += EVENT_FRAMING_BYTES + event.name.length + attributesBytes(event.attributes);
  for (const link of span.links) bytes += LINK_FRAMING_BYTES + attributesBytes(link.attributes);
  return bytes;
}

function attributesBytes(attributes: Readonly<Record<string, unknown>> | undefined): number {
  let bytes = 0;
  if (attributes) for (const key of Object.keys(attributes)) bytes += ATTRIBUTE_FRAMING_BYTES + key.length + valueBytes(attributes[key]);
  return bytes;
}

function valueBytes(v: unknown): number {
  if (typeof v === 'string') return Buffer.byteLength(v, 'utf8');
  if (Array.isArray(v)) return v.reduce((sum: number, item) => sum + ATTRIBUTE_FRAMING_BYTES + valueBytes(item), 0);
  return 20; // a number or boolean, as decimal text
}

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
  /** Spans of batches the exporter gave up on, after its retries (collector down, hanging, 4xx/5xx), or the processor stopped waiting for (`OTEL_BSP_EXPORT_TIMEOUT`), and spans the collector rejected in a partial success. */
  readonly failed: number;
  /** Spans dropped because the batch queue was full (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048, or MAX_QUEUE_BYTES). */
  readonly dropped: number;
}

/** The totals, counted into by the batch processor (encoding-batch-processor.ts). */
export const counts = { exported: 0, failed: 0, dropped: 0 };
/** Live totals (read at scrape time by metric-families.ts); they never go down. */
export const traceExportCounts: TraceExportCounts = counts;

/** At most one warning about lost spans per interval (the first one at once). */
export const LOSS_WARNING_INTERVAL_MS = 60_000;

/** `ExportResultCode.FAILED` of @opentelemetry/core (loaded on demand, so not imported here). */
export const EXPORT_FAILED = 1 as OtelCore.ExportResultCode;
const EXPORT_SUCCESS = 0 as OtelCore.ExportResultCode;

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
