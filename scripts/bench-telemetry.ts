/**
 * Micro-benchmark of the telemetry hot path: `metrics.recordRequest` and one request's span
 * cycle (`startServerSpan` -> `startUpstream` -> `headers()` -> `end`), in µs per operation
 * (wall time and CPU time of this process, which includes the span processor's exports).
 *
 *   npx tsx scripts/bench-telemetry.ts            # every case, each in a fresh child process
 *   npx tsx scripts/bench-telemetry.ts --quick    # fewer iterations
 *
 * Span cases (one process each: the OTel API globals are per process):
 * - `spans off`: no SDK registered (PassThroughSpans).
 * - `spans memory`: a BasicTracerProvider + BatchSpanProcessor + InMemorySpanExporter
 *   registered by this script: the cost of spans.ts and the SDK's span work, no export.
 * - `spans otlp`: `startTelemetry()` itself, exporting OTLP/HTTP protobuf to a sink in
 *   another process: span work + batching + protobuf serialisation + the HTTP client.
 * - `load`: RSS and time to import telemetry/tracing.ts with tracing off.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { RequestRecord } from '../src/telemetry/types.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const quick = process.argv.includes('--quick');
const scale = quick ? 0.25 : 1;

/** The bench gateway's request (scripts/bench/gateway.bench.yaml): template, experiment, usage, cost, guard. */
function record(i: number): RequestRecord {
  return {
    requestId: `req-${i}`,
    route: '/v1/chat/completions',
    method: 'POST',
    status: 200,
    outcome: 'ok',
    stream: (i & 1) === 1,
    upstream: 'mock',
    provider: 'openai',
    requestModel: 'support-bot',
    responseModel: 'gpt-4o-mini-2024-07-18',
    responseId: 'chatcmpl-123',
    finishReasons: ['stop'],
    attempts: 1,
    usage: { inputTokens: 42, outputTokens: 17, cachedInputTokens: 0, reasoningTokens: 0, estimated: false },
    costUsd: 0.0000165,
    latencyMs: 1.7,
    ttfbMs: 0.9,
    template: 'support-reply',
    templateVersion: '1.1.0',
    experiment: 'support-tone',
    variant: 'warm',
    experimentAssignment: (i & 3) === 0 ? 'default' : 'hash',
    injectionScore: 0.02,
    injectionFlagged: false,
    promptTokens: 40,
  };
}

interface Result {
  name: string;
  ops: number;
  wallUs: number;
  cpuUs: number;
  note?: string;
}

async function time(name: string, ops: number, chunk: number, fn: (i: number) => void, settle?: () => Promise<void>): Promise<Result> {
  // warm-up: let V8 optimise the path
  for (let i = 0; i < Math.min(20_000, ops); i++) {
    fn(i);
    if (chunk && i % chunk === 0) await new Promise(setImmediate);
  }
  if (settle) await settle();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    fn(i);
    if (chunk && i % chunk === chunk - 1) await new Promise(setImmediate);
  }
  if (settle) await settle();
  const wall = Number(process.hrtime.bigint() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { name, ops, wallUs: wall / ops, cpuUs: (cpu.user + cpu.system) / ops };
}

async function benchMetrics(): Promise<Result[]> {
  const { createMetrics } = await import('../src/telemetry/metrics.js');
  const m = createMetrics({ processMetrics: false, knownModels: ['support-bot', 'gpt-4o-mini'] });
  const records = Array.from({ length: 64 }, (_, i) => record(i));
  const ops = Math.round(300_000 * scale);
  const out = [await time('recordRequest', ops, 0, (i) => m.recordRequest(records[i & 63]))];
  const text = await m.render();
  if (!text.includes('promptgate_requests_total{')) throw new Error('metrics missing');
  return out;
}

function spanCycle(startServerSpan: typeof import('../src/telemetry/spans.js').startServerSpan) {
  const incoming: Record<string, string> = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
  const headers = (name: string) => incoming[name];
  const records = Array.from({ length: 64 }, (_, i) => record(i));
  const content = { captureContent: false };
  const upstreamOptions = { provider: 'openai', requestModel: 'support-bot', serverAddress: '127.0.0.1', serverPort: 4010, stream: false };
  let sink = 0;
  return (i: number) => {
    const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers });
    const up = spans.startUpstream(upstreamOptions);
    sink += Object.keys(up.headers()).length;
    if (spans.traceId === undefined) sink--;
    spans.end(records[i & 63], content);
  };
}

async function benchSpans(variant: 'off' | 'memory' | 'otlp'): Promise<Result[]> {
  const ops = Math.round((variant === 'off' ? 500_000 : 100_000) * scale);
  if (variant === 'off') {
    const { startServerSpan } = await import('../src/telemetry/spans.js');
    return [await time('span cycle, tracing off', ops, 0, spanCycle(startServerSpan))];
  }
  if (variant === 'memory') {
    const { trace, propagation } = await import('@opentelemetry/api');
    const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
    const { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } = await import('@opentelemetry/sdk-trace-base');
    // Keeps each batch only until the next one (spans retained for the whole run would
    // make the bench measure the garbage collector).
    const exporter = new (class extends InMemorySpanExporter {
      override export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
        this.reset();
        super.export(spans, done);
      }
    })();
    const processor = new BatchSpanProcessor(exporter, { maxQueueSize: 1_000_000, maxExportBatchSize: 512 });
    const provider = new BasicTracerProvider({ spanProcessors: [processor] });
    trace.setGlobalTracerProvider(provider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const { startServerSpan } = await import('../src/telemetry/spans.js');
    const cycle = spanCycle(startServerSpan);
    const r = await time('span cycle, in-memory exporter', ops, 50, cycle, async () => {
      await processor.forceFlush();
      exporter.reset();
    });
    await provider.shutdown();
    return [r];
  }
  // otlp: the real start-up path, exporting to a sink in another process.
  const sink = spawn(process.execPath, ['-e', SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => sink.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
  process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `http://127.0.0.1:${port}/v1/traces`;
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/protobuf';
  process.env.OTEL_BSP_MAX_QUEUE_SIZE = '1000000';
  const { startTelemetry } = await import('../src/telemetry/tracing.js');
  const handle = startTelemetry({ serviceName: 'bench' }) as unknown as { ready?: Promise<void>; shutdown(): Promise<void>; tracing: boolean };
  await handle.ready;
  const { startServerSpan, tracingActive } = await import('../src/telemetry/spans.js');
  if (!tracingActive()) throw new Error('tracing not active');
  const { trace } = await import('@opentelemetry/api');
  const provider = trace.getTracerProvider() as unknown as { forceFlush?: () => Promise<void>; getDelegate?: () => { forceFlush?: () => Promise<void> } };
  const flush = async () => {
    const p = provider.getDelegate?.() ?? provider;
    await p.forceFlush?.();
  };
  const r = await time('span cycle, OTLP/proto export (startTelemetry)', ops, 50, spanCycle(startServerSpan), flush);
  await handle.shutdown();
  sink.kill();
  return [r];
}

const SINK = `
const http = require('node:http');
let bytes = 0;
const s = http.createServer((req, res) => { req.on('data', (c) => { bytes += c.length; }); req.on('end', () => { res.writeHead(200, {'content-type': 'application/x-protobuf'}); res.end(); }); });
s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));
`;

async function benchLoad(): Promise<Result[]> {
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  const { startTelemetry } = await import('../src/telemetry/tracing.js');
  const handle = startTelemetry({ serviceName: 'bench', env: {} });
  const ms = performance.now() - t0;
  globalThis.gc?.();
  const rss = process.memoryUsage().rss - rss0;
  return [{ name: 'import tracing.ts, tracing off', ops: 1, wallUs: ms * 1000, cpuUs: NaN, note: `RSS ${rss >= 0 ? '+' : ''}${(rss / 1048576).toFixed(1)} MB, tracing=${handle.tracing}` }];
}

async function child(kind: string): Promise<void> {
  let results: Result[];
  if (kind === 'metrics') results = await benchMetrics();
  else if (kind === 'load') results = await benchLoad();
  else results = await benchSpans(kind as 'off' | 'memory' | 'otlp');
  process.stdout.write(JSON.stringify(results) + '\n');
  process.exit(0);
}

function main(): void {
  const kinds = ['metrics', 'off', 'memory', 'otlp', 'load'];
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',');
  const rows: Result[] = [];
  for (const kind of only ?? kinds) {
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('OTEL_')) delete env[k];
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--child', kind, ...(quick ? ['--quick'] : [])], { cwd: ROOT, env, encoding: 'utf8' });
    if (r.status !== 0) {
      process.stderr.write(`${kind} failed (${r.status}):\n${r.stdout}\n${r.stderr}\n`);
      continue;
    }
    const line = r.stdout.trim().split('\n').pop()!;
    rows.push(...(JSON.parse(line) as Result[]));
  }
  const pad = (s: string, n: number) => s.padEnd(n);
  console.log(`${pad('case', 48)} ${pad('ops', 8)} ${pad('wall µs/op', 11)} ${pad('CPU µs/op', 10)} note`);
  for (const r of rows) {
    console.log(`${pad(r.name, 48)} ${pad(String(r.ops), 8)} ${pad(r.wallUs.toFixed(2), 11)} ${pad(r.cpuUs == null || Number.isNaN(r.cpuUs) ? '-' : r.cpuUs.toFixed(2), 10)} ${r.note ?? ''}`);
  }
}

const childIndex = process.argv.indexOf('--child');
if (childIndex >= 0) await child(process.argv[childIndex + 1]);
else main();

