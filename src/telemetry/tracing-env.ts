/**
 * The standard OTEL_* environment as the trace SDK reads it: whether tracing is requested,
 * and the sampler (`OTEL_TRACES_SAMPLER`), resource and propagators (`OTEL_PROPAGATORS`) it names.
 */
import { diag, type TextMapPropagator } from '@opentelemetry/api';
import type * as OtelCore from '@opentelemetry/core';
import type * as OtelResources from '@opentelemetry/resources';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import { load, optional } from './sdk-packages.js';

/** Whether the environment configures a trace exporter (spec: OTEL_TRACES_EXPORTER, OTLP endpoints). */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if (isTrue(env.OTEL_SDK_DISABLED)) return false;
  const exporters = [...new Set(list(env.OTEL_TRACES_EXPORTER))].filter((s) => s !== 'null');
  // `none` alone turns tracing off; among others the exporters fall back to otlp (tracing.ts).
  if (exporters.length === 1 && exporters[0] === 'none') return false;
  return exporters.length > 0 || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

function isTrue(v: string | undefined): boolean {
  return v?.trim().toLowerCase() === 'true';
}

/** A comma-separated env value: trimmed, without empty entries. */
export function list(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** OTEL_TRACES_SAMPLER[_ARG], with the SDK's sampler classes; parentbased_always_on by default. */
export function samplerFromEnv(sdk: typeof SdkTraceBase, env: NodeJS.ProcessEnv): SdkTraceBase.Sampler {
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
export function resourceFromEnv(env: NodeJS.ProcessEnv, serviceName: string): OtelResources.Resource {
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
export function propagatorFromEnv(core: typeof OtelCore, env: NodeJS.ProcessEnv): TextMapPropagator | undefined {
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
