/**
 * `upstreams[].ask_stream_usage: false`: some OpenAI-compatible servers reject
 * `stream_options` with a 400, so the gateway's own `include_usage` (added for exact
 * accounting) would break every stream a client sends without it. Such an upstream gets
 * the stream as the client sent it, and its tokens are estimated; the other upstreams of
 * the route (a fallback) still get `include_usage` and report exact usage.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetrics } from './helpers/metrics.js';

for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];

interface StreamUpstream {
  url: string;
  /** The JSON bodies received, in order. */
  bodies: Record<string, unknown>[];
  close(): Promise<void>;
}

const WORDS = ['Your', ' order', ' ships', ' today.'];

/**
 * A chat upstream that streams four content chunks. `strict`: rejects any `stream_options`
 * with OpenAI's 400 shape (as servers without the option do). `status`: answers every
 * request with that error status instead. With `include_usage` it sends the usage chunk.
 */
async function startStreamUpstream(options: { strict?: boolean; status?: number } = {}): Promise<StreamUpstream> {
  const bodies: Record<string, unknown>[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
      bodies.push(body);
      const fail = (status: number, message: string) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: null } }));
      };
      if (options.status) return fail(options.status, 'The server is overloaded.');
      if (options.strict && 'stream_options' in body) return fail(400, 'Unrecognized request argument supplied: stream_options');
      const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: object, finish: string | null) => ({
        id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini',
        choices: [{ index: 0, delta, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}),
      });
      for (const [i, w] of WORDS.entries()) res.write(`data: ${JSON.stringify(chunk(i === 0 ? { role: 'assistant', content: w } : { content: w }, null))}\n\n`);
      res.write(`data: ${JSON.stringify(chunk({}, 'stop'))}\n\n`);
      if (includeUsage) {
        const usage = { prompt_tokens: 111, completion_tokens: 22, total_tokens: 133 };
        res.write(`data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [], usage })}\n\n`);
      }
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    bodies,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('upstreams[].ask_stream_usage', () => {
  let gw: TestGateway | undefined;
  const upstreams: StreamUpstream[] = [];
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    await Promise.all(upstreams.splice(0).map((u) => u.close()));
  });

  const started = async (options: Parameters<typeof startStreamUpstream>[0]) => {
    const u = await startStreamUpstream(options);
    upstreams.push(u);
    return u;
  };

  const client = () => new OpenAI({ baseURL: `${gw!.url}/v1`, apiKey: 'sk-client', maxRetries: 0 });
  const metrics = async () => await scrapeMetrics(gw!.url);

  async function streamText(options: { includeUsage?: boolean } = {}): Promise<{ text: string; usage: unknown }> {
    const stream = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Where is my order?' }],
      stream: true,
      ...(options.includeUsage ? { stream_options: { include_usage: true } } : {}),
    });
    let text = '';
    let usage: unknown = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    return { text, usage };
  }

  it('false: the stream goes without stream_options, the client gets it whole, and its tokens are estimated (was: a 400 for every stream)', async () => {
    const strict = await started({ strict: true });
    gw = await startTestGateway(`
server: {host: 127.0.0.1}
logging: {level: silent}
upstreams: [{name: strict, base_url: "${strict.url}", api_key: sk-test, ask_stream_usage: false}]
routing: {default: [strict]}
`);
    const { text, usage } = await streamText();
    expect(text).toBe(WORDS.join(''));
    expect(usage).toBeNull();
    expect(strict.bodies[0]).not.toHaveProperty('stream_options');
    const prom = await metrics();
    expect(prom.sum('promptgate_requests_total', { status_class: '2xx', estimated: 'true', stream: 'true' })).toBe(1);
    expect(prom.sum('promptgate_tokens_total', { gen_ai_token_type: 'output', estimated: 'true' })).toBeGreaterThan(0);
  });

  it('false: a client that asks for usage itself has its stream_options sent as they are (its choice, its answer)', async () => {
    const strict = await started({ strict: true });
    gw = await startTestGateway(`
server: {host: 127.0.0.1}
logging: {level: silent}
upstreams: [{name: strict, base_url: "${strict.url}", api_key: sk-test, ask_stream_usage: false, retry: {attempts: 0}}]
routing: {default: [strict]}
`);
    await expect(streamText({ includeUsage: true })).rejects.toMatchObject({ status: 400, message: expect.stringContaining('stream_options') });
    expect(strict.bodies[0]).toMatchObject({ stream_options: { include_usage: true } });
  });

  it('true (the default): the stream asks for usage, the usage chunk is removed for the client, and the tokens are exact', async () => {
    const open = await started({});
    gw = await startTestGateway(`
server: {host: 127.0.0.1}
logging: {level: silent}
upstreams: [{name: open, base_url: "${open.url}", api_key: sk-test}]
routing: {default: [open]}
`);
    const { text, usage } = await streamText();
    expect(text).toBe(WORDS.join(''));
    expect(usage).toBeNull();
    expect(open.bodies[0]).toMatchObject({ stream_options: { include_usage: true } });
    const prom = await metrics();
    expect(prom.sum('promptgate_tokens_total', { gen_ai_token_type: 'output', estimated: 'false' })).toBe(22);
    expect(prom.sum('promptgate_tokens_total', { estimated: 'true' }) ?? 0).toBe(0);
  });

  it('each upstream of a route gets its own form: a fallback that takes stream_options reports exact usage after one that does not failed', async () => {
    const strict = await started({ strict: true, status: 503 });
    const open = await started({});
    gw = await startTestGateway(`
server: {host: 127.0.0.1}
logging: {level: silent}
upstreams:
  - {name: strict, base_url: "${strict.url}", api_key: sk-test, ask_stream_usage: false, retry: {attempts: 0}}
  - {name: open, base_url: "${open.url}", api_key: sk-test}
routing: {default: [strict, open]}
`);
    const { text, usage } = await streamText();
    expect(text).toBe(WORDS.join(''));
    expect(usage).toBeNull(); // the usage chunk the gateway asked for is not the client's
    expect(strict.bodies[0]).not.toHaveProperty('stream_options');
    expect(open.bodies[0]).toMatchObject({ stream_options: { include_usage: true } });
    const prom = await metrics();
    expect(prom.sum('promptgate_tokens_total', { gen_ai_token_type: 'output', upstream: 'open', estimated: 'false' })).toBe(22);
  });
});
