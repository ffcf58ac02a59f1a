/**
 * Review of the pass-through routes (every `/v1/*` but chat completions): the gateway on a
 * real socket in front of an upstream that records exactly what it receives, driven by the
 * official `openai` client where a client is involved (raw sockets where the request itself
 * is the point). Regressions are named after what broke; the rest pins what a real client
 * relies on (uploads and downloads byte for byte, methods, statuses, headers, aborts).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import OpenAI, { toFile } from 'openai';
import { request, WebSocket } from 'undici';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { PromText } from './telemetry-e2e/prom-text.js';

const API_KEY = 'sk-config-key-review';
/** The upstream's API root has a path of its own, as Azure's or a multi-tenant proxy's does. */
const BASE_PATH = '/tenant-a/v1';

interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
  /** Body bytes received so far (grows while an upload streams in). */
  bytes: number;
  /** True once the request ended complete. */
  complete: boolean;
  /** True when the connection closed before the response was sent. */
  closedEarly: boolean;
}

const DOWNLOAD = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
const SPEECH = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 13) & 0xff));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let server: Server;
let upstreamUrl: string;
const received: Received[] = [];
let gw: TestGateway;

/** The recording upstream; answers by path (after BASE_PATH). */
function answer(req: IncomingMessage, res: ServerResponse, r: Received): void {
  const url = new URL(req.url!, 'http://upstream');
  const path = url.pathname.startsWith(BASE_PATH) ? url.pathname.slice(BASE_PATH.length) : url.pathname;
  res.setHeader('x-request-id', 'req_upstream_1');
  if (req.method === 'POST' && (path === '/files' || path === '/audio/transcriptions')) {
    res.setHeader('content-type', 'application/json');
    const body = path === '/files' ? { id: 'file-1', object: 'file', bytes: r.bytes, filename: 'f', purpose: 'batch', created_at: 0, status: 'processed' } : { text: 'hello' };
    res.end(JSON.stringify(body));
    return;
  }
  if (path === '/files/file-1/content') {
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('content-length', String(DOWNLOAD.length));
    res.end(DOWNLOAD);
    return;
  }
  if (path === '/audio/speech') {
    res.setHeader('content-type', 'audio/mpeg'); // chunked, as OpenAI streams audio
    for (let at = 0; at < SPEECH.length; at += 7_000) res.write(SPEECH.subarray(at, at + 7_000));
    res.end();
    return;
  }
  if (path === '/drip') {
    res.setHeader('content-type', 'application/octet-stream');
    const drip = () => {
      if (res.destroyed) return;
      res.write(Buffer.alloc(16 * 1024, 1));
      setTimeout(drip, 5);
    };
    drip();
    return;
  }
  if (path === '/cut') {
    // Half the body, then the connection is gone: with a length, or chunked.
    if (url.searchParams.get('framing') === 'length') res.setHeader('content-length', '100000');
    res.write(Buffer.alloc(50_000, 2), () => res.socket?.destroy());
    return;
  }
  const status = /^\/status\/(\d{3})$/.exec(path);
  if (status) {
    res.statusCode = Number(status[1]);
    res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
    if (res.statusCode === 307) res.setHeader('location', 'http://elsewhere.example/v1/moved');
    if (res.statusCode === 206) res.setHeader('content-range', 'bytes 0-3/10');
    res.end(res.statusCode === 204 || res.statusCode === 304 ? undefined : `body of ${res.statusCode}`);
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ method: req.method, url: req.url, size: r.bytes }));
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const r: Received = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0), bytes: 0, complete: false, closedEarly: false };
    received.push(r);
    const chunks: Buffer[] = [];
    res.once('close', () => {
      if (!res.writableFinished) r.closedEarly = true;
    });
    req.on('data', (c: Buffer) => {
      chunks.push(c);
      r.bytes += c.byteLength;
    });
    req.on('end', () => {
      r.body = Buffer.concat(chunks);
      r.complete = true;
      answer(req, res, r);
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}${BASE_PATH}`;
  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: up
    base_url: ${upstreamUrl}
    api_key: ${API_KEY}
    retry: {attempts: 0}
    breaker: {failures: 0}
    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 30000}
routing: {default: [up]}
`);
});

afterAll(async () => {
  await gw?.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const client = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client-key', organization: 'org-review', project: 'proj-review', maxRetries: 0 });
const last = () => received.at(-1)!;

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 10));
}

async function requestsOf(labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return new PromText(text).sum('promptgate_requests_total', labels) ?? 0;
}

/**
 * A raw HTTP/1.1 exchange on a fresh connection (the request says `connection: close`): the
 * bytes the gateway answered. The socket is not half-closed: Node's server drops a request
 * whose client half-closes (`httpAllowHalfOpen: false`).
 */
function raw(head: string, body: Buffer | string = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(gw.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(head);
    socket.write(body);
  });
}

/** The file part of a multipart/form-data body, by its boundary (RFC 7578). */
function filePart(body: Buffer, contentType: string): Buffer {
  const boundary = /boundary=(.+)$/.exec(contentType)![1];
  const start = body.indexOf('filename=');
  const from = body.indexOf('\r\n\r\n', start) + 4;
  const to = body.indexOf(`\r\n--${boundary}`, from);
  return body.subarray(from, to);
}

describe('regressions', () => {
  it('a DELETE with a body reaches the upstream with its body (it was dropped)', async () => {
    const res = (await client().delete('/things/t-1', { body: { ids: ['a', 'b'] } })) as { method: string; size: number };
    expect(res.method).toBe('DELETE');
    expect(last().body.toString()).toBe('{"ids":["a","b"]}');
    expect(last().headers['content-length']).toBe('17');
    // Without a body, none is sent (no content-length: 0 on a bodiless DELETE).
    await client().files.delete('file-1');
    expect(last().method).toBe('DELETE');
    expect(last().headers['content-length']).toBeUndefined();
    expect(last().bytes).toBe(0);
  });

  it('a GET or OPTIONS with a body keeps it too', async () => {
    for (const method of ['GET', 'OPTIONS']) {
      const res = await request(`${gw.url}/v1/things?x=1`, { method: method as 'GET', body: 'payload', headers: { 'content-type': 'text/plain' } });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
      expect(last().method).toBe(method);
      expect(last().body.toString()).toBe('payload');
    }
  });

  it('a download keeps the upstream content-length (it went out chunked, without it)', async () => {
    const res = await client().files.content('file-1');
    expect(res.headers.get('content-length')).toBe(String(DOWNLOAD.length));
    expect(res.headers.get('transfer-encoding')).toBeNull();
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(sha(DOWNLOAD));
  });

  it('a dot-segment path cannot climb out of the base_url path (it went upstream as sent, /../ and %2e%2e included)', async () => {
    for (const target of ['/v1/../../v1/models/x', '/v1/%2e%2e/%2E%2E/v1/models/x', '/v1/files/../models/x']) {
      const res = await raw(`GET ${target}?q=%27a HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n`);
      expect(res.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
      expect(last().url).toBe(`${BASE_PATH}/models/x?q=%27a`);
    }
    // Paths without dot segments go as the client wrote them.
    await raw(`GET /v1/files/a%2Fb;c/caf%C3%A9?a=1&a=2&b=%E2%82%AC HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n`);
    expect(last().url).toBe(`${BASE_PATH}/files/a%2Fb;c/caf%C3%A9?a=1&a=2&b=%E2%82%AC`);
  });

  it('a WebSocket upgrade to /v1/realtime gets 501 not_implemented (it went upstream as a plain GET)', async () => {
    const before = received.length;
    const res = await raw(
      'GET /v1/realtime?model=gpt-4o-realtime-preview HTTP/1.1\r\nhost: gw\r\nconnection: Upgrade\r\nupgrade: websocket\r\n' +
        'sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nauthorization: Bearer sk-client-key\r\n\r\n',
    );
    expect(res.split('\r\n')[0]).toBe('HTTP/1.1 501 Not Implemented');
    expect(res).toMatch(/\r\nx-promptgate-request-id: \S+\r\n/i);
    const body = JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4)) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'not_implemented' });
    expect(body.error.message).toMatch(/WebSocket/);
    expect(received.length).toBe(before);

    // A real WebSocket client fails the handshake and closes: no hang.
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/realtime?model=gpt-4o-realtime-preview`);
    const closed = await new Promise<number>((resolve) => ws.addEventListener('close', (e) => resolve(e.code)));
    expect(closed).toBe(1006);
    expect(received.length).toBe(before);
  });

  it('an h2c upgrade offer is ignored and the request passes through (RFC 9110 §7.8)', async () => {
    const res = await raw('GET /v1/models/m HTTP/1.1\r\nhost: gw\r\nconnection: Upgrade, HTTP2-Settings, close\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n');
    expect(res.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(last().headers.upgrade).toBeUndefined();
    expect(last().headers['http2-settings']).toBeUndefined();
  });

  it('an upstream that cuts a download: the client sees the cut, nothing printed to stderr (node-server printed the upstream error), accounted upstream_body_error', async () => {
    const printed = vi.spyOn(console, 'error');
    const info = vi.spyOn(console, 'info');
    try {
      for (const framing of ['length', 'chunked']) {
        const labels = { route: '/v1/*', error_type: 'upstream_body_error' };
        const cuts = await requestsOf(labels);
        const res = await request(`${gw.url}/v1/cut?framing=${framing}`);
        expect(res.statusCode).toBe(200);
        await expect(res.body.arrayBuffer()).rejects.toThrow();
        await until(async () => (await requestsOf(labels)) === cuts + 1);
      }
      expect(printed).not.toHaveBeenCalled();
      expect(info).not.toHaveBeenCalled();
    } finally {
      printed.mockRestore();
      info.mockRestore();
    }
  });
});

describe('uploads and downloads', () => {
  it('files.create and audio.transcriptions.create: multipart bytes arrive identical, boundary intact, key replaced, openai-* passed', async () => {
    const bytes = Buffer.from(Array.from({ length: 5_000 }, (_, i) => (i * 31) & 0xff));
    const file = await client().files.create({ file: await toFile(bytes, 'batch.jsonl'), purpose: 'batch' });
    const seen = last();
    expect(file.bytes).toBe(seen.bytes);
    expect(seen.headers['content-length']).toBe(String(seen.bytes));
    expect(seen.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(sha(filePart(seen.body, seen.headers['content-type']!))).toBe(sha(bytes));
    expect(seen.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(seen.headers['openai-organization']).toBe('org-review');
    expect(seen.headers['openai-project']).toBe('proj-review');

    const text = await client().audio.transcriptions.create({ file: await toFile(bytes, 'a.wav', { type: 'audio/wav' }), model: 'whisper-1' });
    expect(text.text).toBe('hello');
    expect(sha(filePart(last().body, last().headers['content-type']!))).toBe(sha(bytes));
  });

  it('a 12 MB files.create (over max_body_bytes) is streamed through byte for byte', async () => {
    const big = Buffer.alloc(12 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 13 + (i >> 12)) & 0xff;
    const file = await client().files.create({ file: await toFile(big, 'big.jsonl'), purpose: 'batch' });
    expect(file.bytes).toBe(last().bytes);
    expect(last().headers['content-length']).toBe(String(last().bytes));
    expect(sha(filePart(last().body, last().headers['content-type']!))).toBe(sha(big));
  });

  it('an upload over max_body_bytes reaches the upstream before the client has sent all of it (no whole-body buffering)', async () => {
    const total = 10 * 1024 * 1024;
    const before = received.length;
    const socket = connect(gw.port, '127.0.0.1');
    const answered = new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    });
    socket.write(`POST /v1/uploads/u-1/parts HTTP/1.1\r\nhost: gw\r\ncontent-type: application/octet-stream\r\ncontent-length: ${total}\r\nconnection: close\r\n\r\n`);
    const part = Buffer.alloc(total / 2, 3);
    socket.write(part);
    // Half the body is out; the upstream sees more than max_body_bytes (4 MiB) of it already.
    await until(() => received.length > before && last().bytes > 4 * 1024 * 1024);
    expect(last().complete).toBe(false);
    socket.write(part);
    const res = await answered;
    expect(res.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(last().bytes).toBe(total);
    expect(last().headers['content-length']).toBe(String(total));
  });

  it('audio.speech.create: a chunked audio body comes back byte for byte', async () => {
    const res = await client().audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hi' });
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(sha(SPEECH));
  });
});

describe('methods, statuses and headers', () => {
  it('statuses pass as they are; a 307 is not followed and keeps its location; set-cookie stays two fields', async () => {
    for (const status of [201, 202, 204, 206, 304, 307, 400, 404, 409, 500, 503]) {
      const res = await raw(`GET /v1/status/${status} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n`);
      expect(res.split('\r\n')[0]).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      expect(res.match(/\r\nset-cookie: /gi)).toHaveLength(2);
      const body = res.slice(res.indexOf('\r\n\r\n') + 4);
      expect(body).toBe(status === 204 || status === 304 ? '' : `body of ${status}`);
      if (status === 307) expect(res).toContain('\r\nlocation: http://elsewhere.example/v1/moved\r\n');
      if (status === 206) expect(res).toContain('\r\ncontent-range: bytes 0-3/10\r\n');
      expect(last().url).toBe(`${BASE_PATH}/status/${status}`); // one request: the redirect was not followed
    }
  });

  it('HEAD relays the headers and the length, no body; PATCH and PUT carry theirs', async () => {
    const head = await raw('HEAD /v1/files/file-1/content HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n');
    expect(head).toContain(`\r\ncontent-length: ${DOWNLOAD.length}\r\n`);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
    expect(last().method).toBe('HEAD');
    for (const method of ['PATCH', 'PUT']) {
      const res = await client().request({ method: method.toLowerCase() as 'patch', path: '/things/t-1', body: { n: 1 } });
      expect(res).toMatchObject({ method, size: 7 });
    }
  });

  it('hop-by-hop fields (and those Connection names) are dropped both ways; x-request-id is echoed', async () => {
    const res = await raw(
      'GET /v1/things HTTP/1.1\r\nhost: gw\r\nconnection: close, x-hop\r\nx-hop: secret\r\nkeep-alive: timeout=5\r\nte: trailers\r\n' +
        `proxy-authorization: Basic abc\r\nx-request-id: client-req-1\r\nx-long: ${'v'.repeat(8000)}\r\n\r\n`,
    );
    expect(res.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const seen = last().headers;
    for (const name of ['x-hop', 'keep-alive', 'te', 'proxy-authorization']) expect(seen[name]).toBeUndefined();
    expect(seen['x-request-id']).toBe('client-req-1');
    expect(seen['x-long']).toHaveLength(8000);
    expect(res).toContain('\r\nx-request-id: req_upstream_1\r\n');
  });
});

describe('client aborts', () => {
  it('a client that leaves mid-upload: the upstream sees the close, accounted as client_abort', async () => {
    const labels = { route: '/v1/files', error_type: 'client_abort' };
    const aborts = await requestsOf(labels);
    const before = received.length;
    const socket: Socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('POST /v1/files HTTP/1.1\r\nhost: gw\r\ncontent-type: application/octet-stream\r\ncontent-length: 20000000\r\n\r\n');
    socket.write(Buffer.alloc(6 * 1024 * 1024, 5));
    await until(() => received.length > before && last().bytes > 4 * 1024 * 1024);
    const upload = last();
    socket.destroy();
    await until(() => upload.closedEarly);
    expect(upload.complete).toBe(false);
    await until(async () => (await requestsOf(labels)) === aborts + 1);
    expect(gw.exchanges.size).toBe(0);
  });

  it('a client that leaves mid-download: the upstream request is aborted, accounted as client_abort', async () => {
    const labels = { route: '/v1/*', error_type: 'client_abort' };
    const aborts = await requestsOf(labels);
    const socket: Socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => undefined);
    let got = 0;
    socket.on('data', (d: Buffer) => (got += d.byteLength));
    socket.write('GET /v1/drip HTTP/1.1\r\nhost: gw\r\n\r\n');
    await until(() => got > 64 * 1024);
    const download = last();
    socket.destroy();
    await until(() => download.closedEarly);
    await until(async () => (await requestsOf(labels)) === aborts + 1);
    expect(gw.exchanges.size).toBe(0);
  });
});
