/**
 * What the pipeline knows about one finished request: the single input to accounting
 * (metrics, the request log line, experiment statistics). Built by `proxy/`, read by
 * `telemetry/`; one per request, not shared.
 */

/** Token counts as OpenAI reports them (OTel GenAI semconv: input includes cached tokens). */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
  /** `prompt_tokens_details.cached_tokens` (a subset of inputTokens). */
  cachedInputTokens: number;
  /** `completion_tokens_details.reasoning_tokens` (a subset of outputTokens). */
  reasoningTokens: number;
  /** `prompt_tokens_details.audio_tokens` (a subset of inputTokens), when there are any. */
  audioInputTokens?: number;
  /** `completion_tokens_details.audio_tokens` (a subset of outputTokens), when there are any. */
  audioOutputTokens?: number;
  /** True when counted by the gateway's tokenizer because the upstream gave no usage. */
  estimated: boolean;
}

export type RequestOutcome = 'ok' | 'error' | 'client_abort';

export interface RequestRecord {
  requestId: string;
  /** Route pattern, e.g. `/v1/chat/completions`, `/v1/*` (bounded, used as a label). */
  route: string;
  /** The request's path (cut to 100 characters), on requests no route serves (`route` `unmatched`) only: log line, never a label. */
  path?: string;
  method: string;
  status: number;
  outcome: RequestOutcome;
  /** Low-cardinality error class (`upstream_503`, `upstream_timeout`, `idle_timeout`, `client_abort`, an error code...). */
  errorType?: string;
  stream: boolean;
  /** Upstream that answered (the last one tried, or the one whose answer was passed over for a fallback that failed). */
  upstream?: string;
  provider?: string;
  requestModel?: string;
  responseModel?: string;
  responseId?: string;
  finishReasons?: string[];
  /** Attempts in all, on every upstream tried (first tries, retries, fallbacks). */
  attempts: number;
  /** Attempts on the upstreams tried before `upstream` (fallbacks), in order; `attempts` includes them. */
  earlierAttempts?: Array<{ upstream: string; provider: string; attempts: number }>;
  usage?: Usage;
  /** USD; null when the model has no known price, undefined when not applicable. */
  costUsd?: number | null;
  latencyMs: number;
  /**
   * The upstream's own request id (its `x-request-id` on the answer the client got), what
   * its provider's support asks for; cut to 128 characters, anything outside
   * `[A-Za-z0-9._:/+=-]` replaced by `_` (an untrusted header).
   */
  upstreamRequestId?: string;
  /**
   * `error.code` (`error.type` when the code is null) of an upstream error answer or stream
   * error event: `insufficient_quota` or `rate_limit_exceeded` under the same `upstream_429`.
   * Only a short token of safe characters, never the error's message.
   */
  upstreamErrorCode?: string;
  /** Time to the first byte (non-stream) or first chunk (stream) from the upstream. */
  ttfbMs?: number;
  template?: string;
  templateVersion?: string;
  experiment?: string;
  variant?: string;
  /**
   * How the variant was chosen: `hash` (the user id's bucket, inside the schedule) is the
   * only kind counted in the experiment statistics; `default` (the baseline, given without
   * hashing: no user id, outside the schedule, held back by the rollout) is counted apart.
   */
  experimentAssignment?: 'hash' | 'default';
  /** Present when the guard scanned the request. */
  injectionScore?: number;
  injectionFlagged?: boolean;
  /**
   * The guard's signals for the client's own text (messages, variables, tool results), when
   * the guard step scored it: names of the phrase families that fired, and `model`; never text.
   */
  injectionSignals?: string[];
  /** Context injection (context/): the recipe served and its statistics experiment (`<template>@<version>:context`). */
  contextRecipe?: string;
  contextExperiment?: string;
  /** How the recipe was chosen: `hash` (user id), `bandit`, or `default` (no user id: the first recipe). */
  contextRecipeAssignment?: 'hash' | 'bandit' | 'default';
  /** Tokens of injected context after the budget. */
  contextTokens?: number;
  /** Builders that contributed nothing (skipped or failed). */
  contextSkipped?: string[];
  /** `service_tier` of the answer (`default`, `flex`, `priority`...): flex and priority have their own prices. */
  serviceTier?: string;
  /** Tokens of the final prompt sent upstream (gateway tokenizer), when context was built and the span records (only the span reads it). */
  promptTokens?: number;
  /** Trace id for log correlation: the SERVER span's, or the incoming `traceparent`'s when tracing is off. */
  traceId?: string;
}
