/**
 * Builds the context of one request (DESIGN.md "One request", step 4):
 *
 *   recipe -> builders run concurrently (each after the builders it reads), each through
 *   its cache and within its timeout -> untrusted output scanned -> overall deadline ->
 *   required check -> token budget -> variables
 *
 * Builders that answer at once (rules, history, fresh cache entries) are done without a
 * promise or a timer; the deadline only applies when one has to wait (a cache miss, an HTTP
 * call). A builder that is not done by `deadline_ms`, times out, fails or lacks input is
 * skipped and recorded; a required one makes the request fail with 424 `context_unavailable`.
 * Work cut off by the deadline keeps running in the background and fills the cache for the
 * next request. Each builder gets a child span (`context <name>`) under a `context` span.
 */
import { context as otelContext, trace, type Context, type Span } from '@opentelemetry/api';
import { GatewayError } from '../errors.js';
import type { InjectionScanner } from '../guard/scanner.js';
import { fitBudget } from './budget.js';
import { countAsRendered } from './item-rendering.js';
import { endRoot, record } from './build-telemetry.js';
import type { ContextPlan } from './compile.js';
import { PartialAnswer } from './fetch-json.js';
import { fail, failure, type Outcome } from './outcome.js';
import { ABORTED, abortPromise, within } from './race.js';
import { selectRecipe } from './recipes.js';
import type { CacheLookup, ContextCache } from './cache.js';
import type { ContextRuntime } from './runtime.js';
import { messagesTokens } from './tokens.js';
import type { Builder, BuilderOutput, BuilderReport, BuildPlan, ContextReport } from './types.js';
import { clientVariableTokens, lastUserText, variableOf } from './variables.js';

/** `guard.injection` as far as context cares. */
export interface ContextGuardPolicy {
  readonly action: 'flag' | 'block' | 'off';
  readonly threshold: number;
  readonly scan: readonly string[];
  /** Characters read per text (the scanner's `maxChars`). */
  readonly max_scan_chars?: number;
}

export interface BuildContextOptions {
  /** The request's `messages` as the client sent them. */
  messages: readonly unknown[];
  /**
   * The client's messages the final prompt keeps, for `max_input_tokens`: with `mode:
   * replace` not the system and developer messages the template replaces. Default: `messages`.
   */
  keptMessages?: readonly unknown[];
  /**
   * Tokens of the request's tool definitions, for `max_input_tokens`: the model reads them
   * as prompt, so they take room the context cannot have. Default 0 (no tools).
   */
  toolTokens?: number;
  userId: string | undefined;
  /** The client's template variables (builders read them; their outputs do not override them here). */
  variables: Readonly<Record<string, unknown>>;
  /** The exchange's signal: when it aborts, building stops waiting. */
  signal?: AbortSignal;
  /** Injection policy; no scanning when absent. */
  guard?: ContextGuardPolicy;
  /** The guard's scanner; the runtime makes one for `guard.threshold` when absent. */
  scanner?: InjectionScanner;
  /** Parent of the context spans (the request's SERVER span context). */
  parent?: Context;
  /** For bandits that learn from `feedback.<name>`. */
  requestId?: string;
  /**
   * Receives the report before `buildContext` returns or throws (`unavailable`: it throws
   * 424 `context_unavailable`): a request a required builder failed was still served by its
   * recipe, and counts as that recipe's error.
   */
  onReport?: (report: ContextReport, unavailable: boolean) => void;
}

export interface ContextResult {
  /** Builder outputs by builder name (only builders of the recipe's `use` that produced something). */
  variables: Record<string, unknown>;
  report: ContextReport;
}

const TRACER = 'promptgate';

/**
 * What the builders see of the request's variables: the client's, without any name the
 * version's context fills (`plan.names`, configured builder or not). A dependency that ran
 * is added per builder; one that was skipped, or that no builder has, leaves nothing there,
 * never the client's value of that name (a request must not stand in for its own customer
 * profile and raise its refund limit, or name another customer to an http builder).
 */
function clientScope(variables: Readonly<Record<string, unknown>>, filled: readonly string[], userId: string | undefined): Record<string, unknown> {
  const scope: Record<string, unknown> = {};
  for (const name of Object.keys(variables)) if (!filled.includes(name)) scope[name] = variables[name];
  scope.user_id = userId;
  return scope;
}

/**
 * @example
 * const plan = config.context.plans.get(selection.templateVersion.ref);
 * if (plan) {
 *   const { variables, report } = await buildContext(deps.context, plan, { messages: body.messages, userId, variables: vars, signal: exchange.signal, guard: config.guard.injection });
 *   vars = { ...vars, ...variables };
 * }
 */
export async function buildContext(rt: ContextRuntime, plan: ContextPlan, o: BuildContextOptions): Promise<ContextResult> {
  const started = performance.now();
  const { recipe, assignment } = selectRecipe(plan, o.userId, rt);
  const tracer = trace.getTracer(TRACER);
  const parent = o.parent ?? otelContext.active();
  const root = tracer.startSpan('context', { attributes: { 'promptgate.context.template': plan.templateRef } }, parent);
  const spanParent = trace.setSpan(parent, root);

  const query = lastUserText(o.messages);
  const base = clientScope(o.variables, plan.names, o.userId);
  const scanning = o.guard !== undefined && o.guard.action !== 'off' && o.guard.scan.includes('context');
  const scanner = scanning ? (o.scanner ?? rt.scannerFor(o.guard!.threshold, o.guard!.max_scan_chars)) : undefined;
  const block = o.guard?.action === 'block';
  const userScanned = o.guard !== undefined && o.guard.action !== 'off' && o.guard.scan.includes('user');
  let maxScore: number | undefined;

  const byName = new Map(recipe.run.map((b) => [b.name, b]));
  const outcomes = new Map<string, Outcome>();
  const spans = new Map<string, Span>();
  const startSpan = (b: Builder): Span => {
    let span = spans.get(b.name);
    if (!span) {
      span = tracer.startSpan(`context ${b.name}`, { attributes: { 'promptgate.context.builder': b.name, 'promptgate.context.kind': b.kind } }, spanParent);
      spans.set(b.name, span);
    }
    return span;
  };
  let closed = false;
  let wake: () => void = () => undefined;
  let requiredFailure: Outcome | undefined;
  const settle = (b: Builder, out: Outcome): Outcome => {
    if (closed) return out;
    outcomes.set(b.name, out);
    if (b.required && !out.output) {
      requiredFailure ??= out;
      wake();
    }
    return out;
  };
  const screen = (b: Builder, report: BuilderReport, output: BuilderOutput): BuilderOutput => {
    if (!scanner || !b.untrusted) return output;
    const s = rt.screen(output, scanner, block);
    report.flagged = s.flagged;
    report.blocked = s.blocked;
    if (s.maxScore !== undefined) maxScore = Math.max(maxScore ?? 0, s.maxScore);
    return s.output;
  };

  /** Builders waiting on a cached source, and their lookup: at the deadline, a stale entry may stand in (made on the first miss). */
  let cachedCalls: Map<string, { cache: ContextCache<BuilderOutput>; key: string; lookup: CacheLookup }> | undefined;

  /**
   * Runs one builder once its dependencies are done: at once when it needs no waiting (a
   * builder without I/O, a fresh cache entry), else as a promise. `late`: building is over,
   * so a builder that would have to wait is skipped for that reason instead.
   */
  const run = (b: Builder, deps: readonly Outcome[], late?: string): Outcome | Promise<Outcome> => {
    const span = startSpan(b);
    const t0 = performance.now();
    const report: BuilderReport = { name: b.name, kind: b.kind, status: 'ok', ms: 0, items: 0, tokens: 0, trimmed: 0, flagged: 0, blocked: 0 };
    const done = (output?: BuilderOutput) => {
      report.ms = performance.now() - t0;
      return settle(b, { report, output, span, endedAt: Date.now() });
    };
    if (closed) return done(fail(report, 'skipped', 'deadline'));
    const scope = { ...base };
    // A skipped dependency leaves nothing there (see `clientScope`, README "kind: rules").
    for (const d of deps) scope[d.report.name] = d.output ? variableOf(d.output) : undefined;
    let p: BuildPlan;
    let cache: ContextCache<BuilderOutput> | undefined;
    try {
      p = b.plan({ messages: o.messages, userId: o.userId, scope, query, topK: recipe.topK, maxTurns: recipe.maxTurns, userScanned, dispatcher: rt.dispatcher });
      if ('missing' in p) return done(fail(report, 'skipped', 'missing_input'));
      if ('compute' in p) return done(screen(b, report, p.compute()));
      cache = p.key !== undefined ? rt.cacheFor(b) : undefined;
      const fresh = cache?.fresh(p.key!);
      if (fresh) {
        report.cache = 'hit';
        report.status = 'cached';
        return done(screen(b, report, fresh));
      }
    } catch (err) {
      return done(failure(report, err));
    }
    if (late) return done(fail(report, 'skipped', late));
    const { key, produce: source } = p;
    const lookup: CacheLookup = {};
    if (cache) (cachedCalls ??= new Map()).set(b.name, { cache, key: key!, lookup });
    return (async () => {
      try {
        const produce = () => source(AbortSignal.timeout(b.timeoutMs));
        let output: BuilderOutput;
        if (cache) {
          const r = await within(cache.get(key!, produce, lookup), b.timeoutMs);
          report.cache = r.result;
          report.status = r.result === 'hit' ? 'cached' : r.result === 'stale' ? 'stale' : 'ok';
          output = r.value;
        } else {
          output = await within(produce(), b.timeoutMs);
        }
        return done(screen(b, report, output));
      } catch (err) {
        if (cache) report.cache = 'miss';
        // A source failed but the builder has an answer from the others: it serves this request.
        if (err instanceof PartialAnswer) return done(screen(b, report, err.partial as BuilderOutput));
        return done(failure(report, err));
      }
    })();
  };

  // Builders in dependency order (recipe.run lists dependencies first). The ones that answer
  // at once are done here; only those that wait (a cache miss, an HTTP call) are raced
  // against the deadline below, so a request served from caches sets no timer.
  const waiting = new Map<string, Promise<Outcome>>();
  for (const b of recipe.run) {
    if (b.dependsOn.every((d) => !waiting.has(d))) {
      const r = run(b, b.dependsOn.map((d) => outcomes.get(d)!));
      if (r instanceof Promise) waiting.set(b.name, r);
    } else {
      waiting.set(
        b.name,
        Promise.all(b.dependsOn.map((d) => waiting.get(d) ?? outcomes.get(d)!)).then((deps) => run(b, deps)),
      );
    }
  }

  // Wait for every builder still running, the deadline, a required failure, or the client leaving.
  let why: unknown;
  if (waiting.size > 0 && !requiredFailure) {
    const woken = new Promise<void>((resolve) => (wake = resolve));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), plan.deadlineMs);
    });
    const aborted = o.signal ? abortPromise(o.signal) : undefined;
    const waits: Promise<unknown>[] = [Promise.all(waiting.values()), deadline, woken];
    if (aborted) waits.push(aborted.promise);
    why = await Promise.race(waits);
    clearTimeout(timer);
    aborted?.dispose();
  } else if (o.signal?.aborted) {
    why = ABORTED;
  }

  const lateReason = why === 'deadline' ? 'deadline' : why === ABORTED ? 'aborted' : 'cancelled';
  for (const b of recipe.run) {
    if (outcomes.has(b.name)) continue;
    // A builder that never started was waiting for late dependencies (recipe.run lists them
    // first, so they have their outcome by now). When it answers at once (rules, a fresh
    // cache entry) it still runs and sees nothing where they are, as after a failure.
    if (!spans.has(b.name) && why !== ABORTED) {
      run(b, b.dependsOn.map((d) => outcomes.get(d)!), lateReason);
      continue;
    }
    const report: BuilderReport = { name: b.name, kind: b.kind, status: 'skipped', reason: lateReason, ms: performance.now() - started, items: 0, tokens: 0, trimmed: 0, flagged: 0, blocked: 0 };
    // A late source is as good as a failed one for this request: an entry its cache would
    // serve on error (stale_if_error) stands in, marked stale for that reason.
    const call = why === 'deadline' ? cachedCalls?.get(b.name) : undefined;
    const stale = call?.cache.abandon(call.key, call.lookup);
    if (stale) {
      Object.assign(report, { status: 'stale', cache: 'stale' });
      outcomes.set(b.name, { report, output: screen(b, report, stale), span: startSpan(b), endedAt: Date.now() });
      continue;
    }
    // A late builder's span ends now; its work goes on and may still fill the cache.
    outcomes.set(b.name, { report, span: startSpan(b), endedAt: Date.now() });
  }
  closed = true;

  // Budget over the recipe's outputs; dependencies not in `use` are inputs only.
  const inUse = recipe.use.map((name) => outcomes.get(name)!).filter((x) => x !== undefined);
  let budget = recipe.budgetTokens;
  if (plan.maxInputTokens !== undefined) {
    const taken = plan.templateTokens + clientVariableTokens(o.variables, plan.names) + messagesTokens(o.keptMessages ?? o.messages) + (o.toolTokens ?? 0);
    budget = Math.max(0, Math.min(budget, plan.maxInputTokens - taken));
  }
  const fitted = fitBudget(
    inUse.filter((x) => x.output).map((x) => {
      const builder = byName.get(x.report.name)!;
      // Items cost what the template renders for each (its section's text and tags), not only their text.
      const output = countAsRendered(x.output!, plan.perItem.get(x.report.name), o.variables);
      return { name: x.report.name, priority: builder.priority, required: builder.required, output };
    }),
    budget,
  );
  const variables: Record<string, unknown> = {};
  for (const f of fitted.sections) {
    const report = outcomes.get(f.name)!.report;
    report.trimmed = f.trimmed;
    report.tokens = f.tokens;
    if (!f.output) continue;
    report.items = f.output.shape === 'items' ? f.output.items.length : 1;
    variables[f.name] = variableOf(f.output);
  }

  const builders = recipe.run.map((b) => outcomes.get(b.name)!.report);
  const report: ContextReport = {
    builders,
    recipe: plan.recipes.length > 1 ? recipe.name : undefined,
    recipeAssignment: plan.recipes.length > 1 ? assignment : undefined,
    recipeExperiment: plan.recipes.length > 1 ? plan.experiment : undefined,
    tokens: fitted.tokens,
    budget,
    dropped: fitted.dropped,
    skipped: [...builders.filter((r) => r.status === 'skipped' || r.status === 'failed').map((r) => r.name), ...plan.unconfigured],
    injectionScore: maxScore,
    injectionFlagged: builders.reduce((n, r) => n + r.flagged, 0),
    injectionBlocked: builders.reduce((n, r) => n + r.blocked, 0),
    ms: performance.now() - started,
  };

  for (const b of recipe.run) record(rt, b, outcomes.get(b.name)!);
  endRoot(root, report);

  if (assignment === 'bandit' && plan.metric !== 'success' && o.requestId) rt.awaitFeedback(o.requestId, plan.experiment, recipe.name, plan.metric);

  const missing = requiredMissing(outcomes, byName, requiredFailure);
  o.onReport?.(report, missing !== undefined && why !== ABORTED);
  if (missing && why !== ABORTED) {
    const r = missing.report;
    throw new GatewayError('context_unavailable', `Required context "${r.name}" is unavailable (${r.reason ?? r.status}).`);
  }
  return { variables, report };
}

/**
 * The required builder a 424 names: the cause, not a consequence. One that lacked another's
 * output (`missing_input`) or was cut short by a failure (`cancelled`) names that failure.
 */
function requiredMissing(outcomes: ReadonlyMap<string, Outcome>, byName: ReadonlyMap<string, Builder>, first: Outcome | undefined): Outcome | undefined {
  const consequence = (x: Outcome) => x.report.reason === 'missing_input' || x.report.reason === 'cancelled';
  if (first && !consequence(first)) return first;
  let fallback = first;
  for (const x of outcomes.values()) {
    if (x.output || !byName.get(x.report.name)!.required) continue;
    if (!consequence(x)) return x;
    fallback ??= x;
  }
  return fallback;
}
