/**
 * End to end: exact usage and cost of the pass-through routes that report them,
 * `POST /v1/embeddings` and `POST /v1/responses` (JSON and stream), through the real
 * gateway (real sockets) in front of an in-test upstream that records the exact bytes it
 * sent. Checked: what the official `openai` client gets (the same as straight from the
 * upstream), the raw bytes the client receives (the upstream's, unchanged), the tokens and
 * cost in `GET /metrics`, the `x-promptgate-cost-usd` header, and the CLIENT span's GenAI
 * attributes (exported to an in-test OTLP receiver).
 *
 * Expected costs are computed by hand from DEFAULT_PRICES (USD per 1M tokens):
 *   text-embedding-3-small 0.02, text-embedding-3-large 0.13, text-embedding-ada-002 0.10 (input only)
 *   gpt-4o-mini  input 0.15  cached_input 0.075  output 0.6
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request } from 'undici';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { scrapeMetrics } from '../helpers/metrics.js';
import { collect } from '../e2e/client-helpers.js';
import { PromText } from './prom-text.js';
import { startOtlpReceiver, type OtlpReceiver } from './otlp-receiver.js';

/** 2000 input of which 1500 cached, 1000 output of which 400 reasoning (Responses API shape). */
const RICH_USAGE = { input_tokens: 2000, input_tokens_details: { cached_tokens: 1500 }, output_tokens: 1000, output_tokens_details: { reasoning_tokens: 400 }, total_tokens: 3000 };
/** gpt-4o-mini: (500*0.15 + 1500*0.075 + 1000*0.6) / 1e6. */
const RICH_COST = 0.0007875;

// ---------------------------------------------------------------------------------------
// The upstream: OpenAI's shapes, steered per request by headers; remembers what it sent.
//   x-usage: {json}     the usage object (x-usage: none leaves it out)
//   x-model: name       the answer's model (default: the request's)
//   x-terminal: type    the stream's last event (default response.completed)
//   x-piece: n          write the body in n-byte pieces, 1 ms apart (events split anywhere)
//   x-crlf: 1           stream lines end with CRLF
//   x-mode: not-json | gzip | cut | big | status-429
// ---------------------------------------------------------------------------------------

interface Upstream {
  url: string;
  /** The body bytes sent for each request, by the x-request-id the gateway forwarded. */
  sent: Map<string, Buffer>;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startUpstream(): Promise<Upstream> {
  const sent = new Map<string, Buffer>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, any>;
      void answer(req, res, body, sent).catch(() => res.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    sent,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function answer(req: IncomingMessage, res: ServerResponse, body: Record<string, any>, sent: Map<string, Buffer>): Promise<void> {
  const id = header(req, 'x-request-id') ?? randomUUID();
  const mode = header(req, 'x-mode');
  const usageHeader = header(req, 'x-usage');
  const model = header(req, 'x-model') ?? body.model ?? 'gpt-4o-mini';
  const headers = { 'x-request-id': `req_up_${id}`, 'openai-processing-ms': '5' };
  if (mode === 'status-429') {
    const bytes = Buffer.from(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } }));
    sent.set(id, bytes);
    res.writeHead(429, { ...headers, 'content-type': 'application/json' });
    res.end(bytes);
    return;
  }
  const path = (req.url ?? '').split('?')[0];
  let payload: Buffer;
  let stream = false;
  if (path === '/v1/embeddings') {
    const inputs: unknown[] = Array.isArray(body.input) ? body.input : [body.input];
    const count = mode === 'big' ? 3000 : inputs.length;
    const vector = [0.25, -0.5, 0.125];
    const data = Array.from({ length: count }, (_, index) => ({
      object: 'embedding',
      index,
      embedding: body.encoding_format === 'base64' ? Buffer.from(new Float32Array(mode === 'big' ? new Array(1536).fill(0.5) : vector).buffer).toString('base64') : vector,
    }));
    const usage = usageHeader === 'none' ? undefined : usageHeader ? JSON.parse(usageHeader) : { prompt_tokens: 8, total_tokens: 8 };
    payload = Buffer.from(JSON.stringify({ object: 'list', data, model, ...(usage ? { usage } : {}) }));
  } else if (path === '/v1/responses' || path.startsWith('/v1/responses/')) {
    // POST creates an answer; GET /v1/responses/{id} returns the stored one, usage and all.
    const usage = usageHeader === 'none' ? null : usageHeader ? JSON.parse(usageHeader) : RICH_USAGE;
    // Output text holding look-alikes of what the gateway reads: it must not be fooled.
    const text = 'A "response.completed" with "usage": {"input_tokens": 999} and "model": "fake"';
    const item = { id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
    const response = (status: string, output: unknown[], withUsage: boolean) => ({
      id: 'resp_abc123',
      object: 'response',
      created_at: 1_700_000_000,
      status,
      error: null,
      incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
      model,
      output,
      usage: withUsage ? usage : null,
    });
    if (!body.stream) {
      payload = Buffer.from(JSON.stringify(response('completed', [item], true)));
    } else {
      stream = true;
      const eol = header(req, 'x-crlf') ? '\r\n' : '\n';
      const terminal = header(req, 'x-terminal') ?? 'response.completed';
      let seq = 0;
      const event = (type: string, data: object) => `event: ${type}${eol}data: ${JSON.stringify({ type, sequence_number: seq++, ...data })}${eol}${eol}`;
      const events = [
        event('response.created', { response: response('in_progress', [], false) }),
        event('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } }),
        ...text.match(/.{1,12}/g)!.map((delta) => event('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta })),
        event('response.output_text.done', { item_id: 'msg_1', output_index: 0, content_index: 0, text }),
        event('response.output_item.done', { output_index: 0, item }),
        event(terminal, { response: response(terminal.slice('response.'.length), [item], true) }),
      ];
      payload = Buffer.from(events.join(''));
    }
  } else {
    payload = Buffer.from('{}');
  }

  if (mode === 'not-json') payload = Buffer.from('upstream says: {"usage": {"prompt_tokens": 5}} (not JSON)');
  const contentType = stream ? 'text/event-stream' : 'application/json';
  const out = mode === 'gzip' ? gzipSync(payload) : payload;
  sent.set(id, out);
  const piece = Number(header(req, 'x-piece') ?? 0);
  if (mode === 'cut') {
    // Declares the whole length, sends half, and drops the connection.
    res.writeHead(200, { ...headers, 'content-type': contentType, 'content-length': String(out.length) });
    res.write(out.subarray(0, out.length >> 1));
    await sleep(30);
    res.destroy();
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': contentType, ...(mode === 'gzip' ? { 'content-encoding': 'gzip' } : {}) });
  if (!piece) {
    res.end(out);
    return;
  }
  for (let at = 0; at < out.length; at += piece) {
    res.write(out.subarray(at, at + piece));
    await sleep(1);
  }
  res.end();
}

// ---------------------------------------------------------------------------------------

let receiver: OtlpReceiver;
let upstream: Upstream;
let gw: TestGateway;
let direct: OpenAI;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  upstream = await startUpstream();
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
  gw = await startTestGateway(mockConfig(upstream.url, '', '    breaker: {failures: 0}'));
  direct = new OpenAI({ baseURL: upstream.url, apiKey: 'sk-test', maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await receiver?.close();
});

/** An openai-node client at the gateway sending these headers (steering the upstream, naming the request). */
function client(headers: Record<string, string>): OpenAI {
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0, defaultHeaders: headers });
}

const metrics = () => scrapeMetrics(gw.url);

/** Series labels of one model's tokens/cost (the gateway is shared by the file: each test uses its own model or compares snapshots). */
interface Accounted {
  input: number;
  output: number;
  cached: number;
  reasoning: number;
  cost: number;
  costUnknown: number;
  requests: (labels: Record<string, string>) => number;
  inputHistogramCount: (operation: string) => number;
}

/** What `call` added to the gateway's metrics; waits until its request is counted (a stream is accounted when it ends). */
async function accounted(call: () => Promise<unknown>): Promise<Accounted> {
  const read = (m: PromText) => ({
    all: m.sum('promptgate_requests_total') ?? 0,
    tokens: (type: string) => m.sum('promptgate_tokens_total', { gen_ai_token_type: type }) ?? 0,
    cost: m.sum('promptgate_cost_usd_total') ?? 0,
    costUnknown: m.sum('promptgate_cost_unknown_total') ?? 0,
    requests: (labels: Record<string, string>) => m.sum('promptgate_requests_total', labels) ?? 0,
    histogram: (operation: string) => m.sum('gen_ai_client_token_usage_count', { gen_ai_operation_name: operation, gen_ai_token_type: 'input' }) ?? 0,
  });
  const before = read(await metrics());
  await call();
  let after = read(await metrics());
  for (let i = 0; after.all === before.all && i < 300; i++) {
    await sleep(10);
    after = read(await metrics());
  }
  return {
    input: after.tokens('input') - before.tokens('input'),
    output: after.tokens('output') - before.tokens('output'),
    cached: after.tokens('cache_read') - before.tokens('cache_read'),
    reasoning: after.tokens('reasoning') - before.tokens('reasoning'),
    cost: after.cost - before.cost,
    costUnknown: after.costUnknown - before.costUnknown,
    requests: (labels) => after.requests(labels) - before.requests(labels),
    inputHistogramCount: (operation) => after.histogram(operation) - before.histogram(operation),
  };
}

/** A raw POST through the gateway: status, headers and the exact body bytes. */
async function post(path: string, body: object, headers: Record<string, string>) {
  const res = await request(`${gw.url}/v1${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, bytes };
}

const newId = (label: string) => `pt-${label}-${randomUUID()}`;

describe('POST /v1/embeddings', () => {
  it('openai-node embeddings.create (base64 by default): tokens and cost in /metrics, the cost header, the span; the client gets what the upstream sent', async () => {
    const id = newId('emb');
    const usage = { prompt_tokens: 1000, total_tokens: 1000 };
    const headers = { 'x-request-id': id, 'x-usage': JSON.stringify(usage) };
    let res: Awaited<ReturnType<ReturnType<OpenAI['embeddings']['create']>['withResponse']>> | undefined;
    const a = await accounted(async () => {
      res = await client(headers).embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] }).withResponse();
    });
    const viaDirect = await direct.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] }, { headers: { ...headers, 'x-request-id': newId('direct') } });
    expect(res!.data).toEqual(viaDirect);
    expect(res!.data.data[0].embedding).toEqual([0.25, -0.5, 0.125]);
    expect(res!.response.headers.get('x-promptgate-cost-usd')).toBe('0.00002'); // 1000 * 0.02 / 1e6
    expect(a).toMatchObject({ input: 1000, output: 0, cached: 0, reasoning: 0, costUnknown: 0 });
    expect(a.cost).toBeCloseTo(0.00002, 15);
    expect(a.requests({ route: '/v1/embeddings', status_class: '2xx', gen_ai_request_model: 'text-embedding-3-small', estimated: 'false', stream: 'false' })).toBe(1);
    expect(a.inputHistogramCount('embeddings')).toBe(1);

    const { client: span } = await receiver.waitForRequest(id);
    expect(span!.name).toBe('embeddings text-embedding-3-small');
    expect(span!.attributes).toMatchObject({
      'gen_ai.operation.name': 'embeddings',
      'gen_ai.request.model': 'text-embedding-3-small',
      'gen_ai.response.model': 'text-embedding-3-small',
      'gen_ai.request.stream': false,
      'gen_ai.usage.input_tokens': 1000,
      'gen_ai.usage.output_tokens': 0,
      'promptgate.usage.estimated': false,
    });
    expect(span!.attributes['promptgate.cost.usd']).toBeCloseTo(0.00002, 15);
  });

  it('the raw bytes are the upstream\'s; text-embedding-3-large and ada-002 are priced', async () => {
    for (const [model, tokens, cost] of [
      ['text-embedding-3-large', 2000, '0.00026'],
      ['text-embedding-ada-002', 500, '0.00005'],
    ] as const) {
      const id = newId('emb-raw');
      const res = await post('/embeddings', { model, input: 'x', encoding_format: 'float' }, { 'x-request-id': id, 'x-usage': JSON.stringify({ prompt_tokens: tokens, total_tokens: tokens }), 'x-piece': '7' });
      expect(res.status).toBe(200);
      expect(res.bytes.equals(upstream.sent.get(id)!)).toBe(true);
      expect(res.headers['x-promptgate-cost-usd']).toBe(cost);
    }
  });

  it('an unknown model: tokens counted, cost unknown (no header), the answer\'s model as the label', async () => {
    const id = newId('emb-unknown');
    let res: Awaited<ReturnType<typeof post>> | undefined;
    const a = await accounted(async () => {
      res = await post('/embeddings', { input: 'x', encoding_format: 'float' }, { 'x-request-id': id, 'x-model': 'my-embedder' });
    });
    expect(res!.headers['x-promptgate-cost-usd']).toBeUndefined();
    expect(a).toMatchObject({ input: 8, output: 0, cost: 0, costUnknown: 1 });
    expect(a.requests({ route: '/v1/embeddings', gen_ai_request_model: 'my-embedder' })).toBe(1);
  });

  it('a body over the header wait (a big batch) goes as it arrives, unchanged, and is still accounted', async () => {
    const id = newId('emb-big');
    let res: Awaited<ReturnType<typeof post>> | undefined;
    const a = await accounted(async () => {
      res = await post('/embeddings', { model: 'text-embedding-3-small', input: 'x', encoding_format: 'base64' }, { 'x-request-id': id, 'x-mode': 'big', 'x-usage': JSON.stringify({ prompt_tokens: 3000, total_tokens: 3000 }) });
    });
    expect(res!.bytes.length).toBeGreaterThan(4 * 1024 * 1024);
    expect(res!.bytes.equals(upstream.sent.get(id)!)).toBe(true);
    expect(res!.headers['x-promptgate-cost-usd']).toBeUndefined(); // headers went before the usage arrived
    expect(a.input).toBe(3000);
    expect(a.cost).toBeCloseTo(0.00006, 15);
  });

  it('no usage from an answer that is not JSON, is gzip-coded, has none, is an error, or is cut; outcome as before', async () => {
    const cases: Array<[string, Record<string, string>, Record<string, string>]> = [
      ['not-json', { 'x-mode': 'not-json' }, { status_class: '2xx', error_type: '' }],
      ['gzip', { 'x-mode': 'gzip' }, { status_class: '2xx', error_type: '' }],
      ['no-usage', { 'x-usage': 'none' }, { status_class: '2xx', error_type: '' }],
      ['429', { 'x-mode': 'status-429' }, { status_class: '4xx', error_type: 'upstream_429' }],
      // Cut while read for the cost header (nothing sent yet): answered as on the chat route.
      ['cut', { 'x-mode': 'cut' }, { status_class: '5xx', error_type: 'upstream_error' }],
    ];
    for (const [label, steer, labels] of cases) {
      const id = newId(`emb-${label}`);
      let res: { status: number; headers: Record<string, unknown>; bytes: Buffer } | undefined;
      const a = await accounted(async () => {
        const r = await request(`${gw.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id, ...steer }, body: JSON.stringify({ model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' }) });
        const bytes = await r.body.arrayBuffer().then(Buffer.from, () => undefined);
        res = { status: r.statusCode, headers: r.headers, bytes: bytes ?? Buffer.alloc(0) };
      });
      expect({ label, input: a.input, output: a.output, cost: a.cost, costUnknown: a.costUnknown }).toEqual({ label, input: 0, output: 0, cost: 0, costUnknown: 0 });
      expect(res!.headers['x-promptgate-cost-usd'], label).toBeUndefined();
      expect(a.requests({ route: '/v1/embeddings', ...labels }), label).toBe(1);
      if (label !== 'cut') expect(res!.bytes.equals(upstream.sent.get(id)!), label).toBe(true);
      if (label === 'gzip') expect(res!.headers['content-encoding']).toBe('gzip');
    }
  });
});

describe('POST /v1/responses', () => {
  it('openai-node responses.create: cached and reasoning tokens, cost, header and span; the client gets what the upstream sent', async () => {
    const id = newId('resp');
    const headers = { 'x-request-id': id, 'x-model': 'gpt-4o-mini-2024-07-18' };
    let res: { data: OpenAI.Responses.Response; response: Response } | undefined;
    const a = await accounted(async () => {
      res = await client(headers).responses.create({ model: 'gpt-4o-mini', input: 'hi' }).withResponse();
    });
    const viaDirect = await direct.responses.create({ model: 'gpt-4o-mini', input: 'hi' }, { headers: { ...headers, 'x-request-id': newId('direct') } });
    expect(res!.data).toEqual(viaDirect);
    expect(res!.data.usage).toEqual(RICH_USAGE);
    expect(res!.response.headers.get('x-promptgate-cost-usd')).toBe('0.0007875');
    expect(a).toMatchObject({ input: 2000, output: 1000, cached: 1500, reasoning: 400, costUnknown: 0 });
    expect(a.cost).toBeCloseTo(RICH_COST, 15);
    expect(a.requests({ route: '/v1/responses', status_class: '2xx', gen_ai_request_model: 'gpt-4o-mini', stream: 'false', estimated: 'false' })).toBe(1);
    expect(a.inputHistogramCount('chat')).toBe(1);

    const { client: span } = await receiver.waitForRequest(id);
    expect(span!.name).toBe('chat gpt-4o-mini');
    expect(span!.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
      'gen_ai.response.id': 'resp_abc123',
      'gen_ai.request.stream': false,
      'gen_ai.usage.input_tokens': 2000,
      'gen_ai.usage.output_tokens': 1000,
      'gen_ai.usage.cache_read.input_tokens': 1500,
      'gen_ai.usage.reasoning.output_tokens': 400,
      'promptgate.usage.estimated': false,
    });
    expect(span!.attributes['promptgate.cost.usd']).toBeCloseTo(RICH_COST, 15);
  });

  it('openai-node responses.create stream: the same events as direct, usage from response.completed, stream span and labels', async () => {
    const id = newId('resp-stream');
    const headers = { 'x-request-id': id, 'x-piece': '13' };
    let events: unknown[] = [];
    const a = await accounted(async () => {
      events = await collect(await client(headers).responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true }));
    });
    const viaDirect = await collect(await direct.responses.create({ model: 'gpt-4o-mini', input: 'hi', stream: true }, { headers: { ...headers, 'x-request-id': newId('direct') } }));
    expect(events).toEqual(viaDirect);
    expect((events.at(-1) as { type: string }).type).toBe('response.completed');
    expect(a).toMatchObject({ input: 2000, output: 1000, cached: 1500, reasoning: 400 });
    expect(a.cost).toBeCloseTo(RICH_COST, 15);
    expect(a.requests({ route: '/v1/responses', status_class: '2xx', stream: 'true', estimated: 'false' })).toBe(1);

    const { client: span } = await receiver.waitForRequest(id);
    expect(span!.attributes).toMatchObject({
      'gen_ai.request.stream': true,
      'gen_ai.response.id': 'resp_abc123',
      'gen_ai.usage.input_tokens': 2000,
      'gen_ai.usage.output_tokens': 1000,
    });
  });

  it('a stream reaches the client byte for byte, as it arrives (CRLF lines, events split anywhere)', async () => {
    const id = newId('resp-raw');
    const res = await request(`${gw.url}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': id, 'x-piece': '5', 'x-crlf': '1', 'x-usage': JSON.stringify({ input_tokens: 10, output_tokens: 4, total_tokens: 14 }) },
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi', stream: true }),
    });
    expect(res.headers['x-promptgate-cost-usd']).toBeUndefined();
    const pieces: Buffer[] = [];
    let firstAt: number | undefined;
    for await (const chunk of res.body) {
      firstAt ??= Date.now();
      pieces.push(chunk as Buffer);
    }
    const received = Buffer.concat(pieces);
    expect(received.equals(upstream.sent.get(id)!)).toBe(true);
    expect(pieces.length).toBeGreaterThan(10); // relayed as it came, not gathered
    const m = await metrics();
    expect(m.sum('promptgate_requests_total', { route: '/v1/responses', stream: 'true' })).toBeGreaterThan(0);
    const { client: span } = await receiver.waitForRequest(id);
    expect(span!.attributes).toMatchObject({ 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 4 });
    expect(span!.attributes['promptgate.cost.usd']).toBeCloseTo((10 * 0.15 + 4 * 0.6) / 1e6, 15);
  });

  it('response.incomplete and response.failed carry usage too', async () => {
    for (const terminal of ['response.incomplete', 'response.failed']) {
      const a = await accounted(async () => {
        const res = await post('/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true }, { 'x-request-id': newId('resp-term'), 'x-terminal': terminal });
        expect(res.bytes.toString('utf8')).toContain(`event: ${terminal}`);
      });
      expect({ terminal, input: a.input, output: a.output }).toEqual({ terminal, input: 2000, output: 1000 });
    }
  });

  it('a stream cut short or without usage: no tokens, no cost; the cut is accounted as before', async () => {
    const cut = await accounted(async () => {
      const res = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': newId('resp-cut'), 'x-mode': 'cut' }, body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi', stream: true }) });
      await res.body.arrayBuffer().catch(() => undefined);
    });
    expect({ input: cut.input, cost: cut.cost }).toEqual({ input: 0, cost: 0 });
    expect(cut.requests({ route: '/v1/responses', error_type: 'upstream_body_error' })).toBe(1);

    const none = await accounted(() => post('/responses', { model: 'gpt-4o-mini', input: 'hi', stream: true }, { 'x-request-id': newId('resp-none'), 'x-usage': 'none' }));
    expect({ input: none.input, cost: none.cost, costUnknown: none.costUnknown }).toEqual({ input: 0, cost: 0, costUnknown: 0 });
    expect(none.requests({ route: '/v1/responses', status_class: '2xx', error_type: '' })).toBe(1);
  });

  it('GET /v1/responses/{id} (a stored answer) is not accounted again', async () => {
    const a = await accounted(async () => {
      const res = await request(`${gw.url}/v1/responses/resp_abc123`, { headers: { 'x-request-id': newId('resp-get') } });
      expect((await res.body.json()) as object).toMatchObject({ id: 'resp_abc123', usage: RICH_USAGE });
    });
    expect({ input: a.input, cost: a.cost }).toEqual({ input: 0, cost: 0 });
  });
});
