/**
 * Variant assignment (DESIGN.md "Assignment rule") and the gradual rollout.
 *
 * Rollout design. Two independent hashes per user:
 * - `bucket = murmur3(salt + ":" + user) mod 10000` picks the variant range, exactly as
 *   without a rollout;
 * - `rollout_bucket = murmur3(salt + ":rollout:" + user) mod 10000` decides exposure: the
 *   user sees their variant when `rollout_bucket < stage_percent * 100`, else the baseline
 *   (reason `rollout_holdback`).
 * The variant depends only on `bucket`, which never changes, and stages never decrease
 * (the schema rejects it), so exposure only grows: a user's history is baseline, baseline,
 * ..., then their one variant for good. Nobody moves between two non-baseline variants.
 * At a stage of p%, a variant of share s serves p% x s of all users.
 */
import { bucketOf, rolloutBucketOf } from './hash.js';
import type { CompiledExperiment, CompiledVariant } from './compile.js';

/** Why a user got their variant. Only `assigned` belongs in the experiment analysis. */
export type AssignmentReason = 'assigned' | 'no_user' | 'outside_schedule' | 'rollout_holdback';

export interface Assignment {
  readonly variant: CompiledVariant;
  readonly reason: AssignmentReason;
  /** 0..9999; present whenever there is a user id. */
  readonly bucket?: number;
  /** 0..9999; present when a rollout stage below 100% decided. */
  readonly rolloutBucket?: number;
}

export interface RolloutStage {
  /** 0-based index into `rollout.stages`. */
  readonly index: number;
  readonly percent: number;
  readonly startedAt: Date;
  /** When the next stage begins; null at the last stage, or when `end` comes first. */
  readonly nextAt: Date | null;
}

/** Whether `now` is within `start`..`end` (start inclusive, end exclusive). */
export function isActive(exp: CompiledExperiment, now: Date): boolean {
  const t = now.getTime();
  return (exp.startMs === undefined || t >= exp.startMs) && (exp.endMs === undefined || t < exp.endMs);
}

/**
 * The rollout stage in effect at `now`: stage k runs from `start + k * every`; the last
 * stage stays. Null when the experiment has no rollout or is outside `start`..`end` (no
 * stage is in effect: everyone gets the baseline). `nextAt` is null when no later stage
 * begins before `end`.
 */
export function currentStage(exp: CompiledExperiment, now: Date): RolloutStage | null {
  const { rollout, startMs, endMs } = exp;
  if (!rollout || startMs === undefined || !isActive(exp, now)) return null;
  const elapsed = now.getTime() - startMs;
  const index = Math.min(Math.floor(elapsed / rollout.everyMs), rollout.stages.length - 1);
  const nextMs = startMs + (index + 1) * rollout.everyMs;
  const isLast = index === rollout.stages.length - 1 || (endMs !== undefined && nextMs >= endMs);
  return {
    index,
    percent: rollout.stages[index],
    startedAt: new Date(startMs + index * rollout.everyMs),
    nextAt: isLast ? null : new Date(nextMs),
  };
}

/** The variant whose range holds `bucket`. */
export function variantForBucket(exp: CompiledExperiment, bucket: number): CompiledVariant {
  const { variants } = exp;
  for (let i = 0; i < variants.length - 1; i++) if (bucket < variants[i].to) return variants[i];
  return variants[variants.length - 1];
}

/**
 * Assigns a user. Pure and deterministic: same experiment, user and time, same answer.
 *
 * @example
 * assign(exp, 'user-123', new Date()) // { variant: {name: 'warm', ...}, bucket: 7686, reason: 'assigned' }
 * assign(exp, undefined, new Date())  // { variant: baseline, reason: 'no_user' }
 */
export function assign(exp: CompiledExperiment, userId: string | undefined, now: Date): Assignment {
  if (userId === undefined || userId === '') return { variant: exp.baseline, reason: 'no_user' };
  const bucket = bucketOf(exp.salt, userId);
  if (!isActive(exp, now)) return { variant: exp.baseline, bucket, reason: 'outside_schedule' };
  const variant = variantForBucket(exp, bucket);
  if (exp.rollout) {
    const stage = currentStage(exp, now);
    const percent = stage?.percent ?? 0;
    if (percent < 100) {
      const rolloutBucket = rolloutBucketOf(exp.salt, userId);
      // Exactly README's `rollout_bucket < stage_percent * 100` (in doubles; `p * 10000 / 100` differs at some fractional p).
      // The baseline's own users are held back alike (they see no change): the analysed split
      // then matches the weights at every stage, and pooling stages mixes no periods unevenly.
      if (rolloutBucket >= percent * 100) return { variant: exp.baseline, bucket, rolloutBucket, reason: 'rollout_holdback' };
      return { variant, bucket, rolloutBucket, reason: 'assigned' };
    }
  }
  return { variant, bucket, reason: 'assigned' };
}
