/**
 * Regression tests from a review of the upstream connection pool: a request that waits in
 * the gateway's own undici pool (every one of `upstreams[].connections` busy) has not reached
 * the upstream. Real gateway, mock upstreams on 127.0.0.1 port 0; the upstream's answers take
 * hundreds of milliseconds so a busy 2-core machine keeps the order of events.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { postJson, MOCK_API_KEY, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let gw: TestGateway | undefined;
const mocks: MockUpstream[] = [];
const servers: Server[] = [];

afterEach(async () => {
  await gw?.close();
  gw = undefined;
  await Promise.all(mocks.splice(0).map((m) => m.close()));
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

async function mock(): Promise<MockUpstream> {
  const m = await startMockUpstream();
  mocks.push(m);
  return m;
}

/** One upstream entry: `settings` are its YAML keys after name, base_url and api_key. */
function upstream(name: string, url: string, settings: string): string {
  return `  - name: ${name}
    base_url: ${url}
    api_key: ${MOCK_API_KEY}
${settings
  .split('\n')
  .map((line) => `    ${line}`)
  .join('\n')}`;
}

function config(upstreams: string[], routing: string): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
${upstreams.join('\n')}
routing: ${routing}
`;
}

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

function chat(headers: Record<string, string> = {}, body: Record<string, unknown> = {}) {
  return postJson(gw!.url, '/v1/chat/completions', { ...CHAT, ...body }, headers);
}

/**
 * Starts a stream that holds one of the upstream's connections for about `10 * chunkDelayMs`
 * (the mock's role, word, finish and usage chunks): resolves once its headers reached the
 * client (the gateway's attempt is over), with the status and the whole text to come.
 */
async function longStream(chunkDelayMs: number) {
  const res = await request(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': String(chunkDelayMs) },
    body: JSON.stringify({ ...CHAT, stream: true }),
  });
  const text = res.body.text();
  text.catch(() => undefined); // awaited by the test; a test that failed first leaves it
  return { status: res.statusCode, text };
}

async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function breakerOf(name: string) {
  return gw!.holder.current.breakers.get(name)!;
}

describe('requests waiting for a connection in the gateway pool', () => {
  it('do not open the breaker of a healthy upstream when total_ms runs out in the queue (was: counted as the upstream hanging)', async () => {
    const up = await mock();
    gw = await startTestGateway(
      config(
        [upstream('a', up.url, 'connections: 2\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 10000, total_ms: 1600}\nbreaker: {failures: 3, cooldown_ms: 60000}')],
        '{default: [a]}',
      ),
    );
    // Each answer takes 1 s: two go out at once, two more when those end (and run out of
    // time at 1.6 s, after their wait), six never get a connection.
    const answers = await Promise.all(Array.from({ length: 10 }, () => chat({ 'x-mock-delay-ms': '1000' })));
    expect(answers.filter((r) => r.status === 200)).toHaveLength(2);
    expect(answers.filter((r) => r.status === 504)).toHaveLength(8);
    expect(up.requests).toHaveLength(4);
    expect(breakerOf('a').state).toBe('closed');
    const next = await chat();
    expect(next.status).toBe(200);
  });

  it('start first_byte_ms when the request is written: a wait for a connection counts toward total_ms only', async () => {
    const a = await mock();
    const b = await mock();
    gw = await startTestGateway(
      config(
        [
          upstream('a', a.url, 'connections: 1\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 1000, idle_ms: 5000, total_ms: 20000}\nbreaker: {failures: 1, cooldown_ms: 60000}'),
          upstream('b', b.url, 'retry: {attempts: 0}'),
        ],
        '{default: [a, b]}',
      ),
    );
    const stream = await longStream(200); // holds a's only connection for about 2 s
    const res = await chat();
    expect(res.status).toBe(200);
    expect(a.requests).toHaveLength(2); // waited for the stream's connection, then answered by a
    expect(b.requests).toHaveLength(0);
    expect(breakerOf('a').state).toBe('closed');
    expect(await stream.text).toContain('[DONE]');
  });

  it('open the breaker of an upstream that hangs under load: a request sent after a wait had all of first_byte_ms (was: not counted once the pool had a queue)', async () => {
    // a takes requests and never answers.
    const a = { requests: 0 };
    const hanging = createServer((req) => {
      a.requests++;
      req.resume();
    });
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    servers.push(hanging);
    const b = await mock();
    gw = await startTestGateway(
      config(
        [
          upstream('a', `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/v1`, 'connections: 2\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 600, idle_ms: 5000, total_ms: 20000}\nbreaker: {failures: 3, cooldown_ms: 60000}'),
          upstream('b', b.url, 'retry: {attempts: 0}'),
        ],
        '{default: [a, b]}',
      ),
    );
    // a never answers in time: two requests go at once, four after them, each times out on
    // its own first byte and falls back to b.
    const answers = await Promise.all(Array.from({ length: 6 }, () => chat()));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(b.requests).toHaveLength(6);
    expect(a.requests).toBe(6);
    expect(breakerOf('a').state).toBe('open');
    expect((await chat()).status).toBe(200);
    expect(a.requests).toBe(6); // skipped while open
  });

  it('let go of the body of a request given up while it waits (was: held in the pool queue until a connection freed)', async () => {
    const a = await mock();
    gw = await startTestGateway(
      config([upstream('a', a.url, 'connections: 1\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 60000, idle_ms: 10000, total_ms: 60000}')], '{default: [a]}'),
    );
    const stream = await longStream(400); // about 4 s on a's only connection
    const big = 'x'.repeat(1_000_000);
    gc();
    const before = process.memoryUsage().heapUsed;
    // Clients that give up after 200 ms: their requests wait in the queue, then are given up.
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const res = await request(`${gw!.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...CHAT, messages: [{ role: 'user', content: `${i}${big}` }] }),
          signal: AbortSignal.timeout(200),
        }).catch(() => undefined);
        await res?.body.dump();
      }),
    );
    await new Promise((r) => setTimeout(r, 300)); // the gateway sees each client leave
    gc();
    const heldMb = (process.memoryUsage().heapUsed - before) / 1e6;
    expect(a.requests).toHaveLength(1); // none of them was sent
    expect(heldMb).toBeLessThan(20); // 30 bodies of 1 MB (and their parsed copies) were held
    expect(await stream.text).toContain('[DONE]');
  });

  it('answer 504 when total_ms passes in the queue, at total_ms (was: only once a connection came free)', async () => {
    const a = await mock();
    const down = await mock();
    await down.close(); // refuses connections: the short route moves on to a at once
    gw = await startTestGateway(
      config(
        [
          upstream('a', a.url, 'connections: 1\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 60000, idle_ms: 5000, total_ms: 20000}\nbreaker: {failures: 0}'),
          upstream('short', down.url, 'retry: {attempts: 0}\ntimeout: {total_ms: 1000}\nbreaker: {failures: 0}'),
        ],
        '{default: [a], models: {short-model: [short, a]}}',
      ),
    );
    const stream = await longStream(500); // about 5 s on a's only connection, within a's total_ms
    const started = performance.now();
    const res = await chat({}, { model: 'short-model' });
    const waited = performance.now() - started;
    expect(res.status).toBe(504);
    expect(JSON.parse(res.text).error.code).toBe('upstream_timeout');
    expect(waited).toBeLessThan(2500);
    expect(await stream.text).toContain('[DONE]');
    expect(a.requests).toHaveLength(1);
  });
});
