/**
 * Step 7 (DESIGN.md "One request"): what a finished upstream answer is worth — response id
 * and model, finish reasons, usage (from the body or the stream's last chunk; counted with a
 * tokenizer and marked `estimated` when the upstream gave none), and cost at the answering
 * upstream's prices. Writes onto the exchange's record; `finish` hands it to telemetry.
 */
import { estimateUsage, usageFromOpenAI } from '../telemetry/usage.js';
import type { Usage } from '../telemetry/types.js';
import type { CompletionChoice } from '../telemetry/genai-messages.js';
import type { Exchange } from './exchange.js';
import { replyText } from './stream-text.js';
import type { StreamEnd, StreamSummary } from './sse-relay.js';
import type { Upstream } from './upstream.js';

/** Cost of the request's usage at the answering upstream's prices; null for an unknown model. */
export function priceUsage(exchange: Exchange, upstream: Upstream): number | null | undefined {
  const r = exchange.record;
  if (!r.usage) return undefined;
  r.costUsd = upstream.spec.priceBook.cost(r.usage, r.responseModel ?? r.requestModel, r.serviceTier);
  return r.costUsd;
}

/** UTF-8, a leading byte order mark dropped: the body as the clients read it (fetch's `json()`, Python's `json.loads`). */
const utf8 = new TextDecoder();

/** Reads a non-stream chat completion body (a body with only an `error` is accounted as one). */
export function readCompletion(exchange: Exchange, bytes: Buffer, requestMessages: unknown[]): void {
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
    return;
  }
  r.finishReasons = choices.map((c) => c.finish_reason).filter((f): f is string => typeof f === 'string' && f !== '');
  const reply = () => choices.map((c) => replyText(c.message)).join('');
  r.usage = usageFromOpenAI(obj.usage) ?? estimateUsage(requestMessages, reply(), r.responseModel ?? r.requestModel ?? '');
  if (exchange.content.captureContent) exchange.content.completion = completionChoices(choices);
}

/** A non-stream answer's choices as content capture keeps them, in index order. */
function completionChoices(choices: ReadonlyArray<Record<string, unknown>>): CompletionChoice[] {
  const indexed = choices.map((c, i) => ({ c, index: typeof c.index === 'number' ? c.index : i }));
  indexed.sort((a, b) => a.index - b.index);
  return indexed.map(({ c }) => {
    const message = (c.message ?? {}) as { content?: unknown; tool_calls?: unknown };
    const calls = Array.isArray(message.tool_calls) ? (message.tool_calls as Array<{ id?: unknown; function?: { name?: unknown; arguments?: unknown } } | null>) : [];
    return {
      content: typeof message.content === 'string' ? message.content : '',
      toolCalls: calls.map((call) => ({
        id: typeof call?.id === 'string' ? call.id : undefined,
        name: typeof call?.function?.name === 'string' ? call.function.name : undefined,
        arguments: typeof call?.function?.arguments === 'string' ? call.function.arguments : '',
      })),
      finishReason: typeof c.finish_reason === 'string' && c.finish_reason !== '' ? c.finish_reason : undefined,
    };
  });
}

/**
 * Usage of a successful answer whose body the gateway cannot read (a content coding it
 * cannot decode): the request's tokens are counted, the output's are unknown (0), and the
 * usage is marked `estimated`.
 */
export function estimateUnread(exchange: Exchange, requestMessages: unknown[]): void {
  const r = exchange.record;
  r.usage = estimateUsage(requestMessages, '', r.requestModel ?? '');
}

/**
 * Accounts a relayed stream when it ends, for any reason, and finishes the exchange.
 * `requestMessages` is called only when the stream brought no usage (to estimate it).
 */
export function finishStream(exchange: Exchange, upstream: Upstream, summary: StreamSummary, end: StreamEnd, requestMessages: () => unknown[]): void {
  const r = exchange.record;
  r.responseId = summary.id;
  r.responseModel = summary.model;
  r.finishReasons = summary.finishReasons;
  if (summary.serviceTier !== undefined) r.serviceTier = summary.serviceTier;
  if (summary.firstEventAt !== undefined) r.ttfbMs = summary.firstEventAt - exchange.startedAt;
  let usage: Usage | undefined = usageFromOpenAI(summary.usage);
  const text = !usage ? summary.text.text() : { content: '', reply: '', scale: 1 };
  // No usage (upstream without it, or a stream cut before its last chunk): count, and say
  // so. A long stream kept a sample of its text: its output tokens scale with its length.
  if (!usage) {
    usage = estimateUsage(requestMessages(), text.reply, r.responseModel ?? r.requestModel ?? '');
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
