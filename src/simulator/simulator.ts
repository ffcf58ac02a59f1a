/**
 * The built-in simulated upstream: answers OpenAI chat completions (streaming and not),
 * `GET /models` and `GET /models/{model}` in-process, deterministically, with usage. It is
 * the embedded default, so `npm start` works without a key or a network, and the demo runs
 * on it.
 *
 * Deterministic: the reply text and token counts depend only on the request (messages,
 * model, and the parameters `reply.ts` honours); `id` is derived from the messages and model.
 * `created` is the current time, as OpenAI's is. Invalid parameters get OpenAI's 400 shape.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { invalidRequest, replyFor, type ChatBody, type SimulatedReply } from './reply.js';

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

const encoder = new TextEncoder();

/** Handles one request to the simulated upstream. `path` is relative to the API root (`/chat/completions`). */
export async function simulate(
  options: SimulatorOptions,
  request: { method: string; path: string; body: unknown; signal: AbortSignal },
): Promise<SimulatedResponse> {
  const route = request.path.split('?')[0];
  const model = { id: options.model, object: 'model', created: 1_700_000_000, owned_by: 'promptgate' };
  if (request.method === 'GET' && route === '/models') return json(200, { object: 'list', data: [model] });
  // openai-node's `models.retrieve`: the model it lists, else OpenAI's 404 for an unknown model.
  if (request.method === 'GET' && route.startsWith('/models/')) {
    const id = decodePathSegment(route.slice('/models/'.length));
    if (id === options.model) return json(200, model);
    return json(404, { error: { message: `The model '${id}' does not exist`, type: 'invalid_request_error', param: 'model', code: 'model_not_found' } });
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
  const invalid = invalidRequest(body);
  if (invalid) return json(400, { error: { message: invalid.message, type: 'invalid_request_error', param: invalid.param, code: invalid.code } });

  let reply: SimulatedReply;
  try {
    reply = replyFor(body);
  } catch (err) {
    // An enum or const value nested thousands deep outruns JSON.stringify's stack; OpenAI refuses such a schema too.
    if (!(err instanceof RangeError)) throw err;
    return json(400, { error: { message: 'The request is nested too deeply.', type: 'invalid_request_error', param: null, code: 'invalid_value' } });
  }
  const completionTokens = reply.choices.reduce((sum, c) => sum + c.completionTokens, 0);
  const usage = {
    prompt_tokens: reply.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: reply.promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
  const created = Math.floor(Date.now() / 1000);
  const common = { id: reply.id, created, model: body.model, system_fingerprint: 'fp_promptgate_sim' };
  const headers = { 'x-request-id': `req_sim_${reply.id.slice(9)}`, 'openai-processing-ms': String(Math.round(options.latency_ms)) };

  if (body.stream !== true) {
    await sleep(options.latency_ms, undefined, { signal: request.signal });
    return json(
      200,
      {
        ...common,
        object: 'chat.completion',
        choices: reply.choices.map((c, index) => ({
          index,
          message: { role: 'assistant', content: c.content, ...(c.toolCall ? { tool_calls: [c.toolCall] } : {}), refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: c.finishReason,
        })),
        usage,
        service_tier: 'default',
      },
      headers,
    );
  }

  const includeUsage = body.stream_options?.include_usage === true;
  // Per choice, its content (or tool call arguments) in up to `chunks` pieces.
  const pieces = reply.choices.map((c) => (c.toolCall ? splitText(c.toolCall.function.arguments, options.chunks) : splitText(c.content ?? '', options.chunks)));
  const rounds = Math.max(...pieces.map((p) => p.length));
  const interval = options.chunk_interval_ms ?? options.latency_ms / Math.max(1, options.chunks);
  await sleep(options.latency_ms, undefined, { signal: request.signal });
  async function* events(): AsyncGenerator<Uint8Array> {
    const usageField = includeUsage ? { usage: null } : {};
    const chunk = (index: number, delta: object, finish: string | null) =>
      encoder.encode(`data: ${JSON.stringify({ ...common, object: 'chat.completion.chunk', service_tier: 'default', choices: [{ index, delta, logprobs: null, finish_reason: finish }], ...usageField })}\n\n`);
    // The first chunk of each choice has the role (and, for a tool call, its id and name).
    for (let index = 0; index < reply.choices.length; index++) {
      const call = reply.choices[index].toolCall;
      yield call
        ? chunk(index, { role: 'assistant', content: null, tool_calls: [{ index: 0, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }], refusal: null }, null)
        : chunk(index, { role: 'assistant', content: '', refusal: null }, null);
    }
    for (let round = 0; round < rounds; round++) {
      if (round > 0 && interval > 0) await sleep(interval, undefined, { signal: request.signal });
      for (let index = 0; index < reply.choices.length; index++) {
        const piece = pieces[index][round];
        if (piece === undefined) continue;
        yield reply.choices[index].toolCall ? chunk(index, { tool_calls: [{ index: 0, function: { arguments: piece } }] }, null) : chunk(index, { content: piece }, null);
      }
    }
    for (let index = 0; index < reply.choices.length; index++) yield chunk(index, {}, reply.choices[index].finishReason);
    if (includeUsage) {
      yield encoder.encode(`data: ${JSON.stringify({ ...common, object: 'chat.completion.chunk', service_tier: 'default', choices: [], usage })}\n\n`);
    }
    yield encoder.encode('data: [DONE]\n\n');
  }
  return { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...headers }, body: events() };
}

/**
 * `text` in `n` pieces (fewer only when it has fewer than `n` words), split at spaces, each
 * piece after the first starting with its space; joined, they are `text`.
 */
function splitText(text: string, n: number): string[] {
  const tokens = text.split(' ');
  const parts = Math.max(1, Math.min(n, tokens.length));
  const out: string[] = [];
  // Piece p gets tokens [p*len/parts, (p+1)*len/parts): sizes differ by at most one, none empty.
  for (let p = 0; p < parts; p++) {
    const from = Math.floor((p * tokens.length) / parts);
    out.push((p === 0 ? '' : ' ') + tokens.slice(from, Math.floor(((p + 1) * tokens.length) / parts)).join(' '));
  }
  return out;
}

function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // a malformed %-escape: the id as sent
  }
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
