/**
 * Regression tests from a review of the upstream connection pool: a request that waits in
 * the gateway's own undici pool (every one of `upstreams[].connections` busy) has not reached
 * the upstream. Real gateway, mock upstreams on 127.0.0.1 port 0; the upstream's answers take
 * hundreds of milliseconds so a busy 2-core machine keeps the order of events.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { postJson, MOCK_API_KEY, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let gw: TestGateway | undefined;
const mocks: MockUpstream[] = [];

afterEach(async () => {
  await gw?.close();
  gw = undefined;
  await Promise.all(mocks.splice(0).map((m) => m.close()));
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

  it('fall back to the next upstream once first_byte_ms passes in the queue, not counted against the breaker (was: waited behind a long stream)', async () => {
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
    const stream = await longStream(500); // holds a's only connection for about 5 s
    const started = performance.now();
    const res = await chat();
    const waited = performance.now() - started;
    expect(res.status).toBe(200);
    expect(b.requests).toHaveLength(1);
    expect(waited).toBeLessThan(3000);
    expect(stream.status).toBe(200);
    expect(await stream.text).toContain('[DONE]');
    expect(a.requests).toHaveLength(1); // the request given up on was never sent to a
    expect(breakerOf('a').state).toBe('closed');
    expect((await chat()).status).toBe(200);
    expect(a.requests).toHaveLength(2);
  });

  it('count first_byte_ms from the attempt start, the wait for a connection included, and do not hold its timeout against the upstream (was: the limit restarted once sent)', async () => {
    const a = await mock();
    const b = await mock();
    gw = await startTestGateway(
      config(
        [
          upstream('a', a.url, 'connections: 1\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 4000, idle_ms: 5000, total_ms: 20000}\nbreaker: {failures: 1, cooldown_ms: 60000}'),
          upstream('b', b.url, 'retry: {attempts: 0}'),
        ],
        '{default: [a, b]}',
      ),
    );
    const stream = await longStream(200); // about 2 s
    // Sent to a once the stream ends, about 2 s in; a would answer about 5.5 s in: after the
    // attempt's 4 s (undici checks about twice a second), before 4 s from the sending.
    const res = await chat({ 'x-mock-delay-ms': '3500' });
    expect(res.status).toBe(200);
    expect(a.requests).toHaveLength(2);
    expect(b.requests).toHaveLength(1);
    expect(breakerOf('a').state).toBe('closed');
    expect(await stream.text).toContain('[DONE]');
  });

  it('free the half-open probe slot when the probe never got a connection (was: the probe waited for the stream)', async () => {
    const a = await mock();
    const b = await mock();
    gw = await startTestGateway(
      config(
        [
          upstream('a', a.url, 'connections: 1\nretry: {attempts: 0}\ntimeout: {first_byte_ms: 1000, idle_ms: 5000, total_ms: 20000}\nbreaker: {failures: 1, cooldown_ms: 200}'),
          upstream('b', b.url, 'retry: {attempts: 0}'),
        ],
        '{default: [a, b]}',
      ),
    );
    const stream = await longStream(500);
    breakerOf('a').onFailure(); // opened by a failure elsewhere while the stream holds the connection
    await until(() => breakerOf('a').available, 'the cool-down');
    const probe = await chat();
    expect(probe.status).toBe(200);
    expect(b.requests).toHaveLength(1);
    expect(breakerOf('a').state).toBe('half_open');
    expect(breakerOf('a').available).toBe(true); // the next request may probe
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
