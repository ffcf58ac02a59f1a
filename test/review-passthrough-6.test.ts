/**
 * Sixth review of the pass-through routes, above all the Responses API: the gateway on a
 * real socket in front of an upstream on 127.0.0.1 that answers what OpenAI sends, steered
 * per request (`x-case` names the handler a test registered). Named after what broke.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { request } from 'undici';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { PromText } from './telemetry-e2e/prom-text.js';

type Handler = (req: IncomingMessage, body: Buffer, res: ServerResponse) => void | Promise<void>;

const handlers = new Map<string, Handler>();
let server: Server;
let upstreamUrl: string;
let gw: TestGateway;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const handler = handlers.get(String(req.headers['x-case']));
      if (!handler) {
        res.statusCode = 404;
        res.end('{}');
        return;
      }
      void Promise.resolve(handler(req, Buffer.concat(chunks), res)).catch(() => res.destroy());
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}/v1`;
  gw = await startTestGateway(mockConfig(upstreamUrl, '', '    breaker: {failures: 0}'));
});

afterAll(async () => {
  await gw?.close();
  server?.closeAllConnections();
  await new Promise<void>((r) => server?.close(() => r()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Registers a handler under a fresh case name; returns the name. */
function upstreamCase(handler: Handler): string {
  const name = `case-${randomUUID()}`;
  handlers.set(name, handler);
  return name;
}

const metrics = () => scrapeMetrics(gw.url);

/** Waits until `n` requests of `model` are counted; returns the metrics then. */
async function settled(model: string, n: number): Promise<PromText> {
  for (let i = 0; i < 300; i++) {
    const m = await metrics();
    if ((m.sum('promptgate_requests_total', { gen_ai_request_model: model }) ?? 0) >= n) return m;
    await sleep(10);
  }
  throw new Error(`${model}: fewer than ${n} requests counted`);
}

/** Counts requests from now on: `settled(n)` waits until n more are counted (any labels: a GET has no model label unless accounted). */
async function counter(): Promise<{ settled(n: number): Promise<PromText> }> {
  const start = (await metrics()).sum('promptgate_requests_total') ?? 0;
  return {
    async settled(n) {
      for (let i = 0; i < 300; i++) {
        const m = await metrics();
        if ((m.sum('promptgate_requests_total') ?? 0) >= start + n) return m;
        await sleep(10);
      }
      throw new Error(`fewer than ${n} requests counted`);
    },
  };
}

function tokens(m: PromText, model: string, type: string): number {
  return m.sum('promptgate_tokens_total', { gen_ai_request_model: model, gen_ai_token_type: type }) ?? 0;
}

/** A Responses API response object as OpenAI sends it. */
function responseObject(id: string, model: string, status: string, usage: object | null, extra: object = {}) {
  return {
    id,
    object: 'response',
    created_at: 1_700_000_000,
    status,
    background: false,
    error: null,
    incomplete_details: null,
    model,
    output: status === 'completed' ? [{ id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hi there', annotations: [] }] }] : [],
    usage,
    ...extra,
  };
}

function sseEvent(type: string, data: object): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

const USAGE = { input_tokens: 100, input_tokens_details: { cached_tokens: 0 }, output_tokens: 50, output_tokens_details: { reasoning_tokens: 20 }, total_tokens: 150 };

/** A raw POST /v1/responses through the gateway, read to the end. */
async function postResponses(kase: string, body: object): Promise<{ status: number; text: string }> {
  const res = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify(body) });
  return { status: res.statusCode, text: await res.body.text() };
}

function requestLabels(m: PromText, model: string): Array<[string, string, string, number]> {
  return m.select('promptgate_requests_total', { gen_ai_request_model: model }).map((s) => [s.labels.route, s.labels.status_class, s.labels.error_type, s.value]);
}

describe('Responses streams: the upstream error event', () => {
  it('a stream with an error event is error_type=upstream_stream_error, as on the chat route (it was counted a success); bytes unchanged', async () => {
    const model = `m-err-${randomUUID().slice(0, 8)}`;
    const events = [
      sseEvent('response.created', { sequence_number: 0, response: responseObject('resp_e1', model, 'in_progress', null) }),
      sseEvent('response.output_text.delta', { sequence_number: 1, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi' }),
      sseEvent('error', { sequence_number: 2, code: 'server_error', message: 'The server had an error while processing your request.', param: null }),
    ].join('');
    const kase = upstreamCase((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
      res.end(events);
    });
    const res = await postResponses(kase, { model, input: 'hi', stream: true });
    expect(res).toEqual({ status: 200, text: events });
    const m = await settled(model, 1);
    expect(requestLabels(m, model)).toEqual([['/v1/responses', '2xx', 'upstream_stream_error', 1]]);
  });

  // Regression: an upstream that cut the body after response.completed made the gateway
  // cut the client's connection (openai-node threw) and count an upstream_body_error.
  it('a stream the upstream cuts after response.completed ends normally for the client and is counted ok', async () => {
    const model = `m-cut-after-${randomUUID().slice(0, 8)}`;
    const events = [
      sseEvent('response.created', { sequence_number: 0, response: responseObject('resp_c1', model, 'in_progress', null) }),
      sseEvent('response.completed', { sequence_number: 1, response: responseObject('resp_c1', model, 'completed', USAGE) }),
    ].join('');
    const kase = upstreamCase((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(events);
      setTimeout(() => res.socket?.destroy(), 30);
    });
    const res = await postResponses(kase, { model, input: 'hi', stream: true });
    expect(res).toEqual({ status: 200, text: events });
    const m = await settled(model, 1);
    expect(requestLabels(m, model)).toEqual([['/v1/responses', '2xx', '', 1]]);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output') }).toEqual({ input: 100, output: 50 });
  });

  it('a client that leaves after the error event is that upstream error, not a client_abort', async () => {
    const model = `m-err-left-${randomUUID().slice(0, 8)}`;
    const kase = upstreamCase((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvent('response.created', { sequence_number: 0, response: responseObject('resp_e2', model, 'in_progress', null) }));
      res.write(sseEvent('error', { sequence_number: 1, code: 'server_error', message: 'boom', param: null }));
      // The upstream keeps the connection open; the client is the one that leaves.
      setTimeout(() => res.end(), 2000).unref();
    });
    const controller = new AbortController();
    const res = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify({ model, input: 'hi', stream: true }), signal: controller.signal });
    let seen = '';
    await expect(
      (async () => {
        for await (const chunk of res.body) {
          seen += String(chunk);
          if (seen.includes('event: error')) controller.abort();
        }
      })(),
    ).rejects.toThrow();
    const m = await settled(model, 1);
    expect(requestLabels(m, model)).toEqual([['/v1/responses', '2xx', 'upstream_stream_error', 1]]);
  });

  it('an error field, or the word in the output, is no error event', async () => {
    const model = `m-err-none-${randomUUID().slice(0, 8)}`;
    const text = 'She wrote {"type":"error"} then\nevent: error';
    const kase = upstreamCase((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvent('response.created', { sequence_number: 0, response: responseObject('resp_e3', model, 'in_progress', null) }));
      res.write(sseEvent('response.output_text.delta', { sequence_number: 1, item_id: 'msg_1', output_index: 0, content_index: 0, delta: text }));
      res.end(sseEvent('response.completed', { sequence_number: 2, response: responseObject('resp_e3', model, 'completed', USAGE) }));
    });
    await postResponses(kase, { model, input: 'hi', stream: true });
    const m = await settled(model, 1);
    expect(requestLabels(m, model)).toEqual([['/v1/responses', '2xx', '', 1]]);
    expect(tokens(m, model, 'input')).toBe(100);
  });
});

describe('Responses streams: a client that stops at the terminal event', () => {
  it('a client that closes once it has response.completed (before the upstream ends the body): usage accounted, not a client_abort (it lost the tokens)', async () => {
    const model = `m-stop-${randomUUID().slice(0, 8)}`;
    const kase = upstreamCase((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvent('response.created', { sequence_number: 0, response: responseObject('resp_s1', model, 'in_progress', null) }));
      res.write(sseEvent('response.output_text.delta', { sequence_number: 1, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi there' }));
      res.write(sseEvent('response.completed', { sequence_number: 2, response: responseObject('resp_s1', model, 'completed', USAGE) }));
      setTimeout(() => res.end(), 2000).unref(); // the end of the body comes later than the client waits
    });
    const controller = new AbortController();
    const res = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify({ model, input: 'hi', stream: true }), signal: controller.signal });
    let seen = '';
    await expect(
      (async () => {
        for await (const chunk of res.body) {
          seen += String(chunk);
          if (seen.includes('event: response.completed')) controller.abort(); // `break` on the last event, as an app does
        }
      })(),
    ).rejects.toThrow();
    const m = await settled(model, 1);
    expect(requestLabels(m, model)).toEqual([['/v1/responses', '2xx', '', 1]]);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output'), reasoning: tokens(m, model, 'reasoning') }).toEqual({ input: 100, output: 50, reasoning: 20 });
  });

  it('a client that leaves before the terminal event is still a client_abort without tokens', async () => {
    const model = `m-stop-early-${randomUUID().slice(0, 8)}`;
    const kase = upstreamCase((_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvent('response.created', { sequence_number: 0, response: responseObject('resp_s2', model, 'in_progress', null) }));
      setTimeout(() => res.end(sseEvent('response.completed', { sequence_number: 1, response: responseObject('resp_s2', model, 'completed', USAGE) })), 2000).unref();
    });
    const controller = new AbortController();
    const res = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify({ model, input: 'hi', stream: true }), signal: controller.signal });
    await expect(
      (async () => {
        for await (const _chunk of res.body) controller.abort();
      })(),
    ).rejects.toThrow();
    const m = await settled(model, 1);
    expect(requestLabels(m, model)).toEqual([['/v1/responses', '2xx', 'client_abort', 1]]);
    expect(tokens(m, model, 'input')).toBe(0);
  });
});

describe('background responses', () => {
  /** An upstream background response: queued at creation, in_progress at the first poll, then completed with USAGE. */
  function backgroundUpstream(model: string, id: string) {
    let polls = 0;
    return upstreamCase((req, _body, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.method === 'POST' && req.url === '/v1/responses') return void res.end(JSON.stringify(responseObject(id, model, 'queued', null, { background: true })));
      if (req.method === 'POST') return void res.end(JSON.stringify(responseObject(id, model, 'cancelled', null, { background: true })));
      polls++;
      res.end(JSON.stringify(polls < 2 ? responseObject(id, model, 'in_progress', null, { background: true }) : responseObject(id, model, 'completed', USAGE, { background: true })));
    });
  }

  it('background: true then polling with responses.retrieve: the usage is accounted once, by the first poll that sees it completed (it never was)', async () => {
    const model = `m-bg-${randomUUID().slice(0, 8)}`;
    const count = await counter();
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-x', maxRetries: 0, defaultHeaders: { 'x-case': backgroundUpstream(model, `resp_bg_${randomUUID()}`) } });
    const created = await client.responses.create({ model, input: 'hi', background: true });
    expect(created.status).toBe('queued');
    const polled: string[] = [];
    for (let i = 0; i < 4; i++) polled.push((await client.responses.retrieve(created.id)).status!);
    expect(polled).toEqual(['in_progress', 'completed', 'completed', 'completed']);
    const m = await count.settled(5);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output'), reasoning: tokens(m, model, 'reasoning') }).toEqual({ input: 100, output: 50, reasoning: 20 });
    expect(m.sum('promptgate_cost_unknown_total', { gen_ai_request_model: model })).toBe(1);
  });

  it('concurrent polls of a completed background response account it once', async () => {
    const model = `m-bg-conc-${randomUUID().slice(0, 8)}`;
    const count = await counter();
    const id = `resp_bg_${randomUUID()}`;
    const kase = backgroundUpstream(model, id);
    await postResponses(kase, { model, input: 'hi', background: true });
    await request(`${gw.url}/v1/responses/${id}`, { headers: { 'x-case': kase } }).then((r) => r.body.text()); // in_progress
    await Promise.all(Array.from({ length: 5 }, () => request(`${gw.url}/v1/responses/${id}`, { headers: { 'x-case': kase } }).then((r) => r.body.text())));
    const m = await count.settled(7);
    expect(tokens(m, model, 'input')).toBe(100);
    expect(tokens(m, model, 'output')).toBe(50);
  });

  it('a background stream the client left early is accounted by its resumed stream (starting_after), once; a later poll adds nothing', async () => {
    const model = `m-bg-stream-${randomUUID().slice(0, 8)}`;
    const count = await counter();
    const id = `resp_bgs_${randomUUID()}`;
    const all = [
      sseEvent('response.created', { sequence_number: 0, response: responseObject(id, model, 'queued', null, { background: true }) }),
      sseEvent('response.in_progress', { sequence_number: 1, response: responseObject(id, model, 'in_progress', null, { background: true }) }),
      sseEvent('response.output_text.delta', { sequence_number: 2, item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi' }),
      sseEvent('response.output_text.delta', { sequence_number: 3, item_id: 'msg_1', output_index: 0, content_index: 0, delta: ' there' }),
      sseEvent('response.completed', { sequence_number: 4, response: responseObject(id, model, 'completed', USAGE, { background: true }) }),
    ];
    let resumedFrom: string | null = null;
    const kase = upstreamCase((req, _body, res) => {
      const url = new URL(req.url!, 'http://upstream');
      if (req.method === 'GET' && url.searchParams.get('stream') !== 'true') {
        res.setHeader('content-type', 'application/json');
        return void res.end(JSON.stringify(responseObject(id, model, 'completed', USAGE, { background: true })));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (req.method === 'GET') {
        resumedFrom = url.searchParams.get('starting_after');
        return void res.end(all.slice(Number(resumedFrom) + 1).join(''));
      }
      res.write(all[0] + all[1] + all[2]);
      setTimeout(() => res.end(all.slice(3).join('')), 3000).unref(); // the client has left by then
    });
    const controller = new AbortController();
    const res = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify({ model, input: 'hi', stream: true, background: true }), signal: controller.signal });
    let seen = '';
    await expect(
      (async () => {
        for await (const chunk of res.body) {
          seen += String(chunk);
          if (seen.includes('"sequence_number":2')) controller.abort();
        }
      })(),
    ).rejects.toThrow();
    let m = await count.settled(1);
    expect(tokens(m, model, 'input')).toBe(0);

    const resumed = await request(`${gw.url}/v1/responses/${id}?stream=true&starting_after=2`, { headers: { 'x-case': kase } });
    expect(await resumed.body.text()).toBe(all.slice(3).join(''));
    expect(resumedFrom).toBe('2');
    m = await count.settled(2);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output') }).toEqual({ input: 100, output: 50 });

    await request(`${gw.url}/v1/responses/${id}`, { headers: { 'x-case': kase } }).then((r) => r.body.text());
    m = await count.settled(3);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output') }).toEqual({ input: 100, output: 50 });
  });

  it('a background stream that reached response.completed is accounted by its create call; polls after it add nothing', async () => {
    const model = `m-bg-done-${randomUUID().slice(0, 8)}`;
    const count = await counter();
    const id = `resp_bgd_${randomUUID()}`;
    const kase = upstreamCase((req, _body, res) => {
      if (req.method === 'GET') {
        res.setHeader('content-type', 'application/json');
        return void res.end(JSON.stringify(responseObject(id, model, 'completed', USAGE, { background: true })));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvent('response.created', { sequence_number: 0, response: responseObject(id, model, 'queued', null, { background: true }) }));
      res.end(sseEvent('response.completed', { sequence_number: 1, response: responseObject(id, model, 'completed', USAGE, { background: true }) }));
    });
    await postResponses(kase, { model, input: 'hi', stream: true, background: true });
    for (let i = 0; i < 2; i++) await request(`${gw.url}/v1/responses/${id}`, { headers: { 'x-case': kase } }).then((r) => r.body.text());
    const m = await count.settled(3);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output') }).toEqual({ input: 100, output: 50 });
    expect(m.sum('promptgate_requests_total', { gen_ai_request_model: model, route: '/v1/responses', stream: 'true' })).toBe(1);
  });

  // Regression: a poll that saw the response completed while its create stream was still
  // open accounted it, and the stream's own response.completed accounted it again.
  it('a background stream still open when a poll sees it completed is accounted once', async () => {
    const model = `m-bg-race-${randomUUID().slice(0, 8)}`;
    const count = await counter();
    const id = `resp_bgr_${randomUUID()}`;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const kase = upstreamCase(async (req, _body, res) => {
      if (req.method === 'GET') {
        res.setHeader('content-type', 'application/json');
        return void res.end(JSON.stringify(responseObject(id, model, 'completed', USAGE, { background: true })));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseEvent('response.created', { sequence_number: 0, response: responseObject(id, model, 'queued', null, { background: true }) }));
      await released;
      res.end(sseEvent('response.completed', { sequence_number: 1, response: responseObject(id, model, 'completed', USAGE, { background: true }) }));
    });
    const stream = await request(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify({ model, input: 'hi', stream: true, background: true }) });
    const chunks = stream.body[Symbol.asyncIterator]();
    expect(Buffer.from((await chunks.next()).value as Buffer).toString()).toContain('response.created');
    await request(`${gw.url}/v1/responses/${id}`, { headers: { 'x-case': kase } }).then((r) => r.body.text());
    release();
    while (!(await chunks.next()).done);
    const m = await count.settled(2);
    expect({ input: tokens(m, model, 'input'), output: tokens(m, model, 'output') }).toEqual({ input: 100, output: 50 });
  });

  it('a cancelled background response without usage is forgotten; a response this gateway did not create is not accounted on GET', async () => {
    const model = `m-bg-cancel-${randomUUID().slice(0, 8)}`;
    const count = await counter();
    const id = `resp_bgc_${randomUUID()}`;
    const kase = backgroundUpstream(model, id);
    await postResponses(kase, { model, input: 'hi', background: true });
    const cancelled = await request(`${gw.url}/v1/responses/${id}/cancel`, { method: 'POST', headers: { 'x-case': kase } });
    expect(((await cancelled.body.json()) as { status: string }).status).toBe('cancelled');
    const other = backgroundUpstream(model, `resp_elsewhere_${randomUUID()}`);
    for (let i = 0; i < 3; i++) await request(`${gw.url}/v1/responses/resp_elsewhere`, { headers: { 'x-case': other } }).then((r) => r.body.text());
    const m = await count.settled(5);
    expect(tokens(m, model, 'input')).toBe(0);
  });
});

// Regression: `/v1/embeddings/` was labelled an embeddings operation but not metered (the
// metered check wanted the exact path), and `/v1//embeddings` neither: an upstream that
// merges slashes served both, uncounted.
describe('metered routes spelled with extra slashes', () => {
  it('are metered like the plain path when the upstream serves them', async () => {
    for (const path of ['/v1/embeddings/', '/v1//embeddings']) {
      const model = `m-emb-slash-${randomUUID().slice(0, 8)}`;
      const kase = upstreamCase((_req, _body, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5] }], model, usage: { prompt_tokens: 7, total_tokens: 7 } }));
      });
      const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-case': kase }, body: JSON.stringify({ model, input: 'hi' }) });
      expect(res.statusCode).toBe(200);
      await res.body.text();
      const m = await settled(model, 1);
      expect([path, tokens(m, model, 'input')]).toEqual([path, 7]);
      expect(m.sum('promptgate_requests_total', { gen_ai_request_model: model, route: '/v1/embeddings' })).toBe(1);
    }
  });
});
