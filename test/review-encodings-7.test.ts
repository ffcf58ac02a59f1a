/**
 * Review: bytes and characters on the wire. A chat request body the gateway forwards as its
 * bytes and one it rewrites must reach the upstream with the same characters (or the client
 * is told why not); streams reach the client byte for byte. Each test is named after what broke.
 */
import http from 'node:http';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';

/** An upstream that records each request body's bytes and answers with the bytes the test set. */
interface ByteUpstream {
  url: string;
  bodies: Buffer[];
  /** The answer to every request: status, content type, and the chunks written one by one. */
  answer: { status: number; contentType: string; chunks: Buffer[] };
  close(): Promise<void>;
}

async function startByteUpstream(): Promise<ByteUpstream> {
  const up = { bodies: [], answer: { status: 200, contentType: 'application/json', chunks: [] } } as unknown as ByteUpstream;
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', async () => {
      up.bodies.push(Buffer.concat(parts));
      const { status, contentType, chunks } = up.answer;
      res.writeHead(status, { 'content-type': contentType });
      for (const chunk of chunks) {
        res.write(chunk);
        await new Promise((r) => setTimeout(r, 2)); // separate TCP writes
      }
      res.end();
    });
  });
  up.url = `${await listenOnLoopback(server)}/v1`;
  up.close = () => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  };
  return up;
}

const COMPLETION = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
};

describe('request bodies: the characters the upstream receives', () => {
  let up: ByteUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startByteUpstream();
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "${up.url}", breaker: {failures: 0}, retry: {attempts: 1}}]
routing: {default: [mock]}
`);
  });
  beforeEach(() => {
    up.bodies.length = 0;
    up.answer = { status: 200, contentType: 'application/json', chunks: [Buffer.from(JSON.stringify(COMPLETION))] };
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  const post = (body: Uint8Array | string, headers: Record<string, string> = {}) =>
    request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  /** `{"model":..,"messages":[{"role":"user","content":"caf<0xFF>e"}], ...extra}` with one byte that is no UTF-8. */
  const invalidUtf8Body = (extra = '') => Buffer.concat([Buffer.from(`{"model":"gpt-4o-mini"${extra},"messages":[{"role":"user","content":"caf`), Buffer.from([0xff]), Buffer.from('e"}]}')]);

  it('a body with bytes that are no UTF-8 is a 400 invalid_json on every path, not forwarded raw on one and as U+FFFD on another', async () => {
    // Forwarded unchanged (its bytes), rewritten (`include_usage` set in the client's
    // `stream_options`), and with `prompt_*` fields removed: the same body, three paths.
    for (const extra of ['', ',"stream":true,"stream_options":{"include_usage":false}', ',"prompt_variables":null']) {
      const res = await post(invalidUtf8Body(extra));
      const body = (await res.body.json()) as { error: { type: string; code: string; message: string; param: unknown } };
      expect(res.statusCode, extra).toBe(400);
      expect(body.error.code).toBe('invalid_json');
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.message).toMatch(/UTF-8/);
    }
    expect(up.bodies).toEqual([]);
  });

  it('the openai client gets a BadRequestError for a body that is no UTF-8 (not a silent U+FFFD upstream)', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0, fetch: (url, init) => fetch(url, { ...init, body: invalidUtf8Body(',"stream":true,"stream_options":{"include_usage":false}') }) });
    const err = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(up.bodies).toEqual([]);
  });

  it('a UTF-8 byte order mark before the JSON is accepted (as Python servers and RFC 8259 §8.1 allow) and not forwarded', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const plain = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi 😀"}]}';
    // Forwarded as its bytes, with `include_usage` inserted, and rewritten.
    for (const text of [plain, plain.replace('}]}', '}],"stream":true}'), plain.replace('}]}', '}],"prompt_variables":null}')]) {
      up.answer = text.includes('"stream"')
        ? { status: 200, contentType: 'text/event-stream', chunks: [Buffer.from('data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')] }
        : { status: 200, contentType: 'application/json', chunks: [Buffer.from(JSON.stringify(COMPLETION))] };
      const res = await post(Buffer.concat([bom, Buffer.from(text)]));
      await res.body.text();
      expect(res.statusCode, text).toBe(200);
      const sent = up.bodies.at(-1)!;
      expect(sent.subarray(0, 3).equals(bom), 'BOM forwarded').toBe(false);
      expect(JSON.parse(sent.toString('utf8')).messages[0].content).toBe('hi 😀');
    }
  });

  it('escaped lone surrogates, NUL and non-BMP characters reach the upstream with the same JSON value on the rewritten path', async () => {
    const content = 'a\\ud800b\\u0000c\\u001f😀𠀋';
    const res = await post(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"${content}"}],"prompt_variables":null}`);
    await res.body.text();
    expect(res.statusCode).toBe(200);
    const sent = up.bodies[0].toString('utf8');
    expect(sent).not.toContain('\ufffd');
    expect(JSON.parse(sent).messages[0].content).toBe(JSON.parse(`"${content}"`));
  });
});

describe('streams: the bytes the client gets and what the gateway reads', () => {
  let up: ByteUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startByteUpstream();
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "${up.url}", breaker: {failures: 0}, retry: {attempts: 1}}]
routing: {default: [mock]}
`);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('a 1 MB event of multi-byte characters, cut inside characters across TCP writes, with CR line ends, reaches the openai client whole', async () => {
    const big = '日本語😀'.repeat(80_000); // ~1.1 MB of UTF-8
    const chunk = (content: string) => JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] });
    const last = JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    const usage = JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 } });
    const text = `\uFEFFdata: ${chunk(big)}\r\rdata: ${chunk('é')}\r\n\r\ndata: ${last}\r\rdata: ${usage}\n\ndata: [DONE]\n\n`;
    const bytes = Buffer.from(text, 'utf8');
    const pieces: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 65_537) pieces.push(bytes.subarray(at, at + 65_537)); // odd size: cuts inside characters
    up.answer = { status: 200, contentType: 'text/event-stream', chunks: pieces };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true, stream_options: { include_usage: true } });
    let content = '';
    let seenUsage: unknown;
    for await (const c of stream) {
      content += c.choices[0]?.delta?.content ?? '';
      if (c.usage) seenUsage = c.usage;
    }
    expect(content).toBe(big + 'é');
    expect(seenUsage).toEqual({ prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 });
  });
});

describe('answers: what the gateway reads from them', () => {
  let up: ByteUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startByteUpstream();
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "${up.url}", breaker: {failures: 0}, retry: {attempts: 1}}]
routing: {default: [mock]}
`);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

  it('a chat answer that starts with a UTF-8 byte order mark has its usage read (the openai client reads it), not estimated', async () => {
    up.answer = { status: 200, contentType: 'application/json; charset=utf-8', chunks: [BOM, Buffer.from(JSON.stringify(COMPLETION))] };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
    const { data, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).withResponse();
    expect(data.usage).toEqual(COMPLETION.usage);
    expect(response.headers.get('x-promptgate-usage-estimated')).toBeNull();
    // gpt-4o-mini at the shipped prices: 5 input and 1 output tokens.
    expect(response.headers.get('x-promptgate-cost-usd')).toBe('0.00000135');
  });

  it('a pass-through JSON answer that starts with a byte order mark has its usage read', async () => {
    const answer = { object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1] }], model: 'text-embedding-3-small', usage: { prompt_tokens: 1000, total_tokens: 1000 } };
    up.answer = { status: 200, contentType: 'application/json', chunks: [BOM.subarray(0, 1), BOM.subarray(1), Buffer.from(JSON.stringify(answer))] };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
    const { data, response } = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' }).withResponse();
    expect(data.usage).toEqual(answer.usage);
    expect(response.headers.get('x-promptgate-cost-usd')).toBe('0.00002');
  });
});
