/**
 * Retry timing: exponential backoff with jitter, and the server's own hints
 * (`retry-after-ms`, OpenAI's; `retry-after`, RFC 9110 §10.2.3: seconds or an HTTP-date).
 */

export interface BackoffOptions {
  backoff_ms: number;
  max_backoff_ms: number;
}

/**
 * Delay before retry number `retry` (1-based): `backoff * 2^(retry-1)`, capped, with
 * "equal jitter" (half fixed, half random) so a burst of clients does not retry in step.
 */
export function backoffDelay(retry: number, options: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(options.max_backoff_ms, options.backoff_ms * 2 ** (retry - 1));
  return base / 2 + random() * (base / 2);
}

/** A non-negative number (`Number('')` is 0, `Number('0x10')` 16: neither is a delay). */
const DELAY = /^\s*\d+(\.\d+)?\s*$/;
/**
 * RFC 9110 §5.6.7: an HTTP-date (IMF-fixdate, RFC 850, asctime) starts with the day name and
 * has a time of day. `Date.parse` alone reads garbage such as `-5` or `soon 2` as a date in
 * 2001: a wait of 0, a retry at once.
 */
const HTTP_DATE = /^\s*(mon|tue|wed|thu|fri|sat|sun)[a-z]*,? .*\b\d\d:\d\d:\d\d\b/i;
/** The asctime form names no zone (it is GMT, as every HTTP-date): `Date.parse` would read it as local time. */
const ASCTIME = /^\s*[a-z]{3} [a-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\s*$/i;

/**
 * The delay the upstream asked for, in ms, or undefined when it did not ask (or sent a
 * value that is neither a delay nor an HTTP-date: the backoff applies, not a retry at once).
 */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>, now: number = Date.now()): number | undefined {
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined && DELAY.test(ms)) return Number(ms);
  const after = first(headers['retry-after']);
  if (after === undefined) return undefined;
  if (DELAY.test(after)) return Number(after) * 1000;
  const date = HTTP_DATE.test(after) ? Date.parse(ASCTIME.test(after) ? `${after.trim()} GMT` : after) : NaN;
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
