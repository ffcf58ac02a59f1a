/**
 * A real OpenAI-compatible HTTP server for tests, steered per request by headers (the idea
 * of Envoy AI Gateway's test upstream), so one mock serves every scenario:
 *
 *   x-mock-status: 503            answer with this status and an OpenAI error body
 *   x-mock-fail-times: 2          only the first 2 requests with the same x-mock-key fail
 *   x-mock-key: k                 groups requests for x-mock-fail-times
 *   x-mock-retry-after: 1         sets retry-after (seconds); x-mock-retry-after-ms likewise
 *   x-mock-delay-ms: 50           wait before sending headers
 *   x-mock-chunk-delay-ms: 10     wait between SSE chunks
 *   x-mock-stall-after: 2         stream: send 2 chunks then stall (idle timeout tests)
 *   x-mock-reset: before | mid    destroy the socket before the response / mid-stream
 *   x-mock-no-usage: 1            omit usage (body and stream)
 *   x-mock-usage: {json}          the usage object to report
 *   x-mock-model: name            the response's model
 *   x-mock-tool-call: 1           answer with a call of TOOL_CALL (arguments in 3 stream chunks)
 *   x-mock-encoding: gzip         compress a 200 body (gzip, deflate, br; a stream event by event,
 *                                 flushed) whatever the request's accept-encoding; any other
 *                                 value is only put in content-encoding (bytes sent as they are)
 *   x-mock-error-code: c          error.code of an error answer (x-mock-error-param: error.param)
 *   x-mock-should-retry: false    sets x-should-retry on an error answer
 *   x-mock-tool-calls: 2          answer with 2 parallel calls (indexes 0, 1; arguments in 3-character
 *                                 stream chunks); text once the last message is a tool result
 *   x-mock-content: text          the reply text (streamed in 4-character pieces)
 *   x-mock-refusal: text          answer with a refusal instead of content
 *   x-mock-error-event: 2         stream: send 2 chunks, then an OpenAI error event, and end
 *
 * Also honoured: `n` (choices by index, interleaved in a stream) and `logprobs` on chat;
 * `POST /v1/embeddings` with an `encoding_format` (float or base64; without one it is echoed), `POST /v1/responses` (a stream
 * with `event:` lines when `stream: true`), `POST /v1/files` and
 * `POST /v1/audio/transcriptions` (multipart: answer with the size and content type received).
 *
 * Every request is recorded (method, url, headers, parsed body); `closed` counts requests
 * whose client went away before the response ended (abort propagation).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants as zlib, createBrotliCompress, createDeflate, createGzip, type BrotliCompress, type Gzip } from 'node:zlib';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** The headers as received, name/value alternating, repeats kept (e.g. to count `traceparent`s). */
  rawHeaders: string[];
  raw: string;
  /** Body size in bytes, as received. */
  size: number;
  body: any;
}

export interface MockUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** Requests whose connection closed before the response finished. */
  closed: number;
  close(): Promise<void>;
  waitForClosed(n?: number, timeoutMs?: number): Promise<void>;
}

export const STREAM_WORDS = ['Hello', ' from', ' the', ' mock', ' upstream', '!'];
export const TOOL_CALL = { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' };

export async function startMockUpstream(): Promise<MockUpstream> {
  const failures = new Map<string, number>();
  const state: MockUpstream = {
    url: '',
    port: 0,
    requests: [],
    closed: 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
    waitForClosed: async (n = 1, timeoutMs = 3000) => {
      const until = Date.now() + timeoutMs;
      while (state.closed < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      if (state.closed < n) throw new Error(`upstream saw ${state.closed} closed requests, expected ${n}`);
    },
  };

  const server: Server = createServer(async (req, res) => {
    const bytes = await readAll(req);
    const raw = bytes.toString('utf8');
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = null;
    }
    state.requests.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: [...req.rawHeaders], raw, size: bytes.byteLength, body });
    res.on('close', () => {
      if (!res.writableFinished) state.closed++;
    });
    try {
      await handle(req, res, body, failures);
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}/v1`;
  return state;
}

function h(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function handle(req: IncomingMessage, res: ServerResponse, body: any, failures: Map<string, number>): Promise<void> {
  const delay = Number(h(req, 'x-mock-delay-ms') ?? 0);
  if (delay) await sleep(delay);
  if (h(req, 'x-mock-reset') === 'before') {
    req.socket.destroy();
    return;
  }
  const headers: Record<string, string> = { 'x-request-id': `req_mock_${Math.random().toString(36).slice(2, 10)}`, 'openai-processing-ms': '7', 'x-ratelimit-remaining-requests': '99' };

  const status = Number(h(req, 'x-mock-status') ?? 200);
  if (status !== 200) {
    const key = h(req, 'x-mock-key');
    const times = h(req, 'x-mock-fail-times');
    let fail = true;
    if (key && times !== undefined) {
      const seen = failures.get(key) ?? 0;
      failures.set(key, seen + 1);
      fail = seen < Number(times);
    }
    if (fail) {
      if (h(req, 'x-mock-retry-after')) headers['retry-after'] = h(req, 'x-mock-retry-after')!;
      if (h(req, 'x-mock-retry-after-ms')) headers['retry-after-ms'] = h(req, 'x-mock-retry-after-ms')!;
      if (h(req, 'x-mock-should-retry')) headers['x-should-retry'] = h(req, 'x-mock-should-retry')!;
      const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
      const code = h(req, 'x-mock-error-code') ?? (status === 429 ? 'rate_limit_exceeded' : null);
      const payload = JSON.stringify({ error: { message: `mock ${status}`, type, param: h(req, 'x-mock-error-param') ?? null, code } });
      res.writeHead(status, { ...headers, 'content-type': 'application/json' });
      res.end(payload);
      return;
    }
  }

  const path = (req.url ?? '').split('?')[0];
  if (req.method === 'GET' && path === '/v1/models') {
    encodedBody(req, res, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1, owned_by: 'mock' }] }));
    return;
  }
  if (req.method === 'POST' && path === '/v1/embeddings' && body?.encoding_format !== undefined) {
    const vectors = [[0.25, -0.5, 0.125], [1, 0, -1]];
    const inputs: unknown[] = Array.isArray(body?.input) ? body.input : [body?.input];
    const data = inputs.map((_, index) => {
      const v = vectors[index % vectors.length];
      const embedding = body?.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
      return { object: 'embedding', index, embedding };
    });
    encodedBody(req, res, { ...headers, 'content-type': 'application/json' }).end(
      JSON.stringify({ object: 'list', data, model: body?.model, usage: { prompt_tokens: 4, total_tokens: 4 } }),
    );
    return;
  }
  if (req.method === 'POST' && (path === '/v1/files' || path === '/v1/audio/transcriptions')) {
    const received = { size: Number(req.headers['content-length'] ?? -1), content_type: req.headers['content-type'] };
    const answer =
      path === '/v1/files'
        ? { id: 'file-mock1', object: 'file', bytes: received.size, created_at: 1, filename: 'upload', purpose: 'batch', status: 'processed', received }
        : { text: 'transcribed', received };
    encodedBody(req, res, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify(answer));
    return;
  }
  if (req.method === 'POST' && path === '/v1/responses') {
    await respondResponses(req, res, body, headers);
    return;
  }
  if (path !== '/v1/chat/completions') {
    // Echo for pass-through tests.
    encodedBody(req, res, { ...headers, 'content-type': 'application/json', 'x-mock-echo': '1' }).end(JSON.stringify({ method: req.method, url: req.url, body }));
    return;
  }

  const model = h(req, 'x-mock-model') ?? body?.model ?? 'gpt-4o-mini';
  const usage = h(req, 'x-mock-no-usage')
    ? undefined
    : h(req, 'x-mock-usage')
      ? JSON.parse(h(req, 'x-mock-usage')!)
      : { prompt_tokens: 11, completion_tokens: 6, total_tokens: 17, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } };
  const id = 'chatcmpl-mock123';
  const created = 1_700_000_000;
  const toolCalls = mockToolCalls(req, body);
  const refusal = h(req, 'x-mock-refusal');
  const contentHeader = h(req, 'x-mock-content');
  const pieces = contentHeader !== undefined ? (contentHeader.match(/[\s\S]{1,4}/g) ?? []) : refusal !== undefined ? (refusal.match(/[\s\S]{1,4}/g) ?? []) : STREAM_WORDS;
  const text = pieces.join('');
  const n = typeof body?.n === 'number' ? body.n : 1;
  const withLogprobs = body?.logprobs === true;
  const logprobsOf = (tokens: string[]) => ({
    content: refusal !== undefined ? null : tokens.map((token) => ({ token, logprob: -0.25, bytes: [...Buffer.from(token)], top_logprobs: [] })),
    refusal: refusal !== undefined ? tokens.map((token) => ({ token, logprob: -0.25, bytes: [...Buffer.from(token)], top_logprobs: [] })) : null,
  });

  if (!body?.stream) {
    const choices = Array.from({ length: n }, (_, index) =>
      toolCalls
        ? { index, message: { role: 'assistant', content: null, tool_calls: toolCalls, refusal: null }, logprobs: null, finish_reason: 'tool_calls' }
        : {
            index,
            message: { role: 'assistant', content: refusal !== undefined ? null : text, refusal: refusal ?? null },
            logprobs: withLogprobs ? logprobsOf(pieces) : null,
            finish_reason: 'stop',
          },
    );
    encodedBody(req, res, { ...headers, 'content-type': 'application/json' }).end(
      JSON.stringify({ id, object: 'chat.completion', created, model, choices, ...(usage ? { usage } : {}) }),
    );
    return;
  }

  const out = encodedBody(req, res, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const includeUsage = body.stream_options?.include_usage === true && usage !== undefined;
  const chunkDelay = Number(h(req, 'x-mock-chunk-delay-ms') ?? 0);
  const stallAfter = h(req, 'x-mock-stall-after');
  const resetMid = h(req, 'x-mock-reset') === 'mid';
  const errorAfter = h(req, 'x-mock-error-event');
  const event = (choices: unknown[], extra: object = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`;

  const chunks: string[] = [];
  if (toolCalls && toolCalls.length === 1 && !h(req, 'x-mock-tool-calls')) {
    const { arguments: args, ...fn } = toolCalls[0].function;
    const call = { index: 0, id: toolCalls[0].id, type: 'function', function: { ...fn, arguments: '' } };
    chunks.push(event([{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [call] }, logprobs: null, finish_reason: null }]));
    for (const piece of [args.slice(0, 9), args.slice(9, 20), args.slice(20)]) {
      chunks.push(event([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }]));
    }
    chunks.push(event([{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }]));
  } else if (toolCalls) {
    // As OpenAI sends parallel calls: one after the other, each opened by its id and name.
    toolCalls.forEach((tc, index) => {
      const { arguments: args, ...fn } = tc.function;
      const head = { index, id: tc.id, type: 'function', function: { ...fn, arguments: '' } };
      const delta = index === 0 ? { role: 'assistant', content: null, tool_calls: [head] } : { tool_calls: [head] };
      chunks.push(event([{ index: 0, delta, logprobs: null, finish_reason: null }]));
      for (const piece of args.match(/[\s\S]{1,3}/g) ?? []) {
        chunks.push(event([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }]));
      }
    });
    chunks.push(event([{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }]));
  } else {
    const field = refusal !== undefined ? 'refusal' : 'content';
    for (let index = 0; index < n; index++) {
      const first = refusal !== undefined ? { role: 'assistant', content: null, refusal: '' } : { role: 'assistant', content: '' };
      chunks.push(event([{ index, delta: first, logprobs: withLogprobs ? logprobsOf([]) : null, finish_reason: null }]));
    }
    for (const w of pieces) {
      for (let index = 0; index < n; index++) {
        chunks.push(event([{ index, delta: { [field]: w }, logprobs: withLogprobs ? logprobsOf([w]) : null, finish_reason: null }]));
      }
    }
    for (let index = 0; index < n; index++) chunks.push(event([{ index, delta: {}, logprobs: null, finish_reason: 'stop' }]));
  }
  if (includeUsage) chunks.push(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
  chunks.push('data: [DONE]\n\n');

  for (let i = 0; i < chunks.length; i++) {
    if (res.destroyed) return;
    if (stallAfter !== undefined && i === Number(stallAfter)) {
      await sleep(60_000);
      return;
    }
    if (resetMid && i === 3) {
      await sleep(30); // let the written chunks leave before the reset
      req.socket.destroy();
      return;
    }
    if (errorAfter !== undefined && i === Number(errorAfter)) {
      out.end(`data: ${JSON.stringify({ error: { message: 'mock mid-stream failure', type: 'server_error', param: null, code: 'mock_stream_error' } })}\n\n`);
      return;
    }
    out.write(chunks[i]);
    if (chunkDelay) await sleep(chunkDelay);
  }
  out.end();
}

/** The tool calls to answer with (x-mock-tool-call: TOOL_CALL; x-mock-tool-calls: N parallel ones), or undefined. */
function mockToolCalls(req: IncomingMessage, body: any): Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }> | undefined {
  const count = Number(h(req, 'x-mock-tool-calls') ?? (h(req, 'x-mock-tool-call') ? 1 : 0));
  if (count === 0) return undefined;
  // x-mock-tool-calls: once the tool results are back (runTools' second turn), answer with text.
  if (h(req, 'x-mock-tool-calls') && body?.messages?.at(-1)?.role === 'tool') return undefined;
  const cities = ['Paris', 'Tokyo', 'Lima', 'Oslo'];
  return Array.from({ length: count }, (_, i) => ({
    id: `call_mock${i + 1}`,
    type: 'function' as const,
    function: i === 0 ? { ...TOOL_CALL } : { name: TOOL_CALL.name, arguments: JSON.stringify({ city: cities[i % cities.length], unit: 'celsius' }) },
  }));
}

/** `POST /v1/responses`: a Response object, or (stream: true) its events with `event:` lines. */
async function respondResponses(req: IncomingMessage, res: ServerResponse, body: any, headers: Record<string, string>): Promise<void> {
  const words = ['Hi', ' there', '!'];
  const item = { id: 'msg_mock1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: words.join(''), annotations: [] }] };
  const response = (status: string, output: unknown[]) => ({
    id: 'resp_mock1',
    object: 'response',
    created_at: 1_700_000_000,
    status,
    model: body?.model ?? 'gpt-4o-mini',
    output,
    usage: status === 'completed' ? { input_tokens: 5, output_tokens: 3, total_tokens: 8, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } } : null,
  });
  if (!body?.stream) {
    res.writeHead(200, { ...headers, 'content-type': 'application/json' });
    res.end(JSON.stringify(response('completed', [item])));
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': 'text/event-stream' });
  const chunkDelay = Number(h(req, 'x-mock-chunk-delay-ms') ?? 0);
  let seq = 0;
  const send = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
  send('response.created', { response: response('in_progress', []) });
  send('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
  send('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
  for (const delta of words) {
    if (res.destroyed) return;
    send('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta, logprobs: [] });
    if (chunkDelay) await sleep(chunkDelay);
  }
  if (res.destroyed) return;
  send('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text: words.join(''), logprobs: [] });
  send('response.content_part.done', { item_id: item.id, output_index: 0, content_index: 0, part: item.content[0] });
  send('response.output_item.done', { output_index: 0, item });
  send('response.completed', { response: response('completed', [item]) });
  res.end();
}

/**
 * Writes the 200 head and returns where the body goes: the response itself, or a compressor
 * in front of it (x-mock-encoding) that flushes every write, as a streaming server would.
 */
function encodedBody(req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): { write(s: string): void; end(s?: string): void } {
  const coding = h(req, 'x-mock-encoding');
  res.writeHead(200, coding ? { ...headers, 'content-encoding': coding } : headers);
  const compressor: Gzip | BrotliCompress | undefined =
    coding === 'gzip' ? createGzip() : coding === 'deflate' ? createDeflate() : coding === 'br' ? createBrotliCompress() : undefined;
  if (!compressor) return res;
  compressor.pipe(res);
  return {
    write: (s) => {
      compressor.write(s);
      compressor.flush(coding === 'br' ? zlib.BROTLI_OPERATION_FLUSH : zlib.Z_SYNC_FLUSH);
    },
    end: (s) => compressor.end(s),
  };
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
