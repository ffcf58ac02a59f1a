/**
 * The batch span processor: spans are put into their batch's form as they end (encoded bytes
 * for OTLP/HTTP protobuf, the span objects for other exporters), queued and sent within
 * byte and span bounds, one batch at a time.
 */
import { TraceFlags } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import type { SpanBatchEncoder } from './otlp-protobuf.js';
import { counts, EXPORT_FAILED, type BatchResult, type LossReporter, type PendingSpans, type SpanBatch } from './span-export.js';

/**
 * The most bytes of spans in one export request. The OpenTelemetry Collector's OTLP/HTTP
 * receiver refuses a body over 20 MiB (`max_request_body_size`) with 400, losing the whole
 * batch: with `capture_content`, a few long prompts took a batch of 512 spans past that. A
 * batch is sent once it holds this much; a span larger than this goes alone.
 */
export const MAX_EXPORT_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * The most bytes of spans held waiting or being sent (encoded, or the estimate for span
 * objects: `SpanBatch.bytes`). The queue's span count bounds memory only while spans are
 * small; with `capture_content` each may hold a whole prompt (megabytes), and a collector
 * that is down would otherwise let 2,048 of them pile up. A span that does not fit is
 * dropped, as when the queue is full.
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

/**
 * Exports one batch at a time, in the form it makes with `newBatch`: `SpanBatchEncoder` for
 * the OTLP/HTTP protobuf exporter (a serializer that calls `finish`), `SpanObjectBatch` for
 * exporters that take span objects.
 */
export interface EncodedBatchExporter<B extends SpanBatch = SpanBatchEncoder> {
  newBatch(): B;
  /**
   * Must call `done` once the request is over, whatever happened: with `endsOnItsOwn` the
   * next batch waits for it.
   */
  export(batches: B[], done: (result: BatchResult) => void): void;
  /**
   * The exporter's request ends by itself within a deadline (the OTLP/HTTP transport's, the
   * gRPC exporter's): the next batch waits for it, one request at a time. Without (Zipkin's
   * exporter has no timeout at all), a batch unanswered at `exportTimeoutMillis` frees the
   * slot then, as the SDK's processor does, or one hung request would stop every export.
   */
  readonly endsOnItsOwn?: boolean;
  forceFlush?(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * A batch span processor that bounds bytes as well as spans. Semantics as the SDK's
 * BatchSpanProcessor (and README "When the collector is down, slow or hanging"): spans
 * wait in a queue of at most `maxQueueSize` spans and `maxQueueBytes` (a span ending while
 * it is full is dropped), are sent in batches of `maxExportBatchSize` spans or
 * `maxExportBatchBytes` (whichever is reached first) when a batch fills or
 * `scheduledDelayMillis` after its first span.
 *
 * One batch at a time, unlike the SDK's: the next batch goes only once the exporter has
 * called back for the previous one. A batch not answered within `exportTimeoutMillis` is
 * counted failed then (the gateway gave up on it; a late answer is not counted again), but
 * its request still holds the slot until it ends: the OTLP/HTTP exporter aborts it at the
 * same deadline (tracing.ts). Moving on at the timeout let a hanging collector collect one
 * open request, and its batch's bytes, per timeout. An exporter without a deadline of its
 * own (`endsOnItsOwn` unset: Zipkin's) frees the slot at the timeout instead.
 *
 * On the request path `onEnd` only checks, counts and pushes the span; the batching runs in
 * a `setImmediate` for every span that ended in the meantime, so the response that ended
 * them is not held up.
 */
export class EncodingBatchProcessor<B extends SpanBatch = SpanBatchEncoder> implements SdkTraceBase.SpanProcessor, PendingSpans {
  /** Spans ended and not yet handed to the exporter (ended, encoded or in a full batch). */
  queued = 0;
  /** Spans of the batch the exporter has, until it answers or the export timeout. */
  exporting = 0;
  /** Bytes of the spans held: in the open batch, the full ones, the one being sent. */
  #bytes = 0;
  #stopped = false;
  #shutdown: Promise<void> | undefined;
  /** Ended spans waiting for the next `encode` (at most one event-loop turn). */
  #ended: SdkTraceBase.ReadableSpan[] = [];
  #encodeScheduled = false;
  /** The batch being filled. */
  #open: B | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Full (or due) batches waiting for the exporter, oldest first. */
  readonly #ready: B[] = [];
  /** A batch is with the exporter, not yet called back for. */
  #busy = false;
  /** `forceFlush` callers waiting for the queue to empty. */
  #idle: Array<() => void> = [];
  readonly #encode = () => this.#encodeEnded();

  constructor(
    private readonly exporter: EncodedBatchExporter<B>,
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
      let batch = (this.#open ??= this.exporter.newBatch());
      let size = batch.add(span);
      if (batch.count > 1 && batch.bytes > maxBatchBytes) {
        // Over the request size: the batch goes without it, the span starts the next one.
        batch.undo();
        this.#seal();
        batch = this.#open = this.exporter.newBatch();
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
    let counted = false;
    const count = (result: BatchResult) => {
      if (counted) return; // a batch counted failed at the timeout is not counted again
      counted = true;
      this.exporting -= n;
      this.losses.settle(n, result);
    };
    let answered = false;
    const onResult = (result: BatchResult) => {
      if (answered) return; // an exporter calling back twice counts its batch once
      answered = true;
      clearTimeout(timeout);
      count(result);
      this.#bytes -= batch.bytes;
      this.#busy = false;
      this.#exportNext();
    };
    const timeout = setTimeout(() => {
      count({ code: EXPORT_FAILED, error: new Error('Timeout') });
      if (!this.exporter.endsOnItsOwn) onResult({ code: EXPORT_FAILED }); // counted already: frees the slot
    }, this.settings.exportTimeoutMillis);
    timeout.unref();
    const send = () => {
      if (counted) return onResult({ code: EXPORT_FAILED }); // timed out before it could go: not sent at all
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
