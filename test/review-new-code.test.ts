/**
 * Regressions found reviewing the pass-through usage accounting, SSE framing and config
 * masking: clients and upstreams that leave mid-way on the metered routes, on real sockets.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { rawPost, received, until } from './helpers/raw-socket.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { maskSubstituted } from '../src/config/env.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface TestUpstream {
  url: string;
  requests: number;
  /** Responses the gateway closed before they ended. */
  closed: number;
  close(): Promise<void>;
}

async function startUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestUpstream> {
  const u: TestUpstream = { url: '', requests: 0, closed: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    u.requests++;
    res.on('close', () => {
      if (!res.writableFinished) u.closed++;
    });
    req.resume();
    req.on('end', () => handler(req, res));
  });
  u.url = `${await listenOnLoopback(server)}/v1`;
  u.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return u;
}

/** The promptgate_requests_total series lines (those with `label`). */
async function requestSeries(gw: TestGateway, label = ''): Promise<Array<{ line: string; count: number }>> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('promptgate_requests_total{') && l.includes(label))
    .map((line) => ({ line, count: Number(line.slice(line.lastIndexOf(' ') + 1)) }));
}
const finished = async (gw: TestGateway, label = '') => (await requestSeries(gw, label)).reduce((s, x) => s + x.count, 0);

let gw: TestGateway | undefined;
let upstream: TestUpstream | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await gw?.close();
  await upstream?.close();
  gw = undefined;
  upstream = undefined;
});

const RESPONSES_EVENT = `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"${'x'.repeat(200)}"}\n\n`;

describe('metered pass-through routes, clients and upstreams that leave', () => {
  it('a client that leaves a /v1/responses stream: upstream aborted, accounted once as client_abort', async () => {
    upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const tick = setInterval(() => res.write(RESPONSES_EVENT), 5);
      res.once('close', () => clearInterval(tick));
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const client = rawPost(gw.port, '/v1/responses', JSON.stringify({ model: 'gpt-4o-mini', stream: true, input: 'hi' }));
    sockets.push(client);
    const got = received(client);
    await until(() => got.bytes() > 10_000);
    client.destroy();
    await until(() => upstream!.closed === 1);
    await until(async () => (await finished(gw!)) === 1);
    await sleep(200);
    expect(await finished(gw, 'error_type="client_abort"')).toBe(1);
    expect(await finished(gw)).toBe(1);
  });

  it('a client that leaves while a /v1/embeddings answer is read for its cost header: upstream aborted, accounted once as client_abort', async () => {
    upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"object":"list","data":[{"object":"embedding","index":0,"embedding":"');
      const tick = setInterval(() => res.write('A'.repeat(1024)), 5);
      res.once('close', () => clearInterval(tick));
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const client = rawPost(gw.port, '/v1/embeddings', JSON.stringify({ model: 'text-embedding-3-small', input: 'hi' }));
    sockets.push(client);
    await until(() => upstream!.requests === 1);
    await sleep(200);
    client.destroy();
    await until(() => upstream!.closed === 1);
    await until(async () => (await finished(gw!)) === 1);
    await sleep(200);
    expect(await finished(gw, 'error_type="client_abort"')).toBe(1);
    expect(await finished(gw)).toBe(1);
  });


  // Regression: an upstream that failed while the gateway read the answer for its cost
  // header (nothing sent yet) got the client a 200 status line and a cut body, accounted as
  // 2xx; the chat route, which reads its answers the same way, answers 502 upstream_error.
  it('an upstream that fails while a /v1/embeddings answer is read for its cost header: 502 upstream_error', async () => {
    upstream = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAA');
      setTimeout(() => res.destroy(), 100);
    });
    gw = await startTestGateway(mockConfig(upstream.url));
    const res = await fetch(`${gw.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'text-embedding-3-small', input: 'hi' }) });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: { message: 'The upstream response was cut off or could not be decoded.', type: 'server_error', param: null, code: 'upstream_error' } });
    await until(async () => (await finished(gw!)) === 1);
    expect(await finished(gw, 'status_class="5xx"')).toBe(1);
  });
});

describe('config errors never show a substituted value', () => {
  const KEY = 'sk-proj-0123456789abcdef';
  const issuesOf = (text: string, env: Record<string, string>): string => {
    try {
      parseConfig(text, { file: 'gateway.config.yaml', env });
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return 'OK';
  };

  // Regression: YAML quotes an unexpected token with JSON.stringify, which doubles a
  // backslash (and escapes a tab or a quote): the quoted word was neither inside the value
  // nor holding it, so it was printed as is.
  it.each([
    ['a backslash', `"x"] ${KEY.slice(0, 10)}\\${KEY.slice(10)}`],
    ['a tab', `"x"] ${KEY.slice(0, 10)}\t${KEY.slice(10)}`],
  ])('a value YAML quotes with escapes (%s)', (_what, value) => {
    const message = issuesOf('x: ${KEY}\n', { KEY: value });
    expect(message).toContain('Unexpected scalar token in YAML stream');
    expect(message).not.toContain(KEY.slice(0, 10));
    expect(message).not.toContain(KEY.slice(10));
  });

  // Regression: a token that holds the end of the value and text after it (`KEY}` of
  // `{a: ${KEY}}`) was neither inside the value nor holding it whole.
  it('a token that holds part of the value and text after it', () => {
    const message = issuesOf('x: {a: ${KEY}}\n', { KEY: `a]] ${KEY}` });
    expect(message).toContain('Unexpected scalar token in YAML stream');
    expect(message).not.toContain(KEY.slice(0, 10));
  });

  it('masks the value however it is cut into words, and leaves other words alone', () => {
    expect(maskSubstituted('Unexpected scalar token in YAML stream: "sk-proj-01\\\\23456789"', ['sk-proj-01\\23456789'])).toBe('Unexpected scalar token in YAML stream: "***"');
    expect(maskSubstituted('Block scalar header includes extra characters: |ab cd"ef gh', ['|ab cd"ef gh'])).toBe('Block scalar header includes extra characters: ***');
    expect(maskSubstituted('Unresolved alias (the anchor must be set before the alias): *abcdefgh', ['*abcdefgh'])).toBe('Unresolved alias (the anchor must be set before the alias): ***');
    expect(maskSubstituted('Unexpected token: "3456789xyz"', ['0123456789'])).toBe('Unexpected token: "***"');
    expect(maskSubstituted('Unexpected token: "xyz0123"', ['0123456789'])).toBe('Unexpected token: "***"');
    expect(maskSubstituted('Implicit keys need to be on a single line', ['sk-proj-0123456789abcdef'])).toBe('Implicit keys need to be on a single line');
  });
});
