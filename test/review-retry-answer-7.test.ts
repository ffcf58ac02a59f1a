/**
 * Regression tests from review round 7 of retries: an upstream answers with a retryable
 * status (429, 5xx), and the retry on the same upstream then fails (hangs until total_ms,
 * no first byte in time, connection reset). The client gets that upstream answer, as it
 * does when a fallback fails after an answer passed over, not a gateway 503/504.
 * The gateway on a real socket, node:http upstreams on 127.0.0.1:0 steered per request;
 * the official `openai` client. Timeouts are hang guards only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import OpenAI from 'openai';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { scrapeMetricsText } from './helpers/metrics.js';

/** What the upstream does with one request: answer, never answer, or reset the connection. */
type Step = { status: number; headers?: Record<string, string>; body: string } | 'hang' | 'reset';

interface ScriptedUpstream {
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

/** An upstream doing `steps[n]` with its n-th request (the last step repeats). */
async function scripted(steps: Step[]): Promise<ScriptedUpstream> {
  const up: ScriptedUpstream = { url: '', seen: [] };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const step = steps[Math.min(up.seen.length, steps.length - 1)];
    up.seen.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      if (step === 'hang') return;
      if (step === 'reset') return void req.socket.destroy();
      res.writeHead(step.status, { 'content-type': 'application/json', ...step.headers });
      res.end(step.body);
    });
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

function config(upstreams: { name: string; url: string; settings: string }[]): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
${upstreams.map((u) => `  - name: ${u.name}\n    base_url: ${u.url}\n    api_key: sk-test-upstream-key\n${u.settings.replace(/^/gm, '    ')}`).join('\n')}
routing: {default: [${upstreams.map((u) => u.name).join(', ')}]}
`;
}

const RATE_LIMITED = JSON.stringify({ error: { message: 'Rate limit reached for gpt-4o-mini.', type: 'requests', param: null, code: 'rate_limit_exceeded' } });
const rateLimited = (headers: Record<string, string>): Step => ({ status: 429, headers: { 'x-request-id': 'req_up_1', ...headers }, body: RATE_LIMITED });
const overloaded = (status: number, message: string): Step => ({ status, body: JSON.stringify({ error: { message, type: 'server_error', param: null, code: null } }) });

const client = () => new OpenAI({ baseURL: `${gw!.url}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000 });

async function apiError(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await call;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  throw new Error('the call succeeded');
}

async function metrics(): Promise<string> {
  return scrapeMetricsText(gw!.url);
}

const messages = [{ role: 'user' as const, content: 'hi' }];

describe('a retry on the same upstream that fails after the upstream answered', () => {
  it("gives the client the upstream's 429 when the retry hangs until total_ms, non-stream (was: 504 upstream_timeout)", async () => {
    const a = await scripted([rateLimited({ 'retry-after-ms': '100', 'retry-after': '1' }), 'hang']);
    gw = await startTestGateway(config([{ name: 'a', url: a.url, settings: 'retry: {attempts: 2}\ntimeout: {first_byte_ms: 60000, total_ms: 1500}\nbreaker: {failures: 0}' }]));
    const err = await apiError(client().chat.completions.create({ model: 'gpt-4o-mini', messages }));
    expect(a.seen).toHaveLength(2); // the retry went out, and hung
    expect(err.status).toBe(429);
    expect(err.code).toBe('rate_limit_exceeded');
    expect(err.message).toContain('Rate limit reached');
    expect(err.headers?.get('retry-after')).toBe('1');
    expect(err.headers?.get('retry-after-ms')).toBe('100');
    expect(err.headers?.get('x-request-id')).toBe('req_up_1');
    const text = await metrics();
    expect(text).toMatch(/promptgate_requests_total\{[^}]*error_type="upstream_429"[^}]*upstream="a"[^}]*\} 1/);
    expect(text).toMatch(/promptgate_upstream_attempts_total\{upstream="a"[^}]*\} 2/);
  });

  it("gives the client the upstream's 503 when the retries are reset, stream (was: 503 upstream_unavailable, 'No upstream could be reached')", async () => {
    const a = await scripted([overloaded(503, 'overloaded 1'), 'reset']);
    // Three failures (the 503 and two resets) leave a breaker of 4 closed: the 503 is not blamed twice.
    gw = await startTestGateway(config([{ name: 'a', url: a.url, settings: 'retry: {attempts: 2, backoff_ms: 5, max_backoff_ms: 10}\nbreaker: {failures: 4, cooldown_ms: 60000}' }]));
    const err = await apiError(client().chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }));
    expect(a.seen).toHaveLength(3);
    expect(err.status).toBe(503);
    expect(err.message).toContain('overloaded 1');
    expect(err.message).not.toContain('No upstream');
    expect(gw.holder.current.breakers.get('a')!.state).toBe('closed');
    const text = await metrics();
    expect(text).toMatch(/promptgate_requests_total\{[^}]*error_type="upstream_503"[^}]*upstream="a"[^}]*\} 1/);
    expect(text).toMatch(/promptgate_upstream_attempts_total\{upstream="a"[^}]*\} 3/);
  });

  it("gives the client the upstream's 502 when the retry gets no first byte in time (was: 504 upstream_timeout)", async () => {
    const a = await scripted([overloaded(502, 'bad gateway upstream'), 'hang']);
    gw = await startTestGateway(config([{ name: 'a', url: a.url, settings: 'retry: {attempts: 2, backoff_ms: 5, max_backoff_ms: 10}\ntimeout: {first_byte_ms: 1000, total_ms: 20000}\nbreaker: {failures: 0}' }]));
    const err = await apiError(client().chat.completions.create({ model: 'gpt-4o-mini', messages }));
    expect(a.seen).toHaveLength(2); // a first-byte timeout moves on (no later upstream): no third try
    expect(err.status).toBe(502);
    expect(err.message).toContain('bad gateway upstream');
  });

  it("gives the client the upstream's answer when a retry the breaker opens on is refused (was: 503 upstream_unavailable)", async () => {
    const a = await scripted([overloaded(500, 'internal 1'), 'reset']);
    // The 500 and the reset open it: the second retry is not made, the 500 goes to the client.
    gw = await startTestGateway(config([{ name: 'a', url: a.url, settings: 'retry: {attempts: 2, backoff_ms: 5, max_backoff_ms: 10}\nbreaker: {failures: 2, cooldown_ms: 60000}' }]));
    const err = await apiError(client().chat.completions.create({ model: 'gpt-4o-mini', messages }));
    expect(a.seen).toHaveLength(2);
    expect(err.status).toBe(500);
    expect(err.message).toContain('internal 1');
    expect(gw.holder.current.breakers.get('a')!.state).toBe('open');
  });

  it("gives the client the first upstream's 429 when its retry is reset and the fallback refuses (was: 503 upstream_unavailable)", async () => {
    const a = await scripted([rateLimited({ 'retry-after-ms': '50' }), 'reset']);
    gw = await startTestGateway(
      config([
        { name: 'a', url: a.url, settings: 'retry: {attempts: 1}\nbreaker: {failures: 0}' },
        { name: 'b', url: await deadUrl(), settings: 'retry: {attempts: 1, backoff_ms: 1, max_backoff_ms: 2}\nbreaker: {failures: 0}' },
      ]),
    );
    const err = await apiError(client().chat.completions.create({ model: 'gpt-4o-mini', messages }));
    expect(a.seen).toHaveLength(2);
    expect(err.status).toBe(429);
    expect(err.code).toBe('rate_limit_exceeded');
    const text = await metrics();
    // Accounted to the upstream that answered; b's attempts still count as b's.
    expect(text).toMatch(/promptgate_requests_total\{[^}]*error_type="upstream_429"[^}]*upstream="a"[^}]*\} 1/);
    expect(text).toMatch(/promptgate_upstream_attempts_total\{upstream="a"[^}]*\} 2/);
    expect(text).toMatch(/promptgate_upstream_attempts_total\{upstream="b"[^}]*\} 2/);
  });

  it("a later upstream's answer still wins over the one kept", async () => {
    const a = await scripted([rateLimited({ 'retry-after-ms': '50' }), 'reset']);
    const b = await scripted([{ status: 200, body: JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5] }], model: 'm', usage: { prompt_tokens: 1, total_tokens: 1 } }) }]);
    gw = await startTestGateway(
      config([
        { name: 'a', url: a.url, settings: 'retry: {attempts: 1}\nbreaker: {failures: 0}' },
        { name: 'b', url: b.url, settings: 'breaker: {failures: 0}' },
      ]),
    );
    const res = await client().embeddings.create({ model: 'text-embedding-3-small', input: 'hi', encoding_format: 'float' });
    expect(res.data[0].embedding).toEqual([0.5]);
    expect(a.seen).toHaveLength(2);
    expect(b.seen).toHaveLength(1);
  });

  it("gives the client the upstream's 429 on a pass-through route when the retry hangs until total_ms (was: 504 upstream_timeout)", async () => {
    const a = await scripted([rateLimited({ 'retry-after-ms': '100' }), 'hang']);
    gw = await startTestGateway(config([{ name: 'a', url: a.url, settings: 'retry: {attempts: 2}\ntimeout: {first_byte_ms: 60000, total_ms: 1500}\nbreaker: {failures: 0}' }]));
    const err = await apiError(client().embeddings.create({ model: 'text-embedding-3-small', input: 'hi', encoding_format: 'float' }));
    expect(a.seen).toEqual(['/v1/embeddings', '/v1/embeddings']);
    expect(err.status).toBe(429);
    expect(err.code).toBe('rate_limit_exceeded');
    expect(err.headers?.get('retry-after-ms')).toBe('100');
    expect(JSON.stringify(err.error)).not.toContain('sk-test-upstream-key');
  });

  it("answers the gateway's 504 when no upstream answer came before the hang", async () => {
    const a = await scripted(['hang']);
    gw = await startTestGateway(config([{ name: 'a', url: a.url, settings: 'retry: {attempts: 2}\ntimeout: {first_byte_ms: 60000, total_ms: 800}\nbreaker: {failures: 0}' }]));
    const err = await apiError(client().chat.completions.create({ model: 'gpt-4o-mini', messages }));
    expect(err.status).toBe(504);
    expect(err.code).toBe('upstream_timeout');
  });
});
