/**
 * The text of a relayed chat completion stream, kept for two uses only: estimating output
 * tokens when the upstream sends no usage (or the stream is cut before it), and the span's
 * completion when content capture is on.
 *
 * Chunks are kept as they came, unparsed, while they are few: a short stream costs no
 * parsing on the hot path. Once they add up to `COMPACT_AT` characters they are parsed and
 * only their text is kept. A chunk's JSON is ~50× its text (`{"id":..., "choices":
 * [{"delta": {"content": "Hello"}}]}` for one token), so a long stream holds its text, not
 * every chunk. Measured for streams of 4,000 one-token chunks of 265 bytes: 49 KB each (the
 * text twice, content and reply, and up to 16 KB of unparsed chunks) where keeping the
 * chunks took 1.3 MB each, so 1,000 such open streams hold ~50 MB rather than ~1 GB.
 */

/** Unparsed chunk data held before it is reduced to text. */
export const COMPACT_AT = 16 * 1024;
/** Text kept per stream (characters): ~250k tokens, far past any real completion. */
export const MAX_TEXT = 1 << 20;

export interface StreamedText {
  /** The choices' `delta.content`, joined (what a span captures as the completion). */
  content: string;
  /** Everything output tokens pay for: content, refusal, tool call names and arguments. */
  reply: string;
}

export class StreamText {
  #pending: string[] = [];
  #pendingChars = 0;
  #content = '';
  #reply = '';

  /** Keeps one chunk's `data` payload (referenced until the next compaction). */
  add(data: string): void {
    if (this.#reply.length >= MAX_TEXT) return;
    this.#pending.push(data);
    this.#pendingChars += data.length;
    if (this.#pendingChars >= COMPACT_AT) this.#compact();
  }

  /** The text of every chunk added so far. */
  text(): StreamedText {
    this.#compact();
    return { content: this.#content, reply: this.#reply };
  }

  /** Chunks held unparsed (for tests). */
  get pending(): number {
    return this.#pending.length;
  }

  #compact(): void {
    // Joined, not appended piece by piece: one flat string per compaction rather than a
    // rope of a node per token (~32 bytes each, more than the text itself).
    const content: string[] = [];
    const reply: string[] = [];
    let replyChars = this.#reply.length;
    for (const data of this.#pending) {
      if (replyChars >= MAX_TEXT) break;
      let obj: { choices?: unknown };
      try {
        obj = JSON.parse(data);
      } catch {
        continue; // not JSON: nothing to count
      }
      if (!Array.isArray(obj?.choices)) continue;
      for (const c of obj.choices as Array<{ delta?: { content?: unknown } } | null>) {
        if (typeof c?.delta?.content === 'string') content.push(c.delta.content);
        const text = replyText(c?.delta);
        reply.push(text);
        replyChars += text.length;
      }
    }
    this.#content += content.join('');
    this.#reply += reply.join('');
    this.#pending = [];
    this.#pendingChars = 0;
  }
}

/**
 * The text of a reply message (or stream delta) that output tokens pay for: content, refusal,
 * and each tool call's name and arguments.
 */
export function replyText(message: unknown): string {
  if (typeof message !== 'object' || message === null) return '';
  const m = message as { content?: unknown; refusal?: unknown; tool_calls?: unknown };
  let text = typeof m.content === 'string' ? m.content : '';
  if (typeof m.refusal === 'string') text += m.refusal;
  if (Array.isArray(m.tool_calls)) {
    for (const call of m.tool_calls as Array<{ function?: { name?: unknown; arguments?: unknown } } | null>) {
      if (typeof call?.function?.name === 'string') text += call.function.name;
      if (typeof call?.function?.arguments === 'string') text += call.function.arguments;
    }
  }
  return text;
}
