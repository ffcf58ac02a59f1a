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

  it('cuts streams still open at the drain timeout and still exits 0', async () => {
    const gw = await spawnGateway(300);
    const res = await request(`http://127.0.0.1:${gw.port}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '1000' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const it = res.body[Symbol.asyncIterator]();
    await it.next();
    const started = Date.now();
    gw.child.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    await expect((async () => {
      for (let next = await it.next(); !next.done; next = await it.next());
    })()).rejects.toThrow();
  });
});

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
