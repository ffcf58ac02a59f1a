/**
 * `rules`: business rules as data. Conditions over the template variables, `user_id` and
 * other builders' outputs pick values to merge into one object:
 *
 * ```yaml
 * - name: tier_rules
 *   kind: rules
 *   defaults: {refund_limit_usd: 0, actions: [answer], escalate_after_turns: 6}
 *   rules:
 *     - when: {customer.tier: gold}
 *       set: {refund_limit_usd: 500, actions: [answer, refund, replace, escalate]}
 *     - when: {customer.lifetime_value_usd: {gte: 5000}}
 *       set: {priority_queue: true}
 * ```
 *
 * A condition value is a scalar (equals), a list (one of) or operators (`eq`, `ne`, `in`,
 * `not_in`, `gt`, `gte`, `lt`, `lte`, `exists`). Equality is strict (`"3"` is not `3`, `Gold`
 * is not `gold`); the comparisons also read numbers sent as JSON number text (`"5200.00"`).
 * A builder named in a path (`customer`) is a dependency: the rules wait for it, and see
 * nothing there when it was skipped. Outputs are config data, so they are trusted (not
 * scanned).
 */
import type { RuleCondition, RulesBuilderConfig } from '../config-schema.js';
import { getPath, splitPath } from '../paths.js';
import { countValueTokens } from '../tokens.js';
import type { Builder, BuilderOutput, BuildInput, BuildPlan } from '../types.js';
import { commonSettings, deepFreeze, dependencies, type BuilderContext } from './common.js';

type Predicate = (value: unknown) => boolean;

interface CompiledRule {
  readonly tests: readonly { path: readonly string[]; test: Predicate }[];
  readonly set: Readonly<Record<string, unknown>>;
}

/** Distinct match sets whose output (and token count) is remembered. */
const MEMO_LIMIT = 256;

export class RulesBuilder implements Builder {
  readonly name: string;
  readonly kind = 'rules' as const;
  readonly output = 'object' as const;
  readonly required: boolean;
  readonly timeoutMs: number;
  readonly priority: number;
  readonly cache = undefined;
  readonly untrusted = false;
  readonly dependsOn: readonly string[];
  readonly fingerprint: string;
  readonly #defaults: Readonly<Record<string, unknown>>;
  readonly #rules: readonly CompiledRule[];
  readonly #first: boolean;
  /** Output by the set of rules that matched: the same match set gives the same object. */
  readonly #memo = new Map<string, BuilderOutput>();

  constructor(cfg: RulesBuilderConfig, ctx: BuilderContext) {
    const common = commonSettings(cfg, ctx);
    this.name = common.name;
    this.required = common.required;
    this.timeoutMs = common.timeoutMs;
    this.priority = common.priority;
    this.fingerprint = common.fingerprint;
    this.#defaults = structuredClone(cfg.defaults);
    this.#first = cfg.match === 'first';
    this.#rules = cfg.rules.map((r) => ({
      tests: Object.entries(r.when).map(([path, cond]) => ({ path: splitPath(path), test: compileCondition(cond) })),
      set: structuredClone(r.set),
    }));
    this.dependsOn = dependencies(
      cfg.rules.flatMap((r) => Object.keys(r.when).map((p) => p.split('.')[0])),
      ctx,
    );
  }

  plan(input: BuildInput): BuildPlan {
    return { compute: () => this.evaluate(input.scope) };
  }

  /** The merged output for a scope. */
  evaluate(scope: Readonly<Record<string, unknown>>): BuilderOutput {
    let key = '';
    for (let i = 0; i < this.#rules.length; i++) {
      const rule = this.#rules[i];
      if (rule.tests.every((t) => t.test(getPath(scope, t.path)))) {
        key += `${i},`;
        if (this.#first) break;
      }
    }
    const known = this.#memo.get(key);
    if (known) return known;
    const value: Record<string, unknown> = { ...this.#defaults };
    for (const i of key.split(',')) if (i !== '') Object.assign(value, this.#rules[Number(i)].set);
    const output: BuilderOutput = Object.freeze({ shape: 'object', value: deepFreeze(value), tokens: countValueTokens(value) });
    if (this.#memo.size < MEMO_LIMIT) this.#memo.set(key, output);
    return output;
  }
}

function compileCondition(cond: RuleCondition): Predicate {
  if (cond === null) return (v) => v === undefined || v === null;
  if (Array.isArray(cond)) {
    const set = new Set<unknown>(cond);
    return (v) => set.has(v);
  }
  if (typeof cond !== 'object') return (v) => v === cond;
  const tests: Predicate[] = [];
  const num = (f: (n: number) => boolean): Predicate => (v) => {
    const n = numberOf(v);
    return n !== undefined && f(n);
  };
  if (cond.eq !== undefined) tests.push(cond.eq === null ? (v) => v === undefined || v === null : (v) => v === cond.eq);
  if (cond.ne !== undefined) tests.push(cond.ne === null ? (v) => v !== undefined && v !== null : (v) => v !== cond.ne);
  if (cond.in !== undefined) {
    const set = new Set<unknown>(cond.in);
    tests.push((v) => set.has(v));
  }
  if (cond.not_in !== undefined) {
    const set = new Set<unknown>(cond.not_in);
    tests.push((v) => !set.has(v));
  }
  if (cond.gt !== undefined) tests.push(num((n) => n > cond.gt!));
  if (cond.gte !== undefined) tests.push(num((n) => n >= cond.gte!));
  if (cond.lt !== undefined) tests.push(num((n) => n < cond.lt!));
  if (cond.lte !== undefined) tests.push(num((n) => n <= cond.lte!));
  if (cond.exists !== undefined) {
    const want = cond.exists;
    tests.push((v) => (v !== undefined && v !== null) === want);
  }
  return (v) => tests.every((t) => t(v));
}

/** JSON number text: services often send amounts as strings ("5200.00") to keep decimals exact. */
const NUMERIC = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** A number, or a string holding one in JSON's syntax, as a number; anything else undefined. */
function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string' || !NUMERIC.test(v)) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}
