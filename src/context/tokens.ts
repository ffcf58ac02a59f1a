/**
 * Token counts for the context budget: o200k_base (gpt-4o, gpt-4.1, the o-series, gpt-5),
 * with src/tokenizer; the `max_input_tokens` check counts in the model's encoding. The vocabulary is read on first use (~20 ms, once per process, shared
 * with `telemetry/usage.ts`); `preloadContextTokenizer` moves that out of the first request.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { messageTextTokens } from '../telemetry/usage.js';
import { countTokens, tokenCounter, type EncodingName } from '../tokenizer/index.js';
import { ownCopy } from '../own-copy.js';

/** Tokens of `text` in o200k_base, the tokenizer's default (0 for ""; `<|endoftext|>` and the like count as text). */
export { countTokens };

/** Longer texts are remembered by their SHA-256 (kept whole, they would crowd out everything else). */
const MAX_REMEMBERED_CHARS = 32_768;

/** The counts one encoding remembers. Process-wide, bounded; one per encoding (their counts differ). */
interface RememberedCounts {
  /**
   * Counts of texts seen recently. Conversation turns come back in every later request of
   * the conversation, so history and prompt budgets count each turn once.
   */
  recent: LRUCache<string, number>;
  /**
   * Counts of longer texts by the SHA-256 of their UTF-16 code units: an agent's `write_file`
   * call (JSON arguments, one line with no cut for `countByLines`) comes back in every later
   * request of its conversation; hashing 200 KB takes ~0.2 ms, counting it ~10 ms. Apart
   * from `recent`, so that no text sent as a key can stand for another.
   */
  recentLong: LRUCache<string, number>;
}

const remembered = new Map<EncodingName, RememberedCounts>();

/** The caches of an encoding, made on its first use (o200k_base's at once; cl100k_base only for gpt-4 and gpt-3.5 prompts). */
function rememberedIn(encoding: EncodingName): RememberedCounts {
  let counts = remembered.get(encoding);
  if (!counts) {
    counts = {
      recent: new LRUCache<string, number>({ maxSize: 4_000_000, sizeCalculation: (_n, text) => text.length + 32 }),
      recentLong: new LRUCache<string, number>({ max: 1024 }),
    };
    remembered.set(encoding, counts);
  }
  return counts;
}

/**
 * `countTokens`, remembered for texts seen recently (conversation turns, rendered prompts,
 * tool-call arguments). A text not seen before is counted line by line (`countByLines`),
 * each line remembered: a prompt rendered for another customer shares most of its lines
 * with the ones before it.
 */
export function countTokensRemembered(text: string, encoding: EncodingName = 'o200k_base'): number {
  if (text === '') return 0;
  const counts = rememberedIn(encoding);
  if (text.length > MAX_REMEMBERED_CHARS) return countLong(text, counts, encoding);
  let n = counts.recent.get(text);
  if (n === undefined) counts.recent.set(ownCopy(text), (n = countByLines(text, encoding)));
  return n;
}

/** `countTokensRemembered` of a text longer than `MAX_REMEMBERED_CHARS`. */
function countLong(text: string, counts: RememberedCounts, encoding: EncodingName): number {
  const digest = createHash('sha256').update(text, 'utf16le').digest('base64');
  let n = counts.recentLong.get(digest);
  if (n === undefined) counts.recentLong.set(digest, (n = countByLines(text, encoding)));
  return n;
}

/**
 * Tokens of `text` as the sum over its lines, cut only right after a line break that an
 * ASCII letter follows. The sum equals `countTokens(text, encoding)`: neither pre-tokenizer
 * (o200k_base, cl100k_base) lets a piece run across such a cut (words cannot start with a
 * line break, a run of punctuation takes the line breaks after it but stops at a letter,
 * and a whitespace run containing a line break ends at its last break: o200k's
 * `\s*[\r\n]+`, cl100k's `\s*[\r\n]`, or its `\s+$` at the end of a line alone, the same
 * piece), neither has a look-behind, and their one look-ahead (`\s+(?!\S)`) is never
 * reached inside such a run. BPE merges stay within a piece. Tests check the equality on
 * rendered prompts and random text in both encodings.
 */
export function countByLines(text: string, encoding: EncodingName = 'o200k_base'): number {
  const { recent } = rememberedIn(encoding);
  let n = 0;
  let from = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) {
    const next = text.charCodeAt(at + 1) | 0x20; // ASCII letters fold to a-z
    if (next < 0x61 || next > 0x7a) continue;
    n += countLine(text.slice(from, at + 1), recent, encoding);
    from = at + 1;
  }
  // A text without a cut is one line: the caller remembers it as a whole.
  return from === 0 ? countTokens(text, encoding) : n + countLine(text.slice(from), recent, encoding);
}

function countLine(line: string, recent: LRUCache<string, number>, encoding: EncodingName): number {
  if (line.length > MAX_REMEMBERED_CHARS) return countTokens(line, encoding);
  let n = recent.get(line);
  // A copy: the line is a slice, and would keep the whole text it was cut from.
  if (n === undefined) recent.set(ownCopy(line), (n = countTokens(line, encoding)));
  return n;
}

/** The chat roles are one o200k_base token each (a test checks it against the tokenizer). */
export const ROLE_TOKENS: ReadonlyMap<string, number> = new Map(['system', 'developer', 'user', 'assistant', 'tool'].map((role) => [role, 1]));

/** What `countPromptTokens` adds to the messages: the request's tool definitions, and the encoding. */
export interface PromptTokenOptions {
  /** Tokens of the request's tool definitions (its `toolTokensOnce`, telemetry/usage.ts). Default 0. */
  toolTokens?: number;
  /** The encoding of the model the prompt goes to (`encodingFor`, telemetry/usage.ts). Default o200k_base. */
  encoding?: EncodingName;
}

/**
 * Tokens of a chat prompt the way OpenAI bills it (cookbook "How to count tokens"): 3 per
 * message plus its role, text, name (+1) and tool calls, plus 3 priming the reply, plus
 * the request's tool definitions (counted like `max_input_tokens` counts them). Text parts
 * only (images are not counted), like `telemetry/usage.ts`, but with repeated texts
 * remembered: this runs for every request that has context.
 */
export function countPromptTokens(messages: readonly unknown[], options: PromptTokenOptions = {}): number {
  const { toolTokens = 0, encoding = 'o200k_base' } = options;
  const roleTokens = (role: string) => (encoding === 'o200k_base' ? ROLE_TOKENS.get(role) : undefined) ?? countTokensRemembered(role, encoding);
  const count = (text: string) => countTokensRemembered(text, encoding);
  let n = 3 + toolTokens;
  for (const m of messages) {
    if (m === null || typeof m !== 'object') continue;
    const { role } = m as { role?: unknown };
    n += 3 + (typeof role === 'string' ? roleTokens(role) : 0) + messageTextTokens(m as Record<string, unknown>, count);
  }
  return n;
}

/** Tokens of a value as a template would show it: strings as is, anything else as JSON. */
export function countValueTokens(value: unknown): number {
  if (value === undefined || value === null) return 0;
  return countTokens(typeof value === 'string' ? value : JSON.stringify(value));
}

/** Loads the encoding now (server start) rather than in the first request. */
export function preloadContextTokenizer(): void {
  tokenCounter('o200k_base');
}

/**
 * Tokens of chat messages as the budget and `constraints.max_input_tokens` count them: 3 per
 * message plus the tokens of its text, name, refusal and calls (`messageTextTokens`, the
 * usage estimate's rule), in `encoding` (the context budget: o200k_base; the cap check: the
 * model's). `countPromptTokens` of the same messages is this plus their roles and the
 * reply's 3 (and the tools).
 */
export function messagesTokens(messages: readonly unknown[], encoding: EncodingName = 'o200k_base'): number {
  const count = (text: string) => countTokensRemembered(text, encoding);
  let n = 0;
  for (const m of messages) {
    if (m !== null && typeof m === 'object') n += 3 + messageTextTokens(m as Record<string, unknown>, count);
  }
  return n;
}

/** A message's text: the string, or its text parts joined by newlines. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const texts: string[] = [];
  for (const part of content) {
    if (part !== null && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string') texts.push((part as { text: string }).text);
  }
  return texts.join('\n');
}
