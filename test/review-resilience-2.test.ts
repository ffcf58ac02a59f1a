/**
 * Regression tests from a second review of upstream resilience (timeouts, retry-after,
 * fallback, breaker): the gateway on a real socket in front of node:http upstreams
 * on 127.0.0.1:0, steered per request by the test. Timeouts are hang guards only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { scrapeMetricsText } from './helpers/metrics.js';
import { retryAfterMs } from '../src/proxy/retry.js';

interface Upstream {
  url: string;
  /** Requests received (their paths), in order. */
  seen: string[];
}

const servers: Server[] = [];
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.close();
  gw = undefined;
  await closeServers(servers);
});

async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const up: Upstream = { url: '', seen: [] };
  const server = createServer((req, res) => {
    up.seen.push(req.url ?? '');
    req.resume();
    req.on('end', () => handler(req, res));
  });
  servers.push(server);
  up.url = `${await listenOnLoopback(server)}/v1`;
  return up;
}

/** A port nothing listens on (a connection there is refused). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  const origin = await listenOnLoopback(s);
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `${origin}/v1`;
}

function config(upstreams: { name: string; url: string; settings: string }[], routing: string): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
${upstreams.map((u) => `  - name: ${u.name}\n    base_url: ${u.url}\n    api_key: sk-test\n${u.settings.replace(/^/gm, '    ')}`).join('\n')}
routing: ${routing}
`;
}

async function chat() {
  const res = await request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: () => JSON.parse(text) };
}

const breakerOf = (name: string) => gw!.holder.current.breakers.get(name)!;

describe('breaker', () => {
  it("counts a fallback that hangs until total_ms while the first upstream's breaker is open (was: never counted)", async () => {
    const b = await upstream(() => undefined);
    gw = await startTestGateway(
      config(
        [
          { name: 'a', url: await deadUrl(), settings: 'retry: {attempts: 0}\nbreaker: {failures: 1, cooldown_ms: 60000}\ntimeout: {first_byte_ms: 5000, total_ms: 300}' },
          { name: 'b', url: b.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 1, cooldown_ms: 60000}\ntimeout: {first_byte_ms: 5000}' },
        ],
        '{default: [a, b]}',
      ),
    );
    // a is refused (its breaker opens), b gets what is left of the deadline: not blamed.
    expect((await chat()).status).toBe(504);
    expect(breakerOf('a').state).toBe('open');
    expect(breakerOf('b').state).toBe('closed');
    // a is skipped at once: b has the whole deadline and hangs through it.
    expect((await chat()).status).toBe(504);
    expect(breakerOf('b').state).toBe('open');
    const r = await chat();
    expect(r.status).toBe(503);
    expect(r.json().error.code).toBe('circuit_open');
    expect(b.seen).toHaveLength(2);
  });
});

describe('retry-after', () => {
  it('reads the asctime HTTP-date as GMT, whatever the local time zone (was: local time, hours off)', () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      const now = Date.parse('1994-11-06T08:49:30Z');
      expect(retryAfterMs({ 'retry-after': 'Sun Nov  6 08:49:37 1994' }, now)).toBe(7000);
      expect(retryAfterMs({ 'retry-after': 'Sun, 06 Nov 1994 08:49:37 GMT' }, now)).toBe(7000);
      expect(retryAfterMs({ 'retry-after': 'Sunday, 06-Nov-94 08:49:37 GMT' }, now)).toBe(7000);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});

describe('fallback that cannot answer', () => {
  it("gives the client the upstream's own answer that was passed over, not a gateway 503 (was: 503 upstream_unavailable, retry-after: 1)", async () => {
    const body = JSON.stringify({ error: { message: 'Rate limit reached for gpt-4o-mini.', type: 'requests', param: null, code: 'rate_limit_exceeded' } });
    const a = await upstream((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '3600', 'x-request-id': 'req_a_1' });
      res.end(body);
    });
    gw = await startTestGateway(
      config(
        [
          { name: 'a', url: a.url, settings: 'retry: {attempts: 1}\nbreaker: {failures: 0}' },
          { name: 'b', url: await deadUrl(), settings: 'retry: {attempts: 1, backoff_ms: 1}\nbreaker: {failures: 0}' },
        ],
        '{default: [a, b]}',
      ),
    );
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    // 3600 s is over max_retry_after_ms: no retry on a, b refuses both attempts.
    expect(res.statusCode).toBe(429);
    expect(res.headers['retry-after']).toBe('3600');
    expect(res.headers['x-request-id']).toBe('req_a_1');
    expect(await res.body.text()).toBe(body);
    expect(a.seen).toHaveLength(1);
    // Accounted to the upstream that answered; b's attempts still count as b's.
    const metrics = await scrapeMetricsText(gw.url);
    expect(metrics).toMatch(/promptgate_requests_total\{[^}]*error_type="upstream_429"[^}]*upstream="a"[^}]*\} 1/);
    expect(metrics).toMatch(/promptgate_upstream_attempts_total\{upstream="a"[^}]*\} 1/);
    expect(metrics).toMatch(/promptgate_upstream_attempts_total\{upstream="b"[^}]*\} 2/);
  });
});
