/**
 * `history`: the last turns of the request's own conversation as `[{role, content}]`,
 * oldest first. By default the current question (the last user message) is left out, with
 * the tool calls and results that follow it: they are already in the request. At most
 * `max_turns` messages of the listed `roles`; then, newest first, as many as fit
 * `max_tokens` (o200k_base tokens), so the oldest go first. Text parts of array contents are
 * joined; messages without text are skipped.
 *
 * The messages are the client's own, and never cached. Its `user` turns with plain text are
 * what the guard's `user` scan reads, when that scan runs; every other turn the template
 * lifts into its system message (an `assistant` turn a client can forge, `tool`, `system`,
 * `developer`, a turn of content parts, and with the user scan off a `user` turn too) is
 * scanned as a context passage (untrusted text, `scan: [context]`).
 */
import type { HistoryBuilderConfig } from '../config-schema.js';
import { countTokensRemembered, textOf } from '../tokens.js';
import type { Builder, BuildInput, BuildPlan, ContextItem } from '../types.js';
import { commonSettings, type BuilderContext } from './common.js';

/** OpenAI cookbook "How to count tokens": a message costs ~3 tokens besides its text. */
const TOKENS_PER_TURN = 3;

export class HistoryBuilder implements Builder {
  readonly name: string;
  readonly kind = 'history' as const;
  readonly output = 'items' as const;
  readonly required: boolean;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly cache = undefined;
  /** Only the turns with `text` (those the user scan did not read) are scanned. */
  readonly untrusted = true;
  readonly dependsOn: readonly string[] = [];
  readonly fingerprint: string;
  readonly maxTurns: number;
  readonly maxTokens: number | undefined;
  readonly #roles: ReadonlySet<string>;
  readonly #includeCurrent: boolean;

  constructor(cfg: HistoryBuilderConfig, ctx: BuilderContext) {
    const common = commonSettings(cfg, ctx);
    this.name = common.name;
    this.required = common.required;
    this.timeoutMs = common.timeoutMs;
    this.priority = common.priority;
    this.fingerprint = common.fingerprint;
    this.maxTurns = cfg.max_turns;
    this.maxTokens = cfg.max_tokens;
    this.#roles = new Set(cfg.roles);
    this.#includeCurrent = cfg.include_current;
  }

  plan(input: BuildInput): BuildPlan {
    const maxTurns = input.maxTurns ?? this.maxTurns;
    return { compute: () => ({ shape: 'items', items: this.select(input.messages, maxTurns, input.userScanned ?? false), trimFrom: 'start' }) };
  }

  /**
   * The kept turns, oldest first.
   *
   * @param userScanned the guard's `user` scan reads the plain-text user turns (else they are passages to scan)
   */
  select(messages: readonly unknown[], maxTurns: number, userScanned: boolean): ContextItem[] {
    // The question being answered is the last user message, also while tool calls and
    // their results follow it (a tool-calling round). It is already in the request, and so
    // is that round: the history ends before the question (else the round's tool results
    // came twice, after a history missing its question, and took the turns of older ones).
    const current = this.#includeCurrent ? -1 : lastUserIndex(messages);
    const end = current === -1 ? messages.length : current;
    const picked: ContextItem[] = [];
    let tokens = 0;
    for (let i = end - 1; i >= 0 && picked.length < maxTurns; i--) {
      const m = messages[i] as { role?: unknown; content?: unknown } | null;
      if (m === null || typeof m !== 'object' || typeof m.role !== 'string' || !this.#roles.has(m.role)) continue;
      const content = textOf(m.content);
      if (content === '') continue;
      const cost = countTokensRemembered(content) + TOKENS_PER_TURN;
      if (this.maxTokens !== undefined && tokens + cost > this.maxTokens) break;
      tokens += cost;
      // What the guard's user scan did not read is scanned as a passage (`text`).
      const unread = !userScanned || m.role !== 'user' || typeof m.content !== 'string';
      picked.push(unread ? { value: { role: m.role, content }, tokens: cost, text: content } : { value: { role: m.role, content }, tokens: cost });
    }
    return picked.reverse();
  }
}

/** Index of the last `user` message, or -1. */
function lastUserIndex(messages: readonly unknown[]): number {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown } | null;
    if (m !== null && typeof m === 'object' && m.role === 'user') return i;
  }
  return -1;
}

