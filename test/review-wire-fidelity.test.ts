/**
 * Review of the OpenAI wire fidelity of POST /v1/chat/completions: what a client gets from
 * the gateway against what it gets from the same upstream directly (raw bytes, status,
 * headers, timing), and what the official `openai` client makes of it. The upstream is a
 * node:http server each test steers with its own handler.
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import { constants as zlib, createDeflateRaw, deflateRawSync, deflateSync } from 'node:zlib';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { KEPT_CHARS, StreamText } from '../src/proxy/stream-text.js';
import { decodeContent } from '../src/proxy/content-coding.js';

type Handler = (req: http.IncomingMessage, body: any, res: http.ServerResponse) => Promise<void> | void;

let handler: Handler = (_req, _body, res) => {
  res.end();
};
let server: http.Server;
let upstreamUrl: string;
let gw: TestGateway;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: any = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = null;
      }
      void handler(req, body, res);
    });
  });
  upstreamUrl = `${await listenOnLoopback(server)}/v1`;
  gw = await startTestGateway(mockConfig(upstreamUrl, '', '    breaker: {failures: 0}'));
});
afterAll(async () => {
  await gw?.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const CHUNK = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini' };
const chatStream = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Think hard.' }], stream: true as const };

describe('stream head', () => {
  // Regression: the gateway held the status and headers until the upstream's first event, so
  // a model slow to its first token (headers sent, then thinking) timed openai-node out:
  // its `timeout` runs until the headers arrive, and it then retried the whole request.
  it('reaches the client when the upstream sends it, not with a slow first event', async () => {
    handler = async (_req, _body, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req_slow' });
      res.flushHeaders();
      await sleep(1200);
      res.write(`data: ${JSON.stringify({ ...CHUNK, choices: [{ index: 0, delta: { role: 'assistant', content: 'Done.' }, logprobs: null, finish_reason: 'stop' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    };
    const started = performance.now();
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chatStream) });
    const headersAfter = performance.now() - started;
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-request-id']).toBe('req_slow');
    await res.body.text();
    expect(headersAfter).toBeLessThan(600);

    // What the client sees: a 500 ms timeout is enough for the headers, as directly.
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 500 });
    let text = '';
    for await (const chunk of await client.chat.completions.create(chatStream)) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe('Done.');
  });
});

describe('content codings', () => {
  const completion = { id: 'chatcmpl-2', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'Deflated.', refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } };

  // Regression: `deflate` was decoded as the zlib format only, and a server that sends raw
  // deflate (as some do; browsers and undici's fetch, so openai-node, accept it) had every
  // answer fail through the gateway while the same client read it directly.
  it('decodes raw deflate as openai-node does, non-stream and stream', async () => {
    handler = async (_req, body, res) => {
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'deflate' });
        res.end(deflateRawSync(JSON.stringify(completion)));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'deflate' });
      const deflate = createDeflateRaw();
      deflate.pipe(res);
      for (const content of ['Def', 'lated.']) {
        deflate.write(`data: ${JSON.stringify({ ...CHUNK, choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }] })}\n\n`);
        deflate.flush(zlib.Z_SYNC_FLUSH);
        await sleep(10);
      }
      deflate.end('data: [DONE]\n\n');
    };
    const answers: unknown[] = [];
    for (const baseURL of [upstreamUrl, `${gw.url}/v1`]) {
      const client = new OpenAI({ baseURL, apiKey: 'sk-client', maxRetries: 0 });
      const reply = await client.chat.completions.create({ ...chatStream, stream: false });
      let streamed = '';
      for await (const chunk of await client.chat.completions.create(chatStream)) streamed += chunk.choices[0]?.delta?.content ?? '';
      answers.push({ content: reply.choices[0].message.content, usage: reply.usage, streamed });
    }
    expect(answers[0]).toEqual({ content: 'Deflated.', usage: completion.usage, streamed: 'Deflated.' });
    expect(answers[1]).toEqual(answers[0]);
  });
});

describe('captured completion of a stream', () => {
  const delta = (index: number, content: string) => JSON.stringify({ ...CHUNK, choices: [{ index, delta: { content }, logprobs: null, finish_reason: null }] });

  // Regression: with n > 1 the choices' chunks interleave, and the span's completion was
  // their deltas in arrival order ("HelloHi there..."), where a non-stream answer's is each
  // choice's content in index order.
  it('is each choice whole, in index order, when n > 1 interleaves them', () => {
    for (const keepAll of [false, true]) {
      const text = new StreamText(keepAll);
      for (const [a, b] of [['Hel', 'Hi'], ['lo', ' there'], ['.', '!']]) {
        text.add(delta(1, b));
        text.add(delta(0, a));
      }
      expect(text.text().content).toBe('Hello.Hi there!');
    }
  });

  it('stays in index order across the compactions of a long captured stream', () => {
    const text = new StreamText(true);
    const piece = 'word ';
    let chars = 0;
    let rounds = 0;
    for (; chars < 3 * KEPT_CHARS; rounds++) {
      const one = delta(0, piece);
      text.add(delta(1, piece.toUpperCase()));
      text.add(one);
      chars += 2 * one.length;
    }
    expect(text.text().content).toBe(piece.repeat(rounds) + piece.toUpperCase().repeat(rounds));
  });
});

describe('deflate decoding keeps backpressure', () => {
  // A reader that takes one chunk of a small deflate body inflating to 50 MB: the decoder
  // must wait for it, not inflate the rest into memory (the bound that max_bytes and the
  // completion limit rely on). The first zlib-or-raw wrapper buffered all 50 MB.
  for (const [format, compress] of [
    ['raw', deflateRawSync],
    ['zlib', deflateSync],
  ] as const) {
    it(`${format}: decodes as the reader takes it`, async () => {
      const coded = compress(Buffer.alloc(50 * 1024 * 1024));
      const { response } = decodeContent({ status: 200, headers: { 'content-encoding': 'deflate' }, body: Readable.from([coded]) } as never);
      const body = response.body as unknown as Readable;
      const chunks = body[Symbol.asyncIterator]();
      const first = await chunks.next();
      expect((first.value as Buffer).length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 200));
      // Bytes held, at most 64 KB per chunk when the stream counts chunks.
      const held = body.readableObjectMode ? body.readableLength * 65536 : body.readableLength;
      expect(held).toBeLessThan(4 * 1024 * 1024);
      body.destroy();
    });
  }
});
