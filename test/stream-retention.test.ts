/**
 * What an open stream keeps alive. A sidecar holds thousands of streams open at once, so
 * the parsed request (messages, the rendered template) must not live as long as its stream:
 * the relay needs none of it. Checked in a heap snapshot taken while a stream is held open,
 * for a marker that exists only as bytes outside the gateway (this test never makes it a
 * string), so any copy in the snapshot is the gateway's.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let upstream: Server;
let held: ServerResponse | undefined;
let gw: TestGateway;

beforeAll(async () => {
  // Answers with the stream's first chunk and holds it open; never reads the body as text.
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] })}\n\n`);
      held = res;
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  gw = await startTestGateway(mockConfig(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`));
});

afterAll(async () => {
  await gw?.close();
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

/** `n` random lowercase hex characters, as bytes only. */
function hexBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  const r = randomBytes(n);
  for (let i = 0; i < n; i++) out[i] = (r[i] & 15) < 10 ? 0x30 + (r[i] & 15) : 0x57 + (r[i] & 15);
  return out;
}

// Regression: the relay's callbacks were closures in the chat handler, and V8 keeps one
// scope object per function: they held the parsed request body (and with a template, the
// rendered system prompt, ~5 KB per stream in the bench) for the whole stream.
it('does not keep the parsed request alive while its stream is open', async () => {
  const marker = hexBytes(48);
  const body = Buffer.concat([Buffer.from('{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"'), marker, Buffer.from('"}]}')]);
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  expect(res.statusCode).toBe(200);
  const reader = res.body[Symbol.asyncIterator]();
  await reader.next(); // the first chunk: the stream is open
  expect(held).toBeDefined();

  gc();
  const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-heap-'));
  try {
    const file = v8.writeHeapSnapshot(path.join(dir, 'open-stream.heapsnapshot'));
    expect(readFileSync(file).includes(marker)).toBe(false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  held!.end('data: [DONE]\n\n');
  for (let r = await reader.next(); !r.done; r = await reader.next());
});
