/**
 * Indirect prompt injection: text a builder fetched or retrieved (knowledge passages, http
 * answers) is scanned before it reaches a prompt. Policy (`guard.injection`): `block` drops
 * a flagged passage (or a flagged string field of an http answer, or a field whose name
 * is flagged); `flag` keeps it; both record it. Scanning is off when the action is `off` or `scan` lacks `context`.
 */
import type { InjectionScan } from '../guard/scanner.js';
import type { BuilderOutput, ContextItem } from './types.js';
import { countValueTokens } from './tokens.js';

export interface ScanOutcome {
  readonly output: BuilderOutput;
  /** Passages or fields at or above the threshold. */
  readonly flagged: number;
  /** Of those, removed (action block). */
  readonly blocked: number;
  /** Highest score seen; undefined when nothing was scanned. */
  readonly maxScore: number | undefined;
}

/**
 * @param scan scores one text (memoised by the runtime)
 * @param block drop what is flagged
 */
export function screenOutput(output: BuilderOutput, scan: (text: string) => InjectionScan, block: boolean): ScanOutcome {
  let flagged = 0;
  let blocked = 0;
  let maxScore: number | undefined;
  const check = (text: string): boolean => {
    const s = scan(text);
    maxScore = Math.max(maxScore ?? 0, s.score);
    if (!s.flagged) return false;
    flagged++;
    if (block) blocked++;
    return block;
  };

  if (output.shape === 'items') {
    const kept: ContextItem[] = [];
    for (const item of output.items) {
      if (item.text !== undefined && check(item.text)) continue;
      kept.push(item);
    }
    const out = blocked > 0 ? { ...output, items: kept } : output;
    return { output: out, flagged, blocked, maxScore };
  }

  const walk = (value: unknown): { keep: boolean; value: unknown; changed: boolean } => {
    if (typeof value === 'string') return check(value) ? { keep: false, value, changed: true } : { keep: true, value, changed: false };
    if (value === null || typeof value !== 'object') return { keep: true, value, changed: false };
    let changed = false;
    if (Array.isArray(value)) {
      const out: unknown[] = [];
      for (const v of value) {
        const r = walk(v);
        changed ||= r.changed;
        if (r.keep) out.push(r.value);
      }
      return { keep: true, value: changed ? out : value, changed };
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // A key reaches the prompt too, when the template renders the object whole (as JSON).
      if (check(k)) {
        changed = true;
        continue;
      }
      const r = walk(v);
      changed ||= r.changed;
      // Defined, not assigned: a "__proto__" key in the service's JSON would set the prototype.
      if (r.keep) Object.defineProperty(out, k, { value: r.value, enumerable: true, writable: true, configurable: true });
    }
    return { keep: true, value: changed ? out : value, changed };
  };
  const r = walk(output.value);
  if (!r.changed) return { output, flagged, blocked, maxScore };
  const value = r.value as Record<string, unknown>;
  return { output: { shape: 'object', value, tokens: countValueTokens(value) }, flagged, blocked, maxScore };
}
