/**
 * The OpenTelemetry SDK packages, loaded on demand (`require` of their CommonJS builds, the
 * same module instances an `import` would get) only when tracing is requested.
 */
import { createRequire } from 'node:module';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';

type SpanExporter = SdkTraceBase.SpanExporter;

/** Loads the SDK packages on demand (only when tracing is requested). */
export const load = createRequire(import.meta.url);

type ExporterModule = { OTLPTraceExporter?: new () => SpanExporter; ZipkinExporter?: new () => SpanExporter };

/** A package that may not be installed (not a dependency of promptgate itself). */
export function optional<T = ExporterModule>(name: string): T | undefined {
  try {
    return load(name) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}
