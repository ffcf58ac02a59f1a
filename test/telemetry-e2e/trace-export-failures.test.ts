/**
 * End to end: trace export when the collector misbehaves (down, hanging, 503/429 with
 * retry-after), with the real gateway and the in-test OTLP receiver on real sockets. A burst
 * of requests must not notice (all 200, no waiting on the export); lost spans must show up
 * in `promptgate_trace_spans_{exported,failed,dropped}_total` and in a rate-limited warning
 * line (not one a batch); shutdown must not wait on a hanging collector past SHUTDOWN_FLUSH_MS.
 *
 * Tracing is process-global (its own file, so its own process): each test sets the OTEL_*
 * environment, then starts a gateway (which starts the SDK) and shuts it down (which stops
 * it). The span counters are process-wide, so tests compare them before and after.
 * A small batch queue (OTEL_BSP_MAX_QUEUE_SIZE=256, batches of 64) makes a burst overflow it.
 */
import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Agent, request } from 'undici';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { listenOnLoopback } from '../helpers/http-server.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { SHUTDOWN_FLUSH_MS } from '../../src/telemetry/tracing.js';
import { startOtlpReceiver, type OtlpReceiver } from './otlp-receiver.js';

const QUEUE = 256;
const BATCH = 64;
/** A chat request through the gateway ends two spans: SERVER and CLIENT. */
const SPANS_PER_REQUEST = 2;
const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

let upstream: MockUpstream;
let receiver: OtlpReceiver;
let gw: TestGateway | undefined;
let lines: string[] = [];

beforeAll(async () => {
  upstream = await startMockUpstream();
  receiver = await startOtlpReceiver();
});
afterAll(async () => {
  await upstream?.close();
  await receiver?.close();
});
beforeEach(() => {
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  Object.assign(process.env, {
    OTEL_BSP_SCHEDULE_DELAY: '20',
    OTEL_BSP_MAX_QUEUE_SIZE: String(QUEUE),
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: String(BATCH),
    // The exporter's deadline per batch, retries included (10 s by default).
    OTEL_EXPORTER_OTLP_TIMEOUT: '1500',
  });
  receiver.answer = 'ok';
  receiver.exports.length = 0;
  receiver.spans.length = 0;
  // The gateway's log lines (JSON on stdout), to check what an operator sees.
  lines = [];
  const write = process.stdout.write.bind(process.stdout);
  vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: never[]) => {
    const line = String(chunk);
    if (!line.startsWith('{"time"')) return write(chunk, ...rest);
    lines.push(line);
    return true;
  }) as typeof process.stdout.write);
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  vi.restoreAllMocks();
});

async function start(endpoint: string): Promise<TestGateway> {
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = endpoint;
  gw = await startTestGateway(mockConfig(upstream.url).replace('level: silent', 'level: warn'));
  return gw;
}

/** `n` chat requests, 50 at a time; their statuses and latencies (ms). */
async function burst(n: number): Promise<{ statuses: Map<number, number>; latencies: number[] }> {
  const agent = new Agent({ connections: 50 });
  const statuses = new Map<number, number>();
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < n) {
        next++;
        const t0 = performance.now();
        const res = await request(`${gw!.url}/v1/chat/completions`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: BODY });
        await res.body.text();
        latencies.push(performance.now() - t0);
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      }
    }),
  );
  await agent.close();
  latencies.sort((a, b) => a - b);
  return { statuses, latencies };
}

type Counts = { exported: number; failed: number; dropped: number };
/** The three span counters, from GET /metrics. */
async function spanCounters(): Promise<Counts> {
  const text = await scrapeMetricsText(gw!.url);
  const read = (name: string) => Number(text.match(new RegExp(`^promptgate_trace_spans_${name}_total (\\S+)$`, 'm'))?.[1] ?? NaN);
  return { exported: read('exported'), failed: read('failed'), dropped: read('dropped') };
}
const since = (before: Counts, after: Counts): Counts => ({ exported: after.exported - before.exported, failed: after.failed - before.failed, dropped: after.dropped - before.dropped });

/** Polls the counters until `done` holds (or the timeout). */
async function waitForCounters(before: Counts, done: (c: Counts) => boolean, timeoutMs = 15_000): Promise<Counts> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const c = since(before, await spanCounters());
    if (done(c) || Date.now() > until) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The gateway's warnings about lost spans, parsed. */
const lossWarnings = () =>
  lines
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.includes('"trace spans lost'))
    .map((l) => JSON.parse(l) as { level: string; msg: string; failed: number; dropped: number; unsent?: number; error?: string });

/** A port nothing listens on (bound, then closed). */
async function refusedUrl(): Promise<string> {
  const server = createServer();
  const origin = await listenOnLoopback(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return origin;
}

const median = (sorted: number[]) => sorted[sorted.length >> 1];

describe('trace export when the collector misbehaves', () => {
  let healthyMedianMs = 0;

  it('a healthy collector: every span counted as exported, nothing lost, no warning', async () => {
    await start(receiver.url);
    const before = await spanCounters();
    const n = 500;
    const { statuses, latencies } = await burst(n);
    healthyMedianMs = median(latencies);
    expect(statuses).toEqual(new Map([[200, n]]));
    const c = await waitForCounters(before, (x) => x.exported >= n * SPANS_PER_REQUEST);
    expect(c).toEqual({ exported: n * SPANS_PER_REQUEST, failed: 0, dropped: 0 });
    expect(receiver.spans).toHaveLength(n * SPANS_PER_REQUEST);
    await gw!.close();
    expect(lossWarnings()).toEqual([]);
  });

  it('collector down: clients unaffected, every span counted failed or dropped, one warning line (not one per batch)', async () => {
    await start(await refusedUrl());
    const before = await spanCounters();
    const n = 2000;
    const { statuses, latencies } = await burst(n);
    expect(statuses).toEqual(new Map([[200, n]]));
    expect(median(latencies)).toBeLessThan(3 * healthyMedianMs + 20);
    // Each batch fails after the exporter's retries (~1 s with a 1.5 s deadline); the rest overflowed the queue.
    const c = await waitForCounters(before, (x) => x.failed + x.dropped >= n * SPANS_PER_REQUEST);
    expect(c.exported).toBe(0);
    expect(c.failed + c.dropped).toBe(n * SPANS_PER_REQUEST);
    expect(c.failed).toBeGreaterThanOrEqual(QUEUE); // the queue's worth at least, i.e. several batches
    expect(c.dropped).toBeGreaterThan(0);
    const during = lossWarnings();
    expect(during).toHaveLength(1); // rate-limited: one line a minute, though every batch failed
    expect(during[0]).toMatchObject({ level: 'warn', msg: 'trace spans lost' });
    expect(during[0].error).toContain('ECONNREFUSED');
    await gw!.close();
    // The shutdown line carries what the first one did not: together they add up to the counters.
    const all = lossWarnings();
    expect(all.length).toBeLessThanOrEqual(2);
    expect(all.reduce((sum, w) => sum + w.failed, 0)).toBe(c.failed);
    expect(all.reduce((sum, w) => sum + w.dropped, 0)).toBe(c.dropped);
  });

  it('collector answering 503 with retry-after: the exporter honours it and retries, then counts the batch failed', async () => {
    receiver.answer = { status: 503, headers: { 'retry-after': '1' } };
    await start(receiver.url);
    const before = await spanCounters();
    const n = 10; // one batch
    expect((await burst(n)).statuses).toEqual(new Map([[200, n]]));
    const c = await waitForCounters(before, (x) => x.failed >= n * SPANS_PER_REQUEST);
    expect(c).toEqual({ exported: 0, failed: n * SPANS_PER_REQUEST, dropped: 0 });
    // First try, then one retry 1 s later; the next one would pass the 1.5 s deadline.
    expect(receiver.exports).toHaveLength(2);
    expect(receiver.exports[1].at - receiver.exports[0].at).toBeGreaterThanOrEqual(950);
    expect(lossWarnings()).toEqual([expect.objectContaining({ msg: 'trace spans lost', failed: n * SPANS_PER_REQUEST, dropped: 0 })]);
  });

  it('collector answering 429 with retry-after, then recovering: the retry exports the batch, nothing counted lost', async () => {
    receiver.answer = { status: 429, headers: { 'retry-after': '1' } };
    await start(receiver.url);
    const before = await spanCounters();
    const n = 10;
    expect((await burst(n)).statuses).toEqual(new Map([[200, n]]));
    await vi.waitFor(() => expect(receiver.exports.length).toBeGreaterThanOrEqual(1), { timeout: 5000 });
    receiver.answer = 'ok';
    const c = await waitForCounters(before, (x) => x.exported >= n * SPANS_PER_REQUEST);
    expect(c).toEqual({ exported: n * SPANS_PER_REQUEST, failed: 0, dropped: 0 });
    expect(receiver.spans).toHaveLength(n * SPANS_PER_REQUEST);
    await gw!.close();
    expect(lossWarnings()).toEqual([]);
  });

  it(`collector hanging: requests do not wait, the queue stays bounded, shutdown gives up after ${SHUTDOWN_FLUSH_MS} ms and says what it lost`, async () => {
    // An exporter deadline far past the shutdown bound: without it, shutdown would wait 30 s.
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '30000';
    receiver.answer = 'hang';
    await start(receiver.url);
    const before = await spanCounters();
    const n = 1000;
    const { statuses, latencies } = await burst(n);
    expect(statuses).toEqual(new Map([[200, n]]));
    expect(median(latencies)).toBeLessThan(3 * healthyMedianMs + 20);
    await waitForCounters(before, (x) => x.dropped >= n * SPANS_PER_REQUEST - QUEUE - BATCH);
    await new Promise((r) => setTimeout(r, 200));
    // One batch (up to 64 spans) is with the collector, the queue is full, the rest is dropped and counted.
    const c = since(before, await spanCounters());
    expect(c.exported).toBe(0);
    expect(c.failed).toBe(0);
    expect(receiver.exports).toHaveLength(1);

    const t0 = performance.now();
    await gw!.close(); // idle, so the drain is immediate: the time is the span flush
    const elapsed = performance.now() - t0;
    gw = undefined;
    expect(elapsed).toBeGreaterThanOrEqual(SHUTDOWN_FLUSH_MS - 50);
    expect(elapsed).toBeLessThan(SHUTDOWN_FLUSH_MS + 1500);
    const warnings = lossWarnings();
    const last = warnings.at(-1)!;
    expect(last).toMatchObject({ msg: 'trace spans lost (at shutdown)', failed: 0 });
    // What was held in memory when shutdown gave up: the queue plus the batch in flight, no more.
    expect(last.unsent).toBeGreaterThan(QUEUE);
    expect(last.unsent).toBeLessThanOrEqual(QUEUE + BATCH);
    expect(c.dropped + last.unsent!).toBe(n * SPANS_PER_REQUEST);
    expect(lossWarnings().reduce((sum, w) => sum + w.dropped + w.failed + (w.unsent ?? 0), 0)).toBe(n * SPANS_PER_REQUEST);
  }, 30_000);
});
