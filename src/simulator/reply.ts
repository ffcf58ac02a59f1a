/**
 * What the simulator answers to a chat request: the request checked the way OpenAI checks
 * it (an OpenAI-shaped 400 naming the parameter), then `n` deterministic choices that honour
 * `max_tokens` / `max_completion_tokens` (finish_reason "length"), `stop`, `response_format`
 * (`json_object`, `json_schema`: JSON that fits the schema's types) and a `tool_choice` that
 * forces a tool call (`required`: finish_reason "tool_calls"; a named function: "stop", as
 * OpenAI does).
 */
import { createHash } from 'node:crypto';

export interface ChatBody {
  model?: unknown;
  messages: Array<{ role?: unknown; content?: unknown }>;
  stream?: unknown;
  stream_options?: { include_usage?: boolean } | null;
  n?: unknown;
  max_tokens?: unknown;
  max_completion_tokens?: unknown;
  stop?: unknown;
  response_format?: { type?: unknown; json_schema?: { schema?: unknown } } | null;
  tools?: unknown;
  tool_choice?: unknown;
  temperature?: unknown;
  top_p?: unknown;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface SimulatedChoice {
  /** The answer text (null when the answer is a tool call); split at spaces into tokens. */
  content: string | null;
  toolCall?: ToolCall;
  finishReason: 'stop' | 'length' | 'tool_calls';
  completionTokens: number;
}

export interface SimulatedReply {
  id: string;
  promptTokens: number;
  choices: SimulatedChoice[];
}

export interface InvalidRequest {
  message: string;
  param: string;
  /** null where OpenAI sends none (`stream_options` without `stream`). */
  code: string | null;
}

interface Tool {
  type?: unknown;
  function?: { name?: unknown; parameters?: unknown };
}

const WORDS = (
  'thanks for reaching out here is a short simulated answer from the promptgate simulator ' +
  'it is deterministic so tests and demos see the same text for the same request every time ' +
  'set OPENAI_API_KEY to forward requests to a real model instead'
).split(' ');

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const RESPONSE_FORMATS = new Set(['text', 'json_object', 'json_schema']);

/** The first problem OpenAI would answer with a 400, or undefined. `model` and `messages` are checked by the caller. */
export function invalidRequest(body: ChatBody): InvalidRequest | undefined {
  for (let i = 0; i < body.messages.length; i++) {
    const m = body.messages[i] as { role?: unknown } | null;
    if (!m || typeof m !== 'object' || typeof m.role !== 'string' || !ROLES.has(m.role)) {
      return { param: `messages[${i}].role`, code: 'invalid_value', message: `Invalid value for 'messages[${i}].role': expected one of ${[...ROLES].join(', ')}.` };
    }
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') return invalidType('stream', 'a boolean', body.stream);
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    return { param: 'stream_options', code: null, message: "The 'stream_options' parameter is only allowed when 'stream' is enabled." };
  }
  const sampling = decimalWithin(body, 'temperature', 0, 2) ?? decimalWithin(body, 'top_p', 0, 1);
  if (sampling) return sampling;
  const n = positiveInteger(body, 'n');
  if (n) return n;
  const maxTokens = positiveInteger(body, 'max_tokens') ?? positiveInteger(body, 'max_completion_tokens');
  if (maxTokens) return maxTokens;
  const stop = body.stop;
  if (Array.isArray(stop) && stop.length > 4) {
    return { param: 'stop', code: 'array_above_max_length', message: `Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length ${stop.length} instead.` };
  }
  if (stop !== undefined && stop !== null && typeof stop !== 'string' && !(Array.isArray(stop) && stop.length <= 4 && stop.every((s) => typeof s === 'string'))) {
    return invalidType('stop', 'a string or an array of up to 4 strings', stop);
  }
  const format = body.response_format?.type;
  if (body.response_format && (typeof format !== 'string' || !RESPONSE_FORMATS.has(format))) {
    return { param: 'response_format.type', code: 'invalid_value', message: `Invalid value for 'response_format.type': expected one of ${[...RESPONSE_FORMATS].join(', ')}.` };
  }
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null && choice !== 'none' && choice !== 'auto' && tools(body).length === 0) {
    return { param: 'tool_choice', code: 'invalid_value', message: "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified." };
  }
  const named = namedTool(choice);
  if (named !== undefined && !tools(body).some((t) => t.function?.name === named)) {
    return { param: 'tool_choice', code: 'invalid_value', message: `Invalid value for 'tool_choice': no function named '${named}' in 'tools'.` };
  }
  return undefined;
}

/** The reply to a valid request: same request, same reply (ids included). */
export function replyFor(body: ChatBody): SimulatedReply {
  const text = body.messages.map((m) => `${m.role ?? ''}:${contentText(m.content)}`).join('\n');
  const digest = createHash('sha256').update(String(body.model)).update('\0').update(text).digest();
  const n = typeof body.n === 'number' ? body.n : 1;
  const choices: SimulatedChoice[] = [];
  for (let i = 0; i < n; i++) {
    // Choice 0 keeps the request's own digest; the others derive theirs from it.
    choices.push(choiceFor(body, i === 0 ? digest : createHash('sha256').update(digest).update(String(i)).digest()));
  }
  // Roughly OpenAI's accounting: ~4 characters a token, 3 tokens per message, 3 to prime the reply.
  const promptTokens = body.messages.reduce((sum, m) => sum + 3 + Math.ceil(contentText(m.content).length / 4), 3);
  return { id: `chatcmpl-${digest.subarray(0, 12).toString('hex')}`, promptTokens, choices };
}

function choiceFor(body: ChatBody, digest: Buffer): SimulatedChoice {
  const words: string[] = [];
  const count = 12 + (digest[0] % 24);
  for (let i = 0; i < count; i++) words.push(WORDS[(digest[1 + (i % 30)] + i) % WORDS.length]);
  const sentence = words.join(' ');

  const forced = forcedTool(body);
  if (forced) {
    const args = JSON.stringify(sample(forced.function?.parameters, sentence));
    const toolCall: ToolCall = { id: `call_${digest.subarray(12, 24).toString('hex')}`, type: 'function', function: { name: String(forced.function!.name), arguments: args } };
    return { content: null, toolCall, finishReason: namedTool(body.tool_choice) === undefined ? 'tool_calls' : 'stop', completionTokens: Math.ceil(args.length / 4) };
  }

  let content = sentence;
  const format = body.response_format?.type;
  if (format === 'json_object') content = JSON.stringify({ answer: sentence });
  else if (format === 'json_schema') content = JSON.stringify(sample(body.response_format?.json_schema?.schema, sentence));
  // The answer ends before the first stop sequence (which is not part of it) ...
  for (const s of typeof body.stop === 'string' ? [body.stop] : Array.isArray(body.stop) ? (body.stop as string[]) : []) {
    const at = s === '' ? -1 : content.indexOf(s);
    if (at !== -1) content = content.slice(0, at);
  }
  // ... or at the token limit, whichever comes first. A token is a space-separated piece.
  let tokens = content.split(' ');
  const limit = typeof body.max_completion_tokens === 'number' ? body.max_completion_tokens : typeof body.max_tokens === 'number' ? body.max_tokens : undefined;
  let finishReason: SimulatedChoice['finishReason'] = 'stop';
  if (limit !== undefined && tokens.length > limit) {
    tokens = tokens.slice(0, limit);
    content = tokens.join(' ');
    finishReason = 'length';
  }
  return { content, finishReason, completionTokens: tokens.filter((t) => t !== '').length };
}

/** Past this depth a sample ends its recursion: empty lists, and `null` where the schema allows it. */
const WIND_DOWN_DEPTH = 6;

/**
 * A value of the JSON schema's shape: types, enums, `const`, nested objects and arrays
 * (`minItems` of them), `anyOf`/`oneOf` (the first alternative), and local `$ref`s
 * (`#/$defs/...`, `#/definitions/...`) into `root`. A recursive schema (a tree of nodes, as
 * zod emits one) ends once deep enough: lists empty, and `null` where an alternative allows it.
 */
function sample(schema: unknown, text: string, depth = 0, root: unknown = schema): unknown {
  if (depth > 16) return null; // before anyOf too: a client schema may nest it thousands deep
  let s = (schema !== null && typeof schema === 'object' ? schema : {}) as Record<string, unknown>;
  if (typeof s.$ref === 'string') s = (resolveRef(root, s.$ref) ?? {}) as Record<string, unknown>;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  if ('const' in s) return s.const;
  const alternatives = s.anyOf ?? s.oneOf;
  if (Array.isArray(alternatives) && alternatives.length > 0) {
    const nullable = depth >= WIND_DOWN_DEPTH ? alternatives.find((a) => (a as { type?: unknown } | null)?.type === 'null') : undefined;
    return sample(nullable ?? alternatives[0], text, depth + 1, root);
  }
  const type = Array.isArray(s.type) ? (depth >= WIND_DOWN_DEPTH && s.type.includes('null') ? 'null' : s.type[0]) : (s.type ?? (s.properties ? 'object' : 'string'));
  switch (type) {
    case 'object': {
      const properties = (s.properties ?? {}) as Record<string, unknown>;
      return Object.fromEntries(Object.entries(properties).map(([name, sub]) => [name, sample(sub, text, depth + 1, root)]));
    }
    case 'array': {
      const least = typeof s.minItems === 'number' && s.minItems > 0 ? Math.min(Math.ceil(s.minItems), 16) : 0;
      const count = depth >= WIND_DOWN_DEPTH ? least : Math.max(1, least);
      return Array.from({ length: count }, () => sample(s.items, text, depth + 1, root));
    }
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number' ? Math.ceil(s.minimum) : 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return text;
  }
}

/** The schema a local `$ref` (`#/$defs/Node`, JSON Pointer escapes `~1` `~0`) points at in `root`; undefined for any other. */
function resolveRef(root: unknown, ref: string): unknown {
  if (!ref.startsWith('#')) return undefined;
  let node = root;
  for (const part of ref.slice(1).split('/').slice(1)) {
    if (node === null || typeof node !== 'object') return undefined;
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    node = Object.hasOwn(node, key) ? (node as Record<string, unknown>)[key] : undefined;
  }
  return node;
}

function tools(body: ChatBody): Tool[] {
  return Array.isArray(body.tools) ? (body.tools as Tool[]).filter((t) => t && typeof t === 'object') : [];
}

function namedTool(choice: unknown): string | undefined {
  const name = (choice as { function?: { name?: unknown } } | null)?.function?.name;
  return typeof choice === 'object' && typeof name === 'string' ? name : undefined;
}

/** The tool a `tool_choice` of `required` (the first tool) or a named function forces, if any. */
function forcedTool(body: ChatBody): Tool | undefined {
  const named = namedTool(body.tool_choice);
  if (named !== undefined) return tools(body).find((t) => t.function?.name === named);
  return body.tool_choice === 'required' ? tools(body).find((t) => typeof t.function?.name === 'string') : undefined;
}

function positiveInteger(body: ChatBody, name: 'n' | 'max_tokens' | 'max_completion_tokens'): InvalidRequest | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) return invalidType(name, 'an integer', value);
  if (value < 1) return { param: name, code: 'integer_below_min_value', message: `Invalid '${name}': integer below minimum value. Expected a value >= 1, but got ${value} instead.` };
  if (name === 'n' && value > 128) return { param: name, code: 'integer_above_max_value', message: `Invalid 'n': integer above maximum value. Expected a value <= 128, but got ${value} instead.` };
  return undefined;
}

function decimalWithin(body: ChatBody, name: 'temperature' | 'top_p', min: number, max: number): InvalidRequest | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') return invalidType(name, 'a decimal', value);
  if (value < min) return { param: name, code: 'decimal_below_min_value', message: `Invalid '${name}': decimal below minimum value. Expected a value >= ${min}, but got ${value} instead.` };
  if (value > max) return { param: name, code: 'decimal_above_max_value', message: `Invalid '${name}': decimal above maximum value. Expected a value <= ${max}, but got ${value} instead.` };
  return undefined;
}

function invalidType(param: string, expected: string, value: unknown): InvalidRequest {
  const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
  return { param, code: 'invalid_type', message: `Invalid type for '${param}': expected ${expected}, but got ${got} instead.` };
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join('');
  return '';
}
