/**
 * In-memory assignment counts per experiment and variant, by reason, for the admin API.
 * One instance per process, kept across config reloads (counts are keyed by name, so a
 * reload that keeps an experiment keeps its counts). Not persisted; the durable numbers are
 * the Prometheus experiment metrics.
 */
import type { AssignmentReason } from './assignment.js';

export type ReasonCounts = Record<AssignmentReason, number>;

function emptyCounts(): ReasonCounts {
  return { assigned: 0, no_user: 0, outside_schedule: 0, rollout_holdback: 0 };
}

export class AssignmentCounters {
  readonly #byExperiment = new Map<string, Map<string, ReasonCounts>>();

  /**
   * Counts one assignment of `experimentId` to `variant` (the variant actually used), made
   * when the template is selected: a request that fails after it (a missing variable, a
   * required context source down) is counted too. The Prometheus experiment metrics count
   * finished requests.
   */
  record(experimentId: string, variant: string, reason: AssignmentReason): void {
    let variants = this.#byExperiment.get(experimentId);
    if (!variants) this.#byExperiment.set(experimentId, (variants = new Map()));
    let counts = variants.get(variant);
    if (!counts) variants.set(variant, (counts = emptyCounts()));
    counts[reason]++;
  }

  /**
   * Counts per variant (copies). `variants` lists names that should appear even at zero,
   * in that order (the experiment's variants).
   */
  snapshot(experimentId: string, variants: readonly string[] = []): Record<string, ReasonCounts> {
    const known = this.#byExperiment.get(experimentId);
    // No prototype: a variant named `constructor` is counted like any other.
    const out: Record<string, ReasonCounts> = Object.create(null);
    for (const name of variants) out[name] = { ...(known?.get(name) ?? emptyCounts()) };
    for (const [name, counts] of known ?? []) out[name] ??= { ...counts };
    return out;
  }

  /** Totals by reason across variants. */
  totals(experimentId: string): ReasonCounts {
    const total = emptyCounts();
    for (const counts of this.#byExperiment.get(experimentId)?.values() ?? []) {
      for (const r of Object.keys(total) as AssignmentReason[]) total[r] += counts[r];
    }
    return total;
  }
}
