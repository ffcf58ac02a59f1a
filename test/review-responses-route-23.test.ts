/**
 * Review: the calls on a streamed Responses object went to the wrong upstream.
 *
 * A Responses stream's stored object was noted under its model's route (`routing.models`)
 * only when the request finished, and only with the id its terminal event gave. So the
 * calls on it (cancel, retrieve, resume, input_items, delete) went to `routing.default`:
 * - while the create stream was still open (a background response cancelled or polled
 *   before it ended), and
 * - after the client cut the stream before its terminal event (it left after
 *   `response.created`): no id was known at all, so the poll that should account the
 *   background response got a 404 from the default upstream, and the create's span named
 *   no response id.
 *
 * Two in-test upstreams on 127.0.0.1 port 0: `home` (the default route) knows no response
 * and answers 404; `routed` (the route of `gpt-b`) holds each create stream open after
 * `response.created` until the test releases it, and answers the calls on its responses.
 * Each records what it got. The official `openai` client talks to the gateway; spans go to
 * an in-test OTLP receiver.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOCK_API_KEY, mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { startOtlpReceiver, type OtlpReceiver } from './telemetry-e2e/otlp-receiver.js';

const USAGE = { input_tokens: 7, output_tokens: 5, total_tokens: 12, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } };

interface RecordingUpstream {
  url: string;
  /** `METHOD /path?query` of each request received. */
  got: string[];
  /** Ends the create stream of response `id` (its `response.completed`). */
  release(id: string): void;
}

const servers: Server[] = [];

/** An upstream that knows no response: 404 for everything, as OpenAI answers an id it does not hold. */
async function startHome(): Promise<RecordingUpstream> {
  const got: string[] = [];
  const server = createServer((req, res) => {
    got.push(`${req.method} ${req.url}`);
    req.resume();
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'No response found.', type: 'invalid_request_error', param: null, code: null } }));
  });
  servers.push(server);
  return { url: `${await listenOnLoopback(server)}/v1`, got, release: () => undefined };
}

/** The upstream of the routed model: its create streams stay open after `response.created` until released. */
async function startRouted(): Promise<RecordingUpstream> {
  const got: string[] = [];
  const releases = new Map<string, () => void>();
  let made = 0;
  const server = createServer((req, res) => {
    got.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
      void answerRouted(req, res, body, { releases, nextId: () => `resp_routed${++made}` }).catch(() => res.destroy());
    });
  });
  servers.push(server);
  return { url: `${await listenOnLoopback(server)}/v1`, got, release: (id) => releases.get(id)?.() };
}

const responseObject = (id: string, status: string) => ({
  id,
  object: 'response',
  created_at: 1_700_000_000,
  status,
  background: true,
  model: 'gpt-b',
  output: [],
  usage: status === 'queued' || status === 'in_progress' ? null : USAGE,
});

async function answerRouted(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>, state: { releases: Map<string, () => void>; nextId: () => string }): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const json = (value: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  const sse = (events: Array<[string, object]>) => {
    for (const [type, data] of events) res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  };
  if (req.method === 'POST' && url.pathname === '/v1/responses' && body.stream === true) {
    const id = state.nextId();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    sse([['response.created', { sequence_number: 0, response: responseObject(id, 'queued') }]]);
    await new Promise<void>((resolve) => {
      state.releases.set(id, resolve);
      res.on('close', () => resolve());
    });
    if (res.destroyed) return;
    sse([['response.completed', { sequence_number: 1, response: responseObject(id, 'completed') }]]);
    res.end();
    return;
  }
  const match = /^\/v1\/responses\/([^/]+)(\/cancel|\/input_items)?$/.exec(url.pathname);
  if (!match) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'Unknown path.', type: 'invalid_request_error', param: null, code: null } }));
    return;
  }
  const [, id, sub] = match;
  if (sub === '/cancel') return json(responseObject(id, 'cancelled'));
  if (sub === '/input_items') return json({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  if (req.method === 'DELETE') return json({ id, object: 'response.deleted', deleted: true });
  if (url.searchParams.get('stream') === 'true') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    sse([['response.completed', { sequence_number: 1, response: responseObject(id, 'completed') }]]);
    res.end();
    return;
  }
  json(responseObject(id, 'completed'));
}

let home: RecordingUpstream;
let routed: RecordingUpstream;
let receiver: OtlpReceiver;
let gw: TestGateway;
let client: OpenAI;

beforeAll(async () => {
  home = await startHome();
  routed = await startRouted();
  receiver = await startOtlpReceiver();
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
  const second = `    breaker: {failures: 0}\n  - name: routed\n    base_url: ${routed.url}\n    api_key: ${MOCK_API_KEY}-routed\n    breaker: {failures: 0}\n`;
  gw = await startTestGateway(mockConfig(home.url, '', second).replace('routing: {default: [mock]}', 'routing: {default: [mock], models: {gpt-b: [routed]}}'));
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
});

afterAll(async () => {
  await gw?.close();
  await receiver?.close();
  await closeServers(servers);
});

/** What each upstream got while `calls` ran. */
async function sentDuring(calls: () => Promise<void>): Promise<{ home: string[]; routed: string[] }> {
  const before = { home: home.got.length, routed: routed.got.length };
  await calls();
  return { home: home.got.slice(before.home), routed: routed.got.slice(before.routed) };
}

describe('calls on a streamed Responses object of a routed model', () => {
  it('reach its upstream while the create stream is still open (cancel, retrieve, resume, input_items, delete)', async () => {
    const stream = await client.responses.create({ model: 'gpt-b', input: 'hi', stream: true, background: true });
    let id: string | undefined;
    const types: string[] = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type !== 'response.created') continue;
      id = event.response.id;
      const sent = await sentDuring(async () => {
        expect((await client.responses.retrieve(id!)).status).toBe('completed');
        const resumed: string[] = [];
        for await (const e of await client.responses.retrieve(id!, { stream: true, starting_after: 0 })) resumed.push(e.type);
        expect(resumed).toEqual(['response.completed']);
        expect((await client.responses.inputItems.list(id!)).data).toEqual([]);
        expect((await client.responses.cancel(id!)).status).toBe('cancelled');
        await client.responses.delete(id!);
      });
      expect(sent.home).toEqual([]);
      expect(sent.routed).toEqual([
        `GET /v1/responses/${id}`,
        `GET /v1/responses/${id}?stream=true&starting_after=0`,
        `GET /v1/responses/${id}/input_items`,
        `POST /v1/responses/${id}/cancel`,
        `DELETE /v1/responses/${id}`,
      ]);
      routed.release(id);
    }
    expect(id).toMatch(/^resp_routed/);
    expect(types).toEqual(['response.created', 'response.completed']);
  });

  it('reach its upstream after the client cut the create stream at response.created; the poll accounts it and the cut create names its id', async () => {
    const { data: stream, response } = await client.responses.create({ model: 'gpt-b', input: 'hi', stream: true, background: true }).withResponse();
    const createRequestId = response.headers.get('x-request-id')!;
    let id: string | undefined;
    for await (const event of stream) {
      if (event.type === 'response.created') {
        id = event.response.id;
        break; // the client leaves: openai-node aborts the request
      }
    }
    expect(id).toMatch(/^resp_routed/);
    const { client: createSpan } = await receiver.waitForRequest(createRequestId);
    expect(createSpan!.attributes).toMatchObject({ 'error.type': 'client_abort', 'gen_ai.response.id': id });

    let pollRequestId: string | undefined;
    const sent = await sentDuring(async () => {
      const { data, response: polled } = await client.responses.retrieve(id!).withResponse();
      expect(data.status).toBe('completed');
      pollRequestId = polled.headers.get('x-request-id')!;
    });
    expect(sent).toEqual({ home: [], routed: [`GET /v1/responses/${id}`] });
    // The first poll that shows the background response ended accounts its usage (README "Responses API").
    const { client: pollSpan } = await receiver.waitForRequest(pollRequestId!);
    expect(pollSpan!.attributes).toMatchObject({ 'gen_ai.usage.input_tokens': 7, 'gen_ai.usage.output_tokens': 5 });
  });
});
