/**
 * Prompt tokens of a chat request's tool definitions (`tools`, and the legacy `functions`).
 * OpenAI bills them as input: the model sees them rendered into its prompt, in a format it
 * does not publish (a TypeScript-like `namespace functions { type name = (_: {...}) => any; }`
 * block, as far as anyone has measured). This is an estimate made from what the model
 * reads of each definition, its name, description and parameters schema as JSON (for a
 * `custom` tool its `format`), plus the framing constants of OpenAI's cookbook "How to count
 * tokens with tiktoken" (function calling, gpt-4o family): 7 tokens per tool, 12 once for
 * the block. The JSON also counts the schema's quotes and braces, so for large schemas it
 * tends to be a little over OpenAI's count rather than under it.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { countTokens, type EncodingName } from './index.js';

/** Framing of one definition in the rendered block (cookbook: `func_init`). */
const TOKENS_PER_TOOL = 7;
/** Framing of the block around all definitions, once per request (cookbook: `func_end`). */
const TOOLS_BLOCK_TOKENS = 12;

/** The request fields that carry tool definitions. */
export interface ToolDefinitions {
  tools?: unknown;
  functions?: unknown;
}

/** Whether the request defines any tool: two property reads, for the path of requests without. */
export function hasToolDefinitions(request: ToolDefinitions): boolean {
  return nonEmptyArray(request.tools) || nonEmptyArray(request.functions);
}

/**
 * Estimated prompt tokens of the request's tool definitions in `encoding`; 0 when it has none.
 * Entries that are not objects count nothing (the upstream rejects such a request anyway).
 *
 * @example
 * toolDefinitionTokens({ tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] })
 * // 7 + tokens('get_weather') + tokens('{"type":"object"}') + 12
 */
export function toolDefinitionTokens(request: ToolDefinitions, encoding: EncodingName = 'o200k_base'): number {
  if (!hasToolDefinitions(request)) return 0;
  let n = TOOLS_BLOCK_TOKENS;
  // `tools` entries wrap their definition: `{type: 'function', function}` or `{type: 'custom', custom}`.
  if (Array.isArray(request.tools)) {
    for (const tool of request.tools) if (isObject(tool)) n += definitionTokens(tool.function ?? tool.custom, encoding);
  }
  // Legacy `functions` entries are the definition itself.
  if (Array.isArray(request.functions)) {
    for (const definition of request.functions) n += definitionTokens(definition, encoding);
  }
  return n;
}

/**
 * Counts of tool lists seen recently, by encoding and the SHA-256 of the list's JSON. An
 * agent resends the same tools on every turn: hashing 20 KB of schema takes ~0.05 ms,
 * counting it ~1 ms. The keys are digests of a fixed length, so the entry bound is also a
 * byte bound (~100 KB): a client that varies its tools only evicts older lists.
 * Process-wide, shared by every request.
 */
const rememberedLists = new LRUCache<string, number>({ max: 1024 });

/**
 * `toolDefinitionTokens`, counted once per process for a tool list seen before (the same
 * `tools` and `functions`, in the same encoding).
 */
export function toolDefinitionTokensRemembered(request: ToolDefinitions, encoding: EncodingName = 'o200k_base'): number {
  if (!hasToolDefinitions(request)) return 0;
  const json = JSON.stringify([request.tools ?? null, request.functions ?? null]);
  const key = `${encoding}:${createHash('sha256').update(json).digest('base64')}`;
  let n = rememberedLists.get(key);
  if (n === undefined) rememberedLists.set(key, (n = toolDefinitionTokens(request, encoding)));
  return n;
}

/** One definition: `{name, description, parameters}` (a function) or `{name, description, format}` (a custom tool). */
function definitionTokens(definition: unknown, encoding: EncodingName): number {
  if (!isObject(definition)) return 0;
  const { name, description, parameters, format } = definition;
  const schema = parameters ?? format;
  return (
    TOKENS_PER_TOOL +
    (typeof name === 'string' ? countTokens(name, encoding) : 0) +
    (typeof description === 'string' ? countTokens(description, encoding) : 0) +
    (schema === undefined || schema === null ? 0 : countTokens(JSON.stringify(schema), encoding))
  );
}

function nonEmptyArray(v: unknown): boolean {
  return Array.isArray(v) && v.length > 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
