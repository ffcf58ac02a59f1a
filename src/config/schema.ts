/**
 * The strict schema of `gateway.config.yaml`. Unknown keys are errors; every default is
 * here, so the compiled config never has to guess. Feature sections (prompts,
 * experiments, guard, telemetry, ...) keep their schema beside their code and are
 * assembled here.
 *
 * zod 4 note: `.prefault(x)` parses `x` through the schema (so nested defaults apply),
 * `.default(x)` would return `x` as is.
 */
import { z } from 'zod';
import { nonNegativeMs, positiveMs } from './ms.js';
import { contextConfigSchema } from '../context/config-schema.js';
import { guardSchema } from '../guard/config-schema.js';
import { experimentSchema } from '../experiments/config-schema.js';
import { identitySchema, templatesSchema, bindingSchema } from '../prompts/config-schema.js';
import { telemetrySchema, pricingSchema } from '../telemetry/config-schema.js';

const port = z.number().int().min(0).max(65535);

// RFC 9110 §5.1 (a field name is a token) and §5.5 (field values): undici refuses anything
// else on every request, so such a header is a config error, not an unreachable upstream.
const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected an HTTP header name');
const headerValue = z.string().regex(/^[\t\x20-\x7e\x80-\xff]*$/, 'expected an HTTP header value (no control or non-Latin-1 characters)');

// A key with a line break or control character (a copy-paste accident from a secret file)
// can never be sent: undici refuses it on every request. Not trimmed: secrets are not
// changed silently. The messages never include the key.
const apiKey = z
  .string()
  .refine((k) => !/[\x00-\x1f\x7f]/.test(k), 'contains a line break or control character (the key is not shown; remove it where the key is set)')
  .refine((k) => !/[^\x00-\xff]/.test(k), 'contains a character that cannot be sent in an HTTP header (the key is not shown)');

function hasCredentials(url: string): boolean {
  if (!URL.canParse(url)) return false; // reported by z.url()
  const { username, password } = new URL(url);
  return username !== '' || password !== '';
}

export const serverSchema = z.strictObject({
  port: port.default(8080),
  host: z.string().min(1).default('0.0.0.0'),
  max_body_bytes: z.number().int().positive().default(4 * 1024 * 1024),
  drain_timeout_ms: nonNegativeMs().default(25_000),
});

export const adminSchema = z.strictObject({
  /**
   * Bearer token for `/admin/*`; the admin API is off when empty. Surrounding whitespace is
   * ignored; inside, only what an `authorization` header can carry as one word (visible
   * ASCII or Latin-1): any other token would switch the API on with no way in.
   */
  token: z
    .string()
    .default('')
    .refine((t) => /^[\x21-\x7e\xa1-\xff]*$/.test(t.trim()), 'expected one word of visible characters (no spaces or control characters inside, nothing beyond Latin-1): an authorization header could never carry this token'),
});

/**
 * No default is tighter than what the client itself would wait: openai-node waits 10 minutes
 * for an answer's headers, the Python SDK 5 s to connect and 10 minutes for each read, and
 * neither limits a whole stream. A reasoning model (o3, gpt-5 with high effort,
 * `service_tier: flex`) can think for minutes before its first byte (non-stream) or first
 * chunk (stream): a shorter limit answered 504 where the provider would have answered, and a
 * retry paid for the same thinking again. Lower them per upstream that serves only fast
 * models, for quicker failover.
 */
export const timeoutSchema = z.strictObject({
  connect_ms: positiveMs().default(5_000),
  first_byte_ms: positiveMs().default(600_000),
  idle_ms: positiveMs().default(600_000),
  total_ms: positiveMs().default(3_600_000),
});

export const retrySchema = z.strictObject({
  /** Retries after the first try (0 = no retry). */
  attempts: z.number().int().min(0).max(10).default(2),
  on_status: z.array(z.number().int().min(400).max(599)).default([429, 500, 502, 503, 504]),
  backoff_ms: positiveMs().default(200),
  max_backoff_ms: positiveMs().default(5_000),
  /** A `retry-after` longer than this is not waited for; the error goes to the client. */
  max_retry_after_ms: positiveMs().default(10_000),
});

export const breakerSchema = z.strictObject({
  /** Consecutive failures that open the breaker; 0 disables it. */
  failures: z.number().int().min(0).default(5),
  cooldown_ms: positiveMs().default(30_000),
});

export const simulateSchema = z.strictObject({
  latency_ms: nonNegativeMs().default(20),
  chunks: z.number().int().positive().default(16),
  /** Delay between stream chunks; defaults to latency_ms / chunks. */
  chunk_interval_ms: nonNegativeMs().optional(),
  model: z.string().min(1).default('promptgate-simulator'),
});

export const upstreamSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, 'expected a name of letters, digits, "-" or "_"'),
    /**
     * OpenAI-compatible API root including the version, e.g. https://api.openai.com/v1. Its
     * query (Azure's `?api-version=`) goes on every request; a fragment or credentials
     * (`user:pass@`) could never be meant, and credentials would end up in logs.
     */
    base_url: z
      .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL, e.g. https://api.openai.com/v1' })
      .refine((u) => !u.includes('#'), 'expected a URL without a fragment (#...)')
      .refine((u) => !hasCredentials(u), 'expected a URL without credentials (user:pass@); use api_key or headers')
      .optional(),
    simulate: simulateSchema.optional(),
    /** `gen_ai.provider.name`; defaults to `openai` (or `promptgate.simulator`). */
    provider: z.string().min(1).optional(),
    /** Sent as `Authorization: Bearer <key>`, so it must be a header value; errors never show it. */
    api_key: apiKey.default(''),
    /**
     * What to do when `api_key` is empty: `pass_through` sends the client's Authorization;
     * an upstream name routes this upstream's traffic there instead (the shipped config
     * uses `simulator` so `npm start` works without a key).
     */
    keyless: z.string().default('pass_through'),
    /** Extra headers sent upstream (e.g. OpenAI-Organization); names lower-cased, as the client's are, so one replaces the other. */
    headers: z
      .record(headerName, headerValue)
      .default({})
      .transform((h) => Object.fromEntries(Object.entries(h).map(([name, value]) => [name.toLowerCase(), value]))),
    timeout: timeoutSchema.prefault({}),
    retry: retrySchema.prefault({}),
    breaker: breakerSchema.prefault({}),
    /** Prices for models served by this upstream, over the global `pricing:` (USD per 1M tokens). */
    pricing: pricingSchema.optional(),
    /** Max sockets kept to this upstream. */
    connections: z.number().int().positive().default(128),
    /**
     * A chat stream whose client did not ask for usage is sent with
     * `stream_options.include_usage: true` (its usage chunk is removed before the client sees
     * it). `false` for an upstream that rejects `stream_options`: the stream goes as the
     * client sent it, and its usage is the gateway's count.
     */
    ask_stream_usage: z.boolean().default(true),
  })
  .superRefine((u, ctx) => {
    if ((u.base_url === undefined) === (u.simulate === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of base_url or simulate', path: [] });
    }
  });

export const routingSchema = z.strictObject({
  /** Ordered upstream names: the first is tried first, the rest are fallbacks. */
  default: z.array(z.string()).min(1),
  /** Per-model overrides of the ordered list, by requested model name. */
  models: z.record(z.string(), z.array(z.string()).min(1)).default({}),
});

export const loggingSchema = z.strictObject({
  level: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** One JSON line per request. */
  requests: z.boolean().default(true),
});

export const configSchema = z.strictObject({
  server: serverSchema.prefault({}),
  admin: adminSchema.prefault({}),
  upstreams: z.array(upstreamSchema).min(1),
  routing: routingSchema,
  identity: identitySchema.prefault({}),
  templates: templatesSchema.prefault({}),
  bindings: z.array(bindingSchema).default([]),
  experiments: z.array(experimentSchema).default([]),
  /** Context builders (README "Context injection"). */
  context: contextConfigSchema.prefault({}),
  guard: guardSchema.prefault({}),
  pricing: pricingSchema.default({}),
  telemetry: telemetrySchema.prefault({}),
  logging: loggingSchema.prefault({}),
});

/** The validated config file, defaults applied, before compilation. */
export type ConfigFile = z.infer<typeof configSchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
