// @ts-check
/**
 * The benchmark's upstream: a minimal, fast OpenAI-compatible chat completions server.
 * Plain JavaScript run by plain `node` (no loader) in its own process.
 *
 *   POST /v1/chat/completions
 *     non-stream: one JSON completion with usage;
 *     "stream": true: 8 content chunks, a usage chunk when stream_options.include_usage
 *     is true (then every chunk also carries "usage": null, as OpenAI does), then [DONE].
 *   POST /v1/traces      an OTLP/HTTP trace sink for the gateway's exporter (answers 200,
 *                        counts the exports); GET /_bench/stats returns the count.
 *   x-bench-hold-ms: N   stream: send the first chunk, then hold the stream until
 *                        POST /_bench/release (or N ms at most), then finish it
 *                        (the 1,000-open-streams memory scenario).
 *
 * Responses are precomputed: the mock should cost as little CPU as possible, since it
 * shares the machine with the process under test. Prints `READY <port>` once listening.
 */
import { createServer } from 'node:http';

const ID = 'chatcmpl-bench0001';
const CREATED = 1_700_000_000;
const MODEL = 'gpt-4o-mini-2024-07-18';
const WORDS = ['Hello', ' from', ' the', ' bench', ' mock', ' upstream', ' right', ' now.'];
const USAGE = { prompt_tokens: 42, completion_tokens: 8, total_tokens: 50, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } };
const HOLD_MAX_MS = 120_000;

const completion = Buffer.from(
  JSON.stringify({
    id: ID,
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [{ index: 0, message: { role: 'assistant', content: WORDS.join(''), refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: USAGE,
    system_fingerprint: 'fp_bench',
  }),
);

/** @param {boolean} includeUsage */
function streamChunks(includeUsage) {
  /** @param {unknown[]} choices */
  const event = (choices) =>
    `data: ${JSON.stringify({ id: ID, object: 'chat.completion.chunk', created: CREATED, model: MODEL, system_fingerprint: 'fp_bench', choices, ...(includeUsage ? { usage: null } : {}) })}\n\n`;
  const chunks = [event([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }])];
  for (const w of WORDS.slice(0, -1)) chunks.push(event([{ index: 0, delta: { content: w }, logprobs: null, finish_reason: null }]));
  chunks.push(event([{ index: 0, delta: { content: WORDS[WORDS.length - 1] }, logprobs: null, finish_reason: 'stop' }]));
  if (includeUsage) chunks.push(`data: ${JSON.stringify({ id: ID, object: 'chat.completion.chunk', created: CREATED, model: MODEL, system_fingerprint: 'fp_bench', choices: [], usage: USAGE })}\n\n`);
  chunks.push('data: [DONE]\n\n');
  return chunks.map((c) => Buffer.from(c));
}
const STREAM_PLAIN = streamChunks(false);
const STREAM_USAGE = streamChunks(true);

const JSON_HEADERS = { 'content-type': 'application/json', 'content-length': String(completion.byteLength), 'x-request-id': 'req_bench' };
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': 'req_bench' };

/** Streams held open by x-bench-hold-ms: each entry finishes its stream. */
/** @type {Set<() => void>} */
const held = new Set();
let traceExports = 0;

const server = createServer((req, res) => {
  /** @type {Buffer[]} */
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/_bench/release') {
      const n = held.size;
      for (const finish of [...held]) finish();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ released: n }));
      return;
    }
    if (req.method === 'POST' && req.url === '/v1/traces') {
      traceExports++;
      // An empty ExportTraceServiceResponse (OTLP/HTTP): a zero-length protobuf message.
      res.writeHead(200, { 'content-type': req.headers['content-type'] === 'application/json' ? 'application/json' : 'application/x-protobuf', 'content-length': req.headers['content-type'] === 'application/json' ? '2' : '0' });
      res.end(req.headers['content-type'] === 'application/json' ? '{}' : undefined);
      return;
    }
    if (req.method === 'GET' && req.url === '/_bench/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ traceExports, held: held.size }));
      return;
    }
    if (req.method !== 'POST' || !req.url?.startsWith('/v1/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}');
      return;
    }
    // Cheap checks, not a parse: the bench requests are known and compact.
    const raw = parts.length === 1 ? parts[0].toString('latin1') : Buffer.concat(parts).toString('latin1');
    if (!/"stream"\s*:\s*true/.test(raw)) {
      res.writeHead(200, JSON_HEADERS);
      res.end(completion);
      return;
    }
    const chunks = /"include_usage"\s*:\s*true/.test(raw) ? STREAM_USAGE : STREAM_PLAIN;
    res.writeHead(200, SSE_HEADERS);
    const hold = Math.min(Number(req.headers['x-bench-hold-ms'] ?? 0) || 0, HOLD_MAX_MS);
    if (hold > 0) {
      res.write(chunks[0]);
      const finish = () => {
        held.delete(finish);
        clearTimeout(timer);
        if (res.destroyed) return;
        for (let i = 1; i < chunks.length; i++) res.write(chunks[i]);
        res.end();
      };
      const timer = setTimeout(finish, hold);
      held.add(finish);
      res.on('close', () => {
        held.delete(finish);
        clearTimeout(timer);
      });
      return;
    }
    for (const c of chunks) res.write(c);
    res.end();
  });
});
server.keepAliveTimeout = 65_000; // outlive the clients' idle pools, so they close first
server.headersTimeout = 66_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`READY ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
