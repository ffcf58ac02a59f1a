/**
 * Review round 5 (traces): span export against a collector that behaves like the real one.
 *
 * - The OpenTelemetry Collector's OTLP/HTTP receiver refuses a request body over
 *   `max_request_body_size` (20 MiB by default) with 400: the whole batch is lost. With
 *   `capture_content: true` a few long prompts (RAG context, pasted documents) filled one
 *   batch past that, and every span of it was lost, the short requests' spans included.
 * - A collector may accept a batch in part (OTLP partial success: 200 with
 *   `rejected_spans`); those spans are lost too and must be counted and reported as such.
 *
 * The collector here is a node:http server on 127.0.0.1 port 0 that decodes OTLP/protobuf
 * with the test decoder. Tracing is process-global: each test sets the OTEL_* environment,
 * starts a gateway (which starts the SDK) and shuts it down (which stops it).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { request } from 'undici';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { detectResources, hostDetector } from '@opentelemetry/resources';
import { decodeTraceExportRequest } from './otlp-proto-decode.js';

/** The OpenTelemetry Collector's default `max_request_body_size` (confighttp). */
const COLLECTOR_MAX_BODY = 20 * 1024 * 1024;

interface Collector {
  url: string;
  /** Body sizes of the export requests received. */
  bodies: number[];
  /** Spans kept. */
  spans: number;
  /** The string attributes of every span kept. */
  attributes: Array<Record<string, string | undefined>>;
  /** The OTLP value of every attribute of every span kept (`{doubleValue: 0}`, ...). */
  values: Array<Record<string, Record<string, unknown>>>;
  /** The resource attributes (string values) of every export kept. */
  resources: Array<Record<string, string | undefined>>;
  /** `promptgate.request.id` of every SERVER span kept. */
  requestIds: string[];
  /** `rejected`: answer 200 with a partial success rejecting this many spans of each export. */
  rejected: number;
  /** Read each export and never answer. */
  hang: boolean;
  close(): Promise<void>;
}

/** A varint (non-negative, below 2^31). */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** `ExportTraceServiceResponse{partial_success: {rejected_spans, error_message}}`. */
function partialSuccess(rejected: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8');
  const inner = Buffer.from([0x08, ...varint(rejected), 0x12, ...varint(text.length), ...text]);
  return Buffer.from([0x0a, ...varint(inner.length), ...inner]);
}

async function startCollector(): Promise<Collector> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= COLLECTOR_MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      collector.bodies.push(size);
      if (collector.hang) return; // close() ends it
      if (size > COLLECTOR_MAX_BODY) {
        // As the collector's OTLP receiver: the body reader fails, 400, nothing kept.
        res.writeHead(400, { 'content-type': 'application/x-protobuf' });
        res.end();
        return;
      }
      const json = req.headers['content-type'] === 'application/json';
      const raw = Buffer.concat(chunks);
      const body = (json ? JSON.parse(raw.toString('utf8')) : decodeTraceExportRequest(raw)) as {
        resourceSpans: Array<{ resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans?: Array<{ spans?: Array<{ attributes?: Array<{ key: string; value: { stringValue?: string } }> }> }> }>;
      };
      for (const rs of body.resourceSpans) collector.resources.push(Object.fromEntries((rs.resource?.attributes ?? []).map((a) => [a.key, a.value.stringValue])));
      const ids: string[] = [];
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) ids.push(span.attributes?.find((a) => a.key === 'promptgate.request.id')?.value.stringValue ?? '');
      const rejected = Math.min(collector.rejected, ids.length);
      collector.spans += ids.length - rejected;
      for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) {
        collector.attributes.push(Object.fromEntries((span.attributes ?? []).map((a) => [a.key, a.value.stringValue])));
        collector.values.push(Object.fromEntries((span.attributes ?? []).map((a) => [a.key, a.value as Record<string, unknown>])));
      }
      collector.requestIds.push(...ids.slice(rejected).filter(Boolean));
      const message = 'span exceeds the attribute limit';
      if (json) {
        // OTLP/JSON: int64 as a decimal string.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(rejected > 0 ? { partialSuccess: { rejectedSpans: String(rejected), errorMessage: message } } : {}));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end(rejected > 0 ? partialSuccess(rejected, message) : Buffer.alloc(0));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const collector: Collector = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies: [],
    spans: 0,
    resources: [],
    attributes: [],
    values: [],
    requestIds: [],
    rejected: 0,
    hang: false,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return collector;
}

let upstream: MockUpstream;
let collector: Collector;
let gw: TestGateway | undefined;
let lines: string[] = [];

beforeAll(async () => {
  upstream = await startMockUpstream();
  collector = await startCollector();
});
afterAll(async () => {
  await upstream?.close();
  await collector?.close();
});
beforeEach(() => {
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url;
  collector.bodies.length = 0;
  collector.requestIds.length = 0;
  collector.spans = 0;
  collector.resources.length = 0;
  collector.attributes.length = 0;
  collector.values.length = 0;
  collector.rejected = 0;
  collector.hang = false;
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

type Counts = { exported: number; failed: number; dropped: number };
async function spanCounters(): Promise<Counts> {
  const text = await scrapeMetricsText(gw!.url);
  const read = (name: string) => Number(text.match(new RegExp(`^promptgate_trace_spans_${name}_total (\\S+)$`, 'm'))?.[1] ?? NaN);
  return { exported: read('exported'), failed: read('failed'), dropped: read('dropped') };
}
const since = (before: Counts, after: Counts): Counts => ({ exported: after.exported - before.exported, failed: after.failed - before.failed, dropped: after.dropped - before.dropped });
async function waitForCounters(before: Counts, done: (c: Counts) => boolean, timeoutMs = 15_000): Promise<Counts> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const c = since(before, await spanCounters());
    if (done(c) || Date.now() > until) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
}
const lossWarnings = () =>
  lines
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.includes('"trace spans lost'))
    .map((l) => JSON.parse(l) as { msg: string; failed: number; dropped: number; error?: string });

async function chat(id: string, content: string): Promise<number> {
  const res = await request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
  });
  await res.body.text();
  return res.statusCode;
}

describe('span export against a collector with real limits', () => {
  it('captured long prompts never put a batch over the collector\'s 20 MiB body limit: every span arrives (was: the whole batch refused, short requests\' spans lost too)', { timeout: 60_000 }, async () => {
    // One batch collects every span of the burst (a long delay, the default batch size).
    process.env.OTEL_BSP_SCHEDULE_DELAY = '1000';
    gw = await startTestGateway(mockConfig(upstream.url, 'telemetry: {capture_content: true}\nguard: {injection: {action: "off"}}'));
    const before = await spanCounters();
    // 8 prompts of 3 MB (under the default 4 MiB max_body_bytes) and 8 short ones.
    const big = 'lorem ipsum '.repeat(250_000);
    const ids = [...Array.from({ length: 8 }, (_, i) => `big-${i}`), ...Array.from({ length: 8 }, (_, i) => `small-${i}`)];
    const statuses = await Promise.all(ids.map((id) => chat(id, id.startsWith('big') ? big : 'hi')));
    expect(statuses.every((s) => s === 200)).toBe(true);
    const c = await waitForCounters(before, (x) => x.exported + x.failed >= ids.length * 2);
    expect(c).toEqual({ exported: ids.length * 2, failed: 0, dropped: 0 });
    expect(Math.max(...collector.bodies)).toBeLessThanOrEqual(COLLECTOR_MAX_BODY);
    expect(collector.spans).toBe(ids.length * 2);
    expect([...collector.requestIds].sort()).toEqual([...ids].sort());
  });

  it.each(['http/protobuf', 'http/json'])('%s: spans the collector rejects in a partial success are counted failed, not exported, and reported with its message', async (protocol) => {
    process.env.OTEL_BSP_SCHEDULE_DELAY = '20';
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = protocol;
    gw = await startTestGateway(mockConfig(upstream.url).replace('level: silent', 'level: warn'));
    collector.rejected = 1;
    const before = await spanCounters();
    expect(await chat('partial-1', 'hi')).toBe(200);
    const c = await waitForCounters(before, (x) => x.exported + x.failed >= 2);
    const exports = collector.bodies.length;
    expect(exports).toBeGreaterThan(0);
    // Each export had one span rejected: those are lost, the rest arrived.
    expect(c).toEqual({ exported: 2 - exports, failed: exports, dropped: 0 });
    expect(collector.spans).toBe(2 - exports);
    const warning = lossWarnings()[0];
    expect(warning).toMatchObject({ msg: 'trace spans lost', failed: exports, dropped: 0 });
    expect(warning?.error).toContain('span exceeds the attribute limit');
  });

  it('a collector that hangs: spans holding captured prompts are dropped once the queue holds 64 MiB, not kept until 2048 of them pile up', { timeout: 60_000 }, async () => {
    process.env.OTEL_BSP_SCHEDULE_DELAY = '20';
    collector.hang = true;
    gw = await startTestGateway(mockConfig(upstream.url, 'telemetry: {capture_content: true}\nguard: {injection: {action: "off"}}'));
    const before = await spanCounters();
    const big = 'lorem ipsum '.repeat(250_000); // 3 MB: each CLIENT span holds about that much
    const n = 32; // ~96 MB of prompts
    for (let i = 0; i < n; i += 8) {
      const statuses = await Promise.all(Array.from({ length: 8 }, (_, j) => chat(`hang-${i + j}`, big)));
      expect(statuses.every((s) => s === 200)).toBe(true);
    }
    const c = await waitForCounters(before, (x) => x.dropped > 0, 5_000);
    // 64 MiB hold about 21 of these spans (the small SERVER spans still fit).
    expect(c.dropped).toBeGreaterThanOrEqual(n - 24);
    expect(c.dropped).toBeLessThanOrEqual(n);
    expect(c.exported).toBe(0);
  });

  it('the resource carries host.id (read asynchronously by the host detector) from the first export on (was: never exported over OTLP/HTTP protobuf)', async () => {
    const host = detectResources({ detectors: [hostDetector] });
    await host.waitForAsyncAttributes?.();
    const hostId = host.attributes['host.id'];
    process.env.OTEL_BSP_SCHEDULE_DELAY = '20';
    gw = await startTestGateway(mockConfig(upstream.url));
    const before = await spanCounters();
    expect(await chat('host-1', 'hi')).toBe(200);
    await waitForCounters(before, (x) => x.exported >= 2);
    expect(collector.resources.length).toBeGreaterThan(0);
    for (const resource of collector.resources) {
      expect(resource['host.name']).toBeTypeOf('string');
      // A host without a machine id (some containers) has none to send.
      expect(resource['host.id']).toBe(hostId);
    }
  });

  it('with OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, captured messages are cut to fit and stay valid GenAI JSON (was: the SDK cut the JSON itself, invalid)', async () => {
    process.env.OTEL_BSP_SCHEDULE_DELAY = '20';
    process.env.OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT = '2000';
    gw = await startTestGateway(mockConfig(upstream.url, 'telemetry: {capture_content: true}'));
    const before = await spanCounters();
    const manual = 'Step "one":\n\tpress the 🔴 button. '.repeat(200); // quotes, escapes, surrogate pairs
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'limit-1' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: manual }, { role: 'user', content: 'How do I start it?' }] }),
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    await waitForCounters(before, (x) => x.exported >= 2);
    const client = collector.attributes.find((a) => a['gen_ai.input.messages'] !== undefined)!;
    const input = client['gen_ai.input.messages']!;
    expect(input.length).toBeLessThanOrEqual(2000);
    const messages = JSON.parse(input) as Array<{ role: string; parts: Array<{ type: string; content: string }> }>;
    expect(messages.map((m) => m.role)).toEqual(['system', 'user']);
    // The long text is cut (a prefix, marked), the short one whole.
    const system = messages[0]!.parts[0]!.content;
    expect(system.endsWith('…')).toBe(true);
    expect(manual.startsWith(system.slice(0, -1))).toBe(true);
    expect(system.length).toBeGreaterThan(1000);
    expect(messages[1]!.parts).toEqual([{ type: 'text', content: 'How do I start it?' }]);
    const output = JSON.parse(client['gen_ai.output.messages']!) as Array<{ role: string; finish_reason: string }>;
    expect(output[0]).toMatchObject({ role: 'assistant', finish_reason: 'stop' });
  });

  // http/json: the SDK's JSON serializer wrote an integral value as intValue (temperature 0, a
  // score of 0), whatever DOUBLE_ATTRIBUTES said; only the protobuf encoder read the list.
  it.each(['http/protobuf', 'http/json'])('%s: an integral injection score, cost or temperature goes as a double, like every other value of the attribute (was: 0 went as an int)', async (protocol) => {
    process.env.OTEL_BSP_SCHEDULE_DELAY = '20';
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = protocol;
    gw = await startTestGateway(mockConfig(upstream.url));
    const before = await spanCounters();
    // No usage tokens cost 0 USD.
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'types-1', 'x-mock-usage': JSON.stringify({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }) },
      body: JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: 'What time is it?' }] }),
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    await waitForCounters(before, (x) => x.exported >= 2);
    const tempered = collector.values.filter((v) => v['gen_ai.request.temperature'] !== undefined);
    expect(tempered.map((v) => v['gen_ai.request.temperature'])).toEqual([{ doubleValue: 0 }]);
    const scored = collector.values.filter((v) => v['promptgate.injection.score'] !== undefined);
    expect(scored.length).toBeGreaterThan(0);
    for (const v of scored) expect(Object.keys(v['promptgate.injection.score']!)).toEqual(['doubleValue']);
    const costed = collector.values.filter((v) => v['promptgate.cost.usd'] !== undefined);
    expect(costed).toHaveLength(1);
    expect(costed[0]!['promptgate.cost.usd']).toEqual({ doubleValue: 0 });
    // Counts stay ints (OTLP/JSON writes an int64 as a string or a number).
    expect(Number(costed[0]!['gen_ai.usage.input_tokens']!.intValue)).toBe(0);
  });

  it('tracing off: a traceparent of version ff is not passed upstream, one of a later version is (W3C Trace Context)', async () => {
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT; // no SDK: the client's trace context passes through
    gw = await startTestGateway(mockConfig(upstream.url));
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const sent = async (id: string, traceparent: string) => {
      const res = await request(`${gw!.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': id, traceparent, tracestate: 'vendor=1' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      await res.body.text();
      expect(res.statusCode).toBe(200);
      const seen = upstream.requests.find((r) => r.headers['x-request-id'] === id)!;
      return { traceparent: seen.headers.traceparent, tracestate: seen.headers.tracestate };
    };
    expect(await sent('tp-ff', `ff-${trace}`)).toEqual({ traceparent: undefined, tracestate: undefined });
    expect(await sent('tp-00-extra', `00-${trace}-what`)).toEqual({ traceparent: undefined, tracestate: undefined });
    expect(await sent('tp-00', `00-${trace}`)).toEqual({ traceparent: `00-${trace}`, tracestate: 'vendor=1' });
    expect(await sent('tp-cc', `cc-${trace}-what`)).toEqual({ traceparent: `cc-${trace}-what`, tracestate: 'vendor=1' });
  });
});
