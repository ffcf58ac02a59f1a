/**
 * Review round 7: concurrency and races under load (breaker transitions under concurrent
 * failures, exchanges and accounting under bursts with aborts, reloads while requests are in
 * flight). Real sockets on 127.0.0.1:0, closed by each test; timeouts are hang guards only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../src/config/load.js';
import { CircuitBreaker } from '../src/proxy/breaker.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';

const servers: Server[] = [];
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.close();
  gw = undefined;
  await closeServers(servers);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

function completion(content: string): string {
  return JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  });
}

function streamEvents(words: string[]): string[] {
  const chunk = (choices: unknown[], usage: unknown = null) =>
    `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices, usage })}\n\n`;
  return [
    chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]),
    ...words.map((w) => chunk([{ index: 0, delta: { content: w }, finish_reason: null }])),
    chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]),
    chunk([], { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }),
    'data: [DONE]\n\n',
  ];
}

/**
 * An upstream steered per request by `x-plan` (ok, stream, 503, 429, reset, hold, slow-stream)
 * and, for `hold`, by the test: held answers wait until `release(status)`.
 */
async function plannedUpstream(fixedPlan?: string) {
  const held: Array<(status: number) => void> = [];
  const seen: Array<{ plan: string; auth: string | undefined }> = [];
  let open = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', async () => {
      const plan = fixedPlan ?? String(req.headers['x-plan'] ?? 'ok');
      seen.push({ plan, auth: req.headers.authorization });
      open++;
      res.on('close', () => open--);
      const error = (status: number) => {
        const body = JSON.stringify({ error: { message: `upstream ${status}`, type: 'server_error', param: null, code: null } });
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
        res.end(body);
      };
      if (plan === 'ok') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(completion('hi'));
      } else if (plan === '503' || plan === '429') {
        error(Number(plan));
      } else if (plan === 'reset') {
        req.socket.destroy();
      } else if (plan === 'hold') {
        held.push((status) => (status === 200 ? (res.writeHead(200, { 'content-type': 'application/json' }), res.end(completion('held'))) : error(status)));
      } else if (plan === 'stream' || plan === 'slow-stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const event of streamEvents(['Hel', 'lo'])) {
          if (res.destroyed) return;
          res.write(event);
          await sleep(plan === 'slow-stream' ? 40 : 1);
        }
        res.end();
      }
    });
  });
  servers.push(server);
  const url = `${await listenOnLoopback(server)}/v1`;
  return {
    url,
    seen,
    held,
    open: () => open,
    release: (status: number) => held.shift()!(status),
  };
}

function config(url: string, upstream: string, key = 'sk-test-a'): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: a
    base_url: ${url}
    api_key: ${key}
${upstream.replace(/^/gm, '    ')}
routing: {default: [a]}
`;
}

async function chat(plan: string, signal?: AbortSignal) {
  const res = await request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-plan': plan },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    signal,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

const metrics = () => scrapeMetrics(gw!.url);

describe('a failure of a request let through before the breaker opened', () => {
  it('ending while the breaker is open does not restart its cool-down (unit, fake clock)', () => {
    let now = 0;
    const b = new CircuitBreaker(2, 1000, () => now);
    expect(b.tryAcquire()).toBe(true); // a slow request, let through while closed
    b.onFailure(false);
    b.onFailure(false); // two others fail: open at 0
    expect(b.state).toBe('open');
    now = 800;
    b.onFailure(false); // the slow one fails now: old news
    expect(b.retryAfterMs()).toBe(200);
    now = 1000;
    expect(b.tryAcquire()).toBe(true); // the probe, when the cool-down from the opening is over
    expect(b.state).toBe('half_open');
  });

  it('ending while the breaker is open does not keep the upstream refused past the cool-down (was: every late failure restarted it)', async () => {
    const up = await plannedUpstream();
    gw = await startTestGateway(config(up.url, 'retry: {attempts: 0}\nbreaker: {failures: 2, cooldown_ms: 1000}'));
    const slow = chat('hold'); // let through while the breaker is closed
    await until(() => up.held.length === 1);
    expect((await chat('503')).status).toBe(503);
    expect((await chat('503')).status).toBe(503); // opens the breaker
    const openedBy = Date.now();
    expect(gw.holder.current.breakers.get('a')!.state).toBe('open');
    await sleep(800);
    up.release(503); // the slow request fails while the breaker is open
    expect((await slow).status).toBe(503);
    await sleep(Math.max(0, openedBy + 1300 - Date.now()));
    // The cool-down from the opening is over: this request is the probe, and it succeeds.
    const probe = await chat('ok');
    expect(probe.status).toBe(200);
    expect(gw.holder.current.breakers.get('a')!.state).toBe('closed');
  });
});

describe('failures of requests let through before the breaker opened, ending after its probe closed it', () => {
  it('do not open it again (unit, fake clock)', () => {
    let now = 0;
    const b = new CircuitBreaker(2, 1000, () => now);
    b.tryAcquire();
    const before = b.openings; // two slow requests let through while closed
    b.onFailure(false, b.openings);
    b.onFailure(false, b.openings); // two others fail: open
    now = 1000;
    expect(b.tryAcquire()).toBe(true);
    b.onSuccess(); // the probe: closed
    b.onFailure(false, before);
    b.onFailure(false, before); // the slow ones fail now: old news
    expect(b.state).toBe('closed');
    b.tryAcquire();
    b.onFailure(false, b.openings);
    b.onFailure(false, b.openings); // requests of the new closed period do count
    expect(b.state).toBe('open');
  });

  it('leave the upstream in use: no circuit_open for the requests after them (was: the late failures reopened it)', async () => {
    const up = await plannedUpstream();
    gw = await startTestGateway(config(up.url, 'retry: {attempts: 0}\nbreaker: {failures: 2, cooldown_ms: 300}'));
    const slow = [chat('hold'), chat('hold')]; // let through while the breaker is closed
    await until(() => up.held.length === 2);
    expect((await chat('503')).status).toBe(503);
    expect((await chat('503')).status).toBe(503); // opens the breaker
    expect(gw.holder.current.breakers.get('a')!.state).toBe('open');
    await sleep(500);
    expect((await chat('ok')).status).toBe(200); // the probe closes it
    up.release(503);
    up.release(503);
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([503, 503]);
    expect(gw.holder.current.breakers.get('a')!.state).toBe('closed');
    expect((await chat('ok')).status).toBe(200);
  });
});

describe('a half-open probe whose client leaves', () => {
  it('frees the probe slot without blaming the upstream: the next request probes at once and closes the breaker', async () => {
    const up = await plannedUpstream();
    gw = await startTestGateway(config(up.url, 'retry: {attempts: 0}\nbreaker: {failures: 1, cooldown_ms: 200}'));
    expect((await chat('503')).status).toBe(503); // opens the breaker
    await sleep(300);
    const controller = new AbortController();
    const probe = chat('hold', controller.signal).catch(() => 'aborted');
    await until(() => up.held.length === 1);
    const refused = await chat('ok'); // one probe at a time
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.text).error.code).toBe('circuit_open');
    controller.abort();
    expect(await probe).toBe('aborted');
    await until(() => gw!.exchanges.size === 0);
    expect(gw.holder.current.breakers.get('a')!.state).toBe('half_open');
    expect((await chat('ok')).status).toBe(200);
    expect(gw.holder.current.breakers.get('a')!.state).toBe('closed');
  });
});

describe('a burst of 200 concurrent requests with failures, aborts and a reload mid-way', () => {
  it('counts each request once, as its client saw it, and each attempt once; leaves no exchange or upstream call behind', { timeout: 30_000 }, async () => {
    const up = await plannedUpstream();
    const upstream = 'retry: {attempts: 1, backoff_ms: 5, max_backoff_ms: 10}\nbreaker: {failures: 3, cooldown_ms: 50}';
    gw = await startTestGateway(config(up.url, upstream));
    const client = new OpenAI({ apiKey: 'sk-client', baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const plans = ['ok', 'stream', '503', '429', 'reset', 'abort-held', 'abort-stream', 'sdk'];
    const N = 200;
    // Held requests are answered only by the breaker (503 circuit_open) or by their client leaving.
    const holds: AbortController[] = [];
    let holdsAnswered = 0;
    let streamsCut = 0;
    const send = async (i: number): Promise<number> => {
      const plan = plans[i % plans.length];
      if (plan === 'sdk') {
        const create = client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `request ${i}` }] }, { headers: { 'x-plan': 'ok' } });
        return create.then(
          () => 200,
          (err: { status?: number }) => err.status ?? 0,
        );
      }
      const controller = new AbortController();
      if (plan === 'abort-held') holds.push(controller);
      const stream = plan === 'stream' || plan === 'abort-stream';
      const res = await request(`${gw!.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-plan': plan === 'abort-held' ? 'hold' : plan === 'abort-stream' ? 'slow-stream' : plan },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `request ${i}` }], stream }),
        signal: controller.signal,
      }).catch(() => undefined);
      if (!res) return 499;
      if (plan === 'abort-held') holdsAnswered++;
      if (plan === 'abort-stream' && res.statusCode === 200) {
        for await (const _ of res.body) break; // the first event, then the client leaves
        controller.abort();
        streamsCut++;
        return 499;
      }
      await res.body.text();
      return res.statusCode;
    };
    const tasks: Promise<number>[] = [];
    for (let i = 0; i < N; i++) {
      tasks.push(send(i));
      if (i === N / 2) {
        // A reload with a new key mid-burst: a new pool for new requests, the old one kept for those in flight.
        writeFileSync(gw.configFile, config(up.url, upstream, 'sk-test-b'));
        await until(() => gw!.holder.current.generation === 2);
      }
    }
    await until(() => up.held.length + holdsAnswered === N / plans.length);
    for (const c of holds) c.abort();
    const statuses = await Promise.all(tasks);
    await until(() => gw!.exchanges.size === 0 && gw!.inflight.size === 0);
    await until(() => up.open() === 0);

    const m = await metrics();
    const count = (status: number) => statuses.filter((s) => s === status).length;
    expect(m.sum('promptgate_requests_total')).toBe(N);
    expect(m.sum('promptgate_requests_total', { status_class: '2xx', error_type: '' })).toBe(count(200));
    expect(m.sum('promptgate_requests_total', { error_type: 'client_abort' })).toBe(count(499));
    expect(m.sum('promptgate_requests_total', { status_class: '4xx', error_type: 'upstream_429' })).toBe(count(429));
    expect(m.sum('promptgate_requests_total', { status_class: '5xx' })).toBe(count(503));
    expect(m.sum('promptgate_upstream_attempts_total')).toBe(up.seen.length);
    expect(streamsCut).toBeGreaterThan(0);
    // Both keys were used: the old pool served the requests from before the reload, the new one those after.
    expect(new Set(up.seen.map((s) => s.auth))).toEqual(new Set(['Bearer sk-test-a', 'Bearer sk-test-b']));
  });
});

describe('a reload storm', () => {
  it('applies the last config written, valid or not in between, once the writes stop', { timeout: 20_000 }, async () => {
    const up = await plannedUpstream();
    const upstream = 'retry: {attempts: 0}\nbreaker: {failures: 0}';
    gw = await startTestGateway(config(up.url, upstream));
    for (let i = 0; i < 30; i++) {
      writeFileSync(gw.configFile, i % 3 === 2 ? 'upstreams: [oops' : config(up.url, upstream, `sk-storm-${i}`));
      await sleep(10);
    }
    writeFileSync(gw.configFile, config(up.url, upstream, 'sk-storm-last'));
    await until(() => gw!.holder.current.config.upstreams.get('a')!.config.api_key === 'sk-storm-last', 10_000);
    const generation = gw.holder.current.generation;
    await sleep(500); // no late reload of an earlier state follows
    expect(gw.holder.current.generation).toBe(generation);
    expect((await chat('ok')).status).toBe(200);
    expect(up.seen.at(-1)!.auth).toBe('Bearer sk-storm-last');
  });
});

describe('the shutdown during a retry wait', () => {
  it('ends the wait at the drain timeout: one attempt, a 503 shutting_down, no stack or key in it', { timeout: 20_000 }, async () => {
    const up = await plannedUpstream();
    gw = await startTestGateway(config(up.url, 'retry: {attempts: 2, backoff_ms: 5000, max_backoff_ms: 5000}\nbreaker: {failures: 0}'));
    const pending = chat('503');
    await until(() => up.seen.length === 1);
    const started = Date.now();
    const closing = gw.close();
    const res = await pending;
    await closing;
    gw = undefined;
    expect(res.status).toBe(503);
    expect(JSON.parse(res.text).error).toMatchObject({ code: 'shutting_down', type: 'service_unavailable_error' });
    expect(res.text).not.toMatch(/sk-test|at .*\.ts/);
    expect(up.seen.length).toBe(1);
    expect(Date.now() - started).toBeLessThan(4000); // the drain (1 s), not the backoff (2.5-5 s)
  });
});

describe('an upstream client kept through one reload and replaced at the next', () => {
  it('stays open for the requests of every config that used it, not only the last one (was: closed after the last config\'s total_ms, a fallback of an older request refused)', { timeout: 20_000 }, async () => {
    const a = await plannedUpstream('hold');
    const b = await plannedUpstream('ok');
    const yaml = (aTotal: number, bKey: string) => `
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: a
    base_url: ${a.url}
    api_key: sk-test-a
    retry: {attempts: 0}
    breaker: {failures: 0}
    timeout: {first_byte_ms: 2000, total_ms: ${aTotal}}
  - name: b
    base_url: ${b.url}
    api_key: ${bKey}
    retry: {attempts: 0}
    breaker: {failures: 0}
    timeout: {total_ms: 1000}
routing: {default: [a, b]}
`;
    gw = await startTestGateway(yaml(8000, 'sk-test-b1'));
    const compiled = (aTotal: number, bKey: string) => {
      writeFileSync(`${gw!.dir}/next.yaml`, yaml(aTotal, bKey));
      return loadConfigFile(`${gw!.dir}/next.yaml`);
    };
    const old = chat('x'); // deadline 8 s (a's total_ms); a hangs: b after first_byte_ms
    await until(() => a.held.length === 1);
    // a's total_ms shortened (a new client for a; b's kept), then b's key changed (a new client
    // for b): b's first client still serves the first request, whose deadline is a's old 8 s.
    gw.holder.apply(compiled(1000, 'sk-test-b1'), 100);
    gw.holder.apply(compiled(1000, 'sk-test-b2'), 100);
    const res = await old;
    expect(res.status).toBe(200);
    expect(b.seen.map((r) => r.auth)).toEqual(['Bearer sk-test-b1']);
  });
});
