/** What every builder factory gets besides its own config. Load-time only. */
import type { BuilderConfig } from '../config-schema.js';
import type { BuilderKind } from '../types.js';

export interface BuilderContext {
  /** `context.deadline_ms`: the default `timeout_ms`. */
  deadlineMs: number;
  /** Directory of the config file (relative paths resolve against it). */
  baseDir: string;
  /** Every configured builder name (to find dependencies). */
  builderNames: ReadonlySet<string>;
}

/** Trimming order when the budget is short: the lowest priority shrinks first. */
export const DEFAULT_PRIORITY: Readonly<Record<BuilderKind, number>> = { rules: 100, http: 80, knowledge: 50, history: 40 };

/** The settings every kind shares, defaults applied. */
export function commonSettings(cfg: BuilderConfig, ctx: BuilderContext) {
  return {
    name: cfg.name,
    kind: cfg.kind,
    required: cfg.required,
    timeoutMs: cfg.timeout_ms ?? ctx.deadlineMs,
    priority: cfg.priority ?? DEFAULT_PRIORITY[cfg.kind],
    cache: 'cache' in cfg ? cfg.cache : undefined,
    fingerprint: JSON.stringify(cfg),
  } as const;
}

/** Roots that name builders (itself included: compile reports the cycle), deduplicated. */
export function dependencies(roots: Iterable<string>, ctx: BuilderContext): string[] {
  const out = new Set<string>();
  for (const r of roots) if (ctx.builderNames.has(r)) out.add(r);
  return [...out];
}

/** Freezes a builder output: it may be cached and shared by concurrent requests. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
