/**
 * Graceful shutdown of the real CLI process: SIGTERM while a stream is open.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let upstream: MockUpstream;
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});

async function spawnGateway(drainMs: number): Promise<{ child: ChildProcess; port: number; exited: Promise<number | string | null>; logs: () => string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pg-drain-'));
  const file = path.join(dir, 'gateway.config.yaml');
  writeFileSync(
    file,
    `server: {host: 127.0.0.1, drain_timeout_ms: ${drainMs}}
upstreams: [{name: mock, base_url: "${upstream.url}"}]
routing: {default: [mock]}
`,
  );
  // node itself (not the tsx CLI, which relays signals): signals reach the gateway as in the image.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', file, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  // The exit code, or the signal that killed the process.
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${out}`)), 15_000);
    const check = () => {
      const m = out.match(/"msg":"listening".*?"port":(\d+)/);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
  });
  return { child, port, exited, logs: () => out };
}

describe('SIGTERM drain', () => {
  it('finishes an open stream, refuses new connections, then exits 0', async () => {
    const gw = await spawnGateway(10_000);
    const res = await request(`http://127.0.0.1:${gw.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '120' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const it = res.body[Symbol.asyncIterator]();
    let text = String((await it.next()).value);
    gw.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 150));
    await expect(request(`http://127.0.0.1:${gw.port}/healthz`)).rejects.toThrow(); // listener closed
    for (let next = await it.next(); !next.done; next = await it.next()) text += String(next.value);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(await gw.exited).toBe(0);
    expect(gw.logs()).toContain('"msg":"draining"');
    expect(gw.logs()).toMatch(/"msg":"request".*"outcome":"ok".*"stream":true/);
  });

  it('ends a stream still open at the drain timeout with a shutting_down error event, accounted as a shutdown, and exits 0', async () => {
    const gw = await spawnGateway(300);
    const closedBefore = upstream.closed;
    const res = await request(`http://127.0.0.1:${gw.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '1000' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const it = res.body[Symbol.asyncIterator]();
    let text = String((await it.next()).value);
    const started = Date.now();
    gw.child.kill('SIGTERM');
    // The body ends cleanly (no "other side closed"): read to the end without a throw.
    for (let next = await it.next(); !next.done; next = await it.next()) text += String(next.value);
    expect(text.endsWith('\n\n')).toBe(true);
    const events = text.split('\n\n').filter((e) => e !== '');
    expect(events.length).toBeGreaterThan(1); // the upstream's first chunk went out before the cut
    const last = events.at(-1)!;
    expect(last.startsWith('data: ')).toBe(true);
    expect(JSON.parse(last.slice(6))).toEqual({
      error: { message: 'The gateway is shutting down.', type: 'server_error', param: null, code: 'shutting_down' },
    });
    expect(text).not.toContain('[DONE]');
    expect(await gw.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(requestLines(gw.logs())).toEqual([expect.objectContaining({ route: '/v1/chat/completions', status: 200, stream: true, outcome: 'error', error_type: 'shutdown' })]);
    await upstream.waitForClosed(closedBefore + 1); // the upstream request was aborted, not left running
  });

  it('answers 503 shutting_down to a request still waiting for its upstream at the drain timeout', async () => {
    const gw = await spawnGateway(300);
    const closedBefore = upstream.closed;
    const requestsBefore = upstream.requests.length;
    const pending = request(`http://127.0.0.1:${gw.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-delay-ms': '3000' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await waitFor(() => upstream.requests.length > requestsBefore); // the gateway is waiting for the upstream
    gw.child.kill('SIGTERM');
    const res = await pending;
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(await res.body.json()).toEqual({
      error: { message: 'The gateway is shutting down; retry on another instance.', type: 'service_unavailable_error', param: null, code: 'shutting_down' },
    });
    expect(await gw.exited).toBe(0);
    expect(requestLines(gw.logs())).toEqual([expect.objectContaining({ route: '/v1/chat/completions', status: 503, stream: false, outcome: 'error', error_type: 'shutdown' })]);
    await upstream.waitForClosed(closedBefore + 1); // aborted upstream, not waited for
  });
});

/** The gateway's `"msg":"request"` log lines, parsed. */
function requestLines(logs: string): Array<Record<string, unknown>> {
  return logs
    .split('\n')
    .filter((line) => line.includes('"msg":"request"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('repeated signals', () => {
  it.each([
    ['SIGTERM', 'SIGTERM'],
    ['SIGTERM', 'SIGINT'],
    ['SIGINT', 'SIGINT'], // Ctrl-C on `npm start`: the terminal and npm both send SIGINT
  ] as const)('a second %s/%s does not kill the drain: the open stream still completes and the exit is 0', async (first, second) => {
    const gw = await spawnGateway(10_000);
    const res = await request(`http://127.0.0.1:${gw.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '80' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const it = res.body[Symbol.asyncIterator]();
    let text = String((await it.next()).value);
    gw.child.kill(first);
    await new Promise((r) => setTimeout(r, 100));
    gw.child.kill(second);
    for (let next = await it.next(); !next.done; next = await it.next()) text += String(next.value);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(await gw.exited).toBe(0);
    expect(gw.logs()).toMatch(/"msg":"request".*"outcome":"ok".*"stream":true/);
    expect(gw.logs()).toContain('"msg":"stopped"');
  });
});
