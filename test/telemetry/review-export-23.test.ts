/**
 * Review round 23: trace export when the collector misbehaves.
 *
 * - One batch at a time was not true: a batch unanswered at OTEL_BSP_EXPORT_TIMEOUT was
 *   counted failed and the next one sent while its request stayed open (the SDK's
 *   OTEL_EXPORTER_OTLP_TIMEOUT is a socket idle timeout, which a trickling collector never
 *   triggers): a hanging collector had one more request open per timeout, and one answering
 *   200 late accepted spans that /metrics counted failed.
 * - The 64 MiB queue bound counted encoded bytes, but each batch held a doubling buffer (and
 *   at the batch boundary one grown by the span taken back out): 132 MB held for 64 MiB.
 * - With OTEL_EXPORTER_OTLP_PROTOCOL=http/json there were no byte bounds at all.
 *
 * The collector is a node:http server on 127.0.0.1 port 0 that misbehaves as told. Tracing
 * is process-global (pool forks: this file has its process): each test starts it from the
 * environment and shuts it down. The span counters are process-wide: tests compare them.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gunzipSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { trace } from '@opentelemetry/api';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { EncodingBatchProcessor, MAX_EXPORT_BATCH_BYTES, MAX_QUEUE_BYTES, type BatchSettings, type EncodedBatchExporter } from '../../src/telemetry/encoding-batch-processor.js';
import { SpanBatchEncoder } from '../../src/telemetry/otlp-protobuf.js';
import { LossReporter, traceExportCounts, type BatchResult } from '../../src/telemetry/span-export.js';
import { startTelemetry, type TelemetryHandle } from '../../src/telemetry/tracing.js';
import { decodeTraceExportRequest } from '../telemetry-e2e/otlp-proto-decode.js';

const sdk = createRequire(import.meta.url)('@opentelemetry/sdk-trace-base') as typeof SdkTraceBase;
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Bytes of ArrayBuffers (Buffers) alive, after a GC and after V8 has swept freed ones (which it does concurrently). */
async function arrayBuffersAfterGc(): Promise<number> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
  gc();
  return process.memoryUsage().arrayBuffers;
}

/** How the collector answers: at once, never, with a byte of body every `everyMs`, after `afterMs`, or with this status. */
type Answer = { kind: 'ok' } | { kind: 'hang' } | { kind: 'trickle'; everyMs: number } | { kind: 'late'; afterMs: number } | { kind: 'status'; status: number };

interface ExportRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
  spans: number;
  /** The collector's answer reached the gateway (it was still waiting for it). */
  acknowledged: boolean;
  closed: boolean;
}

interface Collector {
  url: string;
  answer: Answer;
  requests: ExportRequest[];
  /** Export requests open at once, now and at most. */
  open: number;
  maxOpen: number;
  close(): Promise<void>;
}

function countSpans(raw: Buffer, json: boolean): number {
  const body = (json ? JSON.parse(raw.toString('utf8')) : decodeTraceExportRequest(raw)) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: unknown[] }> }> };
  return (body.resourceSpans ?? []).reduce((n, rs) => n + (rs.scopeSpans ?? []).reduce((m, ss) => m + (ss.spans?.length ?? 0), 0), 0);
}

async function startCollector(): Promise<Collector> {
  const server: Server = createServer((req, res) => {
    const request: ExportRequest = { path: req.url ?? '', headers: req.headers, bytes: 0, spans: 0, acknowledged: false, closed: false };
    collector.requests.push(request);
    collector.maxOpen = Math.max(collector.maxOpen, ++collector.open);
    res.on('close', () => {
      request.closed = true;
      collector.open--;
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const json = req.headers['content-type'] === 'application/json';
      const sent = Buffer.concat(chunks);
      const raw = req.headers['content-encoding'] === 'gzip' ? gunzipSync(sent) : sent;
      request.bytes = raw.length;
      request.spans = countSpans(raw, json);
      const answer = collector.answer;
      const ok = () => {
        if (request.closed) return; // the gateway gave up on it
        res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
        res.end(json ? '{}' : '', () => (request.acknowledged = true));
      };
      if (answer.kind === 'ok') ok();
      else if (answer.kind === 'status') {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end('{}');
      }
      else if (answer.kind === 'late') setTimeout(ok, answer.afterMs);
      else if (answer.kind === 'trickle') {
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        const timer = setInterval(() => res.write(Buffer.from([0])), answer.everyMs);
        res.on('close', () => clearInterval(timer));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const collector: Collector = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answer: { kind: 'ok' },
    requests: [],
    open: 0,
    maxOpen: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return collector;
}

let collector: Collector;
let handle: TelemetryHandle | undefined;

beforeAll(async () => {
  collector = await startCollector();
});
afterEach(async () => {
  vi.useRealTimers();
  collector.answer = { kind: 'ok' };
  await handle?.shutdown();
  handle = undefined;
  collector.requests.length = 0;
  collector.maxOpen = 0;
});
afterAll(async () => {
  await collector.close();
});

function startTracing(env: Record<string, string>): void {
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  Object.assign(process.env, { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '10' }, env);
  handle = startTelemetry({ serviceName: 'review-export-23' });
}

/** Ends `n` root spans through the global tracer, each with `attributes`. */
function endSpans(n: number, attributes: Record<string, string> = {}): void {
  const tracer = trace.getTracer('review-export-23');
  for (let i = 0; i < n; i++) tracer.startSpan(`s${i}`, { attributes }).end();
}

const snapshot = () => ({ ...traceExportCounts });
const since = (before: ReturnType<typeof snapshot>) => ({
  exported: traceExportCounts.exported - before.exported,
  failed: traceExportCounts.failed - before.failed,
  dropped: traceExportCounts.dropped - before.dropped,
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

const SUCCESS: BatchResult = { code: 0 };
/** 1 MB of captured prompt. */
const PROMPT = 'lorem ipsum '.repeat(83_334);

describe('one batch at a time, whatever the collector does', () => {
  it('a batch unanswered at the export timeout is counted failed, and the next batch waits for its answer (was: sent at once, one more request open per timeout)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const before = snapshot();
    const pending: Array<(r: BatchResult) => void> = [];
    const sent: number[] = [];
    const exporter: EncodedBatchExporter = {
      endsOnItsOwn: true,
      newBatch: () => new SpanBatchEncoder(),
      export: (batches, done) => {
        sent.push(batches[0]!.count);
        pending.push(done);
      },
      shutdown: async () => {},
    };
    const settings: BatchSettings = { maxQueueSize: 2048, maxExportBatchSize: 2, scheduledDelayMillis: 5000, exportTimeoutMillis: 500 };
    const processor = new EncodingBatchProcessor(exporter, new LossReporter(undefined), settings);
    const provider = new sdk.BasicTracerProvider({ spanProcessors: [processor] });
    const tracer = provider.getTracer('t');
    for (let i = 0; i < 4; i++) tracer.startSpan(`s${i}`).end();
    await turn();
    expect(sent).toEqual([2]);
    vi.advanceTimersByTime(500);
    expect(since(before)).toEqual({ exported: 0, failed: 2, dropped: 0 }); // the gateway gave up on it
    expect(processor.exporting).toBe(0); // not "unsent" at shutdown: already counted
    expect(sent).toEqual([2]); // its request is still open: the next batch waits
    pending.shift()!(SUCCESS); // the late answer: not counted again, and the next batch goes
    expect(since(before)).toEqual({ exported: 0, failed: 2, dropped: 0 });
    expect(sent).toEqual([2, 2]);
    pending.shift()!(SUCCESS);
    expect(since(before)).toEqual({ exported: 2, failed: 2, dropped: 0 });
    await provider.shutdown();
  });

  it('a collector trickling its answer is cut off at OTEL_EXPORTER_OTLP_TIMEOUT and the batch counted failed (was: the socket never idled, the request stayed open for good)', async () => {
    collector.answer = { kind: 'trickle', everyMs: 100 };
    startTracing({ OTEL_EXPORTER_OTLP_TIMEOUT: '600' });
    const before = snapshot();
    const t0 = performance.now();
    endSpans(3);
    await until(() => since(before).failed === 3, 4000);
    expect(performance.now() - t0).toBeLessThan(600 + 700);
    expect(since(before).exported).toBe(0);
    await until(() => collector.requests[0]?.closed === true, 1000);
    // Timed out at the deadline: no time was left for a retry.
    expect(collector.requests).toHaveLength(1);
  });

  it('a hanging collector with OTEL_BSP_EXPORT_TIMEOUT=500 has one export request open at a time, each ended at the timeout (was: a new one every 500 ms, none ended)', async () => {
    collector.answer = { kind: 'hang' };
    startTracing({ OTEL_BSP_EXPORT_TIMEOUT: '500', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4' });
    const before = snapshot();
    endSpans(24); // six batches
    await sleep(1800);
    expect(collector.maxOpen).toBe(1);
    // One after the other, each given 500 ms.
    expect(collector.requests.length).toBeGreaterThanOrEqual(3);
    expect(collector.requests.length).toBeLessThanOrEqual(4);
    expect(collector.requests.slice(0, -1).every((r) => r.closed)).toBe(true);
    expect(since(before)).toMatchObject({ exported: 0, dropped: 0 });
    expect(since(before).failed).toBeGreaterThanOrEqual(4 * (collector.requests.length - 1));
  });

  it('a collector answering 200 after the export timeout: /metrics counts as exported exactly the spans the collector acknowledged (was: the collector accepted all, /metrics said all failed)', async () => {
    collector.answer = { kind: 'late', afterMs: 1200 };
    startTracing({ OTEL_BSP_EXPORT_TIMEOUT: '400', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4' });
    const before = snapshot();
    endSpans(8);
    await until(() => since(before).exported + since(before).failed === 8, 5000);
    await sleep(1300); // the collector's late answers have been tried
    const acknowledged = collector.requests.filter((r) => r.acknowledged).reduce((n, r) => n + r.spans, 0);
    expect(collector.requests.reduce((n, r) => n + r.spans, 0)).toBe(8);
    expect(since(before)).toEqual({ exported: acknowledged, failed: 8 - acknowledged, dropped: 0 });
    expect(collector.maxOpen).toBe(1);
  });
});

describe('the 64 MiB bound is the memory held', () => {
  it('a queue of 1 MB spans holds about the 64 MiB it counts, not twice that (was: 132 MB of batch buffers for 64 MiB of spans)', async () => {
    const before = snapshot();
    let answering = false;
    const pending: Array<(r: BatchResult) => void> = [];
    const exporter: EncodedBatchExporter = {
      newBatch: () => new SpanBatchEncoder(),
      export: (_batches, done) => (answering ? done(SUCCESS) : pending.push(done)), // the collector hangs
      shutdown: async () => {},
    };
    const baseline = await arrayBuffersAfterGc();
    const processor = new EncodingBatchProcessor(exporter, new LossReporter(undefined), { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000 });
    const provider = new sdk.BasicTracerProvider({ spanProcessors: [processor] });
    const tracer = provider.getTracer('t');
    for (let i = 0; i < 100; i++) {
      tracer.startSpan('chat', { attributes: { 'gen_ai.input.messages': PROMPT } }).end();
      if (i % 10 === 9) await turn();
    }
    await turn();
    const held = (await arrayBuffersAfterGc()) - baseline;
    expect(since(before).dropped).toBeGreaterThan(25); // the bound was reached
    // The spans held, plus the encoder's scratch buffer (at most 4 MiB kept).
    expect(held).toBeLessThanOrEqual(MAX_QUEUE_BYTES + 4 * 1024 * 1024);
    expect(processor.queued + processor.exporting).toBeGreaterThanOrEqual(60);
    answering = true;
    pending.shift()!(SUCCESS);
    await provider.shutdown();
  });
});

describe('http/json has the byte bounds too', () => {
  it('spans of 1 MB go in export requests of at most about 4 MiB (was: one request holding every span)', async () => {
    startTracing({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
    const before = snapshot();
    endSpans(12, { 'gen_ai.input.messages': PROMPT });
    await until(() => since(before).exported === 12, 10_000);
    expect(collector.requests.reduce((n, r) => n + r.spans, 0)).toBe(12);
    expect(collector.requests.length).toBeGreaterThanOrEqual(3);
    for (const r of collector.requests) expect(r.bytes).toBeLessThanOrEqual(MAX_EXPORT_BATCH_BYTES + 256 * 1024);
  });

  it('with the collector hanging, spans of 1 MB are dropped once 64 MiB of them wait (was: only OTEL_BSP_MAX_QUEUE_SIZE, 2048 spans of any size, bounded them)', async () => {
    collector.answer = { kind: 'hang' };
    startTracing({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TIMEOUT: '1000' });
    const before = snapshot();
    for (let i = 0; i < 100; i += 10) {
      endSpans(10, { 'gen_ai.input.messages': PROMPT });
      await turn();
    }
    await until(() => since(before).dropped > 0, 3000);
    // 64 MiB hold 67 spans of 1 MB (the batch being sent included): the rest is dropped.
    expect(since(before).dropped).toBeGreaterThanOrEqual(28);
    expect(since(before).dropped).toBeLessThanOrEqual(40);
  });
});

describe('the transport keeps what OTEL_EXPORTER_OTLP_* configures', () => {
  it('the traces endpoint, headers and gzip compression', async () => {
    startTracing({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${collector.url}/custom/traces`,
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer abc,x-tenant=t1',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=t2',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
    });
    const before = snapshot();
    endSpans(3);
    await until(() => since(before).exported === 3, 3000);
    expect(collector.requests).toHaveLength(1);
    const [request] = collector.requests;
    expect(request!.path).toBe('/custom/traces');
    expect(request!.headers).toMatchObject({ authorization: 'Bearer abc', 'x-tenant': 't2', 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' });
    expect(request!.spans).toBe(3);
  });

  it('a 400 is not retried: the batch is counted failed with the status in the warning', async () => {
    collector.answer = { kind: 'status', status: 400 };
    const warnings: Array<Record<string, unknown> | undefined> = [];
    for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
    Object.assign(process.env, { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '10' });
    handle = startTelemetry({ serviceName: 'review-export-23', logger: { warn: (_msg, fields) => warnings.push(fields) } });
    const before = snapshot();
    endSpans(2);
    await until(() => since(before).failed === 2, 3000);
    await sleep(100);
    expect(collector.requests).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ failed: 2, error: 'Bad Request (400)' });
  });
});
