/**
 * Token usage: read from an OpenAI `usage` object, or estimated with the gateway's
 * tokenizer when the upstream gives none (a stream without `stream_options.include_usage`,
 * a non-OpenAI upstream).
 *
 * Each encoding's vocabulary is read on first use (src/tokenizer, ~20 ms for o200k_base);
 * call `preloadTokenizer` at start-up to keep that out of a request.
 */
import { tokenCounter, type EncodingName } from '../tokenizer/index.js';
import { hasToolDefinitions, toolDefinitionTokensRemembered, type ToolDefinitions } from '../tokenizer/tool-definitions.js';
import { messageCalls } from './calls.js';
import type { Usage } from './types.js';

export type { EncodingName };

/** OpenAI cookbook "How to count tokens": 3 tokens frame each message, 1 more for `name`. */
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
/** Every reply is primed with `<|start|>assistant<|message|>`. */
const REPLY_PRIMING_TOKENS = 3;

/**
 * Reads OpenAI's usage object (chat completions `prompt_tokens`/`completion_tokens`, or the
 * Responses API `input_tokens`/`output_tokens`) with the cached, reasoning and audio details
 * when present (DeepSeek's `prompt_cache_hit_tokens` when the details give no cached count).
 * Missing or null details count 0 (audio counts are set only when above 0). Output tokens
 * include the reasoning tokens, also from an upstream that leaves them out of its
 * `completion_tokens` (xAI, Gemini: `total_tokens` counts them). Returns undefined when no
 * token count is there.
 *
 * @example
 * usageFromOpenAI({ prompt_tokens: 12, completion_tokens: 5, prompt_tokens_details: null })
 * // { inputTokens: 12, outputTokens: 5, cachedInputTokens: 0, reasoningTokens: 0, estimated: false }
 */
export function usageFromOpenAI(u: unknown): Usage | undefined {
  if (!isObject(u)) return undefined;
  const input = count(u.prompt_tokens) ?? count(u.input_tokens);
  const output = count(u.completion_tokens) ?? count(u.output_tokens);
  if (input === undefined && output === undefined) return undefined;
  const inputDetails = u.prompt_tokens_details ?? u.input_tokens_details;
  const outputDetails = u.completion_tokens_details ?? u.output_tokens_details;
  const inputTokens = input ?? 0;
  const completion = output ?? 0;
  const total = count(u.total_tokens);
  let reasoning = isObject(outputDetails) ? (count(outputDetails.reasoning_tokens) ?? 0) : 0;
  // OpenAI counts reasoning inside `completion_tokens` (total = prompt + completion). Some
  // upstreams leave it out and bill it as output all the same: xAI reports it beside them
  // (`reasoning_tokens`, total = prompt + completion + reasoning), Gemini's OpenAI endpoint
  // only in `total_tokens` (its thinking). Such tokens are output, and reasoning.
  // Without a total there is no telling: a reasoning count above the completion's is clamped.
  const hidden = input !== undefined && total !== undefined && total > input + completion ? total - input - completion : 0;
  if (hidden > reasoning) reasoning = hidden;
  const outputTokens = completion + hidden;
  const usage: Usage = {
    inputTokens,
    outputTokens,
    // DeepSeek (and servers copying it) report cache hits as `prompt_cache_hit_tokens`,
    // older versions without `prompt_tokens_details`.
    cachedInputTokens: Math.min((isObject(inputDetails) ? count(inputDetails.cached_tokens) : undefined) ?? count(u.prompt_cache_hit_tokens) ?? 0, inputTokens),
    reasoningTokens: Math.min(reasoning, outputTokens),
    estimated: false,
  };
  // Audio (gpt-4o-audio-preview): priced apart, or the cost is unknown (`costOf`).
  const audioIn = Math.min(isObject(inputDetails) ? (count(inputDetails.audio_tokens) ?? 0) : 0, inputTokens);
  const audioOut = Math.min(isObject(outputDetails) ? (count(outputDetails.audio_tokens) ?? 0) : 0, outputTokens);
  if (audioIn > 0) usage.audioInputTokens = audioIn;
  if (audioOut > 0) usage.audioOutputTokens = audioOut;
  return usage;
}

/**
 * Counts tokens the way OpenAI bills a chat completion, approximately: per message 3 tokens
 * plus its role, content and name (`name` costs 1 more), plus 3 for the reply priming; the
 * completion text as is. Text parts and calls (a function's name and arguments, in
 * `tool_calls` or the legacy `function_call`; a `custom` tool's name and input) are counted;
 * images and audio are not. The request's `tools` definitions are not counted here: the
 * caller adds `toolTokensOnce` of the request, counted once for all its checks. A text over
 * MAX_EXACT_CHARS is counted on a sample (`sampledCount`).
 *
 * @param requestMessages the `messages` array as sent upstream (anything else counts 0)
 * @param model picks the encoding: o200k_base for gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and the
 *   o-series (and unknown models), cl100k_base for gpt-4, gpt-3.5 and the embeddings
 */
export function estimateUsage(requestMessages: unknown, completion: string | readonly string[], model: string | undefined): Usage {
  // Special tokens such as `<|endoftext|>` in user text count as text.
  const counter = tokenCounter(encodingFor(model));
  const tokens = (text: string) => (text.length <= MAX_EXACT_CHARS ? counter.count(text) : sampledCount(counter, text));
  let input = 0;
  if (Array.isArray(requestMessages)) {
    for (const message of requestMessages) {
      if (!isObject(message)) continue;
      input += TOKENS_PER_MESSAGE + tokens(stringOf(message.role)) + messageTextTokens(message, tokens);
    }
    input += REPLY_PRIMING_TOKENS;
  }
  // Several choices (n > 1): each is its own text, counted on its own.
  let output = 0;
  for (const text of typeof completion === 'string' ? [completion] : completion) output += tokens(text);
  return { inputTokens: input, outputTokens: output, cachedInputTokens: 0, reasoningTokens: 0, estimated: true };
}

/**
 * Texts up to this many characters are counted exactly; a longer one (a 64 MB answer
 * without usage) is counted on its first MAX_EXACT_CHARS and scaled by length, so an
 * estimate never blocks the gateway for seconds.
 */
const MAX_EXACT_CHARS = 1 << 20;

function sampledCount(counter: { count(text: string): number }, text: string): number {
  return Math.round(counter.count(text.slice(0, MAX_EXACT_CHARS)) * (text.length / MAX_EXACT_CHARS));
}

/** The tiktoken encoding of a model family (OpenAI's `tiktoken/model.py` mapping). */
export function encodingFor(model: unknown): EncodingName {
  // A fine-tuned model (`ft:gpt-3.5-turbo-0125:org::id`) uses its base model's encoding.
  // A model that is not a string (a client's `"model": 5`, refused later) counts as o200k_base.
  const name = (typeof model === 'string' ? model : '').toLowerCase().replace(/^.*\//, '').replace(/^ft:/, '');
  if (/^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o\d)/.test(name)) return 'o200k_base';
  if (/^(?:gpt-4|gpt-3\.5|gpt-35|text-embedding-)/.test(name)) return 'cl100k_base';
  return 'o200k_base';
}

/** The tool-definition counter of a request without tools: nothing to count or to hold. */
export const NO_TOOL_TOKENS = (): number => 0;

/**
 * The tokens of a request's tool definitions (`toolDefinitionTokensRemembered`), counted on
 * the first call and kept: one look-up per request, however many checks read it (the
 * context budget, `max_input_tokens`, the usage estimate), and none for a request whose
 * checks never ask (its upstream reports usage). They are counted in the encoding of the
 * model the request goes to, or of `model` when given: an estimate counts the messages in
 * the answering model's encoding (an Azure deployment's name says nothing of its model), and
 * the tools must be counted in the same one. A tool list seen before in this process is not
 * counted again; tools nested too deeply to serialise count 0 (`uncountedIfTooDeep`). A
 * request without tools gets `NO_TOOL_TOKENS`. One per request, not shared; it holds the
 * request's tool lists for as long as it is held.
 *
 * @example
 * const toolTokens = toolTokensOnce(body);
 * if (maxInput !== undefined) total += toolTokens();
 * estimate.inputTokens += toolTokens(responseModel);
 */
export function toolTokensOnce(request: ToolDefinitions & { model?: unknown }): (model?: unknown) => number {
  if (!hasToolDefinitions(request)) return NO_TOOL_TOKENS;
  const definitions: ToolDefinitions = { tools: request.tools, functions: request.functions };
  const requestModel = request.model;
  let countedIn: EncodingName | undefined;
  let tokens = 0;
  return (model = requestModel) => {
    const encoding = encodingFor(model);
    if (encoding !== countedIn) {
      tokens = uncountedIfTooDeep(() => toolDefinitionTokensRemembered(definitions, encoding));
      countedIn = encoding;
    }
    return tokens;
  };
}

/**
 * A count that never throws for a client's nesting: JSON.stringify runs out of stack (a
 * RangeError) on a schema nested some thousands deep, and the count is also read where
 * nothing may throw (a stream's end, after the answer went out). Such tools count 0: an
 * estimate of what cannot be read; a body that deep is refused (400 `invalid_request`,
 * nested too deeply) wherever the gateway serialises it, and no upstream takes such a schema.
 */
function uncountedIfTooDeep(count: () => number): number {
  try {
    return count();
  } catch (err) {
    if (err instanceof RangeError) return 0;
    throw err;
  }
}

/** Loads the encoding `estimateUsage` will need for this model now rather than in a request. */
export function preloadTokenizer(model?: string): void {
  tokenCounter(encodingFor(model));
}

/**
 * Tokens of one chat message besides its framing and role, `count` giving a text's: each
 * text part of its content on its own (joined by line breaks, parts that end in a letter
 * would each count a token the prompt does not have), its `name` and 1 for it (OpenAI bills
 * a multi-agent conversation's names), a `refusal` (an assistant turn that refused, sent back
 * as history: the model reads it as any answer), and its calls' names and arguments (an
 * agent's `write_file` call carries a whole file). Images and audio are not counted. The one
 * rule of the usage estimate, the context budget and `max_input_tokens` (context/tokens.ts).
 */
export function messageTextTokens(message: Record<string, unknown>, count: (text: string) => number): number {
  let n = contentTokens(message.content, count);
  if (typeof message.name === 'string') n += TOKENS_PER_NAME + count(message.name);
  if (typeof message.refusal === 'string') n += count(message.refusal);
  for (const call of messageCalls(message)) n += count(call.name ?? '') + count(call.arguments);
  return n;
}

function contentTokens(content: unknown, tokens: (text: string) => number): number {
  if (typeof content === 'string') return tokens(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (isObject(part) && typeof part.text === 'string') n += tokens(part.text);
  }
  return n;
}

/**
 * Above any request's token count (context windows are a few million tokens): a larger
 * number in a usage object is no count (a broken or hostile upstream's `1.7e308` would
 * price as a 300-digit cost and take `promptgate_tokens_total` to +Inf for good).
 */
const MAX_TOKEN_COUNT = 1_000_000_000;

function count(v: unknown): number | undefined {
  return typeof v === 'number' && v >= 0 && v <= MAX_TOKEN_COUNT ? Math.floor(v) : undefined;
}

function stringOf(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
