/**
 * Spans (one per builder under a `context` span) and Prometheus instruments (checked with
 * promtool). Registers a global tracer provider: this file runs in its own process (forks).
 */
import { spawnSync } from 'node:child_process';
import { trace, ROOT_CONTEXT, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { json, makeContext, startJsonService, type JsonService } from './helpers.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
if (!hasPromtool) console.warn('SKIP promtool checks: `promtool` is not installed');

let svc: JsonService;
beforeAll(async () => {
  trace.setGlobalTracerProvider(provider);
  svc = await startJsonService();
  svc.route('/customers/u1', json({ tier: 'gold' }));
  svc.route('/customers/down', json({}, { status: 503 }));
});
afterAll(async () => {
  await svc.close();
  await provider.shutdown();
});

const config = () => ({
  deadline_ms: 500,
  builders: [
    { name: 'customer', kind: 'http', url: `${svc.url}/customers/{{user_id}}`, cache: { ttl_ms: 60_000 } },
    { name: 'tier_rules', kind: 'rules', rules: [{ when: { 'customer.tier': 'gold' }, set: { refund_limit_usd: 500 } }] },
    { name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 2 },
  ],
});

describe('context observability', () => {
  it('makes one child span per builder with status, cache, items and tokens', async () => {
    exporter.reset();
    const rt = new ContextRuntime();
    const parentSpan = provider.getTracer('test').startSpan('POST /v1/chat/completions');
    const parent = trace.setSpan(ROOT_CONTEXT, parentSpan);
    const { plan } = makeContext(config(), { use: ['customer', 'tier_rules', 'knowledge'] });
    await buildContext(rt, plan, { messages: [{ role: 'user', content: 'refund please' }], userId: 'u1', variables: {}, parent });
    await buildContext(rt, plan, { messages: [{ role: 'user', content: 'refund please' }], userId: 'down', variables: {}, parent });
    parentSpan.end();
    await rt.close();

    const spans = exporter.getFinishedSpans();
    const roots = spans.filter((s) => s.name === 'context');
    expect(roots).toHaveLength(2);
    expect(roots.every((s) => s.parentSpanContext?.spanId === parentSpan.spanContext().spanId)).toBe(true);
    const children = (root: (typeof roots)[number]) => spans.filter((s) => s.parentSpanContext?.spanId === root.spanContext().spanId);
    const first = children(roots[0]);
    expect(first.map((s) => s.name).sort()).toEqual(['context customer', 'context knowledge', 'context tier_rules']);
    const customer = first.find((s) => s.name === 'context customer')!;
    expect(customer.attributes).toMatchObject({
      'promptgate.context.builder': 'customer',
      'promptgate.context.kind': 'http',
      'promptgate.context.status': 'ok',
      'promptgate.context.cache': 'miss',
      'promptgate.context.items': 1,
      'promptgate.context.tokens': expect.any(Number),
    });
    expect(first.find((s) => s.name === 'context knowledge')!.attributes).toMatchObject({ 'promptgate.context.items': 2 });
    expect(roots[0].attributes).toMatchObject({ 'promptgate.context.template': 't@1.0.0', 'promptgate.context.skipped': [] });

    const failed = children(roots[1]).find((s) => s.name === 'context customer')!;
    expect(failed.attributes).toMatchObject({ 'promptgate.context.status': 'failed', 'promptgate.context.reason': 'http_5xx', 'error.type': 'http_5xx' });
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(roots[1].attributes['promptgate.context.skipped']).toEqual(['customer']);
  });

  it('counts build time, cache results and failures in metrics that pass promtool check metrics', async () => {
    const registry = new Registry();
    const rt = new ContextRuntime({ registry });
    const { plan } = makeContext(config(), { use: ['customer', 'tier_rules', 'knowledge'] });
    const run = (userId: string) => buildContext(rt, plan, { messages: [{ role: 'user', content: 'shipping times' }], userId, variables: {} });
    await run('u1');
    await run('u1');
    await run('down');
    await rt.close();
    const text = await registry.metrics();
    expect(text).toContain('promptgate_context_cache_total{builder="customer",result="miss"} 2');
    expect(text).toContain('promptgate_context_cache_total{builder="customer",result="hit"} 1');
    expect(text).toContain('promptgate_context_failures_total{builder="customer",reason="http_5xx"} 1');
    expect(text).toMatch(/promptgate_context_build_duration_seconds_count\{builder="customer",kind="http",outcome="cached"\} 1/);
    expect(text).toMatch(/promptgate_context_build_duration_seconds_count\{builder="knowledge",kind="knowledge",outcome="ok"\} 3/);
    if (hasPromtool) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(check.stdout + check.stderr).toBe('');
      expect(check.status).toBe(0);
    }
  });
});
