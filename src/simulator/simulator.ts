/**
 * The built-in simulated upstream: answers OpenAI chat completions (streaming and not) and
 * `GET /models` in-process, deterministically, with usage. It is the embedded default, so
 * `npm start` works without a key or a network, and the demo runs on it.
 *
 * Deterministic: the reply text and token counts depend only on the request messages and
 * model; `id` is derived from them too. `created` is the current time, as OpenAI's is.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SimulatorOptions {
  latency_ms: number;
  chunks: number;
  chunk_interval_ms?: number;
  model: string;
}

export interface SimulatedResponse {
  status: number;
  headers: Record<string, string>;
  body: AsyncIterable<Uint8Array>;
}

const WORDS = (
  'thanks for reaching out here is a short simulated answer from the promptgate simulator ' +
  'it is deterministic so tests and demos see the same text for the same request every time ' +
  'set OPENAI_API_KEY to forward requests to a real model instead'
).split(' ');

const encoder = new TextEncoder();

/** Handles one request to the simulated upstream. `path` is relative to the API root (`/chat/completions`). */
export async function simulate(
  options: SimulatorOptions,
  request: { method: string; path: string; body: unknown; signal: AbortSignal },
): Promise<SimulatedResponse> {
  const route = request.path.split('?')[0];
  if (request.method === 'GET' && route === '/models') {
    return json(200, {
      object: 'list',
      data: [{ id: options.model, object: 'model', created: 1_700_000_000, owned_by: 'promptgate' }],
    });
  }
  if (request.method !== 'POST' || route !== '/chat/completions') {
    return json(404, { error: { message: `Unknown route ${request.method} ${route} on the simulator.`, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
  }
  const body = request.body as ChatBody | null;
  if (!body || !Array.isArray(body.messages) || body.messages.length === 0) {
    return json(400, { error: { message: "Missing required parameter: 'messages'.", type: 'invalid_request_error', param: 'messages', code: 'missing_required_parameter' } });
  }
  if (typeof body.model !== 'string' || body.model === '') {
    return json(400, { error: { message: "Missing required parameter: 'model'.", type: 'invalid_request_error', param: 'model', code: 'missing_required_parameter' } });
  }

  const reply = replyFor(body);
  const usage = {
    prompt_tokens: reply.promptTokens,
    completion_tokens: reply.words.length,
    total_tokens: reply.promptTokens + reply.words.length,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
  const created = Math.floor(Date.now() / 1000);
  const common = { id: reply.id, created, model: body.model, system_fingerprint: 'fp_promptgate_sim' };
  const headers = { 'x-request-id': `req_sim_${reply.id.slice(9)}`, 'openai-processing-ms': String(Math.round(options.latency_ms)) };

  if (!body.stream) {
    await sleep(options.latency_ms, undefined, { signal: request.signal });
    return json(
      200,
      {
        ...common,
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: reply.words.join(' '), refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
        usage,
        service_tier: 'default',
      },
      headers,
    );
  }

  const includeUsage = body.stream_options?.include_usage === true;
  const pieces = split(reply.words, options.chunks);
  const interval = options.chunk_interval_ms ?? options.latency_ms / Math.max(1, options.chunks);
  await sleep(options.latency_ms, undefined, { signal: request.signal });
  async function* events(): AsyncGenerator<Uint8Array> {
    const chunk = (delta: object, finish: string | null, extra: object = {}) =>
      encoder.encode(`data: ${JSON.stringify({ ...common, object: 'chat.completion.chunk', service_tier: 'default', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra })}\n\n`);
    const usageField = includeUsage ? { usage: null } : {};
    yield chunk({ role: 'assistant', content: '', refusal: null }, null, usageField);
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0 && interval > 0) await sleep(interval, undefined, { signal: request.signal });
      yield chunk({ content: (i === 0 ? '' : ' ') + pieces[i] }, null, usageField);
    }
    yield chunk({}, 'stop', usageField);
    if (includeUsage) {
      yield encoder.encode(`data: ${JSON.stringify({ ...common, object: 'chat.completion.chunk', service_tier: 'default', choices: [], usage })}\n\n`);
    }
    yield encoder.encode('data: [DONE]\n\n');
  }
  return { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...headers }, body: events() };
}

interface ChatBody {
  model?: unknown;
  messages: Array<{ role?: string; content?: unknown }>;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_tokens?: number;
  max_completion_tokens?: number;
}

function replyFor(body: ChatBody): { id: string; words: string[]; promptTokens: number } {
  const text = body.messages.map((m) => `${m.role ?? ''}:${contentText(m.content)}`).join('\n');
  const digest = createHash('sha256').update(String(body.model)).update('\0').update(text).digest();
  const limit = body.max_completion_tokens ?? body.max_tokens;
  let count = 12 + (digest[0] % 24);
  if (typeof limit === 'number' && limit > 0) count = Math.min(count, limit);
  const words: string[] = [];
  for (let i = 0; i < count; i++) words.push(WORDS[(digest[1 + (i % 30)] + i) % WORDS.length]);
  // Roughly OpenAI's accounting: ~4 characters a token, 3 tokens per message, 3 to prime the reply.
  const promptTokens = body.messages.reduce((n, m) => n + 3 + Math.ceil(contentText(m.content).length / 4), 3);
  return { id: `chatcmpl-${digest.subarray(0, 12).toString('hex')}`, words, promptTokens };
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join('');
  return '';
}

function split(words: string[], n: number): string[] {
  const parts = Math.max(1, Math.min(n, words.length));
  const out: string[] = [];
  const size = Math.ceil(words.length / parts);
  for (let i = 0; i < words.length; i += size) out.push(words.slice(i, i + size).join(' '));
  return out;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): SimulatedResponse {
  const bytes = encoder.encode(JSON.stringify(body));
  return {
    status,
    headers: { 'content-type': 'application/json', 'content-length': String(bytes.byteLength), ...headers },
    body: (async function* () {
      yield bytes;
    })(),
  };
}
