/**
 * OpenTelemetry trace export start-up. `main` calls `startTelemetry` before building the
 * app; it reads the standard environment:
 *
 * - `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is appended) or
 *   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is); `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`,
 *   `_TIMEOUT`, `_COMPRESSION` (read by the exporter)
 * - `OTEL_EXPORTER_OTLP_PROTOCOL` / `_TRACES_PROTOCOL`: `http/protobuf` (default), `http/json`, `grpc`
 * - `OTEL_TRACES_EXPORTER`: `otlp` (default), `console`, `zipkin`, `none`
 * - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_NODE_RESOURCE_DETECTORS`
 * - `OTEL_TRACES_SAMPLER[_ARG]`: `parentbased_always_on` (default), `always_on`, `always_off`,
 *   `traceidratio`, `parentbased_always_off`, `parentbased_traceidratio`
 * - `OTEL_PROPAGATORS`: `tracecontext,baggage` (default), `b3`, `b3multi`, `jaeger`, `none`
 * - `OTEL_BSP_*` (batch span processor), `OTEL_SPAN_*` limits, `OTEL_SDK_DISABLED`, `OTEL_LOG_LEVEL`
 *
 * With neither an endpoint nor an exporter set (or `OTEL_TRACES_EXPORTER=none`), nothing is
 * started and the SDK is not even loaded: the API stays a no-op and span helpers take their
 * cheap path. The SDK packages are loaded on demand (`require` of their CommonJS builds, the
 * same module instances an `import` would get), so `startTelemetry` stays synchronous and
 * spans are exported from the first request on.
 *
 * What runs is the trace SDK alone, not the NodeSDK: a BasicTracerProvider with a batch
 * processor per exporter and the W3C propagators; OTLP/HTTP protobuf is the SDK's exporter
 * sending batches that promptgate encodes as spans end (span-export.ts, otlp-protobuf.ts).
 * Only traces are exported (metrics are Prometheus, see metrics.ts, logs go to stdout); no
 * auto-instrumentation and no async context manager are registered: the proxy makes its
 * spans by hand (spans.ts) and passes their context explicitly.
 *
 * Lost spans are visible without OTEL_LOG_LEVEL: each batch processor counts the spans
 * exported, failed (the exporter gave up after its retries) and dropped (queue full)
 * (`traceExportCounts`, the `promptgate_trace_spans_*_total` metrics), and losses are
 * logged as one warning a minute at most. Shutdown waits at most
 * `SHUTDOWN_FLUSH_MS` for the last spans, whatever the exporter's timeout.
 */
import { createRequire } from 'node:module';
import { diag, DiagConsoleLogger, propagation, trace, type TextMapPropagator } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as OtelResources from '@opentelemetry/resources';
import type * as OtlpExporterBase from '@opentelemetry/otlp-exporter-base';
import type * as OtlpExporterHttp from '@opentelemetry/otlp-exporter-base/node-http';
import type * as OtlpTransformer from '@opentelemetry/otlp-transformer';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import type { SpanBatchEncoder } from './otlp-protobuf.js';
import {
  batchSettingsFromEnv,
  CountedBatchProcessor,
  EncodingBatchProcessor,
  LossReporter,
  offTheRequestPath,
  type BatchResult,
  type EncodedBatchExporter,
} from './span-export.js';

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
   * Flushes pending spans and stops the SDK, in `SHUTDOWN_FLUSH_MS` at most (a hanging
   * collector cannot hold up the exit). Idempotent; never rejects.
   */
  shutdown(): Promise<void>;
}

/** The longest `shutdown()` waits for the last batches to be exported. */
export const SHUTDOWN_FLUSH_MS = 5_000;
const NOOP_HANDLE: TelemetryHandle = Object.freeze({ tracing: false, shutdown: async () => {} });
let current: TelemetryHandle | undefined;

/** Loads the SDK packages on demand (only when tracing is requested). */
const load = createRequire(import.meta.url);

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
  const handle: TelemetryHandle = {
    tracing: true,
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
          for (const p of spanProcessors) if (p instanceof CountedBatchProcessor || p instanceof EncodingBatchProcessor) unsent += p.queued + p.exporting;
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

/** Whether the environment configures a trace exporter (spec: OTEL_TRACES_EXPORTER, OTLP endpoints). */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if (isTrue(env.OTEL_SDK_DISABLED)) return false;
  const exporters = list(env.OTEL_TRACES_EXPORTER).filter((s) => s !== 'null');
  if (exporters[0] === 'none') return false;
  return exporters.length > 0 || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

function isTrue(v: string | undefined): boolean {
  return v?.trim().toLowerCase() === 'true';
}

/** A comma-separated env value: trimmed, without empty entries. */
function list(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

type SpanExporter = SdkTraceBase.SpanExporter;
type ExporterModule = { OTLPTraceExporter?: new () => SpanExporter; ZipkinExporter?: new () => SpanExporter };

/** One processor per exporter named in OTEL_TRACES_EXPORTER (NodeSDK rules): batched, the console one simple. */
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
    else if (name === 'otlp') processors.push(otlpProcessor(sdk, core, env, losses, logger));
    else if (name === 'zipkin') {
      const zipkin = optional('@opentelemetry/exporter-zipkin')?.ZipkinExporter;
      if (zipkin) processors.push(new CountedBatchProcessor(sdk, core, new zipkin(), losses));
      else diag.warn('OTEL_TRACES_EXPORTER=zipkin: @opentelemetry/exporter-zipkin is not installed.');
    } else diag.warn(`Unrecognized OTEL_TRACES_EXPORTER value: ${name}.`);
  }
  if (processors.length === 0) diag.warn('Unable to set up trace exporter(s) due to invalid exporter and/or protocol values.');
  return processors;
}

/** The OTLP trace exporter's processor: OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL decides; the exporter reads its endpoint and headers from process.env. */
function otlpProcessor(sdk: typeof SdkTraceBase, core: typeof OtelCore, env: NodeJS.ProcessEnv, losses: LossReporter, logger: TelemetryOptions['logger']): SdkTraceBase.SpanProcessor {
  let protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim() || 'http/protobuf';
  if (protocol === 'grpc') {
    const grpc = optional('@opentelemetry/exporter-trace-otlp-grpc')?.OTLPTraceExporter;
    if (grpc) return new CountedBatchProcessor(sdk, core, offTheRequestPath(new grpc()), losses);
    diag.warn('OTLP traces protocol grpc: @opentelemetry/exporter-trace-otlp-grpc is not installed. Using http/protobuf.');
    protocol = 'http/protobuf';
  }
  if (protocol !== 'http/json' && protocol !== 'http/protobuf') {
    diag.warn(`Unsupported OTLP traces protocol: ${protocol}. Using http/protobuf.`);
    protocol = 'http/protobuf';
  }
  const endpoint = unusableHttpEndpoint(env);
  if (endpoint !== undefined) logger?.warn('OTLP traces endpoint is not an http(s) URL: no span will reach the collector', endpoint);
  if (protocol === 'http/protobuf') return new EncodingBatchProcessor(protobufExporter(), losses, batchSettingsFromEnv(core));
  return new CountedBatchProcessor(sdk, core, offTheRequestPath(jsonExporter()), losses);
}

/**
 * The endpoint variable the OTLP/HTTP exporter will use, when it is no http(s) URL. A common
 * slip is `collector:4318` without `http://`: it parses as a URL of scheme `collector:`,
 * the exporter starts, and every batch fails. Said at start, not a minute later.
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
  return { variable: name, endpoint: value };
}

/**
 * OTLP/HTTP protobuf: the SDK's exporter (endpoint, headers, timeout, retries, compression
 * from OTEL_EXPORTER_OTLP_*) sending batches promptgate encoded (otlp-protobuf.ts: the same
 * bytes as the SDK's serializer at a fraction of its CPU; span-export.ts batches them).
 */
function protobufExporter(): EncodedBatchExporter {
  const transformer = load('@opentelemetry/otlp-transformer') as typeof OtlpTransformer;
  // The processor hands over one encoded batch at a time.
  const serializer: OtlpTransformer.ISerializer<SpanBatchEncoder[], OtlpTransformer.IExportTraceServiceResponse> = {
    serializeRequest: (batches) => batches[0]!.finish(),
    deserializeResponse: (data) => transformer.ProtobufTraceSerializer.deserializeResponse(data),
  };
  const metrics = { name: transformer.TraceExporterMetricsHelper.name, countItems: (batches: SpanBatchEncoder[]) => batches[0]?.count ?? 0 };
  return otlpHttpExporter(serializer, 'application/x-protobuf', metrics);
}

/** OTLP/HTTP JSON: the SDK's exporter, as `OTLPTraceExporter` of exporter-trace-otlp-http builds it. */
function jsonExporter(): SpanExporter {
  const transformer = load('@opentelemetry/otlp-transformer') as typeof OtlpTransformer;
  return otlpHttpExporter(transformer.JsonTraceSerializer, 'application/json', transformer.TraceExporterMetricsHelper);
}

type TraceSerializer<T> = OtlpTransformer.ISerializer<T, OtlpTransformer.IExportTraceServiceResponse>;

/**
 * The SDK's OTLP/HTTP exporter (endpoint, headers, timeout, retries, compression from
 * OTEL_EXPORTER_OTLP_*), whose results name the spans a collector rejected in a partial
 * success (200 with `rejected_spans`): the SDK reports such a batch exported, and the
 * rejection only to its diag logger (off by default), so those spans were lost unseen.
 */
function otlpHttpExporter<T>(
  serializer: TraceSerializer<T>,
  contentType: string,
  metrics: OtlpTransformer.IExporterMetricsHelper<T>,
): { export(items: T, done: (result: BatchResult) => void): void; forceFlush(): Promise<void>; shutdown(): Promise<void> } {
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
  const options = http.convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': contentType });
  const delegate = http.createOtlpHttpExportDelegate(options, reading, 'otlp_http_span_exporter', metrics, undefined);
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

/** A package that may not be installed (not a dependency of promptgate itself). */
function optional<T = ExporterModule>(name: string): T | undefined {
  try {
    return load(name) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

/** OTEL_TRACES_SAMPLER[_ARG], with the SDK's sampler classes; parentbased_always_on by default. */
function samplerFromEnv(sdk: typeof SdkTraceBase, env: NodeJS.ProcessEnv): SdkTraceBase.Sampler {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() || 'parentbased_always_on';
  const ratio = (): number => {
    const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
    const value = arg ? Number(arg) : NaN;
    if (!arg || !Number.isFinite(value)) {
      diag.error(`OTEL_TRACES_SAMPLER_ARG is blank or not a number, defaulting to 1.`);
      return 1;
    }
    if (value < 0 || value > 1) {
      diag.error(`OTEL_TRACES_SAMPLER_ARG=${value} was given, but it is out of range ([0..1]), defaulting to 1.`);
      return 1;
    }
    return value;
  };
  switch (name) {
    case 'always_on':
      return new sdk.AlwaysOnSampler();
    case 'always_off':
      return new sdk.AlwaysOffSampler();
    case 'traceidratio':
      return new sdk.TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_off':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio()) });
    case 'parentbased_always_on':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
    default:
      diag.error(`OTEL_TRACES_SAMPLER value "${name}" invalid, defaulting to "parentbased_always_on".`);
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
  }
}

/**
 * The SDK's default resource (telemetry.sdk.*) merged with the detected one (NodeSDK
 * defaults: env, process, host; OTEL_NODE_RESOURCE_DETECTORS picks others), then our
 * service name unless the environment names one.
 */
function resourceFromEnv(env: NodeJS.ProcessEnv, serviceName: string): OtelResources.Resource {
  const res = load('@opentelemetry/resources') as typeof OtelResources;
  const all: Record<string, OtelResources.ResourceDetector> = {
    env: res.envDetector,
    host: res.hostDetector,
    os: res.osDetector,
    process: res.processDetector,
    serviceinstance: res.serviceInstanceIdDetector,
  };
  let detectors = [res.envDetector, res.processDetector, res.hostDetector];
  const named = list(env.OTEL_NODE_RESOURCE_DETECTORS);
  if (named.includes('all')) detectors = Object.values(all);
  else if (named.includes('none')) detectors = [];
  else if (named.length > 0) {
    detectors = [];
    for (const name of named) {
      if (all[name]) detectors.push(all[name]);
      else diag.warn(`Invalid resource detector "${name}" specified in the environment variable OTEL_NODE_RESOURCE_DETECTORS`);
    }
  }
  let resource = res.defaultResource().merge(res.detectResources({ detectors }));
  const ownServiceName = env.OTEL_SERVICE_NAME || /(?:^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '');
  if (!ownServiceName) resource = resource.merge(res.resourceFromAttributes({ 'service.name': serviceName }));
  return resource;
}

/** OTEL_PROPAGATORS; W3C trace context + baggage by default; undefined for `none`. */
function propagatorFromEnv(core: typeof OtelCore, env: NodeJS.ProcessEnv): TextMapPropagator | undefined {
  const names = [...new Set(list(env.OTEL_PROPAGATORS))];
  if (names.length === 0) names.push('tracecontext', 'baggage');
  if (names.includes('none')) return undefined;
  const propagators: TextMapPropagator[] = [];
  for (const name of names) {
    const made = makePropagator(core, name);
    if (made) propagators.push(made);
    else diag.warn(`Propagator "${name}" requested through environment variable is unavailable.`);
  }
  if (propagators.length <= 1) return propagators[0];
  return new core.CompositePropagator({ propagators });
}

function makePropagator(core: typeof OtelCore, name: string): TextMapPropagator | undefined {
  if (name === 'tracecontext') return new core.W3CTraceContextPropagator();
  if (name === 'baggage') return new core.W3CBaggagePropagator();
  if (name === 'b3' || name === 'b3multi') {
    const b3 = optional<{ B3Propagator?: new (config?: { injectEncoding?: unknown }) => TextMapPropagator; B3InjectEncoding?: { MULTI_HEADER: unknown } }>(
      '@opentelemetry/propagator-b3',
    );
    if (!b3?.B3Propagator) return undefined;
    return name === 'b3multi' ? new b3.B3Propagator({ injectEncoding: b3.B3InjectEncoding?.MULTI_HEADER }) : new b3.B3Propagator();
  }
  if (name === 'jaeger') {
    const jaeger = optional<{ JaegerPropagator?: new () => TextMapPropagator }>('@opentelemetry/propagator-jaeger');
    return jaeger?.JaegerPropagator ? new jaeger.JaegerPropagator() : undefined;
  }
  return undefined;
}
