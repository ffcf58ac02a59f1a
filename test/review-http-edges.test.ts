/**
 * Review of HTTP/1.1 at the edges, on both sides of the gateway: raw sockets from the
 * client, and a raw upstream (node:net) that records the exact bytes it gets and answers by
 * path, so framing (100-continue, chunked, pipelining, smuggling, early answers, 1xx) is
 * what is tested, not what an HTTP library makes of it. Regressions are named after what broke.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, mockConfig, type TestGateway } from './helpers/gateway.js';
import { until } from './helpers/raw-socket.js';
import { listenOnLoopback } from './helpers/http-server.js';

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
const COMPLETION = JSON.stringify({
  id: 'c1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});

interface Seen {
  head: string;
  body: string;
}

/** Per upstream connection: the raw bytes it got, and the requests parsed from them. */
const conns: { raw: string; seen: Seen[] }[] = [];
const upstreamSockets = new Set<Socket>();
let upstream: Server;
let upstreamUrl: string;
let gw: TestGateway | undefined;
const clients = new Set<Socket>();

/** What the upstream sends for a request (by path); `early` answers on the headers alone. */
function answer(req: Seen, socket: Socket): void {
  const path = req.head.split(' ')[1];
  const json = (status: string, body: string, extra = '') =>
    `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
  if (req.head.startsWith('HEAD ')) socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n');
  else if (path.endsWith('/continue')) socket.write(`HTTP/1.1 100 Continue\r\n\r\n${json('200 OK', '{}')}`);
  else if (path.endsWith('/clte')) socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`);
  else if (path.endsWith('/hints')) socket.write(`HTTP/1.1 103 Early Hints\r\nlink: </x.css>; rel=preload\r\n\r\n${json('200 OK', '{"hinted":true}')}`);
  else if (path.endsWith('/close')) socket.write(json('200 OK', '{"closing":true}', 'connection: close\r\n')); // says close, keeps the socket open
  else if (path.endsWith('/headers-only')) socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 100\r\n\r\n');
  else if (path.endsWith('/models')) socket.write(json('200 OK', '{"object":"list","data":[]}'));
  else socket.write(json('200 OK', COMPLETION));
}

/** Parses the complete requests in `raw` from `offset` (content-length or chunked bodies). */
function parse(raw: string, offset: number): { reqs: Seen[]; offset: number } {
  const reqs: Seen[] = [];
  let off = offset;
  for (;;) {
    const end = raw.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const head = raw.slice(off, end);
    let p = end + 4;
    let body = '';
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      let done = false;
      for (;;) {
        const eol = raw.indexOf('\r\n', p);
        if (eol < 0) break;
        const size = parseInt(raw.slice(p, eol), 16);
        if (size === 0) {
          const last = raw.indexOf('\r\n\r\n', eol - 2);
          if (last < 0) break;
          p = last + 4;
          done = true;
          break;
        }
        if (raw.length < eol + 4 + size) break;
        body += raw.slice(eol + 2, eol + 2 + size);
        p = eol + 4 + size;
      }
      if (!done) break;
    } else if (length) {
      if (raw.length < p + Number(length[1])) break;
      body = raw.slice(p, p + Number(length[1]));
      p += Number(length[1]);
    }
    reqs.push({ head, body });
    off = p;
  }
  return { reqs, offset: off };
}

beforeAll(async () => {
  upstream = createServer((socket) => {
    upstreamSockets.add(socket);
    socket.on('close', () => upstreamSockets.delete(socket));
    socket.on('error', () => undefined);
    const conn = { raw: '', seen: [] as Seen[] };
    conns.push(conn);
    let offset = 0;
    let early = false;
    socket.on('data', (d: Buffer) => {
      conn.raw += d.toString('latin1');
      // An upload to /early is answered (413, connection kept) as soon as its headers are in.
      if (!early && conn.raw.slice(offset).startsWith('POST /v1/early') && conn.raw.includes('\r\n\r\n', offset)) {
        early = true;
        conn.seen.push({ head: conn.raw.slice(offset, conn.raw.indexOf('\r\n\r\n', offset)), body: '' });
        socket.end('HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: 19\r\nconnection: close\r\n\r\n{"error":"too big"}');
        return;
      }
      if (early) return;
      const parsed = parse(conn.raw, offset);
      offset = parsed.offset;
      for (const req of parsed.reqs) {
        conn.seen.push(req);
        answer(req, socket);
      }
    });
  });
  upstreamUrl = `${await listenOnLoopback(upstream)}/v1`;
});

afterAll(async () => {
  for (const s of upstreamSockets) s.destroy();
  await new Promise((resolve) => upstream.close(resolve));
});

afterEach(async () => {
  for (const s of clients) s.destroy();
  clients.clear();
  await gw?.close();
  gw = undefined;
  conns.length = 0;
});

async function start(server = ''): Promise<TestGateway> {
  const yaml = mockConfig(upstreamUrl, '', '    breaker: {failures: 0}').replace('drain_timeout_ms: 2000', `drain_timeout_ms: 2000${server}`);
  gw = await startTestGateway(yaml);
  return gw;
}

/** A raw client connection: write bytes, read what came back, parsed into responses. */
function client(port: number) {
  const socket = connect(port, '127.0.0.1');
  clients.add(socket);
  let text = '';
  let closed = false;
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  return {
    write: (bytes: string) => socket.write(bytes, 'latin1'),
    text: () => text,
    closed: () => closed,
    /** The final responses so far (1xx left out), each with its status, head and body by content-length. */
    responses: () => responsesOf(text),
  };
}

function responsesOf(text: string): { status: number; head: string; body: string }[] {
  const out: { status: number; head: string; body: string }[] = [];
  let off = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const head = text.slice(off, end);
    const status = Number(head.split(' ')[1]);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    const bodyLength = length ? Number(length[1]) : 0;
    if (text.length < end + 4 + bodyLength) break;
    if (status >= 200) out.push({ status, head, body: text.slice(end + 4, end + 4 + bodyLength) });
    off = end + 4 + bodyLength;
  }
  return out;
}

const chatRequest = (extra: string[] = [], target = '/v1/chat/completions') =>
  `POST ${target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${CHAT.length}\r\n${extra.map((h) => `${h}\r\n`).join('')}\r\n${CHAT}`;

const chunked = (body: string, ext = '', trailer = '') => `${body.length.toString(16)}${ext}\r\n${body}\r\n0\r\n${trailer}\r\n`;

const upstreamRequests = () => conns.flatMap((c) => c.seen);

describe('client side: framing', () => {
  it('a request with both content-length and transfer-encoding is refused and the connection closed; the upstream sees nothing', async () => {
    const { port } = await start();
    const c = client(port);
    // A smuggled second request rides in the body as content-length would read it.
    c.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${CHAT.length}\r\ntransfer-encoding: chunked\r\n\r\n` +
        chunked(CHAT) +
        'GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n',
    );
    await until(() => c.closed());
    expect(c.responses().map((r) => r.status)).toEqual([400]);
    expect(JSON.parse(c.responses()[0].body).error.code).toBe('invalid_request');
    expect(upstreamRequests()).toHaveLength(0);
  });

  it('chunked bodies with chunk extensions and trailers are read as their data alone', async () => {
    const { port } = await start();
    const c = client(port);
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n';
    c.write(head + chunked(CHAT, ';name=value'));
    c.write(head + chunked(CHAT, '', 'x-checksum: 1\r\n'));
    await until(() => c.responses().length === 2);
    expect(c.responses().map((r) => r.status)).toEqual([200, 200]);
    expect(upstreamRequests().map((r) => JSON.parse(r.body).messages)).toEqual([
      [{ role: 'user', content: 'hi' }],
      [{ role: 'user', content: 'hi' }],
    ]);
    expect(upstreamRequests()[0].head).not.toMatch(/transfer-encoding|x-checksum|trailer/i);
  });

  it('answers 501 not_implemented to a body in a transfer coding other than chunked, and reads the next request (was: gzip bytes relayed as the body)', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(`POST /v1/files HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: gzip, chunked\r\n\r\n${chunked('\x1f\x8b\x08gzipped')}`);
    c.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n${chunked(CHAT)}`);
    c.write(chatRequest());
    await until(() => c.responses().length === 3);
    const [upload, chat, next] = c.responses();
    expect([upload.status, chat.status, next.status]).toEqual([501, 501, 200]);
    expect(JSON.parse(upload.body).error).toMatchObject({ code: 'not_implemented', type: 'invalid_request_error' });
    expect(JSON.parse(chat.body).error.code).toBe('not_implemented');
    expect(upstreamRequests().map((r) => r.head.split('\r\n')[0])).toEqual(['POST /v1/chat/completions HTTP/1.1']);
  });

  it('answers OPTIONS * in the OpenAI envelope and keeps the connection (was: a bare 400 with an empty chunked body)', async () => {
    const { port } = await start();
    const c = client(port);
    c.write('OPTIONS * HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
    c.write(chatRequest());
    await until(() => c.responses().length === 2);
    const [star, next] = c.responses();
    expect(star.status).toBe(400);
    expect(star.head).toMatch(/\r\ncontent-type: application\/json/i);
    expect(JSON.parse(star.body).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request' });
    expect(next.status).toBe(200);
    expect(upstreamRequests()).toHaveLength(1);
  });

  it('answers an HTTP/1.1 request without Host 400 in the OpenAI envelope and closes (was: a bare 400 with an empty body)', async () => {
    const { port } = await start();
    const c = client(port);
    c.write('GET /v1/models HTTP/1.1\r\n\r\n');
    await until(() => c.closed());
    const [answer] = c.responses();
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request' });
    expect(upstreamRequests()).toHaveLength(0);
    // HTTP/1.0 needs no Host.
    const old = client(port);
    old.write('GET /v1/models HTTP/1.0\r\n\r\n');
    await until(() => old.responses().length === 1);
    expect(old.responses()[0].status).toBe(200);
  });

  it('pipelined requests (chat and pass-through) are answered in order, none lost', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(chatRequest() + 'GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n' + chatRequest());
    await until(() => c.responses().length === 3);
    const bodies = c.responses().map((r) => JSON.parse(r.body));
    expect(bodies.map((b) => b.object)).toEqual(['chat.completion', 'list', 'chat.completion']);
    expect(upstreamRequests()).toHaveLength(3);
  });

  it('keeps the connection usable after a 413 refused on content-length, on chunked reading, and after 100-continue', async () => {
    const { port } = await start(', max_body_bytes: 1000');
    const big = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
    const c = client(port);
    c.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${big.length}\r\n\r\n${big}`);
    c.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${chunked(big)}`);
    c.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${big.length}\r\nexpect: 100-continue\r\n\r\n`);
    await until(() => c.text().includes('100 Continue'));
    c.write(big + chatRequest());
    await until(() => c.responses().length === 4);
    expect(c.responses().map((r) => r.status)).toEqual([413, 413, 413, 200]);
    expect(c.closed()).toBe(false);
    expect(upstreamRequests()).toHaveLength(1);
  });

  it('Expect: 100-continue gets a 100 before the body, on chat and on a pass-through upload; the upstream gets no expect', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${CHAT.length}\r\nexpect: 100-continue\r\n\r\n`);
    await until(() => c.text().startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    c.write(CHAT);
    await until(() => c.responses().length === 1);
    c.write('POST /v1/files HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/octet-stream\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n');
    await until(() => c.text().split('100 Continue').length === 3);
    c.write('hello');
    await until(() => c.responses().length === 2);
    expect(c.responses().map((r) => r.status)).toEqual([200, 200]);
    expect(upstreamRequests().map((r) => r.body)).toEqual([CHAT, 'hello']);
    for (const r of upstreamRequests()) expect(r.head).not.toMatch(/\r\nexpect:/i);
  });

  it('Connection: close gets its answer with connection: close, then the connection closes', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(chatRequest(['connection: close']));
    await until(() => c.closed());
    expect(c.responses()).toHaveLength(1);
    expect(c.responses()[0].head).toMatch(/\r\nconnection: close/i);
  });

  it('absolute-form chat target is served as its path; duplicate content-type and authorization send one of each upstream', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(chatRequest(['content-type: text/plain', 'authorization: Bearer a', 'authorization: Bearer b'], 'http://elsewhere.example/v1/chat/completions'));
    await until(() => c.responses().length === 1);
    expect(c.responses()[0].status).toBe(200);
    const [seen] = upstreamRequests();
    expect(seen.head.split('\r\n')[0]).toBe('POST /v1/chat/completions HTTP/1.1');
    expect(seen.head).not.toMatch(/elsewhere/);
    expect(seen.head.match(/\r\ncontent-type:/gi)).toHaveLength(1);
    expect(seen.head).toMatch(/\r\ncontent-type: application\/json\r\n/);
    expect(seen.head.match(/\r\nauthorization:/gi)).toHaveLength(1);
    expect(seen.head).toMatch(/\r\nauthorization: Bearer sk-test-secret-key-123456/);
  });

  it('a header value with obs-text bytes reaches the upstream byte for byte', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(chatRequest(['x-user: caf\xe9 \xff']));
    await until(() => c.responses().length === 1);
    expect(c.responses()[0].status).toBe(200);
    expect(upstreamRequests()[0].head).toContain('\r\nx-user: caf\xe9 \xff');
  });
});

describe('upstream side', () => {
  it('relays an answer the upstream gave before a streamed upload ended, then serves the next request on the connection (was: the connection stalled)', async () => {
    const { port } = await start(', max_body_bytes: 1000');
    const c = client(port);
    const part = 'y'.repeat(3000);
    c.write(`POST /v1/early HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/octet-stream\r\ncontent-length: ${part.length * 3}\r\n\r\n${part}`);
    await until(() => c.responses().length === 1);
    expect(c.responses()[0].status).toBe(413);
    expect(c.responses()[0].body).toBe('{"error":"too big"}');
    // The client sends the rest of its upload anyway, then its next request.
    for (const bytes of [part, part, chatRequest()]) {
      c.write(bytes);
      await new Promise((r) => setTimeout(r, 50));
    }
    await until(() => c.responses().length === 2);
    expect(c.responses()[1].status).toBe(200);
    expect(JSON.parse(c.responses()[1].body).object).toBe('chat.completion');
  });

  it('answers 502 upstream_error to an upstream that sends 100 Continue or content-length with transfer-encoding (was: 503 upstream_unavailable)', async () => {
    const { port } = await start();
    const c = client(port);
    c.write(chatRequest([], '/v1/continue'));
    c.write(chatRequest([], '/v1/clte'));
    await until(() => c.responses().length === 2);
    for (const r of c.responses()) {
      expect(r.status).toBe(502);
      expect(JSON.parse(r.body).error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
      expect(r.head).not.toMatch(/retry-after/i);
    }
  });

  it('a 103 Early Hints before the 200 is skipped: the client gets the 200 and its body', async () => {
    const { port } = await start();
    const c = client(port);
    c.write('GET /v1/hints HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
    await until(() => c.responses().length === 1);
    expect(c.responses()[0]).toMatchObject({ status: 200, body: '{"hinted":true}' });
  });

  it('an upstream answer with connection: close is not followed by a request on that connection', async () => {
    const { port } = await start();
    const c = client(port);
    c.write('GET /v1/close HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
    await until(() => c.responses().length === 1);
    c.write('GET /v1/close HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
    await until(() => c.responses().length === 2);
    expect(c.responses().map((r) => r.status)).toEqual([200, 200]);
    expect(c.responses()[0].head).not.toMatch(/\r\nconnection: close/i); // hop-by-hop: the client connection stays
    expect(conns.map((cn) => cn.seen.length)).toEqual([1, 1]);
  });

  it('an upstream that closes after the headers cuts the pass-through answer: the client connection closes, not a short body on a kept-alive one', async () => {
    const { port } = await start();
    const c = client(port);
    c.write('GET /v1/files/f/headers-only HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
    await until(() => c.closed());
    expect(c.responses()).toHaveLength(0); // the announced 100 bytes never came
  });

  it('HEAD on a pass-through route sends no body, and the next request on the connection is read right', async () => {
    const { port } = await start();
    const c = client(port);
    c.write('HEAD /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n' + chatRequest());
    await until(() => c.text().includes('chat.completion'));
    const [headAnswer] = c.text().split('\r\n\r\n');
    expect(headAnswer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const afterHead = c.text().slice(headAnswer.length + 4);
    expect(afterHead.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
  });
});
