/**
 * The text of a relayed chat completion stream, kept for two uses only: estimating output
 * tokens when the upstream sends no usage (or the stream is cut before it), and the span's
 * completion when content capture is on.
 *
 * Chunks are kept as they came, unparsed: nothing is parsed on the hot path, and the
 * gateway asks every stream for its usage, so the estimate is seldom needed. A long stream
 * keeps only its first `KEPT_CHARS` characters of chunks (~60 one-token chunks) and counts
 * the rest: its estimate is that sample's tokens scaled by the stream's length (`scale`).
 * Keeping every chunk took 1.3 MB per open stream of 4,000 tokens, ~1 GB for 1,000.
 *
 * With content capture (`keepAll`) the whole text is needed: past `KEPT_CHARS` the chunks
 * are parsed and reduced to their text, ~50× smaller than their JSON (49 KB for the same
 * stream), up to `MAX_TEXT` characters.
 */

import { callOf, messageCalls, type MessageCall } from '../telemetry/calls.js';
import type { CompletionChoice } from '../telemetry/genai-messages.js';

/** Unparsed chunk data held: the sample of a long stream, or (keepAll) before it is reduced to text. */
export const KEPT_CHARS = 16 * 1024;
/** Text kept per stream with content capture (characters): ~250k tokens, far past any real completion. */
export const MAX_TEXT = 1 << 20;

/** The choices of a stream that kept none (shared, never written). */
const NO_CHOICES: ReadonlyMap<number, never> = new Map<number, never>();

/** Where a choice's legacy `function_call` is kept among its tool calls (sorted first). */
const LEGACY_CALL = -1;

export interface StreamedText {
  /** The choices' `delta.content`, joined (what a span captures as the completion). */
  content: string;
  /**
   * Everything output tokens pay for (content, refusal, reasoning, call names and arguments:
   * `replyText`), one text per choice in index order: each choice is counted on its own.
   */
  replies: string[];
  /**
   * The stream's chunk characters over those `reply` was read from (1 when it covers the
   * whole stream): an estimate from `reply` is multiplied by it.
   */
  scale: number;
}

export class StreamText {
  #pending: string[] = [];
  #pendingChars = 0;
  /** Chunk characters kept (as chunks or as their text). */
  #keptChars = 0;
  /** Chunk characters past the sample of a long stream: counted, not kept. */
  #skippedChars = 0;
  // The maps below are made on first use: most streams are never read back (their usage
  // came), and a thousand open streams would otherwise hold three empty maps each.
  /** Each choice's content by choice index: with n > 1 the choices' chunks interleave. */
  #content: Map<number, string> | undefined;
  /** keepAll: each choice's tool calls by their index (id and name from the first delta, arguments in pieces), and finish reason. */
  #toolCalls: Map<number, Map<number, { id?: string; name?: string; arguments: string[] }>> | undefined;
  #finishReasons: Map<number, string> | undefined;
  /** Each choice's `replyText` by choice index. */
  #replies: Map<number, string> | undefined;
  #replyChars = 0;

  /** @param keepAll keep the whole text (content capture), not a sample of a long stream. */
  constructor(private readonly keepAll = false) {}

  /** Keeps one chunk's `data` payload (referenced, unparsed), or counts it past the sample. */
  add(data: string): void {
    if (this.#pendingChars >= KEPT_CHARS && !this.keepAll) {
      this.#skippedChars += data.length;
      return;
    }
    // The text is full (content capture): the rest of the stream is counted, not kept, so
    // an estimate from the text still scales to the whole stream.
    if (this.#replyChars >= MAX_TEXT) {
      this.#skippedChars += data.length;
      return;
    }
    this.#pending.push(data);
    this.#pendingChars += data.length;
    this.#keptChars += data.length;
    if (this.#pendingChars >= KEPT_CHARS && this.keepAll) this.#compact();
  }

  /** The text of the chunks kept, and how much of the stream it stands for. */
  text(): StreamedText {
    this.#compact();
    const kept = this.#keptChars;
    // As a non-stream answer's completion reads: each choice whole, in index order.
    const byChoice = this.#content ?? NO_CHOICES;
    const content = [...byChoice.keys()].sort((a, b) => a - b).map((index) => byChoice.get(index));
    const replies = this.#replies ?? NO_CHOICES;
    const reply = [...replies.keys()].sort((a, b) => a - b).map((index) => replies.get(index) ?? '');
    return { content: content.join(''), replies: reply, scale: kept > 0 ? (kept + this.#skippedChars) / kept : 1 };
  }

  /**
   * The answer's choices in index order: text, tool calls (arguments joined) and finish
   * reason. Complete only with `keepAll` (content capture); up to MAX_TEXT of text.
   */
  choices(): CompletionChoice[] {
    this.#compact();
    const content = this.#content ?? NO_CHOICES;
    const toolCalls = this.#toolCalls ?? NO_CHOICES;
    const finishReasons = this.#finishReasons ?? NO_CHOICES;
    const indexes = new Set([...content.keys(), ...toolCalls.keys(), ...finishReasons.keys()]);
    return [...indexes]
      .sort((a, b) => a - b)
      .map((index) => ({
        content: content.get(index) ?? '',
        toolCalls: [...(toolCalls.get(index) ?? new Map()).entries()]
          .sort(([a], [b]) => a - b)
          .map(([, call]) => ({ id: call.id, name: call.name, arguments: call.arguments.join('') })),
        finishReason: finishReasons.get(index),
      }));
  }

  #compact(): void {
    // Joined, not appended piece by piece: one flat string per compaction rather than a
    // rope of a node per token (~32 bytes each, more than the text itself).
    const content = new Map<number, string[]>();
    const reply = new Map<number, string[]>();
    let replyChars = this.#replyChars;
    for (let i = 0; i < this.#pending.length; i++) {
      const data = this.#pending[i];
      if (replyChars >= MAX_TEXT) {
        // Chunks held but past the text's limit are counted as the stream's rest, as above.
        for (let j = i; j < this.#pending.length; j++) {
          this.#keptChars -= this.#pending[j].length;
          this.#skippedChars += this.#pending[j].length;
        }
        break;
      }
      let obj: { choices?: unknown };
      try {
        obj = JSON.parse(data);
      } catch {
        continue; // not JSON: nothing to count
      }
      if (!Array.isArray(obj?.choices)) continue;
      for (const c of obj.choices as Array<{ index?: unknown; delta?: { content?: unknown; tool_calls?: unknown }; finish_reason?: unknown } | null>) {
        if (this.keepAll && c) this.#noteCallsAndFinish(c);
        const index = typeof c?.index === 'number' ? c.index : 0;
        if (typeof c?.delta?.content === 'string') pushPiece(content, index, c.delta.content);
        const text = replyText(c?.delta);
        if (text !== '') pushPiece(reply, index, text);
        replyChars += text.length;
      }
    }
    if (content.size > 0) appendPieces((this.#content ??= new Map()), content);
    if (reply.size > 0) appendPieces((this.#replies ??= new Map()), reply);
    this.#replyChars = replyChars;
    this.#pending = [];
    this.#pendingChars = 0;
  }

  /** A choice delta's tool-call pieces and finish reason (content capture only). */
  #noteCallsAndFinish(c: { index?: unknown; delta?: { tool_calls?: unknown; function_call?: unknown }; finish_reason?: unknown }): void {
    const index = typeof c.index === 'number' ? c.index : 0;
    if (typeof c.finish_reason === 'string' && c.finish_reason !== '') (this.#finishReasons ??= new Map()).set(index, c.finish_reason);
    const deltas = c.delta?.tool_calls;
    const legacy = c.delta?.function_call;
    if (!Array.isArray(deltas) && !legacy) return;
    this.#toolCalls ??= new Map();
    let calls = this.#toolCalls.get(index);
    if (!calls) this.#toolCalls.set(index, (calls = new Map()));
    // The legacy `function_call` (one per choice) goes before the tool calls.
    if (legacy) notePiece(calls, LEGACY_CALL, callOf(undefined, legacy));
    if (!Array.isArray(deltas)) return;
    for (const d of deltas as Array<{ index?: unknown; id?: unknown; function?: unknown; custom?: unknown } | null>) {
      notePiece(calls, typeof d?.index === 'number' ? d.index : calls.size, callOf(d?.id, d?.function ?? d?.custom));
    }
  }
}

function pushPiece(pieces: Map<number, string[]>, index: number, piece: string): void {
  const list = pieces.get(index);
  if (list) list.push(piece);
  else pieces.set(index, [piece]);
}

/** Each choice's new pieces joined onto its text so far. */
function appendPieces(texts: Map<number, string>, pieces: ReadonlyMap<number, string[]>): void {
  for (const [index, list] of pieces) texts.set(index, (texts.get(index) ?? '') + list.join(''));
}

/**
 * The text of a reply message (or stream delta) that output tokens pay for: content, refusal,
 * each call's name and arguments (a `custom` tool call's input, the legacy `function_call`),
 * and the reasoning text OpenAI-compatible reasoning upstreams send: `reasoning_content`
 * (DeepSeek, vLLM) or `reasoning` (OpenRouter, Groq; newer vLLM sends both, the same text,
 * so only one counts). A reasoning stream cut while the model thinks (a client that gives
 * up) has no other text to estimate from.
 */
export function replyText(message: unknown): string {
  if (typeof message !== 'object' || message === null) return '';
  const m = message as { content?: unknown; refusal?: unknown; reasoning_content?: unknown; reasoning?: unknown; tool_calls?: unknown; function_call?: unknown };
  let text = typeof m.content === 'string' ? m.content : '';
  if (typeof m.refusal === 'string') text += m.refusal;
  if (typeof m.reasoning_content === 'string') text += m.reasoning_content;
  else if (typeof m.reasoning === 'string') text += m.reasoning;
  for (const call of messageCalls(m)) text += (call.name ?? '') + call.arguments;
  return text;
}

/** One delta of a call: its id and name once, a piece of its arguments (a `custom` call's input). */
function notePiece(calls: Map<number, { id?: string; name?: string; arguments: string[] }>, at: number, piece: MessageCall): void {
  let call = calls.get(at);
  if (!call) calls.set(at, (call = { arguments: [] }));
  call.id ??= piece.id;
  call.name ??= piece.name;
  if (piece.arguments !== '') call.arguments.push(piece.arguments);
}
