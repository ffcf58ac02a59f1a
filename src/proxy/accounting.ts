/**
 * Step 7 (DESIGN.md "One request"): what a finished upstream answer is worth — response id
 * and model, finish reasons, usage (from the body or the stream's last chunk; counted with a
 * tokenizer and marked `estimated` when the upstream gave none), and cost at the answering
 * upstream's prices. Writes onto the exchange's record; `finish` hands it to telemetry.
 */
import { estimateUsage, NO_TOOL_TOKENS, usageFromOpenAI } from '../telemetry/usage.js';
import type { Usage } from '../telemetry/types.js';
import { messageCalls } from '../telemetry/calls.js';
import { redact } from '../telemetry/redact.js';
import type { CompletionChoice } from '../telemetry/genai-messages.js';
import type { Exchange } from './exchange.js';
import { replyText } from './stream-text.js';
import type { StreamEnd } from './sse-relay.js';
import type { StreamSummary } from './sse-scanner.js';
import type { Upstream, UpstreamResponse } from './upstream.js';

/** Cost of the request's usage at the answering upstream's prices; null for an unknown model. */
export function priceUsage(exchange: Exchange, upstream: Upstream): number | null | undefined {
  const r = exchange.record;
  if (!r.usage) return undefined;
  r.costUsd = upstream.spec.priceBook.cost(r.usage, r.responseModel ?? r.requestModel, r.serviceTier);
  return r.costUsd;
}

/** UTF-8, a leading byte order mark dropped: the body as the clients read it (fetch's `json()`, Python's `json.loads`). */
const utf8 = new TextDecoder();

/** The most of an upstream's request id kept (OpenAI's are 36 characters: `req_` and 32 hex digits). */
const MAX_REQUEST_ID = 128;
/**
 * What an upstream request id keeps (`*` too: the redactor's mask stays readable,
 * `Bearer_***`); anything else (control characters, quotes, spaces, non-ASCII) becomes `_`.
 */
const REQUEST_ID_UNSAFE = /[^A-Za-z0-9._:/+=*-]/g;
/**
 * An error code as recorded: a short token (`insufficient_quota`, `rate_limit_exceeded`,
 * vLLM's numeric `400`). Anything longer or with other characters may be a sentence that
 * echoes the request (or a key), and is not recorded.
 */
const ERROR_CODE = /^[A-Za-z0-9_.:-]{1,64}$/;
/** An error envelope is a few hundred bytes: a larger error body is not parsed for its code. */
export const MAX_ERROR_BYTES = 64 * 1024;

/**
 * Notes the upstream's request id (`x-request-id`, what OpenAI SDKs expose as `_request_id`)
 * of the answer the client gets, for the log line and the CLIENT span. The header is the
 * upstream's (or a proxy's before it): redacted, then cut and reduced to safe characters.
 * In that order: a keyless pass-through upstream may echo the client's `Bearer sk-...` in it,
 * and once its space is a `_` the log and span redactor no longer sees a credential there.
 */
export function noteUpstreamAnswer(exchange: Exchange, headers: UpstreamResponse['headers']): void {
  const value = headers['x-request-id'];
  const id = (Array.isArray(value) ? value[0] : value)?.trim();
  if (id) exchange.record.upstreamRequestId = redact(id).slice(0, MAX_REQUEST_ID).replace(REQUEST_ID_UNSAFE, '_');
}

/**
 * Notes the error code of an upstream error answer (status >= 400) read whole: the OpenAI
 * envelope's `error.code`, or `error.type` when there is no code. A body that is not that
 * envelope (an HTML 502 page) has none. Never the message. Only error answers are parsed
 * here: a success is read by `readCompletion`.
 */
export function noteUpstreamError(exchange: Exchange, bytes: Buffer): void {
  if (bytes.byteLength > MAX_ERROR_BYTES) return;
  let obj: { error?: unknown; object?: unknown } | null;
  try {
    obj = JSON.parse(utf8.decode(bytes));
  } catch {
    return;
  }
  // vLLM (before 0.10) answers a bare error object: `{"object":"error","message","type","code":400}`.
  const code = errorCodeOf(obj?.object === 'error' ? obj : obj?.error);
  if (code !== undefined) exchange.record.upstreamErrorCode = code;
}

/** `code`, else `type`, of an OpenAI error object (or vLLM's bare error), when it is a short safe token. */
function errorCodeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, type } = error as { code?: unknown; type?: unknown };
  for (const value of [code, type]) {
    const text = typeof value === 'string' ? value : Number.isSafeInteger(value) ? String(value) : undefined;
    if (text !== undefined && ERROR_CODE.test(text)) return text;
  }
  return undefined;
}

/**
 * Reads a non-stream chat completion body (a body with only an `error` is accounted as one).
 * `toolTokens` (the request's `toolTokensOnce`) is called only when the body has no usage.
 */
export function readCompletion(exchange: Exchange, bytes: Buffer, requestMessages: unknown[], toolTokens: (model?: unknown) => number = NO_TOOL_TOKENS): void {
  let obj: Record<string, unknown> | undefined;
  try {
    obj = JSON.parse(utf8.decode(bytes));
  } catch {
    obj = undefined;
  }
  const r = exchange.record;
  if (!obj || typeof obj !== 'object') return;
  if (typeof obj.id === 'string') r.responseId = obj.id;
  if (typeof obj.service_tier === 'string') r.serviceTier = obj.service_tier;
  // An empty model names nothing to price (as a stream's empty model, skipped by the relay).
  if (typeof obj.model === 'string' && obj.model !== '') r.responseModel = obj.model;
  const choices = Array.isArray(obj.choices) ? (obj.choices as Array<Record<string, unknown>>) : [];
  // An error sent with a 200 (OpenRouter, some local servers; vLLM's bare `"object":"error"`):
  // a failure, as with an error status; no answer, so no tokens estimated for it.
  if (choices.length === 0 && ((obj.error !== undefined && obj.error !== null) || obj.object === 'error')) {
    r.outcome = 'error';
    r.errorType = 'upstream_error_body';
    r.upstreamErrorCode = errorCodeOf(obj.error ?? obj);
    return;
  }
  r.finishReasons = choices.map((c) => c.finish_reason).filter((f): f is string => typeof f === 'string' && f !== '');
  const replies = () => choices.map((c) => replyText(c.message));
  r.usage = usageFromOpenAI(obj.usage) ?? estimated(requestMessages, replies(), r.responseModel ?? r.requestModel ?? '', toolTokens);
  if (exchange.content.captureContent) exchange.content.completion = completionChoices(choices);
}

/** A non-stream answer's choices as content capture keeps them, in index order. */
function completionChoices(choices: ReadonlyArray<Record<string, unknown>>): CompletionChoice[] {
  const indexed = choices.map((c, i) => ({ c, index: typeof c.index === 'number' ? c.index : i }));
  indexed.sort((a, b) => a.index - b.index);
  return indexed.map(({ c }) => {
    const message = (c.message ?? {}) as { content?: unknown };
    return {
      content: typeof message.content === 'string' ? message.content : '',
      toolCalls: [...messageCalls(message)],
      finishReason: typeof c.finish_reason === 'string' && c.finish_reason !== '' ? c.finish_reason : undefined,
    };
  });
}

/**
 * Usage of a successful answer whose body the gateway cannot read (a content coding it
 * cannot decode): the request's tokens (messages and tool definitions) are counted, the
 * output's are unknown (0), and the usage is marked `estimated`.
 */
export function estimateUnread(exchange: Exchange, requestMessages: unknown[], toolTokens: (model?: unknown) => number = NO_TOOL_TOKENS): void {
  const r = exchange.record;
  r.usage = estimated(requestMessages, [], r.requestModel ?? '', toolTokens);
}

/** The request as an estimate counts it: the messages sent upstream and its tool definitions' tokens (`toolTokensOnce`). */
export interface EstimatedPrompt {
  messages: unknown[];
  toolTokens: (model?: unknown) => number;
}

/**
 * The estimate of an answer without usage, in the encoding of `model` (the answering one
 * when the upstream names it): the messages and the reply, and the request's tool
 * definitions counted in the same encoding (OpenAI bills them as prompt).
 */
function estimated(messages: unknown, replies: readonly string[], model: string, toolTokens: (model?: unknown) => number): Usage {
  const usage = estimateUsage(messages, replies, model);
  usage.inputTokens += toolTokens(model);
  return usage;
}

/**
 * Accounts a relayed stream when it ends, for any reason, and finishes the exchange.
 * `requestPrompt` is called only when the stream brought no usage (to estimate it).
 */
export function finishStream(exchange: Exchange, upstream: Upstream, summary: StreamSummary, end: StreamEnd, requestPrompt: () => EstimatedPrompt): void {
  const r = exchange.record;
  r.responseId = summary.id;
  r.responseModel = summary.model;
  r.finishReasons = summary.finishReasons;
  if (summary.serviceTier !== undefined) r.serviceTier = summary.serviceTier;
  // The time to the first chunk: none when no chunk came (the headers' time is no start of an answer).
  r.ttfbMs = summary.firstEventAt !== undefined ? summary.firstEventAt - exchange.startedAt : undefined;
  // The stream's error event, already parsed by the relay.
  if (summary.upstreamError !== undefined) r.upstreamErrorCode = errorCodeOf(summary.upstreamError);
  // Nothing came at all (no chunk, no `[DONE]`, no usage): a proxy's error page sent as a
  // 200, an upstream that closed at once. No answer, so nothing is billed, as for a non-stream
  // 200 that is an error body.
  if (end.outcome === 'ok' && summary.firstEventAt === undefined && !summary.sawDone && summary.usage === undefined && summary.upstreamError === undefined) {
    exchange.finish({ outcome: 'error', errorType: 'upstream_empty_stream' });
    return;
  }
  let usage: Usage | undefined = usageFromOpenAI(summary.usage);
  const text = !usage ? summary.text.text() : { content: '', replies: [], scale: 1 };
  // No usage (upstream without it, or a stream cut before its last chunk): count, and say
  // so. A long stream kept a sample of its text: its output tokens scale with its length.
  if (!usage) {
    const prompt = requestPrompt();
    usage = estimated(prompt.messages, text.replies, r.responseModel ?? r.requestModel ?? '', prompt.toolTokens);
    if (text.scale !== 1) usage.outputTokens = Math.round(usage.outputTokens * text.scale);
  }
  r.usage = usage;
  if (exchange.content.captureContent) exchange.content.completion = summary.text.choices();
  priceUsage(exchange, upstream);
  if (end.outcome === 'ok') exchange.finish({ outcome: 'ok' });
  // openai-node throws on the upstream's error event and closes the connection at once: a
  // client gone after that event left because the request failed upstream.
  else if (end.outcome === 'client_abort' && summary.upstreamError !== undefined) exchange.finish({ outcome: 'error', errorType: 'upstream_stream_error' });
  else if (end.outcome === 'client_abort') exchange.finish({ outcome: 'client_abort', errorType: 'client_abort' });
  else exchange.finish({ outcome: 'error', errorType: end.errorType });
}
