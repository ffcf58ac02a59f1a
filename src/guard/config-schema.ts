/** Config schema of `guard:` (see README "Injection guard"). */
import { z } from 'zod';

export const injectionSchema = z.strictObject({
  /** flag: annotate and count; block: reject with 400 prompt_injection_detected; off: no scan. */
  action: z.enum(['flag', 'block', 'off']).default('flag'),
  /** Score in [0,1] at or above which content is flagged (or blocked). */
  threshold: z.number().min(0).max(1).default(0.5),
  /**
   * What to scan: the client's user messages, context injected by builders, and (opt-in)
   * the tool results the client sends back (role `tool`, or the legacy `function`).
   */
  scan: z.array(z.enum(['user', 'context', 'tool'])).default(['user', 'context']),
  /**
   * Characters of each message read at most: the first 3/4 and the last 1/4 of this
   * budget. Caps the scan time of very long messages (about 10 µs per KB).
   */
  max_scan_chars: z.number().int().min(256).max(1_048_576).default(8192),
});

export const guardSchema = z.strictObject({
  injection: injectionSchema.prefault({}),
});

export type GuardConfig = z.infer<typeof guardSchema>;
