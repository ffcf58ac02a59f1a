/**
 * Applies `guard.injection` to a chat request: which messages are scanned, how their
 * scores combine, and whether the request is blocked. The pipeline calls `scanMessages`
 * for the client's messages (`'user'`, then `'tool'`) and for the text built from context
 * (`'context'`), and throws `GatewayError('prompt_injection_detected', ...)` when a
 * decision is `blocked`; this module never throws for content.
 *
 * @example
 * const guard = createInjectionGuard({ action: 'block', threshold: 0.5, scan: ['user'], max_scan_chars: 8192 });
 * const d = guard.scanMessages(body.messages, 'user');
 * if (d?.blocked) throw new GatewayError('prompt_injection_detected', 'The request was blocked by the prompt-injection guard.');
 */
import type { GuardConfig } from './config-schema.js';
import { createInjectionScanner, type InjectionScan, type InjectionScanner } from './scanner.js';

export interface GuardDecision {
  /** Highest score over the scanned messages, in [0, 1]; 0 when nothing was scanned. */
  score: number;
  flagged: boolean;
  /** flagged and `action: block`. */
  blocked: boolean;
  /** Signals of the highest-scoring message (family names, 'model'); never content. */
  signals: string[];
}

export interface InjectionGuard {
  /**
   * Scans OpenAI chat `messages`. For `'user'` only messages with role `user` are read,
   * for `'tool'` only tool results (role `tool` or `function`); for `'context'` every
   * message given. Content may be a string or an array of parts, of
   * which only `{type: 'text', text}` parts are read (joined with newlines). Returns
   * undefined when the action is `off` or `source` is not in `scan`.
   */
  scanMessages(messages: unknown[], source: ScanSource): GuardDecision | undefined;
  /** Whether `scanMessages` reads `source` (the action is not `off` and `scan` lists it). */
  scans(source: ScanSource): boolean;
  /**
   * `action: block`: a decision may refuse the request, so it must come before the request
   * goes upstream. Otherwise (flag, off) a decision only records, and can be made while the
   * upstream works on the request.
   */
  readonly blocks: boolean;
}

/** `guard.injection` as validated; `max_scan_chars` may be left out (default 8192). */
export type InjectionGuardConfig = Omit<GuardConfig['injection'], 'max_scan_chars'> & { max_scan_chars?: number };

export interface InjectionGuardOptions {
  /** A scanner to use instead of one built from the config (tests). */
  scanner?: InjectionScanner;
}

/** The text of one chat message's content, or undefined when it has none. */
export function messageText(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const content = (message as { content?: unknown }).content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return undefined;
  let text: string | undefined;
  for (const part of content) {
    if (typeof part !== 'object' || part === null) continue;
    const p = part as { type?: unknown; text?: unknown };
    if (p.type !== 'text' || typeof p.text !== 'string') continue;
    text = text === undefined ? p.text : `${text}\n${p.text}`;
  }
  return text;
}

/** Where scanned text comes from (`guard.injection.scan`). */
export type ScanSource = 'user' | 'context' | 'tool';

/** Whether a client message of `role` belongs to `source` (`'user'` or `'tool'`). */
function readsRole(source: 'user' | 'tool', role: unknown): boolean {
  return source === 'user' ? role === 'user' : role === 'tool' || role === 'function';
}

const roleOf = (message: unknown): unknown =>
  typeof message === 'object' && message !== null ? (message as { role?: unknown }).role : undefined;

/**
 * Builds the guard for one loaded config (the scanner, its tables, patterns and weights
 * are compiled here, once). Rebuild it when the config reloads.
 */
export function createInjectionGuard(cfg: InjectionGuardConfig, opts: InjectionGuardOptions = {}): InjectionGuard {
  if (cfg.action === 'off') return { scanMessages: () => undefined, scans: () => false, blocks: false };
  const scanner =
    opts.scanner ?? createInjectionScanner({ threshold: cfg.threshold, maxChars: cfg.max_scan_chars });
  const threshold = cfg.threshold;
  const block = cfg.action === 'block';
  const sources = new Set(cfg.scan);

  return {
    blocks: block,
    scans: (source) => sources.has(source),
    scanMessages(messages: unknown[], source: ScanSource): GuardDecision | undefined {
      if (!sources.has(source)) return undefined;
      let best: InjectionScan | undefined;
      for (const message of messages) {
        if (source !== 'context' && !readsRole(source, roleOf(message))) continue;
        const text = messageText(message);
        if (text === undefined || text.length === 0) continue;
        const scan = scanner.scan(text);
        if (best === undefined || scan.score > best.score) best = scan;
      }
      if (best === undefined) return { score: 0, flagged: false, blocked: false, signals: [] };
      const flagged = best.score >= threshold;
      return { score: best.score, flagged, blocked: flagged && block, signals: best.signals };
    },
  };
}
