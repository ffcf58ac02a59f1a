/**
 * Applies `guard.injection` to a chat request: which messages are scanned, how their
 * scores combine, and whether the request is blocked. The pipeline (proxy/guard-step.ts)
 * calls `scanMessages` for the client's messages (`'user'`, then `'tool'`) and variables,
 * and throws `GatewayError('prompt_injection_detected', ...)` when a decision is
 * `blocked`; this module never throws for content. Context passages are scanned one by
 * one where they are built (context/untrusted.ts), with `scans('context')` saying whether.
 *
 * @example
 * const guard = createInjectionGuard({ action: 'block', threshold: 0.5, scan: ['user'], max_scan_chars: 8192 });
 * const d = guard.scanMessages(body.messages, 'user');
 * if (d?.blocked) throw new GatewayError('prompt_injection_detected', 'The request was blocked by the prompt-injection guard.');
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
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
  /**
   * A scanner to use instead of one built from the config (tests). Like those, it must read
   * at most `max_scan_chars` units from each end of a text: results are remembered by that much.
   */
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
  const scan = rememberScans(scanner, cfg.max_scan_chars ?? 8192);

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
        const result = scan(text);
        if (best === undefined || result.score > best.score) best = result;
      }
      if (best === undefined) return { score: 0, flagged: false, blocked: false, signals: [] };
      const flagged = best.score >= threshold;
      return { score: best.score, flagged, blocked: flagged && block, signals: [...best.signals] };
    },
  };
}

/**
 * Texts shorter than this are scanned every time: such a scan takes 2-3 µs, a lookup about
 * 0.5 µs, and an entry each would crowd the cache with greetings.
 */
const MIN_REMEMBERED_CHARS = 256;
/**
 * Longer texts are remembered by a SHA-256 (V8 hashes a string of more than 16383 units by
 * its length alone, so such keys would share a bucket).
 */
const MAX_KEYED_CHARS = 16_383;

/**
 * `scanner.scan`, remembered by text for one guard (so for one threshold, window and model:
 * a config reload builds a new guard and starts afresh). A chat client sends the whole
 * conversation every turn, so without this turn k scans the k-1 user messages before it
 * again. Results are frozen: every caller shares them.
 *
 * A text over `MAX_KEYED_CHARS` is remembered by the SHA-256 of its length and of its first
 * and last `maxChars` units, all the scanner reads of it (its first 3/4 and last 1/4 of
 * `maxChars`, see scanner.ts): hashing that takes ~1 µs per KB, scanning it ~10 µs. Digests
 * live apart from texts, so that no text a client sends can stand for another's digest.
 */
function rememberScans(scanner: InjectionScanner, maxChars: number): (text: string) => InjectionScan {
  const byText = new LRUCache<string, InjectionScan>({ maxSize: 4_000_000, sizeCalculation: (_s, text) => text.length + 64 });
  const byDigest = new LRUCache<string, InjectionScan>({ max: 1024 });
  return (text) => {
    if (text.length < MIN_REMEMBERED_CHARS) return scanner.scan(text);
    const cache = text.length > MAX_KEYED_CHARS ? byDigest : byText;
    const key = cache === byText ? text : windowDigest(text, maxChars);
    let result = cache.get(key);
    if (result === undefined) cache.set(key, (result = frozen(scanner.scan(text))));
    return result;
  };
}

/** SHA-256 of `text`'s length and its first and last `maxChars` units (the whole text when that is shorter). */
function windowDigest(text: string, maxChars: number): string {
  const hash = createHash('sha256').update(`${text.length}:`);
  if (text.length <= 2 * maxChars) hash.update(text, 'utf16le');
  else hash.update(text.slice(0, maxChars), 'utf16le').update(text.slice(-maxChars), 'utf16le');
  return hash.digest('base64');
}

function frozen(scan: InjectionScan): InjectionScan {
  Object.freeze(scan.signals);
  return Object.freeze(scan);
}
