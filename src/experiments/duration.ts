/** `30m`, `24h`, `7d` -> milliseconds (the `rollout.every` format). */
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Parses a duration like `500ms`, `30s`, `15m`, `24h` or `7d`; undefined when malformed.
 *
 * @example
 * parseDuration('24h') // 86400000
 */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}
