/**
 * startTelemetry's SDK set-up from the environment: exporter protocol, resource, sampler,
 * propagators, each started and shut down in turn (shutdown unregisters the globals, so a
 * later start works). The SDK registers process globals: this file runs in its own process
 * (pool forks).
 */
import { createRequire } from 'node:module';
import { context, createContextKey } from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServerSpan, tracingActive } from '../../src/telemetry/spans.js';
import { startTelemetry, type TelemetryHandle } from '../../src/telemetry/tracing.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { startOtlpReceiver, type OtlpReceiver } from '../telemetry-e2e/otlp-receiver.js';

/** Optional packages (present through other dependencies, not promptgate's own). */
const installed = (name: string) => {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
};

const SAMPLED_PARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const record: RequestRecord = { requestId: 'r', route: '/v1/chat/completions', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 5 };

let receiver: OtlpReceiver;
let handle: TelemetryHandle | undefined;

/** One request's spans; returns the traceparent sent upstream. */
function request(incoming?: string): { traceparent: string | undefined; headers: Readonly<Record<string, string>> } {
  const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: (n) => (n === 'traceparent' ? incoming : undefined) });
  const upstream = spans.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', stream: false });
  const result = { traceparent: upstream.traceparent(), headers: upstream.headers() };
  spans.end({ ...record, requestId: `r-${receiver.exports.length}-${Math.random()}` });
  return result;
}

function start(env: Record<string, string>): TelemetryHandle {
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  Object.assign(process.env, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces` }, env);
  handle = startTelemetry({ serviceName: 'promptgate-setup' });
  return handle;
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  await handle?.shutdown();
  handle = undefined;
  receiver.exports.length = 0;
  receiver.spans.length = 0;
});
afterAll(async () => {
  await receiver.close();
});

describe('startTelemetry set-up', () => {
  it('exports OTLP/HTTP protobuf by default, and only loads the SDK when started', async () => {
    const cache = createRequire(import.meta.url).cache;
    const sdkLoaded = () => Object.keys(cache).some((k) => k.includes('/@opentelemetry/sdk-trace-base/') || k.includes('/@opentelemetry/sdk-node/'));
    expect(sdkLoaded()).toBe(false);
    const telemetry = start({});
    expect(sdkLoaded()).toBe(true);
    expect(telemetry.tracing).toBe(true);
    expect(tracingActive()).toBe(true);
    const sent = request(SAMPLED_PARENT);
    expect(sent.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    await telemetry.shutdown();
    expect(tracingActive()).toBe(false);
    expect(receiver.exports.map((e) => [e.url, e.contentType])).toEqual([['/v1/traces', 'application/x-protobuf']]);
  });

  it('http/json: service name and resource attributes from the environment', async () => {
    const telemetry = start({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,team=llm' });
    request();
    await telemetry.shutdown();
    expect(receiver.exports[0].contentType).toContain('application/json');
    expect(receiver.spans).toHaveLength(2);
    expect(receiver.spans[0].resource).toMatchObject({
      'service.name': 'promptgate-setup',
      'deployment.environment.name': 'test',
      team: 'llm',
      'telemetry.sdk.language': 'nodejs',
    });
    expect(receiver.spans[0].scope).toBe('promptgate');
  });

  it('OTEL_SERVICE_NAME wins over the configured service name', async () => {
    const telemetry = start({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_SERVICE_NAME: 'from-env' });
    request();
    await telemetry.shutdown();
    expect(receiver.spans[0].resource['service.name']).toBe('from-env');
  });

  it.each([
    [{ OTEL_TRACES_SAMPLER: 'always_off' }, SAMPLED_PARENT, false],
    [{ OTEL_TRACES_SAMPLER: 'always_on' }, undefined, true],
    [{ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, SAMPLED_PARENT, false],
    [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, SAMPLED_PARENT, true],
    [{ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, undefined, false],
    [{ OTEL_TRACES_SAMPLER: 'parentbased_always_off' }, undefined, false],
    [{ OTEL_TRACES_SAMPLER: 'parentbased_always_off' }, SAMPLED_PARENT, true],
    [{}, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00', false],
    [{ OTEL_TRACES_SAMPLER: 'no-such-sampler' }, undefined, true],
  ] as Array<[Record<string, string>, string | undefined, boolean]>)('sampler %j, parent %s -> sampled %s', async (env, parent, sampled) => {
    const telemetry = start({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', ...env });
    const sent = request(parent);
    await telemetry.shutdown();
    expect(sent.traceparent?.slice(-2)).toBe(sampled ? '01' : '00');
    expect(receiver.spans).toHaveLength(sampled ? 2 : 0);
  });

  it('OTEL_PROPAGATORS=none: no trace context in or out', async () => {
    const telemetry = start({ OTEL_PROPAGATORS: 'none' });
    expect(request(SAMPLED_PARENT).headers).toEqual({});
    await telemetry.shutdown();
  });

  it('OTEL_PROPAGATORS=tracecontext: traceparent only', async () => {
    const telemetry = start({ OTEL_PROPAGATORS: 'tracecontext' });
    const sent = request(SAMPLED_PARENT);
    expect(Object.keys(sent.headers)).toEqual(['traceparent']);
    await telemetry.shutdown();
  });

  it.skipIf(!installed('@opentelemetry/propagator-b3'))('OTEL_PROPAGATORS=b3multi: B3 headers', async () => {
    const telemetry = start({ OTEL_PROPAGATORS: 'b3multi' });
    const sent = request();
    expect(sent.headers['x-b3-traceid']).toMatch(/^[0-9a-f]{32}$/);
    expect(sent.traceparent).toBeUndefined();
    await telemetry.shutdown();
  });

  it('registers no async context manager: spans are parented explicitly, promises stay unhooked', async () => {
    const telemetry = start({});
    const key = createContextKey('promptgate-test');
    const seen = await context.with(context.active().setValue(key, 42), async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return context.active().getValue(key);
    });
    expect(seen).toBeUndefined();
    // The CLIENT span is still the SERVER span's child, and the upstream traceparent the CLIENT span's.
    expect(request(SAMPLED_PARENT).traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    await telemetry.shutdown();
  });

  it.each([
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'otel-collector:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT', 'otel-collector:4318'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ok:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url' }, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'not a url'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://collector:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, 'OTEL_EXPORTER_OTLP_ENDPOINT', 'ftp://collector:4318'],
  ])('an OTLP/HTTP endpoint that is no http(s) URL is said at start (%j)', async (env, variable, endpoint) => {
    const warnings: Array<[string, unknown]> = [];
    handle = startTelemetry({ serviceName: 's', env, logger: { warn: (msg, fields) => warnings.push([msg, fields]) } });
    expect(warnings).toEqual([['OTLP traces endpoint is not an http(s) URL: no span will reach the collector', { variable, endpoint }]]);
  });

  it('a good endpoint, or none (the default), is not warned about', async () => {
    for (const env of [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector.example.com:4318' }, { OTEL_TRACES_EXPORTER: 'otlp' }]) {
      const warnings: unknown[] = [];
      handle = startTelemetry({ serviceName: 's', env, logger: { warn: (msg) => warnings.push(msg) } });
      expect(warnings).toEqual([]);
      await handle.shutdown();
    }
  });

  it('an unknown OTEL_TRACES_EXPORTER alone starts nothing', () => {
    const telemetry = start({ OTEL_TRACES_EXPORTER: 'no-such-exporter' });
    expect(telemetry.tracing).toBe(false);
    expect(tracingActive()).toBe(false);
  });
});
