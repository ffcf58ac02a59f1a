/**
 * Prompt and completion in the OTel GenAI semantic conventions' message format, for
 * `gen_ai.input.messages` / `gen_ai.output.messages` (recorded only with
 * `telemetry.capture_content: true`): OpenAI chat messages become `{role, parts}` with
 * text, tool-call and tool-response parts.
 */

import { messageCalls, type MessageCall } from './calls.js';

type Part = Record<string, unknown>;

/** OpenAI chat messages -> OTel GenAI input messages (`{role, parts}`); non-text parts are left out. */
export function inputMessages(messages: unknown): Array<{ role: string; parts: Part[]; name?: string }> {
  if (!Array.isArray(messages)) return [];
  const out: Array<{ role: string; parts: Part[]; name?: string }> = [];
  for (const m of messages) {
    if (typeof m !== 'object' || m === null) continue;
    const msg = m as Record<string, unknown>;
    const role = typeof msg.role === 'string' ? msg.role : 'user';
    const parts: Part[] = [];
    if (role === 'tool') {
      parts.push({ type: 'tool_call_response', id: msg.tool_call_id, response: textOf(msg.content) });
    } else {
      const text = textOf(msg.content);
      if (text) parts.push({ type: 'text', content: text });
      for (const call of messageCalls(msg)) parts.push(toolCallPart(call));
    }
    out.push(typeof msg.name === 'string' ? { role, parts, name: msg.name } : { role, parts });
  }
  return out;
}

/** One choice of an answer, as content capture keeps it. */
export interface CompletionChoice {
  /** The text (`message.content`, or a stream's `delta.content` joined). */
  content: string;
  /** Tool calls, a stream's argument pieces joined. */
  toolCalls?: readonly MessageCall[];
  finishReason?: string;
}

/**
 * The answer -> OTel GenAI output messages: one assistant message per choice (with `n > 1`
 * several), with its text and tool-call parts and its finish reason (`finishReason` for a
 * choice that has none: a cut or failed answer). A string is one choice of text.
 */
export function outputMessages(completion: string | readonly CompletionChoice[], finishReason: string | undefined): Array<Record<string, unknown>> {
  const choices = typeof completion === 'string' || completion.length === 0 ? [{ content: typeof completion === 'string' ? completion : '' }] : completion;
  return choices.map((c: CompletionChoice) => {
    const parts: Part[] = [];
    if (c.content !== '' || !c.toolCalls?.length) parts.push({ type: 'text', content: c.content });
    for (const call of c.toolCalls ?? []) parts.push(toolCallPart(call));
    return { role: 'assistant', parts, finish_reason: c.finishReason ?? finishReason ?? 'stop' };
  });
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((p) => (typeof p === 'object' && p !== null && typeof (p as Part).text === 'string' ? ((p as Part).text as string) : ''))
    .filter(Boolean)
    .join('\n');
}

/** A call as a GenAI `tool_call` part, its arguments parsed when they are JSON. */
function toolCallPart(call: MessageCall): Part {
  return { type: 'tool_call', id: call.id, name: call.name, arguments: parseArguments(call.arguments) };
}

function parseArguments(args: unknown): unknown {
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}

/** What a text cut short by `messagesJson` ends with. */
export const CUT_MARK = '…';

/**
 * `messages` as JSON of at most `limit` characters when it can be: the longest texts
 * (text parts, tool results) are cut first, each to the same length, ending in CUT_MARK;
 * when that is not enough, tool calls' parsed arguments are cut too, as their JSON text.
 * The SDK cuts an attribute value longer than OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT at that
 * length, which made `gen_ai.input.messages` of a long prompt invalid JSON; cut here, it
 * stays a valid message list. Without a limit (or within it) this is `JSON.stringify`.
 */
export function messagesJson(messages: ReadonlyArray<{ parts: Part[] }>, limit: number | undefined): string {
  const whole = JSON.stringify(messages);
  if (limit === undefined || whole.length <= limit) return whole;
  const json = withTextsCut(messages, whole, limit);
  if (json.length <= limit) return json;
  // Too many messages for the limit, whatever their texts (each message's structure costs
  // ~40 characters): whole messages are left out from the middle. Kept: the first (the
  // system prompt, usually) and as many of the last (the question, the turns before it) as
  // fit whole; else the first and the last with their texts cut; else none.
  const kept = firstAndLastWhole(messages, limit);
  if (kept.length >= 2) return JSON.stringify(kept);
  const ends = messages.length > 1 ? [messages[0]!, messages[messages.length - 1]!] : [...messages];
  const cut = withTextsCut(ends, JSON.stringify(ends), limit);
  return cut.length <= limit ? cut : '[]';
}

/** The first message and the most of the last ones whose JSON, whole, fits `limit` together (in order). */
function firstAndLastWhole<M>(messages: readonly M[], limit: number): M[] {
  const sizes = messages.map((m) => JSON.stringify(m).length);
  let room = limit - 2 - (sizes[0] ?? 0); // the brackets, the first
  if (messages.length < 2 || room < 0) return [];
  let from = messages.length;
  while (from > 1 && sizes[from - 1]! + 1 <= room) room -= sizes[--from]! + 1; // and its comma
  return from === messages.length ? [] : [messages[0]!, ...messages.slice(from)];
}

/** `messagesJson`'s first resort: the texts cut (see there); the JSON, which may still be over `limit`. */
function withTextsCut(messages: ReadonlyArray<{ parts: Part[] }>, whole: string, limit: number): string {
  const texts: Cuttable[] = [];
  const args: Array<{ part: Part; value: unknown }> = [];
  for (const m of messages) {
    for (const part of m.parts) {
      for (const key of ['content', 'response', 'arguments'] as const) {
        const value = part[key];
        if (typeof value === 'string' && value.length > 0) texts.push({ part, key, text: value });
        else if (key === 'arguments' && value !== undefined && value !== null) args.push({ part, value });
      }
    }
  }
  let json = shrink(messages, texts, whole, limit);
  if (json.length > limit && args.length > 0) {
    // Parsed arguments cannot be cut as they are: as their JSON text they can. The texts
    // start whole again, so that they are cut evenly with the arguments.
    for (const t of texts) t.part[t.key] = t.text;
    for (const a of args) {
      const text = JSON.stringify(a.value);
      a.part.arguments = text;
      texts.push({ part: a.part, key: 'arguments', text });
    }
    json = shrink(messages, texts, JSON.stringify(messages), limit);
  }
  // The caller's objects are left as they were.
  for (const t of texts) t.part[t.key] = t.text;
  for (const a of args) a.part.arguments = a.value;
  return json;
}

/** A text of a part that `messagesJson` may cut. */
interface Cuttable {
  part: Part;
  key: 'content' | 'response' | 'arguments';
  text: string;
}

/** Cuts `texts` in place (each to the same length) until `messages`' JSON fits `limit`; that JSON. */
function shrink(messages: ReadonlyArray<{ parts: Part[] }>, texts: Cuttable[], json: string, limit: number): string {
  let over = json.length - limit;
  // Escaping makes a text's JSON longer than the text: a few rounds settle it.
  for (let round = 0; round < 4 && over > 0 && texts.length > 0; round++) {
    const lengths = texts.map((t) => (t.part[t.key] as string).length);
    const cap = capFor(lengths, Math.max(0, lengths.reduce((a, b) => a + b, 0) - over));
    for (const t of texts) {
      const now = t.part[t.key] as string;
      if (now.length > cap) t.part[t.key] = cut(t.text, Math.max(0, cap - CUT_MARK.length)) + CUT_MARK;
    }
    json = JSON.stringify(messages);
    over = json.length - limit;
  }
  return json;
}

/** The largest `cap` with sum(min(length, cap)) <= total (water filling). */
function capFor(lengths: number[], total: number): number {
  const sorted = [...lengths].sort((a, b) => a - b);
  let left = total;
  for (let i = 0; i < sorted.length; i++) {
    const share = Math.floor(left / (sorted.length - i));
    if (sorted[i]! > share) return share;
    left -= sorted[i]!;
  }
  return sorted[sorted.length - 1] ?? 0;
}

/** The first `n` UTF-16 units of `s`, not splitting a surrogate pair. */
function cut(s: string, n: number): string {
  if (n <= 0) return '';
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}
