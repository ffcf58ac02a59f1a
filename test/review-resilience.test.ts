/**
 * Regression tests from a review of upstream resilience (retry, fallback, breaker): the
 * gateway on a real socket in front of node:http upstreams on 127.0.0.1:0, each steered per
 * request by the test that starts it. Assertions are on counts, order and answers; timeouts
 * are hang guards only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import { request } from 'undici';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { scrapeMetricsText } from './helpers/metrics.js';
import { loadConfigFile, parseConfig } from '../src/config/load.js';
import { createApp } from '../src/app.js';
import { AssignmentCounters } from '../src/experiments/counters.js';
import { RuntimeHolder } from '../src/runtime.js';
import type { RequestRecord } from '../src/telemetry/types.js';
import { retryAfterMs } from '../src/proxy/retry.js';

interface Upstream {
  url: string;
  /** `x-k` of each request received, in order. */
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
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(String(req.headers['x-k'] ?? ''));
    req.resume();
    req.on('end', () => handler(req, res));
  });
  servers.push(server);
  const origin = await listenOnLoopback(server);
  return { url: `${origin}/v1`, seen };
}

function ok(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    }),
  );
}

function fail(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ error: { message: `upstream ${status}`, type: 'server_error', param: null, code: null } }));
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

async function chat(headers: Record<string, string> = {}, model = 'gpt-4o-mini', signal?: AbortSignal) {
  const res = await request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    signal,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const breakerOf = (name: string) => gw!.holder.current.breakers.get(name)!;

describe('retry-after parsing', () => {
  it('ignores a negative, garbage or empty retry-after(-ms) rather than retrying at once (was: Date.parse read "-5" as 2001, "" as 0 ms)', () => {
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(retryAfterMs({ 'retry-after': '-5' }, now)).toBeUndefined();
    expect(retryAfterMs({ 'retry-after': 'soon 2' }, now)).toBeUndefined();
    expect(retryAfterMs({ 'retry-after': 'Mon 3' }, now)).toBeUndefined();
    expect(retryAfterMs({ 'retry-after-ms': '' }, now)).toBeUndefined();
    expect(retryAfterMs({ 'retry-after-ms': '0x10' }, now)).toBeUndefined();
    expect(retryAfterMs({ 'retry-after-ms': '', 'retry-after': '2' }, now)).toBe(2000);
    expect(retryAfterMs({ 'retry-after-ms': '-1', 'retry-after': '3' }, now)).toBe(3000);
    // The three HTTP-date forms of RFC 9110 §5.6.7, and plain values, still read.
    expect(retryAfterMs({ 'retry-after': 'Mon, 23 Nov 2026 10:00:03 GMT' }, now)).toBe(3000);
    expect(retryAfterMs({ 'retry-after': 'Monday, 23-Nov-26 10:00:04 GMT' }, now)).toBe(4000);
    expect(retryAfterMs({ 'retry-after': 'Mon Nov 23 10:00:05 2026' }, now)).toBe(5000);
    expect(retryAfterMs({ 'retry-after': 'Mon, 23 Nov 2026 09:00:00 GMT' }, now)).toBe(0);
    expect(retryAfterMs({ 'retry-after': '0' }, now)).toBe(0);
    expect(retryAfterMs({ 'retry-after-ms': '250' }, now)).toBe(250);
  });

  it.each([
    ['a negative retry-after', { 'retry-after': '-5' }],
    ['a garbage retry-after', { 'retry-after': 'soon 2' }],
    ['an empty retry-after-ms over retry-after: 60', { 'retry-after-ms': '', 'retry-after': '60' }],
  ])('does not retry at once on %s (was: a wait of 0)', async (_name, hint) => {
    const up = await upstream((_req, res) => fail(res, 429, hint));
    // The backoff (or the 60 s asked for) ends after total_ms: no retry, the 429 goes to the client.
    gw = await startTestGateway(
      config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 2, backoff_ms: 60000, max_backoff_ms: 60000, max_retry_after_ms: 120000}\ntimeout: {total_ms: 5000}\nbreaker: {failures: 0}' }], '{default: [a]}'),
    );
    const res = await chat();
    expect(res.status).toBe(429);
    expect(up.seen).toHaveLength(1);
  });
});

describe('circuit breaker', () => {
  it('lets exactly one probe through when 50 requests arrive while half-open', async () => {
    let healthy = false;
    let probes = 0;
    let answerProbe: (() => void) | undefined;
    const up = await upstream((_req, res) => {
      if (!healthy) return fail(res, 500);
      probes++;
      answerProbe = () => ok(res); // held until every other request has been answered
    });
    gw = await startTestGateway(config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 1, cooldown_ms: 200}' }], '{default: [a]}'));
    expect((await chat()).status).toBe(500);
    healthy = true;
    await until(() => breakerOf('a').retryAfterMs() === 0, 'the cool-down');
    let answered = 0;
    const pending = Array.from({ length: 50 }, () => chat().then((r) => (answered++, r)));
    await until(() => answered === 49 && answerProbe !== undefined, 'the 49 other answers');
    answerProbe!();
    const answers = await Promise.all(pending);
    expect(probes).toBe(1);
    expect(answers.filter((r) => r.status === 200)).toHaveLength(1);
    const refused = answers.filter((r) => r.status === 503);
    expect(refused).toHaveLength(49);
    expect(refused[0].json().error.code).toBe('circuit_open');
    expect(refused[0].headers['retry-after']).toBe('1');
  });

  it('keeps one probe at a time when a request let through before the breaker opened ends in 429 during the probe (was: its release freed a second probe)', async () => {
    let answerStale: (() => void) | undefined;
    let answerProbe: (() => void) | undefined;
    const up = await upstream((req, res) => {
      const k = req.headers['x-k'];
      if (k === 'stale') answerStale = () => fail(res, 429);
      else if (k === 'fail') fail(res, 500);
      else if (k === 'probe') answerProbe = () => ok(res);
      else ok(res);
    });
    gw = await startTestGateway(config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 2, cooldown_ms: 100}' }], '{default: [a]}'));
    const stale = chat({ 'x-k': 'stale' });
    await until(() => answerStale !== undefined, 'the stale request upstream');
    expect((await chat({ 'x-k': 'fail' })).status).toBe(500);
    expect((await chat({ 'x-k': 'fail' })).status).toBe(500);
    expect(breakerOf('a').state).toBe('open');
    await until(() => breakerOf('a').retryAfterMs() === 0, 'the cool-down');
    const probe = chat({ 'x-k': 'probe' });
    await until(() => answerProbe !== undefined, 'the probe upstream');
    answerStale!();
    expect((await stale).status).toBe(429);
    const others = await Promise.all(Array.from({ length: 10 }, () => chat({ 'x-k': 'other' })));
    expect(others.map((r) => r.status)).toEqual(Array(10).fill(503));
    expect(up.seen.filter((k) => k === 'other')).toHaveLength(0);
    answerProbe!();
    expect((await probe).status).toBe(200);
    expect(breakerOf('a').state).toBe('closed');
  });

  it("passes the first upstream's answer through when the fallback is half-open with its probe out (was: 503 upstream_unavailable)", async () => {
    const a = await upstream((_req, res) => fail(res, 500, { 'x-from': 'a' }));
    let answerProbe: (() => void) | undefined;
    const b = await upstream((req, res) => {
      if (req.headers['x-k'] === 'fail') return fail(res, 500);
      answerProbe = () => ok(res);
    });
    gw = await startTestGateway(
      config(
        [
          { name: 'a', url: a.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 0}' },
          { name: 'b', url: b.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 1, cooldown_ms: 100}' },
        ],
        '{default: [a, b], models: {only-b: [b]}}',
      ),
    );
    expect((await chat({ 'x-k': 'fail' }, 'only-b')).status).toBe(500);
    await until(() => breakerOf('b').retryAfterMs() === 0, 'the cool-down');
    const probe = chat({ 'x-k': 'probe' }, 'only-b');
    await until(() => answerProbe !== undefined, 'the probe upstream');
    const res = await chat();
    expect(res.status).toBe(500);
    expect(res.headers['x-from']).toBe('a');
    expect(res.json().error.message).toBe('upstream 500');
    answerProbe!();
    expect((await probe).status).toBe(200);
  });

  it('retries again once a reload turns an open breaker off (was: left open, every retry refused)', async () => {
    let failures = 0;
    const up = await upstream((_req, res) => (failures-- > 0 ? fail(res, 500) : ok(res)));
    const yaml = (breaker: string) => config([{ name: 'a', url: up.url, settings: `retry: {attempts: 1, backoff_ms: 10, max_backoff_ms: 10}\nbreaker: ${breaker}` }], '{default: [a]}');
    gw = await startTestGateway(yaml('{failures: 1, cooldown_ms: 60000}'));
    failures = 1;
    expect((await chat()).status).toBe(500); // opens: no retry
    expect(breakerOf('a').state).toBe('open');
    writeFileSync(gw.configFile, yaml('{failures: 0}'));
    gw.holder.apply(loadConfigFile(gw.configFile));
    failures = 1;
    const res = await chat();
    expect(res.status).toBe(200);
    expect(up.seen).toHaveLength(3);
    expect(breakerOf('a').state).toBe('closed');
  });

  it('opens when attempts hang until total_ms, with first_byte_ms longer (was: never counted, every request waited total_ms for a 504)', async () => {
    const up = await upstream(() => undefined); // accepts, never answers
    gw = await startTestGateway(
      config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 0}\ntimeout: {first_byte_ms: 60000, total_ms: 1000}\nbreaker: {failures: 1, cooldown_ms: 60000}' }], '{default: [a]}'),
    );
    const first = await chat();
    expect(first.status).toBe(504);
    expect(first.json().error.code).toBe('upstream_timeout');
    const second = await chat();
    expect(second.status).toBe(503);
    expect(second.json().error.code).toBe('circuit_open');
    expect(up.seen).toHaveLength(1);
  });

  it('falls back without sleeping a backoff once a connection failure opened the breaker (was: a backoff for a retry it would refuse)', async () => {
    const b = await upstream(() => undefined); // the test only needs to see the request arrive
    gw = await startTestGateway(
      config(
        [
          { name: 'a', url: 'http://127.0.0.1:1/v1', settings: 'retry: {attempts: 2, backoff_ms: 60000, max_backoff_ms: 60000}\ntimeout: {total_ms: 200000}\nbreaker: {failures: 1, cooldown_ms: 60000}' },
          { name: 'b', url: b.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 0}' },
        ],
        '{default: [a, b]}',
      ),
    );
    const left = new AbortController();
    const pending = chat({}, 'gpt-4o-mini', left.signal).catch(() => undefined);
    await until(() => b.seen.length === 1, 'the fallback to be tried'); // the buggy path sleeps 30-60 s first
    left.abort();
    await pending;
    expect(breakerOf('a').state).toBe('open');
  });
});

describe('client gone', () => {
  it('starts no further attempt when the client leaves during the backoff', async () => {
    const up = await upstream((_req, res) => fail(res, 503, { 'retry-after-ms': '60000' }));
    gw = await startTestGateway(
      config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 3, max_retry_after_ms: 120000}\ntimeout: {total_ms: 200000}\nbreaker: {failures: 0}' }], '{default: [a]}'),
    );
    const left = new AbortController();
    const pending = chat({}, 'gpt-4o-mini', left.signal).catch((err: Error) => err.name);
    await until(() => up.seen.length === 1, 'the first attempt');
    left.abort();
    expect(await pending).toBe('AbortError');
    await until(() => gw!.exchanges.size === 0, 'the exchange to end (the backoff sleep must end with the client)');
    expect(up.seen).toHaveLength(1);
  });

  it('counts no attempt on the fallback when the client left while the first answer was discarded (was: an attempt on an aborted signal)', async () => {
    // a: a 429 whose retry-after is too long and whose body never ends, so the gateway is
    // still discarding it when the client leaves.
    const a = await upstream((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'content-length': '1000', 'retry-after': '600' });
      res.write('{"error":');
    });
    const b = await upstream((_req, res) => ok(res));
    gw = await startTestGateway(
      config(
        [
          { name: 'a', url: a.url, settings: 'retry: {attempts: 0}\ntimeout: {idle_ms: 60000}\nbreaker: {failures: 0}' },
          { name: 'b', url: b.url, settings: 'retry: {attempts: 0}\nbreaker: {failures: 0}' },
        ],
        '{default: [a, b]}',
      ),
    );
    const left = new AbortController();
    const pending = chat({}, 'gpt-4o-mini', left.signal).catch(() => undefined);
    await until(() => a.seen.length === 1, 'the first attempt');
    await new Promise((r) => setTimeout(r, 100)); // let the gateway start discarding the body
    left.abort();
    await pending;
    await until(() => gw!.exchanges.size === 0, 'the exchange to end');
    const metrics = await scrapeMetricsText(gw.url);
    const attempts = metrics.split('\n').filter((l) => l.startsWith('promptgate_upstream_attempts_total{'));
    expect(attempts.some((l) => l.includes('upstream="a"'))).toBe(true);
    expect(attempts.filter((l) => l.includes('upstream="b"'))).toEqual([]);
    expect(b.seen).toHaveLength(0);
  });
});

describe('a non-stream answer cut off mid-body', () => {
  /** Headers and half the body, then the connection is reset. */
  function cut(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' });
    res.write('{"id":"chatcmpl-1","object":"chat.completion",');
    setImmediate(() => res.socket?.destroy());
  }

  // Regression: the body was read after forwarding had returned, so a reset mid-body was a
  // 502 (and the breaker counted the upstream healthy) although nothing had reached the
  // client and a retry was safe.
  it('is retried, and the client gets the whole answer of the next attempt', async () => {
    let calls = 0;
    const up = await upstream((_req, res) => (++calls === 1 ? cut(res) : ok(res)));
    gw = await startTestGateway(config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 2, backoff_ms: 1, max_backoff_ms: 1}\nbreaker: {failures: 5}' }], '{default: [a]}'));
    const res = await chat();
    expect(res.status).toBe(200);
    expect(res.json().choices[0].message.content).toBe('hi');
    expect(up.seen).toHaveLength(2);
    expect(breakerOf('a').state).toBe('closed');
    const metrics = await scrapeMetricsText(gw.url);
    expect(metrics).toMatch(/^promptgate_upstream_attempts_total\{[^}]*upstream="a"[^}]*\} 2$/m);
  });

  it('counts against the breaker and ends in 502 upstream_error when every attempt is cut', async () => {
    const up = await upstream((_req, res) => cut(res));
    gw = await startTestGateway(config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 1, backoff_ms: 1, max_backoff_ms: 1}\nbreaker: {failures: 2, cooldown_ms: 60000}' }], '{default: [a]}'));
    const res = await chat();
    expect(res.status).toBe(502);
    expect(res.json().error).toMatchObject({ code: 'upstream_error', type: 'server_error' });
    expect(up.seen).toHaveLength(2);
    expect(breakerOf('a').state).toBe('open');
  });

  it('leaves a stream alone: a stream cut after its headers is not retried', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n');
      setImmediate(() => res.socket?.destroy());
    });
    gw = await startTestGateway(config([{ name: 'a', url: up.url, settings: 'retry: {attempts: 2, backoff_ms: 1, max_backoff_ms: 1}' }], '{default: [a]}'));
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const text = await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(text).toContain('"code":"upstream_error"');
    expect(up.seen).toHaveLength(1);
  });
});

describe('total timeout and the breaker', () => {
  // Regression: a total timeout counted as a failure of whichever upstream was being waited
  // on, so a healthy fallback that got only the time the primary left (here ~1 s) was
  // blamed for the primary's hang, and enough of these opened it too.
  it('does not blame a fallback that got only what was left of the deadline', async () => {
    const hang = () => undefined; // never answers
    const a = await upstream(hang);
    const b = await upstream(hang);
    gw = await startTestGateway(
      config(
        [
          { name: 'a', url: a.url, settings: 'retry: {attempts: 0}\ntimeout: {first_byte_ms: 1000, total_ms: 2500}\nbreaker: {failures: 1, cooldown_ms: 60000}' },
          { name: 'b', url: b.url, settings: 'retry: {attempts: 0}\ntimeout: {first_byte_ms: 60000}\nbreaker: {failures: 1, cooldown_ms: 60000}' },
        ],
        '{default: [a, b]}',
      ),
    );
    const res = await chat();
    expect(res.status).toBe(504);
    expect(a.seen).toHaveLength(1);
    expect(b.seen).toHaveLength(1);
    expect(breakerOf('a').state).toBe('open'); // its own first-byte timeout
    expect(breakerOf('b').state).toBe('closed');
  }, 20_000);
});

describe('time to first byte of a non-stream answer', () => {
  // Regression: once the body was read inside the attempt (to retry a cut one), ttfb_ms was
  // taken after the whole body: the log's time to first byte became the full latency.
  it('is when the headers came, not when the body was read', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      const body = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
      setTimeout(() => res.end(body), 400);
    });
    const records: RequestRecord[] = [];
    const silent = { debug() {}, info() {}, warn() {}, error() {} };
    const runtime = parseConfig(`upstreams: [{name: a, base_url: "${up.url}"}]\nrouting: {default: [a]}\ntemplates: {dir: none}\n`, { file: '/tmp/ttfb/g.yaml', env: {} });
    const app = createApp(new RuntimeHolder(runtime), { lifecycle: { draining: false }, logger: silent, counters: new AssignmentCounters(), onRequestDone: (r) => records.push(r) });
    const res = await app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
    expect(res.status).toBe(200);
    await res.text();
    const [r] = records;
    expect(r.ttfbMs).toBeDefined();
    // The 400 ms between headers and body is in the latency, not in the time to first byte.
    expect(r.latencyMs - r.ttfbMs!).toBeGreaterThan(300);
  });
});
