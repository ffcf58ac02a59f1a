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
    const raw = await readAll(req);
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = null;
    }
    state.requests.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: [...req.rawHeaders], raw, body });
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
      const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
      const payload = JSON.stringify({ error: { message: `mock ${status}`, type, param: null, code: status === 429 ? 'rate_limit_exceeded' : null } });
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
  const toolCall = h(req, 'x-mock-tool-call') ? { id: 'call_mock1', type: 'function', function: TOOL_CALL } : undefined;

  if (!body?.stream) {
    encodedBody(req, res, { ...headers, 'content-type': 'application/json' }).end(
      JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          toolCall
            ? { index: 0, message: { role: 'assistant', content: null, tool_calls: [toolCall], refusal: null }, logprobs: null, finish_reason: 'tool_calls' }
            : { index: 0, message: { role: 'assistant', content: STREAM_WORDS.join(''), refusal: null }, logprobs: null, finish_reason: 'stop' },
        ],
        ...(usage ? { usage } : {}),
      }),
    );
    return;
  }

  const out = encodedBody(req, res, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const includeUsage = body.stream_options?.include_usage === true && usage !== undefined;
  const chunkDelay = Number(h(req, 'x-mock-chunk-delay-ms') ?? 0);
  const stallAfter = h(req, 'x-mock-stall-after');
  const resetMid = h(req, 'x-mock-reset') === 'mid';
  const event = (choices: unknown[], extra: object = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`;

  const chunks: string[] = [];
  if (toolCall) {
    const { arguments: args, ...fn } = toolCall.function;
    const call = { index: 0, id: toolCall.id, type: 'function', function: { ...fn, arguments: '' } };
    chunks.push(event([{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [call] }, logprobs: null, finish_reason: null }]));
    for (const piece of [args.slice(0, 9), args.slice(9, 20), args.slice(20)]) {
      chunks.push(event([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }]));
    }
    chunks.push(event([{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }]));
  } else {
    chunks.push(event([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
    for (const w of STREAM_WORDS) chunks.push(event([{ index: 0, delta: { content: w }, logprobs: null, finish_reason: null }]));
    chunks.push(event([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
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
    out.write(chunks[i]);
    if (chunkDelay) await sleep(chunkDelay);
  }
  out.end();
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

function readAll(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
