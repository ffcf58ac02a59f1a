/**
 * OpenTelemetry SDK start-up. `main` calls `startTelemetry` before building the app; the
 * SDK reads the standard environment:
 *
 * - `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is appended) or
 *   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is)
 * - `OTEL_EXPORTER_OTLP_PROTOCOL` / `_TRACES_PROTOCOL`: `http/protobuf` (default), `http/json`, `grpc`
 * - `OTEL_TRACES_EXPORTER`: `otlp` (default), `console`, `none`
 * - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
 *   `OTEL_PROPAGATORS`, `OTEL_SDK_DISABLED`, `OTEL_LOG_LEVEL`
 *
 * With neither an endpoint nor an exporter set (or `OTEL_TRACES_EXPORTER=none`), the SDK
 * is not started: the API stays a no-op and span helpers take their cheap path. Only traces
 * are exported (metrics are Prometheus, see metrics.ts); no auto-instrumentation is
 * registered, the proxy makes its spans by hand (spans.ts).
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';

export interface TelemetryOptions {
  /** `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one. */
  serviceName: string;
  /** Defaults to `process.env`; the SDK itself always reads `process.env`. */
  env?: NodeJS.ProcessEnv;
}

export interface TelemetryHandle {
  /** True when the SDK was started and spans are exported. */
  readonly tracing: boolean;
  /** Flushes pending spans and stops the SDK. Idempotent; never rejects. */
  shutdown(): Promise<void>;
}

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

  const ownServiceName = env.OTEL_SERVICE_NAME || /(?:^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '');
  const sdk = new NodeSDK({
    serviceName: ownServiceName ? undefined : options.serviceName,
    instrumentations: [],
    // Metrics go to Prometheus and logs to stdout: keep the SDK from exporting either.
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();

  let stopping: Promise<void> | undefined;
  const handle: TelemetryHandle = {
    tracing: true,
    shutdown() {
      stopping ??= sdk
        .shutdown()
        .catch(() => {
          // Export failures are reported through the OTel diag logger (OTEL_LOG_LEVEL).
        })
        .finally(() => {
          // Unregister the globals so the API is a no-op again (and a later start works).
          trace.disable();
          propagation.disable();
          context.disable();
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
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== 'null');
  if (exporters[0] === 'none') return false;
  return exporters.length > 0 || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

function isTrue(v: string | undefined): boolean {
  return v?.trim().toLowerCase() === 'true';
}
