/**
 * The attributes of a request's spans (OTel GenAI and HTTP semconv, DESIGN.md "Telemetry
 * names"): the CLIENT span's at start, both spans' at their end, model names masked as logs mask them.
 */
import type { Attributes } from '@opentelemetry/api';
import { redact } from './redact.js';
import { inputMessages, messagesJson, outputMessages } from './genai-messages.js';
import { errorTypeOf } from './record-values.js';
import type { EndSpanOptions, UpstreamSpanOptions } from './spans.js';
import type { RequestRecord } from './types.js';

/** Model names seen, as spans record them; a few per deployment, so the redactor runs once per name. */
const spanModels = new Map<string, string>();
const MAX_SPAN_MODELS = 1024;
/** Longer names (a client's, up to the body limit) are redacted each time, not kept. */
const MAX_REMEMBERED_MODEL_CHARS = 256;

/**
 * A model name as spans record it: masked where it holds a credential (a client that sends
 * its key as the model, an upstream that echoes it), as the log and /metrics mask it.
 */
export function spanModel(name: string): string {
  if (name.length > MAX_REMEMBERED_MODEL_CHARS) return redact(name);
  let masked = spanModels.get(name);
  if (masked === undefined) {
    masked = redact(name);
    if (spanModels.size >= MAX_SPAN_MODELS) spanModels.clear();
    spanModels.set(name, masked);
  }
  return masked;
}

/** What the CLIENT span gets at its start (and again on a later `startUpstream`). */
export function upstreamAttributes(o: UpstreamSpanOptions): Attributes {
  const a: Attributes = {
    'gen_ai.operation.name': o.operation ?? 'chat',
    'gen_ai.provider.name': o.provider,
    'gen_ai.request.stream': o.stream,
  };
  if (o.requestModel) a['gen_ai.request.model'] = spanModel(o.requestModel);
  if (o.serverAddress) a['server.address'] = o.serverAddress;
  if (o.serverPort !== undefined) a['server.port'] = o.serverPort;
  if (o.body) putRequestParams(a, o.body);
  return a;
}

/** GenAI semconv request attributes of a chat body's sampling parameters, doubles in the conventions. */
const DOUBLE_PARAMS: ReadonlyArray<readonly [string, string]> = [
  ['temperature', 'gen_ai.request.temperature'],
  ['top_p', 'gen_ai.request.top_p'],
  ['top_k', 'gen_ai.request.top_k'],
  ['frequency_penalty', 'gen_ai.request.frequency_penalty'],
  ['presence_penalty', 'gen_ai.request.presence_penalty'],
];

/**
 * Attributes whose type is double (the sampling parameters above; promptgate's scores,
 * cost and the context span's duration). JavaScript has one number type, and an integral
 * value would go as an int: a score of 0 (most requests) an int, 0.73 a double, one
 * attribute of two types, which backends that fix a field's type from its first value
 * (Elasticsearch mappings, columnar stores) then store wrong or refuse. promptgate's OTLP
 * protobuf encoder (otlp-protobuf.ts, the default `http/protobuf`) always writes these as
 * doubles, and `http/json` rewrites the SDK's JSON to match (tracing.ts `withDoubles`);
 * the SDK's `grpc` exporter does not read this list.
 */
export const DOUBLE_ATTRIBUTES: ReadonlySet<string> = new Set([
  ...DOUBLE_PARAMS.map(([, key]) => key),
  'promptgate.injection.score',
  'promptgate.cost.usd',
  'promptgate.context.injection.score',
  'promptgate.context.duration_ms',
]);

function putRequestParams(a: Attributes, body: Readonly<Record<string, unknown>>): void {
  for (const [field, key] of DOUBLE_PARAMS) {
    const v = body[field];
    if (typeof v === 'number' && Number.isFinite(v)) a[key] = v;
  }
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (Number.isSafeInteger(maxTokens)) a['gen_ai.request.max_tokens'] = maxTokens as number;
  if (Number.isSafeInteger(body.seed)) a['gen_ai.request.seed'] = body.seed as number;
  // Recorded when not 1, as the conventions ask.
  if (Number.isSafeInteger(body.n) && body.n !== 1) a['gen_ai.request.choice.count'] = body.n as number;
  const stop = body.stop;
  if (typeof stop === 'string') a['gen_ai.request.stop_sequences'] = [stop];
  else if (Array.isArray(stop) && stop.length > 0 && stop.every((x) => typeof x === 'string')) a['gen_ai.request.stop_sequences'] = stop as string[];
  const format = (body.response_format as { type?: unknown } | null | undefined)?.type;
  if (format === 'json_object' || format === 'json_schema') a['gen_ai.output.type'] = 'json';
  else if (format === 'text') a['gen_ai.output.type'] = 'text';
}

/** Everything the CLIENT span gets at its end, in one object (one setAttributes call). */
export function clientEndAttributes(r: RequestRecord, errorType: string | undefined, options: EndSpanOptions | undefined): Attributes {
  const a: Attributes = {};
  putDecision(a, r);
  a['promptgate.upstream.attempts'] = r.attempts;
  if (r.responseModel) a['gen_ai.response.model'] = spanModel(r.responseModel);
  if (r.responseId) a['gen_ai.response.id'] = r.responseId;
  if (r.finishReasons?.length) a['gen_ai.response.finish_reasons'] = r.finishReasons;
  // GenAI semconv (OpenAI): the tier that served the request, which sets its prices.
  if (r.serviceTier) a['openai.response.service_tier'] = r.serviceTier;
  const usage = r.usage;
  if (usage) {
    // OTel GenAI semconv: gen_ai.usage.input_tokens includes cached tokens.
    a['gen_ai.usage.input_tokens'] = usage.inputTokens;
    a['gen_ai.usage.output_tokens'] = usage.outputTokens;
    a['gen_ai.usage.cache_read.input_tokens'] = usage.cachedInputTokens;
    a['gen_ai.usage.reasoning.output_tokens'] = usage.reasoningTokens;
    a['promptgate.usage.estimated'] = usage.estimated;
  }
  if (typeof r.costUsd === 'number') a['promptgate.cost.usd'] = r.costUsd;
  if (errorType !== undefined) a['error.type'] = errorType;
  // HTTP semconv: a captured response header is `http.response.header.<name>`, its values as
  // a string array. No convention names a provider's error code: the gateway's own name.
  if (r.upstreamRequestId) a['http.response.header.x-request-id'] = [r.upstreamRequestId];
  if (r.upstreamErrorCode) a['promptgate.upstream.error_code'] = r.upstreamErrorCode;
  if (options?.captureContent) {
    // Cut to the SDK's attribute length limit here, where the JSON can stay valid.
    const limit = attributeValueLengthLimit();
    const input = options.prompt === undefined ? undefined : capturedJson(() => messagesJson(inputMessages(options.prompt), limit));
    if (input !== undefined) a['gen_ai.input.messages'] = input;
    // A generation that ended without a finish reason and failed (cut, cancelled) did not `stop`.
    const finishReason = r.finishReasons?.[0] ?? (errorType === undefined ? undefined : 'error');
    const completion = options.completion;
    const output = completion === undefined ? undefined : capturedJson(() => messagesJson(outputMessages(completion, finishReason) as Array<{ parts: Array<Record<string, unknown>> }>, limit));
    if (output !== undefined) a['gen_ai.output.messages'] = output;
  }
  return a;
}

/**
 * Captured messages as JSON, or undefined when they cannot be written: a tool call's
 * arguments are captured parsed, and JSON.stringify runs out of stack (a RangeError) on
 * arguments nested some thousands deep, which JSON.parse took. The span then goes without
 * that attribute, rather than never ending (and the request's trace with it).
 */
function capturedJson(json: () => string): string | undefined {
  try {
    return json();
  } catch (err) {
    if (err instanceof RangeError) return undefined;
    throw err;
  }
}

/**
 * The span attribute value length limit the SDK applies (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
 * else OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, read as the SDK reads them); undefined: none.
 */
function attributeValueLengthLimit(): number | undefined {
  for (const name of ['OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT', 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT']) {
    const raw = process.env[name]?.trim();
    if (!raw) continue;
    const value = Number(raw);
    // As the SDK: a limit of 0 or less cuts nothing.
    if (!Number.isNaN(value)) return value > 0 && Number.isFinite(value) ? Math.floor(value) : undefined;
  }
  return undefined;
}

/** Everything the SERVER span gets at its end, in one object. */
export function serverEndAttributes(r: RequestRecord, errorType: string | undefined): Attributes {
  const a: Attributes = {};
  putDecision(a, r);
  a['promptgate.request.id'] = r.requestId;
  if (r.status > 0) a['http.response.status_code'] = r.status;
  if (errorType !== undefined) a['error.type'] = errorType;
  return a;
}

/** What the gateway decided: template, experiment, guard verdict (written into `a`). */
function putDecision(a: Attributes, r: RequestRecord): void {
  if (r.template) a['promptgate.template.id'] = r.template;
  if (r.templateVersion) a['promptgate.template.version'] = r.templateVersion;
  if (r.experiment) a['promptgate.experiment.id'] = r.experiment;
  if (r.variant) a['promptgate.experiment.variant'] = r.variant;
  if (r.injectionScore !== undefined) a['promptgate.injection.score'] = r.injectionScore;
  if (r.injectionFlagged !== undefined) a['promptgate.injection.flagged'] = r.injectionFlagged;
  if (r.contextTokens !== undefined) a['promptgate.context.tokens'] = r.contextTokens;
  if (r.contextRecipe) a['promptgate.context.recipe'] = r.contextRecipe;
  if (r.contextSkipped?.length) a['promptgate.context.skipped'] = r.contextSkipped;
  if (r.promptTokens !== undefined) a['promptgate.prompt.tokens'] = r.promptTokens;
}

/** `error.type` of a request that did not succeed (the metrics' `error_type`), else undefined. */
export function failureType(r: RequestRecord): string | undefined {
  if (r.outcome === 'ok' && r.status < 400) return undefined;
  return errorTypeOf(r) ?? '_OTHER';
}
