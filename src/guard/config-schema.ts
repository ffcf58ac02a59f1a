/** Config schema of `guard:` (see README "Injection guard"). */
import { z } from 'zod';

export const injectionSchema = z.strictObject({
  /** flag: annotate and count; block: reject with 400 prompt_injection_detected; off: no scan. */
  action: z.enum(['flag', 'block', 'off']).default('flag'),
  /** Score in [0,1] at or above which content is flagged (or blocked). */
  threshold: z.number().min(0).max(1).default(0.5),
  /** What to scan: the client's user messages, and context injected by builders. */
  scan: z.array(z.enum(['user', 'context'])).default(['user', 'context']),
});

export const guardSchema = z.strictObject({
  injection: injectionSchema.prefault({}),
});

export type GuardConfig = z.infer<typeof guardSchema>;
