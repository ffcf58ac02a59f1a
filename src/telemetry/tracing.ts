/**
 * OpenTelemetry trace export start-up. `startGateway` (server.ts) calls `startTelemetry`
 * before building the app; it reads the standard environment:
 *
 * - `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is appended) or
 *   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is); `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`,
 *   `_TIMEOUT`, `_COMPRESSION`, `_CERTIFICATE`, `_CLIENT_KEY`, `_CLIENT_CERTIFICATE` (read by
 *   the SDK's exporter configuration)
 * - `OTEL_EXPORTER_OTLP_PROTOCOL` / `_TRACES_PROTOCOL`: `http/protobuf` (default), `http/json`, `grpc`
 * - `OTEL_TRACES_EXPORTER`: `otlp` (default), `console`, `zipkin`, `none`
 * - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_NODE_RESOURCE_DETECTORS`
 * - `OTEL_TRACES_SAMPLER[_ARG]`: `parentbased_always_on` (default), `always_on`, `always_off`,
 *   `traceidratio`, `parentbased_always_off`, `parentbased_traceidratio`
 * - `OTEL_PROPAGATORS`: `tracecontext,baggage` (default), `b3`, `b3multi`, `jaeger`, `none`
 * - `OTEL_BSP_*` (batch span processor), `OTEL_SPAN_*` limits, `OTEL_SDK_DISABLED`, `OTEL_LOG_LEVEL`
 *
 * Whether tracing is requested, the sampler, the resource and the propagators are read in
 * tracing-env.ts; the exporters and their processors here.
 *
 * With neither an endpoint nor an exporter set (or `OTEL_TRACES_EXPORTER=none`), nothing is
 * started and the SDK is not even loaded: the API stays a no-op and span helpers take their
 * cheap path. The SDK packages are loaded on demand (`require` of their CommonJS builds, the
 * same module instances an `import` would get; sdk-packages.ts), so `startTelemetry` stays
 * synchronous and spans are exported from the first request on.
 *
 * What runs is the trace SDK alone, not the NodeSDK: a BasicTracerProvider with a batch
 * processor per exporter (encoding-batch-processor.ts: one batch at a time, bounded in spans
 * and bytes) and the W3C propagators. OTLP/HTTP is the SDK's exporter over a transport with
 * a real deadline (otlp-http-transport.ts); with protobuf it sends batches that promptgate
 * encodes as spans end (otlp-protobuf.ts).
 * Only traces are exported (metrics are Prometheus, see metrics.ts, logs go to stdout); no
 * auto-instrumentation and no async context manager are registered: the proxy makes its
 * spans by hand (spans.ts) and passes their context explicitly.
 *
 * Lost spans are visible without OTEL_LOG_LEVEL: each batch processor counts the spans
 * exported, failed (the exporter gave up after its retries, or the export timed out) and
 * dropped (queue full)
 * (`traceExportCounts`, the `promptgate_trace_spans_*_total` metrics), and losses are
 * logged as one warning a minute at most. Shutdown waits at most
 * `SHUTDOWN_FLUSH_MS` for the last spans, whatever the exporter's timeout.
 */
import { diag, DiagConsoleLogger, propagation, trace } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as OtlpExporterBase from '@opentelemetry/otlp-exporter-base';
import type * as OtlpExporterHttp from '@opentelemetry/otlp-exporter-base/node-http';
import type * as OtlpTransformer from '@opentelemetry/otlp-transformer';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import { SpanBatchEncoder } from './otlp-protobuf.js';
import { batchSettingsFromEnv, EncodingBatchProcessor, type EncodedBatchExporter } from './encoding-batch-processor.js';
import { deadlineHttpTransport } from './otlp-http-transport.js';
import { LossReporter, SpanObjectBatch, type BatchResult } from './span-export.js';
import { redactEndpoint } from './redact.js';
import { DOUBLE_ATTRIBUTES } from './span-attributes.js';
import { load, optional } from './sdk-packages.js';
import { list, propagatorFromEnv, resourceFromEnv, samplerFromEnv, tracingRequested } from './tracing-env.js';

/** `ExportResultCode.SUCCESS` of @opentelemetry/core (loaded on demand). */
const EXPORT_SUCCESS = 0;

export interface TelemetryOptions {
  /** `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one. */
  serviceName: string;
  /**
   * Defaults to `process.env`. Decides whether tracing starts and its exporters, protocol,
   * sampler, propagators and service name; the SDK parts read the rest (exporter endpoint
   * and headers, `OTEL_BSP_*`, span limits, resource attributes) from `process.env`.
   */
  env?: NodeJS.ProcessEnv;
  /** Where lost spans are reported (at most one warning per minute, and one at shutdown). */
  logger?: { warn(msg: string, fields?: Record<string, unknown>): void };
}

export interface TelemetryHandle {
  /** True when the SDK was started and spans are exported. */
  readonly tracing: boolean;
  /**
   * The OTLP endpoint variable's value as a log line may show it, user info masked
   * (`redactEndpoint`); undefined when tracing is off or neither variable is set.
   */
  readonly endpoint?: string;
  /**
   * Flushes pending spans and stops the SDK, in `SHUTDOWN_FLUSH_MS` at most (a hanging
   * collector cannot hold up the exit). Idempotent; never rejects.
   */
  shutdown(): Promise<void>;
}

/** The longest `shutdown()` waits for the last batches to be exported. */
export const SHUTDOWN_FLUSH_MS = 5_000;
const NOOP_HANDLE: TelemetryHandle = Object.freeze({ tracing: false, shutdown: async () => {} });
let current: TelemetryHandle | undefined;

/**
 * Starts trace export when the environment asks for it. Once per process: a second call
 * returns the running handle.
 *
 * @example
 * const telemetry = startTelemetry({ serviceName: config.telemetry.service_name });
 * process.once('SIGTERM', () => void telemetry.shutdown());
 */
export function startTelemetry(options: TelemetryOptions): TelemetryHandle {
  if (current) return current;
  const env = options.env ?? process.env;
  if (!tracingRequested(env)) return NOOP_HANDLE;

  const core = load('@opentelemetry/core') as typeof OtelCore;
  const sdk = load('@opentelemetry/sdk-trace-base') as typeof SdkTraceBase;
  const logLevel = env.OTEL_LOG_LEVEL?.trim();
  if (logLevel) diag.setLogger(new DiagConsoleLogger(), { logLevel: core.diagLogLevelFromString(logLevel) });

  const losses = new LossReporter(options.logger);
  const spanProcessors = spanProcessorsFromEnv(sdk, core, env, losses, options.logger);
  if (spanProcessors.length === 0) return NOOP_HANDLE;
  const provider = new sdk.BasicTracerProvider({
    resource: resourceFromEnv(env, options.serviceName),
    sampler: samplerFromEnv(sdk, env),
    spanProcessors,
  });
  trace.setGlobalTracerProvider(provider);
  // No async context manager: every span is parented explicitly (spans.ts, context/build.ts).
  // An AsyncLocalStorage one would put a hook on every promise of every request (~15 µs of
  // CPU per request in `npm run bench -- --profile`) for nothing promptgate reads.
  const propagator = propagatorFromEnv(core, env);
  if (propagator) propagation.setGlobalPropagator(propagator);

  let stopping: Promise<void> | undefined;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const handle: TelemetryHandle = {
    tracing: true,
    endpoint: endpoint === undefined ? undefined : redactEndpoint(endpoint),
    shutdown() {
      stopping ??= new Promise<void>((resolve) => {
        // The exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default) bounds a
        // hanging collector too, but it is configurable and the batch processor flushes
        // several batches: the exit does not wait past SHUTDOWN_FLUSH_MS for any of them.
        const timer = setTimeout(resolve, SHUTDOWN_FLUSH_MS);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        // Flushes every batch processor, then shuts the exporters down; failures are counted.
        provider.shutdown().then(done, done);
      })
        .finally(() => {
          let unsent = 0;
          for (const p of spanProcessors) if (p instanceof EncodingBatchProcessor) unsent += p.queued + p.exporting;
          losses.report(true, unsent);
          losses.closed = true;
          // Unregister the globals so the API is a no-op again (and a later start works).
          trace.disable();
          propagation.disable();
          current = undefined;
        });
      return stopping;
    },
  };
  current = handle;
  return handle;
}

type SpanExporter = SdkTraceBase.SpanExporter;

/** One processor per exporter named in OTEL_TRACES_EXPORTER (NodeSDK rules): batched (OTEL_BSP_*), the console one simple. */
function spanProcessorsFromEnv(sdk: typeof SdkTraceBase, core: typeof OtelCore, env: NodeJS.ProcessEnv, losses: LossReporter, logger: TelemetryOptions['logger']): SdkTraceBase.SpanProcessor[] {
  let names = [...new Set(list(env.OTEL_TRACES_EXPORTER))].filter((s) => s !== 'null');
  if (names.length === 0) names = ['otlp'];
  else if (names.length > 1 && names.includes('none')) {
    diag.warn('OTEL_TRACES_EXPORTER contains "none" along with other exporters. Using default otlp exporter.');
    names = ['otlp'];
  }
  const processors: SdkTraceBase.SpanProcessor[] = [];
  for (const name of names) {
    if (name === 'console') processors.push(new sdk.SimpleSpanProcessor(new sdk.ConsoleSpanExporter()));
    else if (name === 'otlp') processors.push(otlpProcessor(core, env, losses, logger));
    else if (name === 'zipkin') {
      const zipkin = optional('@opentelemetry/exporter-zipkin')?.ZipkinExporter;
      if (zipkin) processors.push(new EncodingBatchProcessor(spanObjectExporter(new zipkin(), false), losses, batchSettingsFromEnv(core)));
      else diag.warn('OTEL_TRACES_EXPORTER=zipkin: @opentelemetry/exporter-zipkin is not installed.');
    } else diag.warn(`Unrecognized OTEL_TRACES_EXPORTER value: ${name}.`);
  }
  if (processors.length === 0) diag.warn('Unable to set up trace exporter(s) due to invalid exporter and/or protocol values.');
  return processors;
}

/** The OTLP trace exporter's processor: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL decides; the exporter reads its endpoint and headers from process.env. */
function otlpProcessor(core: typeof OtelCore, env: NodeJS.ProcessEnv, losses: LossReporter, logger: TelemetryOptions['logger']): SdkTraceBase.SpanProcessor {
  const settings = batchSettingsFromEnv(core);
  let protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim() || 'http/protobuf';
  if (protocol === 'grpc') {
    const grpc = optional('@opentelemetry/exporter-trace-otlp-grpc')?.OTLPTraceExporter;
    if (grpc) return new EncodingBatchProcessor(spanObjectExporter(new grpc(), true), losses, settings);
    diag.warn('OTLP traces protocol grpc: @opentelemetry/exporter-trace-otlp-grpc is not installed. Using http/protobuf.');
    protocol = 'http/protobuf';
  }
  if (protocol !== 'http/json' && protocol !== 'http/protobuf') {
    diag.warn(`Unsupported OTLP traces protocol: ${protocol}. Using http/protobuf.`);
    protocol = 'http/protobuf';
  }
  const endpoint = unusableHttpEndpoint(env);
  if (endpoint !== undefined) logger?.warn('OTLP traces endpoint is not an http(s) URL: no span will reach the collector', endpoint);
  if (protocol === 'http/protobuf') return new EncodingBatchProcessor(protobufExporter(settings.exportTimeoutMillis), losses, settings);
  return new EncodingBatchProcessor(spanObjectExporter(jsonExporter(settings.exportTimeoutMillis), true), losses, settings);
}

/** An exporter of span objects (OTLP/HTTP JSON, gRPC, Zipkin) for the batch processor: its batches are `SpanObjectBatch`es. */
function spanObjectExporter(exporter: SpanExporter, endsOnItsOwn: boolean): EncodedBatchExporter<SpanObjectBatch> {
  return {
    endsOnItsOwn,
    newBatch: () => new SpanObjectBatch(),
    export: (batches, done) => exporter.export(batches[0]!.spans, done),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
    shutdown: () => exporter.shutdown(),
  };
}

/**
 * The endpoint variable the OTLP/HTTP exporter will use, when it is no http(s) URL. A common
 * slip is `collector:4318` without `http://`: it parses as a URL of scheme `collector:`,
 * the exporter starts, and every batch fails. Said at start, not a minute later. The value
 * is returned for that warning, with its user info masked (`redactEndpoint`).
 */
function unusableHttpEndpoint(env: NodeJS.ProcessEnv): Record<string, string> | undefined {
  const name = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  const value = env[name]?.trim();
  if (!value) return undefined; // the exporter's default, http://localhost:4318
  try {
    const { protocol } = new URL(value);
    if (protocol === 'http:' || protocol === 'https:') return undefined;
  } catch {
    // not a URL at all
  }
  return { variable: name, endpoint: redactEndpoint(value) };
}

/**
 * OTLP/HTTP protobuf: the SDK's exporter (`otlpHttpExporter`) sending batches promptgate
 * encoded (otlp-protobuf.ts: the same bytes as the SDK's serializer at a fraction of its
 * CPU; encoding-batch-processor.ts batches them).
 */
function protobufExporter(exportTimeoutMillis: number): EncodedBatchExporter {
  const transformer = load('@opentelemetry/otlp-transformer') as typeof OtlpTransformer;
  // The processor hands over one encoded batch at a time.
  const serializer: OtlpTransformer.ISerializer<SpanBatchEncoder[], OtlpTransformer.IExportTraceServiceResponse> = {
    serializeRequest: (batches) => batches[0]!.finish(),
    deserializeResponse: (data) => transformer.ProtobufTraceSerializer.deserializeResponse(data),
  };
  const metrics = { name: transformer.TraceExporterMetricsHelper.name, countItems: (batches: SpanBatchEncoder[]) => batches[0]?.count ?? 0 };
  return { newBatch: () => new SpanBatchEncoder(), endsOnItsOwn: true, ...otlpHttpExporter({ serializer, contentType: 'application/x-protobuf', metrics, exportTimeoutMillis }) };
}

/**
 * OTLP/HTTP JSON: the SDK's exporter, as `OTLPTraceExporter` of exporter-trace-otlp-http
 * builds it, with the DOUBLE_ATTRIBUTES written as doubles: the SDK's JSON serializer writes
 * an integral number as `intValue` (a temperature or score of 0), one attribute of two types.
 */
function jsonExporter(exportTimeoutMillis: number): SpanExporter {
  const transformer = load('@opentelemetry/otlp-transformer') as typeof OtlpTransformer;
  const json = transformer.JsonTraceSerializer;
  const serializer: TraceSerializer<SdkTraceBase.ReadableSpan[]> = {
    serializeRequest: (spans) => withDoubles(json.serializeRequest(spans)),
    deserializeResponse: (data) => json.deserializeResponse(data),
  };
  return otlpHttpExporter({ serializer, contentType: 'application/json', metrics: transformer.TraceExporterMetricsHelper, exportTimeoutMillis });
}

type JsonAttribute = { key: string; value?: { intValue?: number | string; doubleValue?: number } };
type JsonSpans = { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<{ attributes?: JsonAttribute[] }> }> }> };

/** An OTLP/JSON export request with each DOUBLE_ATTRIBUTES `intValue` written as a `doubleValue` (off the request path). */
function withDoubles(body: Uint8Array | undefined): Uint8Array | undefined {
  if (body === undefined) return body;
  const request = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')) as JsonSpans;
  let changed = false;
  for (const rs of request.resourceSpans ?? []) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        for (const a of span.attributes ?? []) {
          if (a.value?.intValue === undefined || !DOUBLE_ATTRIBUTES.has(a.key)) continue;
          a.value = { doubleValue: Number(a.value.intValue) };
          changed = true;
        }
      }
    }
  }
  return changed ? Buffer.from(JSON.stringify(request), 'utf8') : body;
}

type TraceSerializer<T> = OtlpTransformer.ISerializer<T, OtlpTransformer.IExportTraceServiceResponse>;

interface OtlpHttpExporterOptions<T> {
  serializer: TraceSerializer<T>;
  contentType: string;
  metrics: OtlpTransformer.IExporterMetricsHelper<T>;
  /** OTEL_BSP_EXPORT_TIMEOUT: the batch processor stops waiting then, so the request ends then too. */
  exportTimeoutMillis: number;
}

/**
 * The SDK's OTLP/HTTP exporter (endpoint, headers, timeout, compression, certificates from
 * OTEL_EXPORTER_OTLP_*), with two changes:
 *
 * - Its transport is `deadlineHttpTransport`: an export, retries included, is aborted after
 *   the smaller of OTEL_EXPORTER_OTLP_TIMEOUT and OTEL_BSP_EXPORT_TIMEOUT (both "the most
 *   time an export may take" in the OTel spec). The SDK's transport only timed out an idle
 *   socket: a slow or trickling collector kept requests open past both, while the SDK's
 *   batch processor sent the next batch, so open requests piled up.
 * - Its results name the spans a collector rejected in a partial success (200 with
 *   `rejected_spans`): the SDK reports such a batch exported, and the rejection only to its
 *   diag logger (off by default), so those spans were lost unseen.
 */
function otlpHttpExporter<T>({
  serializer,
  contentType,
  metrics,
  exportTimeoutMillis,
}: OtlpHttpExporterOptions<T>): { export(items: T, done: (result: BatchResult) => void): void; forceFlush(): Promise<void>; shutdown(): Promise<void> } {
  const base = load('@opentelemetry/otlp-exporter-base') as typeof OtlpExporterBase;
  const http = load('@opentelemetry/otlp-exporter-base/node-http') as typeof OtlpExporterHttp;
  // The delegate reads the answer and calls back in the same turn: no other export's answer
  // can come in between.
  let rejected: { spans: number; message: string | undefined } | undefined;
  const reading: TraceSerializer<T> = {
    serializeRequest: (items) => serializer.serializeRequest(items),
    deserializeResponse: (data) => {
      const response = serializer.deserializeResponse(data);
      const partial = response?.partialSuccess;
      const spans = Number(partial?.rejectedSpans ?? 0);
      rejected = spans > 0 ? { spans, message: partial?.errorMessage || undefined } : undefined;
      return response;
    },
  };
  const fromEnv = http.convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': contentType });
  const options = { ...fromEnv, timeoutMillis: Math.min(fromEnv.timeoutMillis, exportTimeoutMillis) };
  const exportMetrics = http.createOtlpHttpExporterMetrics('otlp_http_span_exporter', metrics, options.url, undefined);
  const delegate = base.createOtlpNetworkExportDelegate(options, reading, exportMetrics, deadlineHttpTransport(options));
  const exporter = new base.OTLPExporterBase<T>(delegate);
  return {
    export(items, done) {
      exporter.export(items, (result) => {
        const partial = rejected;
        rejected = undefined;
        if (partial === undefined || result.code !== EXPORT_SUCCESS) return done(result);
        const error = new Error(`collector rejected ${partial.spans} span${partial.spans === 1 ? '' : 's'}${partial.message ? `: ${partial.message}` : ''}`);
        done({ ...result, rejected: partial.spans, error });
      });
    },
    forceFlush: () => exporter.forceFlush(),
    shutdown: () => exporter.shutdown(),
  };
}
