/**
 * Strict schema of a template file (`config/templates/<id>.yaml`). Unknown keys are errors.
 * Structural checks live here; checks across fields (semver, duplicate versions and labels,
 * variables used vs declared, injection-like text) are in `compile-template.ts`.
 */
import { z } from 'zod';
import { templateContextSchema } from '../context/config-schema.js';

/** Template ids, labels, experiment and variant names: safe in headers, labels and URLs. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const name = z.string().regex(NAME_PATTERN, 'expected letters, digits, ".", "_" or "-", starting with a letter or digit');

const responseFormatSchema = z.looseObject({
  type: z.enum(['text', 'json_object', 'json_schema']),
});

/** Request fields a template must not set through `extra_body`. */
const RESERVED_BODY_FIELDS = new Set(['model', 'messages', 'stream', 'stream_options', 'user', 'prompt_id', 'prompt_version', 'prompt_variables']);

/**
 * Request-body parameters a version sets when the client did not. The list is closed so a
 * typo (`temprature`) is an error; `extra_body` carries any other upstream parameter.
 */
export const paramsSchema = z.strictObject({
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z.number().int().positive().optional(),
  max_completion_tokens: z.number().int().positive().optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).optional(),
  seed: z.number().int().optional(),
  n: z.number().int().positive().optional(),
  logit_bias: z.record(z.string(), z.number()).optional(),
  logprobs: z.boolean().optional(),
  top_logprobs: z.number().int().min(0).max(20).optional(),
  response_format: responseFormatSchema.optional(),
  reasoning_effort: z.string().min(1).optional(),
  verbosity: z.string().min(1).optional(),
  service_tier: z.string().min(1).optional(),
  tools: z.array(z.record(z.string(), z.unknown())).optional(),
  tool_choice: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  parallel_tool_calls: z.boolean().optional(),
  /** Other top-level request fields, passed as is (same fill-in rule). */
  extra_body: z
    .record(
      z.string().refine((k) => !RESERVED_BODY_FIELDS.has(k), { error: (iss) => `"${String(iss.input)}" is set by the gateway or the client, not by a template` }),
      z.unknown(),
    )
    .optional(),
});

/** Limits the gateway enforces for this version (see `applySelection`). */
export const constraintsSchema = z.strictObject({
  /** Prompt size limit; enforced by the context budget (`context/`). */
  max_input_tokens: z.number().int().positive().optional(),
  /** Caps the client's max_tokens / max_completion_tokens, and sets one when absent. */
  max_output_tokens: z.number().int().positive().optional(),
  /** Forced on the request, replacing the client's. */
  response_format: responseFormatSchema.optional(),
});

export const variableSpecSchema = z.strictObject({
  type: z.enum(['string', 'number', 'boolean', 'array', 'object']),
  /** Must have a value once defaults apply; a missing one is a 400 naming it. */
  required: z.boolean().default(false),
  default: z.unknown().optional(),
  description: z.string().optional(),
});

export const templateMessageSchema = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.string(),
});

export const templateVersionSchema = z.strictObject({
  /** Semver, quoted in YAML when it could read as a number (`"1.0"` is not semver anyway). */
  version: z.string({ error: 'expected a semver string such as "1.0.0" (quote it in YAML)' }),
  labels: z.array(name).default([]),
  role: z.enum(['primary', 'fallback', 'enhancement', 'validation']).default('primary'),
  model: z.string().min(1).optional(),
  params: paramsSchema.default({}),
  constraints: constraintsSchema.default({}),
  messages: z.array(templateMessageSchema).min(1),
  variables: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a variable name of letters, digits and "_"'), variableSpecSchema)
    .default({}),
  /** Context builders whose outputs become variables, budget and recipes (README "Context injection"). */
  context: templateContextSchema.optional(),
});

export const templateFileSchema = z.strictObject({
  id: name,
  name: z.string().min(1).optional(),
  description: z.string().default(''),
  tags: z.array(z.string().min(1)).default([]),
  metadata: z.record(z.string(), z.unknown()).default({}),
  versions: z.array(templateVersionSchema).min(1),
});

export type TemplateFile = z.infer<typeof templateFileSchema>;
export type TemplateVersionConfig = z.infer<typeof templateVersionSchema>;
export type TemplateParams = z.infer<typeof paramsSchema>;
export type TemplateConstraints = z.infer<typeof constraintsSchema>;
export type TemplateRole = TemplateVersionConfig['role'];
export type TemplateContext = NonNullable<TemplateVersionConfig['context']>;
