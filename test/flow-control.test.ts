/**
 * Flow control and resource bounds under slow or hostile peers, on real sockets: a client
 * that stops reading, a client that never finishes its request, an upstream that floods,
 * and clients that leave at every stage. Each upstream here is a bare `node:http` server
 * that writes as fast as its socket takes it and counts what it wrote.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { rawPost, received, until } from './helpers/raw-socket.js';
import { listenOnLoopback } from './helpers/http-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = 1 << 20;

interface FloodUpstream {
  url: string;
  /** Bytes the upstream handed to its socket. */
  written: number;
  /** Requests the upstream saw the gateway close before their response ended. */
  closed: number;
  requests: number;
  close(): Promise<void>;
}

/** An upstream whose handler runs once the request body is in (as a real API answers). */
async function startUpstream(handler: (req: IncomingMessage, res: ServerResponse, u: FloodUpstream) => void): Promise<FloodUpstream> {
  const u: FloodUpstream = { url: '', written: 0, closed: 0, requests: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    u.requests++;
    res.on('close', () => {
      if (!res.writableFinished) u.closed++;
    });
    req.resume();
    req.on('end', () => handler(req, res, u));
  });
  u.url = `${await listenOnLoopback(server)}/v1`;
  u.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return u;
}

/** Writes `piece` as fast as the socket takes it (honouring `drain`) until `limit` bytes or the close. */
async function flood(res: ServerResponse, u: FloodUpstream, piece: string, limit: number): Promise<void> {
  while (u.written < limit && !res.destroyed) {
    u.written += piece.length;
    if (!res.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = () => (res.off('drain', done), res.off('close', done), resolve());
        res.once('drain', done);
        res.once('close', done);
      });
    }
  }
}

/** promptgate_requests_total summed over its series (those with `label`): the requests the gateway has finished (accounted). */
async function finishedRequests(gw: TestGateway, label = ''): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('promptgate_requests_total{') && line.includes(label)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const chat = (stream: boolean) => JSON.stringify({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] });
const EVENT = `data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"${'x'.repeat(1000)}"},"finish_reason":null}]}\n\n`;

let gw: TestGateway | undefined;
let upstream: FloodUpstream | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await gw?.close();
  await upstream?.close();
  gw = undefined;
  upstream = undefined;
});

describe('a client that stops reading', () => {
  it('holds the upstream back on a chat stream instead of buffering it (and frees it when the client leaves)', async () => {
    upstream = await startUpstream((_req, res, u) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      void flood(res, u, EVENT, 200 * MB);
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const client = rawPost(gw.port, '/v1/chat/completions', chat(true));
    sockets.push(client);
    const got = received(client);
    await until(() => got.bytes() > 0);
    client.pause();
    await sleep(1_000);
    const plateau = upstream.written;
    await sleep(1_000);
    // Nothing more is read from the upstream while the client reads nothing; what is in
    // flight is socket buffers (the kernel's, on loopback, some MB), not the 200 MB offered.
    expect(upstream.written).toBe(plateau);
    expect(plateau).toBeLessThan(64 * MB);
    client.destroy();
    await until(() => upstream!.closed === 1);
  });

  it('holds the upstream back on a pass-through body', async () => {
    upstream = await startUpstream((_req, res, u) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      void flood(res, u, 'y'.repeat(16 * 1024), 400 * MB);
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const client = rawPost(gw.port, '/v1/files/file-1/content', '');
    sockets.push(client);
    const got = received(client);
    await until(() => got.bytes() > 0);
    client.pause();
    await sleep(1_000);
    const plateau = upstream.written;
    await sleep(1_000);
    expect(upstream.written).toBe(plateau);
    expect(plateau).toBeLessThan(64 * MB);
    client.destroy();
    await until(() => upstream!.closed === 1);
  });

  // Regression: the relay waited for the client's socket to drain with nothing else to end
  // the wait: past total_ms the upstream was aborted, but the stream was never ended nor
  // accounted (the exchange stayed open for as long as the client held the connection).
  it('ends and accounts a stream whose client stopped reading when the total timeout passes', async () => {
    upstream = await startUpstream((_req, res, u) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      void flood(res, u, EVENT, 400 * MB);
    });
    gw = await startTestGateway(mockConfig(upstream.url, '', '    timeout: {connect_ms: 1000, first_byte_ms: 2000, idle_ms: 1000, total_ms: 1500}'));
    const client = rawPost(gw.port, '/v1/chat/completions', chat(true));
    sockets.push(client);
    const got = received(client);
    await until(() => got.bytes() > 0);
    client.pause();
    await until(() => upstream!.closed === 1);
    await until(async () => (await finishedRequests(gw!, 'error_type="upstream_timeout"')) === 1);
  });
});

describe('an upstream that floods', () => {
  // Regression: a stream with no blank line was held whole (and re-scanned on every chunk:
  // quadratic CPU), so one upstream line could take all memory and block the event loop.
  it('ends a stream whose upstream sends one endless line with an error event, and aborts it', async () => {
    upstream = await startUpstream((_req, res, u) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[]}\n\n');
      res.write('data: ');
      void flood(res, u, 'q'.repeat(64 * 1024), 200 * MB);
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const client = rawPost(gw.port, '/v1/chat/completions', chat(true));
    sockets.push(client);
    const got = received(client);
    await until(() => got.text().endsWith('0\r\n\r\n'), 10_000);
    expect(got.text()).toMatch(/^HTTP\/1\.1 200/);
    const last = got.text().match(/data: (\{"error".*\})\n\n/);
    expect(JSON.parse(last![1]).error).toEqual({ message: 'The upstream sent an event larger than 16777216 bytes.', type: 'server_error', param: null, code: 'upstream_error' });
    await until(() => upstream!.closed === 1);
    expect(upstream.written).toBeLessThan(64 * MB);
  });

  // Regression: a non-stream answer was read whole whatever its size (100 MB took GBs of
  // memory and blocked the event loop for seconds while its usage was estimated).
  it('answers 502 to a non-stream chat answer over 64 MiB instead of buffering it, and aborts it', async () => {
    upstream = await startUpstream((_req, res, u) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"');
      void flood(res, u, 'z'.repeat(64 * 1024), 200 * MB).then(() => res.end('"},"finish_reason":"stop"}]}'));
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat(false) });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: { message: 'The upstream response is larger than 67108864 bytes.', type: 'server_error', param: null, code: 'upstream_error' } });
    await until(() => upstream!.closed === 1);
    expect(upstream.written).toBeLessThan(128 * MB);
  });
});

/**
 * Runs Node's periodic check of request timeouts now (it runs every 30 s), so a test need
 * not wait for it. Node internals: fails loudly if they change.
 */
function checkRequestTimeoutsNow(server: Server): void {
  const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connectionsCheckingInterval');
  if (!key) throw new Error('Node no longer keeps its connections-checking timer under this symbol');
  (server as unknown as Record<symbol, { _onTimeout(): void }>)[key]._onTimeout();
}

describe('a client that sends its request slowly', () => {
  // Regression: Node's request timeout (slowloris) was answered as 400 invalid_request,
  // "could not be parsed as HTTP/1.1", which tells a slow client its request is malformed.
  it('answers 408 request_timeout in the OpenAI envelope to a client whose headers never finish, and closes', async () => {
    upstream = await startUpstream((_req, res) => res.end('{}'));
    gw = await startTestGateway(mockConfig(upstream.url));
    gw.server.requestTimeout = 300;
    const client = connect(gw.port, '127.0.0.1');
    sockets.push(client);
    client.write('POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n');
    const got = received(client);
    const closed = new Promise((r) => client.once('close', r));
    await sleep(500);
    checkRequestTimeoutsNow(gw.server);
    await closed;
    const [head, body] = got.text().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(head).toContain('connection: close');
    expect(JSON.parse(body)).toEqual({ error: { message: 'The request was not received in time.', type: 'invalid_request_error', param: null, code: 'request_timeout' } });
  });
});

describe('clients that leave', () => {
  it('aborts the upstream and leaves no exchange or timer behind, at every stage', async () => {
    upstream = await startUpstream((req, res) => {
      const headersAfter = Number(req.headers['x-test-delay-ms'] ?? 0);
      const answer = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const tick = setInterval(() => res.write(EVENT), 10);
        res.once('close', () => clearInterval(tick));
      }, headersAfter);
      res.once('close', () => clearTimeout(answer)); // the test counts timers: the upstream's go too
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const rounds = 10;
    for (let i = 0; i < rounds; i++) {
      // Before the upstream answers; mid-stream; mid request body (never forwarded).
      const waiting = rawPost(gw.port, '/v1/chat/completions', chat(true), { 'x-test-delay-ms': '5000' });
      const streaming = rawPost(gw.port, '/v1/chat/completions', chat(true));
      const halfSent = rawPost(gw.port, '/v1/chat/completions', '{"model":', { 'content-length': '500' });
      const streamed = received(streaming);
      await until(() => upstream!.requests === 2 * (i + 1) && streamed.bytes() > 0);
      for (const s of [waiting, streaming, halfSent]) s.destroy();
    }
    await until(() => upstream!.closed === 2 * rounds);
    // Every exchange was accounted (none left open), each as a client abort.
    expect(await finishedRequests(gw, 'error_type="client_abort"')).toBe(3 * rounds);
    expect(await finishedRequests(gw)).toBe(3 * rounds);
    // The exchanges' total-timeout timers went with them.
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBeLessThanOrEqual(timersBefore + 1);
  });
});
