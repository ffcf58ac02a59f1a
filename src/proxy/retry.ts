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

/** The delay the upstream asked for, in ms, or undefined when it did not ask. */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>, now: number = Date.now()): number | undefined {
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined) {
    const n = Number(ms);
    if (Number.isFinite(n) && n >= 0) return n;
  }
  const after = first(headers['retry-after']);
  if (after === undefined) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(after)) return Number(after) * 1000;
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
