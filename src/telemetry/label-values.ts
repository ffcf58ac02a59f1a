/**
 * Bounded label values. A free-form label (model names come from clients) keeps the first
 * `cap` distinct values it sees; later new values are reported as `other`. Values listed as
 * known (price-book and configured model names) always pass and take no slot. One per
 * label per metrics registry, for the life of the process.
 */
import { holdsCredential } from './redact.js';

export const OTHER = 'other';
const MAX_VALUE_LENGTH = 128;
/**
 * A lone surrogate (a client can send one as a JSON `\ud800` escape). The exposition is
 * UTF-8, where every lone surrogate becomes U+FFFD: two such values would be two series
 * with the same labels.
 */
const LONE_SURROGATE = /\p{Cs}/u;

export class LabelValues {
  readonly #known: Set<string>;
  readonly #seen = new Set<string>();
  readonly #cap: number;

  constructor(cap: number, known: Iterable<string> = []) {
    this.#cap = cap;
    this.#known = new Set(known);
  }

  /** Makes values always pass (config reload added models); they take no slot. */
  allow(values: Iterable<string>): void {
    for (const v of values) this.#known.add(v);
  }

  /**
   * The value to put in the label: itself, `''` when absent, or `other` past the cap (or when
   * too long, not well-formed UTF-16, or shaped like a credential: a client that sends its
   * key as the model must not publish it on the unauthenticated /metrics). A value that is
   * `other` itself takes no slot: it reads as the overflow series anyway, and a client
   * sending it must not use up a slot.
   */
  value(v: string | undefined): string {
    if (!v) return '';
    if (this.#known.has(v) || this.#seen.has(v)) return v;
    if (v === OTHER || v.length > MAX_VALUE_LENGTH || this.#seen.size >= this.#cap || LONE_SURROGATE.test(v) || holdsCredential(v)) return OTHER;
    this.#seen.add(v);
    return v;
  }
}
